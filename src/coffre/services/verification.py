"""Recipient verification: a one-time code proves control of the mailbox
(or the phone) a personal link was sent to, before anything of the
transfer is shown (SEC-14, SEC-29).

The code's rules (lifetime, single use, throttled sends, lock after
``attempts`` wrong codes) are ``coffre.domain.codes``; the code is stored
only as a keyed hash bound to the recipient (``KeyRing.code_digest``).
A right code yields a short-lived access
grant bound to that link only (``LinkAccess``), which also records the
transfer's password once given. Never logs or audits a code or a phone
number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.crypto import credentials
from coffre.db.engine import Database
from coffre.db.tables import LinkAccess, Recipient, Transfer, User
from coffre.domain import codes
from coffre.domain.phones import mask_phone
from coffre.domain.transfers import check_link_usable, check_recipient_usable
from coffre.errors import Conflict, InvalidInput, NotFound
from coffre.ports import Clock, SmsSender
from coffre.services import messages
from coffre.services.keys import KeyRing
from coffre.services.mail import MailQueue
from coffre.services.tracking import track

#: How long a grant (code and/or password proved) opens its link.
ACCESS_LIFETIME = timedelta(hours=1)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def check_phone(phone: str) -> str:
    """A mobile number in E.164 form (``+33612345678``), spaces and dots allowed."""
    compact = re.sub(r"[\s.\-()]", "", phone)
    if not _E164.fullmatch(compact):
        raise InvalidInput(
            "a phone number must be in international form, e.g. +33612345678", field="phone"
        )
    return compact


def mask_email(email: str) -> str:
    """``dupont@exemple.fr`` -> ``d•••@exemple.fr``."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"


def phone_context(recipient_id: str) -> str:
    return f"recipient:{recipient_id}:phone"


def recipient_for_link(session: Session, token: str, now: datetime,
                       *, lock: bool = False) -> Recipient:
    """The recipient a personal link belongs to, if the link still works.

    ``lock``: hold the row until the transaction ends (PostgreSQL), so that
    parallel guesses or sends are counted one after the other.
    """
    query = select(Recipient).where(Recipient.token_hash == credentials.hash_token(token))
    if lock:
        query = query.with_for_update()
    recipient = session.execute(query).scalar_one_or_none()
    if recipient is None:
        raise NotFound("unknown link")
    check_link_usable(recipient.transfer, now)
    check_recipient_usable(recipient.revoked_at)
    return recipient


def valid_grant(
    session: Session, recipient: Recipient, access: str | None, now: datetime
) -> LinkAccess | None:
    """The unexpired grant ``access`` names, if it is bound to this link."""
    if not access:
        return None
    grant = session.get(LinkAccess, credentials.hash_token(access))
    if grant is None or grant.recipient_id != recipient.id or grant.expires_at <= now:
        return None
    return grant


def grant_access(
    session: Session, recipient: Recipient, access: str | None, now: datetime,
    *, code: bool = False, password: bool = False,
) -> str:
    """Add a proof to the grant presented, or to a new one; returns its token.
    The grant then lasts ``ACCESS_LIFETIME`` from this proof."""
    grant = valid_grant(session, recipient, access, now)
    if grant is None or access is None:
        access = credentials.new_token()
        grant = LinkAccess(
            token_hash=credentials.hash_token(access), recipient_id=recipient.id,
            created_at=now, expires_at=now + ACCESS_LIFETIME,
        )
        session.add(grant)
    grant.expires_at = now + ACCESS_LIFETIME
    grant.code_verified = grant.code_verified or code
    grant.password_verified = grant.password_verified or password
    return access


@dataclass(frozen=True)
class Challenge:
    """What a recipient who has not proved anything yet may be told."""

    recipient: str  # masked address or number
    sender: str
    channel: str  # "email" or "sms"
    code_pending: bool
    locked_until: datetime | None
    password_required: bool
    #: When the last code was sent (pending, expired or used), if ever.
    code_sent_at: datetime | None = None

    def details(self) -> dict[str, str]:
        return {"recipient": self.recipient, "sender": self.sender, "channel": self.channel}


@dataclass(frozen=True)
class CodeSent:
    channel: str
    recipient: str  # masked
    expires_in: int
    resend_in: int


class RecipientVerification:
    def __init__(
        self,
        db: Database,
        keys: KeyRing,
        mail: MailQueue,
        clock: Clock,
        sms: SmsSender | None,
        *,
        code_lifetime: timedelta,
        attempts: int,
        resend_interval: timedelta,
        lock_time: timedelta,
    ) -> None:
        self.db = db
        self.keys = keys
        self.mail = mail
        self.clock = clock
        self.sms = sms
        self.rules = codes.CodeRules(code_lifetime, attempts, resend_interval, lock_time)

    # -- what may be shown before any proof -------------------------------------

    def challenge(self, session: Session, recipient: Recipient) -> Challenge:
        transfer = recipient.transfer
        sender = session.get(User, transfer.sender_id)
        phone = self._phone(session, recipient)
        now = self.clock.now()
        locked = (recipient.locked_until if recipient.locked_until is not None
                  and recipient.locked_until > now else None)
        return Challenge(
            recipient=mask_phone(phone) if phone else mask_email(recipient.email),
            sender=(sender.display_name or sender.email) if sender else "",
            channel="sms" if phone else "email",
            code_pending=recipient.code_hash is not None
            and recipient.code_expires_at is not None
            and recipient.code_expires_at > now,
            locked_until=locked,
            password_required=transfer.password_hash is not None,
            code_sent_at=recipient.code_sent_at,
        )

    def challenge_for(self, token: str) -> Challenge:
        with self.db.session() as session:
            recipient = recipient_for_link(session, token, self.clock.now())
            return self.challenge(session, recipient)

    def _phone(self, session: Session, recipient: Recipient) -> str | None:
        if recipient.phone_sealed is None or self.sms is None:
            return None
        return self.keys.open_text(session, recipient.phone_sealed, phone_context(recipient.id))

    def _unlocked(self, session: Session, token: str, now: datetime) -> Recipient:
        """The link's recipient (row locked), if it takes codes and is not locked."""
        recipient = recipient_for_link(session, token, now, lock=True)
        if not recipient.transfer.verify_recipients:
            raise Conflict("this link does not need a code", reason="code_not_required")
        codes.check_unlocked(recipient, now)
        return recipient

    # -- send a code ------------------------------------------------------------

    def send_code(self, token: str, ctx: trail.Context) -> CodeSent:
        """Send a fresh code by mail (queued) or SMS; voids the previous one."""
        now = self.clock.now()
        code = codes.new_code()
        minutes = codes.seconds(self.rules.lifetime) // 60
        with self.db.session() as session:
            recipient = self._unlocked(session, token, now)
            transfer: Transfer = recipient.transfer
            codes.issue(recipient, self.keys.code_digest(
                session, transfer.organisation_id, recipient.id, code), now, self.rules)
            challenge = self.challenge(session, recipient)
            phone = self._phone(session, recipient)
            recipient_id = recipient.id
            if phone is None:
                self.mail.enqueue(
                    session, transfer.organisation_id,
                    messages.one_time_code(to=recipient.email, code=code, minutes=minutes,
                                           purpose=f"ouvrir l'envoi de {challenge.sender}"),
                )
                self._code_sent(session, recipient, "email", ctx, now)
        if phone is not None:
            assert self.sms is not None
            try:
                self.sms.send(phone, messages.recipient_code_sms(code=code, minutes=minutes))
            except Exception:
                self._send_failed(recipient_id, ctx)
                raise
            with self.db.session() as session:
                current = session.get(Recipient, recipient_id)
                assert current is not None
                self._code_sent(session, current, "sms", ctx, now)
        del code
        return CodeSent(
            channel=challenge.channel, recipient=challenge.recipient,
            expires_in=codes.seconds(self.rules.lifetime),
            resend_in=codes.seconds(self.rules.resend_interval),
        )

    def _code_sent(self, session: Session, recipient: Recipient, channel: str,
                   ctx: trail.Context, now: datetime) -> None:
        trail.record(
            session, "link.code_sent", actor=None,
            organisation_id=recipient.transfer.organisation_id, object_type="recipient",
            object_id=recipient.id, context=ctx, transfer=recipient.transfer_id,
            channel=channel,
        )
        track(session, recipient.transfer_id, "code_sent", time=now, recipient_id=recipient.id)

    def _send_failed(self, recipient_id: str, ctx: trail.Context) -> None:
        """The SMS did not leave: void the code and give the send back."""
        with self.db.session() as session:
            recipient = session.get(Recipient, recipient_id)
            assert recipient is not None
            codes.withdraw(recipient)
            trail.record(
                session, "link.code_not_sent", actor=None,
                organisation_id=recipient.transfer.organisation_id, object_type="recipient",
                object_id=recipient.id, outcome="failure", context=ctx,
                transfer=recipient.transfer_id, channel="sms",
            )

    # -- check a code -----------------------------------------------------------

    def verify(self, token: str, code: str, access: str | None, ctx: trail.Context) -> str:
        """Exchange the right code for an access grant (the one presented,
        updated, or a new one). Wrong codes count; the last allowed one
        locks the link (429) and voids the code."""
        now = self.clock.now()
        with self.db.session() as session:
            recipient = self._unlocked(session, token, now)
            transfer: Transfer = recipient.transfer
            result = codes.check(
                recipient, code,
                lambda given: self.keys.code_digest(
                    session, transfer.organisation_id, recipient.id, given),
                now, self.rules)
            if result.outcome is codes.Outcome.VERIFIED:
                granted = grant_access(session, recipient, access, now, code=True)
                self._event(session, recipient, "link.code_verified", ctx, now)
                track(session, transfer.id, "code_verified", time=now, recipient_id=recipient.id)
                return granted
            if result.outcome is not codes.Outcome.NONE_PENDING:
                self._event(session, recipient, "link.code_failed", ctx, now,
                            outcome="failure", failures=result.failures)
                track(session, transfer.id, "code_failed", time=now, recipient_id=recipient.id)
            if result.outcome is codes.Outcome.LOCKED:
                assert recipient.locked_until is not None
                self._event(session, recipient, "link.locked", ctx, now, outcome="failure",
                            until=recipient.locked_until.isoformat())
                track(session, transfer.id, "link_locked", time=now, recipient_id=recipient.id)
        # Raised once the failure, and any lock, are committed.
        assert result.error is not None
        raise result.error

    def _event(self, session: Session, recipient: Recipient, action: str, ctx: trail.Context,
               now: datetime, outcome: str = "success", **details: Any) -> None:
        trail.record(
            session, action, actor=None, organisation_id=recipient.transfer.organisation_id,
            object_type="recipient", object_id=recipient.id, outcome=outcome, context=ctx,
            transfer=recipient.transfer_id, **details,
        )
