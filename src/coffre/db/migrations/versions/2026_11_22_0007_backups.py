"""Backups: restic repositories, their credentials, objects and sessions

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import coffre.db.tables

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    dt = coffre.db.tables.UTCDateTime
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("backup_quota", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("backup_alert_days", sa.Integer(), nullable=True))
    op.create_table(
        "backup_repositories",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("organisation_id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("quota", sa.BigInteger(), nullable=True),
        sa.Column("used_bytes", sa.BigInteger(), nullable=False),
        sa.Column("object_count", sa.Integer(), nullable=False),
        sa.Column("created_at", dt(), nullable=False),
        sa.Column("initialised_at", dt(), nullable=True),
        sa.Column("last_snapshot_at", dt(), nullable=True),
        sa.Column("alerted_at", dt(), nullable=True),
        sa.Column("revoked_at", dt(), nullable=True),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"],
                                name=op.f("fk_backup_repositories_organisation_id_organisations")),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"],
                                name=op.f("fk_backup_repositories_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_repositories")),
    )
    for column in ("organisation_id", "owner_id"):
        op.create_index(op.f(f"ix_backup_repositories_{column}"), "backup_repositories",
                        [column])
    op.create_table(
        "backup_credentials",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("repository_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("created_at", dt(), nullable=False),
        sa.Column("expires_at", dt(), nullable=True),
        sa.Column("revoked_at", dt(), nullable=True),
        sa.Column("last_used_at", dt(), nullable=True),
        sa.ForeignKeyConstraint(["repository_id"], ["backup_repositories.id"],
                                name=op.f("fk_backup_credentials_repository_id_backup_repositories")),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"],
                                name=op.f("fk_backup_credentials_created_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_credentials")),
    )
    op.create_index(op.f("ix_backup_credentials_repository_id"), "backup_credentials",
                    ["repository_id"])
    op.create_table(
        "backup_objects",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("repository_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("blob_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", dt(), nullable=False),
        sa.ForeignKeyConstraint(["repository_id"], ["backup_repositories.id"],
                                name=op.f("fk_backup_objects_repository_id_backup_repositories")),
        sa.ForeignKeyConstraint(["blob_id"], ["blobs.id"],
                                name=op.f("fk_backup_objects_blob_id_blobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_objects")),
        sa.UniqueConstraint("repository_id", "kind", "name",
                            name=op.f("uq_backup_objects_repository_id")),
    )
    op.create_table(
        "backup_sessions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("repository_id", sa.String(length=32), nullable=False),
        sa.Column("credential_id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.Column("started_at", dt(), nullable=False),
        sa.Column("last_at", dt(), nullable=False),
        sa.Column("closed_at", dt(), nullable=True),
        *(sa.Column(name, sa.Integer(), nullable=False)
          for name in ("written", "snapshots", "read", "listed", "deleted", "refused",
                       "denied")),
        *(sa.Column(name, sa.BigInteger(), nullable=False)
          for name in ("bytes_written", "bytes_read")),
        sa.ForeignKeyConstraint(["repository_id"], ["backup_repositories.id"],
                                name=op.f("fk_backup_sessions_repository_id_backup_repositories")),
        sa.ForeignKeyConstraint(["credential_id"], ["backup_credentials.id"],
                                name=op.f("fk_backup_sessions_credential_id_backup_credentials")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_sessions")),
    )
    for column in ("repository_id", "credential_id", "last_at"):
        op.create_index(op.f(f"ix_backup_sessions_{column}"), "backup_sessions", [column])


def downgrade() -> None:
    for table in ("backup_sessions", "backup_objects", "backup_credentials",
                  "backup_repositories"):
        op.drop_table(table)
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_column("backup_alert_days")
        batch_op.drop_column("backup_quota")
