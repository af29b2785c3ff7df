"""What both ways into the catalog database share (``lite``, with ``sqlite3`` alone, and
``store``, through SQLAlchemy): where the database is, the schema revision it must be at, the
columns a step record fills, and how long a writer waits for another."""

from __future__ import annotations

import os
from pathlib import Path

from jup2kub.catalog.records import StepRecord
from jup2kub.errors import CatalogError

ENV = "JUP2KUB_CATALOG"
#: the newest revision in migrations/versions (tests/test_catalog.py checks)
HEAD = "0002"
BUSY_TIMEOUT_MS = 60_000
FIELDS = list(StepRecord.__dataclass_fields__)


def default_location() -> str:
    """``$JUP2KUB_CATALOG``, else ``$XDG_DATA_HOME/jup2kub/catalog.db``."""
    if os.environ.get(ENV):
        return os.environ[ENV]
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data) / "jup2kub" / "catalog.db")


def sqlite_path(location: str) -> Path:
    """The file of a SQLite catalog given as a path, its directory created."""
    path = Path(location).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CatalogError(
            f"cannot create the catalog's directory: {exc.strerror}", where=str(path.parent)
        ) from None
    return path
