"""Reading notebooks as Jupyter does: nbformat parses, upgrades older formats and normalises
(cell ids, invalid metadata); the small deviations Jupyter tolerates are repaired and reported
once as a ``NotebookRepairedWarning``. Only what Jupyter cannot open either is refused, with an
error that names the file, the cell and what to do. Python kernels only."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import nbformat
import nbformat.v4
from nbformat import reader
from nbformat.validator import normalize
from nbformat.warnings import DuplicateCellId, MissingIDFieldWarning

from jup2kub.errors import NotebookReadError, NotebookRepairedWarning, UnsupportedKernelError

# nbformat's functions carry no annotations: the typed views of those the model calls (here and
# in ``compose``), so that callers stay checked
_reads: Callable[[str], Any] = reader.reads
_convert: Callable[[Any, int], Any] = nbformat.convert
_from_dict: Callable[[Any], Any] = nbformat.from_dict
new_notebook: Callable[[], Any] = nbformat.v4.new_notebook
new_code_cell: Callable[[str], Any] = nbformat.v4.new_code_cell
writes: Callable[[Any], str] = nbformat.writes

_REPAIR_HINT = (
    "open and re-save the notebook in Jupyter, or repair it with `jupyter nbconvert --to notebook`"
)
_EDIT_HINT = "fix it in the .ipynb file with a text editor: Jupyter cannot open it either"
_CELL_TYPES = ("code", "markdown", "raw")


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
    """A validated Python notebook; ``node`` is the nbformat object for writing results back.

    ``notes`` says what was repaired on reading (as Jupyter would), empty for a valid file."""

    path: str
    cells: tuple[Cell, ...]
    node: Any = field(compare=False, hash=False, repr=False)
    sha256: str = ""
    notes: tuple[str, ...] = ()

    @property
    def code_cells(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.cell_type == "code")


def _kernel_language(metadata: dict[str, Any]) -> str | None:
    kernelspec = metadata.get("kernelspec") or {}
    language = kernelspec.get("language") if isinstance(kernelspec, dict) else None
    if not language:
        info = metadata.get("language_info") or {}
        language = info.get("name") if isinstance(info, dict) else None
    return str(language).strip().lower() if language else None


def load_notebook(path: str | Path) -> Notebook:
    """Read ``path`` as Jupyter opens it: any nbformat up to 4 (upgraded to 4), deviations
    Jupyter tolerates repaired (one warning says which), Python kernels only."""
    shown = str(path)
    raw = _read_bytes(shown, Path(path))
    data = _parse_json(shown, raw)
    notes: list[str] = []
    node = _read_node(shown, data, notes)
    language = _kernel_language(node.get("metadata", {}))
    if language is not None and language not in ("python", "python3", "ipython", "ipython3"):
        raise UnsupportedKernelError(shown, language)
    node = _normalized(shown, node, notes)
    if notes:
        warnings.warn(
            f"{shown}: {'; '.join(notes)}, as Jupyter does", NotebookRepairedWarning, stacklevel=2
        )
    cells = []
    for index, c in enumerate(node.cells):
        meta = dict(c.get("metadata", {}))
        tags = tuple(str(t) for t in meta.get("tags", []) or [])
        cells.append(Cell(index, c.cell_type, c.source, tags, meta))
    return Notebook(shown, tuple(cells), node, hashlib.sha256(raw).hexdigest(), tuple(notes))


def _read_bytes(shown: str, p: Path) -> bytes:
    if not p.exists():
        raise NotebookReadError(shown, "file not found", hint="check the path")
    if p.is_dir():
        raise NotebookReadError(shown, "is a directory", hint="pass the .ipynb file itself")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise NotebookReadError(shown, f"cannot read the file ({exc.strerror})") from exc


def _parse_json(shown: str, raw: bytes) -> dict[str, Any]:
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
    major = data["nbformat"]
    if major not in nbformat.versions:
        raise NotebookReadError(
            shown,
            f"nbformat {major} is not a notebook format Jupyter reads (it reads 1 to 4)",
            hint="save the notebook with Jupyter, which writes nbformat 4",
        )
    return data


def _read_node(shown: str, data: dict[str, Any], notes: list[str]) -> Any:
    """The notebook as an nbformat 4 node: older formats converted as Jupyter converts them,
    a 4.x structure checked first so that a broken cell is named."""
    major = data["nbformat"]
    if major == 4:
        _check_structure(shown, data, notes)
    try:
        node = _reads(json.dumps(data))  # joins list sources, drops transient fields
        if major < 4:
            node = _convert(node, 4)
            notes.append(f"converted from nbformat {major} to nbformat 4")
    except (nbformat.ValidationError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise NotebookReadError(
            shown, f"not a notebook nbformat {major} can read ({exc})", hint=_REPAIR_HINT
        ) from exc
    return node


def _refuse_cell(shown: str, index: int, what: str, hint: str = _EDIT_HINT) -> NotebookReadError:
    return NotebookReadError(shown, f"invalid nbformat: {what}", hint=hint, cell=index)


def _check_structure(shown: str, data: dict[str, Any], notes: list[str]) -> None:
    """Refuse what Jupyter cannot open either; fill the fields of a cell it would default."""
    if not isinstance(data.get("nbformat_minor"), int):
        raise NotebookReadError(
            shown,
            "invalid nbformat: an nbformat 4 notebook needs an integer 'nbformat_minor'",
            hint=_EDIT_HINT,
        )
    if not isinstance(data.get("metadata", {}), dict):
        raise NotebookReadError(
            shown, "invalid nbformat: the notebook's 'metadata' is not an object", hint=_EDIT_HINT
        )
    cells = data.get("cells")
    if not isinstance(cells, list):
        got = "is missing" if cells is None else f"is {type(cells).__name__}, not a list"
        raise NotebookReadError(
            shown,
            f"invalid nbformat: the notebook's list of cells ('cells') {got}",
            hint=_EDIT_HINT,
        )
    filled: dict[str, list[int]] = {}
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise _refuse_cell(shown, index, "the cell is not a JSON object")
        kind = cell.get("cell_type")
        if kind not in _CELL_TYPES:
            got = "has no 'cell_type'" if kind is None else f"has cell_type {kind!r}"
            raise _refuse_cell(
                shown,
                index,
                f"the cell {got}; Jupyter knows 'code', 'markdown' and 'raw'",
                hint="set the cell's cell_type to 'code', 'markdown' or 'raw' in the .ipynb file",
            )
        source = cell.get("source", "")
        if not isinstance(source, str) and not (
            isinstance(source, list) and all(isinstance(s, str) for s in source)
        ):
            raise _refuse_cell(
                shown,
                index,
                f"the cell's 'source' must be text (a string or a list of strings), "
                f"not {type(source).__name__}",
            )
        if not isinstance(cell.get("metadata", {}), dict):
            raise _refuse_cell(shown, index, "the cell's 'metadata' is not an object")
        defaults: dict[str, Any] = {"source": "", "metadata": {}}
        if kind == "code":
            defaults.update(outputs=[], execution_count=None)
            if not _readable_outputs(cell.get("outputs", [])):
                cell["outputs"] = []  # a run replaces them anyway
                filled.setdefault("outputs", []).append(index)
        attachments = cell.get("attachments", {})
        if not isinstance(attachments, dict) or not all(
            isinstance(a, dict) for a in attachments.values()
        ):
            raise _refuse_cell(
                shown, index, "the cell's 'attachments' must map file names to {mime type: data}"
            )
        for key, value in defaults.items():
            if key not in cell:
                cell[key] = value
                filled.setdefault(key, []).append(index)
    for key, where in filled.items():
        notes.append(f"added missing or replaced unreadable '{key}' in {_cells_text(where)}")


def _readable_outputs(outputs: Any) -> bool:
    """Whether nbformat's reader can walk ``outputs`` (it then validates each one)."""
    return isinstance(outputs, list) and all(
        isinstance(o, dict)
        and isinstance(o.get("data", {}), dict)
        and isinstance(o.get("metadata", {}), dict)
        for o in outputs
    )


def _cells_text(indices: list[int]) -> str:
    shown = ", ".join(map(str, indices[:5])) + (", ..." if len(indices) > 5 else "")
    return f"cell{'s' if len(indices) > 1 else ''} {shown}"


@cache
def _schema(minor: int) -> dict[str, Any]:
    """nbformat's own v4 schema for ``minor``: which fields each kind of cell may have."""
    names = nbformat.v4.nbformat_schema
    name = names.get((4, minor), names[(None, None)])
    text = resources.files("nbformat.v4").joinpath(name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _normalized(shown: str, node: Any, notes: list[str]) -> Any:
    """Repair what Jupyter tolerates (nbformat's ``normalize`` for ids and metadata, unknown
    cell fields, unreadable old outputs), then validate; refuse what remains, naming the cell."""
    if node.nbformat_minor < 5 and any("id" in c for c in node.cells):
        notes.append(f"read nbformat 4.{node.nbformat_minor} with cell ids as nbformat 4.5")
        node.nbformat_minor = 5
    _drop_unknown_fields(node, notes)
    _drop_invalid_outputs(node, notes)
    lacking = [i for i, c in enumerate(node.cells) if not c.get("id")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            changes, node = normalize(node, strip_invalid_metadata=True)
        except nbformat.ValidationError as exc:
            raise _translated(shown, exc) from exc
    missing = sum(issubclass(w.category, MissingIDFieldWarning) for w in caught)
    duplicate = sum(issubclass(w.category, DuplicateCellId) for w in caught)
    if missing:
        _stable_ids(node, lacking)
        notes.append(f"added missing cell ids (nbformat 4.{node.nbformat_minor})")
    if duplicate:
        notes.append(f"replaced {duplicate} duplicate cell id{'s' if duplicate > 1 else ''}")
    if changes > missing + duplicate:
        notes.append("removed metadata that does not match nbformat's schema")
    try:
        nbformat.validate(node)
    except nbformat.ValidationError as exc:
        raise _translated(shown, exc) from exc
    return _from_dict(node)


def _stable_ids(node: Any, lacking: list[int]) -> None:
    """Ids for the cells that had none, the same on every read (nbformat's are random), so that
    a run's results and a later ``jup2kub results`` of the same notebook agree."""
    taken = {c.get("id") for i, c in enumerate(node.cells) if i not in lacking}
    for index in lacking:
        candidate = f"cell-{index}"
        while candidate in taken:
            candidate += "-j2k"
        node.cells[index]["id"] = candidate
        taken.add(candidate)


def _drop_unknown_fields(node: Any, notes: list[str]) -> None:
    """Fields nbformat's schema does not define for a cell's type, or for a notebook (Jupyter
    drops them when it saves)."""
    schema = _schema(node.nbformat_minor)
    for key in [k for k in node if k not in schema["properties"]]:
        del node[key]
        notes.append(f"removed the unknown top-level field '{key}'")
    definitions = schema["definitions"]
    dropped: dict[str, list[int]] = {}
    for index, cell in enumerate(node.cells):
        known = definitions[f"{cell.cell_type}_cell"]["properties"]
        for key in [k for k in cell if k not in known]:
            del cell[key]
            dropped.setdefault(key, []).append(index)
    for key, where in sorted(dropped.items()):
        notes.append(f"removed the unknown field '{key}' from {_cells_text(where)}")


def _drop_invalid_outputs(node: Any, notes: list[str]) -> None:
    """Stored outputs (and execution counts) nbformat cannot validate; a run replaces them."""
    where: list[int] = []
    for index, cell in enumerate(node.cells):
        if cell.cell_type != "code":
            continue
        outputs = cell.get("outputs")
        kept = [o for o in outputs if _valid_output(o, node.nbformat_minor)]
        count = cell.get("execution_count")
        bad_count = count is not None and (not isinstance(count, int) or isinstance(count, bool))
        if len(kept) != len(outputs) or bad_count:
            cell["outputs"] = kept
            cell["execution_count"] = None if bad_count else count
            where.append(index)
    if where:
        notes.append(
            f"dropped stored outputs or execution counts nbformat cannot read from "
            f"{_cells_text(where)}"
        )


def _valid_output(output: Any, minor: int) -> bool:
    try:
        nbformat.validate(output, ref="output", version=4, version_minor=minor)
    except nbformat.ValidationError:
        return False
    return True


def _translated(shown: str, exc: nbformat.ValidationError) -> NotebookReadError:
    """nbformat's jsonschema error as a sentence: which cell, which field, what is wrong."""
    path = list(exc.absolute_path)
    message = str(getattr(exc, "message", exc)).split("\n")[0]
    if len(path) >= 2 and path[0] == "cells" and isinstance(path[1], int):
        field_path = "/".join(map(str, path[2:]))
        what = f"{message} (in the cell's {field_path})" if field_path else message
        return _refuse_cell(shown, path[1], what, _REPAIR_HINT)
    where = "/".join(map(str, path)) or "top level"
    return NotebookReadError(shown, f"invalid nbformat at {where}: {message}", hint=_REPAIR_HINT)
