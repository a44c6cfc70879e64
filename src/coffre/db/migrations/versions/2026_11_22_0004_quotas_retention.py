"""Storage modes, retention, legal hold, quotas and recipient limits

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import coffre.db.tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ORGANISATION = [
    ("default_expiry_days", sa.Integer()),
    ("max_expiry_days", sa.Integer()),
    ("max_file_size", sa.BigInteger()),
    ("max_transfer_size", sa.BigInteger()),
    ("max_recipients", sa.Integer()),
    ("user_quota", sa.BigInteger()),
    ("organisation_quota", sa.BigInteger()),
]


def upgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        for name, type_ in _ORGANISATION:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
        batch_op.add_column(
            sa.Column("allow_permanent", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(
            sa.Column("recipient_domains_allowed", sa.Text(), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("recipient_domains_denied", sa.Text(), nullable=False, server_default="")
        )
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("held_at", coffre.db.tables.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("held_by", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("purge_deferred_at", coffre.db.tables.UTCDateTime(),
                      nullable=True)
        )
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("quota_reserved", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_column("quota_reserved")
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_column("purge_deferred_at")
        batch_op.drop_column("held_by")
        batch_op.drop_column("held_at")
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        for name in ("recipient_domains_denied", "recipient_domains_allowed", "allow_permanent"):
            batch_op.drop_column(name)
        for name, _ in reversed(_ORGANISATION):
            batch_op.drop_column(name)
