"""Fencing on the state volume: a step's result is applied exactly once, even when its lock
fails to exclude a second execution (an NFS lease lost in a partition). Each execution writes
its own attempt directory and the completion marker is created exclusively: the first one
wins, downstream steps read the winner's values, and the late one reports "skipped"."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from jup2kub_runtime.contract.spec import Cell, StepSpec
from jup2kub_runtime.contract.states import StepState
from jup2kub_runtime.execution.step_run import run_step
from jup2kub_runtime.storage.state_store import MARKER, StateStore

RUN = "r1"
#: both executions wait here until both are inside the step's code, so that both run it
RENDEZVOUS = """\
import os, time
ready = os.path.join(os.environ["J2K_TEST_MEET"], "in-" + os.environ["J2K_TEST_WHO"])
open(ready, "w").close()
deadline = time.monotonic() + 60
while len(os.listdir(os.environ["J2K_TEST_MEET"])) < 2:
    assert time.monotonic() < deadline, "the other execution never started"
    time.sleep(0.01)
who = os.environ["J2K_TEST_WHO"]
payload = [who] * 1000
"""


def specs() -> tuple[StepSpec, StepSpec]:
    make = StepSpec(
        pipeline="p",
        step="make",
        cells=[Cell(0, RENDEZVOUS)],
        outputs=["who", "payload"],
        downstream=["use"],
    )
    use = StepSpec(
        pipeline="p",
        step="use",
        cells=[Cell(1, "seen = (who, len(set(payload)))")],
        inputs={"who": "make", "payload": "make"},
        outputs=["seen"],
        upstream=["make"],
    )
    return make, use


@contextlib.contextmanager
def always_granted(
    self: StateStore, run_id: str, step: str, *, blocking: bool = False
) -> Iterator[bool]:
    """A lock that never excludes anyone: what a lost lease amounts to."""
    yield True


def execute(
    root: str, meet: str, who: str, results: multiprocessing.Queue[tuple[str, str]]
) -> None:
    os.environ["J2K_TEST_MEET"], os.environ["J2K_TEST_WHO"] = meet, who
    StateStore.lock = always_granted  # type: ignore[assignment,method-assign]
    outcome = run_step(specs()[0], StateStore(root), RUN)
    results.put((who, outcome.status.value))


def test_two_executions_without_a_lock_apply_one_result(tmp_path: Path) -> None:
    root, meet = tmp_path / "state", tmp_path / "meet"
    meet.mkdir()
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[tuple[str, str]] = ctx.Queue()
    procs = [ctx.Process(target=execute, args=(str(root), str(meet), w, results)) for w in "AB"]
    for p in procs:
        p.start()
    outcomes = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sorted(os.listdir(meet)) == ["in-A", "in-B"]  # both executed the step's code
    # one won, the other found the marker taken and reports the step as done meanwhile
    assert sorted(outcomes.values()) == [StepState.SKIPPED.value, StepState.SUCCEEDED.value]
    (winner,) = [w for w, status in outcomes.items() if status == StepState.SUCCEEDED.value]

    store = StateStore(root)
    step = store.step_dir(RUN, "make")
    assert [p.name for p in step.iterdir() if p.name == MARKER] == [MARKER]
    attempts = [p for p in step.iterdir() if p.name.startswith("attempt-")]
    assert attempts == [store.result_dir(RUN, "make")]  # the loser's attempt is gone
    assert store.attempts(RUN, "make") >= 1
    assert not list(root.rglob(".*.tmp-*"))
    assert store.load_value(RUN, "make", "who") == winner
    # downstream reads the winner's values, all of them from the one attempt
    use = specs()[1]
    assert run_step(use, store, RUN).status is StepState.SUCCEEDED
    assert store.load_value(RUN, "use", "seen") == (winner, 1)
    assert store.load_value(RUN, "make", "payload") == [winner] * 1000


def test_a_late_result_never_replaces_the_one_downstream_reads(tmp_path: Path) -> None:
    """The loser's commit comes after the winner's, after downstream started reading."""
    store = StateStore(tmp_path)
    for who in ("first", "late"):
        values = {"who": who, "payload": [who]}
        won = store.save_step(RUN, "make", values, outputs={}, timing={}, attempt=1)
        assert won is (who == "first")
    assert store.load_inputs(RUN, {"who": "make", "payload": "make"}) == {
        "who": "first",
        "payload": ["first"],
    }
    marker = store.completion(RUN, "make") or {}
    assert store.result_dir(RUN, "make").name == marker["dir"]
    assert len([p for p in store.step_dir(RUN, "make").iterdir() if p.is_dir()]) == 1


def test_a_forced_execution_takes_the_marker_and_drops_the_old_result(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.save_step(RUN, "make", {"who": "old"}, outputs={}, timing={})
    old = store.result_dir(RUN, "make")
    assert store.save_step(RUN, "make", {"who": "new"}, outputs={}, timing={}, replace=True)
    assert store.load_value(RUN, "make", "who") == "new"
    assert not old.exists() and store.result_dir(RUN, "make") != old


def test_a_step_stored_by_an_older_runtime_still_loads(tmp_path: Path) -> None:
    """Before attempt directories: values in the step directory, a marker naming no attempt."""
    store = StateStore(tmp_path)
    assert store.save_step(RUN, "make", {"who": "old", "payload": [1, 2]}, outputs={}, timing={})
    attempt = store.result_dir(RUN, "make")
    step = store.step_dir(RUN, "make")
    for item in attempt.iterdir():
        item.rename(step / item.name)
    attempt.rmdir()
    marker = json.loads((step / MARKER).read_text())
    del marker["dir"]
    (step / MARKER).write_text(json.dumps(marker))

    assert store.result_dir(RUN, "make") == step
    assert store.outputs(RUN, "make") == {}
    assert store.stored_sizes(RUN, "make").keys() == {"who", "payload"}
    assert run_step(specs()[1], store, RUN).status is StepState.SUCCEEDED
    assert store.load_value(RUN, "use", "seen") == ("old", 2)
    # executed again (a redelivery) it is a skip: the old result stays the result
    assert run_step(specs()[0], store, RUN).status is StepState.SKIPPED


@pytest.mark.parametrize("marker", ["{}", '{"dir": "../../elsewhere"}', '{"dir": 3}'])
def test_a_marker_naming_no_attempt_of_its_own_step_reads_the_step_directory(
    tmp_path: Path, marker: str
) -> None:
    store = StateStore(tmp_path)
    step = store.step_dir(RUN, "make")
    step.mkdir(parents=True)
    (step / MARKER).write_text(marker)
    assert store.result_dir(RUN, "make") == step
