"""SEC-12: the password policy, with the breached-password list shipped in
the package (no network), and the reset link kept out of the access log."""

from __future__ import annotations

import socket

import pytest

from coffre.domain.accounts import check_password_policy
from coffre.domain.passwords import breached_passwords, is_breached
from coffre.errors import InvalidInput
from coffre.http.middleware import redact_path


def test_the_list_ships_with_the_package_and_loads_offline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the breached-password check must not use the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    breached_passwords.cache_clear()
    known = breached_passwords()
    assert len(known) >= 30_000 - 1
    assert {"password", "123456", "qwerty123456", "1qaz2wsx3edc"} <= known


@pytest.mark.parametrize("password", ["1qaz2wsx3edc", "1QAZ2WSX3EDC", "Qwerty123456",
                                      "qwerty 123456", "QAZWSXEDCRFV", "LeaveMeAlone"])
def test_breached_passwords_are_refused_whatever_their_case(password: str) -> None:
    assert is_breached(password)
    with pytest.raises(InvalidInput) as refused:
        check_password_policy(password)
    assert refused.value.details == {"field": "password", "reason": "breached_password"}


@pytest.mark.parametrize("password", ["une phrase de passe assez longue",
                                      "correct horse battery staple", "x7#Lq!9vR2mZ",
                                      "é" * 3 + "mot de passe long" + "a" * 200])
def test_other_passwords_pass(password: str) -> None:
    assert not is_breached(password)
    check_password_policy(password)


def test_the_other_rules_hold() -> None:
    for short in ("", "court", "onze-caract"):
        with pytest.raises(InvalidInput):
            check_password_policy(short)
    check_password_policy("abcd" * 16)  # 64 characters (SEC-12: >= 64 allowed)
    check_password_policy("abcd" * 64)  # 256
    with pytest.raises(InvalidInput):
        check_password_policy("abcd" * 64 + "e")
    with pytest.raises(InvalidInput):
        check_password_policy("abababababababab")  # too repetitive


def test_reset_links_are_redacted_from_the_access_log() -> None:
    assert redact_path("/password/reset/s3cr3t-token") == "/password/reset/[redacted]"
