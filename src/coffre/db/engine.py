"""Engine and session factory, for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from coffre.errors import DatabaseUnavailable


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and pick the psycopg 3 driver."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed transaction survives power loss (no acknowledged byte lost).
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    # Deleted rows (wrapped keys of shredded files) are overwritten, not left in free pages.
    cur.execute("PRAGMA secure_delete=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front, so read-then-write
    # transactions serialise instead of failing with "database is locked".
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _unreachable(exc: DBAPIError) -> bool:
    """Whether the database itself failed (as opposed to a bad statement):
    a lost connection, a refused one, or SQLite still locked after its
    busy timeout."""
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    if type(exc.orig).__module__.startswith("psycopg"):
        return True  # psycopg's OperationalError: connection and server failures
    return "database is locked" in str(exc.orig)


class Database:
    """Owns the engine; hands out sessions as units of work."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on normal exit, rolled back on error.
        A database that cannot be reached raises ``DatabaseUnavailable``
        (503), not the driver's error."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except DBAPIError as exc:
            if _unreachable(exc):
                raise DatabaseUnavailable("the database is unavailable; try again shortly") from exc
            raise

    def listen(self, name: str, fn: Callable[..., Any]) -> None:
        """Register a session event (``before_commit``, ``after_commit``...)
        on every session of this database."""
        event.listen(self._sessions, name, fn)

    def flush_deleted(self) -> None:
        """After crypto-shredding: fold the WAL into the database so old
        pages holding destroyed keys do not linger in the WAL file."""
        if self.engine.dialect.name != "sqlite":
            return
        raw = self.engine.raw_connection()  # outside any transaction
        try:
            cur = raw.cursor()
            cur.execute("PRAGMA busy_timeout=2000")  # best effort: never stall a request
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
        finally:
            raw.close()

    def dispose(self) -> None:
        self.engine.dispose()
