"""Passwords: a user's own change after step-up, the forgotten-password
reset by a mailed single-use link, the reset an administrator forces, and
the breached-password list (SEC-12), against a real server whose mail goes
to a real SMTP catcher (and, where time must move, a frozen clock)."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from coffre.bootstrap import Coffre
from coffre.clock import FrozenClock
from coffre.db.tables import User
from coffre.domain.accounts import Role
from tests.backends import ago
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, MailCatcher, Server, login, second_factor
from tests.integration.flows import audit_events, sql
from tests.integration.support import assert_error, in_process, new_address
from tests.integration.test_auth import (  # noqa: F401 - ``frozen`` is a fixture
    PASSWORD,
    AsgiClient,
    Browser,
    browser,
    frozen,
    new_user,
)

NEW_PASSWORD = "un tout nouveau mot de passe bien long"
#: In the shipped breached list (and 12 characters long: only the list refuses it).
BREACHED = "1qaz2wsx3edc"
_RESET_LINK = re.compile(r"(https?://\S+)/password/reset/([A-Za-z0-9_-]+)")
BREACHED_FR = "fuites de données"


def reset_links(mail: MailCatcher, address: str, count: int = 1,
                timeout: float = 15) -> list[tuple[str, str]]:
    """The reset links mailed to ``address`` (base URL, token), oldest first."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for msg in mail.to(address, timeout=0):
            if msg["Subject"] != "[Coffre] Nouveau mot de passe":
                continue
            body = msg.get_body(preferencelist=("plain",))
            assert body is not None
            match = _RESET_LINK.search(body.get_content())
            assert match, body.get_content()
            found.append((match.group(1), match.group(2)))
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def token_for(server: Server, email: str, password: str = PASSWORD,
              code: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"email": email, "password": password, "token_name": "tests"}
    if code:
        body["code"] = code
    return httpx.post(f"{server.url}/api/v1/auth/token", json=body, timeout=30)


def bearer(server: Server, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                        timeout=30)


def from_source(server: Server, source: str) -> httpx.Client:
    """A client whose requests come from another loopback address."""
    return httpx.Client(base_url=server.url, timeout=30,
                        transport=httpx.HTTPTransport(local_address=source))


def user_id(server: Server, email: str) -> str:
    rows = sql(server.data_dir, "SELECT id FROM users WHERE email = ?", email)
    return str(rows[0][0])


def events(server: Server, action: str, object_id: str | None = None) -> list[dict[str, Any]]:
    found = audit_events(server.data_dir, action)
    return [e for e in found
            if object_id is None or (e.get("object") or {}).get("id") == object_id]


def page_form(b: Browser, path: str, **fields: str) -> httpx.Response:
    """A page's form, posted as a browser does (no JSON, our Origin)."""
    return b.call("POST", path, data=fields)


# -- change ---------------------------------------------------------------------------


def test_change_needs_the_current_password_and_ends_other_sessions_and_tokens(
    server: Server, mail: MailCatcher,
) -> None:
    email = new_user(server)
    uid = user_id(server, email)
    here, elsewhere = browser(server), browser(server)
    here.login(email)
    elsewhere.login(email)
    old_tokens = [token_for(server, email).json()["token"] for _ in range(2)]
    for token in old_tokens:
        with bearer(server, token) as c:
            assert c.get("/api/v1/me").status_code == 200

    wrong = here.call("POST", "/api/v1/account/password",
                      json={"current_password": "pas le bon mot de passe",
                            "new_password": NEW_PASSWORD})
    assert_error(wrong, 401, "authentication_required")
    breached = here.call("POST", "/api/v1/account/password",
                         json={"current_password": PASSWORD, "new_password": BREACHED.upper()})
    assert_error(breached, 400, "invalid_input")
    assert breached.json()["error"]["details"]["reason"] == "breached_password"
    done = here.call("POST", "/api/v1/account/password",
                     json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert done.status_code == 204, done.text

    # This session goes on; the other one and every token have ended.
    assert here.call("GET", "/api/v1/me").status_code == 200
    assert elsewhere.call("GET", "/api/v1/me").status_code == 401
    for token in old_tokens:
        with bearer(server, token) as c:
            assert c.get("/api/v1/me").status_code == 401
    assert token_for(server, email).status_code == 401  # the old password
    assert token_for(server, email, NEW_PASSWORD).status_code == 201

    [changed] = events(server, "password.changed", uid)
    assert changed["actor"] == uid
    assert changed["details"] == {"sessions_ended": 1, "tokens_revoked": 2}
    assert len(events(server, "password.check.failed", uid)) == 1
    raw = str(audit_events(server.data_dir))
    assert NEW_PASSWORD not in raw and PASSWORD not in raw
    notices = [m for m in mail.to(email) if "Sécurité" in str(m["Subject"])]
    assert notices and "mot de passe" in notices[0].get_body(
        preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


def test_change_with_a_token_keeps_that_token_only(server: Server) -> None:
    email = new_user(server)
    kept, other = (token_for(server, email).json()["token"] for _ in range(2))
    session = browser(server)
    session.login(email)
    with bearer(server, kept) as c:
        done = c.post("/api/v1/account/password",
                      json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
        assert done.status_code == 204, done.text
        assert c.get("/api/v1/me").status_code == 200
    with bearer(server, other) as c:
        assert c.get("/api/v1/me").status_code == 401
    assert session.call("GET", "/api/v1/me").status_code == 401


def test_change_needs_a_recent_sign_in(
    frozen: tuple[Coffre, FrozenClock, AsgiClient],  # noqa: F811
) -> None:
    app, clock, client = frozen
    b = Browser(client, app.settings.base_url)
    b.login("membre@exemple.fr")
    clock.advance(timedelta(minutes=4))
    assert b.call("GET", "/api/v1/me").status_code == 200
    clock.advance(timedelta(minutes=4))
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    stale = b.call("POST", "/api/v1/account/password", json=body)
    assert stale.status_code == 401
    assert stale.json()["error"]["details"]["reason"] == "reauthentication_required"
    # The page sends the reader to confirm their identity, and back.
    page = b.call("GET", "/account/password")
    assert page.status_code == 303
    assert page.headers["location"] == "/reauth?next=/account/password"
    assert b.call("POST", "/api/v1/auth/reauth", json={"password": PASSWORD}).status_code == 200
    assert b.call("POST", "/api/v1/account/password", json=body).status_code == 204


def test_change_from_the_account_page(server: Server) -> None:
    email = new_user(server)
    b = browser(server)
    b.login(email)
    page = b.call("GET", "/account/password")
    assert page.status_code == 200
    assert "Changer mon mot de passe" in page.text
    differ = page_form(b, "/account/password", csrf_token=b.csrf or "",
                       current_password=PASSWORD, password=NEW_PASSWORD,
                       password_again=NEW_PASSWORD + "x")
    assert differ.status_code == 400
    assert "Les deux mots de passe diffèrent" in differ.text
    breached = page_form(b, "/account/password", csrf_token=b.csrf or "",
                         current_password=PASSWORD, password=BREACHED, password_again=BREACHED)
    assert breached.status_code == 400
    assert BREACHED_FR in breached.text
    done = page_form(b, "/account/password", csrf_token=b.csrf or "",
                     current_password=PASSWORD, password=NEW_PASSWORD,
                     password_again=NEW_PASSWORD)
    assert done.status_code == 303
    assert done.headers["location"] == "/account?done=password"
    assert "Votre mot de passe a été changé" in b.call("GET", "/account?done=password").text


# -- forgotten password ---------------------------------------------------------------------


def test_reset_by_mailed_link_keeps_the_second_factor_and_works_once(
    server: Server, mail: MailCatcher,
) -> None:
    email = new_user(server)
    uid = user_id(server, email)
    b = browser(server)
    b.login(email)
    _secret, recovery = b.enrol_totp()
    token = token_for(server, email, code=recovery.pop()).json()["token"]

    anonymous = Browser(httpx.Client(base_url=server.url, timeout=30), server.url)
    asked = page_form(anonymous, "/password/forgotten", email=email.upper())
    assert asked.status_code == 303
    assert asked.headers["location"] == "/password/forgotten?sent=1"
    [(base, secret)] = reset_links(mail, email)
    assert base == server.url  # a page, never the API
    assert len(secret) >= 43  # 256 bits
    link = f"/password/reset/{secret}"

    page = anonymous.call("GET", link)
    assert page.status_code == 200
    assert email in page.text and "Choisissez un nouveau mot de passe" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    breached = page_form(anonymous, link, password=BREACHED, password_again=BREACHED)
    assert breached.status_code == 400 and BREACHED_FR in breached.text
    short = page_form(anonymous, link, password="court", password_again="court")
    assert short.status_code == 400
    done = page_form(anonymous, link, password=NEW_PASSWORD, password_again=NEW_PASSWORD)
    assert done.status_code == 200, done.text
    assert "Mot de passe changé" in done.text

    # Every session and token ended; the factor is still there and still asked.
    assert b.call("GET", "/api/v1/me").status_code == 401
    with bearer(server, token) as c:
        assert c.get("/api/v1/me").status_code == 401
    assert token_for(server, email).status_code == 401  # old password
    factorless = token_for(server, email, NEW_PASSWORD)
    assert factorless.status_code == 401
    assert factorless.json()["error"]["details"]["reason"] == "second_factor_required"
    again = browser(server).login(email, NEW_PASSWORD)
    assert again["stage"] == "password" and "totp" in again["methods"]
    assert sql(server.data_dir, "SELECT COUNT(*) FROM second_factors WHERE user_id = ? "
               "AND confirmed_at IS NOT NULL", uid)[0][0] == 1

    # Single use: the page and the API refuse it now.
    used = anonymous.call("GET", link)
    assert used.status_code == 410 and "déjà servi" in used.text
    api = httpx.post(f"{server.url}/api/v1/auth/password-reset/complete", timeout=30,
                     json={"token": secret, "password": "encore un autre mot de passe"})
    assert_error(api, 410, "gone")
    assert token_for(server, email, "encore un autre mot de passe").status_code == 401

    [requested] = events(server, "password.reset_requested", uid)
    assert requested["outcome"] == "success" and requested["actor"] is None
    [mailed] = events(server, "password.reset_mailed")
    assert mailed["details"]["user"] == uid and mailed["details"]["reason"] == "forgotten"
    [used_event] = events(server, "password.reset_used", mailed["object"]["id"])
    assert used_event["actor"] == uid
    assert used_event["details"]["sessions_ended"] == 1
    assert used_event["details"]["tokens_revoked"] == 1
    # Two refusals of the used link from one source: one event at once, the
    # other folded into its window's count (the DenialLog).
    [refused] = events(server, "password.reset_invalid", mailed["object"]["id"])
    assert refused["outcome"] == "failure" and refused["details"]["state"] == "used"
    assert refused["details"]["status"] == 410
    raw = str(audit_events(server.data_dir))
    assert secret not in raw and NEW_PASSWORD not in raw
    assert secret not in server.log()  # the access log redacts the link


def test_unknown_address_gets_the_same_answer_and_no_mail(
    server: Server, mail: MailCatcher,
) -> None:
    known = new_user(server)
    unknown = new_address("inconnu")
    answers = [httpx.post(f"{server.url}/api/v1/auth/password-reset", json={"email": address},
                          timeout=30) for address in (unknown, known)]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].content == answers[1].content
    anonymous = Browser(httpx.Client(base_url=server.url, timeout=30), server.url)
    page = page_form(anonymous, "/password/forgotten", email=unknown)
    assert page.status_code == 303
    assert page.headers["location"] == "/password/forgotten?sent=1"
    assert reset_links(mail, known)  # the known address's mail has gone out...
    time.sleep(1)
    assert mail.to(unknown, timeout=0) == []  # ...and none to the unknown one
    refused = [e for e in events(server, "password.reset_requested")
               if e["outcome"] == "failure"]
    assert len(refused) == 2
    assert all(e["details"] == {"reason": "unknown_address"} for e in refused)
    assert unknown not in str(refused)


def test_expired_link_is_refused(server: Server, mail: MailCatcher) -> None:
    email = new_user(server)
    assert httpx.post(f"{server.url}/api/v1/auth/password-reset", json={"email": email},
                      timeout=30).status_code == 202
    [(_, secret)] = reset_links(mail, email)
    sql(server.data_dir, "UPDATE password_resets SET expires_at = ?", ago(minutes=1))
    page = httpx.get(f"{server.url}/password/reset/{secret}", timeout=30)
    assert page.status_code == 410 and "a expiré" in page.text
    api = httpx.post(f"{server.url}/api/v1/auth/password-reset/complete", timeout=30,
                     json={"token": secret, "password": NEW_PASSWORD})
    assert_error(api, 410, "gone")
    assert api.json()["error"]["details"]["reason"] == "reset_expired"
    assert token_for(server, email).status_code == 201  # the password is unchanged
    assert len(events(server, "password.reset_expired")) == 1  # the second is folded
    unknown = httpx.get(f"{server.url}/password/reset/{'x' * 43}", timeout=30)
    assert unknown.status_code == 404
    assert [e["outcome"] for e in events(server, "password.reset_invalid")] == ["failure"]


def age_reset_mail_limit(server: Server) -> None:
    """As if the address's last reset mail were over five minutes old."""
    sql(server.data_dir, "UPDATE throttles SET blocked_until = ? WHERE kind = ?",
        ago(minutes=1), "password_reset_mail")


def test_asking_again_mails_at_most_once_per_interval_and_voids_no_link(
    server: Server, mail: MailCatcher,
) -> None:
    """A stranger asking for the victim's reset again and again gets 202
    each time, mails nothing more within five minutes, and cancels no
    link: each unexpired link works until one is used, which revokes the
    others."""
    email = new_user(server)
    uid = user_id(server, email)
    answers = [httpx.post(f"{server.url}/api/v1/auth/password-reset", json={"email": email},
                          timeout=30) for _ in range(3)]
    assert [a.status_code for a in answers] == [202] * 3
    assert len(reset_links(mail, email, count=2, timeout=3)) == 1
    suppressed = events(server, "password.reset_suppressed", uid)
    assert len(suppressed) == 2
    assert all(e["outcome"] == "failure" and e["details"]["reason"] == "mail_interval"
               for e in suppressed)
    age_reset_mail_limit(server)
    assert httpx.post(f"{server.url}/api/v1/auth/password-reset", json={"email": email},
                      timeout=30).status_code == 202
    first, second = reset_links(mail, email, count=2)
    for link in (first, second):  # both still usable
        assert httpx.get(f"{server.url}/password/reset/{link[1]}", timeout=30).status_code == 200
    new = httpx.post(f"{server.url}/api/v1/auth/password-reset/complete", timeout=30,
                     json={"token": first[1], "password": NEW_PASSWORD})
    assert new.status_code == 204, new.text
    other = httpx.post(f"{server.url}/api/v1/auth/password-reset/complete", timeout=30,
                       json={"token": second[1], "password": NEW_PASSWORD + " bis"})
    assert_error(other, 410, "gone")  # using one revoked the other
    assert token_for(server, email, NEW_PASSWORD).status_code == 201


def test_a_strangers_requests_do_not_void_an_administrators_link(
    server: Server, mail: MailCatcher,
) -> None:
    email = new_user(server)
    admin_token = login(server.url, scopes=["transfers:read", "transfers:write", "admin"])
    with bearer(server, admin_token) as c:
        assert c.post(f"/api/v1/members/{user_id(server, email)}/password-reset"
                      ).status_code == 202
    [forced] = reset_links(mail, email)
    for _ in range(3):
        assert httpx.post(f"{server.url}/api/v1/auth/password-reset", json={"email": email},
                          timeout=30).status_code == 202
    assert len(reset_links(mail, email, count=3, timeout=3)) == 2  # one more mail at most
    done = httpx.post(f"{server.url}/api/v1/auth/password-reset/complete", timeout=30,
                      json={"token": forced[1], "password": NEW_PASSWORD})
    assert done.status_code == 204, done.text


def test_two_uses_at_once_one_wins(server: Server, mail: MailCatcher) -> None:
    from concurrent.futures import ThreadPoolExecutor

    email = new_user(server)
    assert httpx.post(f"{server.url}/api/v1/auth/password-reset", json={"email": email},
                      timeout=30).status_code == 202
    [(_, secret)] = reset_links(mail, email)
    choices = [f"{NEW_PASSWORD} {n}" for n in range(4)]

    def use(password: str) -> int:
        return httpx.post(f"{server.url}/api/v1/auth/password-reset/complete", timeout=60,
                          json={"token": secret, "password": password}).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(use, choices))
    assert sorted(statuses) == [204, 410, 410, 410]
    winner = choices[statuses.index(204)]
    assert token_for(server, email, winner).status_code == 201
    assert len(events(server, "password.reset_used")) == 1


def test_reset_requests_are_throttled_per_source_never_per_address(
    server: Server, mail: MailCatcher,
) -> None:
    """No address probing at speed from one source; and nothing a stranger
    does with an address changes its answer (always 202) or locks it."""
    victim = new_user(server)
    statuses = []
    for n in range(6):  # the same address from six sources
        with from_source(server, f"127.0.0.{n + 2}") as c:
            statuses.append(c.post("/api/v1/auth/password-reset",
                                   json={"email": victim}).status_code)
    assert statuses == [202] * 6
    assert len(reset_links(mail, victim, count=2, timeout=3)) == 1  # one mail per interval
    assert len(events(server, "password.reset_suppressed", user_id(server, victim))) == 5
    with from_source(server, "127.0.0.20") as c:  # one source, many addresses
        answers = [c.post("/api/v1/auth/password-reset", json={"email": new_address("sonde")})
                   for _ in range(4)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert_error(answers[-1], 429, "too_many_attempts")
    assert answers[-1].headers.get("retry-after")
    # The victim, from their own source, still gets a link once the interval is over.
    age_reset_mail_limit(server)
    with from_source(server, "127.0.0.30") as c:
        assert c.post("/api/v1/auth/password-reset", json={"email": victim}).status_code == 202
    assert len(reset_links(mail, victim, count=2)) == 2


# -- forced by an administrator ---------------------------------------------------------


def test_administrator_forces_a_reset(server: Server, mail: MailCatcher) -> None:
    email = new_user(server)
    uid = user_id(server, email)
    b = browser(server)
    b.login(email)
    member_token = token_for(server, email).json()["token"]
    with bearer(server, member_token) as c:  # a member may not
        assert_error(c.post(f"/api/v1/members/{uid}/password-reset"), 403,
                     "permission_denied")
    admin_token = login(server.url, scopes=["transfers:read", "transfers:write", "admin"])
    with bearer(server, admin_token) as c:
        admin_id = c.get("/api/v1/me").json()["id"]
        assert c.post(f"/api/v1/members/{uid}/password-reset").status_code == 202
        assert_error(c.post(f"/api/v1/members/{admin_id}/password-reset"), 409, "conflict")

    assert b.call("GET", "/api/v1/me").status_code == 401
    with bearer(server, member_token) as c:
        assert c.get("/api/v1/me").status_code == 401
    assert token_for(server, email).status_code == 401  # the old password stopped working
    [(_, secret)] = reset_links(mail, email)
    text = mail.to(email)[-1].get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "administrateur" in text
    done = httpx.post(f"{server.url}/api/v1/auth/password-reset/complete", timeout=30,
                      json={"token": secret, "password": NEW_PASSWORD})
    assert done.status_code == 204, done.text
    assert token_for(server, email, NEW_PASSWORD).status_code == 201

    [forced] = events(server, "password.reset_forced", uid)
    assert forced["actor"] == admin_id
    assert forced["details"] == {"sessions_ended": 1, "tokens_revoked": 1}
    [mailed] = events(server, "password.reset_mailed")
    assert mailed["actor"] == admin_id and mailed["details"]["reason"] == "forced"
    assert len(events(server, "password.reset_used", mailed["object"]["id"])) == 1


def test_administrator_forces_a_reset_from_the_members_page(server: Server,
                                                           mail: MailCatcher) -> None:
    email = new_user(server)
    uid = user_id(server, email)
    member = browser(server)
    member.login(email)
    code = second_factor(server.url)  # enrols the administrator's factor first
    admin = browser(server)
    assert admin.login(ADMIN_EMAIL, ADMIN_PASSWORD)["stage"] == "password"
    assert admin.call("POST", "/api/v1/auth/login/recovery",
                      json={"code": code}).status_code == 200
    members = admin.call("GET", "/admin")
    assert f'action="/admin/members/{uid}/password-reset"' in members.text
    assert "Réinitialiser le mot de passe" in members.text
    done = page_form(admin, f"/admin/members/{uid}/password-reset", csrf_token=admin.csrf or "")
    assert done.status_code == 303
    assert done.headers["location"] == "/admin?done=password_reset"
    assert "Mot de passe réinitialisé" in admin.call("GET", done.headers["location"]).text
    assert member.call("GET", "/api/v1/me").status_code == 401
    assert reset_links(mail, email)
    assert len(events(server, "password.reset_forced", uid)) == 1


def test_administrator_forces_a_reset_from_the_cli(server: Server, mail: MailCatcher,
                                                   tmp_path: Any) -> None:
    email = new_user(server)
    uid = user_id(server, email)
    admin_token = login(server.url, scopes=["transfers:read", "transfers:write", "admin"])
    env = {"COFFRE_URL": server.url, "COFFRE_TOKEN": admin_token,
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = server.coffre("members", "reset-password", uid, env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "Mot de passe réinitialisé" in done.stdout
    assert reset_links(mail, email)
    assert token_for(server, email).status_code == 401


# -- SEC-12 at account creation ------------------------------------------------------------


def test_breached_password_refused_when_joining(server: Server, mail: MailCatcher) -> None:
    admin_token = login(server.url, scopes=["transfers:read", "transfers:write", "admin"])
    email = new_address("invite")
    with bearer(server, admin_token) as c:
        assert c.post("/api/v1/invitations", json={"email": email}).status_code == 201
    body = next(m for m in mail.to(email)).get_body(preferencelist=("plain",))
    assert body is not None
    token = re.search(r"/invitation/([A-Za-z0-9_-]+)", body.get_content())
    assert token
    api = httpx.post(f"{server.url}/api/v1/invitations/accept", timeout=30,
                     json={"token": token.group(1), "password": BREACHED.title()})
    assert_error(api, 400, "invalid_input")
    assert api.json()["error"]["details"]["reason"] == "breached_password"
    anonymous = Browser(httpx.Client(base_url=server.url, timeout=30), server.url)
    page = page_form(anonymous, f"/invitation/{token.group(1)}", password=BREACHED,
                     display_name="Dr Fuite")
    assert page.status_code == 400 and BREACHED_FR in page.text
    ok = httpx.post(f"{server.url}/api/v1/invitations/accept", timeout=30,
                    json={"token": token.group(1), "password": NEW_PASSWORD})
    assert ok.status_code == 201, ok.text


def test_a_disabled_member_gets_no_link(server: Server, mail: MailCatcher) -> None:
    email = new_user(server)
    app = in_process(server)
    try:
        with app.db.session() as session:
            user = session.query(User).filter_by(email=email).one()
            user.disabled = True
            assert user.role == Role.MEMBER.value
    finally:
        app.close()
    answer = httpx.post(f"{server.url}/api/v1/auth/password-reset", json={"email": email},
                        timeout=30)
    assert answer.status_code == 202
    time.sleep(1)
    assert mail.to(email, timeout=0) == []


@pytest.mark.parametrize("path", ["/password/forgotten", "/password/reset/x"])
def test_password_pages_are_french_html(server: Server, path: str) -> None:
    page = httpx.get(f"{server.url}{path}", timeout=30)
    assert page.headers["content-type"].startswith("text/html")
    assert "Mot de passe" in page.text or "Lien inconnu" in page.text
