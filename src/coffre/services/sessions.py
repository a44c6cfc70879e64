"""Signing in (SEC-9, 14-17): passwords then second factors, browser
sessions, API tokens obtained by login, and step-up re-authentication.

A browser session is a 256-bit token in a ``__Host-`` cookie; only its
hash is stored, with a CSRF token's hash. A sign-in with a password alone
opens a *pending* session (five minutes, good only for giving the second
factor) when the user has one; giving it rotates the token (SEC-15).
Sessions end after ``idle`` without use, ``absolute`` after sign-in, at
logout, when the account is disabled, or when a factor changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.crypto import credentials
from coffre.db.engine import Database
from coffre.db.tables import ApiToken, Organisation, User, UserSession
from coffre.domain.accounts import ALL_SCOPES, Actor, Role, Scope
from coffre.domain.policy import Action, authorize
from coffre.errors import AuthenticationRequired, InvalidInput, NotFound, PermissionDenied
from coffre.ports import Clock
from coffre.services.accounts import AccountService, mfa_required
from coffre.services.factors import (
    ACCEPTED,
    RECOVERY,
    REUSED,
    TOTP,
    TOTP_STEP,
    WEBAUTHN,
    FactorService,
)
from coffre.services.throttle import Throttles

FULL = "full"
PENDING = "password"
PENDING_LIFETIME = timedelta(minutes=5)
#: How long an action waiting for step-up may be resumed (SEC-17).
INTENT_LIFETIME = timedelta(minutes=5)
#: last_seen_at is written at most this often (idle limits are in minutes).
TOUCH_EVERY = timedelta(seconds=30)


@dataclass(frozen=True)
class SignIn:
    """What a sign-in step returns: the cookie value and what comes next."""

    token: str
    csrf: str
    stage: str
    #: Second-factor methods the user can use (when stage is "password").
    methods: list[str]
    #: The user must enrol a second factor before doing anything else.
    enrolment_required: bool
    expires_at: datetime


@dataclass(frozen=True)
class SessionInfo:
    id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    source: str | None
    user_agent: str | None
    current: bool


@dataclass(frozen=True)
class Proof:
    """A second factor given at sign-in or step-up."""

    method: str  # totp | recovery | webauthn
    code: str = ""
    credential: dict[str, Any] | None = None
    #: The digest of the browser's mark, when a browser gives it (a TOTP
    #: code it has just used itself is then "wait", not a replay).
    browser: str | None = None


def csrf_for(token: str) -> str:
    """The session's CSRF token, derived from its (HttpOnly) cookie value,
    so pages can be given it again without storing it."""
    return credentials.hash_token(f"csrf:{token}")


class SessionService:
    def __init__(self, db: Database, accounts: AccountService, factors: FactorService,
                 throttles: Throttles, clock: Clock, *, idle: timedelta, absolute: timedelta,
                 step_up: timedelta) -> None:
        self.db = db
        self.accounts = accounts
        self.factors = factors
        self.throttles = throttles
        self.clock = clock
        self.idle = idle
        self.absolute = absolute
        self.step_up = step_up

    # -- browser sign-in --------------------------------------------------------

    def login(self, email: str, password: str, ctx: trail.Context) -> SignIn:
        user = self.accounts.authenticate(email, password, ctx)
        now = self.clock.now()
        with self.db.session() as session:
            methods = self.factors.methods(session, user.id)
            stage = PENDING if methods else FULL
            required = not methods and self._mfa_required(session, user)
            token = credentials.new_token()
            csrf = csrf_for(token)
            row = UserSession(
                token_hash=credentials.hash_token(token), user_id=user.id, stage=stage,
                created_at=now, last_seen_at=now, auth_time=now, mfa=False,
                expires_at=now + (PENDING_LIFETIME if stage == PENDING else self.absolute),
                csrf_hash=credentials.hash_token(csrf), source=ctx.source,
                user_agent=(ctx.user_agent or "")[:300] or None,
            )
            session.add(row)
            session.flush()
            trail.record(session, "session.started", actor=user.id,
                         organisation_id=user.organisation_id, object_type="session",
                         object_id=row.id, context=ctx, stage=stage)
            return SignIn(token, csrf, stage, methods, required, row.expires_at)

    def webauthn_options(self, token: str) -> dict[str, Any]:
        """Assertion options for a pending session's passkey step."""
        with self.db.session() as session:
            row = self._pending(session, token)
            return self.factors.assertion_options(session, row.user, row)

    def second_factor(self, token: str, proof: Proof, ctx: trail.Context) -> SignIn:
        """Finish a pending sign-in; the session gets a new token (SEC-15)."""
        with self.db.session() as session:
            user = self._pending(session, token).user
            session.expunge(user)
        if not self._prove(user, proof, ctx, "login.second_factor_failed", pending=token):
            raise AuthenticationRequired("this code or key was not accepted",
                                         reason="second_factor_invalid")
        with self.db.session() as session:
            row = self._pending(session, token)
            now = self.clock.now()
            new = credentials.new_token()
            csrf = csrf_for(new)
            row.token_hash = credentials.hash_token(new)
            row.csrf_hash = credentials.hash_token(csrf)
            row.stage, row.mfa = FULL, True
            row.auth_time = row.last_seen_at = now
            row.expires_at = now + self.absolute
            trail.record(session, "login.second_factor", actor=user.id,
                         organisation_id=user.organisation_id, object_type="session",
                         object_id=row.id, context=ctx, method=proof.method)
            return SignIn(new, csrf, FULL, [], False, row.expires_at)

    def _prove(self, user: User, proof: Proof, ctx: trail.Context, failure: str, *,
               pending: str | None = None, session_id: str | None = None) -> bool:
        """Check a second factor, throttled per user (the attempt is counted
        before the check, SEC-14); a failure leaves ``failure`` in the trail."""
        failures = self.throttles.attempt("factor", user.id)
        with self.db.session() as session:
            login = (self._pending(session, pending) if pending is not None
                     else session.get(UserSession, session_id) if session_id else None)
            result = self._check_proof(session, user, login, proof, ctx)
            ok = result is True or result == ACCEPTED
            if ok:
                self.throttles.succeeded(session, "factor", user.id)
            elif result == REUSED:  # its owner again: it guessed nothing
                self.throttles.refund(session, "factor", user.id)
            else:
                trail.record(session, failure, actor=None,
                             organisation_id=user.organisation_id, object_type="user",
                             object_id=user.id, outcome="failure", context=ctx,
                             method=proof.method, failures=failures)
        if result == REUSED:
            left = TOTP_STEP - int(self.clock.now().timestamp()) % TOTP_STEP
            raise AuthenticationRequired("this code has just been used: wait for the next one",
                                         reason="second_factor_reused", retry_after=left)
        return ok

    def _check_proof(self, session: Session, user: User, row: UserSession | None,
                     proof: Proof, ctx: trail.Context) -> bool | str:
        if proof.method == TOTP:
            return self.factors.verify_totp(session, user, proof.code, ctx, proof.browser)
        if proof.method == RECOVERY:
            return self.factors.verify_recovery(session, user, proof.code, ctx)
        if proof.method == WEBAUTHN and row is not None and proof.credential is not None:
            return self.factors.verify_assertion(session, user, row, proof.credential, ctx)
        raise InvalidInput("unknown second-factor method", allowed=[TOTP, RECOVERY, WEBAUTHN])

    def _pending(self, session: Session, token: str) -> UserSession:
        row = self._live(session, token)
        if row is None or row.stage != PENDING:
            raise AuthenticationRequired("sign in with your password first",
                                         reason="session_expired")
        return row

    # -- API tokens by login ----------------------------------------------------

    def token_login(self, email: str, password: str, code: str | None, name: str,
                    scopes: frozenset[Scope], ctx: trail.Context,
                    expires_in_days: int | None) -> str:
        """``coffre login``: password, plus a TOTP or recovery code when the
        user has a second factor."""
        user = self.accounts.authenticate(email, password, ctx)
        with self.db.session() as session:
            methods = self.factors.methods(session, user.id)
        mfa = False
        if methods:
            if not code:
                raise AuthenticationRequired("a second-factor code is needed",
                                             reason="second_factor_required", methods=methods)
            method = RECOVERY if "-" in code or not code.strip().isdigit() else TOTP
            mfa = self._prove(user, Proof(method, code), ctx, "login.second_factor_failed")
            if not mfa:
                raise AuthenticationRequired("this code or key was not accepted",
                                             reason="second_factor_invalid")
        return self.accounts.create_token(user, name, scopes, ctx, expires_in_days,
                                          mfa=mfa, auth_time=self.clock.now())

    # -- resolving a request ----------------------------------------------------

    def _live(self, session: Session, token: str) -> UserSession | None:
        row = session.execute(select(UserSession).where(
            UserSession.token_hash == credentials.hash_token(token)
        )).scalar_one_or_none()
        if row is None or row.ended_at is not None:
            return None
        now = self.clock.now()
        expired = row.expires_at <= now or now - row.last_seen_at > self.idle
        if expired or row.user.disabled:
            row.ended_at = now
            trail.record(session, "session.expired" if expired else "session.ended",
                         actor=row.user_id, organisation_id=row.user.organisation_id,
                         object_type="session", object_id=row.id,
                         reason="timeout" if expired else "account_disabled")
            return None
        return row

    def actor(self, token: str, csrf: str | None, unsafe: bool, touch: bool = True) -> Actor:
        """The user behind a session cookie. State-changing requests must
        also carry the session's CSRF token (SEC-22)."""
        with self.db.session() as session:
            row = self._live(session, token)
            if row is not None and row.stage == FULL:
                if unsafe and not (csrf and credentials.tokens_equal(
                    credentials.hash_token(csrf), row.csrf_hash
                )):
                    raise PermissionDenied("missing or wrong CSRF token", reason="csrf")
                now = self.clock.now()
                if touch and now - row.last_seen_at > TOUCH_EVERY:
                    row.last_seen_at = now
                user = row.user
                organisation = session.get(Organisation, user.organisation_id)
                return Actor(
                    user_id=user.id, organisation_id=user.organisation_id,
                    role=Role(user.role), scopes=ALL_SCOPES, mfa=row.mfa,
                    mfa_required=mfa_required(user, organisation),
                    auth_time=row.auth_time, session_id=row.id,
                    stepped_up=now - row.auth_time <= self.step_up,
                )
        # Outside the transaction, so that an expiry is recorded.
        raise AuthenticationRequired("your session has ended: sign in again",
                                     reason="session_expired")

    def token_actor(self, token: str) -> Actor:
        return self.accounts.actor_for_token(token, step_up=self.step_up)

    def _mfa_required(self, session: Session, user: User) -> bool:
        return mfa_required(user, session.get(Organisation, user.organisation_id))

    # -- step-up, logout, listing -----------------------------------------------

    def reauthenticate(self, actor: Actor, token: str | None, password: str,
                       proof: Proof | None, ctx: trail.Context) -> datetime:
        """SEC-17: prove it again before sensitive actions: the password,
        and a second factor whenever the user has one (whatever the
        credential acted through was obtained with)."""
        authorize(actor, Action.ACCOUNT_READ)
        with self.db.session() as session:
            user = session.get(User, actor.user_id)
            assert user is not None
            session.expunge(user)
            methods = self.factors.methods(session, user.id)
        self.accounts.authenticate(user.email, password, ctx, event="reauth")
        if methods:
            if proof is None:
                raise AuthenticationRequired("a second factor is needed as well",
                                             reason="second_factor_required", methods=methods)
            if not self._prove(user, proof, ctx, "reauth.second_factor_failed",
                               session_id=actor.session_id):
                raise AuthenticationRequired("this code or key was not accepted",
                                             reason="second_factor_invalid")
        now = self.clock.now()
        with self.db.session() as session:
            if actor.session_id is not None:
                session.execute(update(UserSession).where(UserSession.id == actor.session_id)
                                .values(auth_time=now))
            elif token is not None:
                session.execute(update(ApiToken).where(
                    ApiToken.token_hash == credentials.hash_token(token)
                ).values(auth_time=now))
            trail.record(session, "reauth.completed", actor=user.id,
                         organisation_id=user.organisation_id, object_type="user",
                         object_id=user.id, context=ctx, second_factor=bool(methods))
        return now + self.step_up

    # -- resuming after step-up ------------------------------------------------

    def keep_intent(self, actor: Actor, intent: dict[str, Any]) -> None:
        """Keep what a browser asked for when step-up stopped it (a form's
        path and fields), sealed under the organisation's key and bound to
        this session, for ``INTENT_LIFETIME``; a newer one replaces it."""
        authorize(actor, Action.ACCOUNT_READ)
        if actor.session_id is None:
            return
        with self.db.session() as session:
            row = session.get(UserSession, actor.session_id)
            if row is None:
                return
            row.intent_sealed = self.factors.keys.seal_text(
                session, actor.organisation_id, json.dumps(intent), f"intent:{row.id}")
            row.intent_expires_at = self.clock.now() + INTENT_LIFETIME

    def has_intent(self, actor: Actor) -> bool:
        """Whether this session keeps an intent that has not lapsed."""
        authorize(actor, Action.ACCOUNT_READ)
        if actor.session_id is None:
            return False
        with self.db.session() as session:
            row = session.get(UserSession, actor.session_id)
            return (row is not None and row.intent_sealed is not None
                    and row.intent_expires_at is not None
                    and row.intent_expires_at > self.clock.now())

    def take_intent(self, actor: Actor, ctx: trail.Context) -> dict[str, Any] | None:
        """The kept intent, once (it is cleared), if it has not lapsed and
        the session has stepped up since; records ``reauth.resumed``."""
        authorize(actor, Action.ACCOUNT_READ)
        if actor.session_id is None:
            return None
        with self.db.session() as session:
            # Columns only: a locked row of the session (not its joined user).
            found = session.execute(
                select(UserSession.intent_sealed, UserSession.intent_expires_at)
                .where(UserSession.id == actor.session_id).with_for_update()).one_or_none()
            sealed, expires = found if found is not None else (None, None)
            if sealed is None or expires is None:
                return None
            session.execute(update(UserSession).where(UserSession.id == actor.session_id)
                            .values(intent_sealed=None, intent_expires_at=None))
            if expires <= self.clock.now() or not actor.stepped_up:
                return None
            intent: dict[str, Any] = json.loads(
                self.factors.keys.open_text(session, sealed, f"intent:{actor.session_id}"))
            trail.record(session, "reauth.resumed", actor=actor.user_id,
                         organisation_id=actor.organisation_id, object_type="session",
                         object_id=actor.session_id, context=ctx,
                         resumed=intent.get("action"), path=intent.get("path"))
            return intent

    def step_up_options(self, actor: Actor) -> dict[str, Any]:
        with self.db.session() as session:
            login = session.get(UserSession, actor.session_id) if actor.session_id else None
            user = session.get(User, actor.user_id)
            if login is None or user is None:
                raise InvalidInput("passkeys are used from a browser session",
                                   reason="session_required")
            return self.factors.assertion_options(session, user, login)

    def logout(self, token: str, ctx: trail.Context) -> None:
        with self.db.session() as session:
            row = session.execute(select(UserSession).where(
                UserSession.token_hash == credentials.hash_token(token),
                UserSession.ended_at.is_(None),
            )).scalar_one_or_none()
            if row is None:
                return
            row.ended_at = self.clock.now()
            trail.record(session, "session.ended", actor=row.user_id,
                         organisation_id=row.user.organisation_id, object_type="session",
                         object_id=row.id, context=ctx, reason="logout")

    def active(self, actor: Actor) -> list[SessionInfo]:
        authorize(actor, Action.SESSION_MANAGE)
        now = self.clock.now()
        with self.db.session() as session:
            rows = session.execute(
                select(UserSession)
                .where(UserSession.user_id == actor.user_id, UserSession.ended_at.is_(None),
                       UserSession.expires_at > now, UserSession.stage == FULL)
                .order_by(UserSession.created_at)
            ).scalars()
            return [SessionInfo(r.id, r.created_at, r.last_seen_at, r.expires_at, r.source,
                                r.user_agent, r.id == actor.session_id)
                    for r in rows if now - r.last_seen_at <= self.idle]

    def end(self, actor: Actor, session_id: str, ctx: trail.Context) -> None:
        authorize(actor, Action.SESSION_MANAGE)
        with self.db.session() as session:
            row = session.get(UserSession, session_id)
            if row is None or row.user_id != actor.user_id or row.ended_at is not None:
                raise NotFound("session not found")
            row.ended_at = self.clock.now()
            trail.record(session, "session.ended", actor=actor.user_id,
                         organisation_id=actor.organisation_id, object_type="session",
                         object_id=row.id, context=ctx, reason="ended_by_user")
