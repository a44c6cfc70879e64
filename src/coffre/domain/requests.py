"""Upload requests ("invitation à déposer"): who a depositor is, and the
limits a request sets. Pure: no I/O.

A depositor acts through a short-lived grant obtained with a one-time
code; it is not an account. It may create uploads within its request's
limits and see or append its own uploads, nothing else (see
``services.requests`` and ``services.uploads``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from coffre.domain.limits import MAX_BYTES
from coffre.errors import Conflict, Gone, InvalidInput, TooLarge

#: Bounds a requester may choose.
MAX_FILES = 1000
MAX_EXPIRY = timedelta(days=90)
MAX_DEPOSITORS = 50


@dataclass(frozen=True)
class Depositor:
    """The principal behind a deposit grant (not an ``Actor``)."""

    depositor_id: str
    request_id: str
    organisation_id: str
    #: The requester: the owner of everything deposited.
    owner_id: str


def check_request_open(closed_at: datetime | None, expires_at: datetime, now: datetime) -> None:
    if closed_at is not None:
        raise Gone("this upload request is closed", reason="closed")
    if expires_at <= now:
        raise Gone("this upload request has expired", reason="expired")


def check_limits(max_total_size: int, max_files: int, max_file_size: int) -> None:
    if not 1 <= max_files <= MAX_FILES:
        raise InvalidInput(f"the file count must be between 1 and {MAX_FILES}",
                           field="max_files")
    if max_total_size < 1:
        raise InvalidInput("the maximum total size must be positive", field="max_size")
    del max_file_size  # a single file is bounded by the upload endpoint itself


def check_room(length: int | None, files: int, used: int, max_files: int,
               max_total_size: int) -> None:
    """May one more file of ``length`` bytes be deposited, after ``files``
    files declaring ``used`` bytes? 409 for the count, 413 for the size."""
    if length is None:
        raise InvalidInput("a depositor must declare Upload-Length (no deferred length)")
    if files >= max_files:
        raise Conflict(f"this request accepts at most {max_files} files",
                       reason="too_many_files", max_files=max_files)
    if used + length > max_total_size:
        raise TooLarge(
            f"this request accepts at most {max_total_size} bytes in all",
            reason="request_size", max_size=max_total_size, remaining=max_total_size - used,
        )


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
#: "500M", "500 Mo", "500 MB", "2GiB", "1,5 Go", "1.5G", "1000" or "1000 octets".
_SIZE = re.compile(
    r"(\d{1,19})(?:[.,](\d{1,9}))?\s*(?:([kmgt])(?:i?[bo])?|octets?|bytes?|[bo])?",
    re.ASCII | re.IGNORECASE,
)


def parse_size(text: str | int, field: str = "max_size") -> int:
    """A size as people write it (``500 Mo``, ``2 Go``, ``1,5 Go``,
    ``500M``, ``2G``, ``500 MB``, binary units) or a number of bytes, at
    most ``MAX_BYTES`` (a larger one would overflow a database column: a
    500, not a 400)."""
    if isinstance(text, int):
        size = text
    else:
        found = _SIZE.fullmatch(text.strip().replace("\u00a0", " "))
        unit = _UNITS[(found.group(3) or "").lower()] if found else 0
        if found is None or (found.group(2) and unit == 1):
            raise InvalidInput("a size looks like 500M, 2G, 1.5 GB or a number of bytes",
                               field=field)
        fraction = found.group(2) or ""
        size = int(found.group(1)) * unit + (
            int(fraction) * unit // 10 ** len(fraction) if fraction else 0)
    if not 0 <= size <= MAX_BYTES:
        raise InvalidInput(f"a size is between 0 and {MAX_BYTES} bytes", field=field,
                           maximum=MAX_BYTES)
    return size
