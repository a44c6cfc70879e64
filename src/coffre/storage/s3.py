"""A ``BlobStore`` on any S3 API (SeaweedFS, Ceph RGW, MinIO, a certified host).

Client library: boto3, chosen by ``bench/s3_clients.py`` against SeaweedFS
4.48 on the 2-core reference machine (256 MiB object, best of 3, MB/s):

=================================  =====  =======
                                   boto3  obstore
=================================  =====  =======
PUT in 8 MiB parts, one at a time     74       60
PUT, parts in flight (4 / 12)        171       41-130
GET whole object                     938      560
GET by sequential 8 MiB ranges       826      702
200 x PUT+GET of 4 KiB (ms)          807      394
=================================  =====  =======

boto3 is as fast or faster on bulk data once its redundant CRC checksums
are off (the AEAD stream already authenticates every byte), obstore only
wins on tiny requests; and only boto3 has the calls this design needs:
``UploadPartCopy`` with a source range and explicit multipart control.

Layout. A blob is in one of two forms, told apart by one rule: **if the
object ``key`` exists, it is the blob**. Otherwise the blob is the
concatenation of its *pieces*, immutable objects named by their start
offset under a private prefix that no valid key can produce::

    <root><key>                                   consolidated form
    <root>.tmp-append/<key>/.tmp-piece-<offset>   appended form (20 digits)

``put`` and ``put_stream`` write ``key`` (one PUT, or a multipart upload
completed only at the end and aborted on failure) and then delete any
pieces, which the rule already hides. Appending keeps no local state, so
an upload begun on one instance continues on another:

* each ``commit`` stores the bytes written since the previous one as a
  piece (one PUT, or a multipart upload whose 8 MiB parts leave as they
  fill, up to ``PARTS_IN_FLIGHT`` at once from a shared pool while the
  caller keeps writing, completed at the commit once every part is in);
* every piece except the last holds at least 5 MiB (the S3 part minimum),
  so pieces can be stitched server-side by ``UploadPartCopy``: when the
  last piece is smaller, the next commit rewrites it under the same name
  with the new bytes after it (a superset, replaced atomically), and an
  appender reopened there first reads it back (under 5 MiB);
* reopening at an offset deletes the pieces past it (last first, so what
  remains is always a contiguous prefix) and cuts the piece that straddles
  it; reopening a consolidated blob turns its first ``offset`` bytes into
  piece 0 by a server-side copy, then deletes ``key``;
* reads first GET the range of the object ``key`` (no HEAD: a missing
  object answers NoSuchKey), else list the pieces (one LIST per 1000) and
  compose ranged GETs;
* ``consolidate(key)`` stitches the pieces into the object ``key`` with
  ``UploadPartCopy`` (server-side, nothing downloaded; one piece is one
  ``CopyObject``), then deletes them, first one first. It is the caller's
  call, once no writer can be appending (an upload completed, its lease
  released): the store cannot tell, and a writer reopening the blob while
  the pieces are being deleted would lose its first piece. Never
  consolidating is correct, only slower to read (a LIST more per read).
  A ``delete`` may race with it: in this process, it waits for the
  consolidation of its key; from another instance, the consolidation
  finds pieces gone once its object exists and deletes that object too,
  so no orphan stays behind.

Concurrent writers to one key are not supported (the uploads service
holds a lease). Errors are translated here into ``coffre.errors``; no
message carries the endpoint, a credential or a response body.
"""

from __future__ import annotations

import io
import re
import threading
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from coffre.errors import (
    CoffreError,
    ConfigurationError,
    Conflict,
    InvalidInput,
    NotFound,
    StorageError,
    StorageFull,
)
from coffre.storage.keys import TEMP_PREFIX, key_segments, prefix_directory, validate_key

MIB = 1 << 20
#: The S3 minimum size of every multipart part but the last.
MIN_PIECE = 5 * MIB
#: Parts of a streamed PUT or piece (the first 1000): a writer holds at most
#: ``PARTS_IN_FLIGHT`` + 1.
PART_SIZE = 8 * MIB
#: The S3 maximum of one part, copied or uploaded.
MAX_PART = 5 * 1024 * MIB
MAX_PARTS = 10_000
#: Parts of one writer being uploaded at once (boto3 clients are thread-safe);
#: a writer buffers at most this many parts plus the one filling.
PARTS_IN_FLIGHT = 4
#: Reads of at least this many bytes open a streaming GET (``reader``).
STREAM_MIN = 1 * MIB

PIECES = TEMP_PREFIX + "append/"
PIECE_PREFIX = TEMP_PREFIX + "piece-"
_PIECE_NAME = re.compile(re.escape(PIECE_PREFIX) + r"(\d{20})")
_MISSING = frozenset({"NoSuchKey", "NotFound", "404"})
_FULL = frozenset({
    "InsufficientStorage", "QuotaExceeded", "XMinioStorageFull", "XMinioAdminBucketQuotaExceeded",
})


@dataclass(frozen=True)
class _Piece:
    start: int
    size: int
    name: str

    @property
    def end(self) -> int:
        return self.start + self.size


# ``list`` is a method name in the store's class body.
_Pieces = list[_Piece]
_Ranges = list[tuple[str, int, int]]


class S3BlobStore:
    """Blobs as objects in ``bucket``, under the optional ``root`` prefix."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        root: str = "",
        path_style: bool = True,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise ConfigurationError("S3 bucket name is not valid")
        if root:
            if not root.endswith("/"):
                raise ConfigurationError("S3 root prefix must end with '/'")
            try:
                validate_key(root[:-1])
            except InvalidInput as exc:
                raise ConfigurationError("S3 root prefix must be a valid key path") from exc
        self.bucket = bucket
        self.root = root
        #: Where the data lives (SEC-1), shown to administrators.
        self.location = region
        config = Config(
            region_name=region,
            s3={"addressing_style": "path" if path_style else "virtual",
                "payload_signing_enabled": False},
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # A download holds one connection for as long as it lasts, and the
            # part uploads up to 16: beyond this, connections are opened
            # for one request and dropped (urllib3 logs "pool is full").
            max_pool_connections=64,
            # The AEAD stream authenticates every byte: CRCs, and the SHA-256
            # of each body that SigV4 would otherwise sign (UNSIGNED-PAYLOAD
            # instead: the headers stay signed), would only cost time.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                aws_session_token=session_token,
                config=config,
            )
        except (BotoCoreError, ValueError) as exc:
            raise ConfigurationError(
                f"S3 client refused its settings: {type(exc).__name__}"
            ) from None
        # Shared by all writers; each keeps at most PARTS_IN_FLIGHT parts in it.
        self._parts_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="coffre-s3-part")
        # Per key: a lock and how many threads want it (see ``_exclusive``).
        self._locks: dict[str, tuple[threading.Lock, int]] = {}
        self._locks_guard = threading.Lock()

    def __repr__(self) -> str:
        return f"S3BlobStore({self.bucket!r}, root={self.root!r}, location={self.location!r})"

    # -- names ---------------------------------------------------------------

    def _object(self, key: str) -> str:
        return self.root + key

    def _pieces_prefix(self, key: str) -> str:
        return f"{self.root}{PIECES}{key}/"

    def _piece_name(self, key: str, start: int) -> str:
        return f"{self._pieces_prefix(key)}{PIECE_PREFIX}{start:020d}"

    # -- whole-blob writes ---------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        self.put_stream(key, (data,))

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        validate_key(key)
        writer = _ObjectWriter(self, key, self._object(key))
        try:
            for chunk in chunks:  # the caller's own exceptions pass through untranslated
                writer.write(chunk)
            size = writer.finish()
        finally:
            writer.abort()
        self._delete_pieces(key, self._list_pieces(key))
        return size

    # -- appends ---------------------------------------------------------------

    def open_append(self, key: str, offset: int) -> S3Appender:
        validate_key(key)
        _check_offset(offset)
        whole = self._head(key)
        pieces = self._list_pieces(key)
        if offset == 0:
            self._delete_pieces(key, [p for p in pieces if p.start > 0])
            with self._errors(key):
                self._client.put_object(Bucket=self.bucket, Key=self._piece_name(key, 0), Body=b"")
            if whole is not None:
                self._delete_object(key, self._object(key))
            return S3Appender(self, key, position=0, piece_start=0, carry=b"")
        if whole is not None:
            return self._reopen_whole(key, offset, whole, pieces)
        if not pieces:
            raise NotFound("no blob under this key", key=key)
        return self._reopen_pieces(key, offset, pieces)

    def _reopen_whole(self, key: str, offset: int, size: int, garbage: _Pieces) -> S3Appender:
        """Turn the first ``offset`` bytes of the object ``key`` into piece 0."""
        if size < offset:
            raise _past_size(key, offset, size)
        self._delete_pieces(key, garbage)  # hidden by ``key`` until now
        source = self._object(key)
        target = self._piece_name(key, 0)
        if offset < MIN_PIECE:
            carry = self._get(key, source, 0, offset)
            with self._errors(key):
                self._client.put_object(Bucket=self.bucket, Key=target, Body=carry)
        else:
            carry = b""
            self._copy_ranges(key, target, [(source, *part) for part in _split(offset)])
        self._delete_object(key, source)
        start = 0 if carry else offset
        return S3Appender(self, key, position=offset, piece_start=start, carry=carry)

    def _reopen_pieces(self, key: str, offset: int, pieces: _Pieces) -> S3Appender:
        run = _contiguous(pieces)
        size = run[-1].end if run else 0
        if size < offset:
            raise _past_size(key, offset, size)
        self._delete_pieces(key, [p for p in pieces if p.start >= offset])
        last = max((p for p in run if p.start < offset), key=lambda p: p.start)
        if last.end > offset:  # cut the piece that straddles ``offset``
            last = _Piece(last.start, offset - last.start, last.name)
            if last.size < MIN_PIECE:
                carry = self._get(key, last.name, 0, last.size)
                with self._errors(key):
                    self._client.put_object(Bucket=self.bucket, Key=last.name, Body=carry)
                return S3Appender(self, key, position=offset, piece_start=last.start, carry=carry)
            self._copy_ranges(key, last.name, [(last.name, *part) for part in _split(last.size)])
        if last.size < MIN_PIECE:
            carry = self._get(key, last.name, 0, last.size)
            return S3Appender(self, key, position=offset, piece_start=last.start, carry=carry)
        return S3Appender(self, key, position=offset, piece_start=offset, carry=b"")

    # -- consolidation --------------------------------------------------------

    def consolidate(self, key: str) -> bool:
        """Stitch an appended blob's pieces into the object ``key`` server-side.

        Returns whether it did (False: already one object, missing, deleted
        meanwhile, or over the part limit). Only when no writer is appending
        to ``key``; a ``delete`` may come at any time (the uploads service
        consolidates in the background, after answering).
        """
        validate_key(key)
        with self._exclusive(key):
            if self._head(key) is not None:
                return False
            run = _contiguous(self._list_pieces(key))
            if not run:
                return False
            size = run[-1].end
            target = self._object(key)
            if len(run) == 1 and size <= MAX_PART:
                with self._errors(key):
                    self._client.copy_object(
                        Bucket=self.bucket, Key=target,
                        CopySource={"Bucket": self.bucket, "Key": run[0].name},
                    )
            else:
                ranges = [(p.name, start, length) for p in run for start, length in _split(p.size)]
                if len(ranges) > MAX_PARTS:
                    return False
                self._copy_ranges(key, target, ranges)
            left = {p.name for p in self._list_pieces(key)}
            if any(p.name not in left for p in run):
                # Deleted meanwhile (by another instance: ours wait for us),
                # possibly before the object above existed: delete it too.
                self._delete_pieces(key, self._list_pieces(key))
                self._delete_object(key, target)
                return False
            # First piece first: a reader listing meanwhile finds no run from
            # offset 0 and reads the object, never a shortened run.
            for piece in run:
                self._delete_object(key, piece.name)
            return True

    def _copy_ranges(self, key: str, target: str, ranges: _Ranges) -> None:
        """Build ``target`` from byte ranges of other objects, server-side."""
        with self._errors(key):
            upload_id = self._client.create_multipart_upload(Bucket=self.bucket, Key=target)[
                "UploadId"
            ]
        try:
            parts = []
            for number, (source, start, length) in enumerate(ranges, 1):
                with self._errors(key):
                    answer = self._client.upload_part_copy(
                        Bucket=self.bucket, Key=target, UploadId=upload_id, PartNumber=number,
                        CopySource={"Bucket": self.bucket, "Key": source},
                        CopySourceRange=f"bytes={start}-{start + length - 1}",
                    )
                parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            with self._errors(key):
                self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=target, UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            self._abort(upload_id, target)
            raise

    # -- reads -------------------------------------------------------------------

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        validate_key(key)
        _check_offset(offset)
        if length is not None and length < 0:
            raise InvalidInput("read length must not be negative")
        if length == 0:
            return b""
        for _attempt in range(3):
            # A consolidation may move the blob between our requests: look again.
            data = self._get_whole(key, offset, length)
            if data is not None:
                return data
            run = _contiguous(self._list_pieces(key))
            if not run:
                if self._head(key) is None:
                    raise NotFound("no blob under this key", key=key)
                continue
            size = run[-1].end
            end = size if length is None else min(size, offset + length)
            try:
                return b"".join(
                    self._get(key, p.name, max(offset, p.start) - p.start,
                              min(end, p.end) - max(offset, p.start))
                    for p in run
                    if p.start < end and p.end > offset
                )
            except NotFound:
                continue
        raise StorageError("the blob kept changing while it was read", key=key)

    def reader(self, key: str, end: int) -> _StreamingReader:
        """Forward reads of ``key`` below ``end`` from one streaming GET
        (``SequentialReads``): per 256 MiB, a ranged GET every 4 MiB cost
        this process twice the CPU of one stream, and SeaweedFS a quarter
        more (``bench/s3_transfer.py``)."""
        validate_key(key)
        _check_offset(end)
        return _StreamingReader(self, key, end)

    def size(self, key: str) -> int:
        validate_key(key)
        whole = self._head(key)
        if whole is not None:
            return whole
        run = _contiguous(self._list_pieces(key))
        if run:
            return run[-1].end
        whole = self._head(key)  # consolidated between the two looks
        if whole is not None:
            return whole
        raise NotFound("no blob under this key", key=key)

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except NotFound:
            return False
        return True

    # -- delete and list -----------------------------------------------------------

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._exclusive(key):  # after a consolidation of ``key`` in this process
            # Pieces first: while ``key`` exists they are hidden, so nothing shows through.
            self._delete_pieces(key, self._list_pieces(key))
            self._delete_object(key, self._object(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        prefix_directory(prefix)  # validated now, not at the first next()
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[str]:
        seen: set[str] = set()
        for name, _size in self._list_objects(prefix, self.root + prefix):
            key = name[len(self.root):]
            if _is_key(key):
                seen.add(key)
                yield key
        holder = self.root + PIECES
        for name, _size in self._list_objects(prefix, holder + prefix):
            key, _, last = name[len(holder):].rpartition("/")
            if _PIECE_NAME.fullmatch(last) and key not in seen and _is_key(key):
                seen.add(key)
                yield key

    def list_dated(self, prefix: str = "") -> Iterator[tuple[str, datetime]]:
        """``list`` with each blob's ``LastModified`` (``Dated``): the whole
        object's if there is one, else that of its latest piece."""
        prefix_directory(prefix)
        return self._list_dated(prefix)

    def _list_dated(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        seen: set[str] = set()
        for name, modified in self._list_modified(prefix, self.root + prefix):
            key = name[len(self.root):]
            if _is_key(key):
                seen.add(key)
                yield key, modified
        holder = self.root + PIECES
        latest: dict[str, datetime] = {}
        for name, modified in self._list_modified(prefix, holder + prefix):
            key, _, last = name[len(holder):].rpartition("/")
            if _PIECE_NAME.fullmatch(last) and key not in seen and _is_key(key):
                latest[key] = max(latest.get(key, modified), modified)
        yield from latest.items()

    def _list_modified(self, key: str, prefix: str) -> Iterator[tuple[str, datetime]]:
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors(key):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    modified: datetime = item["LastModified"]
                    yield item["Key"], modified.astimezone(UTC)

    @contextmanager
    def _exclusive(self, key: str) -> Iterator[None]:
        """Hold ``key`` against this process's other consolidations and deletes."""
        with self._locks_guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._locks_guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    # -- requests --------------------------------------------------------------------

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except CoffreError:
            raise
        except ClientError as exc:
            raise _translate(exc, key) from exc
        except BotoCoreError as exc:
            # Class name only: botocore's messages quote the endpoint URL.
            raise StorageError(
                f"S3 storage unreachable: {type(exc).__name__}", key=key
            ) from exc

    def _head(self, key: str) -> int | None:
        """Size of the object ``key``, or None if there is none."""
        try:
            with self._errors(key):
                answer = self._client.head_object(Bucket=self.bucket, Key=self._object(key))
        except NotFound:
            return None
        return int(answer["ContentLength"])

    def _get_whole(self, key: str, offset: int, length: int | None) -> bytes | None:
        """Bytes of the object ``key`` (one GET, no HEAD), or None if there is none."""
        last = "" if length is None else str(offset + length - 1)
        try:
            with self._errors(key):
                try:
                    answer = self._client.get_object(
                        Bucket=self.bucket, Key=self._object(key), Range=f"bytes={offset}-{last}"
                    )
                    data: bytes = answer["Body"].read()
                except ClientError as exc:
                    if not _unsatisfiable(exc):
                        raise
                    # At or past the end (or an empty object), or gone meanwhile.
                    return None if self._head(key) is None else b""
        except NotFound:
            return None
        return data

    def _get(self, key: str, name: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        with self._errors(key):
            answer = self._client.get_object(
                Bucket=self.bucket, Key=name, Range=f"bytes={start}-{start + length - 1}"
            )
            data: bytes = answer["Body"].read()
        return data

    def _list_objects(self, key: str, prefix: str) -> Iterator[tuple[str, int]]:
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors(key):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    yield item["Key"], int(item["Size"])

    def _list_pieces(self, key: str) -> _Pieces:
        holder = self._pieces_prefix(key)
        pieces: _Pieces = []
        for name, size in self._list_objects(key, holder):
            found = _PIECE_NAME.fullmatch(name[len(holder):])
            if found:
                pieces.append(_Piece(int(found.group(1)), size, name))
        return sorted(pieces, key=lambda p: p.start)

    def _delete_pieces(self, key: str, pieces: _Pieces) -> None:
        """Delete ``pieces`` last first: what remains is always a contiguous prefix."""
        for piece in sorted(pieces, key=lambda p: p.start, reverse=True):
            self._delete_object(key, piece.name)

    def _delete_object(self, key: str, name: str) -> None:
        try:
            with self._errors(key):
                self._client.delete_object(Bucket=self.bucket, Key=name)
        except NotFound:
            return

    def _abort(self, upload_id: str, name: str) -> None:
        with suppress(BotoCoreError, ClientError):
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)


class _ObjectWriter:
    """Writes one object: a single PUT if small, else a multipart upload whose
    parts leave as they fill (up to ``PARTS_IN_FLIGHT`` at once, in the
    store's pool) and which exists only once ``finish`` completes it.

    A part's failure surfaces at the next ``write`` that must wait for it, or
    at ``finish``; ``abort`` waits for the parts still in flight, then drops
    the upload.
    """

    def __init__(self, store: S3BlobStore, key: str, name: str, initial: bytes = b"") -> None:
        self._store = store
        self._key = key
        self._name = name
        # Written bytes not sent yet, as they came: a part is sent as these
        # pieces, never joined into one buffer (see ``_Body``).
        self._pending: deque[bytes | memoryview] = deque()
        self._buffered = 0
        self._add(initial)
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []  # uploaded, in order
        self._in_flight: deque[Future[dict[str, Any]]] = deque()
        self._numbered = 0  # parts handed to the pool
        self._sent = 0

    @property
    def size(self) -> int:
        return self._sent + self._buffered

    def write(self, data: bytes) -> None:
        self._add(data)
        # Parts grow by 8 MiB every 1000 so that 10,000 of them hold 440 GB.
        while self._buffered > (part := PART_SIZE * (1 + self._numbered // 1000)):
            self._send(self._take(part))

    def _add(self, data: bytes) -> None:
        if data:
            # Kept by reference until sent: a caller's mutable buffer is copied.
            self._pending.append(data if isinstance(data, bytes) else bytes(data))
            self._buffered += len(data)

    def _take(self, size: int) -> list[bytes | memoryview]:
        """The first ``size`` bytes pending, removed, as pieces (no copy)."""
        taken: list[bytes | memoryview] = []
        need = size
        while need:
            chunk = self._pending[0]
            if len(chunk) <= need:
                taken.append(self._pending.popleft())
                need -= len(chunk)
            else:
                view = memoryview(chunk)
                taken.append(view[:need])
                self._pending[0] = view[need:]
                need = 0
        self._buffered -= size
        return taken

    def finish(self) -> int:
        """Make the object exist with everything written; returns its size."""
        store, client = self._store, self._store._client
        size = self.size
        with store._errors(self._key):
            if self._upload_id is None:
                client.put_object(Bucket=store.bucket, Key=self._name,
                                  Body=_Body(self._pending))
            else:
                if self._buffered:
                    self._send(self._take(self._buffered))
                while self._in_flight:  # durable only once every part is in
                    self._parts.append(self._in_flight.popleft().result())
                client.complete_multipart_upload(
                    Bucket=store.bucket, Key=self._name, UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
                self._upload_id = None
        self._pending.clear()
        self._buffered = 0
        return size

    def buffered(self) -> bytes:
        """Everything written, if no part has left yet."""
        if self._upload_id is not None:
            raise AssertionError("parts already sent")
        return b"".join(self._pending)

    def abort(self) -> None:
        """Drop a multipart upload that was not completed (nothing becomes visible)."""
        in_flight, self._in_flight = self._in_flight, deque()
        for future in in_flight:
            future.cancel()
        wait(in_flight)  # no part may land after the abort
        if self._upload_id is not None:
            self._store._abort(self._upload_id, self._name)
            self._upload_id = None

    def _send(self, part: list[bytes | memoryview]) -> None:
        store = self._store
        if self._upload_id is None:
            with store._errors(self._key):
                self._upload_id = store._client.create_multipart_upload(
                    Bucket=store.bucket, Key=self._name
                )["UploadId"]
        while len(self._in_flight) >= PARTS_IN_FLIGHT:  # memory stays bounded
            self._parts.append(self._in_flight.popleft().result())
        self._numbered += 1
        self._in_flight.append(
            store._parts_pool.submit(self._upload_part, self._upload_id, self._numbered, part)
        )
        self._sent += sum(len(piece) for piece in part)

    def _upload_part(
        self, upload_id: str, number: int, part: list[bytes | memoryview]
    ) -> dict[str, Any]:
        store = self._store
        with store._errors(self._key):
            answer = store._client.upload_part(
                Bucket=store.bucket, Key=self._name, UploadId=upload_id,
                PartNumber=number, Body=_Body(part),
            )
        return {"PartNumber": number, "ETag": answer["ETag"]}


class _Body(io.RawIOBase):
    """A request body that boto3 sends as the pieces it was written in.

    botocore wraps a ``bytes`` body in ``BytesIO``, which the HTTP client
    then sends 16 KiB at a time: a copy and a system call each. Here each
    read hands over the rest of one piece without a copy, and a part is
    never joined into one buffer first: per 256 MiB uploaded, 0.1 CPU s of
    this process less. Seekable, so botocore can rewind it to retry.
    """

    def __init__(self, pieces: Iterable[bytes | memoryview]) -> None:
        super().__init__()
        self._pieces = [memoryview(piece) for piece in pieces if len(piece)]
        self._starts = list(accumulate((len(p) for p in self._pieces), initial=0))
        self._position = 0

    def __len__(self) -> int:
        return self._starts[-1]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self)}
        self._position = min(max(base[whence] + offset, 0), len(self))
        return self._position

    def read(self, size: int = -1) -> memoryview:
        # The rest of the current piece, whatever ``size``: callers loop until empty.
        if self._position >= len(self):
            return memoryview(b"")
        index = bisect_right(self._starts, self._position) - 1
        rest = self._pieces[index][self._position - self._starts[index]:]
        self._position += len(rest)
        return rest


class _StreamingReader:
    """``S3BlobStore.reader``: forward reads served from one streaming GET.

    A read of at least ``STREAM_MIN`` bytes opens a GET of the object
    ``key`` from its offset to ``end``; the reads that continue at its
    position take their bytes from it. Any other read is an ordinary
    ``store.read`` (a ranged GET, or the pieces of a blob not consolidated
    yet), and so is a read whose stream failed or came short, for example
    after a consumer slower than the server's timeouts: the stream is only
    a faster path, never a less reliable one. Every byte is authenticated
    by the caller's AEAD stream, like those of ``read``.
    """

    def __init__(self, store: S3BlobStore, key: str, end: int) -> None:
        self._store = store
        self._key = key
        self._end = end
        self._body: Any = None  # botocore's StreamingBody of the open GET
        self._position = 0
        self._streaming = True  # False once the object is missing: in pieces
        self._reading = threading.Lock()  # one read at a time
        self._guard = threading.Lock()  # _busy and _closed
        self._busy = False
        self._closed = False

    def __call__(self, offset: int, length: int) -> bytes:
        with self._reading:
            with self._guard:
                self._refuse_if_closed()
                self._busy = True
            try:
                data = self._from_stream(offset, length)
                if data is not None:
                    return data
                with self._guard:  # closed meanwhile: no request for nobody
                    self._refuse_if_closed()
                return self._store.read(self._key, offset, length)
            finally:
                with self._guard:
                    self._busy = False
                    if self._closed:
                        self._drop()

    def close(self) -> None:
        with self._guard:
            self._closed = True
            if not self._busy:
                self._drop()

    def _from_stream(self, offset: int, length: int) -> bytes | None:
        if self._body is not None and offset != self._position:
            self._drop()
        if self._body is None and not self._open(offset, length):
            return None
        try:
            data: bytes = self._body.read(length)
        except Exception:  # noqa: BLE001 - any failure: the ordinary read decides
            data = b""
        if len(data) != length:
            self._drop()
            return None
        self._position += length
        if self._position >= self._end:
            self._drop()  # read to its end: a no-op once urllib3 took the connection back
        return data

    def _open(self, offset: int, length: int) -> bool:
        if not self._streaming or length < STREAM_MIN or offset + length > self._end:
            return False
        with self._guard:
            self._refuse_if_closed()
        store = self._store
        try:
            with store._errors(self._key):
                answer = store._client.get_object(
                    Bucket=store.bucket, Key=store._object(self._key),
                    Range=f"bytes={offset}-{self._end - 1}",
                )
        except NotFound:
            self._streaming = False
            return False
        except CoffreError:
            return False
        if not str(answer.get("ContentRange", "")).startswith(f"bytes {offset}-"):
            answer["Body"].close()  # the range was ignored: the ordinary read decides
            return False
        self._body, self._position = answer["Body"], offset
        return True

    def _refuse_if_closed(self) -> None:
        """Call holding ``_guard``."""
        if self._closed:
            raise ValueError("reader is closed")

    def _drop(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            with suppress(Exception):
                body.close()


class S3Appender:
    """Extends an appended blob; each ``commit`` stores one piece.

    ``carry`` holds the committed bytes of a last piece under 5 MiB, which
    the next commit rewrites with the new bytes after them. After a failed
    request the appender refuses further use: reopen at the last offset
    that ``commit`` returned.
    """

    def __init__(
        self, store: S3BlobStore, key: str, *, position: int, piece_start: int, carry: bytes
    ) -> None:
        self._store = store
        self._key = key
        self._position = position
        self._piece_start = piece_start
        self._writer = self._new_writer(carry)
        self._carried = len(carry)
        self._failed = False
        self._closed = False

    def _new_writer(self, carry: bytes) -> _ObjectWriter:
        name = self._store._piece_name(self._key, self._piece_start)
        return _ObjectWriter(self._store, self._key, name, carry)

    def write(self, data: bytes) -> None:
        self._check_usable()
        self._failed = True
        self._writer.write(data)
        self._failed = False

    def commit(self) -> int:
        self._check_usable()
        if self._writer.size == self._carried:
            return self._position  # nothing new since the last commit
        # Under 5 MiB the piece went up in one PUT and is still all in memory.
        carry = self._writer.buffered() if self._writer.size < MIN_PIECE else b""
        self._failed = True
        size = self._writer.finish()
        self._failed = False
        self._position = self._piece_start + size
        if not carry:
            self._piece_start = self._position
        self._writer = self._new_writer(carry)
        self._carried = len(carry)
        return self._position

    def close(self) -> None:
        self._closed = True
        self._writer.abort()

    def _check_usable(self) -> None:
        if self._closed:
            raise ValueError("appender is closed")
        if self._failed:
            raise StorageError(
                "an earlier write or commit failed; reopen at the last committed offset",
                key=self._key,
            )


# -- helpers ---------------------------------------------------------------------------


def _check_offset(offset: int) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInput("offset must be a non-negative integer")


def _is_key(name: str) -> bool:
    try:
        key_segments(name)
    except InvalidInput:
        return False
    return True


def _contiguous(pieces: list[_Piece]) -> list[_Piece]:
    """The pieces that form the blob: a run from offset 0 without gaps."""
    run: list[_Piece] = []
    end = 0
    for piece in pieces:
        if piece.start != end or (run and piece.size == 0):
            break
        run.append(piece)
        end = piece.end
    return run


def _split(size: int) -> list[tuple[int, int]]:
    """(start, length) ranges of at most ``MAX_PART``, as even as possible."""
    count = max(1, -(-size // MAX_PART))
    step = -(-size // count) if size else 0
    return [(start, min(step, size - start)) for start in range(0, size, step)] if size else []


def _unsatisfiable(exc: ClientError) -> bool:
    """Whether S3 refused a range that starts at or past the object's end."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code == "InvalidRange" or status == 416


def _past_size(key: str, offset: int, size: int) -> Conflict:
    return Conflict(
        "append offset is past the blob's committed size", key=key, offset=offset, size=size
    )


def _translate(exc: ClientError, key: str) -> CoffreError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "unknown"))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _MISSING or (status == 404 and code not in ("NoSuchBucket", "NoSuchUpload")):
        return NotFound("no blob under this key", key=key)
    if code in _FULL or status == 507:
        return StorageFull("the S3 storage is full", key=key, code=code)
    # The code only: messages and bodies may quote the request.
    return StorageError(
        f"S3 storage refused the request: {code}", key=key, code=code, status=status
    )
