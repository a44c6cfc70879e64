"""Upload requests' pure rules: sizes, limits, open or closed (SEC-18)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from coffre.domain.limits import MAX_BYTES
from coffre.domain.requests import check_limits, check_request_open, check_room, parse_size
from coffre.errors import Conflict, Gone, InvalidInput, TooLarge

NOW = datetime(2026, 11, 22, tzinfo=UTC)


@pytest.mark.parametrize(("text", "size"), [("500M", 500 << 20), ("2G", 2 << 30),
                                            ("2GiB", 2 << 30), ("1000", 1000), (42, 42),
                                            ("3 Go", 3 << 30)])
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "size"), [
    ("500 Mo", 500 << 20), ("2 Go", 2 << 30), ("1,5 Go", 3 << 29), ("1.5G", 3 << 29),
    ("500 MB", 500 << 20), ("500 mo", 500 << 20), ("2 go", 2 << 30), ("10 Ko", 10 << 10),
    ("1 To", 1 << 40), ("0,5 Go", 1 << 29), ("1000 octets", 1000), ("2\u00a0Go", 2 << 30),
    (" 500M ", 500 << 20), ("2 GiB", 2 << 30)])
def test_sizes_as_people_write_them(text: str, size: int) -> None:
    """Issue 16, defect 11: the form says "500 Mo ou 2 Go", and means it."""
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "-1", "1,5", "1.5 octets", "²", "1X", "2 Gx",
                                  "1,2,3 Go", "Go 2", "5 G o"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_size(text)


@pytest.mark.parametrize("text", ["999999999999999T", "4194305T", str(2**62 + 1), 10**30,
                                  2**63, -1, "9" * 20])
def test_sizes_past_the_maximum(text: str | int) -> None:
    """Issue 15, finding 15: they overflowed the database (a 500)."""
    with pytest.raises(InvalidInput) as refused:
        parse_size(text, "quota")
    assert refused.value.details["field"] == "quota"


def test_the_maximum_size() -> None:
    assert parse_size("4194304T") == MAX_BYTES == parse_size(str(MAX_BYTES))


def test_room_counts_files_then_bytes() -> None:
    check_room(400, files=1, used=600, max_files=2, max_total_size=1000)
    with pytest.raises(TooLarge):
        check_room(401, files=1, used=600, max_files=2, max_total_size=1000)
    with pytest.raises(Conflict):
        check_room(0, files=2, used=1000, max_files=2, max_total_size=1000)
    with pytest.raises(InvalidInput):
        check_room(None, files=0, used=0, max_files=2, max_total_size=1000)


def test_limits_and_state() -> None:
    check_limits(1, 1, 10)
    for size, files in ((0, 1), (1, 0), (1, 1001)):
        with pytest.raises(InvalidInput):
            check_limits(size, files, 10)
    check_request_open(None, NOW + timedelta(seconds=1), NOW)
    with pytest.raises(Gone):
        check_request_open(NOW, NOW + timedelta(days=1), NOW)
    with pytest.raises(Gone):
        check_request_open(None, NOW, NOW)
