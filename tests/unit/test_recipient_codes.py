"""Recipients' one-time codes in-process, with a frozen clock: lifetime,
resend throttle, hourly cap, lockout and its end (SEC-14), keyed storage,
the SMS channel (in-memory and the real HTTP adapter against a local
stub), and the timeline steps each leaves (SEC-4)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from coffre.audit.trail import Context
from coffre.bootstrap import Coffre, build
from coffre.clock import FrozenClock
from coffre.crypto import credentials
from coffre.db.tables import Organisation, Recipient, Transfer, TransferEvent, User
from coffre.errors import (
    AuthenticationRequired,
    Conflict,
    InvalidInput,
    StorageError,
    TooManyAttempts,
)
from coffre.notify.memory import MemoryMailer, MemorySmsSender
from coffre.notify.sms import HttpSmsSender
from coffre.services.verification import (
    check_phone,
    mask_email,
    mask_phone,
    phone_context,
)
from coffre.settings import Settings

CTX = Context(source="192.0.2.1", user_agent="test")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def sms() -> MemorySmsSender:
    return MemorySmsSender()


@pytest.fixture
def app(tmp_path: Path, clock: FrozenClock, sms: MemorySmsSender) -> Iterator[Coffre]:
    coffre = build(Settings(data_dir=tmp_path, storage_url="memory://"), clock=clock,
                   mailer=MemoryMailer(), sms=sms)
    yield coffre
    coffre.close()


def _link(app: Coffre, phone: str | None = None) -> tuple[str, str]:
    """A transfer with one recipient, made directly in the database;
    returns (link token, recipient id)."""
    token = credentials.new_token()
    with app.db.session() as session:
        org = Organisation(name="Cabinet")
        session.add(org)
        session.flush()
        app.keys.create_kek(session, org.id)
        user = User(organisation_id=org.id, email="dr@cabinet.fr", password_hash="-",
                    display_name="Dr Martin")
        session.add(user)
        session.flush()
        transfer = Transfer(organisation_id=org.id, sender_id=user.id)
        session.add(transfer)
        session.flush()
        recipient = Recipient(transfer_id=transfer.id, position=0, email="dupont@exemple.fr",
                              token_hash=credentials.hash_token(token))
        session.add(recipient)
        session.flush()
        if phone:
            recipient.phone_sealed = app.keys.seal_text(session, org.id, phone,
                                                        phone_context(recipient.id))
        return token, recipient.id


def _mailed_code(app: Coffre) -> str:
    asyncio.run(app.mail.deliver_due())
    mailer = app.mailer
    assert isinstance(mailer, MemoryMailer)
    text = mailer.sent[-1].text
    return text.split(" : ")[1][:8]


def _kinds(app: Coffre, recipient_id: str) -> list[str]:
    with app.db.session() as session:
        return list(session.execute(select(TransferEvent.kind).where(
            TransferEvent.recipient_id == recipient_id).order_by(TransferEvent.id)).scalars())


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**8:08d}"


def test_masks_and_phone_numbers() -> None:
    assert mask_email("dupont@exemple.fr") == "d•••@exemple.fr"
    assert mask_phone("+33612345678") == "+33•••••••78"
    assert check_phone("+33 6 12 34 56 78") == "+33612345678"
    assert check_phone("+1.202.555.0100") == "+12025550100"
    for bad in ("0612345678", "+0612345678", "+33", "+33612345678901234", "+33 6 ab"):
        with pytest.raises(InvalidInput):
            check_phone(bad)


def test_code_is_stored_keyed_bound_and_single_use(app: Coffre) -> None:
    token, recipient_id = _link(app)
    sent = app.codes.send_code(token, CTX)
    assert (sent.channel, sent.recipient, sent.expires_in) == ("email", "d•••@exemple.fr", 600)
    code = _mailed_code(app)
    assert len(code) == 8 and code.isdigit()
    with app.db.session() as session:
        stored = session.get(Recipient, recipient_id)
        assert stored is not None and stored.code_hash is not None
        # Not a plain hash a database dump could be searched with.
        assert stored.code_hash != hashlib.sha256(code.encode()).hexdigest()
        assert stored.code_hash != hashlib.sha256(f"{recipient_id}\n{code}".encode()).hexdigest()
        org = stored.transfer.organisation_id
        # Bound to the recipient: the same code for another one hashes differently.
        assert app.keys.code_digest(session, org, "another", code) != stored.code_hash
    access = app.codes.verify(token, code, None, CTX)
    with pytest.raises(AuthenticationRequired) as no_code:
        app.codes.verify(token, code, None, CTX)
    assert no_code.value.details["reason"] == "no_code"
    # The grant opens the link; "opened" is recorded before and after.
    assert app.links.view(token, access, CTX).sender == "Dr Martin"
    assert _kinds(app, recipient_id) == ["code_sent", "code_verified", "link_opened"]


def test_code_expires(app: Coffre, clock: FrozenClock) -> None:
    token, _ = _link(app)
    app.codes.send_code(token, CTX)
    code = _mailed_code(app)
    clock.advance(timedelta(minutes=10))
    with pytest.raises(AuthenticationRequired) as expired:
        app.codes.verify(token, code, None, CTX)
    assert expired.value.details["reason"] == "code_expired"


def test_resend_throttle_and_hourly_cap(app: Coffre, clock: FrozenClock) -> None:
    """SEC-14: one code a minute, five an hour."""
    token, _ = _link(app)
    app.codes.send_code(token, CTX)
    clock.advance(timedelta(seconds=59))
    with pytest.raises(TooManyAttempts) as soon:
        app.codes.send_code(token, CTX)
    assert soon.value.details == {"reason": "resend_too_soon", "retry_after": 1}
    for _ in range(4):
        clock.advance(timedelta(seconds=61))
        app.codes.send_code(token, CTX)
    clock.advance(timedelta(seconds=61))
    with pytest.raises(TooManyAttempts) as capped:
        app.codes.send_code(token, CTX)
    assert capped.value.details["reason"] == "too_many_codes"
    clock.advance(timedelta(hours=1))
    app.codes.send_code(token, CTX)


def test_lock_after_five_wrong_codes_then_unlock(app: Coffre, clock: FrozenClock) -> None:
    """SEC-14: the fifth wrong code locks the link for 30 minutes and voids
    the code; once the time has passed, a new code works."""
    token, recipient_id = _link(app)
    app.codes.send_code(token, CTX)
    code = _mailed_code(app)
    for left in (4, 3, 2, 1):
        with pytest.raises(AuthenticationRequired) as wrong:
            app.codes.verify(token, _wrong(code), None, CTX)
        assert wrong.value.details == {"reason": "wrong_code", "attempts_left": left}
    with pytest.raises(TooManyAttempts) as locked:
        app.codes.verify(token, _wrong(code), None, CTX)
    assert locked.value.details == {"reason": "locked", "retry_after": 1800}
    with pytest.raises(TooManyAttempts):
        app.codes.verify(token, code, None, CTX)
    clock.advance(timedelta(minutes=29))
    with pytest.raises(TooManyAttempts):
        app.codes.send_code(token, CTX)
    assert app.codes.challenge_for(token).locked_until is not None
    clock.advance(timedelta(minutes=1))
    assert app.codes.challenge_for(token).locked_until is None
    with pytest.raises(AuthenticationRequired):  # the old code was voided
        app.codes.verify(token, code, None, CTX)
    app.codes.send_code(token, CTX)
    app.codes.verify(token, _mailed_code(app), None, CTX)
    assert _kinds(app, recipient_id) == (
        ["code_sent"] + ["code_failed"] * 5 + ["link_locked", "code_sent", "code_verified"])


def test_asking_for_a_new_code_does_not_forgive_wrong_ones(app: Coffre,
                                                           clock: FrozenClock) -> None:
    """SEC-14: four wrong codes, a new code, one more wrong: locked."""
    token, _ = _link(app)
    app.codes.send_code(token, CTX)
    code = _mailed_code(app)
    for _ in range(4):
        with pytest.raises(AuthenticationRequired):
            app.codes.verify(token, _wrong(code), None, CTX)
    clock.advance(timedelta(minutes=2))
    app.codes.send_code(token, CTX)
    with pytest.raises(TooManyAttempts):
        app.codes.verify(token, _wrong(_mailed_code(app)), None, CTX)


def test_code_by_sms(app: Coffre, sms: MemorySmsSender) -> None:
    token, _ = _link(app, phone="+33612345678")
    challenge = app.codes.challenge_for(token)
    assert (challenge.channel, challenge.recipient) == ("sms", "+33•••••••78")
    app.codes.send_code(token, CTX)
    ((number, text),) = sms.sent
    assert number == "+33612345678"
    code = text.split("votre code est ")[1][:8]
    asyncio.run(app.mail.deliver_due())
    assert isinstance(app.mailer, MemoryMailer) and not app.mailer.sent
    app.codes.verify(token, code, None, CTX)


def test_no_code_for_a_transfer_without_verification(app: Coffre) -> None:
    token, _ = _link(app)
    with app.db.session() as session:
        recipient = session.execute(select(Recipient)).scalar_one()
        recipient.transfer.verify_recipients = False
    with pytest.raises(Conflict):
        app.codes.send_code(token, CTX)
    assert app.links.view(token, None, CTX).files == []


# -- the HTTP adapter against a local stub provider ---------------------------------------


class _Provider:
    def __init__(self, status: int) -> None:
        self.status = status
        self.received: list[dict[str, Any]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                provider.received.append({"auth": self.headers.get("Authorization"),
                                          "type": self.headers.get("Content-Type"),
                                          "body": json.loads(self.rfile.read(length))})
                self.send_response(provider.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/sms"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_http_sms_sender_posts_json_with_the_key() -> None:
    provider = _Provider(202)
    try:
        HttpSmsSender(provider.url, "secret-key").send("+33612345678", "Coffre : 12345678")
    finally:
        provider.close()
    (got,) = provider.received
    assert got == {"auth": "Bearer secret-key", "type": "application/json",
                   "body": {"to": "+33612345678", "text": "Coffre : 12345678"}}


def test_http_sms_sender_failures_are_storage_errors() -> None:
    provider = _Provider(500)
    try:
        with pytest.raises(StorageError) as refused:
            HttpSmsSender(provider.url).send("+33612345678", "x")
    finally:
        provider.close()
    assert "+336" not in str(refused.value)
    with pytest.raises(StorageError):
        HttpSmsSender("http://127.0.0.1:9/none").send("+33612345678", "x")
