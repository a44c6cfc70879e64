"""Upload requests ("invitation à déposer"), the requester's side: ask
named people (or anyone with an open link) to deposit files, follow what
arrives, and use the received transfers (owner download, forward).

Each named depositor gets a personal link (256-bit token, stored hashed)
by mail; the depositors' side (one-time code, deposit grant, uploads,
hand-over) is ``services.deposits``. Never logs or audits a token.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.crypto import credentials, stream
from coffre.db.engine import Database
from coffre.db.tables import (
    DepositGrant,
    RequestDepositor,
    Transfer,
    TransferEvent,
    TransferFile,
    Upload,
    UploadRequest,
    User,
    new_id,
)
from coffre.domain import limits as limit_rules
from coffre.domain.accounts import Actor, normalise_email
from coffre.domain.policy import Action, Target, authorize
from coffre.domain.requests import MAX_DEPOSITORS, MAX_EXPIRY, check_limits
from coffre.domain.transfers import MAX_MESSAGE_CHARS, ByteRange
from coffre.errors import CoffreError, InvalidInput, NotFound
from coffre.ports import BlobStore, Clock
from coffre.services import blobs, messages, staging
from coffre.services.deposits import new_depositor
from coffre.services.keys import KeyRing
from coffre.services.mail import MailQueue
from coffre.services.organisations import discreet_mail
from coffre.services.transfers import FileView, NewTransfer, TransferService, TransferView
from coffre.services.uploads import UploadService
from coffre.services.verification import RecipientVerification, check_phone

READ_BATCH_SEGMENTS = 4


@dataclass(frozen=True)
class NewRequest:
    #: Named depositors: address -> mobile number (or None).
    depositors: dict[str, str | None]
    open_link: bool = False
    message: str = ""
    expires_in: timedelta = timedelta(days=7)
    max_total_size: int = 10 << 30
    max_files: int = 20


@dataclass(frozen=True)
class DepositorView:
    id: str
    email: str
    joined: bool
    verified_at: datetime | None
    files: int
    bytes: int


@dataclass(frozen=True)
class RequestView:
    id: str
    message: str
    status: str
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None
    max_total_size: int
    max_files: int
    open_link: bool
    depositors: list[DepositorView]
    received: list[str]  # received transfers' ids
    #: Personal links and the open link, only right after creation.
    links: dict[str, str] | None = None
    open_url: str | None = None

@dataclass(frozen=True)
class RequestStep:
    id: int
    kind: str
    time: datetime
    transfer_id: str
    depositor: str | None


@dataclass(frozen=True)
class Received:
    transfer: TransferView
    request_id: str
    depositor: str

class RequestService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        keys: KeyRing,
        mail: MailQueue,
        clock: Clock,
        uploads: UploadService,
        transfers: TransferService,
        codes: RecipientVerification,
        *,
        public_url: str,
    ) -> None:
        self.db = db
        self.store = store
        self.keys = keys
        self.mail = mail
        self.clock = clock
        self.uploads = uploads
        self.transfers = transfers
        self.codes = codes
        self.public_url = public_url.rstrip("/")

    def deposit_url(self, token: str) -> str:
        return f"{self.public_url}/d/{token}"

    def open_url(self, token: str) -> str:
        return f"{self.public_url}/d/open/{token}"

    # -- the requester's side ---------------------------------------------------

    def create(self, actor: Actor, new: NewRequest, ctx: trail.Context) -> RequestView:
        authorize(actor, Action.REQUEST_CREATE)
        depositors = {normalise_email(e): p for e, p in new.depositors.items()}
        if not depositors and not new.open_link:
            raise InvalidInput("name at least one depositor, or ask for an open link",
                               field="depositors")
        if len(depositors) > MAX_DEPOSITORS:
            raise InvalidInput(f"at most {MAX_DEPOSITORS} depositors", field="depositors")
        if len(new.message) > MAX_MESSAGE_CHARS:
            raise InvalidInput("the message is too long", field="message")
        if not timedelta(0) < new.expires_in <= MAX_EXPIRY:
            raise InvalidInput(f"a request lasts at most {MAX_EXPIRY.days} days",
                               field="expires_in")
        check_limits(new.max_total_size, new.max_files, self.uploads.max_size)
        phones = {e: check_phone(p) for e, p in depositors.items() if p}
        if phones and self.codes.sms is None:
            raise InvalidInput("codes by SMS are not configured on this server",
                               field="depositors")
        now = self.clock.now()
        links: dict[str, str] = {}
        open_token = credentials.new_token() if new.open_link else None
        with self.db.session() as session:
            owner = session.get(User, actor.user_id)
            assert owner is not None
            request = UploadRequest(
                id=new_id(), organisation_id=actor.organisation_id, owner_id=actor.user_id,
                open_token_hash=credentials.hash_token(open_token) if open_token else None,
                max_total_size=new.max_total_size, max_files=new.max_files,
                created_at=now, expires_at=now + new.expires_in,
            )
            request.message_sealed = self.keys.seal_text(
                session, actor.organisation_id, new.message, f"request:{request.id}:message"
            )
            session.add(request)
            for email, phone in depositors.items():
                token = credentials.new_token()
                depositor = new_depositor(session, request, email, token, now)
                if phone:
                    depositor.phone_sealed = self.keys.seal_text(
                        session, actor.organisation_id, check_phone(phone),
                        f"depositor:{depositor.id}:phone",
                    )
                links[email] = self.deposit_url(token)
                self.mail.enqueue(session, actor.organisation_id, messages.deposit_request(
                    to=email, requester=owner.display_name or owner.email,
                    requester_email=owner.email, message=new.message, link=links[email],
                    expires_at=request.expires_at, channel="sms" if phone else "email",
                    discreet=discreet_mail(session, actor.organisation_id),
                ))
            session.flush()
            trail.record(
                session, "request.created", actor=actor.user_id,
                organisation_id=actor.organisation_id, object_type="upload_request",
                object_id=request.id, context=ctx, depositors=len(depositors),
                open_link=new.open_link, max_total_size=new.max_total_size,
                max_files=new.max_files, expires_at=request.expires_at.isoformat(),
                sms=len(phones),
            )
            session.refresh(request)
            view = self._view(session, request)
        return RequestView(**{**view.__dict__, "links": links,
                              "open_url": self.open_url(open_token) if open_token else None})
    def list_own(self, actor: Actor) -> list[RequestView]:
        authorize(actor, Action.TRANSFER_LIST)  # one's own, like sent transfers
        with self.db.session() as session:
            rows = session.execute(
                select(UploadRequest).where(UploadRequest.owner_id == actor.user_id)
                .order_by(UploadRequest.created_at.desc())
            ).scalars().all()
            return [self._view(session, r) for r in rows]

    def get(self, actor: Actor, request_id: str, ctx: trail.Context | None = None
            ) -> RequestView:
        with self.db.session() as session:
            request = self._owned(session, actor, request_id, Action.REQUEST_READ)
            self._admin_access(session, actor, request, "request", ctx)
            return self._view(session, request)

    def _admin_access(self, session: Session, actor: Actor, request: UploadRequest, what: str,
                      ctx: trail.Context | None) -> None:
        """An administrator other than the requester read it (depositors'
        addresses, the message): audited, like transfers (SEC-4)."""
        if ctx is None or actor.user_id == request.owner_id:
            return
        trail.record(
            session, "request.admin_access", actor=actor.user_id,
            organisation_id=request.organisation_id, object_type="upload_request",
            object_id=request.id, context=ctx, what=what,
        )

    def close(self, actor: Actor, request_id: str, ctx: trail.Context) -> RequestView:
        """No more deposits: grants stop working; what was deposited stays."""
        with self.db.session() as session:
            request = self._owned(session, actor, request_id, Action.REQUEST_CLOSE)
            if request.closed_at is None:
                request.closed_at = self.clock.now()
                session.execute(
                    update(DepositGrant).where(DepositGrant.depositor_id.in_(
                        select(RequestDepositor.id)
                        .where(RequestDepositor.request_id == request.id)
                    )).values(expires_at=request.closed_at)
                )
                trail.record(
                    session, "request.closed", actor=actor.user_id,
                    organisation_id=request.organisation_id, object_type="upload_request",
                    object_id=request.id, context=ctx,
                )
            return self._view(session, request)

    def _owned(self, session: Session, actor: Actor, request_id: str,
               action: Action) -> UploadRequest:
        request = session.get(UploadRequest, request_id)
        if request is None:
            raise NotFound("upload request not found")
        authorize(actor, action, Target(request.organisation_id, request.owner_id),
                  missing="upload request not found")
        return request

    def _view(self, session: Session, request: UploadRequest) -> RequestView:
        now = self.clock.now()
        status = ("closed" if request.closed_at is not None
                  else "expired" if request.expires_at <= now else "open")
        stats = {
            d: (int(n or 0), int(b or 0)) for d, n, b in session.execute(
                select(Upload.depositor_id, func.count(Upload.id),
                       func.coalesce(func.sum(Upload.length), 0))
                .join(RequestDepositor, RequestDepositor.id == Upload.depositor_id)
                .where(RequestDepositor.request_id == request.id)
                .group_by(Upload.depositor_id)
            ).all()
        }
        received = session.execute(
            select(Transfer.id).join(RequestDepositor,
                                     RequestDepositor.id == Transfer.received_from)
            .where(RequestDepositor.request_id == request.id, Transfer.purged_at.is_(None))
            .order_by(Transfer.created_at)
        ).scalars().all()
        message = ""
        if request.message_sealed:
            message = self.keys.open_text(session, request.message_sealed,
                                          f"request:{request.id}:message")
        return RequestView(
            id=request.id, message=message, status=status, created_at=request.created_at,
            expires_at=request.expires_at, closed_at=request.closed_at,
            max_total_size=request.max_total_size, max_files=request.max_files,
            open_link=request.open_token_hash is not None,
            depositors=[
                DepositorView(d.id, d.email, d.joined, d.verified_at, *stats.get(d.id, (0, 0)))
                for d in request.depositors
            ],
            received=list(received),
        )

    # -- received transfers -------------------------------------------------------

    def received(self, actor: Actor) -> list[Received]:
        authorize(actor, Action.TRANSFER_LIST)
        with self.db.session() as session:
            rows = session.execute(
                select(Transfer, RequestDepositor)
                .join(RequestDepositor, RequestDepositor.id == Transfer.received_from)
                .where(Transfer.sender_id == actor.user_id, Transfer.purged_at.is_(None))
                .order_by(Transfer.created_at.desc())
            ).all()
            return [Received(self.transfers._view(session, t), d.request_id, d.email)
                    for t, d in rows]

    def _own_transfer(self, session: Session, actor: Actor, transfer_id: str,
                      action: Action) -> Transfer:
        transfer = self.transfers._managed(session, actor, transfer_id, action)
        if transfer.purged_at is not None:
            raise NotFound("transfer not found")
        return transfer

    def open_file(self, actor: Actor, transfer_id: str, file_id: str,
                  choose_range: Callable[[int, str], ByteRange | None], ctx: trail.Context,
                  *, body: bool = True) -> tuple[FileView, str, int, int, Iterator[stream.Chunk],
                                                 Callable[[int, bool], None]]:
        """The owner downloads a file of their own transfer (a received one,
        typically), or part of it. Each response that sends bytes leaves one
        event before its first byte (``transfer.owner_read_started``, with
        the bytes ``[start, end)`` asked: a read under way, or cut by a
        killed process, leaves a trace) and one when it ends
        (``transfer.owner_downloaded`` for the whole file delivered, else
        ``transfer.owner_read``): how many bytes went out and whether all did."""
        with self.db.session() as session:
            transfer = self._own_transfer(session, actor, transfer_id, Action.TRANSFER_DOWNLOAD)
            file = session.get(TransferFile, file_id)
            if file is None or file.transfer_id != transfer.id:
                raise NotFound("file not found")
            view = self.transfers.file_view(session, file)
            key = self.keys.blob_key(session, file.blob)
            storage_key, stream_size = file.blob.storage_key, file.blob.ciphertext_size
            organisation_id = transfer.organisation_id
        etag = f'"{view.sha256[:32]}"'
        rng = choose_range(view.size, etag)
        lo, hi = (rng.start, rng.end) if rng else (0, view.size)

        def on_end(sent: int, complete: bool) -> None:
            whole = complete and lo == 0 and hi == view.size
            with self.db.session() as session:
                trail.record(
                    session, "transfer.owner_downloaded" if whole else "transfer.owner_read",
                    actor=actor.user_id, organisation_id=organisation_id, object_type="file",
                    object_id=file_id, outcome="success" if complete else "failure",
                    context=ctx, transfer=transfer_id, size=view.size, start=lo, end=hi,
                    sent=sent, complete=complete,
                )

        if not body:
            return view, etag, lo, hi, iter(()), on_end

        with self.db.session() as session:
            trail.record(
                session, "transfer.owner_read_started", actor=actor.user_id,
                organisation_id=organisation_id, object_type="file", object_id=file_id,
                outcome="success", context=ctx, transfer=transfer_id, size=view.size,
                start=lo, end=hi,
            )
        chunks = blobs.plaintext(self.store, storage_key, key, stream_size, lo, hi,
                                 batch_segments=READ_BATCH_SEGMENTS, read_ahead=True)
        return view, etag, lo, hi, chunks, on_end

    def forward(self, actor: Actor, transfer_id: str, new: NewTransfer,
                ctx: trail.Context) -> TransferView:
        """Send the files of one's transfer to new recipients: each file is
        copied under a fresh data key (deleting either transfer later
        shreds only its own copy), then sent as a new transfer."""
        with self.db.session() as session:
            transfer = self._own_transfer(session, actor, transfer_id, Action.TRANSFER_FORWARD)
            sources = [(f.id, self.transfers.file_view(session, f).name,
                        self.keys.blob_key(session, f.blob), f.blob.storage_key,
                        f.blob.ciphertext_size, f.size, f.sha256) for f in transfer.files]
            # The copies count against the quota and the size limits like
            # any upload: checked before a byte is copied, and again as
            # each copy is recorded (under the organisation's lock).
            self._check_room(session, actor, [source[5] for source in sources])
        upload_ids: list[str] = []
        try:
            for source in sources:
                upload_ids.append(self._copy(actor, *source))
            view = self.transfers.create(actor, NewTransfer(**{**new.__dict__,
                                                               "upload_ids": upload_ids}), ctx)
        except CoffreError:
            for upload_id in upload_ids:  # refused: no orphan copy is left behind
                self.uploads.terminate(actor, upload_id, ctx)
            raise
        with self.db.session() as session:
            trail.record(
                session, "transfer.forwarded", actor=actor.user_id,
                organisation_id=actor.organisation_id, object_type="transfer",
                object_id=transfer_id, context=ctx, to_transfer=view.id,
            )
        return view

    def _check_room(self, session: Session, actor: Actor, sizes: list[int]) -> None:
        quotas = self.uploads.quotas
        if quotas is None:
            return
        limits = quotas.limits(session, actor.organisation_id)
        for size in sizes:
            limit_rules.check_file_size(size, limits)
        quotas.check(session, actor.organisation_id, actor.user_id, sum(sizes))

    def _copy(self, actor: Actor, file_id: str, name: str, key: bytes, storage_key: str,
              stream_size: int, size: int, sha256: str) -> str:
        """A completed upload of the owner's holding a re-encrypted copy,
        written into a staged blob (``services.staging``): its key is
        stored with the upload that refers to it, or never."""
        with self.db.session() as session:
            staged = staging.stage(session, self.keys, actor.organisation_id)
        try:
            index = self._reencrypt(staged, key, storage_key, stream_size, size)
            return self._record_copy(actor, staged, name, size, sha256, index)
        except BaseException:
            staging.discard(self.db, self.store, self.clock, staged)
            raise

    def _reencrypt(self, staged: staging.StagedBlob, key: bytes, storage_key: str,
                   stream_size: int, size: int) -> int:
        """Copy the plaintext of ``storage_key`` into ``staged``; returns
        the index of the last segment."""
        cipher = stream.SegmentCipher(staged.key, staged.header)
        appender = self.store.open_append(staged.storage_key, 0)
        try:
            appender.write(staged.header.to_bytes())
            index, pending = 0, b""
            for chunk in blobs.plaintext(self.store, storage_key, key, stream_size, 0, size,
                                         batch_segments=READ_BATCH_SEGMENTS, read_ahead=False):
                pending += chunk
                while len(pending) > stream.segment_plaintext_size(index):
                    cut = stream.segment_plaintext_size(index)
                    appender.write(cipher.encrypt_segment(index, pending[:cut], False))
                    pending, index = pending[cut:], index + 1
            appender.write(cipher.encrypt_segment(index, pending, True))
            appender.commit()
        finally:
            appender.close()
        return index

    def _record_copy(self, actor: Actor, staged: staging.StagedBlob, name: str, size: int,
                     sha256: str, index: int) -> str:
        now = self.clock.now()
        with self.db.session() as session:
            self._check_room(session, actor, [size])
            stored = staging.adopt(session, staged)
            stored.plaintext_size = size
            stored.ciphertext_size = stream.ciphertext_size(size)
            stored.sha256 = sha256
            upload = Upload(
                id=new_id(), organisation_id=actor.organisation_id, owner_id=actor.user_id,
                blob_id=stored.id, length=size, offset=size, segments_committed=index + 1,
                segments_reserved=index + 1, sha256=sha256, created_at=now,
                completed_at=now, expires_at=now + self.uploads.expiry,
            )
            upload.metadata_sealed = self.keys.seal_text(
                session, actor.organisation_id, json.dumps({"filename": name}),
                f"upload:{upload.id}",
            )
            session.add(upload)
            return upload.id

    # -- live events --------------------------------------------------------------

    def open_events(self, actor: Actor, request_id: str,
                    ctx: trail.Context | None = None) -> None:
        """Check that ``actor`` may follow this request; ``ctx`` when it
        starts (an administrator's access is then recorded), not on rechecks."""
        with self.db.session() as session:
            request = self._owned(session, actor, request_id, Action.REQUEST_READ)
            self._admin_access(session, actor, request, "events", ctx)

    def since(self, request_id: str, after: int, limit: int = 500) -> list[RequestStep]:
        """Steps of the request's received transfers above ``after`` (call
        ``open_events`` first)."""
        if after < 0:
            raise InvalidInput("the last event id must be a positive number", field="after")
        with self.db.session() as session:
            rows = session.execute(
                select(TransferEvent, RequestDepositor.email)
                .join(Transfer, Transfer.id == TransferEvent.transfer_id)
                .join(RequestDepositor, RequestDepositor.id == Transfer.received_from)
                .where(RequestDepositor.request_id == request_id, TransferEvent.id > after)
                .order_by(TransferEvent.id).limit(limit)
            ).all()
            return [RequestStep(e.id, e.kind, e.time, e.transfer_id, email) for e, email in rows]
