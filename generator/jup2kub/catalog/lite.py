"""The catalog as ``jup2kub build`` uses it, without SQLAlchemy: a SQLite catalog whose schema
is current is written (and its images looked up) with the standard library's ``sqlite3``.

Why: importing SQLAlchemy costs about 0.1-0.3 s, added to every ``build`` that records its
steps (bench/LOG.md). Everything else (another database, a schema to migrate, the ``catalog``
commands, compositions) goes through ``store.Catalog``; ``full()`` opens it on demand. The rows
written here are those ``store.Catalog.add`` writes (tests/test_catalog_lite.py reads them back
through it): same tables, JSON as text, times as SQLAlchemy stores them on SQLite (naive UTC).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import timezone
from pathlib import Path
from typing import TYPE_CHECKING

from jup2kub.catalog.database import (
    BUSY_TIMEOUT_MS,
    ENV,
    FIELDS,
    HEAD,
    default_location,
    sqlite_path,
)
from jup2kub.catalog.records import StepRecord
from jup2kub.errors import CatalogError

if TYPE_CHECKING:
    from jup2kub.catalog.store import Catalog

_JSON_FIELDS = frozenset({"cells", "inputs", "outputs", "parameters", "imports", "sbom"})


class LiteCatalog:
    """An open SQLite catalog at the current schema; see the module docstring."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.shown = f"sqlite:///{path}"
        self._conn = conn
        self._full: Catalog | None = None

    @classmethod
    def open(cls, location: str | None = None) -> LiteCatalog | None:
        """The catalog at ``location`` when it is a SQLite file whose schema is current, else
        None (``store.Catalog`` then connects, or creates and migrates it)."""
        location = location or default_location()
        if "://" in location:
            return None
        path = sqlite_path(location)
        if not path.is_file():
            return None
        try:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except sqlite3.Error:
            return None
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            row = conn.execute("SELECT version_num FROM catalog_alembic_version").fetchone()
        except sqlite3.Error:
            row = None
        if row is None or row[0] != HEAD:
            conn.close()
            return None
        return cls(path, conn)

    def full(self) -> Catalog:
        """The same catalog through ``store.Catalog`` (every operation), opened once."""
        if self._full is None:
            from jup2kub.catalog.store import Catalog  # SQLAlchemy: only when more is asked

            self._full = Catalog(str(self.path))
        return self._full

    def find(self, name: str) -> StepRecord:
        """As ``store.Catalog.find``, through ``full()`` (a composition's catalogued step)."""
        return self.full().find(name)

    def steps(self) -> list[StepRecord]:
        """As ``store.Catalog.steps``, through ``full()`` (a composition's wire types)."""
        return self.full().steps()

    def close(self) -> None:
        self._conn.close()
        if self._full is not None:
            self._full.close()

    def __enter__(self) -> LiteCatalog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def add(self, records: Iterable[StepRecord]) -> int:
        """Record steps, replacing earlier records of the same pipeline and step name (one
        ``BEGIN IMMEDIATE`` transaction, as ``store.Catalog.add``)."""
        count = 0
        columns = ", ".join(FIELDS)
        marks = ", ".join("?" for _ in FIELDS)
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for record in records:
                    self._conn.execute(
                        "DELETE FROM catalog_steps WHERE pipeline = ? AND step = ?",
                        (record.pipeline, record.step),
                    )
                    cursor = self._conn.execute(
                        f"INSERT INTO catalog_steps ({columns}) VALUES ({marks})",
                        [_column(record, f) for f in FIELDS],
                    )
                    self._conn.executemany(
                        "INSERT INTO catalog_tokens (step_id, token, field) VALUES (?, ?, ?)",
                        [(cursor.lastrowid, t, f) for t, f in sorted(record.tokens())],
                    )
                    count += 1
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise CatalogError(
                f"the catalog database failed: {exc}",
                where=self.shown,
                hint=f"check the path (--catalog or ${ENV}) and that it is writable",
            ) from None
        return count

    def images_with_tag(self, tag: str) -> list[tuple[str, str, str]]:
        """As ``store.Catalog.images_with_tag``."""
        if not tag or not tag.replace("-", "").replace("_", "").replace(".", "").isalnum():
            return []
        rows = self._conn.execute(
            "SELECT image, digest, pipeline, step FROM catalog_steps WHERE image LIKE ? "
            "ORDER BY recorded_at DESC, id DESC",
            (f"%:{tag}",),
        ).fetchall()
        return [(str(i), str(d), f"{p}/{s}") for i, d, p, s in rows]


def _column(record: StepRecord, name: str) -> object:
    value = getattr(record, name)
    if name in _JSON_FIELDS:
        return json.dumps(value)
    if name == "recorded_at":  # as SQLAlchemy's SQLite DateTime: naive UTC, microseconds
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value
