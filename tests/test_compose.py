"""Compositions: steps of two notebooks (or of the catalog) wired into one pipeline, run locally
and on a real Kafka broker, built into a chart that lints and validates; bad wiring refused
with exit 2 naming the line, the step and the variable."""

from __future__ import annotations

import json
import math
import statistics
import textwrap
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jup2kub import api
from jup2kub.catalog.store import Catalog
from jup2kub.errors import CompositionError
from tests.support.cli_runner import jup2kub
from tests.support.notebooks import build_notebook
from tests.test_chart import (
    VALUES_FILES,
    _prod_efs,
    flags,
    render,
    run_helm,
    validate_strict,
)

A_CELLS: list[Any] = [
    {"source": "n = 4\nscale = 2.0", "tags": ["parameters"]},
    ("md", "## Load\nSquare roots of the first *n* integers."),
    "#| step: load\nimport math\nvalues = [math.sqrt(i) * scale for i in range(n)]\n"
    "print('loaded', len(values))",
    "#| step: double\nlabel = 'doubled'\ndoubled = [v * 2 for v in values]\ndoubled",
    "#| step: show\nprint(label, len(doubled))",
]
B_CELLS: list[Any] = [
    {"source": "n = 4\noffset = 1", "tags": ["parameters"]},
    "#| step: make\nreadings = list(range(n))",
    "#| step: total\nimport statistics\ndef shift(xs):\n    return [x + offset for x in xs]\n"
    "total = sum(shift(readings))\nmean = statistics.mean(readings)\nprint(total, mean)\ntotal",
]

COMPOSITION = """\
# load from a.ipynb, total from b.ipynb, reading a's values as its readings
name: mixed
parameters:
  n: 5
steps:
  - notebook: a.ipynb
    step: load
  - name: summed
    notebook: b.ipynb
    step: total
    inputs:
      readings: load.values
"""


def _by_hand(n: int = 5, scale: float = 2.0, offset: int = 1) -> list[str]:
    """The two notebooks' logic, written out: what the composed run must print."""
    values = [math.sqrt(i) * scale for i in range(n)]
    total = sum(x + offset for x in values)
    return [f"loaded {len(values)}\n", f"{total} {statistics.mean(values)}\n", repr(total)]


def _write(directory: Path, name: str, cells: list[Any]) -> Path:
    path = directory / name
    path.write_text(nbformat.writes(build_notebook(cells)), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    _write(tmp_path, "a.ipynb", A_CELLS)
    _write(tmp_path, "b.ipynb", B_CELLS)
    (tmp_path / "mixed.yaml").write_text(COMPOSITION)
    return tmp_path


def _printed(result: api.RunResult) -> list[str]:
    nb = json.loads(result.notebook.read_text())
    out = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            text = o.get("text") or o.get("data", {}).get("text/plain")
            out.append("".join(text))
    return out


def test_inspect_shows_the_wiring(project: Path) -> None:
    pipeline = api.inspect_notebook(project / "mixed.yaml")
    assert pipeline.name == "mixed"
    assert [s.name for s in pipeline.steps] == ["load", "summed"]
    assert pipeline.step("summed").inputs == {"values": "load"}
    assert pipeline.parameters["n"] == 5


def test_runs_locally_as_the_logic_by_hand(project: Path) -> None:
    result = api.run(project / "mixed.yaml", workdir=project / "work")
    assert result.ok, result.steps
    assert _printed(result) == _by_hand()
    again = api.run(project / "mixed.yaml", {"n": 7}, workdir=project / "work")
    assert _printed(again) == _by_hand(n=7)


def test_runs_on_kafka_as_the_logic_by_hand(
    project: Path, kafka: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    result = api.run(project / "mixed.yaml", workdir=project / "work", kafka=kafka)
    assert result.ok, result.steps
    assert _printed(result) == _by_hand()


def test_chart_lints_renders_and_validates(project: Path) -> None:
    with Catalog(None) as catalog:
        pipeline, out = api.build(project / "mixed.yaml", project / "chart", catalog=catalog)
    assert [s.name for s in pipeline.steps] == ["load", "summed"]
    for values in VALUES_FILES:  # each values file, as tests/test_chart.py checks every chart
        extra = [] if values == "values.yaml" else [values]
        sets = flags("--set", _prod_efs(extra, []))  # prod needs the user's EFS id
        lint = run_helm("lint", "--strict", str(out), *flags("-f", [out / f for f in extra]),
                        *sets, ok=False)  # fmt: skip
        assert lint.returncode == 0, lint.stdout + lint.stderr
        validate_strict(render(out, extra, []))
    objects = render(out, [], [])
    deployments = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    assert any(d.endswith("-load") for d in deployments)
    assert any(d.endswith("-summed") for d in deployments)
    with Catalog(None) as catalog:  # the composed steps are recorded too
        assert {r.key for r in catalog.steps("mixed")} == {"mixed/load", "mixed/summed"}


def test_a_catalogued_step(project: Path, tmp_path: Path) -> None:
    with Catalog(None) as catalog:
        api.catalog_add(catalog, project / "b.ipynb")
    (project / "from-catalog.yaml").write_text(
        COMPOSITION.replace("notebook: b.ipynb\n    step: total", "catalog: b/total")
    )
    result = api.run(project / "from-catalog.yaml", workdir=project / "work")
    assert result.ok and _printed(result) == _by_hand()
    # the notebook changed since: the catalogued step is no longer what was recorded
    _write(project, "b.ipynb", [*B_CELLS[:-1], B_CELLS[-1].replace("mean(", "median(")])
    with pytest.raises(CompositionError, match="its code changed"):
        api.inspect_notebook(project / "from-catalog.yaml")


def _refused(project: Path, text: str) -> str:
    (project / "bad.yaml").write_text(textwrap.dedent(text))
    proc = jup2kub("inspect", project / "bad.yaml")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


STEPS_AB = """\
steps:
  - notebook: a.ipynb
    step: load
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # an input not wired
            STEPS_AB + "  - {notebook: b.ipynb, step: total}\n",
            ["bad.yaml, line 4", "step 'total': input 'readings' is not connected"],
        ),
        (  # wired to a step that is not there
            STEPS_AB + "  - {notebook: b.ipynb, step: total, inputs: {readings: nowhere.x}}\n",
            ["line 4", "input 'readings' is wired to step 'nowhere'"],
        ),
        (  # wired to a value the upstream step does not write
            STEPS_AB + "  - notebook: b.ipynb\n    step: total\n    inputs:\n"
            "      readings: load.nothing\n",
            ["line 7", "step 'load' does not write 'nothing'"],
        ),
        (  # duplicate names
            STEPS_AB + "  - {notebook: a.ipynb, step: load}\n",
            ["line 4", "duplicate step name 'load' (also on line 2)"],
        ),
        (  # a cycle
            "steps:\n"
            "  - {name: one, notebook: b.ipynb, step: total, inputs: {readings: two.total}}\n"
            "  - {name: two, notebook: b.ipynb, step: total, inputs: {readings: one.total}}\n",
            ["wiring has a cycle", "one -> two -> one"],
        ),
        (  # the schema: a list where a mapping belongs, on its line
            STEPS_AB + "    inputs: [values]\n",
            ["bad.yaml, line 4", "steps.0.inputs: ['values'] is not of type 'object'"],
        ),
        (  # an unknown key, on its own line
            STEPS_AB + "    stepz: load\n",
            ["bad.yaml, line 4", "steps.0: Additional properties are not allowed ('stepz'"],
        ),
        (  # not YAML
            "steps:\n  - notebook: a.ipynb\n   step: [\n",
            ["bad.yaml, line 3", "not valid YAML"],
        ),
        (  # an unknown step of the notebook
            "steps:\n  - notebook: a.ipynb\n    step: nope\n",
            ["line 3", "has no step 'nope' (its steps: load, double, show)"],
        ),
    ],
)
def test_bad_compositions_are_refused(project: Path, text: str, expected: list[str]) -> None:
    stderr = _refused(project, text)
    for part in expected:
        assert part in stderr


def test_conflicting_parameter_defaults_are_refused(project: Path) -> None:
    _write(project, "b.ipynb", [{"source": "n = 6\noffset = 1", "tags": ["parameters"]},
                                *B_CELLS[1:]])  # fmt: skip
    text = COMPOSITION.replace("parameters:\n  n: 5\n", "").replace(
        "  - name: summed", "  - notebook: b.ipynb\n    step: make\n  - name: summed"
    )
    stderr = _refused(project, text)
    assert "step 'load': parameter 'n' defaults to 4 in" in stderr and "to 6 in" in stderr
    # b's parameters cell runs after a's even when no step of b reads n: still refused
    stderr = _refused(project, COMPOSITION.replace("parameters:\n  n: 5\n", ""))
    assert "step 'load': parameter 'n' defaults to 4 in" in stderr
    assert api.inspect_notebook(project / "mixed.yaml").parameters["n"] == 5  # set: fine


def test_type_mismatch_known_to_the_catalog_is_refused(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)  # runs in .jup2kub/PIPELINE: where catalog add looks for types
    for notebook in ("a.ipynb", "b.ipynb"):
        assert api.run(project / notebook).ok
        with Catalog(None) as catalog:
            api.catalog_add(catalog, project / notebook)
    text = STEPS_AB + (
        "  - {notebook: a.ipynb, step: double, inputs: {values: load}}\n"
        "  - {notebook: b.ipynb, step: total, inputs: {readings: double.label}}\n"
    )
    stderr = _refused(project, text)
    assert "line 5" in stderr
    assert (
        "input 'readings' was a builtins.list in its runs, and double.label is a builtins.str"
        in (stderr)
    )


def test_kale_notebook_cells_compose_the_notebooks(project: Path) -> None:
    """Kale 2.3: a notebook of ``notebook:NAME`` cells runs the named notebooks' steps, one
    notebook after the other, each with its own values (nothing crosses notebooks)."""
    parent = _write(project, "both.ipynb", [
        {"source": "", "tags": ["notebook:a"]},
        {"source": "# the second part", "tags": ["notebook:b.ipynb"]},
    ])  # fmt: skip
    pipeline = api.inspect_notebook(parent)
    assert [s.name for s in pipeline.steps] == ["a-load", "a-double", "a-show", "b-make", "b-total"]
    assert pipeline.step("b-make").after == ["a-show"]  # b after a
    assert pipeline.step("b-total").inputs == {"readings": "b-make"}
    result = api.run(parent, workdir=project / "work")
    assert result.ok, result.steps
    values = [math.sqrt(i) * 2.0 for i in range(4)]
    doubled = [v * 2 for v in values]
    readings = list(range(4))
    total = sum(x + 1 for x in readings)
    assert _printed(result) == [
        "loaded 4\n",
        repr(doubled),
        f"doubled {len(doubled)}\n",
        f"{total} {statistics.mean(readings)}\n",
        repr(total),
    ]


def test_after_orders_without_values(project: Path) -> None:
    (project / "after.yaml").write_text(
        STEPS_AB + "  - {notebook: b.ipynb, step: make, after: [load]}\n"
    )
    pipeline = api.inspect_notebook(project / "after.yaml")
    assert pipeline.step("make").after == ["load"] and pipeline.step("make").inputs == {}
    stderr = _refused(project, STEPS_AB + "  - {notebook: b.ipynb, step: make, after: [x]}\n")
    assert "step 'make' runs after step 'x', which is not in the composition" in stderr


def test_a_value_its_notebook_does_not_give_is_refused(project: Path) -> None:
    """A step reading a name its own notebook never defines would get another notebook's
    value in the composition (a silent difference): refused."""
    _write(project, "c.ipynb", ["#| step: use\nprint(values)"])
    stderr = _refused(project, STEPS_AB + "  - {notebook: c.ipynb, step: use}\n")
    assert "step 'use' reads 'values'" in stderr and "from step 'load'" in stderr


def test_build_resolves_catalogued_steps_in_its_catalog(project: Path, postgres: Any) -> None:
    """`build --catalog URL` takes catalogued steps from that catalog (PostgreSQL here; the
    default catalog stays empty) and records the composed steps there."""
    url = postgres.new_database()
    with Catalog(url) as catalog:
        api.catalog_add(catalog, project / "b.ipynb")
    (project / "from-catalog.yaml").write_text(
        COMPOSITION.replace("notebook: b.ipynb\n    step: total", "catalog: b/total")
    )
    proc = jup2kub(
        "build", project / "from-catalog.yaml", "-o", project / "out", "--no-images",
        "--catalog", url,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with Catalog(url) as catalog:
        assert {r.key for r in catalog.steps("mixed")} == {"mixed/load", "mixed/summed"}
    with Catalog(None) as default:
        assert default.count() == 0


def test_a_step_starting_with_a_cell_magic(project: Path) -> None:
    """A Kale-tagged step whose first cell is a cell magic keeps it first in the composition."""
    _write(project, "c.ipynb", [
        {"source": "%%capture out\nvalue = 41\nprint('hidden')", "tags": ["step:first"]},
        {"source": "print(value + 1)", "tags": ["step:second"]},
    ])  # fmt: skip
    (project / "magic.yaml").write_text(
        "steps:\n  - {notebook: c.ipynb, step: first}\n"
        "  - {notebook: c.ipynb, step: second, inputs: {value: first}}\n"
    )
    result = api.run(project / "magic.yaml", workdir=project / "work")
    assert result.ok, result.steps
    assert _printed(result) == ["42\n"]
