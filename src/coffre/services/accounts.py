"""Organisations, users, the first-run setup link and API tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.crypto import credentials
from coffre.db.engine import Database
from coffre.db.tables import ApiToken, Organisation, SetupToken, User
from coffre.domain.accounts import (
    ALL_SCOPES,
    Actor,
    Role,
    Scope,
    check_password_policy,
    normalise_email,
)
from coffre.domain.policy import Action, authorize
from coffre.errors import AuthenticationRequired, Conflict, Gone, InvalidInput, NotFound
from coffre.ports import Clock
from coffre.services import messages
from coffre.services.keys import KeyRing
from coffre.services.mail import MailQueue
from coffre.services.throttle import Throttles, per_source

SETUP_LINK_LIFETIME = timedelta(days=7)
TOKEN_PREFIX = "cof_"  # noqa: S105 - a marker for secret scanners, not a secret
MAX_TOKEN_DAYS = 3650


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


def mfa_required(user: User, organisation: Organisation | None) -> bool:
    """Administrators must use a second factor; members where the
    organisation requires it."""
    return user.role == Role.ADMIN.value or bool(organisation and organisation.require_mfa)


class AccountService:
    def __init__(self, db: Database, keys: KeyRing, clock: Clock, throttles: Throttles,
                 mail: MailQueue | None = None) -> None:
        self.db = db
        self.keys = keys
        self.clock = clock
        self.throttles = throttles
        #: Where the notice that an account is being guessed at goes.
        self.mail = mail

    # -- first run --------------------------------------------------------------

    def needs_setup(self) -> bool:
        with self.db.session() as session:
            return session.execute(select(func.count()).select_from(User)).scalar_one() == 0

    def issue_setup_token(self) -> str | None:
        """A new one-time setup token if no administrator exists yet, else None.

        Earlier unused setup tokens stop working: only the last printed
        link is valid.
        """
        if not self.needs_setup():
            return None
        token = credentials.new_token()
        now = self.clock.now()
        with self.db.session() as session:
            for old in session.execute(select(SetupToken)).scalars():
                session.delete(old)
            session.add(
                SetupToken(
                    token_hash=credentials.hash_token(token),
                    created_at=now,
                    expires_at=now + SETUP_LINK_LIFETIME,
                )
            )
            trail.record(session, "setup.link_issued", actor=None, organisation_id=None)
        return token

    def check_setup_token(self, token: str) -> None:
        with self.db.session() as session:
            self._setup_row(session, token)

    def _setup_row(self, session: Session, token: str) -> SetupToken:
        row = session.get(SetupToken, credentials.hash_token(token))
        if row is None:
            raise NotFound("unknown setup link")
        if row.used_at is not None or row.expires_at <= self.clock.now():
            raise Gone("this setup link has already been used or has expired")
        return row

    def complete_setup(
        self,
        token: str | None,
        email: str,
        password: str,
        organisation_name: str,
        display_name: str = "",
        ctx: trail.Context | None = None,
    ) -> User:
        """Create the organisation and its first administrator.

        ``token`` is required over HTTP; the local CLI (which can read the
        data directory anyway) passes None.
        """
        if token is not None:
            self.check_setup_token(token)  # before any costly hashing
        email = normalise_email(email)
        check_password_policy(password)
        organisation_name = organisation_name.strip()
        if not 1 <= len(organisation_name) <= 200:
            raise InvalidInput("the organisation needs a name", field="organisation")
        password_hash = credentials.hash_password(password)
        with self.db.session() as session:
            if token is not None:
                self._setup_row(session, token).used_at = self.clock.now()
            if session.execute(select(func.count()).select_from(User)).scalar_one():
                raise Conflict("Coffre is already set up")
            org = Organisation(name=organisation_name)
            session.add(org)
            session.flush()
            self.keys.create_kek(session, org.id)
            user = User(
                organisation_id=org.id,
                email=email,
                display_name=display_name.strip()[:200],
                password_hash=password_hash,
                role=Role.ADMIN.value,
            )
            session.add(user)
            session.flush()
            trail.record(
                session,
                "setup.completed",
                actor=user.id,
                organisation_id=org.id,
                object_type="user",
                object_id=user.id,
                context=ctx,
            )
            trail.record(
                session,
                "key.created",
                actor=user.id,
                organisation_id=org.id,
                object_type="organisation",
                object_id=org.id,
                context=ctx,
            )
            return user

    # -- users ------------------------------------------------------------------

    def create_user(
        self, admin: Actor, email: str, password: str, role: Role, ctx: trail.Context
    ) -> User:
        authorize(admin, Action.MEMBER_INVITE)
        email = normalise_email(email)
        check_password_policy(password)
        password_hash = credentials.hash_password(password)
        with self.db.session() as session:
            if session.execute(select(User).where(User.email == email)).scalar_one_or_none():
                raise Conflict("a user with this e-mail already exists")
            user = User(
                organisation_id=admin.organisation_id,
                email=email,
                password_hash=password_hash,
                role=role.value,
            )
            session.add(user)
            session.flush()
            trail.record(
                session,
                "user.created",
                actor=admin.user_id,
                organisation_id=admin.organisation_id,
                object_type="user",
                object_id=user.id,
                context=ctx,
                role=role.value,
            )
            return user

    def authenticate(self, email: str, password: str, ctx: trail.Context,
                     event: str = "login") -> User:
        """Same answer, same work, for an unknown account and a wrong password.

        Failures are throttled per address, whether or not it exists, and
        per source (SEC-14): a guesser elsewhere cannot lock the user out;
        each source has a ceiling of failures whatever the address. The
        Argon2 check (about 0.1 s) runs outside any transaction, so
        password guesses cannot hold the write lock, and holds one of the
        process's hashing slots, taken first: when none is free the answer
        is 503 at once, before any database write.
        """
        try:
            email = normalise_email(email)
        except InvalidInput:
            email = ""
        subject = per_source(email, ctx.source)
        with credentials.hashing_slot(ctx.source):
            # The account's own delay first: a check it refuses counts
            # nowhere (the owner waiting it out never locks their source).
            self.throttles.accounts.check(email)
            self.throttles.sources.reserve(ctx.source)
            failures = self.throttles.attempt("password", subject)
            account_failures = self.throttles.accounts.attempt(email)
            with self.db.session() as session:
                user = session.execute(
                    select(User).where(User.email == email)).scalar_one_or_none()
                if user is not None:
                    session.expunge(user)
            ok = credentials.verify_password(user.password_hash if user else None, password)
        ok = ok and user is not None and not user.disabled
        with self.db.session() as session:
            details: dict[str, Any] = {}
            if ok:
                self.throttles.succeeded(session, "password", subject)
                self.throttles.sources.release(session, ctx.source)
                self.throttles.accounts.succeeded(session, email)
            else:
                details["failures"] = failures
                if user is not None and self.throttles.accounts.starts(account_failures):
                    self._slowed(session, user, account_failures, ctx)
            trail.record(
                session, f"{event}.succeeded" if ok else f"{event}.failed",
                actor=user.id if ok and user else None,
                organisation_id=user.organisation_id if user else None,
                object_type="user", object_id=user.id if user else None,
                outcome="success" if ok else "failure", context=ctx,
                **details,
            )
        if not ok or user is None:
            raise AuthenticationRequired("wrong e-mail or password")
        return user

    def _slowed(self, session: Session, user: User, failures: int, ctx: trail.Context) -> None:
        """The account's failures from all sources start its delays: audited,
        and its owner told once (until a success clears the count)."""
        trail.record(session, "login.account_slowed", actor=None,
                     organisation_id=user.organisation_id, object_type="user",
                     object_id=user.id, outcome="failure", context=ctx, failures=failures)
        if self.mail is not None:
            self.mail.enqueue(session, user.organisation_id, messages.security_notice(
                to=user.email,
                french=("De nombreuses tentatives de connexion à votre compte ont échoué. "
                        "Par précaution, chaque nouvel essai est désormais retardé (une "
                        "minute au plus) jusqu'à votre prochaine connexion réussie."),
                english=("Many sign-ins to your account have failed. Each new attempt is "
                         "now delayed (a minute at most) until your next successful "
                         "sign-in.")))

    # -- API tokens -----------------------------------------------------------

    def create_token(
        self,
        user: User | Actor,
        name: str,
        scopes: frozenset[Scope],
        ctx: trail.Context,
        expires_in_days: int | None = None,
        *,
        mfa: bool = False,
        auth_time: datetime | None = None,
    ) -> str:
        """A new API token. Minted by a signed-in user (``User``, after
        login) or by another credential (``Actor``), whose second factor
        and authentication time it inherits and whose scopes it cannot
        exceed."""
        user_id = user.id if isinstance(user, User) else user.user_id
        org_id = user.organisation_id
        role = Role(user.role) if isinstance(user, User) else user.role
        if isinstance(user, Actor):
            authorize(user, Action.TOKEN_MANAGE)
            mfa, auth_time = user.mfa, user.auth_time
            if not scopes <= user.scopes:
                raise InvalidInput("a token cannot have more scopes than the one creating it")
            # A read-only token cannot mint tokens (it would outlive a revocation).
            user.require(Scope.TRANSFERS_WRITE)
        if Scope.ADMIN in scopes and role is not Role.ADMIN:
            raise InvalidInput("only administrators can hold the 'admin' scope")
        if expires_in_days is not None and not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
            raise InvalidInput(f"token lifetime must be 1 to {MAX_TOKEN_DAYS} days")
        token = credentials.new_token(TOKEN_PREFIX)
        now = self.clock.now()
        expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None
        parent_expiry = user.expires_at if isinstance(user, Actor) else None
        if parent_expiry is not None and (expires_at is None or expires_at > parent_expiry):
            expires_at = parent_expiry  # a token never outlives the one that made it
        with self.db.session() as session:
            row = ApiToken(
                user_id=user_id,
                name=name.strip()[:100],
                created_at=now,
                token_hash=credentials.hash_token(token),
                scopes=" ".join(sorted(scopes)),
                expires_at=expires_at,
                mfa=mfa,
                auth_time=auth_time,
            )
            session.add(row)
            session.flush()
            trail.record(
                session,
                "token.created",
                actor=user_id,
                organisation_id=org_id,
                object_type="api_token",
                object_id=row.id,
                context=ctx,
                scopes=sorted(scopes),
            )
        return token

    def actor_for_token(self, token: str, step_up: timedelta = timedelta(0)) -> Actor:
        """The actor behind an API token, in one transaction (every API
        request pays for it). ``step_up``: how recent the holder's last
        authentication must be for sensitive actions."""
        now = self.clock.now()
        with self.db.session() as session:
            row = session.execute(
                select(ApiToken).where(ApiToken.token_hash == credentials.hash_token(token))
            ).scalar_one_or_none()
            if (
                row is None
                or row.revoked_at is not None
                or (row.expires_at is not None and row.expires_at <= now)
                or row.user.disabled
            ):
                raise AuthenticationRequired("invalid or expired token")
            if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=5):
                row.last_used_at = now
            organisation = session.get(Organisation, row.user.organisation_id)
            return Actor(
                user_id=row.user_id,
                organisation_id=row.user.organisation_id,
                role=Role(row.user.role),
                scopes=frozenset(Scope(s) for s in row.scopes.split()) & ALL_SCOPES,
                expires_at=row.expires_at,
                mfa=row.mfa,
                mfa_required=mfa_required(row.user, organisation),
                auth_time=row.auth_time,
                stepped_up=row.auth_time is not None and now - row.auth_time <= step_up,
            )

    def list_tokens(self, actor: Actor) -> list[TokenInfo]:
        authorize(actor, Action.ACCOUNT_READ)
        with self.db.session() as session:
            rows = session.execute(
                select(ApiToken)
                .where(ApiToken.user_id == actor.user_id, ApiToken.revoked_at.is_(None))
                .order_by(ApiToken.created_at)
            ).scalars()
            return [
                TokenInfo(
                    r.id, r.name, r.scopes.split(), r.created_at, r.expires_at, r.last_used_at
                )
                for r in rows
            ]

    def revoke_token(self, actor: Actor, token_id: str, ctx: trail.Context) -> None:
        authorize(actor, Action.SESSION_MANAGE)  # ending one's own credentials
        with self.db.session() as session:
            row = session.get(ApiToken, token_id)
            if row is None or row.user_id != actor.user_id or row.revoked_at is not None:
                raise NotFound("token not found")
            row.revoked_at = self.clock.now()
            trail.record(
                session,
                "token.revoked",
                actor=actor.user_id,
                organisation_id=actor.organisation_id,
                object_type="api_token",
                object_id=token_id,
                context=ctx,
            )

    def user(self, actor: Actor) -> User:
        authorize(actor, Action.ACCOUNT_READ)
        with self.db.session() as session:
            user = session.get(User, actor.user_id)
            if user is None:
                raise NotFound("user not found")
            session.expunge(user)
            return user
