"""The library API behind the CLI (as papermill's ``execute_notebook`` is behind its CLI)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jup2kub import chart
from jup2kub.analysis import analyze_cell
from jup2kub.errors import InputError
from jup2kub.notebook import load_notebook
from jup2kub.pipeline import Pipeline, build_pipeline
from jup2kub.split import code_cells, split_notebook


def inspect_notebook(path: str | Path, split: str = "auto") -> Pipeline:
    """Read a notebook, cut it into steps and work out the values that flow between them."""
    nb = load_notebook(path)
    parts = split_notebook(nb, split)
    analyses = [analyze_cell(nb.path, i, nb.cells[i].source) for i in sorted(code_cells(parts))]
    return build_pipeline(nb, parts, analyses)


def require_storable(pipeline: Pipeline) -> None:
    """Refuse a pipeline in which an unpicklable value (open file, lock, generator, ...)
    would have to cross a step boundary: it would fail at run time, after other steps ran."""
    if not pipeline.unshippable:
        return
    first = pipeline.unshippable[0]
    more = "".join(f"\n  also: {u}" for u in pipeline.unshippable[1:])
    raise InputError(
        f"{first}{more}",
        where=pipeline.notebook,
        hint=f"move the code that uses {first.name!r} into step {first.source!r} (e.g. with a "
        "step marker or tag), or create it again in the step that needs it",
    )


def build(
    path: str | Path,
    out: str | Path,
    split: str = "auto",
    options: chart.ChartOptions | None = None,
) -> tuple[Pipeline, Path]:
    """Write the notebook's Helm chart to ``out`` (atomically); images are built separately."""
    pipeline = inspect_notebook(path, split)
    require_storable(pipeline)
    options = options or chart.ChartOptions()
    if options.notebook_sha256 is None:
        options = dataclasses.replace(options, notebook_sha256=pipeline.notebook_sha256)
    written = chart.build_chart(pipeline.to_json(), Path(path), Path(out), options)
    return pipeline, written
