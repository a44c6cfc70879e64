"""A recipient's side of a transfer: open the personal link, prove the
one-time code (``services.verification``) and the transfer's password,
download files or the whole ZIP.

A download counts only once every byte of a full GET went out: HEAD,
partial ranges and aborted reads never use up a limit.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session
from zipstream import ZIP_STORED, ZipStream

from coffre.audit import trail
from coffre.crypto import credentials, stream
from coffre.db.engine import Database
from coffre.db.tables import (
    Download,
    DownloadClaim,
    FileRead,
    Recipient,
    Transfer,
    TransferFile,
    User,
    new_id,
)
from coffre.domain.transfers import (
    ByteRange,
    add_interval,
    check_downloads_left,
    covers,
    downloads_left,
    unique_name,
)
from coffre.errors import AuthenticationRequired, Gone, NotFound, TooManyAttempts
from coffre.ports import BlobStore, Clock
from coffre.services import blobs, messages
from coffre.services.keys import KeyRing
from coffre.services.throttle import Throttles
from coffre.services.tracking import track
from coffre.services.transfers import FileView, TransferService
from coffre.services.verification import (
    ACCESS_LIFETIME,
    RecipientVerification,
    grant_access,
    recipient_for_link,
    valid_grant,
)

__all__ = ["ACCESS_LIFETIME", "FileDownload", "LinkFile", "LinkService", "LinkView"]
READ_BATCH_SEGMENTS = 4
LINK_PASSWORD = "link-password"  # noqa: S105 - a throttle kind


@dataclass(frozen=True)
class LinkFile:
    id: str
    name: str
    size: int
    sha256: str
    downloads_left: int | None


@dataclass(frozen=True)
class LinkView:
    transfer_id: str
    sender: str
    sender_email: str
    subject: str
    message: str
    expires_at: datetime | None
    password_required: bool
    files: list[LinkFile]
    total_size: int


@dataclass
class FileDownload:
    """What a handler needs to stream one file (or part of it)."""

    file: FileView
    etag: str
    start: int
    end: int
    body: Iterator[stream.Chunk]
    #: Call with (bytes delivered, whether the body went out to the end).
    on_end: Callable[[int, bool], None] = lambda sent, complete: None


class LinkService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        keys: KeyRing,
        transfers: TransferService,
        clock: Clock,
        verification: RecipientVerification,
        throttles: Throttles,
        *,
        password_attempts: int,
    ) -> None:
        self.db = db
        self.store = store
        self.keys = keys
        self.transfers = transfers
        self.clock = clock
        self.verification = verification
        self.password_attempts = password_attempts
        self.throttles = throttles
        self._claims = DownloadClaims(db, clock)

    # -- access -----------------------------------------------------------------

    def _recipient(self, session: Session, token: str) -> Recipient:
        return recipient_for_link(session, token, self.clock.now())

    def _check_access(self, session: Session, recipient: Recipient, access: str | None,
                      *, password: bool = True) -> None:
        """The grant presented must carry every proof the transfer asks for:
        the one-time code (first), then the password."""
        transfer = recipient.transfer
        need_password = password and transfer.password_hash is not None
        if not transfer.verify_recipients and not need_password:
            return
        grant = valid_grant(session, recipient, access, self.clock.now())
        if transfer.verify_recipients and not (grant and grant.code_verified):
            challenge = self.verification.challenge(session, recipient)
            raise AuthenticationRequired(
                "enter the one-time code sent to you to open this link",
                reason="code_required", **challenge.details(),
            )
        if need_password and not (grant and grant.password_verified):
            raise AuthenticationRequired(
                "this link is protected by a password", reason="password_required"
            )

    def unlock(self, token: str, password: str, access: str | None, ctx: trail.Context) -> str:
        """Add the transfer's password to the grant presented (or to a new
        one, when no code is needed); returns the grant.

        When the transfer asks for a code, the password is not even checked
        before the code was. Wrong passwords make the next try wait longer,
        then lock the link for a while (SEC-14, as for account passwords);
        after ``password_attempts`` the link locks for good (429). The
        Argon2 check runs outside any transaction.
        """
        with self.db.session() as session:
            recipient = self._recipient(session, token)
            self._check_access(session, recipient, access, password=False)
            recipient_id = recipient.id
            password_hash = recipient.transfer.password_hash
            locked = recipient.password_failures >= self.password_attempts
            if locked:
                self._event(session, recipient, "link.password_locked", ctx, outcome="failure")
        if locked:
            raise TooManyAttempts("too many wrong passwords: ask the sender for a new link")
        with credentials.hashing_slot():  # taken first: a flood costs no write
            self.throttles.sources.reserve(ctx.source)
            self.throttles.attempt(LINK_PASSWORD, recipient_id)
            ok = password_hash is None or credentials.verify_password(password_hash, password)
        with self.db.session() as session:
            current = session.get(Recipient, recipient_id)
            assert current is not None
            recipient = current
            if not ok:
                session.execute(
                    update(Recipient).where(Recipient.id == recipient_id)
                    .values(password_failures=Recipient.password_failures + 1)
                )
                session.refresh(recipient)
                self._event(session, recipient, "link.password_failed", ctx, outcome="failure",
                            failures=recipient.password_failures)
                now = self.clock.now()
                track(session, recipient.transfer_id, "password_failed", time=now,
                      recipient_id=recipient.id)
                if recipient.password_failures == self.password_attempts:
                    track(session, recipient.transfer_id, "link_locked", time=now,
                          recipient_id=recipient.id)
            else:
                recipient.password_failures = 0
                self.throttles.succeeded(session, LINK_PASSWORD, recipient_id)
                self.throttles.sources.release(session, ctx.source)
                granted = grant_access(session, recipient, access, self.clock.now(),
                                       password=True)
                self._event(session, recipient, "link.unlocked", ctx)
                return granted
        raise AuthenticationRequired("wrong password", reason="wrong_password")

    def _event(self, session: Session, recipient: Recipient, action: str,
               ctx: trail.Context, outcome: str = "success", **details: Any) -> None:
        trail.record(
            session, action, actor=None, organisation_id=recipient.transfer.organisation_id,
            object_type="recipient", object_id=recipient.id, outcome=outcome, context=ctx,
            **details,
        )

    def view(self, token: str, access: str | None, ctx: trail.Context) -> LinkView:
        """What the link holds. Opening it is recorded even when the proofs
        are still missing (the sender sees "opened", then the code steps);
        names, subject and message are shown only with every proof."""
        denied: AuthenticationRequired | None = None
        with self.db.session() as session:
            recipient = self._recipient(session, token)
            transfer = recipient.transfer
            try:
                self._check_access(session, recipient, access)
            except AuthenticationRequired as exc:
                denied = exc
            now = self.clock.now()
            if recipient.first_opened_at is None:
                recipient.first_opened_at = now
            trail.record(
                session,
                "link.opened",
                actor=None,
                organisation_id=transfer.organisation_id,
                object_type="recipient",
                object_id=recipient.id,
                context=ctx,
                transfer=transfer.id,
                proved=denied is None,
            )
            track(session, transfer.id, "link_opened", time=now, recipient_id=recipient.id)
            if denied is None:
                return self._view(session, recipient)
        raise denied

    def _view(self, session: Session, recipient: Recipient) -> LinkView:
        transfer = recipient.transfer
        counts = self._counts(session, recipient.id)
        sender = session.get(User, transfer.sender_id)
        assert sender is not None
        subject, message = self.transfers.texts(session, transfer)
        files = [
            LinkFile(
                f.id, f.name, f.size, f.sha256, downloads_left(transfer, counts.get(f.id, 0))
            )
            for f in (self.transfers.file_view(session, file) for file in transfer.files)
        ]
        return LinkView(
            transfer_id=transfer.id,
            sender=sender.display_name or sender.email,
            sender_email=sender.email,
            subject=subject,
            message=message,
            expires_at=transfer.expires_at,
            password_required=transfer.password_hash is not None,
            files=files,
            total_size=sum(f.size for f in files),
        )

    def sender_email(self, token: str) -> str | None:
        """Who sent what this link holds, without recording an open (pages)."""
        with self.db.session() as session:
            recipient = self._recipient(session, token)
            sender = session.get(User, recipient.transfer.sender_id)
            return sender.email if sender else None

    def _counts(self, session: Session, recipient_id: str) -> dict[str, int]:
        return dict(
            session.execute(
                select(Download.file_id, func.count())
                .where(Download.recipient_id == recipient_id)
                .group_by(Download.file_id)
            ).all()
        )

    # -- downloads --------------------------------------------------------------

    def open_file(
        self,
        token: str,
        access: str | None,
        file_id: str,
        choose_range: Callable[[int, str], ByteRange | None],
        ctx: trail.Context,
        *,
        body: bool = True,
    ) -> FileDownload:
        """Prepare a file download; the body counts as a download only if
        it covers the whole file and is consumed to the end."""
        with self.db.session() as session:
            recipient = self._recipient(session, token)
            self._check_access(session, recipient, access)
            file = session.get(TransferFile, file_id)
            if file is None or file.transfer_id != recipient.transfer_id:
                raise NotFound("file not found")
            completed = self._counts(session, recipient.id).get(file.id, 0)
            check_downloads_left(recipient.transfer, completed)
            limit = recipient.transfer.max_downloads
            view = self.transfers.file_view(session, file)
            key = self.keys.blob_key(session, file.blob)
            storage_key = file.blob.storage_key
            stream_size = file.blob.ciphertext_size
            recipient_id = recipient.id
        etag = f'"{view.sha256[:32]}"'
        rng = choose_range(view.size, etag)
        lo, hi = (rng.start, rng.end) if rng else (0, view.size)
        whole = lo == 0 and hi == file.size
        if not body:
            return FileDownload(file=view, etag=etag, start=lo, end=hi, body=iter(()))
        claim = None
        if whole and limit is not None:
            claim = self._claims.claim(recipient_id, [file_id], limit)
        iterator = _ClaimedBody(self._plaintext(key, storage_key, stream_size, lo, hi), claim)

        def on_end(sent: int, complete: bool) -> None:
            try:
                if whole and complete:
                    self._record(recipient_id, [file_id], False, ctx)
                elif sent:
                    self._record_read(recipient_id, file_id, lo, lo + sent, view.size, ctx)
            finally:
                iterator.release()

        return FileDownload(file=view, etag=etag, start=lo, end=hi, body=iterator,
                            on_end=on_end)

    def _plaintext(
        self, key: bytes, storage_key: str, stream_size: int, start: int, end: int
    ) -> Iterator[stream.Chunk]:
        return blobs.plaintext(self.store, storage_key, key, stream_size, start, end,
                               batch_segments=READ_BATCH_SEGMENTS, read_ahead=True)

    def open_archive(
        self, token: str, access: str | None, ctx: trail.Context, *, body: bool = True
    ) -> tuple[str, int, Iterator[stream.Chunk], Callable[[int, bool], None]]:
        """The whole transfer as a ZIP built on the fly (stored, ZIP64).

        Returns (file name, exact size, body). Counts one download of every
        file once the last byte is out.
        """
        with self.db.session() as session:
            recipient = self._recipient(session, token)
            self._check_access(session, recipient, access)
            counts = self._counts(session, recipient.id)
            limit = recipient.transfer.max_downloads
            entries = []
            for file in recipient.transfer.files:
                check_downloads_left(recipient.transfer, counts.get(file.id, 0))
                view = self.transfers.file_view(session, file)
                entries.append(
                    (
                        view,
                        self.keys.blob_key(session, file.blob),
                        file.blob.storage_key,
                        file.blob.ciphertext_size,
                    )
                )
            recipient_id = recipient.id
            transfer_id = recipient.transfer_id
        archive = ZipStream(compress_type=ZIP_STORED, sized=True)
        used: set[str] = set()
        pulled = [0] * len(entries)  # plaintext bytes of each file taken into the ZIP
        for position, (view, key, storage_key, size) in enumerate(entries):
            archive.add(
                _tally(self._plaintext(key, storage_key, size, 0, view.size), pulled, position),
                arcname=unique_name(view.name, used),
                size=view.size,
            )
        name = f"coffre-{transfer_id[:8]}.zip"
        claim = None
        if limit is not None and body:
            claim = self._claims.claim(recipient_id, [e[0].id for e in entries], limit)
        stream_body = _ClaimedBody(iter(archive), claim)
        file_ids = [e[0].id for e in entries]

        def on_end(sent: int, complete: bool) -> None:
            try:
                if complete:
                    self._record(recipient_id, file_ids, True, ctx)
                    return
                # Cut short: what each file gave the ZIP, less the piece that
                # may not have left (at most one read batch of the last file).
                last = max((i for i, n in enumerate(pulled) if n), default=None)
                for i, n in enumerate(pulled):
                    delivered = n - (READ_BATCH_SEGMENTS << 20 if i == last else 0)
                    if delivered > 0:
                        self._record_read(recipient_id, file_ids[i], 0, delivered,
                                          entries[i][0].size, ctx)
            finally:
                stream_body.release()

        return name, len(archive), stream_body, on_end

    def _record_read(
        self, recipient_id: str, file_id: str, start: int, end: int, size: int,
        ctx: trail.Context,
    ) -> None:
        """A partial or interrupted read: audit it, and count a download once
        the ranges delivered since the last one hold every byte."""
        with self.db.session() as session:
            read = session.get(FileRead, (recipient_id, file_id))
            if read is None:
                read = FileRead(recipient_id=recipient_id, file_id=file_id, delivered="[]")
                session.add(read)
            delivered = add_interval([tuple(r) for r in json.loads(read.delivered)], start, end)
            complete = covers(delivered, size)
            read.delivered = json.dumps([] if complete else delivered)
            recipient = session.get(Recipient, recipient_id)
            assert recipient is not None
            trail.record(
                session, "transfer.read", actor=None,
                organisation_id=recipient.transfer.organisation_id, object_type="recipient",
                object_id=recipient_id, context=ctx, transfer=recipient.transfer_id,
                file=file_id, start=start, end=end,
            )
        if complete:
            self._record(recipient_id, [file_id], False, ctx)

    def _record(
        self, recipient_id: str, file_ids: list[str], archive: bool, ctx: trail.Context
    ) -> None:
        now = self.clock.now()
        with self.db.session() as session:
            recipient = session.get(Recipient, recipient_id)
            assert recipient is not None
            transfer: Transfer = recipient.transfer
            for file_id in file_ids:
                session.add(
                    Download(
                        recipient_id=recipient_id,
                        file_id=file_id,
                        completed_at=now,
                        via_archive=archive,
                    )
                )
            session.execute(
                delete(FileRead).where(
                    FileRead.recipient_id == recipient_id, FileRead.file_id.in_(file_ids)
                )
            )
            if archive:
                track(session, transfer.id, "zip_downloaded", time=now, recipient_id=recipient_id)
            else:
                for file_id in file_ids:
                    track(session, transfer.id, "file_downloaded", time=now,
                          recipient_id=recipient_id, file_id=file_id)
            trail.record(
                session,
                "transfer.downloaded",
                actor=None,
                organisation_id=transfer.organisation_id,
                object_type="recipient",
                object_id=recipient_id,
                context=ctx,
                transfer=transfer.id,
                files=file_ids,
                archive=archive,
            )
            if transfer.notify_on_download:
                sender = session.get(User, transfer.sender_id)
                assert sender is not None
                subject, _ = self.transfers.texts(session, transfer)
                what = "tous les fichiers (ZIP)" if archive else f"{len(file_ids)} fichier(s)"
                self.transfers.notify_sender(
                    session,
                    transfer,
                    messages.download_notice(
                        to=sender.email,
                        recipient=recipient.email,
                        transfer_subject=subject,
                        what=what,
                    ),
                )


class _ClaimedBody(Iterator[stream.Chunk]):
    """A body holding an in-flight claim on a download limit, renewed while
    it is read and released by ``release()`` (the HTTP layer, when the
    response ends) or, if the body is dropped unread, when it is
    garbage-collected."""

    def __init__(self, chunks: Iterator[stream.Chunk], claim: Claim | None) -> None:
        self._chunks = chunks
        self._claim = claim

    def __next__(self) -> stream.Chunk:
        if self._claim is not None:
            self._claim.keep()
        return next(self._chunks)

    def close(self) -> None:
        """Close the chunks (a generator may hold a storage connection)."""
        closing = getattr(self._chunks, "close", None)
        if closing is not None:
            closing()

    def release(self) -> None:
        claim, self._claim = self._claim, None
        if claim is not None:
            claim.release()

    def __del__(self) -> None:
        with suppress(Exception):  # never raise from a finaliser; the claim then expires
            self.release()


def _tally(
    chunks: Iterator[stream.Chunk], pulled: list[int], position: int
) -> Iterator[stream.Chunk]:
    for chunk in chunks:
        pulled[position] += len(chunk)
        yield chunk


#: A claim left by a dead instance stops counting after this long...
CLAIM_LIFETIME = timedelta(minutes=10)
#: ...and a live download renews its claims this often.
CLAIM_RENEWAL = 60.0


class DownloadClaims:
    """Whole downloads under way on any instance, per (recipient, file), in
    the database.

    A download counts when it ends, so without claims two parallel GETs of
    a one-time link would both succeed. Claims of one recipient are taken
    under a lock on its row (SQLite: the write lock every transaction takes
    up front), counting completed downloads in the same transaction.
    """

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def claim(self, recipient_id: str, file_ids: list[str], limit: int) -> Claim:
        """Reserve one download of each file; raises ``Gone`` if a limit
        would be passed."""
        now = self.clock.now()
        with self.db.session() as session:
            # NO KEY UPDATE: serialises claims without blocking rows that
            # merely refer to the recipient (downloads, events).
            session.execute(select(Recipient.id).where(Recipient.id == recipient_id)
                            .with_for_update(key_share=True))
            session.execute(delete(DownloadClaim).where(
                DownloadClaim.recipient_id == recipient_id, DownloadClaim.expires_at <= now))
            taken = Counter(session.execute(
                select(Download.file_id).where(Download.recipient_id == recipient_id)
            ).scalars())
            taken.update(session.execute(
                select(DownloadClaim.file_id).where(DownloadClaim.recipient_id == recipient_id)
            ).scalars())
            if any(taken[file_id] >= limit for file_id in file_ids):
                raise Gone("the download limit of this link is reached "
                           "(a download is in progress)", reason="exhausted")
            claims = [DownloadClaim(id=new_id(), recipient_id=recipient_id, file_id=file_id,
                                    expires_at=now + CLAIM_LIFETIME) for file_id in file_ids]
            session.add_all(claims)
        return Claim(self, [c.id for c in claims])


class Claim:
    """Claims taken together: kept alive while a body streams, then released."""

    def __init__(self, claims: DownloadClaims, ids: list[str]) -> None:
        self._claims = claims
        self._ids = ids
        self._renewed = time.monotonic()
        self._released = False
        self._lock = threading.Lock()

    def keep(self) -> None:
        if time.monotonic() - self._renewed < CLAIM_RENEWAL:
            return
        self._renewed = time.monotonic()
        with self._claims.db.session() as session:
            session.execute(update(DownloadClaim).where(DownloadClaim.id.in_(self._ids))
                            .values(expires_at=self._claims.clock.now() + CLAIM_LIFETIME))

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        with self._claims.db.session() as session:
            session.execute(delete(DownloadClaim).where(DownloadClaim.id.in_(self._ids)))
