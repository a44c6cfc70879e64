"""The policy table, written out by hand (SEC-7): deny by default, other
organisations' objects do not exist, administrators need a second factor,
scopes bound tokens, step-up guards deletions, exports and factor changes."""

from __future__ import annotations

import pytest

from coffre.domain.accounts import ALL_SCOPES, Actor, Role, Scope
from coffre.domain.policy import Action, Target, allowed, authorize, check_route
from coffre.errors import AuthenticationRequired, NotFound, PermissionDenied

ORG, OTHER = "org-a", "org-b"
RW = frozenset({Scope.TRANSFERS_READ, Scope.TRANSFERS_WRITE})


def actor(user: str = "alice", org: str = ORG, role: Role = Role.MEMBER,
          scopes: frozenset[Scope] = RW, *, mfa: bool = True, fresh: bool = True) -> Actor:
    return Actor(user, org, role, scopes, mfa=mfa, mfa_required=role is Role.ADMIN,
                 stepped_up=fresh)


ADMIN = actor("root", role=Role.ADMIN, scopes=ALL_SCOPES)
OWNER = actor("alice")
COLLEAGUE = actor("bob")
OUTSIDER = actor("eve", OTHER, Role.ADMIN, ALL_SCOPES)
MINE = Target(ORG, "alice")

# action -> who may act on alice's object (or organisation-wide if None)
EXPECTED: dict[Action, tuple[Target | None, set[str]]] = {
    Action.ACCOUNT_READ: (None, {"admin", "owner", "colleague", "outsider"}),
    Action.FACTOR_READ: (MINE, {"owner"}),
    Action.FACTOR_MANAGE: (MINE, {"owner"}),
    Action.SESSION_MANAGE: (MINE, {"owner"}),
    Action.TOKEN_MANAGE: (MINE, {"owner"}),
    Action.PASSWORD_CHANGE: (MINE, {"owner"}),
    Action.UPLOAD_WRITE: (MINE, {"owner"}),
    Action.TRANSFER_CREATE: (None, {"admin", "owner", "colleague", "outsider"}),
    Action.TRANSFER_LIST: (None, {"admin", "owner", "colleague", "outsider"}),
    Action.USAGE_READ: (None, {"admin", "owner", "colleague", "outsider"}),
    Action.TRANSFER_READ: (MINE, {"admin", "owner"}),
    Action.TRANSFER_MANAGE: (MINE, {"admin", "owner"}),
    Action.TRANSFER_HOLD: (MINE, {"admin"}),
    Action.TRANSFER_DELETE: (MINE, {"admin", "owner"}),
    Action.TRANSFER_DOWNLOAD: (MINE, {"owner"}),
    Action.TRANSFER_FORWARD: (MINE, {"owner"}),
    Action.REQUEST_CREATE: (None, {"admin", "owner", "colleague", "outsider"}),
    Action.REQUEST_READ: (MINE, {"admin", "owner"}),
    Action.REQUEST_CLOSE: (MINE, {"admin", "owner"}),
    Action.MEMBER_LIST: (None, {"admin", "outsider"}),
    Action.MEMBER_INVITE: (None, {"admin", "outsider"}),
    Action.MEMBER_MANAGE: (Target(ORG, "bob"), {"admin"}),
    Action.ORGANISATION_MANAGE: (None, {"admin", "outsider"}),
    Action.AUDIT_READ: (None, {"admin", "outsider"}),
    Action.AUDIT_EXPORT: (None, {"admin", "outsider"}),
    Action.CONTACT_READ: (MINE, {"owner"}),
    Action.CONTACT_WRITE: (MINE, {"owner"}),
    Action.DIRECTORY_MANAGE: (None, {"admin", "outsider"}),
    Action.BACKUP_LIST: (None, {"admin", "owner", "colleague", "outsider"}),
    Action.BACKUP_READ: (MINE, {"admin", "owner"}),
    Action.BACKUP_REGISTER: (None, {"admin", "owner", "colleague", "outsider"}),
    Action.BACKUP_REVOKE: (MINE, {"admin", "owner"}),
    Action.BACKUP_MAINTAIN: (MINE, {"admin"}),
}
WHO = {"admin": ADMIN, "owner": OWNER, "colleague": COLLEAGUE, "outsider": OUTSIDER}


def test_every_action_has_an_expectation() -> None:
    assert set(EXPECTED) == set(Action)


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("who", list(WHO))
def test_table(action: Action, who: str) -> None:
    target, allowed_for = EXPECTED[action]
    assert allowed(WHO[who], action, target) is (who in allowed_for)


def test_other_organisations_objects_do_not_exist() -> None:
    with pytest.raises(NotFound):
        authorize(OUTSIDER, Action.TRANSFER_READ, MINE)
    with pytest.raises(NotFound):
        authorize(COLLEAGUE, Action.TRANSFER_READ, MINE)  # a colleague's: hidden too


def test_administrators_need_a_second_factor() -> None:
    bare = actor("root", role=Role.ADMIN, scopes=ALL_SCOPES, mfa=False)
    with pytest.raises(PermissionDenied) as denied:
        check_route(bare, Action.TRANSFER_LIST)
    assert denied.value.details["reason"] == "second_factor_required"
    for action in (Action.ACCOUNT_READ, Action.FACTOR_MANAGE, Action.SESSION_MANAGE):
        check_route(bare, action)  # enough to enrol one


def test_scopes_bound_tokens() -> None:
    reader = actor(scopes=frozenset({Scope.TRANSFERS_READ}))
    assert allowed(reader, Action.TRANSFER_READ, MINE)
    assert not allowed(reader, Action.TRANSFER_MANAGE, MINE)
    assert not allowed(reader, Action.TOKEN_MANAGE, MINE)
    admin_without_scope = actor("root", role=Role.ADMIN, scopes=RW)
    assert not allowed(admin_without_scope, Action.MEMBER_LIST)


@pytest.mark.parametrize("action", [Action.TRANSFER_DELETE, Action.AUDIT_EXPORT,
                                    Action.FACTOR_MANAGE, Action.TOKEN_MANAGE,
                                    Action.BACKUP_MAINTAIN])
def test_step_up_before_deletions_exports_and_factor_changes(action: Action) -> None:
    """SEC-17."""
    stale = actor("root", role=Role.ADMIN, scopes=ALL_SCOPES, fresh=False)
    target = Target(ORG, "root")
    with pytest.raises(AuthenticationRequired) as needed:
        authorize(stale, action, target)
    assert needed.value.details["reason"] == "reauthentication_required"
    authorize(actor("root", role=Role.ADMIN, scopes=ALL_SCOPES), action, target)


def test_the_organisation_directory_is_read_by_all_members_written_by_administrators() -> None:
    directory = Target(ORG, None)
    for who in (ADMIN, OWNER, COLLEAGUE):
        assert allowed(who, Action.CONTACT_READ, directory)
    assert not allowed(OUTSIDER, Action.CONTACT_READ, directory)
    assert not allowed(OWNER, Action.CONTACT_WRITE, directory)
    assert allowed(ADMIN, Action.DIRECTORY_MANAGE, directory)
    assert not allowed(OWNER, Action.DIRECTORY_MANAGE, directory)
