"""Limits in force and storage usage, read from the database.

Usage counts the plaintext bytes of live files (blobs not crypto-shredded:
completed uploads, attached to a transfer or not) plus uploads in
progress: their declared length, or for a deferred-length upload the
larger of its offset and the bytes it has reserved while streaming.

Quota checks run in the same transaction as the write they guard, after
:meth:`Quotas.lock` (a row lock on the organisation; SQLite transactions
are already serialised by ``BEGIN IMMEDIATE``), so two uploads racing for
the last bytes of a quota cannot both pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from coffre.db.engine import Database
from coffre.db.tables import Blob, Organisation, Upload, User
from coffre.domain import limits as rules
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action, allowed, authorize
from coffre.errors import NotFound


@dataclass(frozen=True)
class MemberUsage:
    id: str
    email: str
    used: int


@dataclass(frozen=True)
class UsageReport:
    user: rules.Usage
    #: Only for administrators.
    organisation: rules.Usage | None
    members: list[MemberUsage] | None
    #: Only for administrators: where the blob store keeps the data, e.g.
    #: an S3 region (SEC-1); None for a directory on this server.
    storage_location: str | None = None


def policy_of(org: Organisation) -> rules.OrganisationPolicy:
    return rules.OrganisationPolicy(
        default_expiry_days=org.default_expiry_days,
        max_expiry_days=org.max_expiry_days,
        allow_permanent=org.allow_permanent,
        max_file_size=org.max_file_size,
        max_transfer_size=org.max_transfer_size,
        max_recipients=org.max_recipients,
        recipient_domains_allowed=tuple(org.recipient_domains_allowed.split()),
        recipient_domains_denied=tuple(org.recipient_domains_denied.split()),
        user_quota=org.user_quota,
        organisation_quota=org.organisation_quota,
        backup_quota=org.backup_quota,
        backup_alert_days=org.backup_alert_days,
    )


def _counted() -> ColumnElement[int]:
    return case(
        (Upload.length.is_not(None), Upload.length),
        (Upload.quota_reserved > Upload.offset, Upload.quota_reserved),
        else_=Upload.offset,
    )


class Quotas:
    def __init__(self, db: Database, instance: rules.InstanceLimits, *,
                 storage_location: str | None = None) -> None:
        self.db = db
        self.instance = instance
        self.storage_location = storage_location

    def limits(self, session: Session, organisation_id: str) -> rules.Limits:
        org = session.get(Organisation, organisation_id)
        if org is None:
            raise NotFound("organisation not found")
        return rules.effective(self.instance, policy_of(org))

    @staticmethod
    def lock(session: Session, organisation_id: str) -> None:
        """Serialise quota decisions of one organisation (PostgreSQL row lock).
        ``FOR NO KEY UPDATE``: it does not wait for the key-share locks that
        inserting rows referencing the organisation take, so two writers
        that each inserted an upload first cannot deadlock here."""
        session.execute(
            select(Organisation.id).where(Organisation.id == organisation_id)
            .with_for_update(key_share=True)
        )

    @staticmethod
    def used(session: Session, organisation_id: str, owner_id: str | None = None,
             exclude_upload: str | None = None) -> int:
        query = (
            select(func.coalesce(func.sum(_counted()), 0))
            .select_from(Upload)
            .join(Blob, Blob.id == Upload.blob_id)
            .where(Upload.organisation_id == organisation_id, Blob.shredded_at.is_(None))
        )
        if owner_id is not None:
            query = query.where(Upload.owner_id == owner_id)
        if exclude_upload is not None:
            query = query.where(Upload.id != exclude_upload)
        return int(session.execute(query).scalar_one())

    def usage(self, session: Session, organisation_id: str, owner_id: str,
              exclude_upload: str | None = None) -> tuple[rules.Usage, rules.Usage]:
        limits = self.limits(session, organisation_id)
        return (
            rules.Usage(self.used(session, organisation_id, owner_id, exclude_upload),
                        limits.user_quota),
            rules.Usage(self.used(session, organisation_id, None, exclude_upload),
                        limits.organisation_quota),
        )

    def check(self, session: Session, organisation_id: str, owner_id: str, needed: int,
              exclude_upload: str | None = None) -> None:
        """413 unless ``needed`` bytes fit; call inside the writing transaction."""
        self.lock(session, organisation_id)
        user, organisation = self.usage(session, organisation_id, owner_id, exclude_upload)
        rules.check_quota(needed, user, organisation)

    def free(self, session: Session, organisation_id: str, owner_id: str,
             exclude_upload: str | None = None) -> int | None:
        """Bytes still free for this owner (None: unlimited); locks first."""
        self.lock(session, organisation_id)
        frees = [u.free for u in self.usage(session, organisation_id, owner_id, exclude_upload)]
        known = [f for f in frees if f is not None]
        return min(known) if known else None

    def report(self, actor: Actor) -> UsageReport:
        """``GET /api/v1/usage``: the caller's, and the organisation's for
        administrators (with each member's)."""
        authorize(actor, Action.USAGE_READ)
        with self.db.session() as session:
            user, organisation = self.usage(session, actor.organisation_id, actor.user_id)
            if not allowed(actor, Action.MEMBER_LIST):
                return UsageReport(user, None, None)
            rows = session.execute(
                select(User.id, User.email)
                .where(User.organisation_id == actor.organisation_id)
                .order_by(User.email)
            ).all()
            members = [MemberUsage(uid, email, self.used(session, actor.organisation_id, uid))
                       for uid, email in rows]
            return UsageReport(user, organisation, members, self.storage_location)
