"""Dependency capture (jup2kub.build.deps): static imports -> pinned distributions, the ReproZip
trace (dynamic imports, data files, scrubbed environment) and requirements.lock files."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from jup2kub.api import inspect_notebook
from jup2kub.build import deps
from jup2kub.errors import InputError
from jup2kub.plan import plan_pipeline

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "corpus"
MakeNb = Callable[..., Path]
CANARY = "j2k-canary-7f3c9e1d5b-do-not-leak"


def _version(name: str) -> str:
    return md.version(name)


@pytest.fixture(scope="module")
def target() -> deps.Target:
    return deps.Target.host()


def test_static_capture_maps_imports_to_installed_versions(target: deps.Target) -> None:
    pipeline = inspect_notebook(CORPUS / "sales_markers.ipynb")
    d = deps.capture(pipeline, target)
    load, model, report = d.steps["load"], d.steps["model"], d.steps["report"]
    assert {"numpy", "pandas"} <= set(load.direct)
    assert "scikit-learn" in model.direct  # import sklearn -> the scikit-learn distribution
    assert "matplotlib" in report.direct
    # clean never imports pandas but loads the DataFrame `raw`: it needs pandas to unpickle it
    clean = d.steps["clean"]
    assert "pandas" not in clean.direct and "pandas" in clean.closure
    assert "loads raw from step load" in clean.inherited["pandas"]
    # model's inputs come from clean, which inherited them from load
    assert "numpy" in d.steps["summarize"].closure
    # %matplotlib inline becomes get_ipython(): IPython is needed where it is replayed
    assert "ipython" in load.direct
    for sd in d.steps.values():
        assert sd.closure["numpy"] == _version("numpy") if "numpy" in sd.closure else True
        for runtime_dist in deps.RUNTIME_DISTRIBUTIONS:
            assert sd.closure[runtime_dist] == _version(runtime_dist)
        # the standard library is never a requirement; our own package neither
        assert not {"math", "os", "json", "jup2kub"} & set(sd.closure)
    # the closure holds what pandas requires, at the installed versions
    assert load.closure["python-dateutil"] == _version("python-dateutil")
    assert set(d.runtime) >= {
        "kafka-python",
        "flask",
        "cloudpickle",
        "werkzeug",
        "prometheus-client",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-http",
    }
    assert "numpy" not in d.runtime
    # a pure-Python notebook needs the runtime only
    plain = deps.capture(inspect_notebook(CORPUS / "plain_cells.ipynb"), target)
    assert all(sd.closure == plain.runtime for sd in plain.steps.values())


def test_missing_optional_dynamic_and_local_path_packages(
    make_notebook: MakeNb, target: deps.Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = make_notebook(["x = 1", "import no_such_module_j2k\ny = x"])
    with pytest.raises(InputError) as err:
        deps.capture(inspect_notebook(missing), target)
    assert "no_such_module_j2k" in str(err.value) and "cell 1" in str(err.value)
    assert err.value.exit_code == 2

    optional = make_notebook(
        [
            "try:\n    import no_such_module_j2k\n"
            "except ImportError:\n    no_such_module_j2k = None",
            "import importlib\nname = 'js' + 'on'\nm = importlib.import_module(name)",
        ]
    )
    d = deps.capture(inspect_notebook(optional), target)
    assert any("optional import of 'no_such_module_j2k'" in w for w in d.warnings)
    assert any("computed name" in w and "--trace" in w for w in d.warnings)

    # a package installed from a local directory has no wheel on any index: error naming it
    site = tmp_path / "site"
    (site / "localpkg_j2k").mkdir(parents=True)
    (site / "localpkg_j2k" / "__init__.py").write_text("")
    info = site / "localpkg_j2k-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: localpkg-j2k\nVersion: 1.0\n")
    (info / "RECORD").write_text("localpkg_j2k/__init__.py,,\n")
    (info / "top_level.txt").write_text("localpkg_j2k\n")
    (info / "direct_url.json").write_text(
        json.dumps({"url": f"file://{tmp_path}/src/localpkg", "dir_info": {"editable": True}})
    )
    monkeypatch.syspath_prepend(str(site))
    local = make_notebook(["import localpkg_j2k\nv = 1"])
    with pytest.raises(InputError) as err:
        deps.capture(inspect_notebook(local), target)
    assert "localpkg-j2k" in str(err.value) and "file://" in str(err.value)
    assert "cell-0" in str(err.value)


def test_replayed_imports_are_not_warned_about_as_cell_minus_one(
    make_notebook: MakeNb, target: deps.Target
) -> None:
    """A step re-imports the submodules an attribute chain reaches (``matplotlib.pyplot``)
    with code the user did not write: no warning about it, and none names "cell -1"."""
    nb = make_notebook(["import matplotlib", "x = 1", "fig = matplotlib.pyplot.figure()\nx"])
    pipeline = inspect_notebook(nb, "cells")
    assert any(d.kind == "submodules" for d in pipeline.steps[-1].replay)
    d = deps.capture(pipeline, target)
    assert not [w for w in d.warnings if "cell -1" in w or "computed name" in w], d.warnings
    assert all(
        "cell -1" not in why for sd in d.steps.values() for w in sd.direct.values() for why in w
    )


def test_local_modules_are_data_files_and_written_ones_need_nothing(
    make_notebook: MakeNb, target: deps.Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module beside the notebook is read like a data file (listed for the volume the step
    runs on); one the notebook writes is neither a package nor an error (issue 28)."""
    nb = make_notebook(
        [
            "%%writefile mathfoo_j2k.py\ndef double(x):\n    return 2 * x\n",
            "import mathfoo_j2k\nimport besidemod_j2k\nv = besidemod_j2k.VALUE",
        ]
    )
    (nb.parent / "besidemod_j2k.py").write_text("VALUE = 1\n")
    monkeypatch.chdir(nb.parent)
    d = deps.capture(inspect_notebook(nb, "cells"), target)  # written in another step
    (found,) = d.data_files
    assert (found.relative, found.placement, found.steps) == (
        "besidemod_j2k.py",
        "volume",
        ("cell-1",),
    )
    assert found.size == len("VALUE = 1\n")
    assert not any("local file" in w for w in d.warnings)
    assert d.steps["cell-1"].closure == d.runtime


def test_lock_pins_versions_and_wheel_hashes(target: deps.Target, tmp_path: Path) -> None:
    pipeline = inspect_notebook(CORPUS / "sales_markers.ipynb")
    d = deps.capture(pipeline, target)
    locks = deps.lock(d)
    written = locks.write(tmp_path / "locks")
    text = written["model"].read_text()
    assert f"scikit-learn=={_version('scikit-learn')} \\" in text
    assert f"numpy=={_version('numpy')} \\" in text
    # every pinned wheel is for the target and its hash is the file's
    for wheel in locks.wheels.values():
        digest = hashlib.sha256(wheel.path.read_bytes()).hexdigest()
        assert wheel.sha256 == digest
        assert any(t in wheel.path.name for t in ("none-any", "manylinux", "abi3")), wheel.path
    assert f"--hash=sha256:{locks.wheels['numpy'].sha256}" in text
    assert "numpy" not in locks.runtime
    # deterministic: the same capture gives byte-identical locks
    again = deps.lock(deps.capture(pipeline, target))
    assert again.steps == locks.steps and again.runtime == locks.runtime


def test_no_wheel_for_target_names_package_and_step() -> None:
    # glibc 2.5 (manylinux1) is older than any wheel numpy ships for CPython 3.11
    old = deps.Target(sys.version_info[:2], "linux/amd64", (2, 5))
    with pytest.raises(InputError) as err:
        deps.resolve_wheels({"numpy": _version("numpy")}, old, used_by={"numpy": ["load"]})
    assert "numpy==" in str(err.value) and "'load'" in str(err.value)
    assert "no wheel" in str(err.value)


def test_trace_finds_dynamic_import_and_data_file_and_scrubs_env(
    make_notebook: MakeNb, target: deps.Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "inputs" / "table.csv"
    data.parent.mkdir()
    data.write_text("a,b\n1,2\n3,4\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "local.txt").write_text("relative data\n")
    nb = make_notebook(
        [
            "import importlib\nmodname = 'ya' + 'ml'\nmod = importlib.import_module(modname)\n"
            "ok = hasattr(mod, 'safe_load')",
            f"path = {str(data)!r}\nwith open(path) as f:\n    rows = f.read().count('\\n')",
            "with open('local.txt') as f:\n    note = f.read()\nwith open('out.txt', 'w') as f:\n"
            "    f.write(note)",
            "with open('out.txt') as f:\n    again = f.read()\ntotal = rows + len(again)",
        ]
    )
    monkeypatch.setenv("J2K_SECRET_CANARY", CANARY)
    pipeline = inspect_notebook(nb)
    d = deps.capture(pipeline, target)
    assert "pyyaml" not in d.steps["cell-0"].closure  # static analysis misses it
    deps.trace(d, plan_pipeline(pipeline), cwd=work)
    assert d.steps["cell-0"].traced == {"pyyaml"}
    assert d.steps["cell-0"].closure["pyyaml"] == _version("pyyaml")
    files = {f.path: f for f in d.data_files}
    assert str(data) in files and files[str(data)].placement == "image"
    assert files[str(data)].steps == ("cell-1",)
    local = files[str(work / "local.txt")]
    assert local.relative == "local.txt" and local.placement == "volume"
    # a file one step writes and the next reads is not input data
    assert str(work / "out.txt") not in files
    # nothing of the runtime's own imports counts as the notebook's
    assert d.steps["cell-3"].traced == set()
    out = tmp_path / "out"
    summary = deps.write_trace_summary(d, out / "trace-summary.json")
    assert summary is not None
    deps.lock(d).write(out)
    text = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert "pyyaml" in text and "table.csv" in text
    assert CANARY not in text
    assert '"environ"' not in summary.read_text()
