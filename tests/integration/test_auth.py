"""Signing in with second factors, browser sessions, CSRF, step-up and
anti-automation (SEC-9 to SEC-17, SEC-22), against a real server and, where
time must move, an in-process app on a frozen clock."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pyotp
import pytest

from coffre.bootstrap import Coffre, build
from coffre.clock import FrozenClock
from coffre.crypto import credentials
from coffre.db.tables import Organisation, User
from coffre.domain.accounts import Role
from coffre.http.app import asgi_app
from coffre.notify.memory import MemoryMailer
from coffre.settings import Settings
from tests import backends
from tests.conftest import MailCatcher, Server
from tests.integration.flows import audit_events, sql
from tests.integration.support import in_process, new_address
from tests.webauthn_soft import SoftAuthenticator

PASSWORD = "une phrase de passe assez longue"
COOKIE = "__Host-coffre-session"


def new_user(server: Server, role: Role = Role.MEMBER) -> str:
    """A user of the server's organisation, made directly in the database."""
    email = new_address("soignant")
    app = in_process(server)
    try:
        with app.db.session() as session:
            org_id = session.query(Organisation.id).scalar()
            session.add(User(organisation_id=org_id, email=email, role=role.value,
                             password_hash=credentials.hash_password(PASSWORD)))
    finally:
        app.close()
    return email


class AsgiClient:
    """A synchronous client calling the ASGI app in-process (one event
    loop per request), for tests that move a frozen clock."""

    def __init__(self, app: Any, base_url: str) -> None:
        self.app = app
        self.base_url = base_url

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=self.base_url) as c:
                response = await c.request(method, path, **kwargs)
                await response.aread()
                return response

        return anyio.run(run)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)





@dataclass
class Browser:
    """What a browser does with our cookie: keep it, send it back, add the
    CSRF header and its own Origin on state changes."""

    client: httpx.Client | AsgiClient
    origin: str
    cookie: str | None = None
    csrf: str | None = None
    set_cookies: list[str] = field(default_factory=list)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self.cookie:
            headers["Cookie"] = f"{COOKIE}={self.cookie}"
        if method != "GET" and self.csrf and "X-CSRF-Token" not in headers:
            headers["X-CSRF-Token"] = self.csrf
        headers.setdefault("Origin", self.origin)
        response = self.client.request(method, path, headers=headers, **kwargs)
        for header in response.headers.get_list("set-cookie"):
            if header.startswith(f"{COOKIE}="):
                self.set_cookies.append(header)
                value = header.split(";", 1)[0].split("=", 1)[1].strip('"')
                self.cookie = value or None
        if response.headers.get("content-type", "").startswith("application/json"):
            body = response.json()
            if isinstance(body, dict) and body.get("csrf_token"):
                self.csrf = body["csrf_token"]
        return response

    def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        response = self.call("POST", "/api/v1/auth/login",
                             json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def logout(self) -> None:
        assert self.call("POST", "/api/v1/auth/logout").status_code == 204
        self.cookie = self.csrf = None

    def enrol_totp(self, at: datetime | None = None) -> tuple[str, list[str]]:
        """Enrol TOTP with the code of ``at`` (the app's clock when it is frozen)."""
        begun = self.call("POST", "/api/v1/account/factors/totp", json={"name": "téléphone"})
        assert begun.status_code == 201, begun.text
        assert begun.json()["qr_svg"].startswith("<svg")
        assert begun.json()["uri"].startswith("otpauth://totp/Coffre:")
        secret = begun.json()["secret"]
        done = self.call("POST", f"/api/v1/account/factors/totp/{begun.json()['id']}/confirm",
                         json={"code": pyotp.TOTP(secret).at(at or datetime.now(UTC))})
        assert done.status_code == 200, done.text
        return secret, done.json()["recovery_codes"]


def browser(server: Server) -> Browser:
    return Browser(httpx.Client(base_url=server.url, timeout=30), server.url)


def next_code(secret: str) -> str:
    """The code of the next 30 s step (accepted: one step of drift)."""
    import time

    return pyotp.TOTP(secret).at(time.time() + 30)


def security_mails(mail: MailCatcher, address: str, count: int) -> list[str]:
    import time

    deadline = time.monotonic() + 15
    while True:
        found = [m.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
                 for m in mail.to(address) if "Sécurité" in str(m["Subject"])]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


# -- SEC-15: the cookie ---------------------------------------------------------


def test_sec15_session_cookie_attributes_and_renewal(server: Server) -> None:
    b = browser(server)
    email = new_user(server)
    first = b.login(email)
    assert first["stage"] == "full"
    header = b.set_cookies[-1]
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert header.startswith("__Host-coffre-session=")
    assert {"secure", "httponly", "samesite", "path"} <= attributes
    assert "domain" not in attributes
    assert re.search(r"(?i)samesite=strict", header) and re.search(r"(?i)path=/(;|$)", header)
    assert len(b.cookie or "") >= 43  # 256 bits, URL-safe base64
    # Signing in again gives a new token; the session id never travels in a URL.
    old = b.cookie
    b.login(email)
    assert b.cookie != old
    me = b.call("GET", "/api/v1/me")
    assert me.status_code == 200 and me.json()["email"] == email


def test_sec16_logout_ends_the_session_on_the_server(server: Server) -> None:
    b = browser(server)
    b.login(new_user(server))
    stolen = b.cookie
    b.logout()
    replay = Browser(b.client, server.url, cookie=stolen)
    response = replay.call("GET", "/api/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["details"]["reason"] == "session_expired"
    assert audit_events(server.data_dir, "session.ended")[-1]["details"]["reason"] == "logout"


# -- SEC-22: CSRF ---------------------------------------------------------------


def test_sec22_state_changes_need_the_csrf_token_and_our_origin(server: Server) -> None:
    b = browser(server)
    b.login(new_user(server))
    missing = b.call("POST", "/api/v1/account/factors/totp", json={},
                     headers={"X-CSRF-Token": ""})
    assert missing.status_code == 403
    assert missing.json()["error"]["details"]["reason"] == "csrf"
    forged = b.call("POST", "/api/v1/account/factors/totp", json={},
                    headers={"Origin": "https://attaquant.example"})
    assert forged.status_code == 403
    assert forged.json()["error"]["details"]["reason"] == "cross_origin"
    # Under Referrer-Policy: no-referrer, browsers send "Origin: null": it
    # passes only when Fetch Metadata says the request came from our pages.
    for headers in ({"Origin": "null"}, {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"}):
        refused = b.call("POST", "/api/v1/account/factors/totp", json={}, headers=headers)
        assert refused.status_code == 403, headers
        assert refused.json()["error"]["details"]["reason"] == "cross_origin"
    ours = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    assert b.call("POST", "/api/v1/account/factors/totp", json={},
                  headers={**ours, "X-CSRF-Token": ""}).status_code == 403  # still the token
    assert b.call("POST", "/api/v1/account/factors/totp", json={},
                  headers=ours).status_code == 201
    assert b.call("POST", "/api/v1/account/factors/totp", json={}).status_code == 201
    # The CSRF token can be fetched again by the page (it is not stored).
    assert b.call("GET", "/api/v1/auth/session").json()["csrf_token"] == b.csrf


# -- SEC-9 and SEC-10: TOTP ------------------------------------------------------


def test_sec10_totp_enrolment_login_and_replay(server: Server, mail: MailCatcher) -> None:
    email = new_user(server)
    b = browser(server)
    b.login(email)
    secret, recovery = b.enrol_totp()
    assert len(recovery) == 10 and len(set(recovery)) == 10
    assert any("ajouté" in text for text in security_mails(mail, email, 1))
    b.logout()

    pending = b.login(email)
    assert pending["stage"] == "password"
    assert pending["methods"] == ["totp", "recovery"]
    assert b.call("GET", "/api/v1/me").status_code == 401  # nothing before the factor
    code = next_code(secret)
    half = b.cookie
    done = b.call("POST", "/api/v1/auth/login/totp", json={"code": code})
    assert done.status_code == 200, done.text
    assert done.json()["stage"] == "full"
    assert b.cookie != half  # renewed once the sign-in is complete
    assert b.call("GET", "/api/v1/me").json()["mfa"] is True
    b.logout()

    b.login(email)
    replayed = b.call("POST", "/api/v1/auth/login/totp", json={"code": code})
    assert replayed.status_code == 401
    assert replayed.json()["error"]["details"]["reason"] == "second_factor_invalid"
    rejected = audit_events(server.data_dir, "factor.replay_rejected")
    assert len(rejected) == 1 and rejected[0]["outcome"] == "failure"
    assert code.encode() not in backends.database_bytes(server.data_dir)
    assert any("déjà utilisé" in text for text in security_mails(mail, email, 2))


def test_sec10_recovery_codes_are_single_use(server: Server) -> None:
    email = new_user(server)
    b = browser(server)
    b.login(email)
    _, recovery = b.enrol_totp()
    b.logout()
    b.login(email)
    ok = b.call("POST", "/api/v1/auth/login/recovery", json={"code": recovery[0].upper()})
    assert ok.status_code == 200, ok.text
    b.logout()
    b.login(email)
    again = b.call("POST", "/api/v1/auth/login/recovery", json={"code": recovery[0]})
    assert again.status_code == 401
    factors = b.call("GET", "/api/v1/me")
    assert factors.status_code == 401
    assert audit_events(server.data_dir, "factor.recovery_code_used")[-1]["details"] == {
        "remaining": 9}


def test_sec9_administrators_cannot_act_without_a_second_factor(server: Server) -> None:
    email = new_user(server, Role.ADMIN)
    b = browser(server)
    signed = b.login(email)
    assert signed["enrolment_required"] is True
    denied = b.call("GET", "/api/v1/transfers")
    assert denied.status_code == 403
    assert denied.json()["error"]["details"]["reason"] == "second_factor_required"
    assert b.call("GET", "/api/v1/me").json()["mfa_required"] is True
    secret, _ = b.enrol_totp()
    # The session was opened without the factor: sign in again with it.
    assert b.call("GET", "/api/v1/transfers").status_code == 403
    b.logout()
    b.login(email)
    assert b.call("POST", "/api/v1/auth/login/totp",
                  json={"code": next_code(secret)}).status_code == 200
    assert b.call("GET", "/api/v1/transfers").status_code == 200


def test_sec9_organisation_policy_can_require_a_second_factor(server: Server) -> None:
    email = new_user(server)
    b = browser(server)
    b.login(email)
    assert b.call("GET", "/api/v1/transfers").status_code == 200
    sql(server.data_dir, "UPDATE organisations SET require_mfa = ?", True)
    denied = b.call("GET", "/api/v1/transfers")
    assert denied.status_code == 403
    assert denied.json()["error"]["details"]["reason"] == "second_factor_required"


# -- SEC-11: passkeys -------------------------------------------------------------


def _register_passkey(b: Browser, origin: str) -> SoftAuthenticator:
    key = SoftAuthenticator()
    options = b.call("POST", "/api/v1/account/factors/webauthn/options")
    assert options.status_code == 200, options.text
    assert options.json()["authenticatorSelection"]["userVerification"] == "required"
    assert len(options.json()["challenge"]) >= 22  # 128 bits
    done = b.call("POST", "/api/v1/account/factors/webauthn",
                  json={"name": "clé", "credential": key.create(options.json(), origin)})
    assert done.status_code == 201, done.text
    return key


def _assert_with(b: Browser, key: SoftAuthenticator, origin: str,
                 **kwargs: Any) -> httpx.Response:
    options = b.call("POST", "/api/v1/auth/login/webauthn/options")
    assert options.status_code == 200, options.text
    return b.call("POST", "/api/v1/auth/login/webauthn",
                  json={"credential": key.get(options.json(), origin, **kwargs)})


def test_sec11_passkey_login_checks_origin_counter_and_verification(server: Server) -> None:
    email = new_user(server)
    b = browser(server)
    b.login(email)
    key = _register_passkey(b, server.url)
    b.logout()

    assert "webauthn" in b.login(email)["methods"]
    ok = _assert_with(b, key, server.url)
    assert ok.status_code == 200, ok.text
    assert b.call("GET", "/api/v1/me").json()["mfa"] is True
    b.logout()

    b.login(email)
    phished = _assert_with(b, key, "https://coffre.attaquant.example")
    assert phished.status_code == 401
    key.sign_count = 1  # a clone replays the counter the server last saw
    cloned = _assert_with(b, key, server.url, count=False)
    assert cloned.status_code == 401
    key.user_verification = False
    unverified = _assert_with(b, key, server.url)
    assert unverified.status_code == 401
    reasons = [e["details"]["reason"] for e in
               audit_events(server.data_dir, "factor.assertion_rejected")]
    assert len(reasons) == 3
    assert "origin" in reasons[0].lower()
    assert "count" in reasons[1].lower()
    assert "verif" in reasons[2].lower()
    assert len(audit_events(server.data_dir, "login.second_factor_failed")) == 3


# -- on a frozen clock: timeouts, step-up, throttling ---------------------------------


@pytest.fixture
def frozen(tmp_path: Path) -> Iterator[tuple[Coffre, FrozenClock, AsgiClient]]:
    clock = FrozenClock()
    app = build(Settings(data_dir=tmp_path / "data", login_attempts=5,
                         database_url=backends.database_setting(tmp_path / "data")), clock=clock,
                mailer=MemoryMailer())
    app.accounts.complete_setup(None, "admin@exemple.fr", PASSWORD, "Cabinet")
    with app.db.session() as session:
        org_id = session.query(Organisation.id).scalar()
        session.add(User(organisation_id=org_id, email="membre@exemple.fr", role="member",
                         password_hash=credentials.hash_password(PASSWORD)))
    client = AsgiClient(asgi_app(app, run_jobs=False), app.settings.base_url)
    try:
        yield app, clock, client
    finally:
        app.close()


def test_sec16_idle_and_absolute_timeouts(frozen: tuple[Coffre, FrozenClock, AsgiClient]) -> None:
    app, clock, client = frozen
    b = Browser(client, app.settings.base_url)
    b.login("membre@exemple.fr")
    clock.advance(timedelta(minutes=14))
    assert b.call("GET", "/api/v1/me").status_code == 200
    clock.advance(timedelta(minutes=16))
    assert b.call("GET", "/api/v1/me").status_code == 401  # 15 min idle

    b.login("membre@exemple.fr")
    for _ in range(12 * 6 - 1):  # active every 10 minutes for almost 12 hours
        clock.advance(timedelta(minutes=10))
        assert b.call("GET", "/api/v1/me").status_code == 200
    clock.advance(timedelta(minutes=10))
    expired = b.call("GET", "/api/v1/me")
    assert expired.status_code == 401  # 12 h absolute
    with app.db.session() as session:
        from coffre.audit import trail

        assert [e["details"]["reason"] for e in trail.events(session, "session.expired")] == [
            "timeout", "timeout"]


def _member_with_totp(
    frozen: tuple[Coffre, FrozenClock, AsgiClient],
) -> tuple[Coffre, FrozenClock, Browser, str]:
    app, clock, client = frozen
    b = Browser(client, app.settings.base_url)
    b.login("membre@exemple.fr")
    # The frozen clock's code: the real one may be a step ahead by now, and
    # the next step's code, which the tests use, would then be a replay.
    secret, _ = b.enrol_totp(at=clock.now())
    return app, clock, b, secret


def test_sec17_step_up_before_sensitive_actions(
    frozen: tuple[Coffre, FrozenClock, AsgiClient],
) -> None:
    app, clock, b, secret = _member_with_totp(frozen)
    factor_id = b.call("GET", "/api/v1/account/factors").json()["factors"][0]["id"]
    for _ in range(2):  # stay active, but the sign-in grows old
        clock.advance(timedelta(minutes=4))
        assert b.call("GET", "/api/v1/me").status_code == 200
    stale = b.call("DELETE", f"/api/v1/account/factors/{factor_id}")
    assert stale.status_code == 401
    assert stale.json()["error"]["details"]["reason"] == "reauthentication_required"
    wrong = b.call("POST", "/api/v1/auth/reauth", json={"password": "pas le bon mot de passe"})
    assert wrong.status_code == 401
    # The user has a factor: the password alone is not enough.
    half = b.call("POST", "/api/v1/auth/reauth", json={"password": PASSWORD})
    assert half.status_code == 401
    assert half.json()["error"]["details"]["reason"] == "second_factor_required"
    code = pyotp.TOTP(secret).at(clock.now())
    again = b.call("POST", "/api/v1/auth/reauth", json={"password": PASSWORD, "code": code})
    assert again.status_code == 200, again.text
    assert b.call("DELETE", f"/api/v1/account/factors/{factor_id}").status_code == 204
    with app.db.session() as session:
        from coffre.audit import trail

        assert len(trail.events(session, "reauth.succeeded")) == 2  # the password steps
        assert len(trail.events(session, "reauth.failed")) == 1
        assert len(trail.events(session, "reauth.completed")) == 1
        assert len(trail.events(session, "factor.removed")) == 1


def test_sec14_step_up_codes_are_throttled_too(
    frozen: tuple[Coffre, FrozenClock, AsgiClient],
) -> None:
    _, clock, b, secret = _member_with_totp(frozen)
    answers = [b.call("POST", "/api/v1/auth/reauth",
                      json={"password": PASSWORD, "code": "000000"}).status_code
               for _ in range(4)]
    assert answers == [401, 401, 401, 429]  # the third failure imposes a delay
    clock.advance(timedelta(seconds=1))
    code = pyotp.TOTP(secret).at(clock.now() + timedelta(seconds=30))
    assert b.call("POST", "/api/v1/auth/reauth",
                  json={"password": PASSWORD, "code": code}).status_code == 200


def test_sec9_tokens_obtained_without_a_factor_end_when_one_is_added(server: Server) -> None:
    """Otherwise an old password-only token could step up or enrol an
    attacker's factor with the password alone."""
    email = new_user(server)
    old = httpx.post(f"{server.url}/api/v1/auth/token",
                     json={"email": email, "password": PASSWORD}).json()["token"]
    b = browser(server)
    b.login(email)
    b.enrol_totp()
    response = httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {old}"})
    assert response.status_code == 401
    assert audit_events(server.data_dir, "factor.added")[-1]["details"]["tokens_revoked"] == 1


def test_sec14_parallel_guesses_cannot_outrun_the_limit(server: Server) -> None:
    """Attempts are counted before the password is checked, so a burst of
    parallel guesses gets no more tries than a sequence would."""
    from concurrent.futures import ThreadPoolExecutor

    email = new_user(server)

    def guess(n: int) -> int:
        return httpx.post(f"{server.url}/api/v1/auth/login",
                          json={"email": email, "password": f"mauvais {n:04d}"},
                          timeout=60).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(guess, range(32)))
    # 503: refused by the bounded hashing gate before anything is checked.
    assert set(answers) <= {401, 429, 503}
    assert answers.count(401) <= 5, answers


def test_sec14_same_answer_for_unknown_account_and_wrong_password(
    frozen: tuple[Coffre, FrozenClock, AsgiClient],
) -> None:
    _, _, client = frozen
    unknown = client.post("/api/v1/auth/login",
                          json={"email": "personne@exemple.fr", "password": PASSWORD})
    wrong = client.post("/api/v1/auth/login",
                        json={"email": "membre@exemple.fr", "password": "mauvais mot de passe"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()
    assert unknown.headers.get("www-authenticate") == wrong.headers.get("www-authenticate")


def test_sec14_growing_delays_then_lockout(
    frozen: tuple[Coffre, FrozenClock, AsgiClient],
) -> None:
    app, clock, client = frozen

    def attempt(password: str) -> httpx.Response:
        return client.post("/api/v1/auth/login",
                           json={"email": "membre@exemple.fr", "password": password})

    assert attempt("mauvais 1").status_code == 401
    assert attempt("mauvais 2").status_code == 401
    assert attempt("mauvais 3").status_code == 401
    blocked = attempt(PASSWORD)  # right password, but too soon
    assert blocked.status_code == 429
    assert blocked.headers["retry-after"] == "1"
    clock.advance(timedelta(seconds=1))
    assert attempt("mauvais 4").status_code == 401
    assert attempt("mauvais 5").headers["retry-after"] == "2"
    clock.advance(timedelta(seconds=2))
    assert attempt("mauvais 5").status_code == 401  # the fifth failure: locked
    locked = attempt(PASSWORD)
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) == 15 * 60
    clock.advance(timedelta(minutes=15))
    assert attempt(PASSWORD).status_code == 200
    # Unknown addresses are throttled the same way (no account enumeration).
    for n in range(3):
        client.post("/api/v1/auth/login", json={"email": "x@exemple.fr", "password": f"p{n}"})
    assert client.post("/api/v1/auth/login",
                       json={"email": "x@exemple.fr", "password": "p"}).status_code == 429
    with app.db.session() as session:
        from coffre.audit import trail

        failures = trail.events(session, "login.failed")
        assert [e["details"]["failures"] for e in failures[:5]] == [1, 2, 3, 4, 5]
