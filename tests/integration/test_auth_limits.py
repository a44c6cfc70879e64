"""Limits that hold under abuse (issue 15, findings 7, 9, 11, 12), against
real servers: the bounded Argon2id gate, per-source ceilings behind a
declared proxy, throttles keyed by credential and source, aggregated
refusals, purged throttle rows and recovery codes of 118 bits."""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from coffre.bootstrap import Coffre, build
from coffre.clock import FrozenClock
from coffre.crypto import credentials
from coffre.db.tables import Organisation, Throttle, User
from coffre.http.app import asgi_app
from coffre.jobs import scheduler
from coffre.notify.memory import MemoryMailer
from coffre.services import factors
from coffre.settings import Settings
from tests import backends
from tests.conftest import MailCatcher, login, running_server
from tests.integration.flows import audit_events, sql
from tests.integration.support import module_server
from tests.integration.test_auth import PASSWORD, AsgiClient, browser, new_user
from tests.integration.test_backup_rest import Repo, register

mail, server, token, client, admin = module_server(
    "auth-limits", COFFRE_TRUSTED_PROXIES="127.0.0.1/32, ::1", COFFRE_LOGIN_ATTEMPTS="3",
    COFFRE_SOURCE_ATTEMPTS="4", COFFRE_REFUSAL_WINDOW_SECONDS="3",
    COFFRE_ACCOUNT_ATTEMPTS="8")


def from_source(address: str) -> dict[str, str]:
    """What the declared proxy (this test, on loopback) says of its client."""
    return {"X-Forwarded-For": address}


def sign_in(server: Any, email: str, password: str, source: str) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/auth/token", json={"email": email,
                      "password": password}, headers=from_source(source), timeout=60)


def events_from(data_dir: Path, action: str, source: str) -> list[dict[str, Any]]:
    return [e for e in audit_events(data_dir, action) if e["source"] == source]


# -- finding 9: the Argon2id flood ------------------------------------------------------


def test_a_sign_in_flood_gets_503_at_once_and_the_server_keeps_answering(
        tmp_path: Path, mail: MailCatcher) -> None:
    """40 threads signing in with random addresses: the hashing gate (one
    slot here) refuses what it cannot take with 503 and Retry-After, the
    addresses the flood makes up are not believed (no trusted proxy), and
    a signed-in user is served all along."""
    with running_server(tmp_path, mail, COFFRE_PASSWORD_HASHING_SLOTS="1",
                        COFFRE_SOURCE_ATTEMPTS="1000") as srv:
        user_token = login(srv.url)

        def flood(n: int) -> httpx.Response:
            return httpx.post(f"{srv.url}/api/v1/auth/token", timeout=120, json={
                "email": f"inconnu-{n}-{uuid.uuid4().hex[:6]}@exemple.fr",
                "password": f"devine {n}"}, headers=from_source(f"198.51.100.{n % 250}"))

        with ThreadPoolExecutor(max_workers=40) as pool:
            pending = [pool.submit(flood, n) for n in range(160)]
            served = []
            while not all(p.done() for p in pending):  # a user, during the flood
                served.append(httpx.get(f"{srv.url}/api/v1/me", timeout=120, headers={
                    "Authorization": f"Bearer {user_token}"}).status_code)
            answers = [p.result() for p in pending]
        statuses = [a.status_code for a in answers]
        assert set(statuses) <= {401, 503}, statuses
        busy = [a for a in answers if a.status_code == 503]
        assert busy, statuses
        for answer in busy:
            assert answer.json()["error"]["code"] == "busy"
            assert int(answer.headers["retry-after"]) >= 1
        assert served == [200] * len(served)
        # X-Forwarded-For from a peer that is not a declared proxy is ignored.
        failed = audit_events(srv.data_dir, "login.failed")
        assert failed and {e["source"] for e in failed} == {"127.0.0.1"}
        # The refusals are audited, aggregated per source (finding 11).
        assert audit_events(srv.data_dir, "access.busy")
        assert srv.process is not None and srv.process.poll() is None


def test_one_source_gets_429_past_its_ceiling_whatever_the_addresses(server: Any) -> None:
    """A credential stuffer behind one address, trying many accounts."""
    stuffer, neighbour = "203.0.113.7", "198.51.100.9"
    member = new_user(server)
    answers = [sign_in(server, f"victime-{n}@exemple.fr", "devine", stuffer)
               for n in range(4)]
    assert [a.status_code for a in answers] == [401] * 4
    refused = sign_in(server, "victime-5@exemple.fr", "devine", stuffer)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_attempts"
    assert 1 <= int(refused.headers["retry-after"]) <= 10 * 60
    # A client cannot step out of its address by prepending one: the
    # rightmost address the proxy did not add is the source.
    spoofed = sign_in(server, member, PASSWORD, f"192.0.2.1, {stuffer}")
    assert spoofed.status_code == 429
    assert sign_in(server, member, PASSWORD, neighbour).status_code == 201
    assert len(events_from(server.data_dir, "login.failed", stuffer)) == 4
    assert events_from(server.data_dir, "access.throttled", stuffer)


# -- finding 12: lockouts keyed on credential and source ---------------------------------


def test_an_account_is_not_locked_for_other_sources(server: Any) -> None:
    attacker, owner = "203.0.113.20", "198.51.100.20"
    member = new_user(server)
    assert [sign_in(server, member, f"mauvais {n}", attacker).status_code
            for n in range(3)] == [401, 401, 401]
    locked = sign_in(server, member, PASSWORD, attacker)
    assert locked.status_code == 429  # the third failure locks, for that source
    assert sign_in(server, member, PASSWORD, owner).status_code == 201
    failures = events_from(server.data_dir, "login.failed", attacker)
    assert [e["details"]["failures"] for e in failures] == [1, 2, 3]
    assert events_from(server.data_dir, "login.succeeded", owner)


def test_wrong_secrets_from_one_source_do_not_lock_the_device_out(
        server: Any, client: httpx.Client) -> None:
    attacker, device = "203.0.113.30", "198.51.100.30"
    repo = Repo(server, register(client))
    try:
        user = repo.credential["username"]
        url = f"{server.url}{repo.path}keys/"
        statuses = [httpx.get(url, auth=(user, f"devine-{n}"),
                              headers=from_source(attacker)).status_code for n in range(6)]
        assert statuses[:3] == [401, 401, 401] and statuses[-1] == 429, statuses
        right = httpx.get(url, auth=(user, repo.credential["secret"]),
                          headers=from_source(device))
        assert right.status_code == 200, right.text
        assert events_from(server.data_dir, "access.throttled", attacker)
        assert not events_from(server.data_dir, "access.throttled", device)
    finally:
        repo.close()


def test_parallel_right_secrets_on_a_fresh_process_are_never_throttled(
        server: Any, client: httpx.Client) -> None:
    repo = Repo(server, register(client))
    try:
        server.stop()  # a fresh process: no secret verified yet
        server.start()
        user, secret = repo.credential["username"], repo.credential["secret"]

        def fetch(_: int) -> int:
            return httpx.get(f"{server.url}{repo.path}keys/", auth=(user, secret),
                             headers=from_source("198.51.100.40"), timeout=120).status_code

        with ThreadPoolExecutor(max_workers=6) as pool:
            assert list(pool.map(fetch, range(6))) == [200] * 6
    finally:
        repo.close()


# -- finding 11: aggregated refusals, purged throttle rows ------------------------------


def test_many_refusals_from_one_source_make_a_bounded_number_of_events(server: Any) -> None:
    source, sent = "203.0.113.50", 300
    bogus = {"Authorization": "Bearer cof_" + "B" * 43, **from_source(source)}
    with httpx.Client(base_url=server.url, headers=bogus, timeout=60) as http:
        assert {http.get("/api/v1/transfers").status_code for _ in range(sent)} == {401}

    def counted() -> tuple[int, int]:
        first = events_from(server.data_dir, "access.unauthenticated", source)
        folded = events_from(server.data_dir, "access.refusals", source)
        return len(first) + len(folded), len(first) + sum(e["details"]["count"]
                                                          for e in folded)

    deadline = time.monotonic() + 60  # windows of 3 s, closed every 5 s
    while counted()[1] < sent and time.monotonic() < deadline:
        time.sleep(0.5)
    events, refusals = counted()
    assert refusals == sent
    assert events <= 40, events  # two per window at most, not one per request
    folded = events_from(server.data_dir, "access.refusals", source)
    assert folded and all(e["details"]["refused"] == "access.unauthenticated"
                          and e["details"]["routes"] == {"/api/v1/transfers": e["details"]["count"]}
                          and e["outcome"] == "failure" for e in folded)


@pytest.fixture
def frozen(tmp_path: Path) -> Iterator[tuple[Coffre, FrozenClock, AsgiClient]]:
    clock = FrozenClock()
    app = build(Settings(data_dir=tmp_path / "data", login_attempts=3,
                         database_url=backends.database_setting(tmp_path / "data")),
                clock=clock, mailer=MemoryMailer())
    app.accounts.complete_setup(None, "admin@exemple.fr", PASSWORD, "Cabinet")
    with app.db.session() as session:
        org_id = session.query(Organisation.id).scalar()
        session.add(User(organisation_id=org_id, email="membre@exemple.fr", role="member",
                         password_hash=credentials.hash_password(PASSWORD)))
    try:
        yield app, clock, AsgiClient(asgi_app(app, run_jobs=False), app.settings.base_url)
    finally:
        app.close()


def test_throttle_rows_expire_and_are_purged(
        frozen: tuple[Coffre, FrozenClock, AsgiClient]) -> None:
    app, clock, http = frozen

    def kinds() -> list[str]:
        with app.db.session() as session:
            return sorted(row.kind for row in session.query(Throttle))

    for n in range(3):  # locks membre@ from this source for 15 minutes
        http.post("/api/v1/auth/login", json={"email": "membre@exemple.fr",
                                              "password": f"mauvais {n}"})
    http.post("/api/v1/auth/login", json={"email": f"x{uuid.uuid4().hex}@exemple.fr",
                                          "password": "devine"})
    both = ["account", "account", "password", "password"]  # per account, per (account, source)
    assert kinds() == [*both, "source"]
    anyio.run(lambda: scheduler.run_limits(app, purge=True))
    assert kinds() == [*both, "source"]  # all still count
    clock.advance(timedelta(minutes=11))  # the source's window is over
    anyio.run(lambda: scheduler.run_limits(app, purge=True))
    assert kinds() == both
    clock.advance(timedelta(days=1))
    anyio.run(lambda: scheduler.run_limits(app, purge=True))
    assert kinds() == []
    assert http.post("/api/v1/auth/login", json={"email": "membre@exemple.fr",
                                                 "password": PASSWORD}).status_code == 200


# -- finding 7: recovery codes ----------------------------------------------------------


def test_recovery_codes_have_112_bits_and_old_ones_work_until_regenerated(
        server: Any) -> None:
    email = new_user(server)
    b = browser(server)
    b.login(email)
    _, codes = b.enrol_totp()
    alphabet = set("abcdefghjkmnpqrstuvwxyz23456789")
    for code in codes:
        groups = code.split("-")
        assert [len(g) for g in groups] == [4] * 6 and set("".join(groups)) <= alphabet
    assert 24 * math.log2(len(alphabet)) >= 112
    (user_id,) = sql(server.data_dir, "SELECT id FROM users WHERE email = ?", email)[0]
    stored = [h for (h,) in sql(server.data_dir,
                                "SELECT code_hash FROM recovery_codes WHERE user_id = ?",
                                user_id)]
    assert len(stored) == 10 and all(h.startswith("v2$") for h in stored)
    bare = {hashlib.sha256(factors._normal_code(c).encode()).hexdigest() for c in codes}
    assert not bare & {h.removeprefix("v2$") for h in stored}  # salted with the user

    legacy = "abcd-efgh-jkmn"  # a code of the earlier format, as stored then
    sql(server.data_dir, "INSERT INTO recovery_codes (id, user_id, code_hash, created_at) "
        "VALUES (?, ?, ?, ?)", uuid.uuid4().hex, user_id,
        hashlib.sha256(b"abcdefghjkmn").hexdigest(), "2026-11-01 10:00:00.000000")
    b.logout()
    b.login(email)
    used = b.call("POST", "/api/v1/auth/login/recovery", json={"code": legacy})
    assert used.status_code == 200, used.text
    # A new code works, spaced or not, in capitals.
    b.logout()
    b.login(email)
    assert b.call("POST", "/api/v1/auth/login/recovery",
                  json={"code": codes[0].replace("-", " ").upper()}).status_code == 200
    fresh = b.call("POST", "/api/v1/account/recovery-codes")
    if fresh.status_code == 401:  # step-up first
        assert b.call("POST", "/api/v1/auth/reauth",
                      json={"password": PASSWORD, "code": codes[1]}).status_code == 200
        fresh = b.call("POST", "/api/v1/account/recovery-codes")
    assert fresh.status_code == 200, fresh.text
    stored = [h for (h,) in sql(server.data_dir,
                                "SELECT code_hash FROM recovery_codes WHERE user_id = ?",
                                user_id)]
    assert len(stored) == 10 and all(h.startswith("v2$") for h in stored)
    assert len(events_from(server.data_dir, "factor.recovery_code_used", "127.0.0.1")) >= 2


def test_the_sign_in_page_says_the_server_is_busy_when_the_gate_is_full(
        frozen: tuple[Coffre, FrozenClock, AsgiClient]) -> None:
    import threading

    _, _, http = frozen
    credentials.configure_hashing(1, 0)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with credentials.hashing_slot():
            holding.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(30)
        page = http.post("/login", data={"email": "membre@exemple.fr", "password": PASSWORD})
        assert page.status_code == 503
        assert "Le serveur est très sollicité" in page.text
    finally:
        release.set()
        holder.join(60)
        credentials.configure_hashing(None)
    assert http.post("/api/v1/auth/login", json={"email": "membre@exemple.fr",
                                                 "password": PASSWORD}).status_code == 200


# -- review of issue 15: sources by bucket, the per-account limit, one proxy parser ------


def test_an_ipv6_64_is_one_source_and_a_mapped_ipv4_is_the_ipv4(server: Any) -> None:
    """Every address of a /64 (2^64 of them) counts against one ceiling;
    ``::ffff:a.b.c.d`` against a.b.c.d's; a port in the header changes
    nothing. Audit events keep the exact address."""
    hosts = [f"2001:db8:15:1::{n + 1:x}" for n in range(4)]
    answers = [sign_in(server, f"victime-v6-{n}@exemple.fr", "devine", host)
               for n, host in enumerate(hosts)]
    assert [a.status_code for a in answers] == [401] * 4
    same_64 = sign_in(server, "victime-v6-9@exemple.fr", "devine", "[2001:db8:15:1:ffff::9]:443")
    assert same_64.status_code == 429, same_64.text
    assert sign_in(server, "victime-v6-9@exemple.fr", "devine",
                   "2001:db8:15:2::1").status_code == 401  # the next /64
    for host in hosts:
        assert len(events_from(server.data_dir, "login.failed", host)) == 1
    assert events_from(server.data_dir, "access.throttled", "2001:db8:15:1:ffff::9")

    v4 = "203.0.113.77"
    assert [sign_in(server, f"victime-v4-{n}@exemple.fr", "devine", source).status_code
            for n, source in enumerate([v4, f"{v4}:5000", f"::ffff:{v4}", v4])] == [401] * 4
    mapped = sign_in(server, "victime-v4-9@exemple.fr", "devine", f"[::ffff:{v4}]:4711")
    assert mapped.status_code == 429
    exact = str(ipaddress.ip_address(f"::ffff:{v4}"))  # as Python writes it
    assert len(events_from(server.data_dir, "login.failed", exact)) == 1


def test_an_account_locks_for_a_whole_64_not_for_the_next(server: Any) -> None:
    member = new_user(server)
    for n in range(3):
        assert sign_in(server, member, f"mauvais {n}",
                       f"2001:db8:16:1::{n + 1}").status_code == 401
    assert sign_in(server, member, PASSWORD, "2001:db8:16:1:abcd::1").status_code == 429
    assert sign_in(server, member, PASSWORD, "2001:db8:16:2::1").status_code == 201


def test_bad_reset_links_make_a_bounded_number_of_events(server: Any) -> None:
    """Guessed reset links (page and API) are refusals like others: one
    event per source and window at once, the rest counted (finding 11)."""
    source, sent = "2001:db8:17:1::1", 60
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for n in range(sent // 2):
            bucketmate = {"X-Forwarded-For": f"2001:db8:17:1::{n + 1:x}"}
            page = http.get(f"/password/reset/{uuid.uuid4().hex}{n}", headers=bucketmate)
            assert page.status_code == 404
            api = http.post("/api/v1/auth/password-reset/complete", headers=bucketmate,
                            json={"token": uuid.uuid4().hex, "password": "x" * 20})
            assert api.status_code == 404

    def counted() -> tuple[int, int]:
        first = [e for e in audit_events(server.data_dir, "password.reset_invalid")
                 if e["source"].startswith("2001:db8:17:1:")]
        folded = [e for e in audit_events(server.data_dir, "access.refusals")
                  if e["source"].startswith("2001:db8:17:1:")]
        return len(first) + len(folded), len(first) + sum(e["details"]["count"]
                                                          for e in folded)

    deadline = time.monotonic() + 60  # windows of 3 s, closed every 5 s
    while counted()[1] < sent and time.monotonic() < deadline:
        time.sleep(0.5)
    events, refusals = counted()
    assert refusals == sent
    assert events <= 40, events
    assert events_from(server.data_dir, "password.reset_invalid", source)
    folded = [e for e in audit_events(server.data_dir, "access.refusals")
              if e["source"].startswith("2001:db8:17:1:")]
    assert folded and all(e["details"]["refused"] == "password.reset_invalid"
                          and e["details"]["statuses"] == {"404": e["details"]["count"]}
                          for e in folded)


def test_a_spoofed_forwarded_for_is_ignored_whatever_uvicorn_is_told(
        tmp_path: Path, mail: MailCatcher) -> None:
    """Behind a TLS proxy, with FORWARDED_ALLOW_IPS=* in the environment
    (as many Docker guides say) and no declared proxy: the address a client
    writes in X-Forwarded-For is not believed, by audit or by throttles."""
    with running_server(tmp_path, mail, COFFRE_BEHIND_TLS_PROXY="true",
                        FORWARDED_ALLOW_IPS="*", COFFRE_LOGIN_ATTEMPTS="3") as srv:
        email = new_user(srv)
        for n in range(3):
            assert sign_in(srv, email, f"mauvais {n}", f"198.51.100.{n + 1}").status_code == 401
        # Still the same source: locked, whatever the header says.
        assert sign_in(srv, email, PASSWORD, "198.51.100.99").status_code == 429
        failed = audit_events(srv.data_dir, "login.failed")
        assert len(failed) == 3 and {e["source"] for e in failed} == {"127.0.0.1"}


@pytest.fixture
def slowed(tmp_path: Path) -> Iterator[tuple[Coffre, FrozenClock, AsgiClient, MemoryMailer]]:
    """An in-process server behind a declared proxy (the test client's
    loopback address) with a frozen clock."""
    clock, mailer = FrozenClock(), MemoryMailer()
    app = build(Settings(data_dir=tmp_path / "data", login_attempts=3, account_attempts=6,
                         source_attempts=1000, trusted_proxies="127.0.0.1",
                         database_url=backends.database_setting(tmp_path / "data")),
                clock=clock, mailer=mailer)
    app.accounts.complete_setup(None, "admin@exemple.fr", PASSWORD, "Cabinet")
    with app.db.session() as session:
        org_id = session.query(Organisation.id).scalar()
        session.add(User(organisation_id=org_id, email="membre@exemple.fr", role="member",
                         password_hash=credentials.hash_password(PASSWORD)))
    try:
        yield app, clock, AsgiClient(asgi_app(app, run_jobs=False), app.settings.base_url), mailer
    finally:
        app.close()


def test_an_account_guessed_at_from_many_sources_slows_down_but_never_locks(
        slowed: tuple[Coffre, FrozenClock, AsgiClient, MemoryMailer]) -> None:
    """A botnet: two guesses from each of many sources (under every
    per-source lock). Past the account's limit each check of it, from
    anywhere, waits a growing delay (at most a minute); its owner is told
    once; a success clears it."""
    app, clock, http, mailer = slowed

    def attempt(password: str, source: str) -> httpx.Response:
        return http.post("/api/v1/auth/login", headers=from_source(source),
                         json={"email": "membre@exemple.fr", "password": password})

    for n in range(6):
        assert attempt(f"mauvais {n}", f"203.0.113.{n // 2 + 1}").status_code == 401
    refused = attempt(PASSWORD, "198.51.100.1")  # the owner, from elsewhere
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_attempts"
    assert refused.headers["retry-after"] == "1"
    for n in range(30):  # the bots keep going, each when the delay allows
        clock.advance(timedelta(seconds=61))
        assert attempt(f"encore {n}", f"2001:db8:18:{n}::1").status_code == 401
        assert attempt(f"aussitôt {n}", f"2001:db8:19:{n}::1").status_code == 429
    last = attempt(PASSWORD, "198.51.100.1")
    assert last.status_code == 429 and int(last.headers["retry-after"]) <= 60
    clock.advance(timedelta(seconds=60))  # never more than a minute
    assert attempt(PASSWORD, "198.51.100.1").status_code == 200
    assert attempt("mauvais", "203.0.113.50").status_code == 401  # cleared: no delay
    assert attempt("mauvais", "203.0.113.51").status_code == 401

    [slowed_event] = audit_events(app.settings.data_dir, "login.account_slowed")
    assert slowed_event["details"]["failures"] == 6 and slowed_event["source"] == "203.0.113.3"
    anyio.run(app.mail.deliver_due)
    notices = [m for m in mailer.sent if m.to == "membre@exemple.fr"]
    assert len(notices) == 1 and "retardé" in notices[0].text


def test_one_source_cannot_take_the_whole_hashing_gate(
        tmp_path: Path, mail: MailCatcher) -> None:
    """30 sign-ins at once from one /64 (each from another address of
    it): that source holds one slot and has one caller waiting, the rest
    get 503 at once, and another source's sign-ins are never refused."""
    with running_server(tmp_path, mail, COFFRE_PASSWORD_HASHING_SLOTS="2",
                        COFFRE_SOURCE_ATTEMPTS="1000",
                        COFFRE_TRUSTED_PROXIES="127.0.0.1/32, ::1") as srv:
        email = new_user(srv)

        def flood(n: int) -> httpx.Response:
            return sign_in(srv, f"inconnu-{n}@exemple.fr", "devine", f"2001:db8:20:1::{n + 1:x}")

        with ThreadPoolExecutor(max_workers=30) as pool:
            pending = [pool.submit(flood, n) for n in range(150)]
            mine = []
            while not all(p.done() for p in pending):
                mine.append(sign_in(srv, email, PASSWORD, "198.51.100.60").status_code)
            answers = [p.result().status_code for p in pending]
        assert set(answers) == {401, 503}, answers
        assert mine and set(mine) == {201}, mine
