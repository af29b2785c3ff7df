"""Reading notebooks: nbformat does the parsing and validation; we turn its failures into errors
that name the file and say what to do, and refuse kernels we cannot analyse."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat.reader import NotJSONError
from nbformat.validator import get_validator

from jup2kub.errors import NotebookReadError, UnsupportedKernelError

_REPAIR_HINT = (
    "open and re-save the notebook in Jupyter, or repair it with `jupyter nbconvert --to notebook`"
)


@dataclass(frozen=True)
class Cell:
    """One notebook cell, with the bits of metadata that steer splitting."""

    index: int
    cell_type: str
    source: str
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Notebook:
    """A validated Python notebook; ``node`` is the nbformat object for writing results back."""

    path: str
    cells: tuple[Cell, ...]
    node: Any = field(compare=False, hash=False, repr=False)
    sha256: str = ""

    @property
    def code_cells(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.cell_type == "code")


def _kernel_language(metadata: dict[str, Any]) -> str | None:
    kernelspec = metadata.get("kernelspec") or {}
    language = kernelspec.get("language")
    if not language:
        language = (metadata.get("language_info") or {}).get("name")
    return str(language).strip().lower() if language else None


def load_notebook(path: str | Path) -> Notebook:
    """Read and validate ``path``; the notebook must be nbformat 4 with a Python kernel."""
    shown = str(path)
    p = Path(path)
    if not p.exists():
        raise NotebookReadError(shown, "file not found", hint="check the path")
    if p.is_dir():
        raise NotebookReadError(shown, "is a directory", hint="pass the .ipynb file itself")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise NotebookReadError(shown, f"cannot read the file ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotebookReadError(shown, f"not UTF-8 text (byte {exc.start})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookReadError(
            shown, f"the file is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("nbformat"), int):
        raise NotebookReadError(shown, "the JSON has no 'nbformat' version field")
    try:
        if data["nbformat"] == 4:  # check the structure before nbformat walks it
            minor = data.get("nbformat_minor")
            validator = get_validator(
                version=4, version_minor=minor if isinstance(minor, int) else 5
            )
            first = next(iter(validator.iter_errors(data)), None)
            if first is not None:
                raise NotebookReadError(
                    shown, f"invalid nbformat: {first.message}", hint=_REPAIR_HINT
                )
        node = nbformat.reads(text, as_version=4)  # upgrades older formats, joins sources
        nbformat.validate(node)
    except nbformat.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "top level"
        raise NotebookReadError(
            shown,
            f"invalid nbformat at {where}: {exc.message}",
            hint=_REPAIR_HINT,
        ) from exc
    except (NotJSONError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise NotebookReadError(shown, f"not a notebook ({exc})") from exc
    language = _kernel_language(node.get("metadata", {}))
    if language is not None and language not in ("python", "python3", "ipython", "ipython3"):
        raise UnsupportedKernelError(shown, language)

    cells = []
    for index, c in enumerate(node.cells):
        meta = dict(c.get("metadata", {}))
        tags = tuple(str(t) for t in meta.get("tags", []) or [])
        cells.append(Cell(index, c.cell_type, c.source, tags, meta))
    return Notebook(shown, tuple(cells), node, hashlib.sha256(raw).hexdigest())
