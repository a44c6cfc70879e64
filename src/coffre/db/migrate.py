"""Run Alembic migrations programmatically (at start-up and in tests).

Several instances may start at once against one PostgreSQL database: the
upgrade runs under a session-level advisory lock, so one migrates and the
others wait for it, then find nothing to do. SQLite serves one instance
and needs no lock.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text

from coffre.db.engine import make_engine

MIGRATIONS = Path(__file__).parent / "migrations"
#: The advisory lock's key (any fixed 64-bit number, unique to migrations).
MIGRATION_LOCK = 0x636F_6666_7265_0001  # "coffre" 1


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    engine = make_engine(url)
    try:
        if engine.dialect.name != "postgresql":
            command.upgrade(alembic_config(url), "head")
            return
        # The lock lives on a connection of its own, held across Alembic's
        # transaction; it is released when that session ends, even if the
        # process dies while migrating.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock:
            lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            try:
                command.upgrade(alembic_config(url), "head")
            finally:
                lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
    finally:
        engine.dispose()


def lacks_column(url: str, table: str, column: str) -> bool:
    """Whether ``table`` exists without ``column`` (before an upgrade adds it)."""
    engine = make_engine(url)
    try:
        schema = inspect(engine)
        return schema.has_table(table) and column not in {
            c["name"] for c in schema.get_columns(table)}
    finally:
        engine.dispose()
