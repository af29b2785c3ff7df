"""One run procedure, two executors (like Ploomber's): ``run_pipeline`` records the run, writes
the step bundles, hands the steps to an ``Executor``, and writes the results notebook and the
summary, whichever executor ran the steps.

- ``LocalExecutor`` (``run.local``): one process per step, no Kafka (``jup2kub run``).
- ``KafkaExecutor`` (``run.kafka``): one runtime process per step on a broker, the run submitted
  through Kafka: the cluster's data path on one machine (``jup2kub run --kafka``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from jup2kub.errors import InputError, RunInterrupted, RunStorageError, Terminated, UsageError
from jup2kub.files import atomic_write_text
from jup2kub.model.notebook import Notebook
from jup2kub.model.pipeline import Pipeline, Step
from jup2kub.plan import PipelinePlan, plan_pipeline
from jup2kub.run.notebook_nodes import notebook_text
from jup2kub.run.results import mark_reused, results_notebook
from jup2kub_runtime.contract.errors import ErrorRecord, StateError, StepRuntimeError
from jup2kub_runtime.contract.metrics import ExecutionOutcome
from jup2kub_runtime.contract.states import StepState
from jup2kub_runtime.contract.tracing import PIPELINE, RUN_ID, run_span_name
from jup2kub_runtime.execution.tracing import NO_SPAN, Span, tracer
from jup2kub_runtime.storage.state_store import StateStore

#: a step's states in a local run (the runtime's one vocabulary)
WAITING, RUNNING, DONE, FAILED, BLOCKED = (
    StepState.WAITING,
    StepState.RUNNING,
    StepState.SUCCEEDED,
    StepState.FAILED,
    StepState.BLOCKED,
)


@dataclass
class StepRun:
    """What one step of a run is doing, as the progress display and the summary show it."""

    name: str
    state: StepState = WAITING
    started: float | None = None
    finished: float | None = None
    error: ErrorRecord | None = None
    reused: bool = False  # not executed: kept from the resumed run, or loaded from the cache
    #: why it executed or was reused (the step cache's decision), empty without a cache
    why: str = ""
    cell: int | None = None  # while running: the cell it executes, when the executor knows

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.monotonic()) - self.started


@dataclass
class RunResult:
    run_id: str
    workdir: Path
    steps: dict[str, StepRun]
    notebook: Path
    summary: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    #: where the results notebook was also written (``run -o``), if asked
    output: Path | None = None
    #: the run's time limit (``--timeout``) ended it: its running steps were killed
    timed_out: float | None = None
    #: the changes in place the guard caught and the run recovered from (``run.recovery``),
    #: as summary.json records them
    recovered: list[dict[str, Any]] = field(default_factory=list)
    #: why the run did not recover from a change the guard caught (None: nothing to say)
    unrecovered: str | None = None
    #: the run's RO-Crate metadata file (``provenance``), once written
    crate: Path | None = None

    @property
    def ok(self) -> bool:
        return all(s.state == DONE for s in self.steps.values())

    @property
    def failed(self) -> list[StepRun]:
        return [s for s in self.steps.values() if s.state == FAILED]


OnChange = Callable[[dict[str, StepRun]], None]


class StepReuse(Protocol):
    """The step cache as the executors see it (``run.reuse.RunCache``)."""

    def reuse(self, run: Run, name: str) -> bool:
        """``name`` is ready: True if its results were put in place instead of executing."""

    def executed(self, run: Run, name: str, seconds: float | None) -> None:
        """``name`` completed by executing."""

    def summary(self, name: str) -> dict[str, Any]:
        """The decision for ``name``, for summary.json (empty if none)."""


@dataclass
class Run:
    """One run as an executor sees it: where its state, bundles and logs are."""

    run_id: str
    pipeline: Pipeline
    plan: PipelinePlan
    store: StateStore
    workdir: Path
    parameters: Mapping[str, Any]
    bundles: dict[str, Path]
    logs: Path
    steps: dict[str, StepRun]
    on_change: OnChange | None = None
    #: the step cache (None: every step executes, as with --kafka)
    cache: StepReuse | None = None
    #: set by an executor whose time limit ended the run (its seconds)
    timed_out: float | None = None
    #: the run's root span (``run <pipeline>``), when the environment turns traces on: the
    #: parent of its root steps' spans
    trace: Span = NO_SPAN

    def notify(self) -> None:
        if self.on_change is not None:
            self.on_change(self.steps)

    def reuse(self, name: str) -> bool:
        """Whether ``name``'s results were put in place without executing it (the cache)."""
        if self.cache is None or not self.cache.reuse(self, name):
            return False
        st = self.steps[name]
        st.state, st.reused = DONE, True
        return True

    def executed(self, name: str) -> None:
        if self.cache is not None:
            self.cache.executed(self, name, self.steps[name].seconds)

    def tick(self) -> None:
        """Every second or so while steps run: which cell each running step executes (what
        its process recorded in the store), then ``notify``, so that a running step's elapsed
        time shows, and a hung step shows where."""
        for st in self.steps.values():
            if st.state == RUNNING:
                with contextlib.suppress(OSError, ValueError, StepRuntimeError):
                    st.cell = self.store.progress(self.run_id, st.name)[0]
        self.notify()


class Executor(Protocol):
    """Runs the steps of a recorded run, updating ``run.steps`` as they progress."""

    #: recorded with the run ("embedded" | "kafka")
    mode: str
    #: whether it can continue an earlier run (``--resume``)
    resumable: bool

    def execute(self, run: Run) -> None: ...

    def close(self) -> None:
        """Release what ``execute`` started; called once the results are written."""


def failed_at(pipeline: Pipeline, steps: Mapping[str, StepRun]) -> StepRun | None:
    """The failed step whose failing cell comes first in notebook order (None: none failed):
    nbclient stops there, so no step starting past it may start (steps before it still run)."""
    failed = [
        (failing_cell(st, s), st)
        for s in pipeline.steps
        if (st := steps[s.name]).state == FAILED and s.cells
    ]
    return min(failed, key=lambda f: f[0], default=(None, None))[1]


def failing_cell(st: StepRun, step: Step) -> int:
    """The cell a failed step failed in (its first when the error names none)."""
    return st.error.cell if st.error is not None and st.error.cell is not None else min(step.cells)


def new_run_id() -> str:
    """A sortable, unique run id: ``run-<UTC time>-<12 hex>`` (48 random bits: hundreds of
    runs submitted in one second do not collide, as one in 6 hex digits' 16 M could)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"run-{stamp}-{secrets.token_hex(6)}"


def run_pipeline(
    nb: Notebook,
    pipeline: Pipeline,
    workdir: Path,
    parameters: Mapping[str, Any],
    executor: Executor,
    *,
    resume: str | None = None,
    on_change: OnChange | None = None,
    cache: StepReuse | None = None,
    recovered: Sequence[Mapping[str, Any]] = (),
) -> RunResult:
    """Run ``pipeline`` with ``executor``; with ``resume``, again in run ``resume``, reusing
    what it completed (with ``cache``: only the steps whose key is unchanged). ``recovered``:
    the re-plans that led to this run (``run.recovery``), for its summary."""
    if resume is not None and not executor.resumable:
        raise UsageError(
            f"--resume works with the embedded mode only, not {executor.mode}",
            hint="drop --kafka to resume a run",
        )
    workdir = Path(workdir).absolute()
    _writable(workdir)
    store = StateStore(workdir)
    with contextlib.suppress(OSError):  # leftovers of writers killed in earlier runs
        store.sweep_temporaries()
    if resume is not None:
        parameters = _resumed_parameters(store, workdir, resume, pipeline, parameters)
    run = _start(nb, pipeline, store, workdir, resume or new_run_id(), parameters, executor.mode)
    run.on_change, run.cache = on_change, cache
    if resume is not None:  # this version of the notebook, these parameters
        store.write_json(
            store.run_dir(resume) / "run.json",
            {
                "run_id": resume,
                "parameters": dict(parameters),
                "notebook": nb.path,
                "notebook_sha256": pipeline.notebook_sha256,
                "mode": executor.mode,
            },
        )
    for name, st in run.steps.items():
        if cache is None and store.is_complete(run.run_id, name):
            st.state, st.reused = DONE, True
    run.notify()
    traces = tracer()
    run.trace = traces.span(
        run_span_name(pipeline.name), {PIPELINE: pipeline.name, RUN_ID: run.run_id}
    )
    try:
        try:
            executor.execute(run)
        finally:
            executor.close()  # before an interruption is reported: no step process remains
            ok = all(s.state == DONE for s in run.steps.values())
            outcome = ExecutionOutcome.SUCCEEDED if ok else ExecutionOutcome.FAILED
            run.trace.end(outcome.value, error=not ok)
            traces.flush()
    except (KeyboardInterrupt, Terminated) as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        raise RunInterrupted(
            run.run_id,
            str(workdir),
            int(signum),
            notebook=pipeline.notebook,
            resumable=executor.resumable,
        ) from None
    return _finish(nb, run, executor.mode, recovered)


def _resumed_parameters(
    store: StateStore, workdir: Path, run_id: str, pipeline: Pipeline, parameters: Mapping[str, Any]
) -> dict[str, Any]:
    info = store.run_info(run_id)
    if info is None:
        raise InputError(
            f"there is no run {run_id!r} to resume",
            where=str(workdir),
            hint="list runs with `ls WORKDIR/runs`, or pass the --workdir of that run",
        )
    return dict(info.get("parameters") or {}) | dict(parameters)


def _writable(workdir: Path) -> None:
    probe = workdir / f".probe-{os.getpid()}"
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        raise InputError(
            f"the work directory is not writable ({exc.strerror})",
            where=str(workdir),
            hint="pass --workdir with a writable directory that has free space",
        ) from exc
    probe.unlink()


def _start(
    nb: Notebook,
    pipeline: Pipeline,
    store: StateStore,
    workdir: Path,
    run_id: str,
    parameters: Mapping[str, Any],
    mode: str,
) -> Run:
    """Record the run and write the step bundles."""
    store.record_run(
        run_id, parameters, notebook=nb.path, notebook_sha256=pipeline.notebook_sha256, mode=mode
    )
    plan = plan_pipeline(pipeline)
    bundles = plan.write_bundles(workdir / "bundles" / pipeline.notebook_sha256[:16])
    logs = store.run_dir(run_id) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    steps = {s.name: StepRun(s.name) for s in pipeline.steps}
    return Run(run_id, pipeline, plan, store, workdir, parameters, bundles, logs, steps)


def _finish(nb: Notebook, run: Run, mode: str, recovered: Sequence[Mapping[str, Any]]) -> RunResult:
    """Write the results notebook and the summary (atomically) and return the result."""
    steps, store, run_id = run.steps, run.store, run.run_id
    status = "succeeded" if all(s.state == DONE for s in steps.values()) else "failed"
    if run.cache is None:
        _reused_by_runtimes(run)
    try:
        result_nb = results_notebook(nb.node, run.pipeline, store, run_id, run.parameters, status)
        mark_reused(result_nb, run.pipeline, {n: st.why for n, st in steps.items() if st.reused})
        run_dir = store.run_dir(run_id)
        notebook_path = run_dir / "result.ipynb"
        atomic_write_text(notebook_path, notebook_text(result_nb))
        summary: dict[str, Any] = {
            "run_id": run_id,
            "pipeline": run.pipeline.name,
            "notebook": str(Path(nb.path).absolute()),  # every path here is absolute
            "mode": mode,
            "status": status,
            **({"timed_out_after": run.timed_out} if run.timed_out else {}),
            "parameters": dict(run.parameters),
            "result_notebook": str(notebook_path),
            "steps": {name: _step_summary(store, run_id, st) for name, st in steps.items()},
            **({"recovered": [dict(r) for r in recovered]} if recovered else {}),
        }
        if run.cache is not None:
            for name, doc in summary["steps"].items():
                doc["cache"] = run.cache.summary(name)
        summary["executed"] = [
            n for n, st in steps.items() if not st.reused and st.state in (DONE, FAILED)
        ]
        summary["reused"] = [n for n, st in steps.items() if st.reused]
        summary_path = run_dir / "summary.json"
        atomic_write_text(summary_path, json.dumps(summary, indent=2) + "\n")
        return RunResult(
            run_id,
            run.workdir,
            steps,
            notebook_path,
            summary_path,
            dict(run.parameters),
            timed_out=run.timed_out,
            recovered=[dict(r) for r in recovered],
        )
    except OSError as exc:
        failed = "; ".join(
            f"step {st.name!r}: {st.error.evalue if st.error else 'failed'}"
            for st in steps.values()
            if st.state == FAILED
        )
        raise RunStorageError(
            f"cannot write the results of run {run_id!r} ({exc.strerror or exc})"
            + (f"; {failed}" if failed else ""),
            where=str(run.workdir),
            hint=f"free space (or pick another --workdir), then `--resume {run_id}`: the steps "
            "that completed are kept, and no result was written as if complete",
        ) from exc


def _reused_by_runtimes(run: Run) -> None:
    """Steps whose runtime loaded the step cache's result (``--kafka``: the marker says)."""
    for name, st in run.steps.items():
        if st.state != DONE or st.reused:
            continue
        with contextlib.suppress(OSError, ValueError, StateError):
            marker = run.store.completion(run.run_id, name) or {}
            if marker.get("reused"):
                st.reused = True
                st.why = (
                    f"unchanged (its runtime reused the result of run {marker.get('from_run')})"
                )


def _step_summary(store: StateStore, run_id: str, st: StepRun) -> dict[str, Any]:
    return {
        "status": st.state.value,
        "seconds": None if st.seconds is None else round(st.seconds, 3),
        "reused": st.reused,
        "outputs": str(store.result_dir(run_id, st.name)),
        **({"error": st.error.to_json()} if st.error else {}),
    }


def explain(pipeline: Pipeline, step: str, error: object) -> ErrorRecord:
    """The step's error record; for a value that could not be stored, also naming the steps
    that needed it (the runtime only knows the step that made it)."""
    record = ErrorRecord.from_json(error)
    if record.ename != "OutputError" or record.variable is None:
        return record
    readers = [s.name for s in pipeline.steps if s.inputs.get(record.variable) == step]
    if not readers:
        return record
    needed = ", ".join(repr(r) for r in readers)
    return dataclasses.replace(record, evalue=f"{record.evalue} (needed by step {needed})")


def killed_in_cell(
    store: StateStore, run_id: str, step: str, signum: int, note: str = ""
) -> object | None:
    """A step process killed by ``signum`` while a cell ran (by either executor): the error
    names that cell, and the outputs of the cells before it are kept as a failed attempt's
    (the results show them); None when it died before its first cell."""
    cell, finished = store.progress(run_id, step)
    if cell is None:
        return None
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    record = ErrorRecord(
        cell,
        "StepKilled",
        f"the step's process was killed by {name} while cell {cell} ran"
        + (f" ({note})" if note else ""),
        phase="cell",
    )
    outputs = {"version": 1, "step": step, "parameters": {}, "cells": finished}
    store.save_failure(
        run_id, step, outputs={**outputs, "error": record.to_json()}, error=record, timing={}
    )
    store.clear_progress(run_id, step)
    return record.to_json()
