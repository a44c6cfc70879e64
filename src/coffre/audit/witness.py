"""The witness file: every checkpoint the server signs is also appended to a
file outside the database (SEC-31).

By default ``keys/audit-checkpoints.txt``, next to the signing key, created
0600 and only ever appended to. The signed notes follow one another, each
followed by an empty line (the format ``coffre audit checkpoint -o`` writes
and ``--checkpoints`` reads). Someone who can write the database but not
this directory can no longer delete the stored checkpoints and have the
server sign a rewritten history: ``AuditLog.checkpoint`` anchors on the
latest of the database's and this file's checkpoints, and
``coffre audit verify`` reads this file too. Someone who can write both
can still rewrite: operators should copy the file off the host as well.

Instances that share a key directory share this file (appends are locked);
instances with key directories of their own each keep a witness of the
checkpoints they saw, and each such file anchors and verifies on its own.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from coffre.audit.note import DASH, NoteError, split_notes
from coffre.errors import ConfigurationError

FILE_NAME = "audit-checkpoints.txt"
#: How much of the file's end ``last`` reads (a note is a few hundred bytes).
TAIL = 64 * 1024


class WitnessFile:
    """An append-only file of signed checkpoint notes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def notes(self) -> list[str]:
        """Every note in the file (none when it does not exist); raises
        ``NoteError`` when the file does not parse."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as error:
            raise NoteError(f"witness file {self.path} is unreadable") from error
        return split_notes(text)

    def last(self) -> str | None:
        """The last note of the file (reading its end only), or None when the
        file is missing or empty; raises ``NoteError`` when it does not end
        with a complete note."""
        try:
            with self.path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                start = max(0, size - TAIL)
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise NoteError(f"witness file {self.path} is unreadable") from error
        blocks = [b.strip("\n") for b in data.decode("utf-8", "replace").split("\n\n")]
        blocks = [b for b in (blocks[1:] if start else blocks) if b]
        if not blocks:
            return None
        if (len(blocks) < 2 or not blocks[-1].startswith(DASH)
                or blocks[-2].startswith(DASH) or not data.endswith(b"\n")):
            raise NoteError(f"witness file {self.path}: the last note is incomplete")
        return f"{blocks[-2]}\n\n{blocks[-1]}\n"

    def append(self, note: str) -> None:
        """Append ``note`` (creating the file 0600) and flush it to disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            mode = os.fstat(fd).st_mode & 0o777
            if mode & 0o022:
                raise ConfigurationError(
                    f"audit witness file {self.path} is writable by others (mode {mode:o})")
            data = (note if note.endswith("\n") else note + "\n").encode() + b"\n"
            # Instances sharing a key directory append to one file: the lock
            # keeps their notes whole (O_APPEND alone is not atomic on NFS).
            fcntl.lockf(fd, fcntl.LOCK_EX)
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)


MARKER_NAME = "audit-sealed.json"


@dataclass(frozen=True)
class Sealed:
    """What the seal marker states: the trail is sealed, since the one
    genuine adoption at seq ``adopted`` (None: sealed from its first event),
    with the events ``on_trust`` (a seq range, or None) sealed at that
    adoption without a signed checkpoint covering them, and whether the
    operator has acknowledged them."""

    adopted: int | None
    on_trust: tuple[int, int] | None
    acknowledged: bool = False


class SealMarker:
    """The fact that a trail is sealed, kept outside the database (next to
    the witness file): someone who can write the database only cannot make
    the server seal the trail a second time (dropping the ``mac`` column and
    having the next start "adopt" a forgery)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> Sealed | None:
        """The marker's statement, None when there is none; raises
        ``NoteError`` when the file exists but does not parse."""
        try:
            value = json.loads(self.path.read_text(encoding="utf-8"))
            if value.get("format") != MARKER_FORMAT:
                raise ValueError("format")
            adopted = value["adopted_seq"]
            trust = value.get("on_trust")
            return Sealed(None if adopted is None else int(adopted),
                          None if trust is None else (int(trust[0]), int(trust[1])),
                          bool(value.get("acknowledged")))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError,
                IndexError, AttributeError) as error:
            raise NoteError(f"audit seal marker {self.path} is unreadable") from error

    def create(self, sealed: Sealed) -> bool:
        """Write the marker unless one exists (another instance sharing the
        directory wrote it first): returns whether this call wrote it."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(_marker_text(sealed))
            f.flush()
            os.fsync(f.fileno())
        return True

    def acknowledge(self) -> Sealed:
        """Record that the operator compared the events sealed on trust with
        their own records (``coffre audit acknowledge``)."""
        current = self.read()
        if current is None:
            raise NoteError(f"no audit seal marker at {self.path}")
        done = Sealed(current.adopted, current.on_trust, True)
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(_marker_text(done))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)
        return done


MARKER_FORMAT = "coffre-audit-sealed/1"


def _marker_text(sealed: Sealed) -> str:
    return json.dumps({"format": MARKER_FORMAT, "adopted_seq": sealed.adopted,
                       "on_trust": list(sealed.on_trust) if sealed.on_trust else None,
                       "acknowledged": sealed.acknowledged}, indent=1) + "\n"
