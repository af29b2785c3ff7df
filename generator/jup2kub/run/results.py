"""Results notebooks: the original cells with each step's captured outputs under them and the
injected parameters shown, like papermill's output notebook."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import nbformat

from jup2kub.errors import InputError
from jup2kub.files import atomic_write_text
from jup2kub.model.notebook import Notebook
from jup2kub.model.pipeline import Pipeline
from jup2kub_runtime.state import StateStore


def _parameters_cell(parameters: Mapping[str, Any], minor: int) -> Any:
    lines = ["# Parameters"] + [f"{k} = {v!r}" for k, v in parameters.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines) + "\n")
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
    ran: set[int] = set()
    for step in pipeline.steps:
        doc = store.outputs(run_id, step.name)
        if not isinstance(doc, dict):
            continue
        for record in doc.get("cells", []):
            index = record.get("index")
            if not isinstance(index, int) or not 0 <= index < len(nb.cells):
                continue
            ran.add(index)
            nb.cells[index].outputs = [nbformat.from_dict(o) for o in record.get("outputs", [])]
        error = doc.get("error")
        if isinstance(error, dict) and isinstance(error.get("cell"), int):
            target = nb.cells[error["cell"]]
            if not any(o.get("output_type") == "error" for o in target.outputs):
                target.outputs.append(
                    nbformat.v4.new_output(
                        "error",
                        ename=str(error.get("ename", "Error")),
                        evalue=str(error.get("evalue", "")),
                        traceback=[str(t) for t in error.get("traceback", [])],
                    )
                )
    count = 0
    for index, cell in enumerate(nb.cells):
        if index in ran:
            count += 1
            cell.execution_count = count
            for output in cell.outputs:
                if output.get("output_type") == "execute_result":
                    output["execution_count"] = count
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
    atomic_write_text(target, nbformat.writes(result))
    return status
