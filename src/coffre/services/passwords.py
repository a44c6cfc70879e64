"""Changing a password, and resetting a forgotten one by a mailed link.

- A change needs a recent sign-in (step-up, SEC-17) and the current
  password; it ends the user's other sessions and API tokens (not the
  credential it was made with).
- A forgotten password is reset by a single-use link (a 256-bit token,
  stored hashed, valid ``lifetime``) mailed to the account's address.
  Asking for one always answers 202, whether the address has an account
  or not (SEC-14) and however often it is asked for; only the source is
  throttled (429). An address is mailed at most one link per
  ``MAIL_INTERVAL`` (more requests mail nothing, audited as suppressed),
  and a new link never cancels an earlier one: a stranger asking again
  and again can neither bomb the mailbox nor void the link the user (or
  an administrator) just sent. Any unexpired link works until it is used;
  using one revokes the others. It ends every session and token of the
  user; it never touches second factors: the next sign-in still asks for
  one.
- An administrator may force a reset: the member's password stops working
  at once, their sessions and tokens end, their earlier links stop
  working, and they are mailed a link.

Every step leaves an audit event (``password.*``); refused links go
through the ``DenialLog`` (aggregated per source and window, like other
anonymous refusals). Never logs a password or a link.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.crypto import credentials
from coffre.db.engine import Database
from coffre.db.tables import ApiToken, PasswordReset, User, UserSession
from coffre.domain.accounts import Actor, check_password_policy, normalise_email
from coffre.domain.policy import Action, Target, authorize
from coffre.errors import Conflict, Gone, NotFound
from coffre.ports import Clock
from coffre.services import messages
from coffre.services.accounts import AccountService
from coffre.services.denials import DenialLog, Refused
from coffre.services.mail import MailQueue
from coffre.services.rates import Rates
from coffre.services.throttle import Throttles, per_source

FORGOTTEN = "forgotten"
FORCED = "forced"
#: Throttle kind (``Throttles``): reset requests per source.
RESET_PER_SOURCE = "password_reset_source"
#: Rate kind (``Rates``): reset mails per address, one per ``MAIL_INTERVAL``.
RESET_MAIL = "password_reset_mail"
MAIL_INTERVAL = timedelta(minutes=5)
#: Where a reset link leads (a page, never the API).
RESET_PATH = "/password/reset/"


@dataclass(frozen=True)
class _Link:
    """A usable reset link, read outside any transaction."""

    id: str
    user_id: str
    organisation_id: str
    email: str
    reason: str


@dataclass(frozen=True)
class ResetPreview:
    """What the reset page shows: whose password the link sets."""

    email: str
    forced: bool


class PasswordService:
    def __init__(self, db: Database, accounts: AccountService, mail: MailQueue, clock: Clock,
                 throttles: Throttles, *, public_url: str, lifetime: timedelta,
                 denials: DenialLog | None = None, rates: Rates | None = None) -> None:
        self.db = db
        self.denials = denials or DenialLog(db, clock)
        self.rates = rates or Rates(db, clock)
        self.accounts = accounts
        self.mail = mail
        self.clock = clock
        self.throttles = throttles
        self.public_url = public_url.rstrip("/")
        self.lifetime = lifetime

    # -- change -----------------------------------------------------------------

    def change(self, actor: Actor, current: str, new: str, ctx: trail.Context,
               token: str | None = None) -> None:
        """A signed-in user's own change. ``token``: the API token it comes
        with (kept, like the browser session it may come from)."""
        authorize(actor, Action.PASSWORD_CHANGE)
        with self.db.session() as session:
            user = session.get(User, actor.user_id)
            if user is None:
                raise NotFound("user not found")
            email = user.email
        check_password_policy(new)
        # The current password too (ASVS 2.1.6); throttled and audited like a sign-in.
        self.accounts.authenticate(email, current, ctx, event="password.check")
        new_hash = credentials.hash_password(new)
        keep_token = credentials.hash_token(token) if token else None
        with self.db.session() as session:
            user = session.get(User, actor.user_id, with_for_update=True)
            assert user is not None
            user.password_hash = new_hash
            sessions = _end_sessions(session, user.id, self.clock, keep=actor.session_id)
            tokens = _revoke_tokens(session, user.id, self.clock, keep=keep_token)
            _revoke_resets(session, user.id, self.clock)
            trail.record(session, "password.changed", actor=user.id,
                         organisation_id=user.organisation_id, object_type="user",
                         object_id=user.id, context=ctx, sessions_ended=sessions,
                         tokens_revoked=tokens)
            self._notice(session, user, "Le mot de passe de votre compte a été changé.",
                         "The password of your account was changed.")

    # -- forgotten ----------------------------------------------------------------

    def request_reset(self, email: str, ctx: trail.Context) -> None:
        """Mail a reset link if ``email`` is an enabled account and was not
        mailed one in the last ``MAIL_INTERVAL``; the same answer (nothing)
        otherwise. Throttled per source only (``TooManyAttempts``): nothing
        a stranger does with the address changes the answer."""
        email = normalise_email(email)
        self.throttles.attempt(RESET_PER_SOURCE, per_source("", ctx.source))
        # Counted for every address, known or not, before looking it up.
        mail = self.rates.count(RESET_MAIL, email, 1, MAIL_INTERVAL)
        with self.db.session() as session:
            user = session.execute(select(User).where(User.email == email)).scalar_one_or_none()
            if user is None or user.disabled:
                trail.record(session, "password.reset_requested", actor=None,
                             organisation_id=user.organisation_id if user else None,
                             object_type="user" if user else None,
                             object_id=user.id if user else None, outcome="failure",
                             context=ctx, reason="disabled" if user else "unknown_address")
                return
            if not mail.allowed:
                trail.record(session, "password.reset_suppressed", actor=None,
                             organisation_id=user.organisation_id, object_type="user",
                             object_id=user.id, outcome="failure", context=ctx,
                             reason="mail_interval",
                             next_mail_at=trail.utc_iso(mail.resets_at))
                return
            trail.record(session, "password.reset_requested", actor=None,
                         organisation_id=user.organisation_id, object_type="user",
                         object_id=user.id, context=ctx)
            self._issue(session, user, FORGOTTEN, ctx, actor_id=None)

    def _issue(self, session: Session, user: User, reason: str, ctx: trail.Context,
               actor_id: str | None) -> None:
        """A new link for ``user``, mailed (earlier ones keep working until
        one is used, or the caller revokes them)."""
        now = self.clock.now()
        token = credentials.new_token()
        row = PasswordReset(user_id=user.id, token_hash=credentials.hash_token(token),
                            reason=reason, created_at=now, expires_at=now + self.lifetime)
        session.add(row)
        session.flush()
        minutes = int(self.lifetime.total_seconds() // 60)
        self.mail.enqueue(session, user.organisation_id, messages.password_reset(
            to=user.email, link=f"{self.public_url}{RESET_PATH}{token}", minutes=minutes,
            forced=reason == FORCED))
        trail.record(session, "password.reset_mailed", actor=actor_id,
                     organisation_id=user.organisation_id, object_type="password_reset",
                     object_id=row.id, context=ctx, user=user.id, reason=reason,
                     expires_at=trail.utc_iso(row.expires_at))

    def preview_reset(self, token: str, ctx: trail.Context) -> ResetPreview:
        """The reset page: whose link this is, if it can still be used
        (else ``NotFound`` or ``Gone``, audited)."""
        link = self._find(token, ctx)
        return ResetPreview(link.email, link.reason == FORCED)

    def complete_reset(self, token: str, new: str, ctx: trail.Context) -> str:
        """Set the new password with a reset link (once). Ends every session
        and token of the user; second factors stay. Returns the address."""
        link = self._find(token, ctx)  # before any costly hashing
        check_password_policy(new)
        new_hash = credentials.hash_password(new)
        now = self.clock.now()
        with self.db.session() as session:
            # Compare-and-set: of two uses at once, one wins.
            claimed = session.execute(
                update(PasswordReset)
                .where(PasswordReset.id == link.id, PasswordReset.used_at.is_(None),
                       PasswordReset.revoked_at.is_(None), PasswordReset.expires_at > now)
                .values(used_at=now)
            )
            assert isinstance(claimed, CursorResult)
            user = session.get(User, link.user_id) if claimed.rowcount == 1 else None
            if user is not None and not user.disabled:
                user.password_hash = new_hash
                sessions = _end_sessions(session, user.id, self.clock)
                tokens = _revoke_tokens(session, user.id, self.clock)
                _revoke_resets(session, user.id, self.clock)
                # Proof of the mailbox: failed sign-ins of this address, from
                # this source and from all, start again from zero.
                self.throttles.succeeded(session, "password", per_source(user.email, ctx.source))
                self.throttles.accounts.succeeded(session, user.email)
                trail.record(session, "password.reset_used", actor=user.id,
                             organisation_id=user.organisation_id,
                             object_type="password_reset", object_id=link.id, context=ctx,
                             user=user.id, reason=link.reason, sessions_ended=sessions,
                             tokens_revoked=tokens)
                self._notice(session, user, "Le mot de passe de votre compte a été "
                             "réinitialisé avec un lien reçu par e-mail.",
                             "The password of your account was reset with a mailed link.")
                return user.email
        # Used (or expired) between the check and now: refused like any used link.
        self._refused("password.reset_invalid", link.id, link.organisation_id, "used", ctx)
        raise Gone("this link has already been used or replaced", reason="reset_used")

    def _find(self, token: str, ctx: trail.Context) -> _Link:
        """The link ``token`` names if it can be used; otherwise the refusal
        is recorded (in its own transaction) and raised."""
        now = self.clock.now()
        with self.db.session() as session:
            row = session.execute(select(PasswordReset).where(
                PasswordReset.token_hash == credentials.hash_token(token)
            )).scalar_one_or_none()
            user = session.get(User, row.user_id) if row is not None else None
            if row is None or user is None:
                found = None
            else:
                found = _Link(row.id, user.id, user.organisation_id, user.email, row.reason)
                spent = row.used_at is not None or row.revoked_at is not None or user.disabled
                expired = row.expires_at <= now
                if not spent and not expired:
                    return found
        if found is None:
            self._refused("password.reset_invalid", None, None, None, ctx)
            raise NotFound("unknown or expired link")
        if spent:
            self._refused("password.reset_invalid", found.id, found.organisation_id, "used", ctx)
            raise Gone("this link has already been used or replaced", reason="reset_used")
        self._refused("password.reset_expired", found.id, found.organisation_id, "expired", ctx)
        raise Gone("this link has expired", reason="reset_expired")

    def _refused(self, action: str, reset_id: str | None, organisation_id: str | None,
                 state: str | None, ctx: trail.Context) -> None:
        """Through the ``DenialLog``: the first refusal of a window per
        source (and link) is an event at once, the others one count."""
        status = 404 if reset_id is None else 410
        about = Refused("password_reset" if reset_id else None, reset_id, organisation_id,
                        (("state", state),) if state else ())
        self.denials.record(action, status, None, RESET_PATH,
                            "not_found" if reset_id is None else "gone", ctx, about)

    # -- forced by an administrator -------------------------------------------------

    def force_reset(self, admin: Actor, member_id: str, ctx: trail.Context) -> None:
        """The member's password stops working, their sessions and tokens
        end, and they are mailed a reset link."""
        authorize(admin, Action.MEMBER_MANAGE)
        unusable = credentials.hash_password(credentials.new_token())  # nobody knows it
        with self.db.session() as session:
            user = session.get(User, member_id)
            if user is None:
                raise NotFound("member not found", access_denied=True)
            authorize(admin, Action.MEMBER_MANAGE, Target(user.organisation_id, user.id),
                      missing="member not found")
            if user.id == admin.user_id:
                raise Conflict("change your own password from your account page",
                               reason="own_account")
            if user.disabled:
                raise Conflict("this member is disabled", reason="member_disabled")
            user.password_hash = unusable
            _revoke_resets(session, user.id, self.clock)
            sessions = _end_sessions(session, user.id, self.clock)
            tokens = _revoke_tokens(session, user.id, self.clock)
            trail.record(session, "password.reset_forced", actor=admin.user_id,
                         organisation_id=user.organisation_id, object_type="user",
                         object_id=user.id, context=ctx, sessions_ended=sessions,
                         tokens_revoked=tokens)
            self._issue(session, user, FORCED, ctx, actor_id=admin.user_id)

    def _notice(self, session: Session, user: User, french: str, english: str) -> None:
        self.mail.enqueue(session, user.organisation_id,
                          messages.security_notice(to=user.email, french=french,
                                                   english=english))


def _end_sessions(session: Session, user_id: str, clock: Clock, keep: str | None = None) -> int:
    result = session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None),
               UserSession.id != (keep or ""))
        .values(ended_at=clock.now())
    )
    assert isinstance(result, CursorResult)
    return result.rowcount


def _revoke_tokens(session: Session, user_id: str, clock: Clock, keep: str | None = None) -> int:
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None),
               ApiToken.token_hash != (keep or ""))
        .values(revoked_at=clock.now())
    )
    assert isinstance(result, CursorResult)
    return result.rowcount


def _revoke_resets(session: Session, user_id: str, clock: Clock) -> None:
    session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user_id, PasswordReset.used_at.is_(None),
               PasswordReset.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
