"""The step cache's key and cacheability, as pure logic: what changes a key, what does not,
what makes a step not cacheable, and how the notebook opts in or out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from jup2kub.api import inspect_notebook
from jup2kub.model.cacheability import StepCache
from jup2kub_runtime.contract.spec import Cell, ReplayCell, StepSpec
from jup2kub_runtime.storage.cachekey import (
    KeyParts,
    code_digest,
    files_digests,
    normalise,
    parameter_digests,
    step_key_parts,
    why_changed,
)

MakeNb = Callable[..., Path]


def _spec(source: str, **kw: object) -> StepSpec:
    fields: dict[str, object] = {"pipeline": "p", "step": "s", "cells": [Cell(2, source)]}
    fields.update(kw)
    return StepSpec(**fields)  # type: ignore[arg-type]


def test_comments_and_layout_do_not_change_the_code_digest() -> None:
    plain = _spec("x = f(1, 2)\nprint(x)")
    noted = _spec("# compute x\nx = f( 1,2 )  # why\n\n\nprint(x)\n")
    assert normalise("x = 1  # c") == normalise("x=1")
    assert code_digest(plain) == code_digest(noted)
    assert code_digest(plain) != code_digest(_spec("x = f(1, 3)\nprint(x)"))


def test_replayed_definitions_cell_positions_and_outputs_are_code() -> None:
    base = _spec("y = g(1)", replay=[ReplayCell(0, "def g(v):\n    return v")])
    other = _spec("y = g(1)", replay=[ReplayCell(0, "def g(v):\n    return v + 1")])
    moved = StepSpec(pipeline="p", step="s", cells=[Cell(3, "y = g(1)")], replay=base.replay)
    more = _spec("y = g(1)", replay=base.replay, outputs=["y"])
    digests = {code_digest(s) for s in (base, other, moved, more)}
    assert len(digests) == 4
    # who reads the step's values does not change what it computes
    assert code_digest(base) == code_digest(_spec("y = g(1)", replay=base.replay, downstream=[]))


def test_only_the_parameters_a_step_reads_count() -> None:
    spec = _spec("print(n)", parameters=["n"], parameters_source="n = 1\nlabel = 'a'")
    a = parameter_digests(spec, {"n": 5, "label": "x"})
    assert a == parameter_digests(spec, {"n": 5, "label": "y"})
    assert a != parameter_digests(spec, {"n": 6})
    # not set by the run: the parameters cell decides (a new default counts)
    default = parameter_digests(spec, {})
    edited = _spec("print(n)", parameters=["n"], parameters_source="n = 2\nlabel = 'a'")
    assert default != parameter_digests(edited, {})


def test_why_changed_names_each_component() -> None:
    spec = _spec("print(n)", parameters=["n"])
    before = step_key_parts(spec, {"n": 1}, {"up": "k1"}, {"d.csv": "h1"}, "env1")
    assert why_changed(before, before) == []
    assert why_changed(None, before) == []
    after = step_key_parts(
        _spec("print(n + 1)", parameters=["n"]), {"n": 2}, {"up": "k2"}, {"d.csv": "h2"}, "env2"
    )
    assert why_changed(before, after) == [
        "code changed",
        "parameter changed: n",
        "environment changed",
        "file changed: d.csv",
        "input changed: up",
    ]
    assert before.key != after.key
    assert KeyParts.from_json(before.to_json()) == before
    assert KeyParts.from_json({"code": 1}) is None


def test_file_digests_follow_content_and_absence(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("1,2\n")
    first = files_digests(["a.csv", "b.csv"], tmp_path)
    assert first["b.csv"] == "absent"
    (tmp_path / "a.csv").write_text("1,3\n")
    (tmp_path / "b.csv").write_text("")
    second = files_digests(["a.csv", "b.csv"], tmp_path)
    assert first["a.csv"] != second["a.csv"] and second["b.csv"] != "absent"


def _cache(make_notebook: MakeNb, *cells: object) -> dict[str, StepCache]:
    pipeline = inspect_notebook(make_notebook(list(cells)))
    return {name: info for name, info in pipeline.cache.items() if isinstance(info, StepCache)}


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("import time\nt = time.time()", "reads the clock (time.time)"),
        ("from datetime import datetime\nt = datetime.now()", "datetime.datetime.now"),
        ("import requests\nt = requests.get('http://x').text", "reaches the network"),
        ("import pandas as pd\nt = pd.read_csv('https://x/y.csv')", "reaches the network"),
        ("import os\nt = os.environ.get('HOME')", "reads the process environment"),
        ("import numpy as np\nt = np.random.rand(3)", "without a seed"),
        ("import numpy as np\nt = np.random.default_rng().random()", "unseeded randomness"),
        ("import uuid\nt = uuid.uuid4()", "unseeded randomness"),
        ("import subprocess\nsubprocess.run(['ls'])\nt = 1", "not followed"),
        ("import glob\nt = [open(f).read() for f in glob.glob('*.txt')]", "lists a directory"),
        ("open('log.txt', 'a').write('x')\nt = 1", "appends to a file"),
        ("import os\nos.remove('old.csv')\nt = 1", "removes or moves files (os.remove)"),
        ("import pathlib\npathlib.Path('x.csv').unlink()\nt = 1", "removes or moves files"),
    ],
)
def test_effects_the_key_cannot_see_make_a_step_not_cacheable(
    make_notebook: MakeNb, code: str, why: str
) -> None:
    cache = _cache(make_notebook, f"#| step: a\n{code}", "#| step: b\nprint(t)")
    assert not cache["a"].cacheable
    assert why in cache["a"].describe()
    assert cache["b"].cacheable  # downstream is keyed on a's stored outputs instead


def test_seeded_randomness_and_plain_code_are_cacheable(make_notebook: MakeNb) -> None:
    cache = _cache(
        make_notebook,
        "#| step: a\nimport numpy as np\nnp.random.seed(0)\nx = np.random.rand(3)",
        "#| step: b\nimport numpy as np\ny = np.random.default_rng(1).random() + x.sum()",
        "#| step: c\nimport pandas as pd\nz = pd.read_csv('data.csv')\nz.to_csv('out.csv')",
    )
    assert all(c.cacheable for c in cache.values()), {k: c.describe() for k, c in cache.items()}
    assert cache["c"].reads == ("data.csv",) and cache["c"].writes == ("out.csv",)


def test_a_file_the_step_also_checks_counts_as_it_is_before(make_notebook: MakeNb) -> None:
    """Only written: restored on reuse, its earlier content does not matter. Also read or
    checked (``if not exists: write``): what it holds when the step starts is in the key."""
    cache = _cache(
        make_notebook,
        "#| step: a\nimport os\nif not os.path.exists('m.txt'):\n"
        "    open('m.txt', 'w').write('1')\nm = open('m.txt').read()",
        "#| step: b\nopen('o.txt', 'w').write(m)",
    )
    assert "m.txt" in cache["a"].reads and cache["a"].writes == ("m.txt",)
    assert "o.txt" not in cache["b"].reads and cache["b"].writes == ("o.txt",)


def test_the_notebook_opts_in_and_out(make_notebook: MakeNb) -> None:
    cache = _cache(
        make_notebook,
        "#| step: a\n#| cache: true\nimport time\nt = time.time()",
        "#| step: b\n#| cache: false\ny = 1",
    )
    assert cache["a"].cacheable and cache["a"].decided_by == "marker"
    assert "despite: reads the clock" in cache["a"].describe()
    assert not cache["b"].cacheable and cache["b"].describe() == "not cached: set by #| cache:"
    kale = _cache(
        make_notebook,
        ("code", "import time\nu = time.time()", ["step:c", "cache:true"]),
        ("code", "v = 1", ["step:d", "cache:false"]),
    )
    assert kale["c"].cacheable and kale["c"].decided_by == "tag"
    assert not kale["d"].cacheable and kale["d"].decided_by == "tag"


def test_a_named_directory_too_large_to_hash_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jup2kub_runtime.storage import cachekey

    (tmp_path / "d").mkdir()
    for i in range(3):
        (tmp_path / "d" / f"{i}.csv").write_text(str(i))
    small = files_digests(["d"], tmp_path)["d"]
    assert small.startswith("dir:")
    monkeypatch.setattr(cachekey, "MAX_DIR_FILES", 2)
    assert files_digests(["d"], tmp_path)["d"] == "too-large"  # the step is then not reused


def test_on_a_cluster_the_code_stays_in_the_key_beside_the_image(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The image no longer holds the code (the chart mounts it), so one image serves steps of
    other code: the key's code part comes from the mounted bundle, its environment part from
    the image reference (``J2K_IMAGE_DIGEST``)."""
    monkeypatch.setenv("J2K_IMAGE_DIGEST", "sales-markers-load:0123456789abcdef")
    before = step_key_parts(_spec("x = 1"), {}, {})
    edited = step_key_parts(_spec("x = 2"), {}, {})
    assert before.environment == edited.environment and before.key != edited.key
    assert why_changed(before, edited) == ["code changed"]
    monkeypatch.setenv("J2K_IMAGE_DIGEST", "sales-markers-load:fedcba9876543210")
    repackaged = step_key_parts(_spec("x = 1"), {}, {})
    assert why_changed(before, repackaged) == ["environment changed"]
