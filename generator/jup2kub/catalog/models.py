"""The catalog's tables (SQLAlchemy 2.x declarative models; the schema itself is created and
upgraded only by the Alembic migrations in ``migrations/``, never by ``create_all``).

One row per catalogued step (``pipeline``, ``step`` unique) and its search tokens: lowercase
words of its names, variables, imported packages and markdown, in an indexed table, so a search
is a few index range scans on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: tokens compare bytewise (a prefix search is an index range scan, whatever the locale)
TOKEN_TYPE = String(100).with_variant(String(100, collation="C"), "postgresql")


class Base(DeclarativeBase):
    pass


class StepRow(Base):
    """What the catalog knows about one step (no secret parameter's value)."""

    __tablename__ = "catalog_steps"
    __table_args__ = (UniqueConstraint("pipeline", "step", name="uq_catalog_steps_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(200))
    step: Mapped[str] = mapped_column(String(200))
    notebook: Mapped[str] = mapped_column(Text)
    notebook_sha256: Mapped[str] = mapped_column(String(64))
    cells: Mapped[list[Any]] = mapped_column(JSON)
    code_sha256: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(Text)
    markdown: Mapped[str] = mapped_column(Text)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    imports: Mapped[list[Any]] = mapped_column(JSON)
    lock: Mapped[str] = mapped_column(Text)
    image: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(Text)
    sbom: Mapped[dict[str, Any]] = mapped_column(JSON)  # migration 0002
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_by: Mapped[str] = mapped_column(String(200))
    origin: Mapped[str] = mapped_column(String(20))  # "build" | "notebook" | "chart"
    generator: Mapped[str] = mapped_column(String(50))


class TokenRow(Base):
    """One search word of a step, with the field it came from (why a search matched)."""

    __tablename__ = "catalog_tokens"
    __table_args__ = (Index("ix_catalog_tokens_token", "token"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_id: Mapped[int] = mapped_column(
        ForeignKey("catalog_steps.id", ondelete="CASCADE"), index=True
    )
    token: Mapped[str] = mapped_column(TOKEN_TYPE)
    field: Mapped[str] = mapped_column(
        String(20)
    )  # name | reads | writes | parameter | package | markdown
