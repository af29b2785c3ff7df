"""Alembic environment: migrations run on the connection the catalog hands over (in
``config.attributes["connection"]``), inside its write transaction, so concurrent first uses
of a new database create the schema once (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from jup2kub.catalog.models import Base

#: pg_advisory_xact_lock key serialising catalog schema changes
MIGRATION_LOCK = 0x6A32_6B63

connection = context.config.attributes["connection"]
if connection.dialect.name == "postgresql":
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table="catalog_alembic_version",
    render_as_batch=connection.dialect.name == "sqlite",
)
context.run_migrations()
