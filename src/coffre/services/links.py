"""A recipient's side of a transfer: open the personal link, prove the
one-time code (``services.verification``) and the transfer's password,
download files or the whole ZIP.

A link's limit bounds the bytes it delivers (``domain.deliveries``): every
response's bytes are counted as they go out, ranges and aborted reads
included, and add up to downloads; HEAD never counts. Each response that
sent bytes leaves one audit event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session
from zipstream import ZIP_STORED, ZipStream

from coffre.audit import trail
from coffre.crypto import credentials, stream
from coffre.db.engine import Database
from coffre.db.tables import (
    Download,
    Recipient,
    Transfer,
    TransferFile,
    User,
)
from coffre.domain.deliveries import Delivered, check_delivery, downloads_left
from coffre.domain.transfers import (
    ByteRange,
    archive_name,
    check_downloads_left,
    unique_name,
)
from coffre.errors import AuthenticationRequired, NotFound, TooManyAttempts
from coffre.ports import BlobStore, Clock
from coffre.services import blobs, messages
from coffre.services.deliveries import (
    CLAIM_LIFETIME,
    ArchiveTally,
    ClaimedBody,
    DownloadClaims,
    Span,
    add_sent,
    delivered_so_far,
    lock_recipient,
)
from coffre.services.keys import KeyRing
from coffre.services.organisations import discreet_mail
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
        claim_lifetime: timedelta = CLAIM_LIFETIME,
    ) -> None:
        self.db = db
        self.store = store
        self.keys = keys
        self.transfers = transfers
        self.clock = clock
        self.verification = verification
        self.password_attempts = password_attempts
        self.throttles = throttles
        self._claims = DownloadClaims(db, clock, claim_lifetime)

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
        with credentials.hashing_slot(ctx.source):  # taken first: a flood costs no write
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
        so_far = self._so_far(session, recipient)
        sender = session.get(User, transfer.sender_id)
        assert sender is not None
        subject, message = self.transfers.texts(session, transfer)
        files = [
            LinkFile(f.id, f.name, f.size, f.sha256,
                     downloads_left(transfer.max_downloads, f.size, so_far[f.id]))
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

    def _so_far(self, session: Session, recipient: Recipient) -> dict[str, Delivered]:
        sizes = {f.id: f.size for f in recipient.transfer.files}
        return delivered_so_far(session, recipient.id, sizes, self.clock.now())

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
        """Prepare a file download (or part of it): one audit event
        before its first byte, and one when it ends, with the bytes it sent
        (accounted for then)."""
        with self.db.session() as session:
            recipient = self._recipient(session, token)
            self._check_access(session, recipient, access)
            file = session.get(TransferFile, file_id)
            if file is None or file.transfer_id != recipient.transfer_id:
                raise NotFound("file not found")
            limit = recipient.transfer.max_downloads
            so_far = self._so_far(session, recipient)[file.id]
            check_downloads_left(recipient.transfer, so_far.completed)
            view = self.transfers.file_view(session, file)
            key = self.keys.blob_key(session, file.blob)
            storage_key = file.blob.storage_key
            stream_size = file.blob.ciphertext_size
            recipient_id = recipient.id
        etag = f'"{view.sha256[:32]}"'
        rng = choose_range(view.size, etag)
        lo, hi = (rng.start, rng.end) if rng else (0, view.size)
        if not body:  # HEAD answers as the GET would
            check_delivery(limit, view.size, so_far, lo, hi)
            return FileDownload(file=view, etag=etag, start=lo, end=hi, body=iter(()))
        claim = None
        if limit is not None:
            claim = self._claims.claim(recipient_id, limit, [Span(file_id, view.size, lo, hi)])
        iterator = ClaimedBody(self._plaintext(key, storage_key, stream_size, lo, hi), claim)
        try:
            self._started(recipient_id, [file_id], ctx, archive=False, start=lo, end=hi)
        except BaseException:
            iterator.release()
            raise

        def on_end(sent: int, complete: bool) -> None:
            try:
                spans = [Span(file_id, view.size, lo, lo + sent)] if sent or complete else []
                self._account(recipient_id, spans, [file_id], ctx, archive=False,
                              complete=complete, start=lo, end=hi, sent=sent)
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

        Returns (file name, exact size, body, what to call when the body
        ends). One audit event is recorded before its first byte; the bytes
        of each file it sent are accounted for when it ends, in another:
        all of them count one download of every file.
        """
        with self.db.session() as session:
            recipient = self._recipient(session, token)
            self._check_access(session, recipient, access)
            so_far = self._so_far(session, recipient)
            limit = recipient.transfer.max_downloads
            entries = []
            for file in recipient.transfer.files:
                check_downloads_left(recipient.transfer, so_far[file.id].completed)
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
            subject, _ = self.transfers.texts(session, recipient.transfer)
            name = archive_name(subject, recipient.transfer.created_at)
        archive = ZipStream(compress_type=ZIP_STORED, sized=True)
        used: set[str] = set()
        tally = ArchiveTally(len(entries))
        for position, (view, key, storage_key, size) in enumerate(entries):
            archive.add(
                tally.entry(position, self._plaintext(key, storage_key, size, 0, view.size)),
                arcname=unique_name(view.name, used),
                size=view.size,
            )
        whole = [Span(e[0].id, e[0].size, 0, e[0].size) for e in entries]
        if not body:
            for span in whole:
                check_delivery(limit, span.size, so_far[span.file_id], 0, span.size)
        claim = None
        if limit is not None and body:
            claim = self._claims.claim(recipient_id, limit, whole)
        stream_body = ClaimedBody(tally.wrap(iter(archive)), claim)
        file_ids = [e[0].id for e in entries]
        archive_size = len(archive)
        if body:
            try:
                self._started(recipient_id, file_ids, ctx, archive=True, start=0,
                              end=archive_size)
            except BaseException:
                stream_body.release()
                raise

        def on_end(sent: int, complete: bool) -> None:
            try:
                if complete:
                    spans = whole
                else:  # cut short: what the bytes that went out held of each file
                    spans = [Span(s.file_id, s.size, 0, n)
                             for s, n in zip(whole, tally.sent(sent), strict=True) if n]
                self._account(recipient_id, spans, file_ids, ctx, archive=True,
                              complete=complete, start=0, end=archive_size, sent=sent)
            finally:
                stream_body.release()

        return name, archive_size, stream_body, on_end

    def _started(self, recipient_id: str, file_ids: list[str], ctx: trail.Context, *,
                 archive: bool, start: int, end: int) -> None:
        """``transfer.read_started``: a response is about to send bytes
        ``[start, end)`` (a read cut short by a killed process, or still
        under way, leaves this trace; its end leaves one more)."""
        with self.db.session() as session:
            recipient = session.get(Recipient, recipient_id)
            assert recipient is not None
            trail.record(
                session, "transfer.read_started", actor=None,
                organisation_id=recipient.transfer.organisation_id, object_type="recipient",
                object_id=recipient_id, outcome="success", context=ctx,
                transfer=recipient.transfer_id, files=file_ids, archive=archive,
                start=start, end=end,
            )

    def _account(
        self, recipient_id: str, spans: list[Span], file_ids: list[str], ctx: trail.Context,
        *, archive: bool, complete: bool, start: int, end: int, sent: int,
    ) -> None:
        """What one response sent: bytes added to the link's account, the
        downloads they complete, and one audit event (``transfer.downloaded``
        if it completed any, else ``transfer.read``, even with nothing sent:
        it closes the ``transfer.read_started`` one) with the bytes
        ``[start, end)`` it was to send, how many went out and whether all did."""
        now = self.clock.now()
        with self.db.session() as session:
            lock_recipient(session, recipient_id)
            counted = add_sent(session, recipient_id, spans)
            recipient = session.get(Recipient, recipient_id)
            assert recipient is not None
            transfer: Transfer = recipient.transfer
            for file_id in counted:
                session.add(Download(recipient_id=recipient_id, file_id=file_id,
                                     completed_at=now, via_archive=archive))
            if archive and complete:
                track(session, transfer.id, "zip_downloaded", time=now, recipient_id=recipient_id)
            else:
                for file_id in counted:
                    track(session, transfer.id, "file_downloaded", time=now,
                          recipient_id=recipient_id, file_id=file_id)
            trail.record(
                session,
                "transfer.downloaded" if counted else "transfer.read",
                actor=None,
                organisation_id=transfer.organisation_id,
                object_type="recipient",
                object_id=recipient_id,
                outcome="success" if complete else "failure",
                context=ctx,
                transfer=transfer.id,
                files=file_ids,
                archive=archive,
                start=start,
                end=end,
                sent=sent,
                complete=complete,
                counted=counted,
            )
            if counted and transfer.notify_on_download:
                sender = session.get(User, transfer.sender_id)
                assert sender is not None
                subject, _ = self.transfers.texts(session, transfer)
                self.transfers.notify_sender(
                    session,
                    transfer,
                    messages.download_notice(
                        to=sender.email,
                        recipient=recipient.email,
                        transfer_subject=subject,
                        count=len(counted),
                        archive=archive and complete,
                        link=f"{self.transfers.public_url}/transfers/{transfer.id}",
                        discreet=discreet_mail(session, transfer.organisation_id),
                    ),
                )
