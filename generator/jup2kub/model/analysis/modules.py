"""Local modules: the notebook's own ``.py`` files (beside it, or written by it) that an import
reads, so that the importing step follows the step writing the file and its cache key covers
the file's content."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from jup2kub.model.analysis.events import CellAnalysis


def module_reads(
    cells: Iterable[int], replayed: Iterable[tuple[int, int]], analyses: Mapping[int, CellAnalysis]
) -> set[str]:
    """The top-level modules imported by ``cells`` and by the definitions replayed with them
    (as ``(cell, line)``): a replayed import reads a local module's file as the original did."""
    sts = [st for i in cells for st in analyses[i].statements]
    for cell, line in replayed:  # the last statement on that line, looked up in its cell only
        a = analyses.get(cell)
        sts += [st for st in a.statements if st.line == line][-1:] if a is not None else []
    return {m for st in sts for m in st.module_reads}


def module_file_of(path: str, modules: Iterable[str]) -> bool:
    """Whether ``path`` may be where ``import m`` finds one of ``modules``: ``m.py`` or a file
    under a package directory ``m/``, in the working directory or in another directory the
    code may put on ``sys.path`` (``lib/m.py``): an extra order, never a missing one."""
    *dirs, name = path.removeprefix("./").split("/")
    return any(name in (m, f"{m}.py") or m in dirs for m in modules)


def local_module_files(
    modules: Iterable[str], directory: Path, written: Iterable[str]
) -> list[str]:
    """The files (``m.py``, or the package directory ``m``) through which ``modules`` are
    local: beside the notebook in ``directory``, or among the paths the notebook ``written``."""
    written = [w.removeprefix("./") for w in written]
    found: set[str] = set()
    for m in modules:
        for name in (f"{m}.py", m):
            here = directory / name
            beside = here.is_file() if name.endswith(".py") else (here / "__init__.py").is_file()
            if beside or any(w == name or w.startswith(f"{name}/") for w in written):
                found.add(name)
    return sorted(found)
