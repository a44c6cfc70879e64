"""Live tracking: each recipient's timeline, for the sender (SEC-4).

Steps are written with ``track`` in the same transaction as the audit
event they mirror (the audit trail stays the authoritative record). The
sender, or an administrator of the same organisation, reads them as a
list or follows them as they come; an administrator other than the
sender reading a transfer leaves an "admin_access" step the sender sees.
A timeline never holds a secret, a code, a phone number or a file name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.db.engine import Database
from coffre.db.tables import Recipient, Transfer, TransferEvent
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action, Target, authorize
from coffre.errors import InvalidInput, NotFound
from coffre.notify.live import announce
from coffre.ports import Clock

KINDS = frozenset(
    {
        "mail_sent",
        "link_opened",
        "code_sent",
        "code_verified",
        "code_failed",
        "link_locked",
        "password_failed",
        "file_downloaded",
        "zip_downloaded",
        "admin_access",
        "deposit_received",
        "recipient_revoked",
    }
)
PAGE = 500


def track(
    session: Session,
    transfer_id: str,
    kind: str,
    *,
    time: datetime,
    recipient_id: str | None = None,
    file_id: str | None = None,
    actor_id: str | None = None,
) -> None:
    """Add one step to a transfer's timeline, in the caller's transaction."""
    if kind not in KINDS:
        raise ValueError(f"unknown tracking kind {kind!r}")
    announce(session, f"transfer:{transfer_id}")  # wakes live streams once committed
    session.add(
        TransferEvent(
            transfer_id=transfer_id,
            recipient_id=recipient_id,
            kind=kind,
            file_id=file_id,
            actor_id=actor_id,
            time=time,
        )
    )


def record_admin_access(
    session: Session, actor: Actor, transfer: Transfer, what: str, ctx: trail.Context | None,
    time: datetime,
) -> None:
    """An administrator other than the sender looked at a transfer: one
    audit event and one step the sender sees. Nothing for the sender."""
    if actor.user_id == transfer.sender_id:
        return
    trail.record(
        session,
        "transfer.admin_access",
        actor=actor.user_id,
        organisation_id=transfer.organisation_id,
        object_type="transfer",
        object_id=transfer.id,
        context=ctx,
        time=time,
        what=what,
    )
    track(session, transfer.id, "admin_access", time=time, actor_id=actor.user_id)


@dataclass(frozen=True)
class Step:
    id: int
    kind: str
    time: datetime
    recipient_id: str | None
    recipient: str | None  # the recipient's address
    file_id: str | None
    actor_id: str | None


@dataclass(frozen=True)
class Repeated:
    """Steps of one kind (for one file) in a timeline, shown once where it
    first happened: "Link opened 5 times, last on …"."""

    kind: str
    file_id: str | None
    first: datetime
    last: datetime
    count: int


def collapse(steps: Iterable[Step]) -> list[Repeated]:
    """A timeline as people read it: each kind of step (per file) once, in
    the order they first happened, with how many times and the last time."""
    seen: dict[tuple[str, str | None], Repeated] = {}
    for step in steps:
        key = (step.kind, step.file_id)
        found = seen.get(key)
        seen[key] = Repeated(step.kind, step.file_id, step.time, step.time, 1) if found is None \
            else Repeated(step.kind, step.file_id, found.first, step.time, found.count + 1)
    return list(seen.values())


@dataclass(frozen=True)
class Change:
    """A step of one of the sender's transfers (their dashboard follows them)."""

    id: int
    transfer_id: str
    kind: str


class TrackingService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def open(self, actor: Actor, transfer_id: str, what: str, ctx: trail.Context) -> None:
        """Check that ``actor`` may follow this transfer (sender or an
        administrator of its organisation; anyone else gets 404) and record
        an administrator's access."""
        with self.db.session() as session:
            transfer = self._readable(session, actor, transfer_id)
            record_admin_access(session, actor, transfer, what, ctx, self.clock.now())

    def check(self, actor: Actor, transfer_id: str) -> None:
        """The same check, again, for a stream that stays open."""
        with self.db.session() as session:
            self._readable(session, actor, transfer_id)

    @staticmethod
    def _readable(session: Session, actor: Actor, transfer_id: str) -> Transfer:
        transfer = session.get(Transfer, transfer_id)
        if transfer is None:
            raise NotFound("transfer not found")
        authorize(actor, Action.TRANSFER_READ,
                  Target(transfer.organisation_id, transfer.sender_id),
                  missing="transfer not found")
        return transfer

    def timeline(self, actor: Actor, transfer_id: str, ctx: trail.Context,
                 after: int = 0) -> list[Step]:
        self.open(actor, transfer_id, "events", ctx)
        return self.since(transfer_id, after)

    def since(self, transfer_id: str, after: int, limit: int = PAGE) -> list[Step]:
        """Steps with an id above ``after``, oldest first (call ``open`` first)."""
        if after < 0:
            raise InvalidInput("the last event id must be a positive number", field="after")
        with self.db.session() as session:
            rows = session.execute(
                select(TransferEvent, Recipient.email)
                .outerjoin(Recipient, Recipient.id == TransferEvent.recipient_id)
                .where(TransferEvent.transfer_id == transfer_id, TransferEvent.id > after)
                .order_by(TransferEvent.id)
                .limit(limit)
            ).all()
            return [
                Step(e.id, e.kind, e.time, e.recipient_id, email, e.file_id, e.actor_id)
                for e, email in rows
            ]

    def sent_since(self, actor: Actor, after: int, limit: int = PAGE) -> list[Change]:
        """Steps of the transfers ``actor`` sent, with an id above ``after``,
        oldest first."""
        authorize(actor, Action.TRANSFER_LIST)
        if after < 0:
            raise InvalidInput("the last event id must be a positive number", field="after")
        with self.db.session() as session:
            rows = session.execute(
                select(TransferEvent.id, TransferEvent.transfer_id, TransferEvent.kind)
                .join(Transfer, Transfer.id == TransferEvent.transfer_id)
                .where(Transfer.sender_id == actor.user_id, TransferEvent.id > after)
                .order_by(TransferEvent.id)
                .limit(limit)
            ).all()
            return [Change(i, t, k) for i, t, k in rows]

    def last_sent_step(self, actor: Actor) -> int:
        """The id of the latest step of ``actor``'s transfers (0: none)."""
        authorize(actor, Action.TRANSFER_LIST)
        with self.db.session() as session:
            found = session.execute(
                select(func.max(TransferEvent.id))
                .join(Transfer, Transfer.id == TransferEvent.transfer_id)
                .where(Transfer.sender_id == actor.user_id)
            ).scalar_one()
            return int(found or 0)
