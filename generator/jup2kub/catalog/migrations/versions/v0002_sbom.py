"""Each step's SBOM: its sha256, where it is attached, its packages (issue 31).

Steps recorded before have none: ``{}``, as a build without images records.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "catalog_steps",
        sa.Column("sbom", sa.JSON, nullable=False, server_default=sa.text("'{}'")),
    )


def downgrade() -> None:
    with op.batch_alter_table("catalog_steps") as batch:
        batch.drop_column("sbom")
