"""Anti-automation (SEC-14): growing delays, then a lock, per guessed secret.

A throttle is keyed by what is guessed at (an e-mail address for a
password, a user for a second factor), never by whether it exists, so an
unknown account and a wrong password are throttled, and answered, alike.
Before the lock, each failure past the second makes the next attempt wait
twice as long (1 s, 2 s, 4 s...); at ``max_failures`` the key locks for
``lockout``. A success clears the key.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from coffre.db.engine import Database
from coffre.db.tables import Throttle
from coffre.errors import TooManyAttempts
from coffre.ports import Clock

FREE_FAILURES = 2
MAX_DELAY = timedelta(seconds=60)


def throttle_key(kind: str, subject: str) -> str:
    return hashlib.sha256(f"{kind}\n{subject}".encode()).hexdigest()


class Throttles:
    def __init__(self, db: Database, clock: Clock, *, max_failures: int,
                 lockout: timedelta) -> None:
        self.db = db
        self.clock = clock
        self.max_failures = max_failures
        self.lockout = lockout

    def check(self, kind: str, subject: str) -> None:
        """Raise ``TooManyAttempts`` (with ``retry_after``) while blocked."""
        with self.db.session() as session:
            row = session.get(Throttle, throttle_key(kind, subject))
            blocked = row.blocked_until if row is not None else None
        now = self.clock.now()
        if blocked is not None and blocked > now:
            wait = math.ceil((blocked - now).total_seconds())
            locked = row is not None and row.failures >= self.max_failures
            raise TooManyAttempts(
                "too many failed attempts: try again later"
                if locked else "please wait before trying again",
                retry_after=wait,
            )

    def failed(self, session: Session, kind: str, subject: str) -> int:
        """Count a failure in the caller's transaction; returns the count."""
        key = throttle_key(kind, subject)
        row = session.get(Throttle, key, with_for_update=True)
        if row is None:
            row = Throttle(key=key, kind=kind, failures=0)
            session.add(row)
        now = self.clock.now()
        row.failures += 1
        row.last_failure_at = now
        if row.failures >= self.max_failures:
            row.blocked_until = now + self.lockout
        elif row.failures > FREE_FAILURES:
            delay = timedelta(seconds=2 ** (row.failures - FREE_FAILURES - 1))
            row.blocked_until = now + min(delay, MAX_DELAY)
        return row.failures

    def locked(self, failures: int) -> bool:
        return failures >= self.max_failures

    def succeeded(self, session: Session, kind: str, subject: str) -> None:
        session.execute(delete(Throttle).where(Throttle.key == throttle_key(kind, subject)))
