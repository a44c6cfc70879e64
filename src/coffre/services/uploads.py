"""Resumable uploads (the use cases behind the tus endpoint).

Plaintext arrives in pieces; whole stream segments are encrypted once and
appended to the blob, and what is left after the last whole segment is kept
as a small "tail" sealed under its own key with a fresh random nonce, in the
database row next to the offset, so the two commit atomically.

Never encrypt a stream segment twice with different contents: segment
indices that may have reached storage without being committed (a crash, a
checksum mismatch) are "reserved"; a later writer finding reservations past
the committed segments re-keys the stream (new salt and data key,
re-encrypting the committed prefix) before writing. Never writes plaintext
to disk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from coffre.audit import trail
from coffre.crypto import envelope, stream
from coffre.db.engine import Database
from coffre.db.tables import Blob, Organisation, Upload, new_id
from coffre.domain import filetypes
from coffre.domain.accounts import Actor, Scope
from coffre.domain.limits import check_file_size
from coffre.domain.requests import Depositor
from coffre.domain.transfers import sanitise_filename
from coffre.errors import (
    ChecksumMismatch,
    Conflict,
    Gone,
    InvalidInput,
    NotFound,
    QuotaExceeded,
    StorageError,
    TooLarge,
    UnsupportedMediaType,
)
from coffre.ports import BlobAppender, BlobStore, Clock, Consolidating
from coffre.services import staging
from coffre.services.keys import KeyRing
from coffre.services.quotas import Quotas

log = logging.getLogger(__name__)

#: Segments a writer may encrypt between two database round trips.
RESERVE_WINDOW = 64
#: A live writer renews its lease at least this often.
LEASE = timedelta(seconds=30)
CHECKPOINT_SECONDS = 5.0
CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
MAX_METADATA_BYTES = 4096
#: Quota bytes a deferred-length upload reserves ahead while streaming.
QUOTA_WINDOW = 64 << 20
#: Unfinished uploads listed for resuming, at most.
MAX_UNFINISHED = 100


@dataclass(frozen=True)
class UploadInfo:
    id: str
    offset: int
    length: int | None
    metadata: dict[str, str]
    expires_at: datetime
    completed: bool
    sha256: str | None


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: bytes

    @classmethod
    def parse(cls, header: str) -> Checksum:
        alg, _, value = header.strip().partition(" ")
        alg = alg.lower()
        if alg not in CHECKSUM_ALGORITHMS:
            raise InvalidInput(
                "unsupported checksum algorithm", supported=sorted(CHECKSUM_ALGORITHMS)
            )
        try:
            digest = base64.b64decode(value.strip(), validate=True)
        except ValueError:
            raise InvalidInput("checksum is not base64") from None
        if len(digest) != CHECKSUM_ALGORITHMS[alg]().digest_size:
            raise InvalidInput(f"checksum is not a {alg} digest")
        return cls(alg, digest)


def parse_metadata(header: str | None) -> dict[str, str]:
    """tus ``Upload-Metadata``: ``key base64(value)`` pairs, comma-separated."""
    if not header:
        return {}
    if len(header) > MAX_METADATA_BYTES:
        raise InvalidInput("Upload-Metadata is too long")
    result: dict[str, str] = {}
    for pair in header.split(","):
        key, _, value = pair.strip().partition(" ")
        if not key or not key.isascii() or " " in key or key in result:
            raise InvalidInput("malformed Upload-Metadata")
        try:
            result[key] = base64.b64decode(value.strip(), validate=True).decode() if value else ""
        except ValueError:
            raise InvalidInput("Upload-Metadata values must be base64 UTF-8") from None
    # The file name stays as sent: the file-type policy judges it raw
    # (NUL, bidi tricks) before ``UploadService.create`` sanitises it.
    if "filetype" in result:
        result["filetype"] = result["filetype"][:100]
    return result


def encode_metadata(metadata: dict[str, str]) -> str:
    return ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in metadata.items()
    )


#: Who writes an upload: a member, or a depositor of an upload request
#: (through their grant; the upload then belongs to the requester).
Uploader = Actor | Depositor
#: Called in the creating transaction, before the row is added (limits).
Admission = Callable[[Session, int | None], None]


def _require_write(uploader: Uploader) -> None:
    if isinstance(uploader, Actor):
        uploader.require(Scope.TRANSFERS_WRITE)  # uploads belong to sending


def _owner_id(uploader: Uploader) -> str:
    return uploader.user_id if isinstance(uploader, Actor) else uploader.owner_id


def _audit_actor(uploader: Uploader) -> str | None:
    return uploader.user_id if isinstance(uploader, Actor) else None


def _owns(uploader: Uploader, upload: Upload) -> bool:
    """A member's own uploads never include deposits; a depositor sees theirs only."""
    if isinstance(uploader, Depositor):
        return upload.depositor_id == uploader.depositor_id
    return upload.owner_id == uploader.user_id and upload.depositor_id is None


class _HashCache:
    """Running SHA-256 of each upload's encrypted segments, per process.

    hashlib's state cannot be saved, so after a restart (or on another
    instance) it is rebuilt by decrypting what is stored.
    """

    def __init__(self) -> None:
        self._items: dict[str, tuple[int, Any]] = {}
        self._lock = threading.Lock()

    def take(self, upload_id: str, segments: int) -> Any | None:
        with self._lock:
            item = self._items.pop(upload_id, None)
        if item is not None and item[0] == segments:
            return item[1]
        return None

    def put(self, upload_id: str, segments: int, hasher: Any) -> None:
        with self._lock:
            self._items[upload_id] = (segments, hasher.copy())

    def drop(self, upload_id: str) -> None:
        with self._lock:
            self._items.pop(upload_id, None)


class UploadService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        keys: KeyRing,
        clock: Clock,
        *,
        max_size: int,
        expiry: timedelta,
        single_instance: bool,
        quotas: Quotas | None = None,
    ) -> None:
        self.quotas = quotas
        self.db = db
        self.store = store
        self.keys = keys
        self.clock = clock
        self.max_size = max_size
        self.expiry = expiry
        self.single_instance = single_instance
        self.hashes = _HashCache()
        #: This service, as a lease owner: its own writers are excluded by
        #: ``_local_writers``, other instances' by the lease in the database.
        self.lease_owner = new_id()
        self._local_writers: set[str] = set()
        self._local_lock = threading.Lock()
        #: Completed uploads' blobs being made whole after the answer.
        self._consolidations = ThreadPoolExecutor(max_workers=2,
                                                  thread_name_prefix="coffre-consolidate")

    # -- creation and status --------------------------------------------------

    def create(
        self,
        actor: Uploader,
        length: int | None,
        metadata: dict[str, str],
        ctx: trail.Context,
        admit: Admission | None = None,
    ) -> UploadInfo:
        _require_write(actor)
        if length is not None and length > self.max_size:
            raise TooLarge(
                f"the file is larger than the {self.max_size} bytes allowed",
                max_size=self.max_size,
            )
        if metadata.get("filename") is not None:
            self._check_name(actor, metadata["filename"], ctx)
            metadata = {**metadata, "filename": sanitise_filename(metadata["filename"])}
        now = self.clock.now()
        with self.db.session() as session:
            blob = Blob(id=new_id(), organisation_id=actor.organisation_id)
            blob.storage_key = f"blobs/{blob.id[:2]}/{blob.id}"
            blob.header = stream.StreamHeader.random().to_bytes()
            self.keys.new_blob_key(session, blob)
            if admit is not None:
                admit(session, length)
            session.add(blob)
            upload = Upload(
                id=new_id(),
                organisation_id=actor.organisation_id,
                owner_id=_owner_id(actor),
                depositor_id=actor.depositor_id if isinstance(actor, Depositor) else None,
                blob_id=blob.id,
                length=length,
                offset=0,
                expires_at=now + self.expiry,
                created_at=now,
            )
            if metadata:
                upload.metadata_sealed = self.keys.seal_text(
                    session, actor.organisation_id, json.dumps(metadata), f"upload:{upload.id}"
                )
            session.add(upload)
            self._admit(session, upload, length)
            session.flush()
            trail.record(
                session,
                "upload.created",
                actor=_audit_actor(actor),
                organisation_id=actor.organisation_id,
                object_type="upload",
                object_id=upload.id,
                context=ctx,
                length=length,
                **_deposit_details(actor),
            )
            return self._info(session, upload)

    def _check_name(self, actor: Uploader, name: str, ctx: trail.Context) -> None:
        """SEC-19: refuse a program's name before anything is created."""
        refusal = filetypes.check_name(name)
        if refusal is None:
            return
        with self.db.session() as session:
            if not refuses_programs(session, actor.organisation_id):
                return
            trail.record(session, "upload.refused", actor=_audit_actor(actor),
                         organisation_id=actor.organisation_id, object_type="upload",
                         outcome="denied", context=ctx, refused_by=refusal.reason,
                         kind=refusal.kind, **_deposit_details(actor))
        raise file_type_refused(refusal)

    def info(self, actor: Uploader, upload_id: str) -> UploadInfo:
        _require_write(actor)
        with self.db.session() as session:
            upload = self._load(session, actor, upload_id)
            return self._info(session, upload)

    def unfinished(self, actor: Uploader) -> list[UploadInfo]:
        """The uploader's own uploads not yet in a transfer and not expired,
        newest first (at most MAX_UNFINISHED): a page reloaded mid-upload
        finds there, by its metadata, the upload to resume."""
        _require_write(actor)
        query = select(Upload).where(
            Upload.owner_id == _owner_id(actor), Upload.attached_at.is_(None),
            Upload.expires_at > self.clock.now(),
            Upload.depositor_id == actor.depositor_id if isinstance(actor, Depositor)
            else Upload.depositor_id.is_(None),
        )
        with self.db.session() as session:
            rows = session.execute(
                query.order_by(Upload.created_at.desc()).limit(MAX_UNFINISHED)
            ).scalars().all()
            return [self._info(session, upload) for upload in rows]

    def _info(self, session: Session, upload: Upload) -> UploadInfo:
        metadata: dict[str, str] = {}
        if upload.metadata_sealed:
            metadata = json.loads(
                self.keys.open_text(session, upload.metadata_sealed, f"upload:{upload.id}")
            )
        return UploadInfo(
            id=upload.id,
            offset=upload.offset,
            length=upload.length,
            metadata=metadata,
            expires_at=upload.expires_at,
            completed=upload.completed_at is not None,
            sha256=upload.sha256,
        )

    def _load(self, session: Session, actor: Uploader, upload_id: str, *,
              lock: bool = False) -> Upload:
        upload = session.get(Upload, upload_id, with_for_update={"of": Upload} if lock else None)
        if upload is None:
            raise NotFound("upload not found")
        if not _owns(actor, upload):
            raise NotFound("upload not found", access_denied=True)
        if upload.attached_at is None and upload.expires_at <= self.clock.now():
            raise Gone("this upload has expired", reason="expired")
        return upload

    def terminate(self, actor: Uploader, upload_id: str, ctx: trail.Context) -> None:
        _require_write(actor)
        with self.db.session() as session:
            upload = self._load(session, actor, upload_id)
            if upload.attached_at is not None:
                raise Conflict("this upload belongs to a transfer; delete the transfer instead")
            self._destroy(session, upload)
            trail.record(
                session,
                "upload.terminated",
                actor=_audit_actor(actor),
                organisation_id=actor.organisation_id,
                object_type="upload",
                object_id=upload_id,
                context=ctx,
            )
        self.hashes.drop(upload_id)

    def _destroy(self, session: Session, upload: Upload) -> None:
        blob = upload.blob
        blob.wrapped_key = None
        blob.shredded_at = self.clock.now()
        session.delete(upload)
        self.store.delete(blob.storage_key)

    def purge_expired(self) -> int:
        """Delete abandoned uploads (crypto-shredded). Returns how many."""
        now = self.clock.now()
        count = 0
        with self.db.session() as session:
            rows = (
                session.execute(
                    select(Upload).where(Upload.attached_at.is_(None), Upload.expires_at <= now)
                )
                .scalars()
                .all()
            )
            for upload in rows:
                self._destroy(session, upload)
                trail.record(
                    session,
                    "upload.expired",
                    actor=None,
                    organisation_id=upload.organisation_id,
                    object_type="upload",
                    object_id=upload.id,
                )
                self.hashes.drop(upload.id)
                count += 1
        return count

    # -- appending --------------------------------------------------------------

    def begin_append(
        self,
        actor: Uploader,
        upload_id: str,
        offset: int,
        *,
        length: int | None = None,
        checksum: Checksum | None = None,
        ctx: trail.Context | None = None,
    ) -> UploadWriter:
        """Claim the upload for one PATCH; blocking (call from a worker thread).
        ``ctx``: the request, for the events of an upload refused mid-body."""
        _require_write(actor)
        deadline = time.monotonic() + 10
        while True:
            with self._local_lock:
                busy_here = upload_id in self._local_writers
                if not busy_here:
                    self._local_writers.add(upload_id)
            if not busy_here:
                break
            if time.monotonic() > deadline:
                raise Conflict("another request is writing to this upload")
            time.sleep(0.05)
        try:
            writer = self._claim(actor, upload_id, offset, length, checksum)
            writer.ctx = ctx
            return writer
        except BaseException:
            self._release_local(upload_id)
            raise

    def _release_local(self, upload_id: str) -> None:
        with self._local_lock:
            self._local_writers.discard(upload_id)

    def _claim(
        self,
        actor: Uploader,
        upload_id: str,
        offset: int,
        length: int | None,
        checksum: Checksum | None,
    ) -> UploadWriter:
        # Long enough for the lease of an instance that died mid-PATCH to
        # lapse (a live writer renews it, so its competitor still fails).
        deadline = time.monotonic() + LEASE.total_seconds() + 5
        while True:
            with self.db.session() as session:
                # Locked: two instances claiming at once must not both win.
                upload = self._load(session, actor, upload_id, lock=True)
                now = self.clock.now()
                if upload.offset != offset:
                    raise Conflict(
                        "Upload-Offset does not match the upload's offset",
                        expected=upload.offset,
                    )
                held = (
                    upload.lease_owner not in (None, self.lease_owner)
                    and upload.lease_until is not None
                    and upload.lease_until > now
                    and not self.single_instance
                )
                if upload.completed_at is not None:
                    needs_rekey = False  # nothing will be written: no lease, no reservation
                    break
                if not held:
                    self._apply_length(upload, length)
                    needs_rekey = upload.segments_reserved > upload.segments_committed
                    upload.lease_owner = self.lease_owner
                    upload.lease_until = now + LEASE
                    break
            if time.monotonic() > deadline:
                raise Conflict("another instance is writing to this upload")
            time.sleep(0.2)
        if needs_rekey:
            self._rekey(upload_id)
        with self.db.session() as session:
            upload = self._load(session, actor, upload_id)
            key = self.keys.blob_key(session, upload.blob)
            tail = b""
            if upload.tail_sealed:
                tail = envelope.open_sealed(
                    _tail_key(key),
                    upload.tail_sealed,
                    _tail_context(upload),
                )
            snapshot = _Snapshot(
                upload_id=upload.id,
                organisation_id=upload.organisation_id,
                actor_id=_audit_actor(actor),
                blob_id=upload.blob_id,
                storage_key=upload.blob.storage_key,
                header=upload.blob.header,
                length=upload.length,
                offset=upload.offset,
                segments=upload.segments_committed,
                completed=upload.completed_at is not None,
                sniff=upload.segments_committed == 0 and upload.completed_at is None
                and refuses_programs(session, upload.organisation_id),
            )
        hasher = self.hashes.take(upload_id, snapshot.segments)
        if hasher is None:
            hasher = hashlib.sha256() if snapshot.completed else self._rehash(key, snapshot)
        return UploadWriter(self, snapshot, key, tail, hasher, checksum)

    def _apply_length(self, upload: Upload, length: int | None) -> None:
        if length is None:
            return
        if upload.length is not None and upload.length != length:
            raise InvalidInput("Upload-Length cannot change once set")
        if length < upload.offset:
            raise InvalidInput("Upload-Length is smaller than the bytes already received")
        if length > self.max_size:
            raise TooLarge(f"the file is larger than the {self.max_size} bytes allowed")
        if upload.length is None:
            session = object_session(upload)
            assert session is not None
            self._admit(session, upload, length)
        upload.length = length

    def _consolidate(self, upload_id: str, storage_key: str) -> None:
        """A completed upload's blob as one whole object, if the store keeps
        appended blobs in a slower form: in the background, once the PATCH
        has answered (its bytes are durable already; the copy only makes
        reads faster, and a crash before it leaves a complete blob). Only
        now: the upload is complete and its lease released, so no writer
        can append to it any more; a delete meanwhile is the store's to
        handle. A failure costs read speed, not data."""
        store = self.store
        if not isinstance(store, Consolidating):
            return

        def consolidate() -> None:
            try:
                store.consolidate(storage_key)
            except NotFound:
                pass  # deleted meanwhile
            except StorageError as exc:
                log.warning("upload %s complete but not consolidated: %s", upload_id,
                            exc.message)
            except Exception:  # a background thread: nobody else would see it
                log.exception("upload %s complete but not consolidated", upload_id)

        self._consolidations.submit(consolidate)

    # -- limits and quotas --------------------------------------------------------

    def _admit(self, session: Session, upload: Upload, length: int | None) -> None:
        """The organisation's file size limit and the quotas, in the creating
        (or length-declaring) transaction: 413 before any byte is stored."""
        if self.quotas is None or length is None:
            return
        limits = self.quotas.limits(session, upload.organisation_id)
        check_file_size(length, limits)
        self.quotas.check(session, upload.organisation_id, upload.owner_id, length,
                          exclude_upload=upload.id)

    def _reserve_quota(self, upload_id: str, upto: int) -> int:
        """A deferred-length upload is about to hold ``upto`` bytes: reserve
        quota up to a window ahead; returns how far it may grow unchecked."""
        assert self.quotas is not None
        with self.db.session() as session:
            upload = session.get(Upload, upload_id)
            if upload is None:
                raise Gone("this upload was deleted")
            limits = self.quotas.limits(session, upload.organisation_id)
            check_file_size(upto, limits)
            self.quotas.check(session, upload.organisation_id, upload.owner_id, upto,
                              exclude_upload=upload.id)
            free = self.quotas.free(session, upload.organisation_id, upload.owner_id,
                                    exclude_upload=upload.id)
            if free is None:
                return limits.max_file_size
            upload.quota_reserved = min(upto + QUOTA_WINDOW, free)
            return min(upload.quota_reserved, limits.max_file_size)

    def _discard_over_quota(self, upload_id: str, actor_id: str | None) -> None:
        """A deferred-length upload crossed a quota while streaming: it
        stops, and nothing of it remains (blob shredded, row deleted)."""
        self._discard(upload_id, actor_id, "upload.quota_exceeded")

    def _discard(self, upload_id: str, actor_id: str | None, action: str,
                 context: trail.Context | None = None, **details: Any) -> None:
        """Destroy an upload refused mid-body (blob shredded, row deleted)."""
        with self.db.session() as session:
            upload = session.get(Upload, upload_id)
            if upload is None:
                return
            self._destroy(session, upload)
            trail.record(
                session,
                action,
                actor=actor_id,
                organisation_id=upload.organisation_id,
                object_type="upload",
                object_id=upload_id,
                context=context,
                received=upload.offset,
                **details,
            )
        self.hashes.drop(upload_id)

    def _rehash(self, key: bytes, snap: _Snapshot) -> Any:
        """Rebuild the running SHA-256 by decrypting the committed segments."""
        hasher = hashlib.sha256()
        if snap.segments == 0:
            return hasher
        cipher = stream.SegmentCipher(key, stream.StreamHeader.parse(snap.header))
        end = stream.segment_ciphertext_offset(snap.segments)
        pos = stream.HEADER_SIZE
        index = 0
        while pos < end:
            batch = min(end, stream.segment_ciphertext_offset(index + 8))
            data = self.store.read(snap.storage_key, pos, batch - pos)
            view = memoryview(data)
            while view:
                size = stream.segment_plaintext_size(index) + stream.TAG_SIZE
                hasher.update(cipher.decrypt_segment(index, bytes(view[:size]), False))
                view = view[size:]
                index += 1
            pos = batch
        return hasher

    def _rekey(self, upload_id: str) -> None:
        """Re-encrypt the committed prefix under a new key and salt.

        Segments past the committed ones may sit in storage, encrypted with
        the current key and nonces; writing different data under the same
        nonces would break AES-GCM, so the stream moves to fresh keys. The
        re-encryption (the whole prefix: minutes for 100 GB) runs outside
        any transaction, under this writer's lease, into a staged blob
        (``services.staging``: its key is stored only by the short
        compare-and-set that swaps the blobs); if the upload changed or
        anything fails, the copy is discarded, never left decryptable.
        """
        with self.db.session() as session:
            upload = session.get(Upload, upload_id)
            assert upload is not None
            old_blob = upload.blob
            old_key = self.keys.blob_key(session, old_blob)
            old_header, old_storage = old_blob.header, old_blob.storage_key
            old_blob_id, segments = old_blob.id, upload.segments_committed
            new = staging.stage(session, self.keys, upload.organisation_id)
        try:
            self._reencrypt(old_key, old_header, old_storage, new, segments)
            self._swap(upload_id, old_blob_id, old_key, new, segments)
        except BaseException:
            staging.discard(self.db, self.store, self.clock, new)
            raise
        self.store.delete(old_storage)

    def _reencrypt(self, old_key: bytes, old_header: bytes, old_storage: str,
                   new: staging.StagedBlob, segments: int) -> None:
        old_cipher = stream.SegmentCipher(old_key, stream.StreamHeader.parse(old_header))
        new_cipher = stream.SegmentCipher(new.key, new.header)
        appender = self.store.open_append(new.storage_key, 0)
        try:
            appender.write(new.header.to_bytes())
            for index in range(segments):
                start = stream.segment_ciphertext_offset(index)
                size = stream.segment_plaintext_size(index) + stream.TAG_SIZE
                plain = old_cipher.decrypt_segment(
                    index, self.store.read(old_storage, start, size), False
                )
                appender.write(new_cipher.encrypt_segment(index, plain, False))
            appender.commit()
        finally:
            appender.close()

    def _swap(self, upload_id: str, old_blob_id: str, old_key: bytes,
              new: staging.StagedBlob, segments: int) -> None:
        """The compare-and-set: the upload moves to the new blob, whose key
        is stored now, and the old blob's key is destroyed, in one commit."""
        with self.db.session() as session:
            upload = session.get(Upload, upload_id, with_for_update={"of": Upload})
            if upload is None or upload.blob_id != old_blob_id or (
                upload.segments_committed != segments
            ):
                raise Conflict("the upload changed while it was re-keyed; retry")
            if upload.tail_sealed:
                tail = envelope.open_sealed(
                    _tail_key(old_key),
                    upload.tail_sealed, _tail_context(upload),
                )
            moved = staging.adopt(session, new)
            upload.blob_id = moved.id
            upload.blob = moved
            if upload.tail_sealed:
                upload.tail_sealed = envelope.seal(
                    _tail_key(new.key), tail,
                    _tail_context(upload),
                )
            upload.segments_reserved = upload.segments_committed
            old = session.get(Blob, old_blob_id)
            assert old is not None
            old.wrapped_key = None
            old.shredded_at = self.clock.now()
            trail.record(
                session, "upload.rekeyed", actor=None, organisation_id=upload.organisation_id,
                object_type="upload", object_id=upload.id, segments=segments,
            )


@dataclass
class _Snapshot:
    upload_id: str
    organisation_id: str
    actor_id: str | None
    blob_id: str
    storage_key: str
    header: bytes
    length: int | None
    offset: int
    segments: int
    completed: bool
    #: The first bytes must be judged by the file-type policy (SEC-19).
    sniff: bool = False


def refuses_programs(session: Session, organisation_id: str) -> bool:
    """The organisation's file-type policy (SEC-19): on unless turned off."""
    org = session.get(Organisation, organisation_id)
    return org is None or org.block_executables


def file_type_refused(refusal: filetypes.Refusal) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        "your organisation refuses programs and scripts (executable files)",
        reason="file_type", refused_by=refusal.reason, kind=refusal.kind,
    )


class _Pending:
    """Plaintext received but not yet encrypted, kept as the pieces it came
    in: the only copy is the one that cuts a whole segment out of them."""

    def __init__(self, initial: bytes = b"") -> None:
        self._parts: deque[memoryview] = deque()
        self.size = 0
        self.add(initial)

    def add(self, data: bytes) -> None:
        if data:
            self._parts.append(memoryview(data))
            self.size += len(data)

    def take(self, n: int) -> bytes:
        out = []
        need = n
        while need:
            part = self._parts[0]
            if len(part) <= need:
                out.append(part)
                self._parts.popleft()
                need -= len(part)
            else:
                out.append(part[:need])
                self._parts[0] = part[need:]
                need = 0
        self.size -= n
        return b"".join(out)

    def all(self) -> bytes:
        return b"".join(self._parts)

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes (fewer if fewer are held)."""
        out = bytearray()
        for part in self._parts:
            if len(out) >= n:
                break
            out += part[: n - len(out)]
        return bytes(out)


def _deposit_details(uploader: Uploader) -> dict[str, Any]:
    if isinstance(uploader, Depositor):
        return {"request": uploader.request_id, "depositor": uploader.depositor_id}
    return {}


def _tail_key(data_key: bytes) -> bytes:
    return envelope.derive_key(data_key, envelope.LABEL_UPLOAD_TAIL)


def _tail_context(upload: Upload) -> bytes:
    return f"coffre/tail/{upload.id}/{upload.blob_id}/{upload.segments_committed}".encode()


class UploadWriter:
    """One PATCH's worth of writing. Methods block: run them in a thread.

    ``feed`` pieces of the body, then ``finish``. Everything received is
    committed at ``finish`` (and at checkpoints along the way), unless a
    checksum was announced and does not match.
    """

    def __init__(
        self,
        service: UploadService,
        snap: _Snapshot,
        key: bytes,
        tail: bytes,
        hasher: Any,
        checksum: Checksum | None,
    ) -> None:
        self.service = service
        self.snap = snap
        self._key = key
        self._cipher = stream.SegmentCipher(key, stream.StreamHeader.parse(snap.header))
        self._pending = _Pending(tail)
        self._index = snap.segments
        self._hasher = hasher
        self._checksum = checksum
        self._body_hash = CHECKSUM_ALGORITHMS[checksum.algorithm]() if checksum else None
        self._received = 0
        self._reserved = snap.segments + RESERVE_WINDOW
        self._appender: BlobAppender | None = None
        self._last_checkpoint = time.monotonic()
        self._closed = False
        self._done = snap.completed
        #: Deferred length: bytes the upload may reach before the quota is asked again.
        self._allowance: int | None = None
        self._over_quota = False
        #: Until the first bytes are judged; they are all in ``_pending``
        #: (segment 0 is far larger than ``SNIFF_BYTES``).
        self._sniffing = snap.sniff
        self._refused: filetypes.Refusal | None = None
        #: The request writing (set by ``begin_append``), for audit events.
        self.ctx: trail.Context | None = None
        if not self._done:
            self._reserve(self._reserved)

    @property
    def offset(self) -> int:
        return self.snap.offset + self._received

    def feed(self, data: bytes | list[bytes]) -> None:
        """Take the next piece(s) of the body, in order."""
        pieces = [data] if isinstance(data, bytes) else data
        size = sum(len(p) for p in pieces)
        if not size:
            return
        if self._done:
            raise Conflict("this upload is complete", expected=self.snap.offset)
        length = self.snap.length
        if length is not None and self.offset + size > length:
            raise InvalidInput("the body goes past Upload-Length")
        if length is None and self.offset + size > self.service.max_size:
            raise TooLarge(
                f"the file is larger than the {self.service.max_size} bytes allowed",
                max_size=self.service.max_size,
            )
        if length is None and self.service.quotas is not None and (
            self._allowance is None or self.offset + size > self._allowance
        ):
            try:
                self._allowance = self.service._reserve_quota(
                    self.snap.upload_id, self.offset + size
                )
            except QuotaExceeded:
                self._over_quota = True
                raise
        for piece in pieces:
            if self._body_hash is not None:
                self._body_hash.update(piece)
            self._pending.add(piece)
        self._received += size
        if self._sniffing:
            self._sniff(final=False)
        while self._pending.size > stream.segment_plaintext_size(self._index):
            if self._index >= self._reserved:
                # End of the reserved window: make progress durable (unless a
                # checksum must be verified first), then reserve the next one.
                if self._checksum is None:
                    self._checkpoint()
                self._reserved = self._index + RESERVE_WINDOW
                self._reserve(self._reserved)
            self._write(self._encrypt_next(last=False))
        if (
            self._checksum is None
            and time.monotonic() - self._last_checkpoint > CHECKPOINT_SECONDS
        ):
            self._checkpoint()

    def _sniff(self, *, final: bool) -> None:
        """SEC-19: refuse a program by its first bytes, before any is stored."""
        verdict = filetypes.sniff(self._pending.head(filetypes.SNIFF_BYTES), final=final)
        if verdict.refusal is not None:
            self._refused = verdict.refusal
            raise file_type_refused(verdict.refusal)
        self._sniffing = not verdict.decided

    def _encrypt_next(self, last: bool) -> bytes:
        size = min(stream.segment_plaintext_size(self._index), self._pending.size)
        plain = self._pending.take(size)
        self._hasher.update(plain)
        if self._index == 0:
            self._write(self.snap.header)
        out = self._cipher.encrypt_segment(self._index, plain, last)
        self._index += 1
        return out

    def _checkpoint(self) -> None:
        """Commit the whole segments written so far (mid-body, no tail).

        The acknowledged offset moves to the last segment boundary; the
        bytes still in memory are committed later, or received again.
        """
        self._last_checkpoint = time.monotonic()
        if self._index <= self.snap.segments or self._appender is None:
            return
        self._check_lease()
        self._appender.commit()
        boundary = stream.segment_plaintext_offset(self._index)
        now = self.service.clock.now()
        with self.service.db.session() as session:
            upload = self._leased(session)
            if boundary <= upload.offset:
                return
            upload.offset = boundary
            upload.segments_committed = self._index
            upload.tail_sealed = None
            upload.lease_until = now + LEASE
            upload.expires_at = now + self.service.expiry
        self.service.hashes.put(self.snap.upload_id, self._index, self._hasher)

    def _write(self, data: bytes) -> None:
        if self._appender is None:
            start = (
                0
                if self.snap.segments == 0
                else stream.segment_ciphertext_offset(self.snap.segments)
            )
            self._appender = self.service.store.open_append(self.snap.storage_key, start)
        self._appender.write(data)

    def _reserve(self, upto: int) -> None:
        with self.service.db.session() as session:
            upload = self._leased(session)
            upload.segments_reserved = max(upload.segments_reserved, upto)
            upload.lease_until = self.service.clock.now() + LEASE

    def finish(self, *, complete_body: bool) -> UploadInfo:
        """Commit what arrived; returns the new state.

        ``complete_body`` is False when the client went away mid-body.
        Raises ``ChecksumMismatch`` (nothing kept) if the announced checksum
        does not match or cannot be checked.
        """
        try:
            if self._checksum is not None and self._body_hash is not None:
                if not complete_body:
                    raise ChecksumMismatch("the body was cut short; its checksum cannot match")
                if self._body_hash.digest() != self._checksum.digest:
                    raise ChecksumMismatch("the body does not match Upload-Checksum")
            return self._commit()
        except BaseException:
            self.service.hashes.drop(self.snap.upload_id)
            self._release()
            self._discard_refused()
            raise

    def abort(self) -> None:
        """Give up without committing (server error): reservations stay.
        Past a quota, or refused by the file-type policy, the whole upload
        is discarded instead."""
        self.service.hashes.drop(self.snap.upload_id)
        self._release()
        if self._over_quota:
            self.service._discard_over_quota(self.snap.upload_id, self.snap.actor_id)
        self._discard_refused()

    def _discard_refused(self) -> None:
        if self._refused is not None:
            refusal, self._refused = self._refused, None
            self.service._discard(self.snap.upload_id, self.snap.actor_id, "upload.refused",
                                  self.ctx, outcome="denied", refused_by=refusal.reason,
                                  kind=refusal.kind)

    def _leased(self, session: Session) -> Upload:
        """The upload, locked, while this writer still holds its lease
        (fencing): a writer stalled past its lease, whose upload another
        instance took over meanwhile, must not commit over the new one."""
        upload = session.get(Upload, self.snap.upload_id, with_for_update={"of": Upload})
        if upload is None:
            raise self._deleted()
        if upload.lease_owner != self.service.lease_owner:
            raise Conflict("this upload was taken over by another request while this one "
                           "stalled; resume from its current offset")
        return upload

    def _check_lease(self) -> None:
        """Before committing to storage: give up if the lease was lost."""
        with self.service.db.session() as session:
            self._leased(session)

    def _deleted(self) -> Gone:
        # Terminated while this PATCH ran: drop what it wrote (already noise,
        # its key is destroyed) so no orphan file stays behind.
        if self._appender is not None:
            self._appender.close()
            self._appender = None
        self.service.store.delete(self.snap.storage_key)
        return Gone("this upload was deleted")

    def _release(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._appender is not None:
            self._appender.close()
        self.service._release_local(self.snap.upload_id)

    def _commit(self) -> UploadInfo:
        """The end of a PATCH: commit every byte received, tail included."""
        if self._done:  # an empty PATCH on a complete upload: nothing to write
            with self.service.db.session() as session:
                upload = session.get(Upload, self.snap.upload_id)
                if upload is None:
                    raise self._deleted()
                info = self.service._info(session, upload)
            self._release()
            return info
        length = self.snap.length
        completing = length is not None and self.offset == length
        if completing and self._sniffing:
            self._sniff(final=True)
        if completing:
            if self._index >= self._reserved:
                self._reserve(self._index + 1)
            self._write(self._encrypt_next(last=True))
        ciphertext_size = None
        if self._appender is not None:
            self._check_lease()
            ciphertext_size = self._appender.commit()
        elif self._index == 0 and completing:
            ciphertext_size = 0
        service = self.service
        with service.db.session() as session:
            upload = self._leased(session)
            upload.offset = self.offset
            upload.segments_committed = self._index
            now = service.clock.now()
            upload.segments_reserved = self._index
            upload.quota_reserved = 0  # from now on its offset (or length) counts
            upload.lease_owner = None
            upload.lease_until = None
            if not completing:
                # tus expiration: an upload making progress stays alive.
                upload.expires_at = max(upload.expires_at, now + service.expiry)
            if completing:
                blob = upload.blob
                blob.plaintext_size = self.offset
                blob.ciphertext_size = stream.ciphertext_size(self.offset)
                if ciphertext_size is not None and ciphertext_size != blob.ciphertext_size:
                    raise Conflict("stored size does not match the stream layout")
                upload.sha256 = blob.sha256 = self._hasher.hexdigest()
                upload.tail_sealed = None
                upload.completed_at = now
                trail.record(
                    session,
                    "upload.completed",
                    actor=self.snap.actor_id,
                    organisation_id=self.snap.organisation_id,
                    object_type="upload",
                    object_id=upload.id,
                    size=self.offset,
                )
            else:
                upload.tail_sealed = (
                    envelope.seal(
                        _tail_key(self._key),
                        self._pending.all(),
                        _tail_context(upload),
                    )
                    if self._pending.size
                    else None
                )
            info = service._info(session, upload)
        if completing:
            self._done = True
            service.hashes.drop(self.snap.upload_id)
        else:
            service.hashes.put(self.snap.upload_id, self._index, self._hasher)
        self._release()
        if completing:
            service._consolidate(self.snap.upload_id, self.snap.storage_key)
        return info
