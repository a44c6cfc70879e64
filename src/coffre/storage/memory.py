"""An in-memory ``BlobStore`` for unit tests and development.

It follows the same contract as the durable stores, including the
unpleasant parts: bytes an appender wrote but never committed are lost
when it closes, exactly as after a crash of the local store, so code that
forgets to commit fails here too.

Never use it for data that must survive the process: nothing is persisted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from coffre.errors import Conflict, InvalidInput, NotFound
from coffre.storage.keys import prefix_directory, validate_key


class MemoryBlobStore:
    """A dict of committed blobs guarded by one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[str, bytearray] = {}
        #: When each blob was last written (``Dated``).
        self._written: dict[str, datetime] = {}

    def put(self, key: str, data: bytes) -> None:
        self.put_stream(key, (data,))

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        validate_key(key)
        data = bytearray()
        for chunk in chunks:  # the caller's exceptions leave the store untouched
            data += chunk
        with self._lock:
            self._blobs[key] = data
            self._written[key] = datetime.now(UTC)
        return len(data)

    def open_append(self, key: str, offset: int) -> MemoryAppender:
        validate_key(key)
        _check_offset(offset)
        with self._lock:
            blob = self._blobs.get(key)
            if offset == 0:
                self._blobs[key] = bytearray()
                self._written[key] = datetime.now(UTC)
            elif blob is None:
                raise NotFound("no blob under this key", key=key)
            elif len(blob) < offset:
                raise Conflict(
                    "append offset is past the blob's committed size",
                    key=key,
                    offset=offset,
                    size=len(blob),
                )
            else:
                del blob[offset:]
        return MemoryAppender(self, key, offset)

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        validate_key(key)
        _check_offset(offset)
        if length is not None and length < 0:
            raise InvalidInput("read length must not be negative")
        with self._lock:
            blob = self._get(key)
            end = len(blob) if length is None else offset + length
            return bytes(blob[offset:end])

    def size(self, key: str) -> int:
        validate_key(key)
        with self._lock:
            return len(self._get(key))

    def exists(self, key: str) -> bool:
        validate_key(key)
        with self._lock:
            return key in self._blobs

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._lock:
            self._blobs.pop(key, None)
            self._written.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[str]:
        prefix_directory(prefix)
        with self._lock:
            keys = [key for key in self._blobs if key.startswith(prefix)]
        return iter(keys)

    def list_dated(self, prefix: str = "") -> Iterator[tuple[str, datetime]]:
        prefix_directory(prefix)
        with self._lock:
            dated = [(key, self._written[key]) for key in self._blobs if key.startswith(prefix)]
        return iter(dated)

    def _get(self, key: str) -> bytearray:
        blob = self._blobs.get(key)
        if blob is None:
            raise NotFound("no blob under this key", key=key)
        return blob

    def _commit(self, key: str, committed: int, pending: bytearray) -> int:
        with self._lock:
            blob = self._blobs.setdefault(key, bytearray())
            del blob[committed:]
            blob += pending
            self._written[key] = datetime.now(UTC)
            return len(blob)


class MemoryAppender:
    """Holds written bytes until ``commit``; ``close`` drops what was not committed."""

    def __init__(self, store: MemoryBlobStore, key: str, offset: int) -> None:
        self._store = store
        self._key = key
        self._committed = offset
        self._pending = bytearray()
        self._closed = False

    def write(self, data: bytes) -> None:
        self._check_open()
        self._pending += data

    def commit(self) -> int:
        self._check_open()
        self._committed = self._store._commit(self._key, self._committed, self._pending)
        self._pending = bytearray()
        return self._committed

    def close(self) -> None:
        self._closed = True
        self._pending = bytearray()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("appender is closed")


def _check_offset(offset: int) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput("offset must be a non-negative integer")
