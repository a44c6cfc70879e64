"""Backups: the rules of the restic REST backend, without I/O.

One repository per device. A repository holds restic's objects: ``config``
(one, named ``config``) and ``data``, ``keys``, ``locks``, ``snapshots``,
``index`` objects named by the SHA-256 of their content (restic's IDs).

Who may do what (append-only by default, PROTOCOLS.md):

- a **device** credential creates and reads objects, never overwrites
  one, and deletes nothing but ``locks``: ransomware on the workstation
  cannot erase the history it wrote;
- a **maintenance** credential (issued by an administrator, for a few
  hours, with step-up) may also delete, which ``restic forget --prune``
  needs.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from coffre.errors import InvalidInput, PermissionDenied, StorageFull

#: restic's object types, as directories of a repository.
OBJECT_TYPES = ("data", "keys", "locks", "snapshots", "index")
CONFIG = "config"
_ID = re.compile(r"[0-9a-f]{64}")

#: restic's largest pack (``--pack-size`` 128 MiB) with room for its
#: headers; a body above this is refused before it is read (413).
MAX_OBJECT_SIZE = 160 << 20
#: A maintenance credential lives this long by default, and at most that.
MAINTENANCE_DEFAULT = timedelta(hours=2)
MAINTENANCE_MAX = timedelta(hours=24)
MAX_NAME_LENGTH = 100


class CredentialKind(enum.StrEnum):
    DEVICE = "device"
    MAINTENANCE = "maintenance"


class Operation(enum.StrEnum):
    READ = "read"  # HEAD, GET of an object or a listing
    CREATE = "create"  # POST of a new object
    DELETE = "delete"


def check_object(kind: str, name: str) -> None:
    """``kind``/``name`` name an object restic could store (400 otherwise)."""
    if kind == CONFIG:
        if name != CONFIG:
            raise InvalidInput("the config object has no name")
        return
    if kind not in OBJECT_TYPES:
        raise InvalidInput("unknown object type", type=kind[:20])
    if not _ID.fullmatch(name):
        raise InvalidInput("an object name is 64 lowercase hexadecimal digits")


def check_type(kind: str) -> None:
    if kind not in OBJECT_TYPES:
        raise InvalidInput("unknown object type", type=kind[:20])


def verifies(kind: str, name: str, sha256_hex: str) -> bool:
    """Whether the body's SHA-256 matches its name (restic's IDs are the
    hash of the stored bytes; the config object is exempt)."""
    return kind == CONFIG or sha256_hex == name


def permit(credential: CredentialKind, operation: Operation, kind: str) -> None:
    """Append-only: what a credential may do (403 otherwise)."""
    if operation is Operation.DELETE and credential is CredentialKind.DEVICE and kind != "locks":
        raise PermissionDenied(
            "this repository is append-only: deleting needs a maintenance credential",
            reason="append_only",
        )


def maintenance_lifetime(hours: float | None) -> timedelta:
    if hours is None:
        return MAINTENANCE_DEFAULT
    if not 0 < hours <= MAINTENANCE_MAX.total_seconds() / 3600:
        raise InvalidInput("a maintenance credential lasts between a minute and 24 hours")
    return max(timedelta(hours=hours), timedelta(minutes=1))


def device_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > MAX_NAME_LENGTH or not cleaned.isprintable():
        raise InvalidInput(f"a device name has 1 to {MAX_NAME_LENGTH} printable characters")
    return cleaned


@dataclass(frozen=True)
class Space:
    """Bytes used in a scope (a repository, an organisation) and its limit."""

    scope: str
    used: int
    limit: int | None

    @property
    def free(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)


def check_space(needed: int, *spaces: Space) -> None:
    """507 unless ``needed`` more bytes fit every scope. A device learns
    its own repository's usage, and only what is left of the organisation's
    (not what the other devices hold)."""
    for space in spaces:
        if space.limit is not None and space.used + needed > space.limit:
            quota: dict[str, object] = {"scope": space.scope, "needed": needed,
                                        "free": space.free}
            if space.scope == "repository":
                quota.update(used=space.used, limit=space.limit)
            raise StorageFull("the backup quota is reached", quota=quota)


def stale(last_snapshot: datetime | None, registered: datetime, now: datetime,
          alert_days: int) -> bool:
    """No snapshot for ``alert_days`` (counting from registration if none yet)."""
    return now - (last_snapshot or registered) >= timedelta(days=alert_days)


@dataclass
class Activity:
    """What one credential did during a session, for one aggregated audit
    event instead of one per object (a backup writes thousands)."""

    written: int = 0
    bytes_written: int = 0
    snapshots: int = 0
    read: int = 0
    bytes_read: int = 0
    listed: int = 0
    deleted: int = 0
    refused: int = 0
    #: Requests for a repository the credential does not open.
    denied: int = 0
    #: Bodies dropped before they were stored: stalled, over the
    #: credential's count of bodies in flight, or no memory left for them.
    dropped: int = 0

    def empty(self) -> bool:
        return not any((self.written, self.read, self.listed, self.deleted, self.refused,
                        self.denied, self.dropped))

    def add(self, other: Activity) -> None:
        add_counts(self, other)


#: The counters of ``Activity``, also the columns of a backup session's row.
COUNTERS = ("written", "bytes_written", "snapshots", "read", "bytes_read", "listed",
            "deleted", "refused", "denied", "dropped")


def add_counts(total: object, more: Activity) -> None:
    """Add ``more``'s counters to ``total`` (an ``Activity`` or a row with
    the same attributes)."""
    for name in COUNTERS:
        setattr(total, name, getattr(total, name) + getattr(more, name))
