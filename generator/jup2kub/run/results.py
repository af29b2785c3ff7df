"""Results notebooks: the original cells with each step's captured outputs under them and the
injected parameters shown, like papermill's output notebook. Past the first failing cell (in
notebook order) the cells show as papermill shows them, not executed: a step that ran there
alongside (in parallel) shows nothing of what it did."""

from __future__ import annotations

import ast
import copy
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from jup2kub.errors import InputError, RunStorageError
from jup2kub.files import atomic_write_bytes, atomic_write_text
from jup2kub.model.notebook import Notebook
from jup2kub.model.pipeline import Pipeline
from jup2kub.model.secrets import redact
from jup2kub.run.notebook_nodes import code_cell, error_output, from_json, notebook_text
from jup2kub_runtime.storage.state_store import StateStore


def _parameters_cell(parameters: Mapping[str, Any], minor: int) -> Any:
    lines = ["# Parameters"] + [f"{k} = {v!r}" for k, v in parameters.items()]
    cell = code_cell("\n".join(lines) + "\n")
    cell.metadata["tags"] = ["injected-parameters"]
    if minor >= 5:
        cell["id"] = "injected-parameters"
    else:  # cell ids exist from nbformat 4.5 on; a 4.4 notebook must stay without them
        del cell["id"]
    return cell


class RunSource(Protocol):
    """Where a run's outputs are read from: the state store, or a release's pods."""

    def run_info(self, run_id: str) -> dict[str, Any] | None: ...

    def outputs(self, run_id: str, step: str) -> Any: ...

    def is_complete(self, run_id: str, step: str) -> bool: ...


def results_notebook(
    node: Any,
    pipeline: Pipeline,
    store: RunSource,
    run_id: str,
    parameters: Mapping[str, Any],
    status: str,
) -> Any:
    """A copy of ``node`` holding what run ``run_id`` produced, ready to write."""
    nb = copy.deepcopy(node)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    _redact_secrets(nb, pipeline)
    ran: set[int] = set()
    events: dict[int, list[dict[str, Any]]] = {}  # cell -> its display-id events
    ids: dict[int, dict[str, str]] = {}  # cell -> output position -> display id
    timings = CellTimings()
    for step in pipeline.steps:
        doc = store.outputs(run_id, step.name)
        if not isinstance(doc, dict):
            continue
        for record in doc.get("cells", []):
            index = record.get("index")
            if not isinstance(index, int) or not 0 <= index < len(nb.cells):
                continue
            ran.add(index)
            nb.cells[index].outputs = [from_json(o) for o in record.get("outputs", [])]
            events[index] = list(record.get("display_events") or [])
            ids[index] = dict(record.get("display_ids") or {})
            timings.record(index, record)
        error = doc.get("error")
        if isinstance(error, dict) and isinstance(error.get("cell"), int):
            timings.failed.add(error["cell"])
            target = nb.cells[error["cell"]]
            if not any(o.get("output_type") == "error" for o in target.outputs):
                target.outputs.append(
                    error_output(
                        str(error.get("ename", "Error")),
                        str(error.get("evalue", "")),
                        [str(t) for t in error.get("traceback", [])],
                    )
                )
    if timings.failed:  # nbclient stops at the first failure: nothing past it ran
        stop = min(timings.failed)
        for index in sorted(i for i in ran if i > stop):
            nb.cells[index].outputs = []
            ran.discard(index)
            events.pop(index, None)
            ids.pop(index, None)
            timings.spans.pop(index, None)
        timings.failed = {stop}
    _apply_display_updates(nb, events, ids)
    count = 0
    for index, cell in enumerate(nb.cells):
        if index in ran:
            count += 1
            cell.execution_count = count
            for output in cell.outputs:
                if output.get("output_type") == "execute_result":
                    output["execution_count"] = count
    timings.annotate(nb, {c for step in pipeline.steps for c in step.cells}, parameters)
    if parameters:
        at = pipeline.parameter_cells[-1] + 1 if pipeline.parameter_cells else 0
        nb.cells.insert(at, _parameters_cell(parameters, nb.nbformat_minor))
    nb.metadata["jup2kub"] = {
        "run_id": run_id,
        "status": status,
        "parameters": dict(parameters),
        "notebook_sha256": pipeline.notebook_sha256,
    }
    return nb


def mark_reused(nb: Any, pipeline: Pipeline, reused: Mapping[str, str]) -> None:
    """Mark the cells of the steps that were not executed in this run (``reused``: step ->
    why) in their metadata, and list them in the notebook's ``jup2kub`` metadata."""
    if not reused:
        return
    shift = 1 if any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells) else 0
    at = pipeline.parameter_cells[-1] + 1 if pipeline.parameter_cells else 0
    for step in pipeline.steps:
        if step.name not in reused:
            continue
        for index in step.cells:
            cell = nb.cells[index + (shift if index >= at else 0)]
            cell.metadata["jup2kub"] = {"step": step.name, "reused": reused[step.name]}
    nb.metadata["jup2kub"]["reused"] = dict(reused)


class CellTimings:
    """Per-cell timings recorded as papermill records them (``metadata.papermill``: start and
    end time, duration, status, exception) and as nbclient does (``metadata.execution``), so
    tools reading papermill's output notebooks read these too."""

    def __init__(self) -> None:
        self.spans: dict[int, tuple[float, float]] = {}  # cell -> (start, end), epoch seconds
        self.failed: set[int] = set()

    def record(self, index: int, record: Mapping[str, Any]) -> None:
        start, seconds = record.get("started_at"), record.get("seconds")
        if isinstance(start, (int, float)) and isinstance(seconds, (int, float)):
            self.spans[index] = (float(start), float(start) + float(seconds))

    def annotate(self, nb: Any, step_cells: set[int], parameters: Mapping[str, Any]) -> None:
        """Every step cell's timing (pending: not run); cells outside the steps (parameters,
        skipped) have none."""
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or index not in step_cells:
                continue
            span = self.spans.get(index)
            failed = index in self.failed
            status = "failed" if failed else "completed" if span else "pending"
            cell.metadata["papermill"] = {
                "exception": failed if span or failed else None,
                "start_time": _iso(span[0]) if span else None,
                "end_time": _iso(span[1]) if span else None,
                "duration": round(span[1] - span[0], 6) if span else None,
                "status": status,
            }
            if span:
                start, end = _iso(span[0]) + "Z", _iso(span[1]) + "Z"
                cell.metadata["execution"] = {
                    "iopub.status.busy": start,
                    "iopub.execute_input": start,
                    "shell.execute_reply": end,
                    "iopub.status.idle": end,
                }
            else:
                cell.metadata.pop("execution", None)
        spans = list(self.spans.values())
        first = min((s for s, _ in spans), default=None)
        last = max((e for _, e in spans), default=None)
        nb.metadata["papermill"] = {
            "start_time": None if first is None else _iso(first),
            "end_time": None if last is None else _iso(last),
            "duration": None if first is None or last is None else round(last - first, 6),
            "exception": bool(self.failed) or None,
            "parameters": dict(parameters),
        }


def _iso(epoch: float) -> str:
    """UTC without an offset, as papermill writes ``datetime.utcnow().isoformat()``."""
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds")


def redacted_notebook(node: Any, pipeline: Pipeline) -> str:
    """The notebook as written, but for the literals of its secret parameters (None instead):
    the copy a run's RO-Crate keeps of the workflow."""
    nb = copy.deepcopy(node)
    _redact_secrets(nb, pipeline)
    return notebook_text(nb)


def _redact_secrets(nb: Any, pipeline: Pipeline) -> None:
    """The parameters cells without the literals of secret parameters (None instead); a cell
    Python cannot parse as written (magics) shows as the Python it runs as."""
    names = {s.name for s in pipeline.secret_parameters}
    if not names:
        return
    for index in pipeline.parameter_cells:
        cell = nb.cells[index]
        try:
            ast.parse(cell.source)
        except SyntaxError:
            cell.source = pipeline.python[index]
        else:
            cell.source = redact(cell.source, names)


def _apply_display_updates(
    nb: Any, events: Mapping[int, list[dict[str, Any]]], ids: Mapping[int, dict[str, str]]
) -> None:
    """nbclient rewrites every earlier output with a display id when a later cell displays or
    updates that id, also across steps: an output ends with the data of the last such event
    in a later cell (a step already applied its own; this adds the other steps')."""
    last: dict[str, tuple[int, dict[str, Any]]] = {}  # id -> (cell, event), latest cell
    for index in sorted(events):
        for event in events[index]:
            if isinstance(event, dict) and isinstance(event.get("display_id"), str):
                last[event["display_id"]] = (index, event)
    for index, positions in ids.items():
        outputs = nb.cells[index].outputs
        for position, display_id in positions.items():
            found = last.get(display_id)
            if found is None or found[0] <= index or not position.isdigit():
                continue
            if int(position) < len(outputs):
                outputs[int(position)]["data"] = from_json(found[1].get("data") or {})
                outputs[int(position)]["metadata"] = from_json(found[1].get("metadata") or {})


def write_results(
    nb: Notebook, pipeline: Pipeline, source: Path | RunSource, run_id: str, target: Path
) -> str:
    """Assemble a results notebook from a state directory (or another RunSource, e.g. a
    release's pods); returns the run's status."""
    if isinstance(source, Path):
        store = StateStore(source)
        if store.run_info(run_id) is None and not store.run_dir(run_id).is_dir():
            raise InputError(
                f"there is no run {run_id!r}",
                where=str(source),
                hint="check the run id and the state directory",
            )
        source = store
    info = source.run_info(run_id)
    parameters = dict((info or {}).get("parameters") or {})
    done = all(source.is_complete(run_id, s.name) for s in pipeline.steps)
    status = "succeeded" if done else "incomplete"
    result = results_notebook(nb.node, pipeline, source, run_id, parameters, status)
    atomic_write_text(target, notebook_text(result))
    return status


def copy_results(notebook: Path, target: Path) -> Path:
    """The run's results notebook also at ``target`` (``run -o``), written atomically: a
    reader never sees half a notebook, and an earlier file there stays whole until then."""
    try:
        atomic_write_bytes(target, notebook.read_bytes())
    except OSError as exc:
        raise RunStorageError(
            f"cannot write the results notebook ({exc.strerror or exc})",
            where=str(target),
            hint=f"it is also at {notebook}",
        ) from exc
    return target
