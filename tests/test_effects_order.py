"""Nothing past the first failure (issue 28, item 4): nbclient stops at the first failing cell,
so a step that acts outside the pipeline's values (files, programs, network, databases) runs
only once every earlier step in notebook order has succeeded, a failure starts no step past
it, and the results notebook shows the cells past it not executed, as papermill does, even
when a pure step ran there in parallel. Pure branches still run in parallel.

Real kernels, embedded (a process per step) and on a real Kafka broker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jup2kub.api import inspect_notebook
from jup2kub.model.notebook import load_notebook
from jup2kub.run.executor import RunResult, run_pipeline
from jup2kub.run.kafka import KafkaExecutor
from jup2kub.run.local import LocalExecutor
from tests.support.equivalence import shown

MakeNb = Callable[..., Path]

#: a deliberate error, slow enough that an independent later step would start meanwhile
RAISES = [
    "#| step: load\nimport time\nrows = [3, 1, 2]",
    "#| step: boom\ntime.sleep(1.5)\nraise RuntimeError('deliberate')",
    "#| step: publish\nimport numpy as np\n"
    "m = np.lib.format.open_memmap('table.npy', mode='w+', dtype='int64', shape=(3,))\n"
    "m[:] = rows\nm.flush()\nprint('published')",
]
#: an assert guard, then a pure report (it may run alongside) and a publish step
GUARD = [
    "#| step: load\nimport json, time\nrows = [3, 1, 2]",
    "#| step: guard\ntime.sleep(1.5)\nassert len(rows) > 5, 'too few rows'",
    "#| step: report\ntotal = sum(rows)\nprint('total', total)",
    "#| step: publish\nwith open('report.json', 'w') as f:\n    json.dump({'total': total}, f)",
]
#: a quick failure, a slow pure step beside it, and a pure step after that one
STOPS = [
    "#| step: boom\nraise RuntimeError('deliberate')",
    "#| step: slow\nimport time\ntime.sleep(2)\ns = 1",
    "#| step: later\nprint('after', s + 1)",
]
#: two pure branches, then a step writing what both made
BRANCHES = [
    "#| step: left\nimport time\ntime.sleep(1.5)\na = 1",
    "#| step: right\nimport time\ntime.sleep(1.5)\nb = 2",
    "#| step: save\nopen('sum.txt', 'w').write(str(a + b))",
]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Step processes write relative files in the current directory, like the notebook."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def _run(nb: Path, workdir: Path, mode: str, request: pytest.FixtureRequest) -> RunResult:
    executor: Any = (
        KafkaExecutor(request.getfixturevalue("kafka"), timeout=300)
        if mode == "kafka"
        else LocalExecutor(jobs=2)
    )
    return run_pipeline(load_notebook(nb), inspect_notebook(nb), workdir, {}, executor)


def _papermill(cell: Any) -> dict[str, Any]:
    return dict(cell.metadata.get("papermill", {}))


def _not_executed(cell: Any) -> bool:
    return (
        cell.outputs == []
        and cell.execution_count is None
        and _papermill(cell).get("status") == "pending"
    )


@pytest.mark.parametrize(
    ("cells", "effectful", "after"),
    [
        (RAISES, "publish", ["load", "boom"]),
        (GUARD, "publish", ["guard", "report"]),
        (BRANCHES, "save", ["left", "right"]),
    ],
)
def test_inspect_orders_effectful_steps_after_every_earlier_one(
    make_notebook: MakeNb, cells: list[str], effectful: str, after: list[str]
) -> None:
    pipeline = inspect_notebook(make_notebook(cells))
    steps = {s.name: s for s in pipeline.steps}
    assert steps[effectful].effects
    assert steps[effectful].after == after
    pure = [s for s in pipeline.steps if s.name != effectful]
    assert all(not s.effects for s in pure)
    doc = {s["name"]: s for s in pipeline.to_json()["steps"]}  # inspect --json
    assert doc[effectful]["effects"] == [str(e) for e in steps[effectful].effects]
    assert not any("effects" in doc[s.name] for s in pure)


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_a_deliberate_error_leaves_no_file_of_a_later_step(
    mode: str, make_notebook: MakeNb, in_tmp: Path, request: pytest.FixtureRequest
) -> None:
    nb = make_notebook(RAISES)
    result = _run(nb, in_tmp / "work", mode, request)
    assert not result.ok
    states = {n: st.state.value for n, st in result.steps.items()}
    assert states == {"load": "succeeded", "boom": "failed", "publish": "blocked"}
    assert not (in_tmp / "table.npy").exists()
    out = nbformat.read(result.notebook, as_version=4)
    assert out.cells[1].outputs[-1]["ename"] == "RuntimeError"
    assert _papermill(out.cells[1])["status"] == "failed"
    assert _not_executed(out.cells[2])


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_a_failing_guard_publishes_nothing_and_hides_a_speculative_step(
    mode: str, make_notebook: MakeNb, in_tmp: Path, request: pytest.FixtureRequest
) -> None:
    nb = make_notebook(GUARD)
    result = _run(nb, in_tmp / "work", mode, request)
    assert result.steps["guard"].state.value == "failed"
    assert result.steps["publish"].state.value == "blocked"
    assert not (in_tmp / "report.json").exists()
    out = nbformat.read(result.notebook, as_version=4)
    assert out.cells[1].outputs[-1]["evalue"] == "too few rows"
    # the pure report may have run alongside the guard: nothing of it shows
    assert _not_executed(out.cells[2]) and _not_executed(out.cells[3])
    assert [c.execution_count for c in out.cells] == [1, 2, None, None]


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_no_step_starts_past_a_failure(
    mode: str, make_notebook: MakeNb, in_tmp: Path, request: pytest.FixtureRequest
) -> None:
    """Even a pure one: nbclient would not run it. (The slow step beside the failure may have
    started before it, on Kafka perhaps not: its runtime may take the run after the failure.)"""
    nb = make_notebook(STOPS)
    result = _run(nb, in_tmp / "work", mode, request)
    assert result.steps["boom"].state.value == "failed"
    assert result.steps["slow"].state.value in ("succeeded", "blocked")
    assert result.steps["later"].state.value == "blocked"
    out = nbformat.read(result.notebook, as_version=4)
    assert _not_executed(out.cells[1]) and _not_executed(out.cells[2])


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_pure_branches_still_run_in_parallel(
    mode: str, make_notebook: MakeNb, in_tmp: Path, request: pytest.FixtureRequest
) -> None:
    nb = make_notebook(BRANCHES)
    result = _run(nb, in_tmp / "work", mode, request)
    assert result.ok
    assert (in_tmp / "sum.txt").read_text() == "3"
    cells = nbformat.read(result.notebook, as_version=4).cells
    span = [
        (datetime.fromisoformat(p["start_time"]), datetime.fromisoformat(p["end_time"]))
        for p in map(_papermill, cells)
    ]
    (left_start, left_end), (right_start, right_end), (save_start, _) = span
    assert left_start < right_end and right_start < left_end  # the branches overlapped
    assert save_start >= max(left_end, right_end)  # the writer waited for both


def test_papermill_shows_cells_past_a_failure_as_not_executed(
    make_notebook: MakeNb, in_tmp: Path
) -> None:
    """The oracle: nbclient stops at the failing cell; the results notebook shows the same."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = make_notebook([c.split("\n", 1)[1] for c in GUARD])  # one cell each, no markers
    reference = nbformat.read(nb, as_version=4)
    with pytest.raises(CellExecutionError):
        NotebookClient(
            reference, kernel_name="python3", resources={"metadata": {"path": str(in_tmp)}}
        ).execute()
    assert not (in_tmp / "report.json").exists()
    result = run_pipeline(
        load_notebook(nb), inspect_notebook(nb), in_tmp / "work", {}, LocalExecutor(jobs=2)
    )
    out = nbformat.read(result.notebook, as_version=4)
    assert shown(out) == shown(reference)
    assert not (in_tmp / "report.json").exists()


def test_the_volume_records_the_first_failed_cell(tmp_path: Path) -> None:
    """What a runtime reads before starting its step (``--kafka``, the cluster)."""
    from jup2kub_runtime.storage.state_store import StateStore

    store = StateStore(tmp_path)
    assert store.failed_at("run-1") is None
    store.record_failed("run-1", "late", 7)
    store.record_failed("run-1", "early", 3)
    assert store.failed_at("run-1") == 3
    assert store.failed_at("run-2") is None
