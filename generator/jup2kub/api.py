"""The library API behind the CLI (as papermill's ``execute_notebook`` is behind its CLI)."""

from __future__ import annotations

from pathlib import Path

from jup2kub.analysis import analyze_cell
from jup2kub.notebook import load_notebook
from jup2kub.pipeline import Pipeline, build_pipeline
from jup2kub.split import code_cells, split_notebook


def inspect_notebook(path: str | Path, split: str = "auto") -> Pipeline:
    """Read a notebook, cut it into steps and work out the values that flow between them."""
    nb = load_notebook(path)
    parts = split_notebook(nb, split)
    analyses = [analyze_cell(nb.path, i, nb.cells[i].source) for i in sorted(code_cells(parts))]
    return build_pipeline(nb, parts, analyses)
