"""Download limits count delivered bytes: bytes sent per (recipient, file),
bytes a response under way may still send

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("file_reads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_since", sa.BigInteger(), server_default="0",
                                      nullable=False))
        batch_op.add_column(sa.Column("sent_total", sa.BigInteger(), server_default="0",
                                      nullable=False))
    with op.batch_alter_table("download_claims", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bytes", sa.BigInteger(), server_default="0",
                                      nullable=False))
    # Downloads counted before count their whole file as sent (a limit then
    # holds for them too); the ranges of a partial read were sent as well.
    bind = op.get_bind()
    reads = sa.table("file_reads", sa.column("recipient_id", sa.String),
                     sa.column("file_id", sa.String), sa.column("delivered", sa.Text),
                     sa.column("sent_since", sa.BigInteger),
                     sa.column("sent_total", sa.BigInteger))
    downloads = sa.table("downloads", sa.column("recipient_id", sa.String),
                         sa.column("file_id", sa.String))
    files = sa.table("transfer_files", sa.column("id", sa.String), sa.column("size", sa.BigInteger))
    partial = {(r, f): _ranges_size(d) for r, f, d in bind.execute(
        sa.select(reads.c.recipient_id, reads.c.file_id, reads.c.delivered))}
    for (recipient_id, file_id), sent in partial.items():
        bind.execute(reads.update().where(reads.c.recipient_id == recipient_id,
                                          reads.c.file_id == file_id)
                     .values(sent_since=sent, sent_total=sent))
    counted = bind.execute(
        sa.select(downloads.c.recipient_id, downloads.c.file_id, sa.func.count(), files.c.size)
        .join(files, files.c.id == downloads.c.file_id)
        .group_by(downloads.c.recipient_id, downloads.c.file_id, files.c.size)
    ).all()
    for recipient_id, file_id, number, size in counted:
        whole = int(number) * int(size or 0)
        if (recipient_id, file_id) in partial:
            bind.execute(reads.update().where(reads.c.recipient_id == recipient_id,
                                              reads.c.file_id == file_id)
                         .values(sent_total=reads.c.sent_total + whole))
        else:
            bind.execute(reads.insert().values(recipient_id=recipient_id, file_id=file_id,
                                               delivered="[]", sent_since=0,
                                               sent_total=whole))


def _ranges_size(delivered: str | None) -> int:
    return sum(max(int(hi) - int(lo), 0) for lo, hi in json.loads(delivered or "[]"))


def downgrade() -> None:
    with op.batch_alter_table("download_claims", schema=None) as batch_op:
        batch_op.drop_column("bytes")
    with op.batch_alter_table("file_reads", schema=None) as batch_op:
        batch_op.drop_column("sent_total")
        batch_op.drop_column("sent_since")
