"""Whether a path or notebook is a composition: cheap checks made on every notebook read."""

from __future__ import annotations

from pathlib import Path

from jup2kub.model.kale import NOTEBOOK_TAG
from jup2kub.model.notebook import Notebook

SUFFIXES = (".yaml", ".yml")


def is_composition(path: str | Path) -> bool:
    """A composition file (YAML) rather than a notebook."""
    return Path(path).suffix.lower() in SUFFIXES


def kale_references(nb: Notebook) -> list[tuple[int, str]] | None:
    """The ``notebook:NAME`` cells of a notebook made only of them (Kale 2.3's composition),
    else None."""
    refs: list[tuple[int, str]] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        names = [m.group(1).strip() for t in cell.tags if (m := NOTEBOOK_TAG.match(t))]
        if names and names[0]:
            refs.append((cell.index, names[0]))
        elif cell.source.strip():
            return None
    return refs or None
