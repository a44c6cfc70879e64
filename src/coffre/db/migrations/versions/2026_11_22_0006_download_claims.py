"""Download claims shared by every instance (the distributed profile)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import coffre.db.tables

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "download_claims",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("recipient_id", sa.String(length=32), nullable=False),
        sa.Column("file_id", sa.String(length=32), nullable=False),
        sa.Column("expires_at", coffre.db.tables.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_download_claims")),
    )
    with op.batch_alter_table("download_claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_download_claims_recipient_id"), ["recipient_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("download_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_download_claims_recipient_id"))
    op.drop_table("download_claims")
