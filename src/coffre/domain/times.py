"""Times as people read them: in their time zone (Europe/Paris unless the
host says otherwise, e.g. Indian/Reunion), never in UTC.

Everything is stored and exchanged in UTC (the API's JSON says so with its
offset); only what a person reads — pages, mail, the CLI's human output —
goes through ``people``. The zone is the deployment's (``COFFRE_TIMEZONE``),
set once at start-up by ``use_zone``: a care team reads the times of the
place it works in, whatever the server's clock zone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_ZONE = "Europe/Paris"

#: The process's zone (one deployment, one place of work).
_zone = [ZoneInfo(DEFAULT_ZONE)]


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError with a clear message if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (an IANA name like Europe/Paris)") from exc


def use_zone(name: str) -> None:
    """The zone times are shown in, for this process."""
    _zone[0] = zone(name)


def current_zone() -> ZoneInfo:
    return _zone[0]


def local(moment: datetime | float) -> datetime:
    """``moment`` (aware, naive UTC, or a POSIX timestamp) in the zone."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(_zone[0])


def parse(text: str) -> datetime:
    """An ISO 8601 time from the API ("...Z", an offset, or naive UTC)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def people(moment: datetime | float | str | None, language: str = "fr", *,
           seconds: bool = False) -> str:
    """``12/12/2026 à 18:00`` (French) or ``2026-12-12 18:00`` (English),
    in the zone; "" for None."""
    if moment is None or moment == "":
        return ""
    shown = local(parse(moment) if isinstance(moment, str) else moment)
    clock = "%H:%M:%S" if seconds else "%H:%M"
    if language == "fr":
        return shown.strftime(f"%d/%m/%Y à {clock}")
    return shown.strftime(f"%Y-%m-%d {clock}")


def hour(moment: datetime | float | str) -> str:
    """Just the time of day, ``18:00``, in the zone."""
    return local(parse(moment) if isinstance(moment, str) else moment).strftime("%H:%M")
