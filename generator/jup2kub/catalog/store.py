"""The catalog database: opening it (SQLite file by default, PostgreSQL by URL), keeping its
schema current with Alembic, and the record operations.

Concurrent writers are safe: SQLite runs in WAL mode with a busy timeout and every transaction
starts with ``BEGIN IMMEDIATE`` (writers queue instead of failing on a lock upgrade);
PostgreSQL writers take a table lock, so two builds replacing the same step queue too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timezone
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import (
    ColumnElement,
    Engine,
    create_engine,
    delete,
    distinct,
    event,
    func,
    inspect,
    literal,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session

from jup2kub.catalog.database import BUSY_TIMEOUT_MS, ENV, FIELDS, HEAD, sqlite_path
from jup2kub.catalog.database import default_location as default_location
from jup2kub.catalog.models import StepRow, TokenRow
from jup2kub.catalog.records import StepRecord, query_words
from jup2kub.errors import CatalogError

_MIGRATIONS = Path(__file__).parent / "migrations"


def _url(location: str) -> str:
    """A database URL; a plain path is a SQLite file (its directory is created)."""
    if "://" in location:
        return location
    return f"sqlite:///{sqlite_path(location)}"


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        raise CatalogError(
            f"not a database URL: {url!r}",
            hint="use a file path, sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
        ) from None


def _shown(url: str) -> str:
    return _parse(url).render_as_string(hide_password=True)


def _engine(url: str) -> Engine:
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend not in ("sqlite", "postgresql"):
        raise CatalogError(
            f"unsupported catalog database {backend!r} in {_shown(url)}",
            hint="use SQLite (a file path) or postgresql://...",
        )
    try:
        if backend == "sqlite":
            engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
            _sqlite_events(engine)
        else:
            engine = create_engine(parsed, connect_args={"connect_timeout": 10})
    except (NoSuchModuleError, ImportError) as exc:
        raise CatalogError(f"no driver for {_shown(url)}: {exc}") from None
    return engine


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


P = ParamSpec("P")
T = TypeVar("T")


def _database_errors(
    method: Callable[Concatenate[Catalog, P], T],
) -> Callable[Concatenate[Catalog, P], T]:
    """A database failure (unreachable, locked past the busy timeout, read-only, full) becomes
    an error naming the catalog, not a traceback."""

    @functools.wraps(method)
    def wrapper(self: Catalog, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except DBAPIError as exc:
            raise CatalogError(
                f"the catalog database failed: {str(exc.orig).strip().splitlines()[0]}",
                where=self.shown,
                hint=f"check the URL (--catalog or ${ENV}) and that the database is reachable "
                "and writable",
            ) from None

    return wrapper


class Catalog:
    """An open catalog. ``Catalog(location)`` connects and brings the schema up to date."""

    def __init__(self, location: str | None = None) -> None:
        location = location or default_location()
        self.url = _url(location)
        self.shown = _shown(self.url)
        self.engine = _engine(self.url)
        try:
            self._migrate()
        except DBAPIError as exc:
            self.engine.dispose()
            raise CatalogError(
                f"cannot open the catalog: {str(exc.orig).strip().splitlines()[0]}",
                where=self.shown,
                hint=f"check the URL (--catalog or ${ENV}) and that the server is reachable",
            ) from None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self.engine.connect() as conn:
            if "catalog_alembic_version" in inspect(conn).get_table_names():
                version = conn.execute(
                    text("SELECT version_num FROM catalog_alembic_version")
                ).scalar()
                if version == HEAD:
                    conn.rollback()
                    return
            conn.rollback()
        from alembic import command  # only when the schema changes (a slow import)
        from alembic.config import Config
        from alembic.util.exc import CommandError

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        try:
            with self.engine.begin() as conn:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        except CommandError as exc:  # e.g. a schema revision from a newer jup2kub
            self.engine.dispose()
            raise CatalogError(
                f"cannot bring the catalog's schema up to date: {exc}",
                where=self.shown,
                hint="a newer jup2kub may have written it: upgrade jup2kub",
            ) from None

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        with Session(self.engine) as session, session.begin():
            if self.engine.dialect.name == "postgresql":
                session.execute(text("LOCK TABLE catalog_steps IN SHARE ROW EXCLUSIVE MODE"))
            yield session

    # ------------------------------------------------------------------ operations
    @_database_errors
    def add(self, records: Iterable[StepRecord]) -> int:
        """Record steps, replacing earlier records of the same pipeline and step name."""
        count = 0
        with self._writing() as session:
            for record in records:
                session.execute(
                    delete(StepRow).where(
                        StepRow.pipeline == record.pipeline, StepRow.step == record.step
                    )
                )
                row = StepRow(**{k: getattr(record, k) for k in FIELDS})
                session.add(row)
                session.flush()
                session.add_all(
                    TokenRow(step_id=row.id, token=t, field=f) for t, f in sorted(record.tokens())
                )
                count += 1
        return count

    @_database_errors
    def steps(self, pipeline: str | None = None) -> list[StepRecord]:
        query = select(StepRow).order_by(StepRow.pipeline, StepRow.id)
        if pipeline is not None:
            query = query.where(StepRow.pipeline == pipeline)
        with Session(self.engine) as session:
            return [_record(r) for r in session.scalars(query)]

    @_database_errors
    def search(self, query: str, limit: int = 50) -> list[tuple[StepRecord, list[str]]]:
        """Steps matching every word of ``query`` (a word matches a token it begins), most
        matches first, with what matched (``writes:df``, ``package:pandas``, ...). The
        database intersects and ranks; only the ``limit`` best steps are read."""
        terms = sorted(query_words(query))
        if not terms:
            return []
        conditions = [_begins(term) for term in terms]
        per_term = union_all(
            *(
                select(TokenRow.step_id.label("sid"), literal(i).label("term")).where(c)
                for i, c in enumerate(conditions)
            )
        ).subquery()
        best = (
            select(per_term.c.sid)
            .group_by(per_term.c.sid)
            .having(func.count(distinct(per_term.c.term)) == len(terms))
            .order_by(func.count().desc(), per_term.c.sid)
            .limit(limit)
        )
        with Session(self.engine) as session:
            ids = list(session.scalars(best))
            if not ids:
                return []
            matched: dict[int, set[str]] = {i: set() for i in ids}
            hits = select(TokenRow.step_id, TokenRow.field, TokenRow.token).where(
                TokenRow.step_id.in_(ids), or_(*conditions)
            )
            for step_id, field, token in session.execute(hits):
                matched[step_id].add(f"{field}:{token}")
            rows = {r.id: r for r in session.scalars(select(StepRow).where(StepRow.id.in_(ids)))}
            return [(_record(rows[i]), sorted(matched[i])) for i in ids]

    @_database_errors
    def find(self, name: str) -> StepRecord:
        """The step ``PIPELINE/STEP``, or ``STEP`` when only one pipeline has a step so named."""
        rows = self._rows(name)
        if not rows:
            raise CatalogError(
                f"no step {name!r} in the catalog",
                where=self.shown,
                hint="see `jup2kub catalog list` or `jup2kub catalog search TEXT`",
            )
        if len(rows) > 1:
            keys = ", ".join(f"{r.pipeline}/{r.step}" for r in rows)
            raise CatalogError(
                f"step name {name!r} is in several pipelines: {keys}",
                hint="name it as PIPELINE/STEP",
            )
        return rows[0]

    @_database_errors
    def remove(self, name: str) -> StepRecord:
        record = self.find(name)
        with self._writing() as session:
            session.execute(
                delete(StepRow).where(
                    StepRow.pipeline == record.pipeline, StepRow.step == record.step
                )
            )
        return record

    @_database_errors
    def images_with_tag(self, tag: str) -> list[tuple[str, str, str]]:
        """(image reference, digest, PIPELINE/STEP) of the steps whose image is tagged ``tag``
        (a step image's tag is its content hash), newest first: what a build may reuse."""
        if not tag or not tag.replace("-", "").replace("_", "").replace(".", "").isalnum():
            return []
        query = (
            select(StepRow.image, StepRow.digest, StepRow.pipeline, StepRow.step)
            .where(StepRow.image.like(f"%:{tag}"))
            .order_by(StepRow.recorded_at.desc(), StepRow.id.desc())
        )
        with Session(self.engine) as session:
            return [(i, d, f"{p}/{s}") for i, d, p, s in session.execute(query)]

    @_database_errors
    def count(self) -> int:
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count(StepRow.id))) or 0)

    def _rows(self, name: str) -> list[StepRecord]:
        pipeline, sep, step = name.rpartition("/")
        query = select(StepRow).where(StepRow.step == step)
        if sep:
            query = query.where(StepRow.pipeline == pipeline)
        with Session(self.engine) as session:
            return [_record(r) for r in session.scalars(query.order_by(StepRow.pipeline))]


def _begins(term: str) -> ColumnElement[bool]:
    """Tokens that are ``term`` or begin with it: an index range scan (tokens are ASCII)."""
    return or_(TokenRow.token == term, (TokenRow.token > term) & (TokenRow.token < term + "\x7f"))


def _record(row: StepRow) -> StepRecord:
    record = StepRecord(**{k: getattr(row, k) for k in FIELDS})
    if record.recorded_at.tzinfo is None:  # SQLite hands back naive UTC datetimes
        record.recorded_at = record.recorded_at.replace(tzinfo=timezone.utc)
    return record
