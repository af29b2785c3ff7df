"""Recovering a run from the analysis' blind spot: the runtime's guard saw a step change an input
in place that the plan took for read-only (a function kept in a dict, an object holding its
argument, a third-party call), so later steps would have got the unchanged value.

The guard fails that step, and the run stops as at any failure. When that failure comes first in
notebook order (an earlier one is nbclient's own), the run is re-planned as if the analysis had
seen the change (``model.learned``): the value becomes an output of the step, and the steps
after it that read it now read it from there. The run then goes on from the last safe point:
in the embedded mode, resumed in place (what completed unchanged is kept, the rest executes);
with ``--kafka``, which cannot resume, as a new run. Re-running is refused, naming why, when it
would repeat effects outside the pipeline's values (a file written, a program run) that already
happened: then the result could differ from the notebook's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jup2kub.model.learned import (
    LEARNED_FILE,
    InPlaceChange,
    Learned,
    cell_sha256,
    read_learned,
    record_learned,
)
from jup2kub.model.notebook import Notebook
from jup2kub.model.pipeline import Pipeline, Step
from jup2kub.run.executor import DONE, FAILED, RunResult, failed_at
from jup2kub_runtime.contract.errors import GUARD_PHASE, INPUT_CHANGED, RANDOM_DRAWN
from jup2kub_runtime.execution.randomness import RANDOM_STATE

#: re-plans of one run at most (each must learn something new, so this is only a backstop)
MAX_REPLANS = 8


@dataclass(frozen=True)
class Caught:
    """An in-place change the guard caught, where the first failure of the run was."""

    change: InPlaceChange
    cell_known: bool  # False: seen at the step's end (a large value), put at its last cell


def caught(result: RunResult, nb: Notebook, pipeline: Pipeline) -> list[Caught]:
    """The guard's in-place changes behind ``result``'s failure, or none when the run's first
    failure in notebook order is another (the notebook would have stopped there itself)."""
    first = failed_at(pipeline, result.steps)
    if first is None or not _is_change(first.error):
        return []
    seen = datetime.now(timezone.utc).isoformat(timespec="seconds")
    found = []
    for st in result.steps.values():
        if st.state != FAILED or not _is_change(st.error):
            continue
        step = pipeline.step(st.name)
        err = st.error
        assert err is not None  # _is_change
        cell = err.cell if err.cell is not None else max(step.cells)
        change = InPlaceChange(
            cell_sha256(nb.cells[cell].source),
            err.variable or RANDOM_STATE,  # a draw from the global generators has none
            cell,
            Path(nb.path).name,
            st.name,
            result.run_id,
            seen,
        )
        found.append(Caught(change, err.cell is not None))
    return found


def _is_change(error: Any) -> bool:
    """An input changed in place, or the global generators drawn from: a value the step
    changes that the plan took for read-only, which a re-plan hands on from that step.

    Not a generator held in a variable and drawn from (RANDOM_DRAWN naming it): the step drew
    from its own copy (a loaded value), which may be a copy of a global generator
    (``draw = np.random.rand``); handing the copy on would not continue the notebook's global
    stream, so that failure stands, with the guard's message saying what to change."""
    if error is None or error.phase != GUARD_PHASE:
        return False
    if error.ename == RANDOM_DRAWN:
        return error.variable is None
    return error.ename == INPUT_CHANGED and bool(error.variable)


# ---- whether going on gives the notebook's result --------------------------------------------


def repeated_effects(
    result: RunResult, found: Iterable[Caught], old: Pipeline, new: Pipeline, *, resumed: bool
) -> list[str]:
    """The effects outside the pipeline's values that going on would repeat (none: it may):
    those of the failed steps' cells that ran, and of the completed steps that run again (in
    place: the ones the re-plan put after a failed step; in a new run: every one)."""
    repeated = []
    for c in found:
        step = old.step(c.change.step)
        ran = c.change.cell if c.cell_known else max(step.cells)
        for effect in step.effects:
            if effect.cell is None or effect.cell <= ran:  # None: it may have run
                repeated.append(f"step {step.name!r}: {effect}")
    again = _after_failed(new, [c.change.step for c in found]) if resumed else set(result.steps)
    names = {s.name for s in new.steps}
    for name in sorted(again & names):
        if name in result.steps and result.steps[name].state == DONE:
            repeated += [f"step {name!r}: {e}" for e in new.step(name).effects]
    return repeated


def _after_failed(pipeline: Pipeline, failed: Iterable[str]) -> set[str]:
    """The steps that come after any of ``failed`` in ``pipeline`` (by its edges)."""
    found: set[str] = set()
    for name in pipeline.topological_order():
        if any(a in failed or a in found for a in pipeline.step(name).after):
            found.add(name)
    return found


def unresolved(found: Iterable[Caught], new: Pipeline) -> list[str]:
    """The changes the re-plan does not account for: the value is still a read-only input of
    the step holding the cell (the analysis cannot make it an output there)."""
    missing = []
    for c in found:
        step = _step_of(new, c.change.cell)
        if step is None:
            continue
        var = c.change.variable
        if var in step.readonly_inputs or (var == RANDOM_STATE and step.random_guard):
            missing.append(f"{_value(var)} an output of step {step.name!r}")
    return missing


def _step_of(pipeline: Pipeline, cell: int) -> Step | None:
    return next((s for s in pipeline.steps if cell in s.cells), None)


# ---- what is said and recorded ---------------------------------------------------------------


def record(c: Caught, new: Pipeline, failed_run: str, learned_in: str) -> dict[str, Any]:
    """The recovery's entry in summary.json."""
    change = c.change
    step = _step_of(new, change.cell)
    holder = step.name if step is not None else change.step
    readers = [s.name for s in new.steps if s.inputs.get(change.variable) == holder]
    return {
        "step": change.step,
        "variable": change.variable,
        "cell": change.cell,
        "cell_known": c.cell_known,
        "fix": f"{_value(change.variable)} made an output of step {holder!r}",
        "now_read_by": readers,
        "failed_run": failed_run,
        "learned": learned_in,
    }


def warning(c: Caught, doc: dict[str, Any], how: str) -> str:
    """The one line a recovery is announced with."""
    change = c.change
    where = f"in cell {change.cell}" if c.cell_known else f"(by its last cell, {change.cell})"
    readers = doc["now_read_by"]
    steps = "step" if len(readers) == 1 else "steps"
    read = f", read from there by {steps} {', '.join(map(repr, readers))}" if readers else ""
    return (
        f"step {change.step!r} {change.action(past=True)} {where}, which the analysis did not "
        f"see (the guard did): re-planned with {doc['fix']}{read}, and {how}; recorded in "
        f"{doc['learned']} for inspect, build and later runs"
    )


def _value(variable: str) -> str:
    return "the global random state" if variable == RANDOM_STATE else repr(variable)


# ---- one re-plan -----------------------------------------------------------------------------

Reload = Callable[[Learned], tuple[Notebook, Pipeline]]
Warn = Callable[[str], None]
#: where ``learn`` says it kept what it learned when it could not write it
NOT_RECORDED = "this run only"


@dataclass(frozen=True)
class Replan:
    """What to do after a run the guard failed: go on with ``pipeline`` (saying ``warnings``,
    recording ``records`` in the summary), or stop because ``refused``."""

    nb: Notebook
    pipeline: Pipeline
    records: list[dict[str, Any]]
    warnings: list[str]
    refused: str | None = None


def replan(
    result: RunResult,
    nb: Notebook,
    pipeline: Pipeline,
    reload: Reload,
    *,
    resumable: bool,
    warn: Warn | None,
) -> Replan | None:
    """The re-plan after ``result`` (None: its failure is not one the guard caught first)."""
    found = caught(result, nb, pipeline)
    if not found:
        return None
    learned, where = learn([c.change for c in found], warn)
    new_nb, new = reload(learned)
    missing = unresolved(found, new)
    repeated = repeated_effects(result, found, pipeline, new, resumed=resumable)
    if missing or repeated:
        why = (
            f"re-planning cannot make {missing[0]}"
            if missing
            else f"going on would repeat what already happened outside the pipeline "
            f"({'; '.join(repeated)}), so the result could differ from the notebook's"
        )
        if where != NOT_RECORDED:
            why += f"; the change is recorded in {where}: the next run plans for it from the start"
        return Replan(nb, pipeline, [], [], refused=why)
    how = (
        "resumed the run from there"
        if resumable
        else f"ran the pipeline again (run {result.run_id} stays failed)"
    )
    docs = [record(c, new, result.run_id, where) for c in found]
    lines = [warning(c, doc, how) for c, doc in zip(found, docs, strict=True)]
    return Replan(new_nb, new, docs, lines)


def learn(changes: list[InPlaceChange], warn: Warn | None) -> tuple[Learned, str]:
    """Record ``changes`` for later plans; returns what is known now and where it is kept."""
    where = str(LEARNED_FILE.absolute())
    try:
        return record_learned(changes), where
    except OSError as exc:
        if warn is not None:
            warn(f"cannot record what this run learned in {where} ({exc.strerror or exc})")
        return read_learned().adding(changes), NOT_RECORDED
