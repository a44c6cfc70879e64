"""The mail queue: messages are sealed in the database until delivered.

Enqueuing happens inside the caller's transaction, so a transfer and its
notifications commit together; delivery runs as a job with retries.
Bodies carry personal links, so they are sealed at rest and cleared once
sent.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import timedelta

from anyio import sleep
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.db.engine import Database
from coffre.db.tables import OutgoingMail, Recipient, new_id
from coffre.errors import CoffreError
from coffre.ports import Clock, Mail, Mailer
from coffre.services.keys import KeyRing
from coffre.services.tracking import track

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8


class MailQueue:
    def __init__(self, db: Database, keys: KeyRing, mailer: Mailer, clock: Clock) -> None:
        self.db = db
        self.keys = keys
        self.mailer = mailer
        self.clock = clock
        self._queued = threading.Event()

    def enqueue(self, session: Session, organisation_id: str, mail: Mail,
                recipient_id: str | None = None) -> None:
        """``recipient_id``: a transfer's link mail, whose delivery the
        sender's timeline shows ("mail_sent")."""
        row = OutgoingMail(id=new_id(), organisation_id=organisation_id, to=mail.to,
                           recipient_id=recipient_id)
        row.body_sealed = self.keys.seal_text(
            session,
            organisation_id,
            json.dumps(
                {
                    "subject": mail.subject,
                    "text": mail.text,
                    "html": mail.html,
                    "headers": mail.headers,
                }
            ),
            f"mail:{row.id}",
        )
        row.next_attempt_at = self.clock.now()
        session.add(row)
        # Wake the delivery job once this commits (a recipient waits for a code).
        event.listen(session, "after_commit", lambda _: self._queued.set(), once=True)

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, less if mail was queued meanwhile."""
        deadline = time.monotonic() + timeout
        while not self._queued.is_set() and time.monotonic() < deadline:
            await sleep(0.05)
        self._queued.clear()

    async def deliver_due(self, limit: int = 50) -> int:
        """Send what is due; returns how many were sent."""
        from anyio import to_thread

        due = await to_thread.run_sync(self._claim_due, limit)
        sent = 0
        for mail_id, mail in due:
            try:
                await self.mailer.send(mail)
            except (CoffreError, OSError) as exc:
                await to_thread.run_sync(self._failed, mail_id, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - one bad message must not block the queue
                await to_thread.run_sync(self._failed, mail_id, type(exc).__name__)
                continue
            await to_thread.run_sync(self._sent, mail_id)
            sent += 1
        return sent

    def _claim_due(self, limit: int) -> list[tuple[str, Mail]]:
        now = self.clock.now()
        out = []
        with self.db.session() as session:
            rows = (
                session.execute(
                    select(OutgoingMail)
                    .where(
                        OutgoingMail.sent_at.is_(None),
                        OutgoingMail.next_attempt_at <= now,
                        OutgoingMail.body_sealed.is_not(None),
                    )
                    .order_by(OutgoingMail.next_attempt_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
                .scalars()
                .all()
            )
            for row in rows:
                assert row.body_sealed is not None
                body = json.loads(self.keys.open_text(session, row.body_sealed, f"mail:{row.id}"))
                # Claimed for a minute, so a concurrent worker does not send it too.
                row.next_attempt_at = now + timedelta(minutes=1)
                out.append(
                    (
                        row.id,
                        Mail(
                            to=row.to,
                            subject=body["subject"],
                            text=body["text"],
                            html=body.get("html"),
                            headers=body.get("headers") or {},
                        ),
                    )
                )
        return out

    def _sent(self, mail_id: str) -> None:
        with self.db.session() as session:
            row = session.get(OutgoingMail, mail_id)
            if row is not None:
                row.sent_at = self.clock.now()
                row.body_sealed = None
                trail.record(
                    session,
                    "mail.sent",
                    actor=None,
                    organisation_id=row.organisation_id,
                    object_type="mail",
                    object_id=row.id,
                )
                recipient = session.get(Recipient, row.recipient_id) if row.recipient_id else None
                if recipient is not None:
                    track(session, recipient.transfer_id, "mail_sent", time=row.sent_at,
                          recipient_id=recipient.id)

    def _failed(self, mail_id: str, error: str) -> None:
        with self.db.session() as session:
            row = session.get(OutgoingMail, mail_id)
            if row is None:
                return
            row.attempts += 1
            row.last_error = error[:500]
            log.warning("mail %s failed (attempt %d)", mail_id, row.attempts)
            if row.attempts >= MAX_ATTEMPTS:
                row.body_sealed = None
                trail.record(
                    session,
                    "mail.failed",
                    actor=None,
                    organisation_id=row.organisation_id,
                    object_type="mail",
                    object_id=row.id,
                    outcome="failure",
                    attempts=row.attempts,
                )
            else:
                row.next_attempt_at = self.clock.now() + timedelta(minutes=2**row.attempts)
