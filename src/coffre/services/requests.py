"""Upload requests ("invitation à déposer"): a member asks named people
(or anyone with an open link) to deposit files.

Each named depositor gets a personal link (256-bit token, stored hashed);
an open link lets a visitor give their address and become a depositor.
Either way the depositor proves control of the mailbox (or phone) with
the recipients' one-time code mechanism (same digest, lifetime, resend
throttle and lock: ``services.verification``), and gets a short-lived
deposit grant bound to them alone. The grant is not an account: through
the tus endpoint it creates uploads within the request's limits, and sees
or appends to its own uploads only (``services.uploads``). A finished
deposit becomes a *received transfer* owned by the requester, who is told
by mail and by a live event. Never logs or audits a token or a code.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.crypto import credentials, stream
from coffre.db.engine import Database
from coffre.db.tables import (
    Blob,
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
from coffre.domain.accounts import Actor, normalise_email
from coffre.domain.policy import Action, Target, authorize
from coffre.domain.requests import (
    MAX_DEPOSITORS,
    MAX_EXPIRY,
    Depositor,
    check_limits,
    check_request_open,
    check_room,
)
from coffre.domain.transfers import MAX_MESSAGE_CHARS, ByteRange, sanitise_filename
from coffre.errors import (
    AuthenticationRequired,
    Conflict,
    InvalidInput,
    NotFound,
    TooManyAttempts,
)
from coffre.ports import BlobStore, Clock
from coffre.services import messages
from coffre.services.keys import KeyRing
from coffre.services.mail import MailQueue
from coffre.services.tracking import track
from coffre.services.transfers import FileView, NewTransfer, TransferService, TransferView
from coffre.services.uploads import UploadInfo, UploadService
from coffre.services.verification import (
    ACCESS_LIFETIME,
    CODE_DIGITS,
    MAX_SENDS_PER_HOUR,
    RecipientVerification,
    check_phone,
    mask_email,
    mask_phone,
)

#: Depositors an open link may take in (each one who gives an address).
MAX_JOINED = 200
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
class DepositUpload:
    id: str
    name: str
    length: int | None
    offset: int
    completed: bool
    deposited: bool


@dataclass(frozen=True)
class DepositView:
    """What a depositor who proved their address sees: the request and
    their own uploads, never anyone else's."""

    request_id: str
    requester: str
    message: str
    expires_at: datetime
    max_total_size: int
    max_files: int
    remaining_size: int
    remaining_files: int
    uploads: list[DepositUpload] = field(default_factory=list)


@dataclass(frozen=True)
class CodeSent:
    channel: str
    recipient: str
    expires_in: int
    resend_in: int


@dataclass(frozen=True)
class Joined:
    token: str
    code: CodeSent


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


def _seconds(delta: timedelta) -> int:
    return max(int(-(-delta.total_seconds() // 1)), 1)


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
                depositor = self._new_depositor(session, request, email, token, now)
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

    def _new_depositor(self, session: Session, request: UploadRequest, email: str, token: str,
                       now: datetime, *, joined: bool = False) -> RequestDepositor:
        depositor = RequestDepositor(
            id=new_id(), request_id=request.id, email=email, joined=joined,
            token_hash=credentials.hash_token(token), created_at=now,
        )
        session.add(depositor)
        return depositor

    def list_own(self, actor: Actor) -> list[RequestView]:
        authorize(actor, Action.TRANSFER_LIST)  # one's own, like sent transfers
        with self.db.session() as session:
            rows = session.execute(
                select(UploadRequest).where(UploadRequest.owner_id == actor.user_id)
                .order_by(UploadRequest.created_at.desc())
            ).scalars().all()
            return [self._view(session, r) for r in rows]

    def get(self, actor: Actor, request_id: str) -> RequestView:
        with self.db.session() as session:
            return self._view(session, self._owned(session, actor, request_id,
                                                   Action.REQUEST_READ))

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

    def _usage(self, session: Session, request_id: str) -> tuple[int, int]:
        """(files, bytes declared) of every upload made for this request."""
        files, used = session.execute(
            select(func.count(Upload.id), func.coalesce(func.sum(Upload.length), 0))
            .join(RequestDepositor, RequestDepositor.id == Upload.depositor_id)
            .where(RequestDepositor.request_id == request_id)
        ).one()
        return int(files or 0), int(used or 0)

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

    def open_file(self, actor: Actor, transfer_id: str, file_id: str,
                  choose_range: Callable[[int, str], ByteRange | None], ctx: trail.Context,
                  *, body: bool = True) -> tuple[FileView, str, int, int, Iterator[bytes],
                                                 Callable[[int, bool], None]]:
        """The owner downloads a file of their own transfer (a received one,
        typically). A complete download is audited once."""
        with self.db.session() as session:
            transfer = session.get(Transfer, transfer_id)
            if transfer is None or transfer.purged_at is not None:
                raise NotFound("transfer not found")
            authorize(actor, Action.TRANSFER_DOWNLOAD,
                      Target(transfer.organisation_id, transfer.sender_id),
                      missing="transfer not found")
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
            if not (complete and lo == 0 and hi == view.size):
                return
            with self.db.session() as session:
                trail.record(
                    session, "transfer.owner_downloaded", actor=actor.user_id,
                    organisation_id=organisation_id, object_type="file", object_id=file_id,
                    context=ctx, transfer=transfer_id, size=view.size,
                )

        if not body:
            return view, etag, lo, hi, iter(()), on_end

        def read(offset: int, length: int) -> bytes:
            return self.store.read(storage_key, offset, length)

        chunks = stream.decrypt_range(key, read, stream_size, lo, hi,
                                      batch_segments=READ_BATCH_SEGMENTS)
        return view, etag, lo, hi, chunks, on_end

    def forward(self, actor: Actor, transfer_id: str, new: NewTransfer,
                ctx: trail.Context) -> TransferView:
        """Send the files of one's transfer to new recipients: each file is
        copied under a fresh data key (deleting either transfer later
        shreds only its own copy), then sent as a new transfer."""
        with self.db.session() as session:
            transfer = session.get(Transfer, transfer_id)
            if transfer is None or transfer.purged_at is not None:
                raise NotFound("transfer not found")
            authorize(actor, Action.TRANSFER_FORWARD,
                      Target(transfer.organisation_id, transfer.sender_id),
                      missing="transfer not found")
            sources = [(f.id, self.transfers.file_view(session, f).name,
                        self.keys.blob_key(session, f.blob), f.blob.storage_key,
                        f.blob.ciphertext_size, f.size, f.sha256) for f in transfer.files]
        upload_ids = [self._copy(actor, *source) for source in sources]
        view = self.transfers.create(actor, NewTransfer(**{**new.__dict__,
                                                           "upload_ids": upload_ids}), ctx)
        with self.db.session() as session:
            trail.record(
                session, "transfer.forwarded", actor=actor.user_id,
                organisation_id=actor.organisation_id, object_type="transfer",
                object_id=transfer_id, context=ctx, to_transfer=view.id,
            )
        return view

    def _copy(self, actor: Actor, file_id: str, name: str, key: bytes, storage_key: str,
              stream_size: int, size: int, sha256: str) -> str:
        """A completed upload of the owner's holding a re-encrypted copy."""
        now = self.clock.now()
        with self.db.session() as session:
            blob = Blob(id=new_id(), organisation_id=actor.organisation_id)
            blob.storage_key = f"blobs/{blob.id[:2]}/{blob.id}"
            header = stream.StreamHeader.random()
            blob.header = header.to_bytes()
            new_key = self.keys.new_blob_key(session, blob)
            session.add(blob)
        cipher = stream.SegmentCipher(new_key, header)

        def read(offset: int, length: int) -> bytes:
            return self.store.read(storage_key, offset, length)

        appender = self.store.open_append(blob.storage_key, 0)
        try:
            appender.write(blob.header)
            index, pending = 0, b""
            for chunk in stream.decrypt_range(key, read, stream_size, 0, size,
                                              batch_segments=READ_BATCH_SEGMENTS):
                pending += chunk
                while len(pending) > stream.segment_plaintext_size(index):
                    cut = stream.segment_plaintext_size(index)
                    appender.write(cipher.encrypt_segment(index, pending[:cut], False))
                    pending, index = pending[cut:], index + 1
            appender.write(cipher.encrypt_segment(index, pending, True))
            appender.commit()
        finally:
            appender.close()
        with self.db.session() as session:
            stored = session.get(Blob, blob.id)
            assert stored is not None
            stored.plaintext_size = size
            stored.ciphertext_size = stream.ciphertext_size(size)
            stored.sha256 = sha256
            upload = Upload(
                id=new_id(), organisation_id=actor.organisation_id, owner_id=actor.user_id,
                blob_id=blob.id, length=size, offset=size, segments_committed=index + 1,
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

    def open_events(self, actor: Actor, request_id: str) -> None:
        with self.db.session() as session:
            self._owned(session, actor, request_id, Action.REQUEST_READ)

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

    # -- the depositor's side -----------------------------------------------------

    def _depositor(self, session: Session, token: str, *, lock: bool = False
                   ) -> RequestDepositor:
        query = select(RequestDepositor).where(
            RequestDepositor.token_hash == credentials.hash_token(token))
        if lock:
            query = query.with_for_update()
        depositor = session.execute(query).scalar_one_or_none()
        if depositor is None:
            raise NotFound("unknown link")
        request = depositor.request
        check_request_open(request.closed_at, request.expires_at, self.clock.now())
        return depositor

    def _granted(self, session: Session, token: str, access: str | None) -> RequestDepositor:
        depositor = self._depositor(session, token)
        grant = session.get(DepositGrant, credentials.hash_token(access)) if access else None
        if grant is None or grant.depositor_id != depositor.id or (
            grant.expires_at <= self.clock.now()
        ):
            raise AuthenticationRequired(
                "enter the one-time code sent to you to deposit files",
                reason="code_required", **self._challenge(session, depositor),
            )
        return depositor

    def _challenge(self, session: Session, depositor: RequestDepositor) -> dict[str, str]:
        owner = session.get(User, depositor.request.owner_id)
        phone = self._phone(session, depositor)
        return {
            "recipient": mask_phone(phone) if phone else mask_email(depositor.email),
            "requester": (owner.display_name or owner.email) if owner else "",
            "channel": "sms" if phone else "email",
        }

    def _phone(self, session: Session, depositor: RequestDepositor) -> str | None:
        if depositor.phone_sealed is None or self.codes.sms is None:
            return None
        return self.keys.open_text(session, depositor.phone_sealed,
                                   f"depositor:{depositor.id}:phone")

    def grant_principal(self, access: str) -> Depositor:
        """The depositor a grant (``X-Coffre-Deposit``) stands for, while
        it lasts and its request is open."""
        with self.db.session() as session:
            grant = session.get(DepositGrant, credentials.hash_token(access))
            if grant is None or grant.expires_at <= self.clock.now():
                raise AuthenticationRequired(
                    "this deposit grant is unknown or has expired: enter a new code",
                    reason="deposit_grant",
                )
            depositor = session.get(RequestDepositor, grant.depositor_id)
            assert depositor is not None
            request = depositor.request
            check_request_open(request.closed_at, request.expires_at, self.clock.now())
            return Depositor(depositor.id, request.id, request.organisation_id,
                             request.owner_id)

    def join(self, open_token: str, email: str, ctx: trail.Context) -> Joined:
        """A visitor of an open link gives their address: they become a
        depositor (with a token of their own) and get a code there."""
        address = normalise_email(email)
        now = self.clock.now()
        token = credentials.new_token()
        with self.db.session() as session:
            request = session.execute(
                select(UploadRequest)
                .where(UploadRequest.open_token_hash == credentials.hash_token(open_token))
                .with_for_update()
            ).scalar_one_or_none()
            if request is None:
                raise NotFound("unknown link")
            check_request_open(request.closed_at, request.expires_at, now)
            joined = session.execute(
                select(func.count(RequestDepositor.id)).where(
                    RequestDepositor.request_id == request.id, RequestDepositor.joined)
            ).scalar_one()
            if joined >= MAX_JOINED:
                raise TooManyAttempts("this open link has taken in too many depositors",
                                      reason="too_many_depositors")
            depositor = self._new_depositor(session, request, address, token, now, joined=True)
            session.flush()
            trail.record(
                session, "request.depositor_joined", actor=None,
                organisation_id=request.organisation_id, object_type="depositor",
                object_id=depositor.id, context=ctx, request=request.id,
            )
        return Joined(token=token, code=self.send_code(token, ctx))

    def send_code(self, token: str, ctx: trail.Context) -> CodeSent:
        """Same rules as recipients' codes: throttled, single use, keyed digest."""
        now = self.clock.now()
        codes = self.codes
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        with self.db.session() as session:
            depositor = self._unlocked(session, token, now)
            last = depositor.code_sent_at
            if last is not None and now - last < codes.resend_interval:
                raise TooManyAttempts(
                    "a code was sent a moment ago: wait before asking for another",
                    reason="resend_too_soon",
                    retry_after=_seconds(last + codes.resend_interval - now),
                )
            recent = last is not None and now - last < timedelta(hours=1)
            sends = depositor.code_sends if recent else 0
            if sends >= MAX_SENDS_PER_HOUR:
                raise TooManyAttempts("too many codes were sent for this link: try again later",
                                      reason="too_many_codes")
            request = depositor.request
            challenge = self._challenge(session, depositor)
            phone = self._phone(session, depositor)
            depositor.code_hash = self.keys.code_digest(
                session, request.organisation_id, f"depositor:{depositor.id}", code)
            depositor.code_expires_at = now + codes.code_lifetime
            depositor.code_sent_at = now
            depositor.code_sends = sends + 1
            minutes = _seconds(codes.code_lifetime) // 60
            if phone is None:
                self.mail.enqueue(session, request.organisation_id, messages.depositor_code(
                    to=depositor.email, code=code, requester=challenge["requester"],
                    minutes=minutes))
            trail.record(
                session, "depositor.code_sent", actor=None,
                organisation_id=request.organisation_id, object_type="depositor",
                object_id=depositor.id, context=ctx, request=request.id,
                channel=challenge["channel"],
            )
        if phone is not None:
            assert codes.sms is not None
            codes.sms.send(phone, messages.recipient_code_sms(code=code, minutes=minutes))
        del code
        return CodeSent(challenge["channel"], challenge["recipient"],
                        _seconds(codes.code_lifetime), _seconds(codes.resend_interval))

    def _unlocked(self, session: Session, token: str, now: datetime) -> RequestDepositor:
        depositor = self._depositor(session, token, lock=True)
        if depositor.locked_until is not None and depositor.locked_until > now:
            raise TooManyAttempts("too many wrong codes: this link is locked for a while",
                                  reason="locked",
                                  retry_after=_seconds(depositor.locked_until - now))
        return depositor

    def verify(self, token: str, code: str, ctx: trail.Context) -> str:
        """Exchange the right code for a deposit grant. Wrong codes count;
        the last allowed one locks the link (429) and voids the code."""
        now = self.clock.now()
        code = re.sub(r"\s", "", code)
        codes = self.codes
        error: AuthenticationRequired | TooManyAttempts
        with self.db.session() as session:
            depositor = self._unlocked(session, token, now)
            request = depositor.request
            pending = depositor.code_hash is not None and depositor.code_expires_at is not None
            details: dict[str, Any] = {"request": request.id}
            if not pending or (depositor.code_expires_at or now) <= now:
                depositor.code_hash = None
                error = AuthenticationRequired(
                    "no code is pending for this link: ask for a new one",
                    reason="code_expired" if pending else "no_code",
                )
            else:
                digest = self.keys.code_digest(
                    session, request.organisation_id, f"depositor:{depositor.id}", code)
                assert depositor.code_hash is not None
                if hmac.compare_digest(digest, depositor.code_hash):
                    depositor.code_hash = None
                    depositor.code_expires_at = None
                    depositor.code_failures = 0
                    depositor.verified_at = depositor.verified_at or now
                    access = credentials.new_token()
                    session.add(DepositGrant(
                        token_hash=credentials.hash_token(access), depositor_id=depositor.id,
                        created_at=now, expires_at=min(now + ACCESS_LIFETIME,
                                                       request.expires_at),
                    ))
                    self._event(session, depositor, "depositor.code_verified", ctx, **details)
                    return access
                session.execute(
                    update(RequestDepositor).where(RequestDepositor.id == depositor.id)
                    .values(code_failures=RequestDepositor.code_failures + 1)
                )
                session.refresh(depositor)
                failures = depositor.code_failures
                self._event(session, depositor, "depositor.code_failed", ctx,
                            outcome="failure", failures=failures, **details)
                error = AuthenticationRequired("wrong code", reason="wrong_code",
                                               attempts_left=codes.attempts - failures)
                if failures >= codes.attempts:
                    depositor.locked_until = now + codes.lock_time
                    depositor.code_hash = None
                    depositor.code_expires_at = None
                    depositor.code_failures = 0
                    self._event(session, depositor, "depositor.locked", ctx, outcome="failure",
                                **details)
                    error = TooManyAttempts(
                        "too many wrong codes: this link is locked for a while",
                        reason="locked", retry_after=_seconds(codes.lock_time))
        raise error

    def _event(self, session: Session, depositor: RequestDepositor, action: str,
               ctx: trail.Context, outcome: str = "success", **details: Any) -> None:
        trail.record(
            session, action, actor=None, organisation_id=depositor.request.organisation_id,
            object_type="depositor", object_id=depositor.id, outcome=outcome, context=ctx,
            **details,
        )

    def view(self, token: str, access: str | None) -> DepositView:
        with self.db.session() as session:
            depositor = self._granted(session, token, access)
            request = depositor.request
            owner = session.get(User, request.owner_id)
            files, used = self._usage(session, request.id)
            rows = session.execute(
                select(Upload).where(Upload.depositor_id == depositor.id)
                .order_by(Upload.created_at)
            ).scalars().all()
            uploads = []
            for upload in rows:
                info = self.uploads._info(session, upload)
                uploads.append(DepositUpload(
                    upload.id, info.metadata.get("filename", ""), upload.length, upload.offset,
                    upload.completed_at is not None, upload.attached_at is not None))
            message = ""
            if request.message_sealed:
                message = self.keys.open_text(session, request.message_sealed,
                                              f"request:{request.id}:message")
            return DepositView(
                request_id=request.id,
                requester=(owner.display_name or owner.email) if owner else "",
                message=message, expires_at=request.expires_at,
                max_total_size=request.max_total_size, max_files=request.max_files,
                remaining_size=max(request.max_total_size - used, 0),
                remaining_files=max(request.max_files - files, 0), uploads=uploads,
            )

    def create_upload(self, depositor: Depositor, length: int | None,
                      metadata: dict[str, str], ctx: trail.Context) -> UploadInfo:
        """A depositor's tus creation: within the request's limits, checked
        in the creating transaction (the request row is locked)."""

        def admit(session: Session, declared: int | None) -> None:
            request = session.execute(
                select(UploadRequest).where(UploadRequest.id == depositor.request_id)
                .with_for_update()
            ).scalar_one()
            check_request_open(request.closed_at, request.expires_at, self.clock.now())
            files, used = self._usage(session, request.id)
            check_room(declared, files, used, request.max_files, request.max_total_size)

        return self.uploads.create(depositor, length, metadata, ctx, admit=admit)

    def deposit(self, token: str, access: str | None, upload_ids: list[str] | None,
                ctx: trail.Context) -> str:
        """The depositor is done: their completed uploads (all, or those
        listed) become a received transfer of the requester's, who is told
        by mail and by a live event. Returns nothing the depositor could
        use to read it back (the transfer's id only)."""
        now = self.clock.now()
        with self.db.session() as session:
            depositor = self._granted(session, token, access)
            request = depositor.request
            query = select(Upload).where(Upload.depositor_id == depositor.id,
                                         Upload.attached_at.is_(None))
            rows = {u.id: u for u in session.execute(query.with_for_update()).scalars()}
            if upload_ids is not None:
                missing = [i for i in upload_ids if i not in rows]
                if missing:
                    raise NotFound("upload not found", upload=missing[0])
                chosen = [rows[i] for i in dict.fromkeys(upload_ids)]
            else:
                chosen = sorted((u for u in rows.values() if u.completed_at is not None),
                                key=lambda u: u.created_at)
            if not chosen:
                raise Conflict("no completed upload to deposit", reason="nothing_to_deposit")
            for upload in chosen:
                if upload.completed_at is None or upload.sha256 is None:
                    raise Conflict("this upload is not complete yet", upload=upload.id)
            org = request.organisation_id
            transfer = Transfer(
                id=new_id(), organisation_id=org, sender_id=request.owner_id,
                created_at=now, expires_at=None, received_from=depositor.id,
            )
            transfer.subject_sealed = self.keys.seal_text(
                session, org, f"Dépôt de {depositor.email}", f"transfer:{transfer.id}:subject")
            transfer.message_sealed = self.keys.seal_text(
                session, org, "", f"transfer:{transfer.id}:message")
            session.add(transfer)
            total = 0
            for position, upload in enumerate(chosen):
                info = self.uploads._info(session, upload)
                name = sanitise_filename(info.metadata.get("filename")
                                         or f"fichier-{position + 1}")
                file = TransferFile(
                    id=new_id(), transfer_id=transfer.id, blob_id=upload.blob_id,
                    position=position, size=upload.blob.plaintext_size, sha256=upload.sha256,
                )
                file.name_sealed = self.keys.seal_text(session, org, name, f"file:{file.id}")
                session.add(file)
                upload.attached_at = now
                upload.metadata_sealed = None
                total += file.size
            session.flush()
            trail.record(
                session, "deposit.completed", actor=None, organisation_id=org,
                object_type="transfer", object_id=transfer.id, context=ctx,
                request=request.id, depositor=depositor.id, files=len(chosen), bytes=total,
            )
            track(session, transfer.id, "deposit_received", time=now)
            owner = session.get(User, request.owner_id)
            assert owner is not None
            self.mail.enqueue(session, org, messages.deposit_received(
                to=owner.email, depositor=depositor.email, files=len(chosen), size=total,
                link=f"{self.public_url}/api/v1/received",
            ))
            return transfer.id
