"""Anti-automation (SEC-14): growing delays, then a lock, per guessed secret.

A throttle is keyed by what is guessed at (an e-mail address for a
password, a user for a second factor), never by whether it exists, so an
unknown account and a wrong password are throttled, and answered, alike.
Before the lock, each failure past the second makes the next attempt wait
twice as long (1 s, 2 s, 4 s...); at ``max_failures`` the key locks for
``lockout``. Attempts are counted before the secret is checked, and a
success clears the key.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
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

    def attempt(self, kind: str, subject: str) -> int:
        """Reserve one attempt before checking the secret; returns the
        failure count it will have if it fails.

        The attempt is counted as a failure up front, in its own
        transaction with the row locked, so parallel guesses cannot all
        slip through between a check and the count; ``succeeded`` clears
        it. Raises ``TooManyAttempts`` (with ``retry_after``) while blocked.
        """
        key = throttle_key(kind, subject)
        now = self.clock.now()
        with self.db.session() as session:
            _insert_missing(session, key, kind)
            row = session.get(Throttle, key, with_for_update=True)
            assert row is not None
            blocked = row.blocked_until
            if blocked is None or blocked <= now:
                row.failures += 1
                row.last_failure_at = now
                row.blocked_until = self._blocked_until(row.failures, now)
                return row.failures
            locked = row.failures >= self.max_failures
        raise TooManyAttempts(
            "too many failed attempts: try again later"
            if locked else "please wait before trying again",
            retry_after=math.ceil((blocked - now).total_seconds()),
        )

    def _blocked_until(self, failures: int, now: datetime) -> datetime | None:
        if failures >= self.max_failures:
            return now + self.lockout
        if failures > FREE_FAILURES:
            delay = timedelta(seconds=2 ** (failures - FREE_FAILURES - 1))
            return now + min(delay, MAX_DELAY)
        return None

    def succeeded(self, session: Session, kind: str, subject: str) -> None:
        session.execute(delete(Throttle).where(Throttle.key == throttle_key(kind, subject)))


def _insert_missing(session: Session, key: str, kind: str) -> None:
    """Create the row if absent, without racing another creator."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else (
        sqlite.insert)
    session.execute(
        insert(Throttle).values(key=key, kind=kind, failures=0).on_conflict_do_nothing()
    )
