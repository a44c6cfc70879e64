"""Organisations, members and invitations against a real server, with the
invitation mail caught by a real SMTP server (aiosmtpd).

SEC-7 (isolation, least privilege), SEC-12 (password policy on joining),
SEC-16 (disabling or an administrator ends sessions and tokens at once),
SEC-27 (invitation links kept out of logs, caches and referrers), SEC-29
(one complete audit event per action), SEC-30 (no token or password in
the trail).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from coffre.crypto import credentials
from coffre.db.tables import ApiToken, UserSession
from tests.backends import ago
from tests.conftest import ADMIN_EMAIL, MailCatcher, Server, login, running_server, started_mail
from tests.integration.flows import audit_events, sql
from tests.integration.support import (
    api_client,
    assert_error,
    events_for,
    in_process,
    me,
    new_address,
    one_event,
    other_organisation_admin,
    send,
)

ADMIN_SCOPES = ["transfers:read", "transfers:write", "admin"]
MEMBER_PASSWORD = "une phrase de passe de membre"
_INVITATION_LINK = re.compile(r"(https?://\S+/invitation/)([A-Za-z0-9_-]{43})")


@pytest.fixture(scope="module")
def mail() -> Iterator[MailCatcher]:
    with started_mail() as catcher:
        yield catcher


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mail: MailCatcher) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("members"), mail) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    """The administrator, with a token that holds the admin scope."""
    with api_client(server, login(server.url, scopes=ADMIN_SCOPES)) as c:
        yield c


@pytest.fixture(scope="module")
def admin(client: httpx.Client) -> dict[str, Any]:
    return me(client)


def invite(client: httpx.Client, email: str, role: str = "member") -> dict[str, Any]:
    response = client.post("/api/v1/invitations", json={"email": email, "role": role})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def invitation_link(mail: MailCatcher, address: str) -> tuple[str, str]:
    """The link mailed to ``address`` and its token."""
    for msg in mail.to(address):
        body = msg.get_body(preferencelist=("plain",))
        assert body is not None
        match = _INVITATION_LINK.search(body.get_content())
        if match:
            assert msg["Subject"].startswith("[Coffre] Invitation à rejoindre")
            return match.group(0), match.group(2)
    raise AssertionError(f"no invitation mailed to {address}")


def accept(server: Server, token: str, password: str = MEMBER_PASSWORD,
           display_name: str = "Dr Membre") -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/invitations/accept", timeout=30,
                      json={"token": token, "password": password, "display_name": display_name})


def join(server: Server, client: httpx.Client, mail: MailCatcher,
         role: str = "member") -> dict[str, Any]:
    """A new member, invited and joined: email, id, token."""
    email = new_address("membre")
    invite(client, email, role)
    _, token = invitation_link(mail, email)
    accepted = accept(server, token)
    assert accepted.status_code == 201, accepted.text
    return {"email": email, "id": accepted.json()["id"],
            "token": login(server.url, email, MEMBER_PASSWORD)}


def open_session(server: Server, user_id: str) -> str:
    """A browser session row for ``user_id`` (as the login page would make)."""
    app = in_process(server)
    try:
        now = app.clock.now()
        with app.db.session() as session:
            row = UserSession(token_hash=credentials.hash_token(credentials.new_token()),
                              user_id=user_id, created_at=now, last_seen_at=now,
                              auth_time=now, expires_at=now + timedelta(hours=1),
                              csrf_hash=credentials.hash_token(credentials.new_token()))
            session.add(row)
            session.flush()
            return row.id
    finally:
        app.close()


def session_ended(server: Server, session_id: str) -> bool:
    return sql(server.data_dir, "SELECT ended_at FROM user_sessions WHERE id = ?",
               session_id)[0][0] is not None


def live_tokens(server: Server, user_id: str) -> int:
    app = in_process(server)
    try:
        with app.db.session() as session:
            return len([t for t in session.query(ApiToken).filter_by(user_id=user_id)
                        if t.revoked_at is None])
    finally:
        app.close()


# -- invitations ------------------------------------------------------------------


def test_invited_member_joins_logs_in_and_sends(server: Server, client: httpx.Client,
                                                mail: MailCatcher,
                                                admin: dict[str, Any]) -> None:
    """SEC-29/30: invitation.created and invitation.accepted, never the token."""
    email = new_address("confrere")
    created = invite(client, email)
    assert created["email"] == email and created["role"] == "member"
    assert "token" not in created
    assert created["id"] in [i["id"] for i in client.get("/api/v1/invitations").json()]
    link, token = invitation_link(mail, email)
    assert link.startswith(f"{server.url}/invitation/")

    joined = accept(server, token, display_name="Dr Confrère")
    assert joined.status_code == 201, joined.text
    user = joined.json()
    assert (user["email"], user["role"], user["display_name"]) == (
        email, "member", "Dr Confrère")
    assert user["organisation_id"] == admin["organisation_id"]

    member_token = login(server.url, email, MEMBER_PASSWORD)
    with api_client(server, member_token) as member:
        assert me(member)["id"] == user["id"]
        transfer, _ = send(member, {"résultats.pdf": b"%PDF-1.7 contenu"})
        assert transfer["status"] == "active"

    org = admin["organisation_id"]
    secrets = (token, MEMBER_PASSWORD)
    one_event(server.data_dir, "invitation.created", object_type="invitation",
              object_id=created["id"], organisation=org, actor=admin["id"], secrets=secrets)
    accepted = one_event(server.data_dir, "invitation.accepted", object_type="invitation",
                         object_id=created["id"], organisation=org, actor=user["id"],
                         secrets=secrets)
    assert accepted["details"]["role"] == "member"
    assert created["id"] not in [i["id"] for i in client.get("/api/v1/invitations").json()]
    listed = {m["email"]: m for m in client.get("/api/v1/members").json()}
    assert listed[email]["display_name"] == "Dr Confrère"
    assert listed[email]["last_active_at"] is not None
    assert listed[email]["second_factor"] is False
    assert token not in server.log()


def test_an_invitation_works_once(server: Server, client: httpx.Client, mail: MailCatcher,
                                  admin: dict[str, Any]) -> None:
    """Single use: a second acceptance is 410 and recorded as refused (SEC-29)."""
    email = new_address("unique")
    created = invite(client, email)
    _, token = invitation_link(mail, email)
    assert accept(server, token).status_code == 201
    again = accept(server, token, password="un autre mot de passe")
    assert_error(again, 410, "gone", {"reason": "invitation_used"})
    refused = one_event(server.data_dir, "invitation.refused", object_type="invitation",
                        object_id=created["id"], organisation=admin["organisation_id"],
                        actor=None, outcome="failure", secrets=(token,))
    assert refused["details"]["reason"] == "invitation_used"
    # the first password still works, the second was never set
    login(server.url, email, MEMBER_PASSWORD)


def test_expired_revoked_and_unknown_invitations(server: Server, client: httpx.Client,
                                                 mail: MailCatcher,
                                                 admin: dict[str, Any]) -> None:
    org = admin["organisation_id"]
    late = new_address("tardif")
    expired = invite(client, late)
    _, expired_token = invitation_link(mail, late)
    sql(server.data_dir, "UPDATE invitations SET expires_at = ? WHERE id = ?",
        ago(minutes=1), expired["id"])
    assert expired["id"] not in [i["id"] for i in client.get("/api/v1/invitations").json()]
    assert_error(accept(server, expired_token), 410, "gone", {"reason": "invitation_expired"})
    one_event(server.data_dir, "invitation.refused", object_type="invitation",
              object_id=expired["id"], organisation=org, actor=None, outcome="failure")

    cancelled = new_address("annule")
    revoked = invite(client, cancelled)
    _, revoked_token = invitation_link(mail, cancelled)
    assert client.delete(f"/api/v1/invitations/{revoked['id']}").status_code == 204
    one_event(server.data_dir, "invitation.revoked", object_type="invitation",
              object_id=revoked["id"], organisation=org, actor=admin["id"])
    assert_error(accept(server, revoked_token), 410, "gone", {"reason": "invitation_revoked"})
    assert_error(client.delete(f"/api/v1/invitations/{revoked['id']}"), 410, "gone")
    assert len(events_for(server.data_dir, "invitation.revoked", revoked["id"])) == 1

    before = len(audit_events(server.data_dir, "invitation.refused"))
    assert_error(accept(server, credentials.new_token()), 404, "not_found")
    refused = audit_events(server.data_dir, "invitation.refused")[before:]
    assert len(refused) == 1
    assert refused[0]["object"] is None and refused[0]["outcome"] == "failure"
    assert refused[0]["details"]["reason"] == "unknown"
    for address in (late, cancelled):
        assert httpx.post(f"{server.url}/api/v1/auth/token", timeout=30, json={
            "email": address, "password": MEMBER_PASSWORD}).status_code == 401


def test_invitation_input_is_checked(server: Server, client: httpx.Client,
                                     mail: MailCatcher) -> None:
    """SEC-12 on joining; existing users and duplicate invitations are 409."""
    assert_error(client.post("/api/v1/invitations", json={"email": ADMIN_EMAIL}),
                 409, "conflict", {"field": "email"})
    email = new_address("double")
    invite(client, email)
    assert_error(client.post("/api/v1/invitations", json={"email": email}), 409, "conflict")
    assert client.post("/api/v1/invitations",
                       json={"email": new_address(), "role": "root"}).status_code == 400
    assert client.post("/api/v1/invitations", json={"email": "pas une adresse"}).status_code == 400
    _, token = invitation_link(mail, email)
    weak = accept(server, token, password="court")
    assert_error(weak, 400, "invalid_input")
    assert weak.json()["error"]["details"]["field"] == "password"
    assert accept(server, token).status_code == 201  # a refused password does not use it up


def test_invitation_page_in_french(server: Server, client: httpx.Client, mail: MailCatcher,
                                   admin: dict[str, Any]) -> None:
    """SEC-27: the link's token is redacted from the access log, the page is
    neither cached nor sent as a referrer; the form creates the account."""
    email = new_address("web")
    created = invite(client, email, "admin")
    link, token = invitation_link(mail, email)
    page = httpx.get(link)
    assert page.status_code == 200
    assert "Rejoindre Cabinet Exemple" in page.text and "administrateur" in page.text
    assert email in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"

    form = {"display_name": "Dr Web", "password": "court"}
    weak = httpx.post(link, data=form)
    assert weak.status_code == 400
    assert "12 et 256 caractères" in weak.text
    done = httpx.post(link, data={**form, "password": MEMBER_PASSWORD})
    assert done.status_code == 200, done.text
    assert "Bienvenue sur Coffre" in done.text
    assert done.headers["cache-control"] == "no-store"
    with api_client(server, login(server.url, email, MEMBER_PASSWORD)) as new_admin:
        assert me(new_admin)["role"] == "admin"

    used = httpx.get(link)
    assert used.status_code == 410
    assert "Invitation déjà utilisée" in used.text
    one_event(server.data_dir, "invitation.accepted", object_type="invitation",
              object_id=created["id"], organisation=admin["organisation_id"],
              actor=me(api_client(server, login(server.url, email, MEMBER_PASSWORD)))["id"])
    access = [line for line in server.log().splitlines() if "coffre.access" in line]
    assert any("/invitation/[redacted]" in line for line in access)
    assert token not in server.log()
    listed = {m["email"]: m for m in client.get("/api/v1/members").json()}
    assert listed[email]["role"] == "admin"
    assert listed[email]["second_factor"] is True  # administrators enrol one (SEC-9)
    # back to a single enabled administrator for the other tests
    new_id = listed[email]["id"]
    assert client.patch(f"/api/v1/members/{new_id}", json={"disabled": True}).status_code == 200


# -- members ----------------------------------------------------------------------


def test_disabling_a_member_ends_their_token_and_sessions_at_once(
        server: Server, client: httpx.Client, mail: MailCatcher,
        admin: dict[str, Any]) -> None:
    """SEC-16: the member's very next request is refused."""
    member = join(server, client, mail)
    other_token = login(server.url, member["email"], MEMBER_PASSWORD)
    session_id = open_session(server, member["id"])
    tokens = live_tokens(server, member["id"])
    assert tokens >= 2
    with api_client(server, member["token"]) as as_member:
        assert as_member.get("/api/v1/me").status_code == 200
        changed = client.patch(f"/api/v1/members/{member['id']}", json={"disabled": True})
        assert changed.status_code == 200, changed.text
        assert changed.json()["disabled"] is True
        assert_error(as_member.get("/api/v1/me"), 401, "authentication_required")
    assert httpx.get(f"{server.url}/api/v1/transfers", headers={
        "Authorization": f"Bearer {other_token}"}).status_code == 401
    assert session_ended(server, session_id)
    assert live_tokens(server, member["id"]) == 0
    event = one_event(server.data_dir, "member.disabled", object_type="user",
                      object_id=member["id"], organisation=admin["organisation_id"],
                      actor=admin["id"], secrets=(member["token"], other_token))
    assert event["details"] == {"sessions_ended": 1, "tokens_revoked": tokens}
    assert httpx.post(f"{server.url}/api/v1/auth/token", timeout=30, json={
        "email": member["email"], "password": MEMBER_PASSWORD}).status_code == 401
    listed = {m["id"]: m for m in client.get("/api/v1/members").json()}
    assert listed[member["id"]]["disabled"] is True

    # disabling twice changes nothing and records nothing
    assert client.patch(f"/api/v1/members/{member['id']}", json={"disabled": True}).json()[
        "disabled"] is True
    assert len(events_for(server.data_dir, "member.disabled", member["id"])) == 1

    enabled = client.patch(f"/api/v1/members/{member['id']}", json={"disabled": False})
    assert enabled.json()["disabled"] is False
    one_event(server.data_dir, "member.enabled", object_type="user", object_id=member["id"],
              organisation=admin["organisation_id"], actor=admin["id"])
    assert httpx.get(f"{server.url}/api/v1/me", headers={
        "Authorization": f"Bearer {member['token']}"}).status_code == 401  # tokens stay revoked
    assert httpx.post(f"{server.url}/api/v1/auth/token", timeout=30, json={
        "email": member["email"], "password": MEMBER_PASSWORD}).status_code == 201


def test_an_administrator_ends_a_members_sessions(server: Server, client: httpx.Client,
                                                  mail: MailCatcher,
                                                  admin: dict[str, Any]) -> None:
    """SEC-16: "kill sessions" ends every browser session, now."""
    member = join(server, client, mail)
    sessions = [open_session(server, member["id"]) for _ in range(2)]
    ended = client.delete(f"/api/v1/members/{member['id']}/sessions")
    assert ended.status_code == 200, ended.text
    assert ended.json() == {"sessions_ended": 2}
    assert all(session_ended(server, s) for s in sessions)
    event = one_event(server.data_dir, "member.sessions_ended", object_type="user",
                      object_id=member["id"], organisation=admin["organisation_id"],
                      actor=admin["id"])
    assert event["details"] == {"sessions_ended": 2}


def test_roles_change_but_an_enabled_administrator_always_remains(
        server: Server, client: httpx.Client, mail: MailCatcher,
        admin: dict[str, Any]) -> None:
    """SEC-29: member.role_changed with before and after; refusals change nothing."""
    org = admin["organisation_id"]
    member = join(server, client, mail)
    url = f"/api/v1/members/{member['id']}"
    promoted = client.patch(url, json={"role": "admin"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    changed = one_event(server.data_dir, "member.role_changed", object_type="user",
                        object_id=member["id"], organisation=org, actor=admin["id"])
    assert changed["details"] == {"before": "member", "after": "admin"}
    assert client.patch(url, json={"role": "admin"}).status_code == 200  # no change, no event
    assert len(events_for(server.data_dir, "member.role_changed", member["id"])) == 1

    own = f"/api/v1/members/{admin['id']}"
    assert_error(client.patch(own, json={"disabled": True}), 409, "conflict")
    # the other administrator is disabled: I am the last enabled one
    assert client.patch(url, json={"disabled": True}).status_code == 200
    assert_error(client.patch(own, json={"role": "member"}), 409, "conflict",
                 {"reason": "last_administrator"})
    assert me(client)["role"] == "admin"
    assert events_for(server.data_dir, "member.role_changed", admin["id"]) == []
    assert client.patch(url, json={"disabled": False, "role": "member"}).status_code == 200
    assert len(events_for(server.data_dir, "member.role_changed", member["id"])) == 2
    assert client.patch(url, json={"role": "owner"}).status_code == 400


def test_a_member_cannot_administer(server: Server, client: httpx.Client, mail: MailCatcher,
                                    admin: dict[str, Any]) -> None:
    """SEC-7: 403 before any lookup (the same answer for any id, so it
    reveals nothing); the organisation's policy is readable by all."""
    member = join(server, client, mail)
    with api_client(server, member["token"]) as as_member:
        for response in (as_member.get("/api/v1/members"),
                         as_member.get("/api/v1/invitations"),
                         as_member.post("/api/v1/invitations", json={"email": new_address()}),
                         as_member.patch("/api/v1/organisation", json={"require_mfa": True}),
                         as_member.patch(f"/api/v1/members/{admin['id']}",
                                         json={"disabled": True}),
                         as_member.patch(f"/api/v1/members/{member['id']}",
                                         json={"role": "admin"}),
                         as_member.patch("/api/v1/members/0123456789abcdef0123456789abcdef",
                                         json={"role": "admin"}),
                         as_member.delete(f"/api/v1/members/{admin['id']}/sessions")):
            assert_error(response, 403, "permission_denied", {"reason": "role"})
        organisation = as_member.get("/api/v1/organisation")
        assert organisation.status_code == 200
        assert organisation.json()["name"] == "Cabinet Exemple"
    assert me(client)["role"] == "admin"
    assert events_for(server.data_dir, "member.role_changed", member["id"]) == []
    # an administrator's token without the admin scope cannot either
    with api_client(server, login(server.url)) as unscoped:
        assert_error(unscoped.get("/api/v1/members"), 403, "permission_denied",
                     {"scope": "admin"})


def test_other_organisations_members_and_invitations_do_not_exist(
        server: Server, client: httpx.Client, mail: MailCatcher) -> None:
    """SEC-7: another organisation's administrator sees 404, never data."""
    member = join(server, client, mail)
    pending = invite(client, new_address("attente"))
    other_organisation_admin(server, "admin@autre-cabinet.fr", "une autre phrase de passe")
    other_token = login(server.url, "admin@autre-cabinet.fr", "une autre phrase de passe",
                        scopes=ADMIN_SCOPES)
    with api_client(server, other_token) as other:
        emails = [m["email"] for m in other.get("/api/v1/members").json()]
        assert emails == ["admin@autre-cabinet.fr"]
        assert other.get("/api/v1/invitations").json() == []
        assert other.get("/api/v1/organisation").json()["name"] == "Autre Cabinet"
        for response in (
            other.patch(f"/api/v1/members/{member['id']}", json={"disabled": True}),
            other.patch(f"/api/v1/members/{member['id']}", json={"role": "admin"}),
            other.delete(f"/api/v1/members/{member['id']}/sessions"),
            other.delete(f"/api/v1/invitations/{pending['id']}"),
            other.patch("/api/v1/members/0123456789abcdef0123456789abcdef",
                        json={"disabled": True}),
            other.delete("/api/v1/invitations/0123456789abcdef0123456789abcdef"),
        ):
            assert_error(response, 404, "not_found")
    with api_client(server, member["token"]) as as_member:
        assert as_member.get("/api/v1/me").status_code == 200
    assert pending["id"] in [i["id"] for i in client.get("/api/v1/invitations").json()]
    assert events_for(server.data_dir, "member.disabled", member["id"]) == []


# -- organisation policy ----------------------------------------------------------


def test_organisation_policy_changes_are_audited(server: Server, client: httpx.Client,
                                                 admin: dict[str, Any]) -> None:
    """SEC-29: configuration changes, with before and after values."""
    org = admin["organisation_id"]
    shown = client.get("/api/v1/organisation").json()
    assert {k: v for k, v in shown.items() if k not in {"policy", "effective"}} == {
        "id": org, "name": "Cabinet Exemple", "require_mfa": False,
        "allow_unverified_recipients": False, "block_executables": True,
        "discreet_mail": False}
    changed = client.patch("/api/v1/organisation",
                           json={"allow_unverified_recipients": True, "name": "  Cabinet Neuf "})
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "Cabinet Neuf"
    assert changed.json()["allow_unverified_recipients"] is True
    event = one_event(server.data_dir, "organisation.policy_changed",
                      object_type="organisation", object_id=org, organisation=org,
                      actor=admin["id"])
    assert event["details"]["changes"] == {
        "allow_unverified_recipients": {"before": False, "after": True},
        "name": {"before": "Cabinet Exemple", "after": "Cabinet Neuf"},
    }
    # the same values again: nothing changes, nothing is recorded
    client.patch("/api/v1/organisation", json={"allow_unverified_recipients": True})
    assert len(events_for(server.data_dir, "organisation.policy_changed", org)) == 1
    assert client.patch("/api/v1/organisation", json={"name": "  "}).status_code == 400
    restored = client.patch("/api/v1/organisation", json={
        "allow_unverified_recipients": False, "name": "Cabinet Exemple"})
    assert restored.json()["allow_unverified_recipients"] is False
    assert len(events_for(server.data_dir, "organisation.policy_changed", org)) == 2


# -- CLI ----------------------------------------------------------------------------


def test_cli_members_and_organisation(server: Server, client: httpx.Client,
                                      mail: MailCatcher, tmp_path: Path) -> None:
    token = login(server.url, scopes=ADMIN_SCOPES)
    env = {"COFFRE_URL": server.url, "COFFRE_TOKEN": token, "COLUMNS": "250",
           "XDG_CONFIG_HOME": str(tmp_path / "config")}

    def coffre(*args: str) -> str:
        done = server.coffre(*args, env=env)
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    email = new_address("cli")
    assert f"Invitation envoyée à {email}" in coffre("members", "invite", email)
    invitation_link(mail, email)
    pending = coffre("members", "invitations")
    assert email in pending
    invitation_id = next(i["id"] for i in client.get("/api/v1/invitations").json()
                         if i["email"] == email)
    assert "Invitation annulée" in coffre("members", "uninvite", invitation_id)

    member = join(server, client, mail)
    listing = coffre("members")
    assert member["email"] in listing and "membre" in listing and "actif" in listing
    assert "administrateur" in coffre("members", "role", member["id"], "admin")
    assert "membre" in coffre("members", "role", member["id"], "member")
    assert "désactivé" in coffre("members", "disable", member["id"])
    assert "actif" in coffre("members", "enable", member["id"])
    assert "Sessions terminées : 0" in coffre("members", "end-sessions", member["id"])
    shown = coffre("organisation", "show")
    assert "Cabinet Exemple" in shown and "second facteur exigé pour tous" in shown
    assert "oui" in coffre("organisation", "set", "--allow-unverified-recipients")
    assert client.get("/api/v1/organisation").json()["allow_unverified_recipients"] is True
    coffre("organisation", "set", "--no-allow-unverified-recipients")
    refused = server.coffre("members", "disable", "0123456789abcdef0123456789abcdef", env=env)
    assert refused.returncode == 1
    assert "Erreur" in refused.stderr
