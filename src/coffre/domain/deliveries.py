"""What a recipient's link has delivered of a file, and what a download
limit lets it deliver still. Pure functions over plain values.

A limit bounds bytes, not requests: overlapping ranges (``bytes=0-(size-2)``
again and again) never cover the whole file, so counting downloads by
coverage alone would let a one-time link deliver the file any number of
times. Every byte sent counts, however it was asked for; a link limited to
``N`` downloads delivers at most ``N`` times the file's size, plus for each
download a small allowance for the overlap of a resumed transfer (what was
in flight when it broke is sent again).
"""

from __future__ import annotations

from dataclasses import dataclass

from coffre.domain.transfers import Intervals, covers
from coffre.errors import Gone

#: What a resumed download may send again, at most, per download allowed:
#: the bytes in flight when it broke (both ends' socket buffers, a read
#: batch: about 10 MiB measured on a loopback with Linux defaults). Small
#: files get a quarter of their size, so a one-time link never gives out a
#: second copy of them.
RESUME_OVERLAP = 16 << 20


def resume_allowance(size: int) -> int:
    return min(RESUME_OVERLAP, size // 4)


def delivery_budget(limit: int, size: int) -> int:
    """The most bytes of a file of ``size`` a link limited to ``limit``
    downloads may ever send."""
    return limit * (size + resume_allowance(size))


@dataclass(frozen=True)
class Delivered:
    """One link's account of one file."""

    #: Downloads counted so far.
    completed: int = 0
    #: Bytes sent by every response so far (never reset).
    sent: int = 0
    #: Whole-file downloads under way (any instance).
    in_flight: int = 0
    #: Bytes that responses under way may still send.
    reserved: int = 0


def check_delivery(limit: int | None, size: int, so_far: Delivered, start: int,
                   end: int) -> None:
    """Refuse (410 ``exhausted``) a response of bytes ``[start, end)`` that
    would take the link past its limit: a whole-file response past the
    number of downloads (those under way included), any response past the
    bytes the limit allows."""
    if limit is None:
        return
    whole = start == 0 and end == size
    downloads = so_far.completed + (so_far.in_flight if whole else 0)
    if downloads >= limit:
        raise Gone("the download limit of this link is reached", reason="exhausted")
    if so_far.sent + so_far.reserved + (end - start) > delivery_budget(limit, size):
        raise Gone("the download limit of this link is reached: the bytes it has "
                   "delivered add up to its downloads (resume a broken download "
                   "from where it stopped)", reason="exhausted")


def downloads_left(limit: int | None, size: int, so_far: Delivered) -> int | None:
    """Whole downloads the link may still make (None: no limit)."""
    if limit is None:
        return None
    left = limit - so_far.completed
    if size > 0:
        left = min(left, (delivery_budget(limit, size) - so_far.sent) // size)
    return max(left, 0)


def completes_download(ranges: Intervals, sent_since: int, size: int) -> bool:
    """Whether what was delivered since the last counted download makes a
    download: every byte of the file, or as many bytes as it holds (sent
    in overlapping pieces)."""
    return covers(ranges, size) or (size > 0 and sent_since >= size)
