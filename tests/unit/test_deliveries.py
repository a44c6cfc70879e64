"""Download limits bound the bytes a link delivers (``domain.deliveries``),
and a ZIP cut short accounts for what it sent of each file
(``services.deliveries.ArchiveTally``)."""

from __future__ import annotations

import io
import zipfile

import pytest
from zipstream import ZIP_STORED, ZipStream

from coffre.domain.deliveries import (
    RESUME_OVERLAP,
    Delivered,
    check_delivery,
    completes_download,
    delivery_budget,
    downloads_left,
    resume_allowance,
)
from coffre.errors import Gone
from coffre.services.deliveries import ArchiveTally

MiB = 1 << 20


def test_the_budget_is_the_limit_times_the_size_and_a_small_overlap() -> None:
    assert resume_allowance(3000) == 750  # a quarter: never a second copy of a small file
    assert resume_allowance(1 << 30) == RESUME_OVERLAP
    assert delivery_budget(1, 3000) == 3750
    assert delivery_budget(3, 1 << 30) == 3 * ((1 << 30) + RESUME_OVERLAP)
    assert delivery_budget(2, 0) == 0


def test_overlapping_ranges_cannot_pass_a_one_time_limit() -> None:
    """The review's attack: ``bytes=0-(size-2)`` again and again."""
    size = 3000
    so_far = Delivered()
    delivered = 0
    with pytest.raises(Gone) as refused:
        for _ in range(100):
            check_delivery(1, size, Delivered(sent=delivered), 0, size - 1)
            delivered += size - 1
    assert refused.value.details["reason"] == "exhausted"
    assert delivered == size - 1  # the second copy is refused
    check_delivery(1, size, Delivered(sent=delivered), size - 1, size)  # the last byte
    assert downloads_left(1, size, Delivered(sent=delivered)) == 0
    assert downloads_left(1, size, so_far) == 1


def test_a_resumed_download_fits_a_one_time_limit() -> None:
    size = 40 * MiB
    # Cut at 10 MiB as the server counted it; the client kept 7 MiB and resumes there.
    check_delivery(1, size, Delivered(sent=10 * MiB), 7 * MiB, size)
    # Starting again from zero after most of the file went out does not.
    with pytest.raises(Gone):
        check_delivery(1, size, Delivered(sent=30 * MiB), 0, size)


def test_whole_downloads_under_way_count_against_the_limit() -> None:
    size = 100
    with pytest.raises(Gone):  # a parallel GET of a one-time link
        check_delivery(1, size, Delivered(in_flight=1, reserved=size), 0, size)
    with pytest.raises(Gone):  # even a small range while the bytes are reserved
        check_delivery(1, size, Delivered(in_flight=1, reserved=size), 0, 50)
    # A limit of five: five parallel downloads, not a sixth, though bytes would allow it.
    check_delivery(5, size, Delivered(in_flight=4, reserved=4 * size), 0, size)
    with pytest.raises(Gone):
        check_delivery(5, size, Delivered(in_flight=5, reserved=5 * size), 0, size)
    with pytest.raises(Gone):
        check_delivery(2, size, Delivered(completed=2), 0, 1)
    check_delivery(None, size, Delivered(completed=99, sent=10**9), 0, size)


def test_a_download_counts_when_bytes_cover_or_add_up_to_the_file() -> None:
    assert completes_download([(0, 100)], 100, 100)
    assert completes_download([(0, 50), (40, 100)], 110, 100)  # a resume
    assert completes_download([(0, 99)], 198, 100)  # overlapping ranges add up
    assert not completes_download([(0, 99)], 99, 100)
    assert not completes_download([], 0, 0)


def _zip(files: dict[str, bytes], tally: ArchiveTally) -> tuple[bytes, list[bytes]]:
    archive = ZipStream(compress_type=ZIP_STORED, sized=True)
    for position, (name, data) in enumerate(files.items()):
        pieces = [data[i:i + 1000] for i in range(0, len(data), 1000)]
        archive.add(tally.entry(position, iter(pieces)), arcname=name, size=len(data))
    chunks = list(tally.wrap(iter(archive)))
    return b"".join(chunks), chunks


def test_an_archive_cut_short_accounts_for_each_file_it_sent() -> None:
    files = {"a.bin": b"a" * 2500, "vide.txt": b"", "b.bin": b"b" * 4200}
    tally = ArchiveTally(len(files))
    data, chunks = _zip(files, tally)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        offsets = {i.filename: i.header_offset + 30 + len(i.filename) + len(i.extra)
                   for i in archive.infolist()}
    assert tally.sent(len(data)) == [2500, 0, 4200]
    assert tally.sent(0) == [0, 0, 0]
    # At every chunk boundary: exactly the file bytes before it.
    boundary = 0
    for chunk in chunks:
        boundary += len(chunk)
        expected = [
            max(0, min(len(content), boundary - offsets[name]))
            for name, content in files.items()
        ]
        assert tally.sent(boundary) == expected, boundary


def test_an_archive_tally_keeps_a_bounded_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ArchiveTally, "WINDOW", 3000)
    files = {"a.bin": b"a" * 20_000, "b.bin": b"b" * 20_000}
    tally = ArchiveTally(len(files))
    data, _ = _zip(files, tally)
    assert len(tally._recent) < 10
    assert tally.sent(len(data)) == [20_000, 20_000]
    assert tally.sent(len(data) - 100)[0] == 20_000
