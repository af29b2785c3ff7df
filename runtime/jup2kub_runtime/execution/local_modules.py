"""The notebook's own modules (``.py`` files in the working directory, perhaps written by an
earlier step): found there as under a kernel, whose ``sys.path`` holds ``""`` (the current
directory, wherever the step's code runs), and forgotten after each execution, so that a
long-lived step process serving many runs imports them afresh as a new kernel would."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

#: the runtime's own package: never forgotten (a step process keeps using it)
_OWN = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def importable_here() -> Iterator[None]:
    """During the block: ``""`` first on ``sys.path``; afterwards the modules the block imported
    from the working directory it ran in are dropped from ``sys.modules``."""
    known = set(sys.modules)
    added = "" not in sys.path
    if added:
        sys.path.insert(0, "")
    here = Path.cwd().resolve()
    try:
        yield
    finally:
        if added and "" in sys.path:
            sys.path.remove("")
        for name in set(sys.modules) - known:
            if _local(sys.modules.get(name), here):
                del sys.modules[name]


def _local(module: object, directory: Path) -> bool:
    origin = getattr(module, "__file__", None)
    if not isinstance(origin, str):
        return False
    path = Path(origin).resolve()
    return (
        directory in path.parents and _OWN not in path.parents and "site-packages" not in path.parts
    )
