"""Upload requests, the depositor's side: a personal link (or an open
link plus an address) and a one-time code give a short-lived deposit grant
bound to one depositor.

The code follows the recipients' mechanism (``services.verification``:
keyed digest, lifetime, resend throttle, lock). The grant is not an
account: through the tus endpoint it creates uploads within the request's
limits and sees or appends to its own uploads only (``services.uploads``);
``deposit`` turns the depositor's completed uploads into a received
transfer of the requester's, who is told by mail and by a live event.
Never logs or audits a token or a code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.crypto import credentials
from coffre.db.engine import Database
from coffre.db.tables import (
    DepositGrant,
    RequestDepositor,
    Transfer,
    TransferFile,
    Upload,
    UploadRequest,
    User,
    new_id,
)
from coffre.domain import codes
from coffre.domain.accounts import normalise_email
from coffre.domain.addresses import throttle_bucket
from coffre.domain.phones import mask_phone
from coffre.domain.requests import Depositor, check_request_open, check_room
from coffre.domain.transfers import sanitise_filename
from coffre.errors import AuthenticationRequired, Conflict, NotFound, TooManyAttempts
from coffre.ports import Clock
from coffre.services import messages
from coffre.services.keys import KeyRing
from coffre.services.mail import MailQueue
from coffre.services.rates import Rates
from coffre.services.tracking import track
from coffre.services.uploads import UploadInfo, UploadService
from coffre.services.verification import (
    ACCESS_LIFETIME,
    Challenge,
    CodeSent,
    RecipientVerification,
    mask_email,
)

#: Depositors an open link may take in (each one who gives an address).
MAX_JOINED = 200
#: Joins per source, and deposit codes per address, are counted per hour.
RATE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class DepositUpload:
    id: str
    name: str
    length: int | None
    offset: int
    completed: bool
    deposited: bool
    #: When it was handed over (with the others of the same hand-over).
    deposited_at: datetime | None = None


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
    #: Where a tus client creates uploads with the deposit grant.
    upload_url: str = ""


@dataclass(frozen=True)
class Joined:
    token: str
    code: CodeSent

def new_depositor(session: Session, request: UploadRequest, email: str, token: str,
                  now: datetime, *, joined: bool = False) -> RequestDepositor:
    """A depositor row for ``email``, its link token stored hashed."""
    depositor = RequestDepositor(
        id=new_id(), request_id=request.id, email=email, joined=joined,
        token_hash=credentials.hash_token(token), created_at=now,
    )
    session.add(depositor)
    return depositor


class DepositService:
    def __init__(
        self,
        db: Database,
        keys: KeyRing,
        mail: MailQueue,
        clock: Clock,
        uploads: UploadService,
        codes: RecipientVerification,
        *,
        public_url: str,
        rates: Rates | None = None,
        joins_per_source: int = 20,
        codes_per_address: int = 10,
    ) -> None:
        self.db = db
        self.keys = keys
        self.mail = mail
        self.clock = clock
        self.uploads = uploads
        self.codes = codes
        self.public_url = public_url.rstrip("/")
        self.rates = rates or Rates(db, clock)
        self.joins_per_source = joins_per_source
        self.codes_per_address = codes_per_address

    def deposit_url(self, token: str) -> str:
        return f"{self.public_url}/d/{token}"

    def _usage(self, session: Session, request_id: str) -> tuple[int, int]:
        """(files, bytes declared) of every upload made for this request."""
        files, used = session.execute(
            select(func.count(Upload.id), func.coalesce(func.sum(Upload.length), 0))
            .join(RequestDepositor, RequestDepositor.id == Upload.depositor_id)
            .where(RequestDepositor.request_id == request_id)
        ).one()
        return int(files or 0), int(used or 0)

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

    def challenge_for(self, token: str) -> Challenge:
        """What the code page may tell a depositor who has proved nothing
        yet: where the code goes, whether one is pending and since when."""
        now = self.clock.now()
        with self.db.session() as session:
            depositor = self._depositor(session, token)
            shown = self._challenge(session, depositor)
            locked = depositor.locked_until
            return Challenge(
                recipient=shown["recipient"], sender=shown["requester"],
                channel=shown["channel"],
                code_pending=depositor.code_hash is not None
                and depositor.code_expires_at is not None and depositor.code_expires_at > now,
                locked_until=locked if locked is not None and locked > now else None,
                password_required=False, code_sent_at=depositor.code_sent_at,
            )

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
        depositor (with a token of their own) and get a code there.

        Joining again with the same address is the same depositor (same
        token; a code is mailed only when the resend rules allow it, the
        pending one stays valid otherwise). Joins are limited per source,
        and the link takes in at most ``MAX_JOINED`` depositors who proved
        their address or whose code is still pending: unverified joins
        expire with their code and stop counting."""
        address = normalise_email(email)
        self._limit("deposit_join", throttle_bucket(ctx.source) or "unknown", self.joins_per_source,
                    open_token, ctx, reason="too_many_joins")
        now = self.clock.now()
        with self.db.session() as session:
            request = session.execute(
                select(UploadRequest)
                .where(UploadRequest.open_token_hash == credentials.hash_token(open_token))
                .with_for_update()
            ).scalar_one_or_none()
            if request is None:
                raise NotFound("unknown link")
            check_request_open(request.closed_at, request.expires_at, now)
            token = self.keys.depositor_token(session, request.organisation_id, request.id,
                                              address)
            depositor = session.execute(select(RequestDepositor).where(
                RequestDepositor.request_id == request.id, RequestDepositor.joined,
                RequestDepositor.email == address)).scalar_one_or_none()
            if depositor is None:
                self._check_room(session, request, now)
                depositor = new_depositor(session, request, address, token, now, joined=True)
                session.flush()
                action = "request.depositor_joined"
            else:
                if depositor.token_hash != credentials.hash_token(token):
                    # Joined before tokens were derived: its token becomes
                    # the derived one (once; no row lock otherwise).
                    depositor.token_hash = credentials.hash_token(token)
                action = "request.depositor_rejoined"
            trail.record(
                session, action, actor=None,
                organisation_id=request.organisation_id, object_type="depositor",
                object_id=depositor.id, context=ctx, request=request.id,
            )
        try:
            sent = self.send_code(token, ctx)
        except TooManyAttempts as exc:
            if exc.details.get("reason") not in {"resend_too_soon", "too_many_codes"}:
                raise
            sent = self._pending_code(token, exc)
        return Joined(token=token, code=sent)

    def _check_room(self, session: Session, request: UploadRequest, now: datetime,
                    but: str | None = None) -> None:
        """Refuse one more joined depositor on a full open link (the
        request row is locked by the caller); ``but``: not counting this one."""
        counted = select(func.count(RequestDepositor.id)).where(
            RequestDepositor.request_id == request.id, RequestDepositor.joined,
            or_(RequestDepositor.verified_at.is_not(None),
                RequestDepositor.code_expires_at > now,
                RequestDepositor.created_at > now - self.codes.rules.lifetime))
        if but is not None:
            counted = counted.where(RequestDepositor.id != but)
        if session.execute(counted).scalar_one() >= MAX_JOINED:
            raise TooManyAttempts("this open link has taken in too many depositors",
                                  reason="too_many_depositors")

    def _limit(self, kind: str, subject: str, limit: int, open_token: str | None,
               ctx: trail.Context, *, reason: str, organisation_id: str | None = None) -> None:
        """At most ``limit`` per hour for ``subject``; the first refusal of
        a window is audited (not each one: a flood would flood the trail)."""
        counted = self.rates.count(kind, subject, limit, RATE_WINDOW)
        if counted.allowed:
            return
        if counted.first_refused:
            with self.db.session() as session:
                if organisation_id is None and open_token is not None:
                    organisation_id = session.execute(
                        select(UploadRequest.organisation_id).where(
                            UploadRequest.open_token_hash == credentials.hash_token(open_token))
                    ).scalar_one_or_none()
                trail.record(session, "deposit.rate_limited", actor=None,
                             organisation_id=organisation_id, object_type="rate_limit",
                             object_id=kind, outcome="failure", context=ctx, limit=limit,
                             reason=reason)
        raise TooManyAttempts("too many attempts from here: try again later", reason=reason,
                              retry_after=counted.retry_after(self.clock.now()))

    def _pending_code(self, token: str, refused: TooManyAttempts) -> CodeSent:
        """What a join answers when no code may be sent now: the pending
        one (if any) stays valid, and when the next may be asked for."""
        now = self.clock.now()
        with self.db.session() as session:
            depositor = self._depositor(session, token)
            challenge = self._challenge(session, depositor)
            left = (depositor.code_expires_at - now if depositor.code_expires_at
                    and depositor.code_expires_at > now else None)
            return CodeSent(challenge["channel"], challenge["recipient"],
                            codes.seconds(left) if left else 0,
                            int(refused.details.get("retry_after") or 1))

    def send_code(self, token: str, ctx: trail.Context) -> CodeSent:
        """Same rules as recipients' codes (``coffre.domain.codes``), and
        at most ``codes_per_address`` deposit codes an hour to one address,
        all links together."""
        now = self.clock.now()
        rules = self.codes.rules
        code = codes.new_code()
        minutes = codes.seconds(rules.lifetime) // 60
        with self.db.session() as session:
            depositor = self._unlocked(session, token, now)
            request = depositor.request
            if depositor.joined and depositor.verified_at is None:
                # An expired join counts again once it has a code pending.
                session.execute(select(UploadRequest.id).where(UploadRequest.id == request.id)
                                .with_for_update())
                self._check_room(session, request, now, but=depositor.id)
            codes.check_resend(depositor, now, rules)
            address, organisation_id = depositor.email, request.organisation_id
        self._limit("deposit_code_mail", address, self.codes_per_address, None, ctx,
                    reason="too_many_codes_for_address", organisation_id=organisation_id)
        with self.db.session() as session:
            depositor = self._unlocked(session, token, now)
            request = depositor.request
            codes.issue(depositor, self.keys.code_digest(
                session, request.organisation_id, f"depositor:{depositor.id}", code),
                now, rules)
            challenge = self._challenge(session, depositor)
            phone = self._phone(session, depositor)
            if phone is None:
                self.mail.enqueue(session, request.organisation_id, messages.one_time_code(
                    to=depositor.email, code=code, minutes=minutes,
                    purpose=f"déposer des fichiers à {challenge['requester']}"))
            trail.record(
                session, "depositor.code_sent", actor=None,
                organisation_id=request.organisation_id, object_type="depositor",
                object_id=depositor.id, context=ctx, request=request.id,
                channel=challenge["channel"],
            )
        if phone is not None:
            assert self.codes.sms is not None
            self.codes.sms.send(phone, messages.recipient_code_sms(code=code, minutes=minutes))
        del code
        return CodeSent(challenge["channel"], challenge["recipient"],
                        codes.seconds(rules.lifetime), codes.seconds(rules.resend_interval))

    def _unlocked(self, session: Session, token: str, now: datetime) -> RequestDepositor:
        depositor = self._depositor(session, token, lock=True)
        codes.check_unlocked(depositor, now)
        return depositor

    def verify(self, token: str, code: str, ctx: trail.Context) -> str:
        """Exchange the right code for a deposit grant. Wrong codes count;
        the last allowed one locks the link (429) and voids the code."""
        now = self.clock.now()
        with self.db.session() as session:
            depositor = self._unlocked(session, token, now)
            request = depositor.request
            result = codes.check(
                depositor, code,
                lambda given: self.keys.code_digest(
                    session, request.organisation_id, f"depositor:{depositor.id}", given),
                now, self.codes.rules)
            details: dict[str, Any] = {"request": request.id}
            if result.outcome is codes.Outcome.VERIFIED:
                depositor.verified_at = depositor.verified_at or now
                access = credentials.new_token()
                session.add(DepositGrant(
                    token_hash=credentials.hash_token(access), depositor_id=depositor.id,
                    created_at=now, expires_at=min(now + ACCESS_LIFETIME, request.expires_at),
                ))
                self._event(session, depositor, "depositor.code_verified", ctx, **details)
                return access
            if result.outcome is not codes.Outcome.NONE_PENDING:
                self._event(session, depositor, "depositor.code_failed", ctx,
                            outcome="failure", failures=result.failures, **details)
            if result.outcome is codes.Outcome.LOCKED:
                self._event(session, depositor, "depositor.locked", ctx, outcome="failure",
                            **details)
        assert result.error is not None
        raise result.error

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
            handed = self._handed_names(session, depositor.id)
            uploads = []
            for upload in rows:
                if upload.attached_at is None:
                    name = self.uploads._info(session, upload).metadata.get("filename", "")
                else:  # its name now lives, sealed, with the requester's file
                    name = handed.get(upload.blob_id, "")
                uploads.append(DepositUpload(
                    upload.id, name, upload.length, upload.offset,
                    upload.completed_at is not None, upload.attached_at is not None,
                    upload.attached_at))
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
                upload_url=f"{self.public_url}/api/v1/uploads/",
            )

    def _handed_names(self, session: Session, depositor_id: str) -> dict[str, str]:
        """The names of the files this depositor handed over, by blob (the
        requester's copies: a file they deleted is no longer named)."""
        files = session.execute(
            select(TransferFile).join(Transfer, Transfer.id == TransferFile.transfer_id)
            .where(Transfer.received_from == depositor_id)
        ).scalars().all()
        return {f.blob_id: self.keys.open_text(session, f.name_sealed, f"file:{f.id}")
                for f in files}

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

    def _received_expiry(self, session: Session, organisation_id: str,
                         now: datetime) -> datetime | None:
        """Received files follow the organisation's retention: kept until
        deleted where permanent storage is allowed, else its default expiry."""
        quotas = self.uploads.quotas
        if quotas is None:
            return None
        limits = quotas.limits(session, organisation_id)
        return None if limits.allow_permanent else now + limits.default_expiry

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
            rows = {u.id: u for u in session.execute(query.with_for_update(of=Upload)).scalars()}
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
                created_at=now, expires_at=self._received_expiry(session, org, now),
                received_from=depositor.id,
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
                to=owner.email, depositor=depositor.email, count=len(chosen), total=total,
                link=f"{self.public_url}/requests/{request.id}",
            ))
            return transfer.id
