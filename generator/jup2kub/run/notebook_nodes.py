"""nbformat's node constructors and writer, as the results notebook uses them, with types:
nbformat leaves these functions unannotated, and this is the one module of ``run`` that calls
them (the model's notebook reader is the other boundary)."""

from __future__ import annotations

from typing import Any

import nbformat
import nbformat.v4
from nbformat import NotebookNode


def from_json(value: object) -> Any:
    """``value`` with every dict in it (recursively) a NotebookNode; anything else as it is."""
    return nbformat.from_dict(value)


def code_cell(source: str) -> NotebookNode:
    cell: NotebookNode = nbformat.v4.new_code_cell(source)
    return cell


def error_output(ename: str, evalue: str, traceback: list[str]) -> NotebookNode:
    output: NotebookNode = nbformat.v4.new_output(
        "error", ename=ename, evalue=evalue, traceback=traceback
    )
    return output


def notebook_text(node: NotebookNode) -> str:
    """The notebook's JSON text, as Jupyter writes it."""
    text: str = nbformat.writes(node)
    return text
