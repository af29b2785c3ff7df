"""Small notebooks from short cell specs, for the generator tests (the ``make_notebook`` fixture
in tests/conftest.py writes them to disk)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import nbformat
from nbformat import v4

CellSpec = str | tuple[str, str] | tuple[str, str, Sequence[str]] | dict[str, Any]


def build_notebook(cells: Sequence[CellSpec], language: str = "python") -> nbformat.NotebookNode:
    """A notebook from short specs: "code", ("md", text), ("code", text, [tags])."""
    nb = v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "k", "display_name": "k", "language": language}}
    for i, spec in enumerate(cells):
        if isinstance(spec, str):
            kind, source, tags = "code", spec, ()
        elif isinstance(spec, dict):
            kind, source, tags = spec.get("kind", "code"), spec["source"], spec.get("tags", ())
        else:
            kind, source = spec[0], spec[1]
            tags = spec[2] if len(spec) > 2 else ()  # type: ignore[misc]
        cell = v4.new_markdown_cell(source) if kind == "md" else v4.new_code_cell(source)
        cell["id"] = f"c{i}"
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    return nb
