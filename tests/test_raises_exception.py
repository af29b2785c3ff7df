"""Cells tagged ``raises-exception`` (papermill's tag, honoured by nbclient): an error there is
recorded in the cell's outputs and the notebook goes on, embedded and over Kafka, with what the
cell bound before raising; the run succeeds as nbclient's does."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from jup2kub.api import inspect_notebook
from jup2kub.plan import plan_pipeline
from jup2kub_runtime.contract.spec import Cell, ReplayCell, StepSpec
from jup2kub_runtime.execution.cell_runner import execute_step
from tests.support.cli_runner import jup2kub
from tests.support.equivalence import reference_run, shown

MakeNb = Callable[..., Path]
TAG = ["raises-exception"]

CELLS = [
    "#| step: load\nx = 1\nprint('loaded')",
    (
        "code",
        "#| step: check\ny = x + 1\nprint('checking', y)\nraise ValueError('bad row')\n"
        "x = 99\nz = 5",
        TAG,
    ),
    ("code", "#| step: quiet\nprint('no error here', x, y)\nw = x * 10", TAG),
    ("code", "#| step: late\nprint(z)", TAG),
    "#| step: end\nprint('end', x, y, w)\nx + y + w",
]


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_a_tagged_cell_that_raises_is_recorded_and_the_run_goes_on(
    mode: str, tmp_path: Path, make_notebook: MakeNb, request: pytest.FixtureRequest
) -> None:
    nb = make_notebook(CELLS)
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "pipeline"
    ref_dir.mkdir()
    run_dir.mkdir()
    ref_nb, _ = reference_run(nb, [], ref_dir)
    extra = ["--kafka", request.getfixturevalue("kafka")] if mode == "kafka" else []
    proc = jup2kub("run", nb, "--workdir", run_dir / "work", *extra, cwd=run_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    result_path = run_dir / "work" / "runs" / run_id / "result.ipynb"
    result = nbformat.read(result_path, as_version=4)
    nbformat.validate(result)
    assert shown(result) == shown(ref_nb)
    # the error as the existing error outputs have it: the traceback down to the raise
    error = result.cells[1].outputs[-1]
    assert (error.output_type, error.ename, error.evalue) == ("error", "ValueError", "bad row")
    assert error.traceback[0] == "Traceback (most recent call last):"
    assert error.traceback[-1] == "ValueError: bad row"
    assert any("raise ValueError('bad row')" in line for line in error.traceback)
    # a name bound after the raise is not bound: NameError where the notebook has it
    assert [(o.ename, o.evalue) for o in result.cells[3].outputs] == [
        ("NameError", "name 'z' is not defined")
    ]
    assert result.cells[4].outputs[-1].data["text/plain"] == "13"  # x kept 1, y bound: 2, w: 10
    assert result.cells[1].metadata.papermill["status"] == "completed"
    summary = json.loads((result_path.parent / "summary.json").read_text())
    assert summary["status"] == "succeeded"


def test_an_untagged_cell_that_raises_still_fails_the_run(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    nb = make_notebook(["#| step: a\nx = 1", "#| step: b\nraise ValueError('bad')\ny = x"])
    proc = jup2kub("run", nb, "--workdir", tmp_path / "work", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ValueError" in proc.stdout + proc.stderr


def test_the_tag_reaches_the_spec_and_old_specs_stay_readable(make_notebook: MakeNb) -> None:
    nb = make_notebook(CELLS)
    specs = {s.name: s.spec for s in plan_pipeline(inspect_notebook(nb)).steps}
    assert [c.allows_errors for c in specs["check"].cells] == [True]
    assert [c.allows_errors for c in specs["load"].cells] == [False]
    written = specs["load"].to_dict()
    assert all("allows_errors" not in c for c in written["cells"])  # as before: no new key
    assert StepSpec.from_dict(written) == specs["load"]
    assert StepSpec.from_dict(specs["check"].to_dict()) == specs["check"]


def _spec(source: str, *, allows_errors: bool = True, **fields: object) -> StepSpec:
    return StepSpec(
        pipeline="p",
        step="s",
        cells=[Cell(0, source, allows_errors)],
        **fields,  # type: ignore[arg-type]
    )


def test_the_time_limit_is_not_an_error_the_tag_allows() -> None:
    result = execute_step(_spec("import time\ntime.sleep(5)"), {}, timeout=0.3)
    assert result.error is not None and result.error.ename == "StepTimeout"


def test_a_tagged_cell_that_does_not_raise_is_an_ordinary_cell() -> None:
    result = execute_step(_spec("a = 1\na + 1", outputs=["a"]), {})
    assert result.error is None and result.values == {"a": 1}
    assert [o["output_type"] for o in result.cells[0].outputs] == ["execute_result"]


def test_replayed_code_no_cell_holds_is_not_called_cell_minus_one() -> None:
    """The replayed submodule imports (cell -1 in the spec) failing: the error names no cell."""
    spec = _spec("x = 1", replay=[ReplayCell(-1, "raise ImportError('gone')")])
    result = execute_step(spec, {})
    assert result.error is not None
    assert (result.error.cell, result.error.phase) == (None, "replay")
    assert "cell -1" not in str(result.error)
