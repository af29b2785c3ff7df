"""One execution of one step for one run, over the state store, without Kafka.

``run_step`` is shared by the Kafka loop and the local runner (``jup2kub run``). As a command
(``jup2kub_runtime.STEP_RUN_MODULE`` names this module for ``python -m``)::

    python -m jup2kub_runtime.step_run --spec step.json --state DIR --run-id ID \
        [--params JSON] [--timeout SECONDS] [--force] [--echo] [--wait]

Exit codes: 0 succeeded (or already complete), 1 the step's code failed (error.json and
outputs.json are in the step's state directory; the error is printed as JSON on stderr),
2 bad usage, spec, run id or missing upstream, 3 another process is executing the same step,
4 (``--wait``) cancelled before it started.

``--wait`` starts the process ahead of time: it loads the spec, imports and compiles what the
step needs, then waits for a line ``go`` on stdin before it executes; end of input instead
cancels it (the local runner starts the next steps this way while their upstream runs).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import STEP_RUN_MODULE
from ..contract.config import GuardSettings
from ..contract.errors import (
    CellError,
    ErrorRecord,
    MissingInputError,
    OutputError,
    StateError,
    StepRuntimeError,
)
from ..contract.spec import StepSpec
from ..contract.states import StepState
from ..contract.valid_names import check_run_id
from ..storage.state_store import StateStore
from ..storage.stepcache import CacheStore, StepReuse
from .cell_runner import execute_step
from .guards import StepGuards
from .local_modules import importable_here
from .output_capture import CellRecord
from .placeholders import stand_ins
from .preimport import warm_up


@dataclass(frozen=True)
class StepOutcome:
    """What ``run_step`` did: executed (succeeded), found it complete (skipped), or found
    another live process executing it (busy)."""

    status: StepState  # SUCCEEDED, SKIPPED or BUSY
    attempt: int = 0
    seconds: float = 0.0
    #: succeeded by loading the step cache's entry for its key (not executed)
    reused: bool = False


def run_step(
    spec: StepSpec,
    store: StateStore,
    run_id: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    force: bool = False,
    echo: bool = False,
    timeout: float | None = None,
    on_start: Callable[[int], None] | None = None,
    workdir: Path | None = None,
    guards: GuardSettings | None = None,
    cache: CacheStore | None = None,
    on_cells: Callable[[list[CellRecord], ErrorRecord | None], None] | None = None,
) -> StepOutcome:
    """Execute ``spec`` for ``run_id`` unless already complete; store the results.

    Raises MissingInputError (upstream incomplete), CellError (the code raised: retryable
    unless ``.permanent``), OutputError (unpicklable output: permanent), StateError (volume).
    Exactly-once guard: a completion marker short-cuts, and an flock excludes a concurrent
    execution of the same (run, step) by another process on the same volume; should the lock
    fail to (a lost NFS lease), the marker is created exclusively and the late execution's
    results are dropped: it reports SKIPPED, as if it had found the step complete. ``guards``:
    the checks of the analysis' assumptions (default: from the environment, J2K_GUARD_*).
    ``cache``: the step cache (a cacheable step whose key has an entry there is loaded from it
    instead of executed, under the same lock; an executed one is kept there). ``on_cells``
    gets the records of the cells executed and the error, if any (the cells' spans).
    """
    settings = GuardSettings.from_env() if guards is None else guards
    check_run_id(run_id)
    if not force and store.is_complete(run_id, spec.step):
        return StepOutcome(StepState.SKIPPED)
    missing = [s for s in spec.upstream if not store.is_complete(run_id, s)]
    if missing:
        raise MissingInputError(
            f"run {run_id!r}: step {spec.step!r} waits for {', '.join(missing)}"
        )
    with store.lock(run_id, spec.step) as got:
        if not got:
            return StepOutcome(StepState.BUSY)
        if not force and store.is_complete(run_id, spec.step):
            return StepOutcome(StepState.SKIPPED)
        reuse = None
        if cache is not None and spec.cache:
            cwd = workdir if workdir is not None else Path.cwd()
            reuse = StepReuse(spec, store, run_id, parameters or {}, cache, cwd)
            reused = reuse.reuse()
            if reused is StepState.SUCCEEDED:
                return StepOutcome(StepState.SUCCEEDED, 0, 0.0, reused=True)
            if reused is StepState.SKIPPED:
                return StepOutcome(StepState.SKIPPED)
        attempt = store.next_attempt(run_id, spec.step)
        if on_start is not None:
            on_start(attempt)
        inputs = store.load_inputs(run_id, spec.inputs)
        checks = StepGuards(spec, settings, stored_sizes(store, run_id, spec.readonly_inputs, spec))
        with _working_directory(workdir):
            result = execute_step(
                spec,
                inputs,
                parameters,
                echo=echo,
                timeout=timeout,
                guards=checks,
                on_cell=functools.partial(_progress, store, run_id, spec.step),
            )
        store.clear_progress(run_id, spec.step)
        if on_cells is not None:
            on_cells(result.cells, result.error)
        if result.error is not None:
            store.save_failure(
                run_id,
                spec.step,
                outputs=result.outputs_document(),
                error=result.error,
                timing=result.timing(),
            )
            raise CellError(result.error, permanent=result.permanent)
        try:
            won = store.save_step(
                run_id,
                spec.step,
                stand_ins(result.values, spec.placeholders, spec.step),
                outputs=result.outputs_document(),
                timing={**result.timing(), "attempt": attempt},
                upstream_steps=list(spec.upstream),
                attempt=attempt,
                groups=spec.groups,
                replace=force,
            )
            if not won:  # another execution completed it meanwhile: its results stand
                return StepOutcome(StepState.SKIPPED)
            if reuse is not None:
                reuse.keep(result.seconds)
        except OutputError as exc:
            store.save_failure(
                run_id,
                spec.step,
                outputs=result.outputs_document(),
                error=ErrorRecord.of(exc, phase="outputs"),
                timing=result.timing(),
            )
            raise
        return StepOutcome(StepState.SUCCEEDED, attempt, result.seconds)


def _progress(
    store: StateStore, run_id: str, step: str, cell: int, previous: CellRecord | None
) -> None:
    """Best effort: a process killed by a signal is explained by it (never fails a step)."""
    with contextlib.suppress(StateError):
        store.record_progress(run_id, step, cell, None if previous is None else previous.to_dict())


def stored_sizes(
    store: StateStore, run_id: str, names: list[str], spec: StepSpec
) -> dict[str, int]:
    """The stored size (values.json ``bytes``: a group's whole file) of each of ``names``
    among ``spec``'s inputs that its manifest records (older manifests have none)."""
    manifests: dict[str, dict[str, Any]] = {}
    sizes: dict[str, int] = {}
    for name in names:
        step = spec.inputs[name]
        if step not in manifests:
            manifests[step] = store.manifest(run_id, step)
        entry = manifests[step].get(name)
        size = entry.get("bytes") if isinstance(entry, dict) else None
        if isinstance(size, int):
            sizes[name] = size
    return sizes


@contextlib.contextmanager
def _working_directory(path: Path | None) -> Iterator[None]:
    """Relative paths in the step's code resolve in ``path`` (None: the current directory);
    afterwards the process is back where it was, even if the code changed directory (``os.chdir``
    is replayed in later steps, so a long-lived step process must not accumulate it)."""
    previous = os.getcwd()
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        os.chdir(path)
    try:
        with importable_here():  # the notebook's own modules, as a kernel finds them
            yield
    finally:
        os.chdir(previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {STEP_RUN_MODULE}", description="Execute one pipeline step for one run."
    )
    parser.add_argument("--spec", required=True, help="step.json (or its directory)")
    parser.add_argument("--state", required=True, help="state store root directory")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--params", default="{}", help="run parameters as a JSON object")
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds, 0 = none")
    parser.add_argument("--force", action="store_true", help="re-execute even if complete")
    parser.add_argument("--echo", action="store_true", help="also print the cells' output")
    parser.add_argument(
        "--wait", action="store_true", help="prepare, then execute only after a line 'go' on stdin"
    )
    args = parser.parse_args(argv)
    return execute_once(
        args.spec,
        args.state,
        args.run_id,
        args.params,
        timeout=args.timeout,
        force=args.force,
        echo=args.echo,
        wait=args.wait,
    )


def execute_once(
    spec_or_path: StepSpec | str,
    state: str,
    run_id: str,
    params_json: str = "{}",
    *,
    timeout: float = 0.0,
    force: bool = False,
    echo: bool = False,
    wait: bool = False,
) -> int:
    """One execution as the command does it (also a fork server's child): the exit code, with
    the status (stdout) or the error (stderr) printed as JSON."""
    try:
        params = json.loads(params_json)
        if not isinstance(params, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        print(f"--params: invalid JSON object: {exc}", file=sys.stderr)
        return 2
    try:
        spec = spec_or_path if isinstance(spec_or_path, StepSpec) else StepSpec.load(spec_or_path)
        if wait:
            warm_up(spec)
            if sys.stdin.readline().strip() != "go":
                return 4
        outcome = run_step(
            spec,
            StateStore(state),
            run_id,
            params,
            force=force,
            echo=echo,
            timeout=timeout or None,
        )
    except (CellError, OutputError) as exc:
        record = exc.record if isinstance(exc, CellError) else ErrorRecord.of(exc)
        print(
            json.dumps(
                {
                    "status": StepState.FAILED.value,
                    "step": spec.step,
                    "run_id": run_id,
                    "error": record.to_json(),
                }
            ),
            file=sys.stderr,
        )
        return 1
    except StepRuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if outcome.status is StepState.BUSY:
        print(
            f"step {spec.step!r} of run {run_id!r} is being executed by another process",
            file=sys.stderr,
        )
        return 3
    print(
        json.dumps(
            {
                "status": outcome.status.value,
                "step": spec.step,
                "run_id": run_id,
                "attempt": outcome.attempt,
                "seconds": round(outcome.seconds, 6),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
