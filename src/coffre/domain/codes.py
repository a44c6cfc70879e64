"""One-time codes that prove control of a mailbox (or a phone): recipients
of a transfer and depositors of an upload request follow the same rules.

A code is 8 digits from the OS CSPRNG, valid ``lifetime``, kept only as a
keyed digest (computed by the caller) and used once. Sends are throttled
(one per ``resend_interval``, at most ``MAX_SENDS_PER_HOUR``); ``attempts``
wrong codes lock the link for ``lock_time`` and void the code. Failures
are not forgiven by asking for a new code: the lock counts every wrong
code since the last success or lock.

The functions act on any row with the code columns (``CodeHolder``); the
caller holds that row locked for the transaction.
"""

from __future__ import annotations

import enum
import hmac
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from coffre.errors import AuthenticationRequired, TooManyAttempts

CODE_DIGITS = 8
MAX_SENDS_PER_HOUR = 5


class CodeHolder(Protocol):
    code_hash: str | None
    code_expires_at: datetime | None
    code_failures: int
    code_sent_at: datetime | None
    code_sends: int
    locked_until: datetime | None


@dataclass(frozen=True)
class CodeRules:
    lifetime: timedelta
    attempts: int
    resend_interval: timedelta
    lock_time: timedelta


class Outcome(enum.Enum):
    VERIFIED = "verified"
    WRONG = "wrong"
    LOCKED = "locked"  # this wrong code was the last one allowed
    NONE_PENDING = "none_pending"


@dataclass(frozen=True)
class Check:
    outcome: Outcome
    failures: int = 0
    #: What to raise once the failure (and any lock) is committed.
    error: AuthenticationRequired | TooManyAttempts | None = None


def seconds(delta: timedelta) -> int:
    """A wait in whole seconds, at least one."""
    return max(math.ceil(delta.total_seconds()), 1)


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def check_unlocked(holder: CodeHolder, now: datetime) -> None:
    if holder.locked_until is not None and holder.locked_until > now:
        raise TooManyAttempts(
            "too many wrong codes: this link is locked for a while",
            reason="locked", retry_after=seconds(holder.locked_until - now),
        )


def check_resend(holder: CodeHolder, now: datetime, rules: CodeRules) -> int:
    """Refuse while sends are throttled; otherwise the sends counted in
    the last hour."""
    last = holder.code_sent_at
    if last is not None and now - last < rules.resend_interval:
        raise TooManyAttempts(
            "a code was sent a moment ago: wait before asking for another",
            reason="resend_too_soon", retry_after=seconds(last + rules.resend_interval - now),
        )
    recent = last is not None and now - last < timedelta(hours=1)
    sends = holder.code_sends if recent else 0
    if sends >= MAX_SENDS_PER_HOUR:
        assert last is not None
        raise TooManyAttempts(
            "too many codes were sent for this link: try again later",
            reason="too_many_codes", retry_after=seconds(last + timedelta(hours=1) - now),
        )
    return sends


def issue(holder: CodeHolder, digest: str, now: datetime, rules: CodeRules) -> None:
    """Record a new code's digest (voiding the previous code), or refuse
    while sends are throttled."""
    sends = check_resend(holder, now, rules)
    holder.code_hash = digest
    holder.code_expires_at = now + rules.lifetime
    holder.code_sent_at = now
    holder.code_sends = sends + 1


def withdraw(holder: CodeHolder) -> None:
    """The code could not be delivered: void it and give the send back."""
    holder.code_hash = None
    holder.code_expires_at = None
    holder.code_sent_at = None
    holder.code_sends = max(holder.code_sends - 1, 0)


def check(holder: CodeHolder, code: str, digest_of: Callable[[str], str], now: datetime,
          rules: CodeRules) -> Check:
    """Compare ``code`` with the pending one; counts a wrong one and locks
    at the last allowed. An expired or missing code is not counted (there
    is nothing to guess at), but must be asked for again."""
    code = re.sub(r"\s", "", code)
    pending = holder.code_hash is not None and holder.code_expires_at is not None
    if not pending or (holder.code_expires_at or now) <= now:
        holder.code_hash = None
        return Check(Outcome.NONE_PENDING, error=AuthenticationRequired(
            "no code is pending for this link: ask for a new one",
            reason="code_expired" if pending else "no_code",
        ))
    assert holder.code_hash is not None
    if hmac.compare_digest(digest_of(code), holder.code_hash):
        holder.code_hash = None  # single use
        holder.code_expires_at = None
        holder.code_failures = 0
        return Check(Outcome.VERIFIED)
    holder.code_failures += 1
    failures = holder.code_failures
    if failures < rules.attempts:
        return Check(Outcome.WRONG, failures, AuthenticationRequired(
            "wrong code", reason="wrong_code", attempts_left=rules.attempts - failures))
    holder.locked_until = now + rules.lock_time
    holder.code_hash = None
    holder.code_expires_at = None
    holder.code_failures = 0
    return Check(Outcome.LOCKED, failures, TooManyAttempts(
        "too many wrong codes: this link is locked for a while",
        reason="locked", retry_after=seconds(rules.lock_time)))
