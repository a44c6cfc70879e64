"""Anti-automation (SEC-14): growing delays, then a lock, per guessed
secret and source; and a ceiling on failures per source.

A throttle is keyed by what is guessed at (an e-mail address for a
password, a user for a second factor, a backup credential), never by
whether it exists, so an unknown account and a wrong password are
throttled, and answered, alike. Accounts and backup credentials are keyed
by the source address too (``subject``): failures from one address never
lock the owner out from another. Before the lock, each failure past the
second makes the next attempt wait twice as long (1 s, 2 s, 4 s...); at
``max_failures`` the key locks for ``lockout``. ``attempt`` counts an
attempt before the secret is checked (parallel guesses cannot outrun the
count); ``check`` then ``failed`` count only a failure, for secrets too
long to guess (backup credentials), so a matching secret is never
throttled. A success clears the key.

``SourceLimit`` bounds the failed password checks of one source address
per window (whatever the account, link or credential guessed at): a
credential stuffer spreading guesses over many accounts from one address
gets 429 once past ``limit``. Each check is reserved up front and handed
back when the secret matched (backup credentials, whose secrets cannot
be guessed, count only failures: ``check`` then ``failed``).

Rows are forgotten (``purge``, a scheduled job) once they block nothing
and their last failure is a day old, or their source window is over.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from coffre.db.engine import Database
from coffre.db.tables import Throttle
from coffre.domain.addresses import throttle_bucket
from coffre.errors import TooManyAttempts
from coffre.ports import Clock

FREE_FAILURES = 2
MAX_DELAY = timedelta(seconds=60)
#: A key without failure for this long starts again from zero.
FORGET_AFTER = timedelta(days=1)
SOURCE = "source"
ACCOUNT = "account"
#: An account's failures from every source are counted for this long
#: after the last one.
ACCOUNT_WINDOW = timedelta(hours=24)


def throttle_key(kind: str, subject: str) -> str:
    return hashlib.sha256(f"{kind}\n{subject}".encode()).hexdigest()


def per_source(subject: str, source: str | None) -> str:
    """The subject of a throttle kept per source as well (its bucket: an
    IPv6 /64 is one source, see ``domain.addresses``)."""
    return f"{subject}\n{throttle_bucket(source) or '-'}"


class Throttles:
    def __init__(self, db: Database, clock: Clock, *, max_failures: int,
                 lockout: timedelta, source_attempts: int = 40,
                 source_window: timedelta = timedelta(minutes=10),
                 account_attempts: int = 20) -> None:
        self.db = db
        self.clock = clock
        self.max_failures = max_failures
        self.lockout = lockout
        #: The per-source ceiling every password check goes through.
        self.sources = SourceLimit(db, clock, limit=source_attempts, window=source_window)
        #: The per-account slowdown every password sign-in goes through.
        self.accounts = AccountLimit(db, clock, free=account_attempts)

    def attempt(self, kind: str, subject: str) -> int:
        """Reserve one attempt before checking the secret; returns the
        failure count it will have if it fails.

        The attempt is counted as a failure up front, in its own
        transaction with the row locked, so parallel guesses cannot all
        slip through between a check and the count; ``succeeded`` clears
        it. Raises ``TooManyAttempts`` (with ``retry_after``) while blocked.
        """
        return self._count(kind, subject)

    def check(self, kind: str, subject: str) -> None:
        """Raise ``TooManyAttempts`` while the key is blocked (no write)."""
        now = self.clock.now()
        with self.db.session() as session:
            row = session.get(Throttle, throttle_key(kind, subject))
            if row is not None and row.blocked_until is not None and row.blocked_until > now:
                raise self._refusal(row.failures, row.blocked_until, now)

    def failed(self, kind: str, subject: str) -> int:
        """Count one failure after the secret was checked; returns the count."""
        return self._count(kind, subject, force=True)

    def _count(self, kind: str, subject: str, *, force: bool = False) -> int:
        key = throttle_key(kind, subject)
        now = self.clock.now()
        with self.db.session() as session:
            row = locked_row(session, key, kind)
            blocked = row.blocked_until
            if force or blocked is None or blocked <= now:
                row.failures += 1
                row.last_failure_at = now
                row.blocked_until = self._blocked_until(row.failures, now)
                return row.failures
            failures = row.failures
        raise self._refusal(failures, blocked, now)

    def _refusal(self, failures: int, blocked: datetime, now: datetime) -> TooManyAttempts:
        return TooManyAttempts(
            "too many failed attempts: try again later"
            if failures >= self.max_failures else "please wait before trying again",
            retry_after=max(1, math.ceil((blocked - now).total_seconds())),
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

    def purge(self) -> int:
        """Delete the rows that block nothing any more and would not count
        towards a lock (last failure a day old, source window over)."""
        now = self.clock.now()
        unblocked = or_(Throttle.blocked_until.is_(None), Throttle.blocked_until <= now)
        stale = or_(
            Throttle.last_failure_at.is_(None),
            Throttle.last_failure_at < now - FORGET_AFTER,
            and_(Throttle.kind == SOURCE, Throttle.last_failure_at <= now - self.sources.window),
        )
        with self.db.session() as session:
            result = session.execute(delete(Throttle).where(unblocked, stale))
            return int(getattr(result, "rowcount", 0) or 0)


class SourceLimit:
    """At most ``limit`` failed password checks per source (bucket: an
    IPv6 /64 is one source) and window (a fixed window, kept in a ``throttles`` row: ``failures`` is
    the count, ``last_failure_at`` the window's start)."""

    def __init__(self, db: Database, clock: Clock, *, limit: int, window: timedelta) -> None:
        self.db = db
        self.clock = clock
        self.limit = limit
        self.window = window

    def reserve(self, source: str | None) -> None:
        """Count one check up front; ``TooManyAttempts`` once the window is full."""
        self._count(throttle_bucket(source), refuse=True)

    def check(self, source: str | None) -> None:
        """``TooManyAttempts`` while the source's window is full (no write)."""
        source = throttle_bucket(source)
        if source is None:
            return
        now = self.clock.now()
        with self.db.session() as session:
            row = session.get(Throttle, throttle_key(SOURCE, source))
            if row is not None and row.blocked_until is not None and row.blocked_until > now:
                raise self._refusal(row.blocked_until, now)

    def failed(self, source: str | None) -> None:
        """Count one failure after the check (secrets too long to guess)."""
        self._count(throttle_bucket(source), refuse=False)

    def _count(self, source: str | None, *, refuse: bool) -> None:
        if source is None:
            return
        key = throttle_key(SOURCE, source)
        now = self.clock.now()
        with self.db.session() as session:
            row = locked_row(session, key, SOURCE)
            if row.last_failure_at is None or row.last_failure_at + self.window <= now:
                row.failures, row.last_failure_at, row.blocked_until = 0, now, None
            if row.failures < self.limit or not refuse:
                row.failures += 1
                if row.failures >= self.limit:
                    row.blocked_until = row.last_failure_at + self.window
                return
            ends = row.last_failure_at + self.window
        raise self._refusal(ends, now)

    @staticmethod
    def _refusal(ends: datetime, now: datetime) -> TooManyAttempts:
        return TooManyAttempts(
            "too many failed attempts from this address: try again later",
            retry_after=max(1, math.ceil((ends - now).total_seconds())),
        )

    def release(self, session: Session, source: str | None) -> None:
        """The secret matched: the reserved check does not count."""
        source = throttle_bucket(source)
        if source is None:
            return
        row = session.get(Throttle, throttle_key(SOURCE, source), with_for_update=True)
        if row is not None and row.failures > 0:
            row.failures -= 1
            if row.failures < self.limit:
                row.blocked_until = None


class AccountLimit:
    """Failed password checks of one account from every source at once:
    past ``free`` failures (with less than ``ACCOUNT_WINDOW`` between
    them), each check of that account, from anywhere, must wait a growing
    delay after the last (1 s, 2 s, 4 s... at most ``MAX_DELAY``).

    Never a lock: the owner, from any source, gets a check at least once
    a minute however many sources guess at the account, so a botnet
    spreading its guesses over many sources gets about one a minute
    instead of a lockout to trigger. A success clears it. Keyed by the
    account's address (known or not, alike); rows are purged like the
    other throttles (a day after the last failure)."""

    def __init__(self, db: Database, clock: Clock, *, free: int) -> None:
        self.db = db
        self.clock = clock
        self.free = free

    def check(self, subject: str) -> None:
        """``TooManyAttempts`` while the account's delay runs (no write)."""
        now = self.clock.now()
        with self.db.session() as session:
            row = session.get(Throttle, throttle_key(ACCOUNT, subject))
            if row is not None and row.blocked_until is not None and row.blocked_until > now:
                raise self._refusal(row.blocked_until, now)

    def attempt(self, subject: str) -> int:
        """Count one check up front (cleared by ``succeeded``); returns the
        account's failure count if it fails. ``TooManyAttempts`` while the
        delay runs (parallel checks cannot slip through together)."""
        key = throttle_key(ACCOUNT, subject)
        now = self.clock.now()
        with self.db.session() as session:
            row = locked_row(session, key, ACCOUNT)
            if row.blocked_until is not None and row.blocked_until > now:
                blocked = row.blocked_until
            else:
                if row.last_failure_at is None or row.last_failure_at + ACCOUNT_WINDOW <= now:
                    row.failures = 0
                row.failures += 1
                row.last_failure_at = now
                if row.failures >= self.free:
                    delay = timedelta(seconds=2 ** min(row.failures - self.free, 16))
                    row.blocked_until = now + min(delay, MAX_DELAY)
                return row.failures
        raise self._refusal(blocked, now)

    def starts(self, failures: int) -> bool:
        """This failure is the one that starts the delays (worth a mail)."""
        return failures == self.free

    def succeeded(self, session: Session, subject: str) -> None:
        session.execute(delete(Throttle).where(Throttle.key == throttle_key(ACCOUNT, subject)))

    @staticmethod
    def _refusal(ends: datetime, now: datetime) -> TooManyAttempts:
        return TooManyAttempts(
            "too many failed attempts on this account: please wait before trying again",
            retry_after=max(1, math.ceil((ends - now).total_seconds())),
        )


def locked_row(session: Session, key: str, kind: str) -> Throttle:
    """The row of ``key``, created if absent without racing another
    creator, and locked until the transaction ends (every instance counts
    in it one after the other)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else (
        sqlite.insert)
    session.execute(
        insert(Throttle).values(key=key, kind=kind[:32], failures=0).on_conflict_do_nothing()
    )
    row = session.get(Throttle, key, with_for_update=True)
    assert row is not None
    return row
