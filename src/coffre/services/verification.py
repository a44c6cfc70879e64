"""Recipient verification: a one-time code proves control of the mailbox
(or the phone) a personal link was sent to, before anything of the
transfer is shown (SEC-14, SEC-29).

A code is 8 digits from the OS CSPRNG, valid ``code_lifetime``, stored
only as a keyed hash bound to the recipient (``KeyRing.code_digest``),
and used once. Sends are throttled (one per ``resend_interval``, at most
``MAX_SENDS_PER_HOUR``); ``attempts`` wrong codes lock the link for
``lock_time`` and void the code. A right code yields a short-lived access
grant bound to that link only (``LinkAccess``), which also records the
transfer's password once given. Never logs or audits a code or a phone
number.
"""

from __future__ import annotations

import hmac
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.crypto import credentials
from coffre.db.engine import Database
from coffre.db.tables import LinkAccess, Recipient, Transfer, User
from coffre.domain.transfers import check_link_usable
from coffre.errors import AuthenticationRequired, Conflict, InvalidInput, NotFound, TooManyAttempts
from coffre.ports import Clock, SmsSender
from coffre.services import messages
from coffre.services.keys import KeyRing
from coffre.services.mail import MailQueue
from coffre.services.tracking import track

#: How long a grant (code and/or password proved) opens its link.
ACCESS_LIFETIME = timedelta(hours=1)
CODE_DIGITS = 8
MAX_SENDS_PER_HOUR = 5
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


def mask_phone(phone: str) -> str:
    """``+33612345678`` -> ``+33•••••••78``."""
    return f"{phone[:3]}{'•' * max(len(phone) - 5, 1)}{phone[-2:]}"


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

    def details(self) -> dict[str, str]:
        return {"recipient": self.recipient, "sender": self.sender, "channel": self.channel}


@dataclass(frozen=True)
class CodeSent:
    channel: str
    recipient: str  # masked
    expires_in: int
    resend_in: int


def _seconds(delta: timedelta) -> int:
    return max(math.ceil(delta.total_seconds()), 1)


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
        self.code_lifetime = code_lifetime
        self.attempts = attempts
        self.resend_interval = resend_interval
        self.lock_time = lock_time

    # -- what may be shown before any proof -------------------------------------

    def challenge(self, session: Session, recipient: Recipient) -> Challenge:
        transfer = recipient.transfer
        sender = session.get(User, transfer.sender_id)
        phone = self._phone(session, recipient)
        now = self.clock.now()
        locked = recipient.locked_until if self._locked(recipient, now) else None
        return Challenge(
            recipient=mask_phone(phone) if phone else mask_email(recipient.email),
            sender=(sender.display_name or sender.email) if sender else "",
            channel="sms" if phone else "email",
            code_pending=recipient.code_hash is not None
            and recipient.code_expires_at is not None
            and recipient.code_expires_at > now,
            locked_until=locked,
            password_required=transfer.password_hash is not None,
        )

    def challenge_for(self, token: str) -> Challenge:
        with self.db.session() as session:
            recipient = recipient_for_link(session, token, self.clock.now())
            return self.challenge(session, recipient)

    def _phone(self, session: Session, recipient: Recipient) -> str | None:
        if recipient.phone_sealed is None or self.sms is None:
            return None
        return self.keys.open_text(session, recipient.phone_sealed, phone_context(recipient.id))

    @staticmethod
    def _locked(recipient: Recipient, now: datetime) -> bool:
        return recipient.locked_until is not None and recipient.locked_until > now

    def _locked_error(self, recipient: Recipient, now: datetime) -> TooManyAttempts:
        assert recipient.locked_until is not None
        return TooManyAttempts(
            "too many wrong codes: this link is locked for a while",
            reason="locked", retry_after=_seconds(recipient.locked_until - now),
        )

    def _unlocked(self, session: Session, token: str, now: datetime) -> Recipient:
        """The link's recipient (row locked), if it takes codes and is not locked."""
        recipient = recipient_for_link(session, token, now, lock=True)
        if not recipient.transfer.verify_recipients:
            raise Conflict("this link does not need a code", reason="code_not_required")
        if self._locked(recipient, now):
            raise self._locked_error(recipient, now)
        return recipient

    # -- send a code ------------------------------------------------------------

    def send_code(self, token: str, ctx: trail.Context) -> CodeSent:
        """Send a fresh code by mail (queued) or SMS; voids the previous one."""
        now = self.clock.now()
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        with self.db.session() as session:
            recipient = self._unlocked(session, token, now)
            transfer: Transfer = recipient.transfer
            last = recipient.code_sent_at
            if last is not None and now - last < self.resend_interval:
                raise TooManyAttempts(
                    "a code was sent a moment ago: wait before asking for another",
                    reason="resend_too_soon",
                    retry_after=_seconds(last + self.resend_interval - now),
                )
            recent = last is not None and now - last < timedelta(hours=1)
            sends = recipient.code_sends if recent else 0
            if sends >= MAX_SENDS_PER_HOUR:
                assert last is not None
                raise TooManyAttempts(
                    "too many codes were sent for this link: try again later",
                    reason="too_many_codes", retry_after=_seconds(last + timedelta(hours=1) - now),
                )
            challenge = self.challenge(session, recipient)
            phone = self._phone(session, recipient)
            recipient.code_hash = self.keys.code_digest(
                session, transfer.organisation_id, recipient.id, code
            )
            recipient.code_expires_at = now + self.code_lifetime
            # Failures are not forgiven by asking for a new code: the lock
            # counts every wrong code since the last success or lock.
            recipient.code_sent_at = now
            recipient.code_sends = sends + 1
            recipient_id = recipient.id
            minutes = _seconds(self.code_lifetime) // 60
            if phone is None:
                self.mail.enqueue(
                    session, transfer.organisation_id,
                    messages.recipient_code(to=recipient.email, code=code,
                                            sender=challenge.sender, minutes=minutes),
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
            expires_in=_seconds(self.code_lifetime), resend_in=_seconds(self.resend_interval),
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
            recipient.code_hash = None
            recipient.code_expires_at = None
            recipient.code_sent_at = None
            recipient.code_sends = max(recipient.code_sends - 1, 0)
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
        code = re.sub(r"\s", "", code)
        error: AuthenticationRequired | TooManyAttempts
        with self.db.session() as session:
            recipient = self._unlocked(session, token, now)
            transfer: Transfer = recipient.transfer
            pending = recipient.code_hash is not None and recipient.code_expires_at is not None
            if not pending or (recipient.code_expires_at or now) <= now:
                # Nothing to guess at: not counted, but the recipient must ask again.
                recipient.code_hash = None
                error = AuthenticationRequired(
                    "no code is pending for this link: ask for a new one",
                    reason="code_expired" if pending else "no_code",
                )
            else:
                digest = self.keys.code_digest(
                    session, transfer.organisation_id, recipient.id, code
                )
                assert recipient.code_hash is not None
                if hmac.compare_digest(digest, recipient.code_hash):
                    recipient.code_hash = None  # single use
                    recipient.code_expires_at = None
                    recipient.code_failures = 0
                    granted = grant_access(session, recipient, access, now, code=True)
                    self._event(session, recipient, "link.code_verified", ctx, now)
                    track(session, transfer.id, "code_verified", time=now,
                          recipient_id=recipient.id)
                    return granted
                session.execute(
                    update(Recipient).where(Recipient.id == recipient.id)
                    .values(code_failures=Recipient.code_failures + 1)
                )
                session.refresh(recipient)
                failures = recipient.code_failures
                self._event(session, recipient, "link.code_failed", ctx, now,
                            outcome="failure", failures=failures)
                track(session, transfer.id, "code_failed", time=now, recipient_id=recipient.id)
                error = AuthenticationRequired(
                    "wrong code", reason="wrong_code", attempts_left=self.attempts - failures
                )
                if failures >= self.attempts:
                    recipient.locked_until = now + self.lock_time
                    recipient.code_hash = None
                    recipient.code_expires_at = None
                    recipient.code_failures = 0
                    self._event(session, recipient, "link.locked", ctx, now, outcome="failure",
                                until=recipient.locked_until.isoformat())
                    track(session, transfer.id, "link_locked", time=now,
                          recipient_id=recipient.id)
                    error = self._locked_error(recipient, now)
        # Raised once the failure, and any lock, are committed.
        raise error

    def _event(self, session: Session, recipient: Recipient, action: str, ctx: trail.Context,
               now: datetime, outcome: str = "success", **details: Any) -> None:
        trail.record(
            session, action, actor=None, organisation_id=recipient.transfer.organisation_id,
            object_type="recipient", object_id=recipient.id, outcome=outcome, context=ctx,
            transfer=recipient.transfer_id, **details,
        )
