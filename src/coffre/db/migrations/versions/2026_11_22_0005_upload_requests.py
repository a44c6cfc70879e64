"""Upload requests (invitations to deposit files)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import coffre.db.tables

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dt = coffre.db.tables.UTCDateTime
    op.create_table(
        "upload_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("organisation_id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("message_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("open_token_hash", sa.String(length=64), nullable=True),
        sa.Column("max_total_size", sa.BigInteger(), nullable=False),
        sa.Column("max_files", sa.Integer(), nullable=False),
        sa.Column("created_at", dt(), nullable=False),
        sa.Column("expires_at", dt(), nullable=False),
        sa.Column("closed_at", dt(), nullable=True),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"],
                                name=op.f("fk_upload_requests_organisation_id_organisations")),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"],
                                name=op.f("fk_upload_requests_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_requests")),
        sa.UniqueConstraint("open_token_hash", name=op.f("uq_upload_requests_open_token_hash")),
    )
    for column in ("organisation_id", "owner_id", "expires_at"):
        op.create_index(op.f(f"ix_upload_requests_{column}"), "upload_requests", [column])
    op.create_table(
        "request_depositors",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("phone_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("joined", sa.Boolean(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("code_expires_at", dt(), nullable=True),
        sa.Column("code_failures", sa.Integer(), nullable=False),
        sa.Column("code_sent_at", dt(), nullable=True),
        sa.Column("code_sends", sa.Integer(), nullable=False),
        sa.Column("locked_until", dt(), nullable=True),
        sa.Column("verified_at", dt(), nullable=True),
        sa.Column("created_at", dt(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["upload_requests.id"],
                                name=op.f("fk_request_depositors_request_id_upload_requests")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_depositors")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_request_depositors_token_hash")),
    )
    op.create_index(op.f("ix_request_depositors_request_id"), "request_depositors",
                    ["request_id"])
    op.create_table(
        "deposit_grants",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("depositor_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", dt(), nullable=False),
        sa.Column("expires_at", dt(), nullable=False),
        sa.ForeignKeyConstraint(
            ["depositor_id"], ["request_depositors.id"],
            name=op.f("fk_deposit_grants_depositor_id_request_depositors")),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_deposit_grants")),
    )
    op.create_index(op.f("ix_deposit_grants_depositor_id"), "deposit_grants", ["depositor_id"])
    for table, column in (("uploads", "depositor_id"), ("transfers", "received_from")):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(column, sa.String(length=32), nullable=True))
            batch.create_index(batch.f(f"ix_{table}_{column}"), [column])
            batch.create_foreign_key(
                batch.f(f"fk_{table}_{column}_request_depositors"),
                "request_depositors", [column], ["id"],
            )


def downgrade() -> None:
    for table, column in (("transfers", "received_from"), ("uploads", "depositor_id")):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(batch.f(f"fk_{table}_{column}_request_depositors"),
                                  type_="foreignkey")
            batch.drop_index(batch.f(f"ix_{table}_{column}"))
            batch.drop_column(column)
    op.drop_table("deposit_grants")
    op.drop_table("request_depositors")
    op.drop_table("upload_requests")
