"""Live events: the doorbell that wakes Server-Sent Event streams.

The database stays the record (a stream re-reads its rows when woken);
an event only says "look again", naming ids (``transfer:<id>``), never
patient data, a name, an address or a secret. Events are announced inside
a unit of work with ``announce`` and go out only once it commits.

- ``InProcessEvents``: the embedded profile (one process, SQLite).
- ``PostgresEvents``: the distributed profile. Each commit sends
  ``pg_notify`` in its own transaction (PostgreSQL delivers it at commit,
  never for a rollback); each instance listens on one dedicated psycopg
  connection in a background thread, started by the first subscriber, and
  wakes its own subscribers. When that connection breaks it reconnects
  with a growing delay and wakes every subscriber (a notice may have been
  missed).

Never logs a connection string.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from typing import Any

import psycopg
from sqlalchemy import func as sqlfunc
from sqlalchemy import select
from sqlalchemy.orm import Session

from coffre.db.engine import Database

log = logging.getLogger(__name__)
CHANNEL = "coffre_events"
_TOPICS = "coffre.live_topics"
#: Longest delay between two attempts to listen again.
MAX_RETRY_SECONDS = 10.0


def announce(session: Session, topic: str) -> None:
    """Announce ``topic`` (ids only, at most 200 characters) once
    ``session``'s transaction commits; nothing if it rolls back."""
    if len(topic) > 200:
        raise ValueError("a live event topic names ids only")
    session.info.setdefault(_TOPICS, set()).add(topic)


def _take(session: Session) -> set[str]:
    topics: set[str] = session.info.pop(_TOPICS, set())
    return topics


class Subscription:
    """Woken when an event on ``topic`` (any topic if None) arrives; use
    from the event loop that created it."""

    def __init__(self, hub: _Hub, topic: str | None) -> None:
        self.topic = topic
        self._hub = hub
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def wants(self, topic: str | None) -> bool:
        return topic is None or self.topic is None or self.topic == topic

    def _wake(self) -> None:  # from any thread
        self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float) -> bool:
        """Wait for an event or ``timeout`` seconds; True if woken. The
        caller reads the database after either: a timeout is a fallback."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True

    def close(self) -> None:
        self._hub.remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class _Hub:
    """This process's subscribers; ``deliver`` is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: set[Subscription] = set()

    def add(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.add(subscription)

    def remove(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)

    def deliver(self, topic: str | None) -> None:
        """Wake the subscribers of ``topic`` (None: every subscriber)."""
        with self._lock:
            woken = [s for s in self._subscribers if s.wants(topic)]
        for subscription in woken:
            try:
                subscription._wake()
            except RuntimeError:  # its event loop has closed
                self.remove(subscription)

    def __len__(self) -> int:
        with self._lock:
            return len(self._subscribers)


class InProcessEvents:
    """Events within one process: delivered after the commit that announced them."""

    def __init__(self) -> None:
        self._hub = _Hub()

    def attach(self, db: Database) -> None:
        db.listen("after_commit", self._after_commit)
        db.listen("after_rollback", _take)

    def _after_commit(self, session: Session) -> None:
        for topic in _take(session):
            self._hub.deliver(topic)

    def publish(self, topics: Iterable[str]) -> None:
        for topic in topics:
            self._hub.deliver(topic)

    def subscribe(self, topic: str | None = None) -> Subscription:
        subscription = Subscription(self._hub, topic)
        self._hub.add(subscription)
        return subscription

    def close(self) -> None:
        return None


class PostgresEvents:
    """Events across every instance sharing one PostgreSQL database."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._hub = _Hub()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: Set while the listening connection is up (for tests and /readyz).
        self.listening = threading.Event()

    @classmethod
    def for_database(cls, db: Database) -> PostgresEvents:
        url = db.engine.url.set(drivername="postgresql")
        return cls(url.render_as_string(hide_password=False))

    def attach(self, db: Database) -> None:
        db.listen("before_commit", self._before_commit)
        db.listen("after_rollback", _take)

    @staticmethod
    def _before_commit(session: Session) -> None:
        # In the committing transaction: PostgreSQL sends it at commit.
        for topic in sorted(_take(session)):
            session.execute(select(sqlfunc.pg_notify(CHANNEL, topic)))

    def publish(self, topics: Iterable[str]) -> None:
        """Announce ``topics`` now, outside any unit of work."""
        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            for topic in topics:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, topic))

    def subscribe(self, topic: str | None = None) -> Subscription:
        subscription = Subscription(self._hub, topic)
        self._hub.add(subscription)
        self._start()
        return subscription

    def _start(self) -> None:
        with self._lock:
            if not self._stop.is_set() and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(
                    target=self._listen_forever, name="coffre-live-events", daemon=True)
                self._thread.start()

    def _listen_forever(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True,
                                     connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.5
                    self._hub.deliver(None)  # anything sent while we were away
                    self.listening.set()
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=1.0):
                            self._hub.deliver(notice.payload)
            except psycopg.Error as error:
                if self.listening.is_set():
                    log.warning("live events: lost the database (%s); listening again",
                                type(error).__name__)
                self.listening.clear()
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
        self.listening.clear()

    def close(self) -> None:
        with self._lock:
            self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)


def events_for(db: Database) -> InProcessEvents | PostgresEvents:
    """The bus for ``db``'s profile, attached to its sessions."""
    bus = (PostgresEvents.for_database(db) if db.engine.dialect.name == "postgresql"
           else InProcessEvents())
    bus.attach(db)
    return bus
