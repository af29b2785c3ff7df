"""The step catalog: steps and their search tokens.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from jup2kub.catalog.models import TOKEN_TYPE

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog_steps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("step", sa.String(200), nullable=False),
        sa.Column("notebook", sa.Text, nullable=False),
        sa.Column("notebook_sha256", sa.String(64), nullable=False),
        sa.Column("cells", sa.JSON, nullable=False),
        sa.Column("code_sha256", sa.String(64), nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("markdown", sa.Text, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("imports", sa.JSON, nullable=False),
        sa.Column("lock", sa.Text, nullable=False),
        sa.Column("image", sa.Text, nullable=False),
        sa.Column("digest", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("origin", sa.String(20), nullable=False),
        sa.Column("generator", sa.String(50), nullable=False),
        sa.UniqueConstraint("pipeline", "step", name="uq_catalog_steps_name"),
    )
    op.create_table(
        "catalog_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "step_id",
            sa.Integer,
            sa.ForeignKey("catalog_steps.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("token", TOKEN_TYPE, nullable=False),
        sa.Column("field", sa.String(20), nullable=False),
    )
    op.create_index("ix_catalog_tokens_token", "catalog_tokens", ["token"])
    op.create_index("ix_catalog_tokens_step_id", "catalog_tokens", ["step_id"])


def downgrade() -> None:
    op.drop_table("catalog_tokens")
    op.drop_table("catalog_steps")
