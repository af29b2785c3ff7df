"""Recent runs as one step sees them on the state volume, for ``GET /runs``.

``jup2kub status --release`` asks one pod of every step (through the API server's pod proxy)
and joins the answers into a run x step table. Only the store's small JSON files are read:
never a value, so the endpoint is cheap and cannot leak data, and a run id is all it names.
"""

from __future__ import annotations

import os
from typing import Any

from ..contract.errors import ErrorRecord, PermanentError
from ..contract.states import StepState
from ..contract.valid_names import check_run_id
from ..storage.state_store import StateStore

#: at most this many run directories are looked at per request
MAX_LIMIT = 200


def _newest_runs(store: StateStore, limit: int) -> list[tuple[float, str]]:
    runs: list[tuple[float, str]] = []
    try:
        with os.scandir(store.root / "runs") as it:
            for entry in it:
                if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue
                try:
                    runs.append(
                        (entry.stat(follow_symlinks=False).st_mtime, check_run_id(entry.name))
                    )
                except (OSError, PermanentError):  # a vanished or foreign directory
                    continue
    except FileNotFoundError:
        return []
    runs.sort(reverse=True)
    return runs[:limit]


def step_run(store: StateStore, run_id: str, step: str, busy_run: str | None) -> dict[str, Any]:
    """This step's state for one run: succeeded, failed, running or pending."""
    entry: dict[str, Any] = {"run_id": run_id, "attempts": store.attempts(run_id, step)}
    info = store.run_info(run_id)
    if info and isinstance(info.get("submitted_at"), (int, float)):
        entry["submitted_at"] = info["submitted_at"]
    done = store.completion(run_id, step)
    if done is not None:
        entry.update(
            state=StepState.SUCCEEDED.value, seconds=done.get("seconds"), finished_at=done.get("at")
        )
        return entry
    if run_id == busy_run:
        entry["state"] = StepState.RUNNING.value
        return entry
    error = store.error(run_id, step)
    if error is not None:
        entry.update(
            state=StepState.FAILED.value,
            error=ErrorRecord.from_json(error).summary(),
        )
        return entry
    entry["state"] = StepState.PENDING.value
    return entry


def recent_runs(
    store: StateStore, step: str, limit: int = 20, busy_run: str | None = None
) -> list[dict[str, Any]]:
    """The newest ``limit`` runs on the volume (newest first) with this step's state in each."""
    limit = max(1, min(limit, MAX_LIMIT))
    return [step_run(store, run_id, step, busy_run) for _, run_id in _newest_runs(store, limit)]


def run_outputs(
    store: StateStore, step: str, run_id: str, busy_run: str | None = None
) -> dict[str, Any] | None:
    """What this step printed and displayed for one run (its outputs.json), with the run's
    parameters: what ``jup2kub results --release`` assembles a results notebook from.
    None when the run is unknown here. Values are never read."""
    run_id = check_run_id(run_id)
    info = store.run_info(run_id)
    if info is None and not store.run_dir(run_id).is_dir():
        return None
    return {
        "run_id": run_id,
        "step": step,
        "parameters": (info or {}).get("parameters") or {},
        "status": step_run(store, run_id, step, busy_run),
        "outputs": store.outputs(run_id, step),
    }
