"""Recipients prove control of their mailbox (or phone) with a one-time
code before a link shows or gives anything: a real server, real SMTP
(aiosmtpd) and a stub SMS provider (a real HTTP server in this process).

SEC-14 (throttling, lockout), SEC-29 (every step audited), SEC-30 (no code
nor phone number in logs, audit payloads or the data directory).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.backends import ago
from tests.conftest import MailCatcher, Server, free_port
from tests.integration.flows import code_mails, request_code, sql, upload_bytes, wait_code
from tests.integration.support import (
    assert_error,
    events_for,
    module_server,
    new_address,
    one_event,
    send,
)

SMS_PORT = free_port()
SMS_KEY = "cle-de-la-passerelle-sms"
PHONE = "+33612345678"
MiB = 1 << 20

mail, server, token, client, admin = module_server(
    "codes", COFFRE_SMS_URL=f"http://127.0.0.1:{SMS_PORT}/sms", COFFRE_SMS_API_KEY=SMS_KEY,
)


class SmsProvider:
    """A stub SMS gateway: a real HTTP server that records what it gets."""

    def __init__(self, port: int) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                provider.received.append({
                    "path": self.path,
                    "authorization": self.headers.get("Authorization"),
                    "json": json.loads(body),
                })
                self.send_response(provider.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SmsProvider:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def sms() -> Iterator[SmsProvider]:
    with SmsProvider(SMS_PORT) as provider:
        yield provider


def _link(server: Server, token: str) -> str:
    return f"{server.url}/api/v1/links/{token}"


def _address(transfer: dict[str, Any]) -> str:
    address: str = transfer["recipients"][0]["email"]
    return address


def _code_sent(server: Server, token: str) -> httpx.Response:
    return httpx.post(f"{_link(server, token)}/code")


def _verify(server: Server, token: str, code: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{_link(server, token)}/verify", json={"code": code}, headers=headers)


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**8:08d}"


def _kinds(server: Server, recipient_id: str) -> list[str]:
    return [k for (k,) in sql(server.data_dir, "SELECT kind FROM transfer_events "
                              "WHERE recipient_id = ? ORDER BY id", recipient_id)]


# -- the code before anything -------------------------------------------------------


def test_code_by_mail_before_file_names(server: Server, client: httpx.Client,
                                        mail: MailCatcher, admin: dict[str, Any]) -> None:
    """SEC-29: a recipient who opens a link must enter the code that arrived
    by mail before seeing file names; each step is audited."""
    name = "IRM-CANARY-NAME.dcm"
    transfer, (token,) = send(client, {name: b"contenu"}, subject="Objet-CANARY",
                              message="Message-CANARY")
    assert transfer["verify_recipients"] is True
    address = _address(transfer)
    recipient = transfer["recipients"][0]["id"]
    link = _link(server, token)
    org = admin["organisation_id"]

    # Only a masked address, the sender's name and the channel.
    refused = assert_error(httpx.get(link), 401, "authentication_required")
    local, domain = address.split("@")
    assert refused["details"] == {"reason": "code_required", "recipient": f"{local[0]}•••@{domain}",
                                  "sender": admin["email"], "channel": "email"}
    for url in (link, f"{link}/archive.zip", f"{link}/files/{transfer['files'][0]['id']}"):
        response = httpx.get(url)
        assert response.status_code == 401
        assert response.json()["error"]["details"]["reason"] == "code_required"
        assert "CANARY" not in response.text
    page = httpx.get(f"{server.url}/t/{token}")
    assert page.status_code == 401
    assert "Confirmez que ce lien vous est destiné" in page.text
    # Opening the link sends nothing (mail scanners open links too): one
    # button sends the code, and the page says none was sent yet.
    assert "Recevoir mon code par e-mail" in page.text and 'name="code"' not in page.text
    assert "Aucun code n'a encore été envoyé." in page.text
    assert not code_mails(mail, address)
    assert "CANARY" not in page.text
    assert local not in page.text  # masked
    # The mail with the link says a code will follow.
    link_mail = mail.to(address)[0].get_body(preferencelist=("plain",)).get_content()
    assert "un code à usage unique vous sera envoyé" in link_mail

    sent = _code_sent(server, token)
    assert sent.status_code == 202, sent.text
    assert sent.json() == {"channel": "email", "recipient": f"{local[0]}•••@{domain}",
                           "expires_in": 600, "resend_in": 60}
    code = wait_code(mail, address, 1)
    assert len(code) == 8 and code.isdigit()
    one_event(server.data_dir, "link.code_sent", object_type="recipient", object_id=recipient,
              organisation=org, actor=None, secrets=(code, token))
    # Stored only as a keyed hash, bound to this recipient.
    ((stored,),) = sql(server.data_dir, "SELECT code_hash FROM recipients WHERE id = ?",
                       recipient)
    assert stored and code not in stored and len(stored) == 64

    wrong = _verify(server, token, _wrong(code))
    assert_error(wrong, 401, "authentication_required",
                 {"reason": "wrong_code", "attempts_left": 4})
    one_event(server.data_dir, "link.code_failed", object_type="recipient", object_id=recipient,
              organisation=org, actor=None, outcome="failure", secrets=(code, _wrong(code)))

    verified = _verify(server, token, code)
    assert verified.status_code == 200, verified.text
    access = verified.json()["access"]
    assert verified.json()["expires_in"] == 3600
    cookie = verified.headers["set-cookie"]
    assert cookie.startswith(f"__Host-coffre-access={access};")
    for attribute in ("HttpOnly", "Path=/", "SameSite=strict", "Secure"):
        assert attribute in cookie
    one_event(server.data_dir, "link.code_verified", object_type="recipient",
              object_id=recipient, organisation=org, actor=None, secrets=(code, access, token))

    shown = httpx.get(link, headers={"X-Coffre-Access": access})
    assert shown.status_code == 200
    assert shown.json()["files"][0]["name"] == name
    assert shown.json()["subject"] == "Objet-CANARY"
    assert httpx.get(shown.json()["files"][0]["url"],
                     headers={"X-Coffre-Access": access}).content == b"contenu"
    # Single use: the same code does not open it again.
    assert_error(_verify(server, token, code), 401, "authentication_required",
                 {"reason": "no_code"})
    assert sql(server.data_dir, "SELECT code_hash FROM recipients WHERE id = ?",
               recipient) == [(None,)]
    # Never in the database in clear.
    assert sql(server.data_dir, "SELECT code_verified, password_verified FROM link_access "
               "WHERE recipient_id = ?", recipient) == [(1, 0)]


def test_a_grant_opens_its_own_link_only(server: Server, client: httpx.Client,
                                         mail: MailCatcher) -> None:
    transfer, (mine, theirs) = send(client, {"a.txt": b"a"}, recipients=2)
    addresses = [r["email"] for r in transfer["recipients"]]
    code = request_code(server.url, mail, mine, addresses[0])
    # My code is bound to my link: it does not verify the other one.
    request_code(server.url, mail, theirs, addresses[1])
    assert _verify(server, theirs, code).status_code == 401
    access = _verify(server, mine, code).json()["access"]
    other = assert_error(httpx.get(_link(server, theirs), headers={"X-Coffre-Access": access}),
                         401, "authentication_required")
    assert other["details"]["reason"] == "code_required"


def test_resend_is_throttled(server: Server, client: httpx.Client, mail: MailCatcher) -> None:
    """SEC-14: one code per resend interval, five an hour; a new code voids the last."""
    transfer, (token,) = send(client, {"a.txt": b"a"})
    address = _address(transfer)
    recipient = transfer["recipients"][0]["id"]
    first = request_code(server.url, mail, token, address)
    again = _code_sent(server, token)
    error = assert_error(again, 429, "too_many_attempts")
    assert error["details"]["reason"] == "resend_too_soon"
    assert 1 <= int(again.headers["retry-after"]) <= 60
    assert len(code_mails(mail, address)) == 1

    # A minute later (time travel), a new code replaces the first.
    sql(server.data_dir, "UPDATE recipients SET code_sent_at = ? WHERE id = ?",
        ago(seconds=61), recipient)
    second = request_code(server.url, mail, token, address)
    if second != first:
        assert _verify(server, token, first).status_code == 401
    assert _verify(server, token, second).status_code == 200

    # At most five an hour.
    sql(server.data_dir, "UPDATE recipients SET code_sends = 5, code_sent_at = ? WHERE id = ?",
        ago(minutes=2), recipient)
    capped = _code_sent(server, token)
    assert assert_error(capped, 429, "too_many_attempts")["details"]["reason"] == "too_many_codes"
    assert int(capped.headers["retry-after"]) > 3000
    # The web page says so in French.
    page = httpx.post(f"{server.url}/t/{token}/code")
    assert page.status_code == 429
    assert "Trop de codes ont été demandés pour ce lien" in page.text


# -- lockout ---------------------------------------------------------------------------


def test_five_wrong_codes_lock_the_link(server: Server, client: httpx.Client,
                                        mail: MailCatcher, admin: dict[str, Any]) -> None:
    """SEC-14: five wrong codes lock that link (429) and void the code; the
    right code no longer works while locked; after the lock time it works
    again with a new code. Every failure and the lock are audited."""
    transfer, (token, neighbour) = send(client, {"a.txt": b"a"}, recipients=2)
    address = _address(transfer)
    recipient = transfer["recipients"][0]["id"]
    code = request_code(server.url, mail, token, address)
    for attempt in range(1, 5):
        assert_error(_verify(server, token, _wrong(code)), 401, "authentication_required",
                     {"reason": "wrong_code", "attempts_left": 5 - attempt})
    locked = _verify(server, token, _wrong(code))
    assert assert_error(locked, 429, "too_many_attempts")["details"]["reason"] == "locked"
    assert 1700 <= int(locked.headers["retry-after"]) <= 1800

    # The right code no longer works; no new code is sent while locked.
    assert assert_error(_verify(server, token, code), 429,
                        "too_many_attempts")["details"]["reason"] == "locked"
    assert _code_sent(server, token).status_code == 429
    assert len(code_mails(mail, address)) == 1
    page = httpx.get(f"{server.url}/t/{token}")
    assert "ce lien est verrouillé jusqu" in page.text
    assert 'name="code"' not in page.text
    form = httpx.post(f"{server.url}/t/{token}/verify", data={"code": code})
    assert form.status_code == 429
    assert "Trop de codes erronés" in form.text

    org = admin["organisation_id"]
    failures = events_for(server.data_dir, "link.code_failed", recipient)
    assert [e["details"]["failures"] for e in failures] == [1, 2, 3, 4, 5]
    assert all(e["outcome"] == "failure" and code not in json.dumps(e) for e in failures)
    lock = one_event(server.data_dir, "link.locked", object_type="recipient",
                     object_id=recipient, organisation=org, actor=None, outcome="failure",
                     secrets=(code, token))
    assert lock["details"]["until"]
    assert _kinds(server, recipient).count("code_failed") == 5
    assert _kinds(server, recipient).count("link_locked") == 1
    assert sql(server.data_dir, "SELECT code_hash FROM recipients WHERE id = ?",
               recipient) == [(None,)]
    # The lock is per link.
    assert _code_sent(server, neighbour).status_code == 202

    # The lock time passes (time travel): a new code works.
    sql(server.data_dir, "UPDATE recipients SET locked_until = ?, code_sent_at = NULL "
        "WHERE id = ?", ago(seconds=1), recipient)
    fresh = request_code(server.url, mail, token, address)
    assert _verify(server, token, fresh).status_code == 200


def test_expired_code_is_refused_without_counting(server: Server, client: httpx.Client,
                                                  mail: MailCatcher) -> None:
    transfer, (token,) = send(client, {"a.txt": b"a"})
    recipient = transfer["recipients"][0]["id"]
    code = request_code(server.url, mail, token, _address(transfer))
    sql(server.data_dir, "UPDATE recipients SET code_expires_at = ? WHERE id = ?",
        ago(seconds=1), recipient)
    assert_error(_verify(server, token, code), 401, "authentication_required",
                 {"reason": "code_expired"})
    assert sql(server.data_dir, "SELECT code_failures, code_hash FROM recipients WHERE id = ?",
               recipient) == [(0, None)]


# -- the web page without JavaScript ----------------------------------------------------


def test_web_page_asks_for_the_code_first(server: Server, client: httpx.Client,
                                          mail: MailCatcher) -> None:
    transfer, (token,) = send(client, {"bilan-sanguin.pdf": b"pdf"}, password="mot de passe")
    address = _address(transfer)
    page = f"{server.url}/t/{token}"
    asked = httpx.post(f"{page}/code")
    assert asked.status_code == 303  # then the page says where and when it went
    assert asked.headers["location"] == f"/t/{token}"
    shown = httpx.get(page)
    assert re.search(r"Un code à 8 chiffres a été envoyé par e-mail à \w•••@[\w.-]+ à "
                     r"\d\d:\d\d", shown.text)
    assert re.search(r'id="code"[^>]*autofocus', shown.text)
    assert "Renvoyer le code" in shown.text
    code = wait_code(mail, address, 1)
    assert httpx.get(page).status_code == 401 and len(code_mails(mail, address)) == 1
    resent = httpx.post(f"{page}/code")
    assert resent.status_code == 429
    assert "Patientez" in resent.text

    forged = httpx.post(f"{page}/verify", data={"code": code},
                        headers={"Origin": "https://attaquant.example"})
    assert forged.status_code == 403  # SEC-22: not from another site
    wrong = httpx.post(f"{page}/verify", data={"code": _wrong(code)})
    assert wrong.status_code == 401
    assert "Code incorrect. Il vous reste 4 essais." in wrong.text
    right = httpx.post(f"{page}/verify", data={"code": code})
    assert right.status_code == 303
    assert right.headers["location"] == f"/t/{token}"
    access = right.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
    # Another browser (no grant): the used code is said to be no longer valid.
    again = httpx.get(page)
    assert again.status_code == 401 and "Recevoir mon code par e-mail" in again.text
    assert "Le dernier code envoyé n'est plus valable" in again.text
    cookie = {"Cookie": f"__Host-coffre-access={access}"}
    # Then the password, then the files.
    asked_password = httpx.get(page, headers=cookie)
    assert "Ce lien est protégé par un mot de passe" in asked_password.text
    assert "bilan-sanguin.pdf" not in asked_password.text
    unlocked = httpx.post(f"{page}/unlock", data={"password": "mot de passe"}, headers=cookie)
    assert unlocked.status_code == 303
    assert unlocked.headers["set-cookie"].startswith(f"__Host-coffre-access={access};")
    shown = httpx.get(page, headers=cookie)
    assert shown.status_code == 200
    assert "bilan-sanguin.pdf" in shown.text


# -- SMS --------------------------------------------------------------------------------


def test_code_by_sms_through_the_provider(server: Server, client: httpx.Client,
                                          mail: MailCatcher, sms: SmsProvider) -> None:
    """Codes by SMS for recipients only (SEC-9), through the HTTP provider."""
    by_mail, by_sms = new_address(), new_address()
    ids = [upload_bytes(client, b"x", "a.txt")]
    created = client.post("/api/v1/transfers", json={
        "files": ids, "recipients": [by_mail, {"email": by_sms, "phone": "+33 6 12 34 56 78"}]})
    assert created.status_code == 201, created.text
    transfer = created.json()
    token = transfer["links"][by_sms].rsplit("/", 1)[-1]
    link_mail = mail.to(by_sms)[0].get_body(preferencelist=("plain",)).get_content()
    assert "un code à usage unique vous sera envoyé par SMS" in link_mail

    details = httpx.get(_link(server, token)).json()["error"]["details"]
    assert details["channel"] == "sms"
    assert details["recipient"] == "+33•••••••78"
    # The page writes the masked number as people do, and offers the SMS.
    page = httpx.get(f"{server.url}/t/{token}").text
    assert "par SMS au 0• •• •• •• 78." in page and "Recevoir mon code par SMS" in page
    before = len(sms.received)
    sent = _code_sent(server, token)
    assert sent.status_code == 202, sent.text
    assert sent.json()["channel"] == "sms"
    (message,) = sms.received[before:]
    assert message["path"] == "/sms"
    assert message["authorization"] == f"Bearer {SMS_KEY}"
    assert message["json"]["to"] == PHONE
    assert set(message["json"]) == {"to", "text"}
    code = message["json"]["text"].split("votre code est ")[1][:8]
    assert code.isdigit()
    assert not code_mails(mail, by_sms)  # by SMS, not by mail
    assert _verify(server, token, code).status_code == 200
    sent_event = events_for(server.data_dir, "link.code_sent",
                            next(r["id"] for r in transfer["recipients"] if r["email"] == by_sms))
    assert sent_event[0]["details"]["channel"] == "sms"

    # The provider fails: 503, and the recipient may ask again at once.
    other = client.post("/api/v1/transfers", json={
        "files": [upload_bytes(client, b"x", "a.txt")],
        "recipients": [{"email": new_address(), "phone": PHONE}]}).json()
    token3 = next(iter(other["links"].values())).rsplit("/", 1)[-1]
    sms.status = 500
    try:
        assert_error(_code_sent(server, token3), 503, "storage_unavailable")
    finally:
        sms.status = 200
    assert _code_sent(server, token3).status_code == 202
    failed = events_for(server.data_dir, "link.code_not_sent", other["recipients"][0]["id"])
    assert len(failed) == 1 and failed[0]["outcome"] == "failure"


def test_phone_numbers_are_checked(client: httpx.Client) -> None:
    upload = upload_bytes(client, b"x", "a.txt")
    address = new_address()
    for recipients, field in [
        ([{"email": address, "phone": "06 12 34 56 78"}], "phone"),
        ([{"email": address, "phone": "+33abc"}], "phone"),
    ]:
        error = assert_error(client.post("/api/v1/transfers", json={
            "files": [upload], "recipients": recipients}), 400, "invalid_input")
        assert error["details"]["field"] == field
    unknown = client.post("/api/v1/transfers", json={
        "files": [upload], "recipients": [{"email": address, "phone": PHONE, "x": 1}]})
    assert unknown.status_code == 400


# -- turning verification off ----------------------------------------------------------


def test_turning_verification_off_needs_the_organisation(server: Server, client: httpx.Client,
                                                         admin: dict[str, Any]) -> None:
    refused = client.post("/api/v1/transfers", json={
        "files": [upload_bytes(client, b"x", "a.txt")],
        "recipients": [new_address()], "verify_recipients": False})
    error = assert_error(refused, 403, "permission_denied")
    assert error["details"]["reason"] == "verification_required"
    assert "one-time code" in error["message"]

    sql(server.data_dir, "UPDATE organisations SET allow_unverified_recipients = ? WHERE id = ?",
        True, admin["organisation_id"])
    try:
        transfer, (token,) = send(client, {"libre.txt": b"libre"}, verify_recipients=False)
    finally:
        sql(server.data_dir, "UPDATE organisations SET allow_unverified_recipients = ? "
            "WHERE id = ?", False, admin["organisation_id"])
    assert transfer["verify_recipients"] is False
    shown = httpx.get(_link(server, token))
    assert shown.status_code == 200
    assert shown.json()["files"][0]["name"] == "libre.txt"
    assert assert_error(_code_sent(server, token), 409, "conflict")["details"] == {
        "reason": "code_not_required"}


# -- nothing leaks ------------------------------------------------------------------------


def test_codes_and_phones_never_leak(server: Server, client: httpx.Client, mail: MailCatcher,
                                     sms: SmsProvider) -> None:
    """SEC-30 canary: after codes by mail and by SMS, neither a code nor the
    phone number is in the server's log, the audit trail or any file of
    the data directory (database, WAL, blobs, keys)."""
    canary_phone = "+33698765432"
    upload = upload_bytes(client, b"x", "a.txt")
    created = client.post("/api/v1/transfers", json={
        "files": [upload], "recipients": [{"email": new_address(), "phone": canary_phone}]})
    assert created.status_code == 201, created.text
    sms_token = next(iter(created.json()["links"].values())).rsplit("/", 1)[-1]
    before = len(sms.received)
    assert _code_sent(server, sms_token).status_code == 202
    sms_code = sms.received[before]["json"]["text"].split("votre code est ")[1][:8]
    assert _verify(server, sms_token, _wrong(sms_code)).status_code == 401
    assert _verify(server, sms_token, sms_code).status_code == 200

    transfer, (token,) = send(client, {"a.txt": b"a"})
    mail_code = request_code(server.url, mail, token, _address(transfer))
    assert _verify(server, token, mail_code).status_code == 200

    secrets = [canary_phone, canary_phone[1:], sms_code, mail_code]
    audit = json.dumps([json.loads(p) for (p,) in sql(
        server.data_dir, "SELECT payload FROM audit_events WHERE payload IS NOT NULL")])
    log = server.log()
    for secret in secrets:
        assert secret not in audit, secret
        assert secret not in log, secret
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, (path.name, secret)
