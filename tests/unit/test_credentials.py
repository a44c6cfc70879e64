"""Passwords and tokens (SEC-12, SEC-13, SEC-15)."""

from __future__ import annotations

import re

import pytest
from argon2 import extract_parameters

from coffre.crypto import credentials
from coffre.domain.accounts import check_password_policy, normalise_email, parse_scopes
from coffre.errors import InvalidInput


def test_password_hash_is_argon2id_above_the_floor() -> None:
    stored = credentials.hash_password("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    params = extract_parameters(stored)
    assert params.memory_cost >= 19 * 1024
    assert params.time_cost >= 2
    assert params.salt_len >= 16
    assert credentials.verify_password(stored, "correct horse battery staple")
    assert not credentials.verify_password(stored, "wrong horse battery staple")


def test_unknown_account_check_fails_without_error() -> None:
    assert credentials.verify_password(None, "anything at all") is False


def test_tokens_have_256_bits_and_are_stored_hashed() -> None:
    token = credentials.new_token()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert credentials.hash_token(token) != token
    assert len(credentials.hash_token(token)) == 64
    assert credentials.new_token() != token


@pytest.mark.parametrize("password", ["short", "a" * 12, "x" * 257])
def test_password_policy_rejects(password: str) -> None:
    with pytest.raises(InvalidInput):
        check_password_policy(password)


def test_password_policy_accepts_a_passphrase() -> None:
    check_password_policy("correct horse battery staple")


@pytest.mark.parametrize("raw,expected", [
    ("Dr.Martin@Cabinet.FR", "dr.martin@cabinet.fr"),
    ("  a@b.fr ", "a@b.fr"),
])
def test_emails_are_normalised(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "pas-une-adresse", "a@b", "a b@c.fr", "a@b.fr\r\nBcc: x@y.fr",
                                 '"x"@y.fr'])
def test_invalid_emails_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidInput):
        normalise_email(raw)


def test_scopes_are_validated() -> None:
    assert {str(s) for s in parse_scopes("transfers:read admin")} == {"transfers:read", "admin"}
    with pytest.raises(InvalidInput):
        parse_scopes("root")
    with pytest.raises(InvalidInput):
        parse_scopes("")


def test_the_hashing_gate_refuses_past_its_slots_and_queue_and_lets_a_holder_hash() -> None:
    """Finding 9: at most ``slots`` running and ``waiting`` queued; any
    other caller is refused at once with Busy (503, Retry-After), not
    queued; the thread holding a slot may hash again without another."""
    import threading

    from coffre.errors import Busy

    gate = credentials.HashingGate(slots=1, waiting=1, wait_seconds=30)
    inside, release = threading.Event(), threading.Event()
    outcomes: list[str] = []

    def hold() -> None:
        with gate.slot(), gate.slot():  # re-entered by the holder: no second slot
            inside.set()
            release.wait(30)

    def queue() -> None:
        with gate.slot():
            outcomes.append("queued, then ran")

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(30)
    waiter = threading.Thread(target=queue)
    waiter.start()
    while gate._admitted < 2:  # the waiter is in the queue
        threading.Event().wait(0.01)
    with pytest.raises(Busy) as refused, gate.slot():
        pass
    assert refused.value.status == 503 and refused.value.details["retry_after"] >= 1
    release.set()
    holder.join(30)
    waiter.join(30)
    assert outcomes == ["queued, then ran"]
    with gate.slot():  # free again
        pass
