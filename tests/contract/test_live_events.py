"""The ``EventBus`` contract (``ports.EventBus``), in-process on SQLite and
over PostgreSQL LISTEN/NOTIFY (distributed profile only): an event goes out
when the unit of work that announced it commits, to the subscribers of
its topic (and to those of every topic), on every instance; never for a
rollback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest
from sqlalchemy import text

from coffre.db.engine import Database
from coffre.notify.live import InProcessEvents, PostgresEvents, announce, events_for
from coffre.ports import EventBus, LiveSubscription
from tests import backends

#: Generous: a woken subscriber returns at once; only a missing event waits this long.
WAKE = 10.0
#: How long a subscriber that must not be woken is watched.
QUIET = 1.0

PROFILES = ["embedded"] + (["distributed"] if backends.profile() == "distributed" else [])


@pytest.fixture(params=PROFILES)
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Database]]:
    """Two instances' databases (the same one twice on PostgreSQL)."""
    if request.param == "embedded":
        dbs = [Database(f"sqlite:///{tmp_path / 'coffre.db'}")]
    else:
        url = backends.database_for(tmp_path)
        dbs = [Database(url), Database(url)]
    yield dbs
    for db in dbs:
        db.dispose()


def _commit(db: Database, topic: str, *, rollback: bool = False) -> None:
    with pytest.raises(RuntimeError) if rollback else nullcontext(), db.session() as session:
        session.execute(text("SELECT 1"))
        announce(session, topic)
        if rollback:
            raise RuntimeError("rolled back")


async def _listening(bus: EventBus, *subscriptions: LiveSubscription) -> None:
    """Once PostgreSQL listens; then past the one wake-up a (re)connected
    listener gives every subscriber (something may have been missed)."""
    if isinstance(bus, PostgresEvents):
        assert await asyncio.to_thread(bus.listening.wait, WAKE)
        for subscription in subscriptions:
            await subscription.wait(0.2)


def test_the_bus_matches_the_profile(databases: list[Database]) -> None:
    bus = events_for(databases[0])
    try:
        expected = PostgresEvents if len(databases) == 2 else InProcessEvents
        assert isinstance(bus, expected)
    finally:
        bus.close()


def test_a_commit_wakes_the_subscribers_of_its_topic_on_every_instance(
        databases: list[Database]) -> None:
    buses: list[EventBus] = [events_for(db) for db in databases]

    async def scenario() -> None:
        near, far = buses[0], buses[-1]
        mine, other, every = far.subscribe("transfer:a"), far.subscribe("transfer:b"), \
            near.subscribe(None)
        await _listening(near, every)
        await _listening(far, mine, other)
        await asyncio.to_thread(_commit, databases[0], "transfer:a")
        assert await mine.wait(WAKE)
        assert await every.wait(WAKE)
        assert not await other.wait(QUIET)
        mine.close()
        other.close()
        every.close()

    try:
        asyncio.run(scenario())
    finally:
        for bus in buses:
            bus.close()


def test_a_rollback_wakes_nobody_and_events_wait_for_the_next_wait(
        databases: list[Database]) -> None:
    buses: list[EventBus] = [events_for(db) for db in databases]

    async def scenario() -> None:
        bell = buses[-1].subscribe("transfer:a")
        await _listening(buses[-1], bell)
        await asyncio.to_thread(_commit, databases[0], "transfer:a", rollback=True)
        assert not await bell.wait(QUIET)
        # Committed while nobody waits: kept for the next wait, not lost.
        await asyncio.to_thread(_commit, databases[0], "transfer:a")
        await asyncio.sleep(0.5)
        assert await bell.wait(WAKE)
        bell.close()

    try:
        asyncio.run(scenario())
    finally:
        for bus in buses:
            bus.close()


def test_publish_outside_a_unit_of_work(databases: list[Database]) -> None:
    buses: list[EventBus] = [events_for(db) for db in databases]

    async def scenario() -> None:
        bell = buses[-1].subscribe("request:r")
        await _listening(buses[-1], bell)
        await asyncio.to_thread(buses[0].publish, ["request:r"])
        assert await bell.wait(WAKE)
        bell.close()

    try:
        asyncio.run(scenario())
    finally:
        for bus in buses:
            bus.close()
