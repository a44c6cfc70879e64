"""Second factors remember the browser that used their last code; browser
sessions keep a sealed step-up intent (the action to resume)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import coffre.db.tables

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dt = coffre.db.tables.UTCDateTime
    with op.batch_alter_table("second_factors") as batch:
        batch.add_column(sa.Column("last_step_by", sa.String(length=64), nullable=True))
    with op.batch_alter_table("user_sessions") as batch:
        batch.add_column(sa.Column("intent_sealed", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("intent_expires_at", dt(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user_sessions") as batch:
        batch.drop_column("intent_expires_at")
        batch.drop_column("intent_sealed")
    with op.batch_alter_table("second_factors") as batch:
        batch.drop_column("last_step_by")
