"""Second factors (SEC-9, 10, 11): TOTP, WebAuthn passkeys, recovery codes.

- TOTP (pyotp): a 160-bit seed from the CSPRNG, sealed under the
  organisation's key; 30 s steps, one step of drift either way; a code
  is accepted once: the last accepted step is kept and any code of that
  step or an earlier one is a replay: refused always (a code is single
  use). When the browser that just used it presents it again (its owner
  signing out and in within 30 s), the reuse is only logged and the person
  told to wait for the next code; from anywhere else it is also counted
  as a failure and notified (docs/design.md, threat model).
- WebAuthn (py_webauthn): 128-bit challenges kept on the server-side
  session; origin, rpId, signature counter and user verification checked.
- Recovery codes: ten single-use codes of 118 bits (24 characters in
  groups of four), stored as SHA-256 over the user id and the code;
  codes of the earlier format (12 characters, bare SHA-256) keep working
  until the user regenerates them.

Adding or removing a factor ends the user's other sessions and mails them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pyotp
import segno
import webauthn
from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.orm import Session
from webauthn.helpers import options_to_json
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from coffre.audit import trail
from coffre.crypto import credentials
from coffre.db.engine import Database
from coffre.db.tables import ApiToken, RecoveryCode, SecondFactor, User, UserSession
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action, authorize
from coffre.errors import Conflict, InvalidInput, NotFound
from coffre.ports import Clock
from coffre.services import messages
from coffre.services.keys import KeyRing
from coffre.services.mail import MailQueue

TOTP = "totp"
WEBAUTHN = "webauthn"
RECOVERY = "recovery"
RECOVERY_CODES = 10
CHALLENGE_LIFETIME = timedelta(minutes=5)
#: How long an unconfirmed authenticator key is shown again rather than replaced.
PENDING_TOTP = timedelta(minutes=30)
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes
#: A kind of factor as the security notices name it (French, English).
_KIND_WORDS = {"totp": ("une application d'authentification", "an authenticator app"),
               "webauthn": ("une clé d'accès", "a passkey")}
#: Outcomes of checking a TOTP code.
ACCEPTED = "accepted"
REFUSED = "refused"
#: A code of a step already used, by the browser that used it.
REUSED = "reused"
#: Seconds a TOTP code lives.
TOTP_STEP = 30


@dataclass(frozen=True)
class FactorInfo:
    id: str
    kind: str
    name: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class TotpEnrolment:
    id: str
    secret: str
    uri: str
    qr_svg: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


#: Characters of a recovery code, shown in groups of four: 24 characters
#: of a 31-letter alphabet are 118 bits (ASVS 2.6.2 asks for 112).
RECOVERY_LENGTH = 24
RECOVERY_GROUP = 4
#: Stored form of codes made since: "v2$" + SHA-256 over the user's id and
#: the code (no two users' digests alike). Older rows hold the bare
#: SHA-256 of a 12-character code (about 59 bits): they keep working until
#: the user's codes are regenerated.
_RECOVERY_V2 = "v2$"
_LEGACY_LENGTH = 12


def new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
    return "-".join(raw[i:i + RECOVERY_GROUP] for i in range(0, len(raw), RECOVERY_GROUP))


def recovery_digest(user_id: str, code: str) -> str:
    """The stored form of a recovery code (current format)."""
    material = f"coffre-recovery\n{user_id}\n{_normal_code(code)}".encode()
    return _RECOVERY_V2 + hashlib.sha256(material).hexdigest()


def _candidate_digests(user_id: str, code: str) -> list[str]:
    """What a row holding this code may store: the current form, and the
    legacy bare SHA-256 for a code of the old length."""
    normal = _normal_code(code)
    found = [recovery_digest(user_id, normal)]
    if len(normal) == _LEGACY_LENGTH:
        found.append(credentials.hash_token(normal))
    return found


def _normal_code(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


class FactorService:
    def __init__(self, db: Database, keys: KeyRing, mail: MailQueue, clock: Clock, *,
                 base_url: str) -> None:
        self.db = db
        self.keys = keys
        self.mail = mail
        self.clock = clock
        self.origin = base_url.rstrip("/")
        self.rp_id = urlsplit(base_url).hostname or "localhost"

    # -- listing ----------------------------------------------------------------

    def enrolled(self, actor: Actor) -> tuple[list[FactorInfo], int]:
        """The user's confirmed factors and how many recovery codes remain."""
        authorize(actor, Action.FACTOR_READ)
        with self.db.session() as session:
            rows = self._confirmed(session, actor.user_id)
            left = self.recovery_left(session, actor.user_id)
            return [FactorInfo(r.id, r.kind, r.name, r.created_at, r.last_used_at)
                    for r in rows], left

    def _confirmed(self, session: Session, user_id: str) -> list[SecondFactor]:
        return list(session.execute(
            select(SecondFactor)
            .where(SecondFactor.user_id == user_id, SecondFactor.confirmed_at.is_not(None))
            .order_by(SecondFactor.created_at)
        ).scalars())

    def methods(self, session: Session, user_id: str) -> list[str]:
        """How this user can give a second factor (empty: none enrolled)."""
        kinds = sorted({f.kind for f in self._confirmed(session, user_id)})
        if kinds and self.recovery_left(session, user_id):
            kinds.append(RECOVERY)
        return kinds

    def recovery_left(self, session: Session, user_id: str) -> int:
        return session.execute(
            select(func.count()).select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
        ).scalar_one()

    # -- TOTP -------------------------------------------------------------------

    def pending_totp(self, actor: Actor, factor_id: str) -> TotpEnrolment:
        """The enrolment waiting for its first code, shown again (its QR
        code and key) after a wrong code; ``NotFound`` once confirmed or
        replaced by a newer one."""
        authorize(actor, Action.FACTOR_MANAGE)
        with self.db.session() as session:
            row = session.get(SecondFactor, factor_id)
            if (row is None or row.user_id != actor.user_id or row.kind != TOTP
                    or row.confirmed_at is not None or row.secret_sealed is None):
                raise NotFound("no pending TOTP enrolment with this id")
            user = self._user(session, actor.user_id)
            secret = self.keys.open_text(session, row.secret_sealed, f"totp:{row.id}")
            return _enrolment(row.id, secret, user.email)

    def resume_totp(self, actor: Actor) -> TotpEnrolment | None:
        """The latest enrolment still waiting for its first code, if it
        began less than ``PENDING_TOTP`` ago: a page reloaded (or reached
        with Back) after the QR code was scanned shows the same key, so the
        app's codes keep working."""
        authorize(actor, Action.FACTOR_MANAGE)
        since = self.clock.now() - PENDING_TOTP
        with self.db.session() as session:
            row = session.execute(select(SecondFactor).where(
                SecondFactor.user_id == actor.user_id, SecondFactor.kind == TOTP,
                SecondFactor.confirmed_at.is_(None), SecondFactor.created_at > since,
                SecondFactor.secret_sealed.is_not(None),
            ).order_by(SecondFactor.created_at.desc()).limit(1)).scalar_one_or_none()
            if row is None or row.secret_sealed is None:
                return None
            user = self._user(session, actor.user_id)
            secret = self.keys.open_text(session, row.secret_sealed, f"totp:{row.id}")
            return _enrolment(row.id, secret, user.email)

    def begin_totp(self, actor: Actor, name: str, ctx: trail.Context) -> TotpEnrolment:
        authorize(actor, Action.FACTOR_MANAGE)
        secret = pyotp.random_base32(length=32)  # 160 bits
        with self.db.session() as session:
            user = self._user(session, actor.user_id)
            # One pending enrolment at a time.
            for old in session.execute(select(SecondFactor).where(
                SecondFactor.user_id == user.id, SecondFactor.kind == TOTP,
                SecondFactor.confirmed_at.is_(None),
            )).scalars():
                session.delete(old)
            row = SecondFactor(user_id=user.id, kind=TOTP, name=name.strip()[:100] or "TOTP")
            session.add(row)
            session.flush()
            row.secret_sealed = self.keys.seal_text(
                session, user.organisation_id, secret, f"totp:{row.id}"
            )
            return _enrolment(row.id, secret, user.email)

    def confirm_totp(self, actor: Actor, factor_id: str, code: str,
                     ctx: trail.Context, browser: str | None = None) -> list[str]:
        """Confirm a pending TOTP with its first code; returns new recovery
        codes when this is the user's first factor (shown once). ``browser``
        is the digest of the browser's mark (``guard.browser_digest``)."""
        authorize(actor, Action.FACTOR_MANAGE)
        with self.db.session() as session:
            row = session.get(SecondFactor, factor_id, with_for_update=True)
            if (row is None or row.user_id != actor.user_id or row.kind != TOTP
                    or row.confirmed_at is not None):
                raise NotFound("no pending TOTP enrolment with this id")
            user = self._user(session, actor.user_id)
            step = self._totp_step(session, user, row, code)
            if step is None:
                trail.record(session, "factor.enrolment_failed", actor=user.id,
                             organisation_id=user.organisation_id, object_type="second_factor",
                             object_id=row.id, outcome="failure", context=ctx, kind=TOTP)
                raise InvalidInput("this code is not valid: check the time of your device",
                                   field="code")
            row.last_step, row.last_step_by = step, browser
            return self._added(session, user, row, actor, ctx)

    def _totp_step(self, session: Session, user: User, row: SecondFactor,
                   code: str) -> int | None:
        """The time step ``code`` belongs to (one step of drift), or None."""
        code = code.strip().replace(" ", "")
        if not (code.isdigit() and len(code) == 6) or row.secret_sealed is None:
            return None
        secret = self.keys.open_text(session, row.secret_sealed, f"totp:{row.id}")
        totp = pyotp.TOTP(secret)
        now = self.clock.now()
        current = totp.timecode(now)
        for step in (current, current - 1, current + 1):
            if credentials.tokens_equal(totp.generate_otp(step), code):
                return step
        return None

    def verify_totp(self, session: Session, user: User, code: str,
                    ctx: trail.Context, browser: str | None = None) -> str:
        """Check a login or step-up code: ``ACCEPTED``, ``REFUSED``, or
        ``REUSED``. A code of a step already used is always refused; when
        ``browser`` (the digest of the browser's mark) is the one that used
        it, that is its owner typing it again within its 30 s (``REUSED``:
        logged, not reported); otherwise a replay (logged and notified)."""
        for row in self._confirmed(session, user.id):
            if row.kind != TOTP:
                continue
            step = self._totp_step(session, user, row, code)
            if step is None:
                continue
            # Compare-and-set, so two requests with the same code cannot
            # both pass (PostgreSQL does not serialise them as SQLite does).
            accepted = session.execute(
                update(SecondFactor)
                .where(SecondFactor.id == row.id,
                       or_(SecondFactor.last_step.is_(None), SecondFactor.last_step < step))
                .values(last_step=step, last_step_by=browser, last_used_at=self.clock.now())
                .execution_options(synchronize_session=False)
            )
            assert isinstance(accepted, CursorResult)
            if accepted.rowcount == 0:
                session.refresh(row)
                if (browser is not None and row.last_step_by is not None
                        and credentials.tokens_equal(row.last_step_by, browser)):
                    trail.record(session, "factor.code_reused", actor=user.id,
                                 organisation_id=user.organisation_id,
                                 object_type="second_factor", object_id=row.id,
                                 outcome="failure", context=ctx, kind=TOTP)
                    return REUSED
                trail.record(session, "factor.replay_rejected", actor=user.id,
                             organisation_id=user.organisation_id, object_type="second_factor",
                             object_id=row.id, outcome="failure", context=ctx, kind=TOTP)
                self._notify(session, user, "Un code d'application d'authentification déjà "
                             "utilisé a été présenté pour votre compte depuis un autre "
                             "navigateur : si ce n'était pas vous, changez votre mot de passe.",
                             "An authenticator app code already used was presented again "
                             "for your account from another browser.")
                return REFUSED
            return ACCEPTED
        return REFUSED

    # -- recovery codes ---------------------------------------------------------

    def verify_recovery(self, session: Session, user: User, code: str,
                        ctx: trail.Context) -> bool:
        row = session.execute(select(RecoveryCode).where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash.in_(_candidate_digests(user.id, code)),
            RecoveryCode.used_at.is_(None),
        ).with_for_update()).scalar_one_or_none()
        if row is None:
            return False
        row.used_at = self.clock.now()
        left = self.recovery_left(session, user.id)
        trail.record(session, "factor.recovery_code_used", actor=user.id,
                     organisation_id=user.organisation_id, object_type="user",
                     object_id=user.id, context=ctx, remaining=left)
        self._notify(session, user, f"Un code de secours a été utilisé ; il vous en reste {left}.",
                     f"A recovery code was used; {left} left.")
        return True

    def regenerate_recovery(self, actor: Actor, ctx: trail.Context) -> list[str]:
        authorize(actor, Action.FACTOR_MANAGE)
        with self.db.session() as session:
            user = self._user(session, actor.user_id)
            if not self._confirmed(session, user.id):
                raise Conflict("enrol a second factor before asking for recovery codes")
            codes = self._new_recovery_codes(session, user)
            trail.record(session, "factor.recovery_codes_generated", actor=user.id,
                         organisation_id=user.organisation_id, object_type="user",
                         object_id=user.id, context=ctx)
            self._notify(session, user, "De nouveaux codes de secours ont été créés ; "
                         "les anciens ne fonctionnent plus.", "New recovery codes were created.")
            return codes

    def _new_recovery_codes(self, session: Session, user: User) -> list[str]:
        for old in session.execute(
            select(RecoveryCode).where(RecoveryCode.user_id == user.id)
        ).scalars():
            session.delete(old)
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        for code in codes:
            session.add(RecoveryCode(user_id=user.id, code_hash=recovery_digest(user.id, code)))
        return codes

    # -- WebAuthn ---------------------------------------------------------------

    def begin_webauthn(self, actor: Actor) -> dict[str, Any]:
        """Registration options for a new passkey (needs a browser session)."""
        authorize(actor, Action.FACTOR_MANAGE)
        with self.db.session() as session:
            user = self._user(session, actor.user_id)
            login = self._session_row(session, actor)
            existing = [r for r in self._confirmed(session, user.id) if r.kind == WEBAUTHN]
            options = webauthn.generate_registration_options(
                rp_id=self.rp_id, rp_name="Coffre", user_name=user.email,
                user_id=user.id.encode(), user_display_name=user.display_name or user.email,
                challenge=secrets.token_bytes(16),
                authenticator_selection=AuthenticatorSelectionCriteria(
                    resident_key=ResidentKeyRequirement.PREFERRED,
                    user_verification=UserVerificationRequirement.REQUIRED,
                ),
                exclude_credentials=[PublicKeyCredentialDescriptor(id=r.credential_id)
                                     for r in existing if r.credential_id],
            )
            self._keep_challenge(login, options.challenge)
            result: dict[str, Any] = _json(options_to_json(options))
            return result

    def finish_webauthn(self, actor: Actor, credential: dict[str, Any], name: str,
                        ctx: trail.Context) -> list[str]:
        authorize(actor, Action.FACTOR_MANAGE)
        with self.db.session() as session:
            user = self._user(session, actor.user_id)
            challenge = self._take_challenge(self._session_row(session, actor))
            try:
                verified = webauthn.verify_registration_response(
                    credential=credential, expected_challenge=challenge,
                    expected_rp_id=self.rp_id, expected_origin=self.origin,
                    require_user_verification=True,
                )
            except (InvalidRegistrationResponse, ValueError, KeyError, TypeError) as exc:
                reason: str | None = str(exc)[:200]
                trail.record(session, "factor.enrolment_failed", actor=user.id,
                             organisation_id=user.organisation_id, object_type="user",
                             object_id=user.id, outcome="failure", context=ctx, kind=WEBAUTHN,
                             reason=reason)
            else:
                reason = None
                if session.execute(select(SecondFactor).where(
                    SecondFactor.credential_id == verified.credential_id
                )).scalar_one_or_none():
                    raise Conflict("this passkey is already registered")
                row = SecondFactor(
                    user_id=user.id, kind=WEBAUTHN, name=name.strip()[:100] or "Clé d'accès",
                    credential_id=verified.credential_id,
                    public_key=verified.credential_public_key, sign_count=verified.sign_count,
                )
                session.add(row)
                session.flush()
                return self._added(session, user, row, actor, ctx)
        raise InvalidInput("this passkey could not be registered", reason=reason)

    def assertion_options(self, session: Session, user: User, login: UserSession) -> dict[str, Any]:
        keys = [r for r in self._confirmed(session, user.id) if r.kind == WEBAUTHN]
        if not keys:
            raise NotFound("no passkey is registered for this account")
        options = webauthn.generate_authentication_options(
            rp_id=self.rp_id, challenge=secrets.token_bytes(16),
            allow_credentials=[PublicKeyCredentialDescriptor(id=r.credential_id)
                               for r in keys if r.credential_id],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        self._keep_challenge(login, options.challenge)
        result: dict[str, Any] = _json(options_to_json(options))
        return result

    def verify_assertion(self, session: Session, user: User, login: UserSession,
                         credential: dict[str, Any], ctx: trail.Context) -> bool:
        challenge = self._take_challenge(login)
        raw_id = credential.get("rawId") or credential.get("id") or ""
        try:
            credential_id = base64.urlsafe_b64decode(str(raw_id) + "=" * (-len(str(raw_id)) % 4))
        except ValueError:
            return False
        row = session.execute(select(SecondFactor).where(
            SecondFactor.credential_id == credential_id, SecondFactor.user_id == user.id,
            SecondFactor.confirmed_at.is_not(None),
        ).with_for_update()).scalar_one_or_none()
        if row is None or row.public_key is None:
            return False
        try:
            verified = webauthn.verify_authentication_response(
                credential=credential, expected_challenge=challenge, expected_rp_id=self.rp_id,
                expected_origin=self.origin, credential_public_key=row.public_key,
                credential_current_sign_count=row.sign_count, require_user_verification=True,
            )
        except (InvalidAuthenticationResponse, ValueError, KeyError, TypeError) as exc:
            trail.record(session, "factor.assertion_rejected", actor=user.id,
                         organisation_id=user.organisation_id, object_type="second_factor",
                         object_id=row.id, outcome="failure", context=ctx, kind=WEBAUTHN,
                         reason=str(exc)[:200])
            return False
        row.sign_count = verified.new_sign_count
        row.last_used_at = self.clock.now()
        return True

    def _keep_challenge(self, login: UserSession, challenge: bytes) -> None:
        login.challenge = challenge
        login.challenge_expires_at = self.clock.now() + CHALLENGE_LIFETIME

    def _take_challenge(self, login: UserSession) -> bytes:
        """The pending challenge, used once (a second try needs new options)."""
        challenge, expires = login.challenge, login.challenge_expires_at
        login.challenge = None
        login.challenge_expires_at = None
        if challenge is None or expires is None or expires <= self.clock.now():
            raise InvalidInput("no pending passkey challenge: ask for new options",
                               reason="challenge_expired")
        return challenge

    def _session_row(self, session: Session, actor: Actor) -> UserSession:
        row = session.get(UserSession, actor.session_id) if actor.session_id else None
        if row is None:
            raise InvalidInput("passkeys are registered from a browser session, "
                               "not with an API token", reason="session_required")
        return row

    # -- removal and shared steps ---------------------------------------------------

    def remove(self, actor: Actor, factor_id: str, ctx: trail.Context) -> None:
        authorize(actor, Action.FACTOR_MANAGE)
        with self.db.session() as session:
            row = session.get(SecondFactor, factor_id)
            if row is None or row.user_id != actor.user_id or row.confirmed_at is None:
                raise NotFound("second factor not found")
            user = self._user(session, actor.user_id)
            if actor.mfa_required and len(self._confirmed(session, user.id)) == 1:
                raise Conflict("your account requires a second factor: add another one "
                               "before removing this one")
            session.delete(row)
            session.flush()
            if not self._confirmed(session, user.id):
                for code in session.execute(
                    select(RecoveryCode).where(RecoveryCode.user_id == user.id)
                ).scalars():
                    session.delete(code)
            trail.record(session, "factor.removed", actor=user.id,
                         organisation_id=user.organisation_id, object_type="second_factor",
                         object_id=factor_id, context=ctx, kind=row.kind)
            self._end_other_sessions(session, user, actor)
            french, english = _KIND_WORDS.get(row.kind, (row.kind, row.kind))
            self._notify(session, user, f"Un second facteur ({french}) a été retiré de "
                         "votre compte.", f"A second factor ({english}) was removed.")

    def _added(self, session: Session, user: User, row: SecondFactor, actor: Actor,
               ctx: trail.Context) -> list[str]:
        first = not self._confirmed(session, user.id)
        row.confirmed_at = self.clock.now()
        codes = self._new_recovery_codes(session, user) if first else []
        # Tokens obtained without a second factor no longer act for this
        # user: they could otherwise step up or enrol with the password alone.
        result = session.execute(
            update(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.mfa.is_(False),
                   ApiToken.revoked_at.is_(None))
            .values(revoked_at=self.clock.now())
        )
        assert isinstance(result, CursorResult)
        revoked = result.rowcount
        trail.record(session, "factor.added", actor=user.id,
                     organisation_id=user.organisation_id, object_type="second_factor",
                     object_id=row.id, context=ctx, kind=row.kind, tokens_revoked=revoked)
        self._end_other_sessions(session, user, actor)
        french, english = _KIND_WORDS.get(row.kind, (row.kind, row.kind))
        self._notify(session, user, f"Un second facteur ({french}) a été ajouté à votre "
                     "compte.", f"A second factor ({english}) was added to your account.")
        return codes

    def _end_other_sessions(self, session: Session, user: User, actor: Actor) -> None:
        """SEC-16: a factor change ends the user's other sessions."""
        session.execute(
            update(UserSession)
            .where(UserSession.user_id == user.id, UserSession.ended_at.is_(None),
                   UserSession.id != (actor.session_id or ""))
            .values(ended_at=self.clock.now())
        )

    def _notify(self, session: Session, user: User, french: str, english: str) -> None:
        self.mail.enqueue(session, user.organisation_id,
                          messages.security_notice(to=user.email, french=french, english=english))

    def _user(self, session: Session, user_id: str) -> User:
        user = session.get(User, user_id)
        if user is None or user.disabled:
            raise NotFound("user not found")
        return user



def _enrolment(factor_id: str, secret: str, email: str) -> TotpEnrolment:
    uri = pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name="Coffre")
    svg = segno.make(uri, error="m").svg_inline(scale=4)
    return TotpEnrolment(factor_id, secret, uri, svg)


def _json(text: str) -> Any:
    return json.loads(text)
