"""Ports: the small interfaces the services depend on.

Adapters live in ``storage/``, ``crypto/``, ``notify/`` and ``db/``; the
composition root (``bootstrap.py``) picks them from the settings. Each
method documents its contract: what is idempotent, what is durable on
return, and which errors from ``coffre.errors`` it may raise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class BlobAppender(Protocol):
    """A writer that extends one blob sequentially (see ``BlobStore.open_append``)."""

    def write(self, data: bytes) -> None:
        """Append ``data``. Not durable until ``commit`` returns."""

    def commit(self) -> int:
        """Make everything written so far durable; return the blob's size.

        May be called several times; the appender stays usable afterwards.
        Raises ``StorageError`` (retryable) or ``StorageFull``.
        """

    def close(self) -> None:
        """Release resources. Bytes written after the last commit may be lost."""


@runtime_checkable
class BlobStore(Protocol):
    """Stores opaque byte strings under server-generated keys.

    Only ciphertext ever reaches a ``BlobStore``: callers wrap it in
    ``storage.sealed.SealedStore`` or write stream-encrypted data. Keys are
    relative paths made of ``[A-Za-z0-9._-]`` segments separated by ``/``
    (no ``..``, no leading ``/``); anything else raises ``InvalidInput``.
    Missing keys raise ``NotFound``; backend failures raise ``StorageError``.
    """

    def put(self, key: str, data: bytes) -> None:
        """Create or replace ``key`` atomically; durable on return."""

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        """Like ``put`` for data arriving in pieces; returns the size written.

        Readers see either the old value or the complete new one, never a
        partial write. If ``chunks`` raises, nothing is stored.
        """

    def open_append(self, key: str, offset: int) -> BlobAppender:
        """Continue writing ``key`` from byte ``offset``.

        ``offset == 0`` creates (or restarts) the blob. Bytes past
        ``offset`` left by an earlier writer that never committed them are
        discarded. An ``offset`` past the blob's size raises ``Conflict``:
        committed data was lost, which the caller must not paper over.
        """

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return up to ``length`` bytes from ``offset`` (fewer at the end)."""

    def size(self, key: str) -> int:
        """Size in bytes of ``key``."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a blob."""

    def delete(self, key: str) -> None:
        """Remove ``key``. Idempotent: deleting a missing key is not an error."""

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix``, in no particular order."""


@runtime_checkable
class Consolidating(Protocol):
    """Optional capability of a ``BlobStore`` whose appended blobs are kept
    in a form slower to read than a whole one (``S3BlobStore``: pieces).

    Callers check for it (``isinstance(store, Consolidating)``) rather than
    for a class; a store without it needs nothing done.
    """

    def consolidate(self, key: str) -> bool:
        """Rewrite ``key``'s appended form as one whole blob; return whether it did.

        Call only once no writer can append to ``key`` any more (an upload
        completed and its lease released): the store cannot tell, and a
        writer reopening the blob meanwhile could lose data. A ``delete``
        of ``key`` may run at the same time (from any instance): nothing of
        the blob may stay behind. Idempotent; never consolidating is
        correct, only slower to read. Raises ``StorageError`` (retryable).
        """


@runtime_checkable
class Dated(Protocol):
    """Optional capability of a ``BlobStore`` that knows when each blob was
    last written (files' modification time, objects' ``LastModified``): the
    orphan sweeper never touches a blob written more recently than its
    grace period. A store without it has every blob treated as new.
    """

    def list_dated(self, prefix: str = "") -> Iterator[tuple[str, datetime]]:
        """Like ``list``, each key with the time (aware, UTC) its blob was
        last written; an appended blob's is that of its latest write."""


class BlobReader(Protocol):
    """``read(offset, length)`` on one blob, for a caller reading forward
    (see ``SequentialReads.reader``)."""

    def __call__(self, offset: int, length: int) -> bytes:
        """Like ``BlobStore.read`` of the reader's key, with the same errors."""

    def close(self) -> None:
        """Release the reader; from any thread, at any time (a read in
        progress completes first). Idempotent."""


@runtime_checkable
class SequentialReads(Protocol):
    """Optional capability of a ``BlobStore`` for which one long read costs
    much less than many short ones (``S3BlobStore``: one streaming GET
    instead of a request per range). Callers check for it, as for
    ``Consolidating``; without it, ``read`` is the reader.
    """

    def reader(self, key: str, end: int) -> BlobReader:
        """A reader of ``key`` for a caller that reads forward, never past
        ``end``. Reads that continue where the previous one ended come from
        one streaming request; any other read is an ordinary ``read``, so
        a reader is exactly as reliable as ``read``. Close it when done.
        """


@runtime_checkable
class Located(Protocol):
    """Optional capability of a ``BlobStore`` that knows where its data
    lives, e.g. an S3 region (SEC-1: shown to administrators)."""

    location: str


class KeyProvider(Protocol):
    """Holds the root key that wraps organisation key-encryption keys.

    The root key never leaves the provider (a 0400 file today; PKCS#11 or
    Vault transit later). ``context`` is bound as associated data: a key
    wrapped for one context does not unwrap in another.
    """

    key_id: str

    def wrap(self, key: bytes, context: bytes) -> bytes:
        """Encrypt ``key`` under the root key."""

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Decrypt; raises ``IntegrityError`` if altered or wrong context."""


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Mailer(Protocol):
    """Delivers mail. Raises ``StorageError`` on a retryable failure."""

    async def send(self, mail: Mail) -> None: ...


class SmsSender(Protocol):
    """Sends a short text message to a mobile number in E.164 form.

    For recipients' one-time codes only, never for accounts' factors
    (SEC-9). Not idempotent: a retry may deliver twice. Raises
    ``StorageError`` when the provider cannot be reached or refuses the
    message. Never logs the number or the text.
    """

    def send(self, to: str, text: str) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""


class LiveSubscription(Protocol):
    """One live stream's doorbell (see ``EventBus.subscribe``)."""

    async def wait(self, timeout: float) -> bool:
        """Wait until an event for this subscription arrives (True) or
        ``timeout`` seconds pass (False). Events arriving between two waits
        are kept (one wake-up for many), so read, then wait, never miss one."""

    def close(self) -> None:
        """Stop receiving. Idempotent."""


class EventBus(Protocol):
    """Wakes live streams (Server-Sent Events) on every app instance when
    something they follow changed.

    An event is a topic naming ids only (``transfer:<id>``): never patient
    data, a file name, an address or a secret. It is a hint, not the
    record: delivery is at most once and may be lost (a database
    restarting), so a subscriber reads the database when woken and also
    after a timeout. Events are announced inside a unit of work
    (``notify.live.announce``) and sent only once it commits. In-process on
    the embedded profile; PostgreSQL ``LISTEN``/``NOTIFY`` on the
    distributed one.
    """

    def publish(self, topics: Iterable[str]) -> None:
        """Announce ``topics`` now, outside a unit of work."""

    def subscribe(self, topic: str | None = None) -> LiveSubscription:
        """Follow ``topic`` (None: every topic), from a running event loop."""

    def close(self) -> None:
        """Stop listening; later subscriptions are never woken."""
