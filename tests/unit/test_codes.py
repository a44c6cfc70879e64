"""The one-time code rules (SEC-14), on a plain object: no database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from coffre.domain import codes
from coffre.errors import AuthenticationRequired, TooManyAttempts

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
RULES = codes.CodeRules(timedelta(minutes=10), 5, timedelta(seconds=60), timedelta(minutes=30))


@dataclass
class Holder:
    code_hash: str | None = None
    code_expires_at: datetime | None = None
    code_failures: int = 0
    code_sent_at: datetime | None = None
    code_sends: int = 0
    locked_until: datetime | None = None


def digest(code: str) -> str:
    return f"h:{code}"


def test_a_code_is_eight_digits_and_single_use() -> None:
    code = codes.new_code()
    assert len(code) == 8 and code.isdigit()
    holder = Holder()
    codes.issue(holder, digest(code), NOW, RULES)
    assert codes.check(holder, code, digest, NOW, RULES).outcome is codes.Outcome.VERIFIED
    again = codes.check(holder, code, digest, NOW, RULES)
    assert again.outcome is codes.Outcome.NONE_PENDING


def test_sends_are_throttled() -> None:
    holder = Holder()
    codes.issue(holder, digest("1"), NOW, RULES)
    with pytest.raises(TooManyAttempts) as soon:
        codes.issue(holder, digest("2"), NOW + timedelta(seconds=30), RULES)
    assert soon.value.details == {"reason": "resend_too_soon", "retry_after": 30}
    for minute in range(1, codes.MAX_SENDS_PER_HOUR):
        codes.issue(holder, digest("x"), NOW + timedelta(minutes=minute), RULES)
    with pytest.raises(TooManyAttempts) as capped:
        codes.issue(holder, digest("y"), NOW + timedelta(minutes=10), RULES)
    assert capped.value.details["reason"] == "too_many_codes"


def test_wrong_codes_lock_and_void_the_code() -> None:
    holder = Holder()
    codes.issue(holder, digest("12345678"), NOW, RULES)
    for left in (4, 3, 2, 1):
        wrong = codes.check(holder, "00000000", digest, NOW, RULES)
        assert wrong.outcome is codes.Outcome.WRONG
        assert isinstance(wrong.error, AuthenticationRequired)
        assert wrong.error.details["attempts_left"] == left
    last = codes.check(holder, "00000000", digest, NOW, RULES)
    assert last.outcome is codes.Outcome.LOCKED and holder.code_hash is None
    with pytest.raises(TooManyAttempts):
        codes.check_unlocked(holder, NOW + timedelta(minutes=29))
    codes.check_unlocked(holder, NOW + timedelta(minutes=30))


def test_an_expired_code_is_not_counted() -> None:
    holder = Holder()
    codes.issue(holder, digest("12345678"), NOW, RULES)
    late = codes.check(holder, "00000000", digest, NOW + timedelta(minutes=11), RULES)
    assert late.outcome is codes.Outcome.NONE_PENDING and holder.code_failures == 0
