"""Rules of a transfer: expiry, link usability, download limits, who may
manage it. Pure functions over plain values."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from coffre.errors import Gone, InvalidInput

_DURATION = re.compile(r"^\s*([0-9]{1,5})\s*(h|d|w|m)\s*$", re.IGNORECASE)
_UNITS = {
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    "m": timedelta(days=30),
}
PERMANENT = {"permanent", "never", "jamais"}
MAX_FILENAME_BYTES = 255
MAX_MESSAGE_CHARS = 10_000
MAX_RECIPIENTS = 100


def parse_expiry(text: str) -> timedelta | None:
    """``12h``, ``7d``, ``2w``, ``3m`` (30-day months), or ``permanent`` -> None."""
    if text.strip().lower() in PERMANENT:
        return None
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise InvalidInput(
            "expiry must look like 12h, 7d, 2w, 3m or 'permanent'", field="expires_in"
        )
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def check_expiry(expires_in: timedelta | None, maximum: timedelta) -> None:
    if expires_in is not None and not timedelta(hours=1) <= expires_in <= maximum:
        raise InvalidInput(
            f"expiry must be between 1 hour and {maximum.days} days", field="expires_in"
        )


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


def sanitise_filename(name: str) -> str:
    """A file name safe to show and to offer in ``Content-Disposition``.

    Keeps only the last path component, drops control and bidirectional
    override characters, normalises to NFC, caps the UTF-8 length.
    """
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in {"Cc", "Cf", "Cs", "Co"})
    name = _UNSAFE.sub("_", name).strip().strip(".")
    encoded = name.encode()
    if len(encoded) > MAX_FILENAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        keep = ext if dot and len(ext.encode()) < 20 else ""
        budget = MAX_FILENAME_BYTES - len(keep.encode()) - (1 if keep else 0)
        head = (stem if keep else name).encode()[:budget].decode(errors="ignore")
        name = f"{head}.{keep}" if keep else head
    return name or "fichier"


def archive_name(subject: str, created_at: datetime) -> str:
    """The name of a transfer's ZIP, after its subject as the sender wrote
    it (accents kept, no path characters); without one, its date."""
    # A subject is one name: its slashes separate words, not folders.
    words = subject.replace("/", "-").replace("\\", "-").strip().strip(".")
    stem = sanitise_filename(words)[:120].strip().strip(".") if words else ""
    return f"{stem or f'fichiers-{created_at:%Y-%m-%d}'}.zip"


class TransferState(Protocol):
    sender_id: str
    organisation_id: str
    expires_at: datetime | None
    revoked_at: datetime | None
    purged_at: datetime | None
    max_downloads: int | None


def check_link_usable(transfer: TransferState, now: datetime) -> None:
    """A recipient link works until revoked, expired or purged (410)."""
    if transfer.purged_at is not None:
        raise Gone("this transfer has been deleted", reason="deleted")
    if transfer.revoked_at is not None:
        raise Gone("this transfer has been revoked by its sender", reason="revoked")
    if transfer.expires_at is not None and transfer.expires_at <= now:
        raise Gone("this transfer has expired", reason="expired")


def check_recipient_usable(revoked_at: datetime | None) -> None:
    """One recipient's link, revoked alone by the sender, answers as a
    revoked transfer would (410); the other recipients keep theirs."""
    if revoked_at is not None:
        raise Gone("the sender has revoked this link", reason="revoked")


#: A recipient's state is the furthest step of their timeline they reached
#: (a ZIP downloaded counts as downloaded); "revoked" overrides them all.
RECIPIENT_STATES = ("mail_sent", "link_opened", "code_sent", "code_verified",
                    "file_downloaded")
REVOKED = "revoked"
#: Timeline steps that are a download as the recipient made it: a file, or
#: the whole ZIP, arrived in full (ranges and cut-short reads are not).
DOWNLOAD_STEPS = frozenset({"file_downloaded", "zip_downloaded"})


def recipient_state(kinds: Collection[str], *, revoked: bool = False,
                    opened: bool = False) -> str:
    """The one state shown for a recipient, wherever it is shown
    (dashboard, transfer page, live updates), from the kinds of their
    timeline's steps; ``opened`` stands for a first opening without a step."""
    if revoked:
        return REVOKED
    reached = {"file_downloaded" if k in DOWNLOAD_STEPS else k for k in kinds}
    if opened:
        reached.add("link_opened")
    for state in reversed(RECIPIENT_STATES):
        if state in reached:
            return state
    return RECIPIENT_STATES[0]


def check_downloads_left(transfer: TransferState, completed: int) -> None:
    """Each recipient may fetch each file ``max_downloads`` times in full."""
    if transfer.max_downloads is not None and completed >= transfer.max_downloads:
        raise Gone("the download limit of this link is reached", reason="exhausted")


def downloads_left(transfer: TransferState, completed: int) -> int | None:
    if transfer.max_downloads is None:
        return None
    return max(transfer.max_downloads - completed, 0)


_RANGE_SPEC = re.compile(r"([0-9]{0,18})-([0-9]{0,18})")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """RFC 9110 single byte range. None = whole representation.

    Raises ``InvalidInput`` with ``unsatisfiable=True`` and ``size`` for a
    416. Several ranges are answered with the whole file (allowed by RFC
    9110); a syntactically invalid header is ignored.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    match = _RANGE_SPEC.fullmatch(spec.strip())
    if not match or match.group(1) == match.group(2) == "":
        return None  # several ranges, or not ASCII digits: ignore the header
    first, last = match.group(1), match.group(2)
    if first == "":
        suffix = int(last)
        if suffix == 0:
            raise InvalidInput("unsatisfiable range", unsatisfiable=True, size=size)
        return ByteRange(max(size - suffix, 0), size)
    start = int(first)
    if last != "" and int(last) < start:
        return None  # syntactically invalid: ignore the header
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or end <= start:
        raise InvalidInput("unsatisfiable range", unsatisfiable=True, size=size)
    return ByteRange(start, end)


Intervals = list[tuple[int, int]]


def add_interval(intervals: Intervals, start: int, end: int) -> Intervals:
    """Merge the half-open byte range [start, end) into sorted, disjoint ranges."""
    if end <= start:
        return list(intervals)
    merged: Intervals = []
    for lo, hi in sorted([*intervals, (start, end)]):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def covers(intervals: Intervals, size: int) -> bool:
    """Whether the ranges delivered so far hold every byte of a file.

    Partial reads (ranges, interrupted downloads) add up: a recipient who
    has received every byte has downloaded the file, however it was cut,
    so ranges cannot get around a download limit.
    """
    return size > 0 and any(lo <= 0 and hi >= size for lo, hi in intervals)


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``name (2)``, ``name (3)``... not yet in ``used``
    (compared without case, as on Windows and macOS); records the result."""
    candidate, n = name, 1
    stem, dot, ext = name.rpartition(".")
    while candidate.lower() in used:
        n += 1
        candidate = f"{stem} ({n}).{ext}" if dot and stem else f"{name} ({n})"
    used.add(candidate.lower())
    return candidate
