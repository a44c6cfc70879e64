"""Backup sessions count the bodies dropped before they were stored

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backup_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dropped", sa.Integer(), server_default="0",
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("backup_sessions", schema=None) as batch_op:
        batch_op.drop_column("dropped")
