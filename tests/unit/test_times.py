"""Times as people read them: the deployment's zone, never UTC (issue 16)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from coffre.cli.client import when
from coffre.domain import times
from coffre.errors import ConfigurationError
from coffre.settings import Settings


@pytest.fixture(autouse=True)
def paris() -> Iterator[None]:
    times.use_zone(times.DEFAULT_ZONE)
    yield
    times.use_zone(times.DEFAULT_ZONE)


def test_winter_and_summer_times_in_paris() -> None:
    assert times.people(datetime(2026, 12, 12, 17, 0, tzinfo=UTC)) == "12/12/2026 à 18:00"
    assert times.people(datetime(2026, 7, 14, 8, 30, tzinfo=UTC)) == "14/07/2026 à 10:30"
    assert times.people(datetime(2026, 7, 14, 8, 30, tzinfo=UTC), "en") == "2026-07-14 10:30"


def test_naive_times_are_utc_and_api_text_is_read_with_its_offset() -> None:
    assert times.people(datetime(2026, 12, 31, 23, 30)) == "01/01/2027 à 00:30"
    assert times.people("2026-12-31T23:30:00Z") == "01/01/2027 à 00:30"
    assert times.people("2026-12-31T23:30:00+00:00", seconds=True) == "01/01/2027 à 00:30:00"
    assert times.hour("2026-12-12T17:05:00Z") == "18:05"
    assert times.people(None) == ""


def test_another_zone_for_overseas_hosts() -> None:
    times.use_zone("Indian/Reunion")
    assert times.people(datetime(2026, 12, 12, 17, 0, tzinfo=UTC)) == "12/12/2026 à 21:00"


def test_unknown_zone_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        times.use_zone("Europe/Atlantis")
    with pytest.raises(ConfigurationError, match="COFFRE_TIMEZONE"):
        Settings(timezone="Europe/Atlantis")


def test_the_cli_shows_local_times() -> None:
    assert when("2026-12-12T17:00:00Z") == "12/12/2026 à 18:00"
    assert when(None, "jamais") == "jamais"
