"""Open deposit links under abuse (issue 15, finding 10), against a real
server and its mail: joining many times with a victim's address makes one
depositor and a bounded number of code mails; joins are limited per
source (other sources keep joining); unverified joins expire and stop
counting, so a flood cannot close the link to a real patient."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.backends import ago
from tests.conftest import MailCatcher, Server
from tests.integration.flows import audit_events, code_mails, sql, wait_code
from tests.integration.support import module_server, new_address

PER_SOURCE = 30
#: A loopback address declared as a reverse proxy (its X-Forwarded-For counts).
PROXY = "127.0.0.9"
mail, server, token, client, admin = module_server(
    "deposit-joins", COFFRE_DEPOSIT_JOINS_PER_SOURCE=str(PER_SOURCE),
    COFFRE_TRUSTED_PROXIES=f"{PROXY}/32")


def open_link(client: httpx.Client) -> tuple[str, str]:
    made = client.post("/api/v1/requests", json={"message": "Vos analyses, merci",
                                                 "open_link": True})
    assert made.status_code == 201, made.text
    body = made.json()
    return body["id"], body["open_url"].rsplit("/", 1)[-1]


def from_source(server: Server, address: str) -> httpx.Client:
    """A client whose connections come from ``address`` (127.0.0.0/8 is all
    loopback): another source for the server."""
    return httpx.Client(base_url=server.url, timeout=60,
                        transport=httpx.HTTPTransport(local_address=address))


@pytest.fixture
def attacker(server: Server) -> Iterator[httpx.Client]:
    with from_source(server, "127.0.0.2") as c:
        yield c


def join(http: httpx.Client, open_token: str, email: str) -> httpx.Response:
    return http.post(f"/api/v1/deposit/open/{open_token}/join", json={"email": email})


def depositors(server: Server, request_id: str, email: str | None = None) -> int:
    if email is None:
        rows = sql(server.data_dir,
                   "SELECT count(*) FROM request_depositors WHERE request_id = ?", request_id)
    else:
        rows = sql(server.data_dir, "SELECT count(*) FROM request_depositors "
                   "WHERE request_id = ? AND email = ?", request_id, email)
    return int(rows[0][0])


def settle(mail: MailCatcher, address: str) -> int:
    """Code mails to ``address`` once the outbox is quiet."""
    seen, quiet = -1, 0
    while quiet < 6:
        now = len(code_mails(mail, address))
        quiet = quiet + 1 if now == seen else 0
        seen = now
        time.sleep(0.25)
    return seen


def test_joining_again_with_one_address_is_one_depositor_and_few_mails(
        server: Server, mail: MailCatcher, client: httpx.Client, attacker: httpx.Client) -> None:
    """The reviewed attack: 200 joins with a victim's address made 200
    depositors, mailed about 200 codes and filled the link."""
    request_id, open_token = open_link(client)
    victim = new_address("victime")
    answers = [join(attacker, open_token, victim) for _ in range(200)]
    accepted = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    # The same depositor each time (same token), until the source's limit.
    assert len(accepted) == PER_SOURCE, [a.text for a in refused[:1]]
    assert len({a.json()["token"] for a in accepted}) == 1
    assert depositors(server, request_id, victim) == 1
    for answer in refused:
        assert answer.status_code == 429
        assert answer.json()["error"]["details"]["reason"] == "too_many_joins"
        assert int(answer.headers["retry-after"]) >= 1
    # One code, and no more than the resend rules allow (one a minute).
    assert 1 <= settle(mail, victim) <= 5
    # The victim, who gets the code, is that depositor: it verifies.
    code = wait_code(mail, victim, 1)
    depositor_token = accepted[0].json()["token"]
    verified = httpx.post(f"{server.url}/api/v1/deposit/{depositor_token}/verify",
                          json={"code": code})
    assert verified.status_code == 200, verified.text
    # Audited: the first join, the re-joins, and the first refusal only.
    depositor_id = sql(server.data_dir, "SELECT id FROM request_depositors "
                       "WHERE request_id = ? AND email = ?", request_id, victim)[0][0]
    mine = [e for e in audit_events(server.data_dir)
            if (e.get("object") or {}).get("id") == depositor_id]
    assert [e["action"] for e in mine].count("request.depositor_joined") == 1
    assert [e["action"] for e in mine].count("request.depositor_rejoined") == PER_SOURCE - 1
    limited = [e for e in audit_events(server.data_dir, "deposit.rate_limited")
               if e["source"] == "127.0.0.2" and e["details"]["reason"] == "too_many_joins"]
    assert len(limited) == 1, limited
    assert limited[0]["outcome"] == "failure"
    assert victim not in str(audit_events(server.data_dir, "deposit.rate_limited"))


def test_a_real_depositor_joins_after_a_flood_from_elsewhere(
        server: Server, mail: MailCatcher, client: httpx.Client) -> None:
    """Joins with new addresses from one source stop at its limit; the
    patient, from another source, still joins and gets their code."""
    request_id, open_token = open_link(client)
    with from_source(server, "127.0.0.3") as flooder:
        statuses = [join(flooder, open_token, new_address("faux")).status_code
                    for _ in range(PER_SOURCE + 10)]
    assert statuses.count(201) == PER_SOURCE
    assert set(statuses[PER_SOURCE:]) == {429}
    assert depositors(server, request_id) == PER_SOURCE
    patient = new_address("patient")
    joined = join(client, open_token, patient)
    assert joined.status_code == 201, joined.text
    wait_code(mail, patient, 1)


def test_joins_from_one_ipv6_64_share_one_limit(
        server: Server, client: httpx.Client) -> None:
    """Every address of a /64 is one source: a flooder rotating through its
    prefix stops at the limit; the next /64 still joins."""
    request_id, open_token = open_link(client)
    with from_source(server, PROXY) as proxy:
        statuses = [proxy.post(f"/api/v1/deposit/open/{open_token}/join",
                               json={"email": new_address("faux")},
                               headers={"X-Forwarded-For": f"2001:db8:30:1::{n + 1:x}"}
                               ).status_code for n in range(PER_SOURCE + 2)]
        assert statuses.count(201) == PER_SOURCE and statuses[-2:] == [429, 429]
        other = proxy.post(f"/api/v1/deposit/open/{open_token}/join",
                           json={"email": new_address("patient")},
                           headers={"X-Forwarded-For": "2001:db8:30:2::1"})
        assert other.status_code == 201, other.text
    assert depositors(server, request_id) == PER_SOURCE + 1
    limited = [e for e in audit_events(server.data_dir, "deposit.rate_limited")
               if e["source"].startswith("2001:db8:30:1:")]
    assert limited


def test_unverified_joins_expire_and_stop_filling_the_link(
        server: Server, mail: MailCatcher, client: httpx.Client) -> None:
    """200 joins spread over sources whose codes are never used fill the
    link only while their codes are pending (here aged past their
    lifetime in the database, as time would)."""
    request_id, open_token = open_link(client)
    for n in range(200 // PER_SOURCE + 1):
        with from_source(server, f"127.0.1.{n + 1}") as source:
            for _ in range(min(PER_SOURCE, 200 - n * PER_SOURCE)):
                assert join(source, open_token, new_address("faux")).status_code == 201
    patient = new_address("patient")
    with from_source(server, "127.0.2.1") as home:
        full = join(home, open_token, patient)
        assert full.status_code == 429, full.text
        assert full.json()["error"]["details"]["reason"] == "too_many_depositors"
        # The codes' lifetime passes without a verification.
        sql(server.data_dir, "UPDATE request_depositors SET code_expires_at = ?, "
            "created_at = ? WHERE request_id = ?", ago(minutes=1), ago(hours=1), request_id)
        joined = join(home, open_token, patient)
        assert joined.status_code == 201, joined.text
    code = wait_code(mail, patient, 1)
    verified = httpx.post(f"{server.url}/api/v1/deposit/{joined.json()['token']}/verify",
                          json={"code": code})
    assert verified.status_code == 200, verified.text


def test_codes_to_one_address_are_bounded_across_links(
        server: Server, mail: MailCatcher, client: httpx.Client) -> None:
    """Each open link mails one code to a new depositor: many links do not
    make many mails to one address."""
    victim = new_address("victime")
    answers: list[Any] = []
    for n in range(12):
        _, open_token = open_link(client)
        with from_source(server, f"127.0.3.{n + 1}") as source:
            answers.append(join(source, open_token, victim))
    sent = settle(mail, victim)
    assert sent == 10, sent  # COFFRE_DEPOSIT_CODES_PER_ADDRESS
    refused = [a for a in answers if a.status_code == 429]
    assert len(refused) == 2
    reasons = {a.json()["error"]["details"]["reason"] for a in refused}
    assert reasons == {"too_many_codes_for_address"}
