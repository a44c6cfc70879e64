"""Organisations, their members and invitations to join them.

An invitation is a one-time link mailed to a new member: 256 bits, only
its hash is stored, and it never enters the audit trail or a log. An
address is unique on the instance; inviting one that has an account in
another organisation answers and mails exactly as for a new address (the
inviter learns nothing), and the invitation is refused at acceptance.
Disabling a member ends their browser sessions and revokes their API
tokens in the same transaction, so their next request is refused.
An organisation always keeps at least one enabled administrator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import CursorResult, Result, func, select, update
from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.crypto import credentials
from coffre.db.engine import Database
from coffre.db.tables import (
    ApiToken,
    Invitation,
    Organisation,
    SecondFactor,
    User,
    UserSession,
)
from coffre.domain import limits as rules
from coffre.domain.accounts import Actor, Role, check_password_policy, normalise_email
from coffre.domain.policy import Action, Target, authorize
from coffre.errors import Conflict, Gone, InvalidInput, NotFound
from coffre.ports import Clock
from coffre.services import messages
from coffre.services.mail import MailQueue
from coffre.services.quotas import Quotas, policy_of

INVITATION_PATH = "/invitation/"


@dataclass(frozen=True)
class InvitationInfo:
    id: str
    email: str
    role: str
    invited_by: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class InvitationPreview:
    """What the invitation page shows before the form is sent."""

    organisation: str
    email: str
    role: str


@dataclass(frozen=True)
class MemberInfo:
    id: str
    email: str
    display_name: str
    role: str
    disabled: bool
    created_at: datetime
    second_factor: bool
    last_active_at: datetime | None


@dataclass(frozen=True)
class OrganisationInfo:
    id: str
    name: str
    require_mfa: bool
    allow_unverified_recipients: bool
    #: Executables and scripts are refused by name and content (SEC-19).
    block_executables: bool = True
    #: Mails leave out transfers' subjects and messages (issue 16).
    discreet_mail: bool = False
    #: Retention and limits as set (None: the instance's), and in force.
    policy: dict[str, Any] = field(default_factory=dict)
    effective: dict[str, Any] = field(default_factory=dict)


#: Organisation policy fields an administrator may set (domain/limits.py).
LIMIT_FIELDS = (
    "default_expiry_days", "max_expiry_days", "allow_permanent", "max_file_size",
    "max_transfer_size", "max_recipients", "recipient_domains_allowed",
    "recipient_domains_denied", "user_quota", "organisation_quota",
    "backup_quota", "backup_alert_days",
)


class _Refused(Exception):
    """An invitation link that cannot be used, and why."""

    def __init__(self, reason: str, organisation_id: str | None, invitation_id: str | None):
        super().__init__(reason)
        self.reason = reason
        self.organisation_id = organisation_id
        self.invitation_id = invitation_id


def discreet_mail(session: Session, organisation_id: str) -> bool:
    """Does the organisation keep subjects and messages out of mails?"""
    org = session.get(Organisation, organisation_id)
    return bool(org is not None and org.discreet_mail)


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput(
            f"unknown role '{value}'", field="role", allowed=sorted(Role)
        ) from None


class OrganisationService:
    def __init__(
        self,
        db: Database,
        mail: MailQueue,
        clock: Clock,
        *,
        public_url: str,
        invitation_lifetime: timedelta,
        quotas: Quotas,
    ) -> None:
        self.quotas = quotas
        self.db = db
        self.mail = mail
        self.clock = clock
        self.public_url = public_url.rstrip("/")
        self.invitation_lifetime = invitation_lifetime

    # -- invitations ----------------------------------------------------------

    def invite(self, actor: Actor, email: str, role: str, ctx: trail.Context) -> InvitationInfo:
        authorize(actor, Action.MEMBER_INVITE)
        address = normalise_email(email)
        new_role = parse_role(role)
        token = credentials.new_token()
        now = self.clock.now()
        with self.db.session() as session:
            # A member of this organisation is known to the inviter (409);
            # an account elsewhere is not theirs to learn: the invitation
            # is made and mailed as any other, and refused at acceptance.
            holder = session.execute(
                select(User.organisation_id).where(User.email == address)).first()
            if holder is not None and holder.organisation_id == actor.organisation_id:
                raise Conflict("a user with this e-mail already exists", field="email")
            if session.execute(
                select(Invitation.id).where(
                    Invitation.organisation_id == actor.organisation_id,
                    Invitation.email == address,
                    *_pending(now),
                )
            ).first():
                raise Conflict(
                    "an invitation is already pending for this address: revoke it first",
                    field="email",
                )
            inviter = session.get(User, actor.user_id)
            org = session.get(Organisation, actor.organisation_id)
            assert inviter is not None and org is not None
            row = Invitation(
                organisation_id=actor.organisation_id,
                email=address,
                role=new_role.value,
                token_hash=credentials.hash_token(token),
                invited_by=actor.user_id,
                created_at=now,
                expires_at=now + self.invitation_lifetime,
            )
            session.add(row)
            session.flush()
            self.mail.enqueue(
                session,
                actor.organisation_id,
                messages.invitation(
                    to=address,
                    organisation=org.name,
                    inviter=inviter.display_name or inviter.email,
                    inviter_email=inviter.email,
                    role=new_role.value,
                    link=f"{self.public_url}{INVITATION_PATH}{token}",
                    expires_at=row.expires_at,
                ),
            )
            trail.record(
                session,
                "invitation.created",
                actor=actor.user_id,
                organisation_id=actor.organisation_id,
                object_type="invitation",
                object_id=row.id,
                context=ctx,
                role=new_role.value,
            )
            return _invitation_info(row)

    def pending_invitations(self, actor: Actor) -> list[InvitationInfo]:
        authorize(actor, Action.MEMBER_LIST)
        with self.db.session() as session:
            rows = session.execute(
                select(Invitation)
                .where(
                    Invitation.organisation_id == actor.organisation_id,
                    *_pending(self.clock.now()),
                )
                .order_by(Invitation.created_at)
            ).scalars()
            return [_invitation_info(r) for r in rows]

    def revoke_invitation(self, actor: Actor, invitation_id: str, ctx: trail.Context) -> None:
        with self.db.session() as session:
            row = session.get(Invitation, invitation_id)
            if row is None:
                raise NotFound("invitation not found", access_denied=True)
            authorize(actor, Action.MEMBER_INVITE, Target(row.organisation_id, row.invited_by),
                      missing="invitation not found")
            if row.accepted_at is not None or row.revoked_at is not None:
                raise Gone("this invitation was already accepted or revoked")
            row.revoked_at = self.clock.now()
            trail.record(
                session,
                "invitation.revoked",
                actor=actor.user_id,
                organisation_id=row.organisation_id,
                object_type="invitation",
                object_id=row.id,
                context=ctx,
            )

    def preview_invitation(self, token: str, ctx: trail.Context) -> InvitationPreview:
        """The invitation behind a link, or the reason it cannot be used."""
        try:
            with self.db.session() as session:
                row = self._usable(session, token)
                org = session.get(Organisation, row.organisation_id)
                assert org is not None
                return InvitationPreview(org.name, row.email, row.role)
        except _Refused as refused:
            self._refuse(refused, ctx)

    def accept(
        self, token: str, password: str, display_name: str, ctx: trail.Context
    ) -> User:
        """Create the invited user; the link then stops working.

        The Argon2 hash is computed outside any transaction (as at login),
        and the link is checked again, locked, inside the one that uses it.
        """
        try:
            with self.db.session() as session:
                self._usable(session, token)  # before any costly hashing
            check_password_policy(password)
            name = display_name.strip()[:200]
            password_hash = credentials.hash_password(password)
            return self._join(token, name, password_hash, ctx)
        except _Refused as refused:
            self._refuse(refused, ctx)

    def _join(self, token: str, name: str, password_hash: str, ctx: trail.Context) -> User:
        with self.db.session() as session:
            row = self._usable(session, token, lock=True)
            user = User(
                organisation_id=row.organisation_id,
                email=row.email,
                display_name=name,
                password_hash=password_hash,
                role=row.role,
                created_at=self.clock.now(),
            )
            session.add(user)
            session.flush()
            row.accepted_at = self.clock.now()
            trail.record(
                session,
                "invitation.accepted",
                actor=user.id,
                organisation_id=row.organisation_id,
                object_type="invitation",
                object_id=row.id,
                context=ctx,
                user=user.id,
                role=row.role,
            )
            session.flush()
            session.expunge(user)
            return user

    def _usable(self, session: Session, token: str, *, lock: bool = False) -> Invitation:
        """The pending invitation for ``token``; ``_Refused`` otherwise."""
        query = select(Invitation).where(Invitation.token_hash == credentials.hash_token(token))
        if lock:
            query = query.with_for_update()
        row = session.execute(query).scalar_one_or_none()
        if row is None:
            raise _Refused("unknown", None, None)
        if row.accepted_at is not None:
            raise _Refused("invitation_used", row.organisation_id, row.id)
        if row.revoked_at is not None:
            raise _Refused("invitation_revoked", row.organisation_id, row.id)
        if row.expires_at <= self.clock.now():
            raise _Refused("invitation_expired", row.organisation_id, row.id)
        if session.execute(select(User.id).where(User.email == row.email)).first():
            # Recorded without the inviting organisation: its
            # administrators must not learn that the address has an account.
            raise _Refused("address_taken", None, row.id)
        return row

    def _refuse(self, refused: _Refused, ctx: trail.Context) -> NoReturn:
        """Record a refused link in a transaction of its own (the one that
        looked it up has rolled back), then answer 404 or 410."""
        with self.db.session() as session:
            trail.record(
                session,
                "invitation.refused",
                actor=None,
                organisation_id=refused.organisation_id,
                object_type="invitation" if refused.invitation_id else None,
                object_id=refused.invitation_id,
                outcome="failure",
                context=ctx,
                reason=refused.reason,
            )
        if refused.invitation_id is None:
            raise NotFound("unknown invitation link")
        if refused.reason == "address_taken":
            raise Conflict(
                "this e-mail address already has an account on this server (an address "
                "belongs to one organisation only): sign in with it, or ask to be invited "
                "with another address", reason="address_taken",
            )
        raise Gone(
            "this invitation link was already used, revoked or has expired",
            reason=refused.reason,
        )

    # -- members --------------------------------------------------------------

    def members(self, actor: Actor) -> list[MemberInfo]:
        authorize(actor, Action.MEMBER_LIST)
        with self.db.session() as session:
            return _members(session, User.organisation_id == actor.organisation_id)

    def update_member(
        self,
        actor: Actor,
        member_id: str,
        ctx: trail.Context,
        *,
        role: str | None = None,
        disabled: bool | None = None,
    ) -> MemberInfo:
        """Change a member's role and/or disable or enable them.

        Each change made is one audit event; asking for the current state
        changes nothing and records nothing.
        """
        new_role = parse_role(role) if role is not None else None
        with self.db.session() as session:
            user = self._member(session, actor, member_id)
            now = self.clock.now()
            if new_role is not None and new_role.value != user.role:
                if user.role == Role.ADMIN.value:
                    self._keep_an_admin(session, user)
                before = user.role
                user.role = new_role.value
                trail.record(
                    session,
                    "member.role_changed",
                    actor=actor.user_id,
                    organisation_id=user.organisation_id,
                    object_type="user",
                    object_id=user.id,
                    context=ctx,
                    before=before,
                    after=new_role.value,
                )
            if disabled is True and not user.disabled:
                if user.id == actor.user_id:
                    raise Conflict("you cannot disable your own account")
                if user.role == Role.ADMIN.value:
                    self._keep_an_admin(session, user)
                user.disabled = True
                user.disabled_at = now
                sessions = self._end_sessions(session, user.id, now)
                tokens = _count(
                    session.execute(
                        update(ApiToken)
                        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                        .values(revoked_at=now)
                    )
                )
                trail.record(
                    session,
                    "member.disabled",
                    actor=actor.user_id,
                    organisation_id=user.organisation_id,
                    object_type="user",
                    object_id=user.id,
                    context=ctx,
                    sessions_ended=sessions,
                    tokens_revoked=tokens,
                )
            elif disabled is False and user.disabled:
                user.disabled = False
                user.disabled_at = None
                trail.record(
                    session,
                    "member.enabled",
                    actor=actor.user_id,
                    organisation_id=user.organisation_id,
                    object_type="user",
                    object_id=user.id,
                    context=ctx,
                )
            session.flush()
            return _members(session, User.id == user.id)[0]

    def end_sessions(self, actor: Actor, member_id: str, ctx: trail.Context) -> int:
        """SEC-16: an administrator ends every browser session of a member."""
        with self.db.session() as session:
            user = self._member(session, actor, member_id)
            ended = self._end_sessions(session, user.id, self.clock.now())
            trail.record(
                session,
                "member.sessions_ended",
                actor=actor.user_id,
                organisation_id=user.organisation_id,
                object_type="user",
                object_id=user.id,
                context=ctx,
                sessions_ended=ended,
            )
            return ended

    def _member(self, session: Session, actor: Actor, member_id: str) -> User:
        user = session.get(User, member_id)
        if user is None:
            raise NotFound("member not found", access_denied=True)
        authorize(actor, Action.MEMBER_MANAGE, Target(user.organisation_id, user.id),
                  missing="member not found")
        return user

    @staticmethod
    def _keep_an_admin(session: Session, leaving: User) -> None:
        """Refuse if ``leaving`` is the organisation's last enabled administrator."""
        others = session.execute(
            select(func.count(User.id)).where(
                User.organisation_id == leaving.organisation_id,
                User.role == Role.ADMIN.value,
                User.disabled.is_(False),
                User.id != leaving.id,
            )
        ).scalar_one()
        if not others:
            raise Conflict(
                "the organisation needs at least one enabled administrator",
                reason="last_administrator",
            )

    @staticmethod
    def _end_sessions(session: Session, user_id: str, now: datetime) -> int:
        return _count(
            session.execute(
                update(UserSession)
                .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
                .values(ended_at=now)
            )
        )

    # -- organisation policy --------------------------------------------------

    def organisation(self, actor: Actor) -> OrganisationInfo:
        authorize(actor, Action.ACCOUNT_READ)
        with self.db.session() as session:
            return self._info(self._organisation(session, actor))

    def _info(self, org: Organisation) -> OrganisationInfo:
        policy = policy_of(org)
        limits = rules.effective(self.quotas.instance, policy)
        effective = {
            **asdict(limits),
            "default_expiry_days": limits.default_expiry.days,
            "max_expiry_days": limits.max_expiry.days,
        }
        del effective["default_expiry"], effective["max_expiry"]
        return replace(_organisation_info(org), policy=asdict(policy), effective=effective)

    def update_organisation(
        self,
        actor: Actor,
        ctx: trail.Context,
        *,
        name: str | None = None,
        require_mfa: bool | None = None,
        allow_unverified_recipients: bool | None = None,
        block_executables: bool | None = None,
        discreet_mail: bool | None = None,
        limits: dict[str, Any] | None = None,
    ) -> OrganisationInfo:
        """SEC-29: one event with each changed setting's before and after.

        ``limits``: retention and limit fields given explicitly (``None``
        values restore the instance's)."""
        authorize(actor, Action.ORGANISATION_MANAGE)
        limits = dict(limits or {})
        if set(limits) - set(LIMIT_FIELDS):
            raise InvalidInput("unknown policy field",
                               fields=sorted(set(limits) - set(LIMIT_FIELDS)))
        for key in ("recipient_domains_allowed", "recipient_domains_denied"):
            if key in limits:
                limits[key] = "\n".join(rules.parse_domains(limits[key] or [], key))
        if limits.get("allow_permanent", True) is None:
            raise InvalidInput("allow_permanent is true or false", field="allow_permanent")
        wanted: dict[str, Any] = {
            "require_mfa": require_mfa,
            "allow_unverified_recipients": allow_unverified_recipients,
            "block_executables": block_executables,
            "discreet_mail": discreet_mail,
        }
        if name is not None:
            wanted["name"] = name.strip()
            if not 1 <= len(wanted["name"]) <= 200:
                raise InvalidInput("the organisation needs a name", field="name")
        with self.db.session() as session:
            org = self._organisation(session, actor)
            changes = {}
            for key, value in [*wanted.items(), *limits.items()]:
                if (value is not None or key in limits) and getattr(org, key) != value:
                    changes[key] = {"before": getattr(org, key), "after": value}
                    setattr(org, key, value)
            rules.check_policy(self.quotas.instance, policy_of(org))
            if changes:
                trail.record(
                    session,
                    "organisation.policy_changed",
                    actor=actor.user_id,
                    organisation_id=org.id,
                    object_type="organisation",
                    object_id=org.id,
                    context=ctx,
                    changes=changes,
                )
            return self._info(org)

    @staticmethod
    def _organisation(session: Session, actor: Actor) -> Organisation:
        org = session.get(Organisation, actor.organisation_id)
        if org is None:
            raise NotFound("organisation not found")
        return org


def _count(result: Result[Any]) -> int:
    """Rows an UPDATE touched."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def _pending(now: datetime) -> tuple[Any, ...]:
    return (
        Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None),
        Invitation.expires_at > now,
    )


def _invitation_info(row: Invitation) -> InvitationInfo:
    return InvitationInfo(
        row.id, row.email, row.role, row.invited_by, row.created_at, row.expires_at
    )


def _members(session: Session, where: Any) -> list[MemberInfo]:
    """Members with whether they have a confirmed second factor and when
    they were last seen (API token or browser session), in one query."""
    factors = (
        select(func.count(SecondFactor.id))
        .where(SecondFactor.user_id == User.id, SecondFactor.confirmed_at.is_not(None))
        .correlate(User)
        .scalar_subquery()
    )
    token_use = (
        select(func.max(ApiToken.last_used_at))
        .where(ApiToken.user_id == User.id)
        .correlate(User)
        .scalar_subquery()
    )
    session_use = (
        select(func.max(UserSession.last_seen_at))
        .where(UserSession.user_id == User.id)
        .correlate(User)
        .scalar_subquery()
    )
    rows = session.execute(
        select(User, factors, token_use, session_use)
        .where(where)
        .order_by(User.created_at, User.email)
    ).all()
    return [
        MemberInfo(
            id=user.id,
            email=user.email,
            display_name=user.display_name,
            role=user.role,
            disabled=user.disabled,
            created_at=user.created_at,
            second_factor=bool(count),
            last_active_at=_latest(_aware(token_at), _aware(session_at)),
        )
        for user, count, token_at, session_at in rows
    ]


def _organisation_info(org: Organisation) -> OrganisationInfo:
    return OrganisationInfo(org.id, org.name, org.require_mfa, org.allow_unverified_recipients,
                            org.block_executables, org.discreet_mail)


def _aware(value: Any) -> datetime | None:
    """Aggregates bypass the column type: SQLite returns naive UTC text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    present = [v for v in (a, b) if v is not None]
    return max(present) if present else None
