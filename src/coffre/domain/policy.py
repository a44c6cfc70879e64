"""Who may do what: one policy function per action, deny by default.

Services call :func:`authorize` before touching an object. The HTTP layer
declares, for every route, which action it performs (``coffre.http.deps``);
the generated role x action x object matrix in the tests checks both.

Answers: an object of another organisation, or one the actor may not see,
does not exist (``NotFound``, so ids cannot be probed); a missing scope,
role or second factor on something the actor may see is ``PermissionDenied``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from coffre.domain.accounts import Actor, Role, Scope
from coffre.errors import AuthenticationRequired, NotFound, PermissionDenied


class Action(enum.StrEnum):
    ACCOUNT_READ = "account.read"
    FACTOR_READ = "factor.read"
    FACTOR_MANAGE = "factor.manage"
    SESSION_MANAGE = "session.manage"
    PASSWORD_CHANGE = "password.change"  # noqa: S105 - an action name
    TOKEN_MANAGE = "token.manage"  # noqa: S105 - an action name
    UPLOAD_WRITE = "upload.write"
    TRANSFER_CREATE = "transfer.create"
    TRANSFER_LIST = "transfer.list"
    USAGE_READ = "usage.read"
    TRANSFER_READ = "transfer.read"
    TRANSFER_MANAGE = "transfer.manage"
    TRANSFER_HOLD = "transfer.hold"
    TRANSFER_DELETE = "transfer.delete"
    TRANSFER_DOWNLOAD = "transfer.download"
    TRANSFER_FORWARD = "transfer.forward"
    REQUEST_CREATE = "request.create"
    REQUEST_READ = "request.read"
    REQUEST_CLOSE = "request.close"
    MEMBER_LIST = "member.list"
    MEMBER_INVITE = "member.invite"
    MEMBER_MANAGE = "member.manage"
    ORGANISATION_MANAGE = "organisation.manage"
    AUDIT_READ = "audit.read"
    AUDIT_EXPORT = "audit.export"
    CONTACT_READ = "contact.read"
    CONTACT_WRITE = "contact.write"
    DIRECTORY_MANAGE = "directory.manage"
    BACKUP_LIST = "backup.list"
    BACKUP_READ = "backup.read"
    BACKUP_REGISTER = "backup.register"
    BACKUP_REVOKE = "backup.revoke"
    BACKUP_MAINTAIN = "backup.maintain"


@dataclass(frozen=True)
class Target:
    """The object acted on: whose organisation, and whose it is."""

    organisation_id: str
    owner_id: str | None = None


Rule = Callable[[Actor, Target | None], bool]


def _own_account(actor: Actor, target: Target | None) -> bool:
    return target is None or target.owner_id == actor.user_id


def _member(actor: Actor, target: Target | None) -> bool:
    return True


def _owner_or_admin(actor: Actor, target: Target | None) -> bool:
    if target is None:
        return False
    return target.owner_id == actor.user_id or actor.role is Role.ADMIN


def _owner(actor: Actor, target: Target | None) -> bool:
    # Content (a received patient file) is its owner's alone: an
    # administrator manages transfers, but does not read their files.
    return target is not None and target.owner_id == actor.user_id


def _admin(actor: Actor, target: Target | None) -> bool:
    return actor.role is Role.ADMIN


def _own_or_shared(actor: Actor, target: Target | None) -> bool:
    """One's own object, or the organisation's (no owner): contacts."""
    return target is None or target.owner_id in (None, actor.user_id)


#: action -> (rule, scope the credential must carry)
_POLICIES: dict[Action, tuple[Rule, Scope | None]] = {
    # What a signed-in user may always do for themself, even before the
    # second factor their role requires (so they can enrol one).
    Action.ACCOUNT_READ: (_own_account, None),
    Action.FACTOR_READ: (_own_account, None),
    Action.FACTOR_MANAGE: (_own_account, None),
    Action.SESSION_MANAGE: (_own_account, None),
    Action.PASSWORD_CHANGE: (_own_account, None),
    Action.TOKEN_MANAGE: (_own_account, Scope.TRANSFERS_WRITE),
    Action.UPLOAD_WRITE: (_own_account, Scope.TRANSFERS_WRITE),
    Action.TRANSFER_CREATE: (_member, Scope.TRANSFERS_WRITE),
    Action.TRANSFER_LIST: (_member, Scope.TRANSFERS_READ),
    Action.USAGE_READ: (_member, Scope.TRANSFERS_READ),
    Action.TRANSFER_READ: (_owner_or_admin, Scope.TRANSFERS_READ),
    Action.TRANSFER_MANAGE: (_owner_or_admin, Scope.TRANSFERS_WRITE),
    # Legal hold: administrators only (the owner cannot lift it either).
    Action.TRANSFER_HOLD: (_admin, Scope.ADMIN),
    Action.TRANSFER_DELETE: (_owner_or_admin, Scope.TRANSFERS_WRITE),
    Action.TRANSFER_DOWNLOAD: (_owner, Scope.TRANSFERS_READ),
    Action.TRANSFER_FORWARD: (_owner, Scope.TRANSFERS_WRITE),
    Action.REQUEST_CREATE: (_member, Scope.TRANSFERS_WRITE),
    Action.REQUEST_READ: (_owner_or_admin, Scope.TRANSFERS_READ),
    Action.REQUEST_CLOSE: (_owner_or_admin, Scope.TRANSFERS_WRITE),
    Action.MEMBER_LIST: (_admin, Scope.ADMIN),
    Action.MEMBER_INVITE: (_admin, Scope.ADMIN),
    Action.MEMBER_MANAGE: (_admin, Scope.ADMIN),
    Action.ORGANISATION_MANAGE: (_admin, Scope.ADMIN),
    Action.AUDIT_READ: (_admin, Scope.ADMIN),
    Action.AUDIT_EXPORT: (_admin, Scope.ADMIN),
    # Personal contacts are their owner's only (an administrator neither);
    # the organisation's directory is read by all, written by administrators.
    Action.CONTACT_READ: (_own_or_shared, Scope.TRANSFERS_READ),
    Action.CONTACT_WRITE: (_own_account, Scope.TRANSFERS_WRITE),
    Action.DIRECTORY_MANAGE: (_admin, Scope.ADMIN),
    # Backup devices: their owner's, and every one of the organisation's
    # for administrators; only administrators may issue a credential that
    # can delete backups (pruning), after step-up.
    Action.BACKUP_LIST: (_member, Scope.TRANSFERS_READ),
    Action.BACKUP_READ: (_owner_or_admin, Scope.TRANSFERS_READ),
    Action.BACKUP_REGISTER: (_member, Scope.TRANSFERS_WRITE),
    Action.BACKUP_REVOKE: (_owner_or_admin, Scope.TRANSFERS_WRITE),
    Action.BACKUP_MAINTAIN: (_admin, Scope.ADMIN),
}

#: Actions open to a user who still owes a second factor.
_BEFORE_SECOND_FACTOR = frozenset(
    {Action.ACCOUNT_READ, Action.FACTOR_READ, Action.FACTOR_MANAGE, Action.SESSION_MANAGE}
)
#: SEC-17: actions that need a recent sign-in (step-up re-authentication).
#: Minting a token is one too: a token outlives the session that made it.
STEP_UP = frozenset({Action.FACTOR_MANAGE, Action.TRANSFER_DELETE, Action.AUDIT_EXPORT,
                     Action.TOKEN_MANAGE, Action.BACKUP_MAINTAIN, Action.PASSWORD_CHANGE})


def allowed(actor: Actor, action: Action, target: Target | None = None) -> bool:
    """The decision alone (for the matrix tests and for filtering lists)."""
    try:
        authorize(actor, action, target)
    except (NotFound, PermissionDenied, AuthenticationRequired):
        return False
    return True


#: Rules that can be decided without the object (the rest need it).
_OBJECT_FREE = frozenset({_member, _admin, _own_account})


def check_route(actor: Actor, action: Action) -> None:
    """What can be checked before loading the object: the role for
    organisation-wide actions, the scope, the second factor, step-up."""
    policy = _POLICIES.get(action)
    if policy is None:
        raise PermissionDenied("this action is not allowed")
    rule, _ = policy
    if rule in _OBJECT_FREE:
        authorize(actor, action)
    else:
        _requirements(actor, action, policy[1])


def authorize(actor: Actor, action: Action, target: Target | None = None, *,
              missing: str = "not found") -> None:
    """Raise unless ``actor`` may perform ``action`` on ``target``.

    ``missing`` is the message an unknown id gets, so that a hidden object
    answers exactly like a missing one."""
    policy = _POLICIES.get(action)
    if policy is None:  # an action nobody wrote a rule for: nobody may
        raise PermissionDenied("this action is not allowed")
    rule, scope = policy
    if target is not None and target.organisation_id != actor.organisation_id:
        raise NotFound(missing, access_denied=True)
    if not rule(actor, target):
        if target is not None:
            raise NotFound(missing, access_denied=True)
        raise PermissionDenied("your role does not allow this", reason="role")
    _requirements(actor, action, scope)


def _requirements(actor: Actor, action: Action, scope: Scope | None) -> None:
    if actor.mfa_required and not actor.mfa and action not in _BEFORE_SECOND_FACTOR:
        raise PermissionDenied(
            "enrol a second factor (TOTP or passkey) and sign in with it first",
            reason="second_factor_required",
        )
    if scope is not None:
        actor.require(scope)
    if action in STEP_UP and not actor.stepped_up:
        raise AuthenticationRequired(
            "confirm your identity again (password and second factor) to do this",
            reason="reauthentication_required",
        )
