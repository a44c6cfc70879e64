"""Transfers: create, list, revoke, extend, delete, purge.

Recipients' side (links, downloads) is in ``services.links``.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.crypto import credentials
from coffre.db.engine import Database
from coffre.db.tables import (
    Download,
    FileRead,
    Organisation,
    Recipient,
    Transfer,
    TransferEvent,
    TransferFile,
    Upload,
    User,
    new_id,
)
from coffre.domain import limits as rules
from coffre.domain.accounts import Actor, normalise_email
from coffre.domain.policy import Action, Target, authorize
from coffre.domain.transfers import (
    DOWNLOAD_STEPS,
    MAX_MESSAGE_CHARS,
    recipient_state,
    sanitise_filename,
)
from coffre.errors import Conflict, Gone, InvalidInput, NotFound, PermissionDenied
from coffre.ports import BlobStore, Clock, Mail
from coffre.services import contacts, messages
from coffre.services.keys import KeyRing
from coffre.services.mail import MailQueue
from coffre.services.organisations import discreet_mail
from coffre.services.quotas import Quotas
from coffre.services.tracking import record_admin_access, track
from coffre.services.verification import check_phone, phone_context


@dataclass(frozen=True)
class NewTransfer:
    upload_ids: list[str]
    recipients: list[str]
    message: str = ""
    subject: str = ""
    expires_in: timedelta | None = timedelta(days=7)
    max_downloads: int | None = None
    password: str | None = None
    notify_on_download: bool = False
    #: Recipients prove their address with a one-time code (off only if
    #: the organisation allows it).
    verify_recipients: bool = True
    #: Mobile numbers (E.164) of recipients who get their code by SMS.
    phones: dict[str, str] = field(default_factory=dict)
    #: Storage mode: None = permanent when ``expires_in`` is None; False with
    #: no ``expires_in`` = the organisation's default expiry.
    permanent: bool | None = None


@dataclass(frozen=True)
class FileView:
    id: str
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class RecipientView:
    id: str
    email: str
    #: Files delivered in full (a ZIP counts each of its files), as limits count.
    downloads: int
    first_opened_at: datetime | None
    #: Bytes of the files the link has sent, ranges and cut-short downloads included.
    bytes_sent: int = 0
    #: The furthest step reached (``domain.transfers.recipient_state``).
    state: str = "mail_sent"
    #: Downloads as the recipient made them: each file or ZIP that arrived whole.
    times_downloaded: int = 0
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class TransferView:
    id: str
    subject: str
    message: str
    created_at: datetime
    expires_at: datetime | None
    max_downloads: int | None
    password_protected: bool
    notify_on_download: bool
    status: str
    files: list[FileView]
    recipients: list[RecipientView]
    #: Personal links, only right after creation (never stored in clear).
    links: dict[str, str] | None = None
    verify_recipients: bool = True
    #: ``temporary`` (expires, then crypto-shredded) or ``permanent``.
    mode: str = rules.TEMPORARY
    legal_hold: bool = False


class TransferService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        keys: KeyRing,
        mail: MailQueue,
        clock: Clock,
        *,
        public_url: str,
        max_expiry: timedelta,
        sms_enabled: bool = False,
        quotas: Quotas,
    ) -> None:
        self.quotas = quotas
        self.db = db
        self.store = store
        self.keys = keys
        self.mail = mail
        self.clock = clock
        self.public_url = public_url.rstrip("/")
        self.max_expiry = max_expiry
        self.sms_enabled = sms_enabled

    def link_url(self, token: str) -> str:
        return f"{self.public_url}/t/{token}"

    # -- create -----------------------------------------------------------------

    def create(self, actor: Actor, new: NewTransfer, ctx: trail.Context) -> TransferView:
        authorize(actor, Action.TRANSFER_CREATE)
        recipients = _unique([normalise_email(r) for r in new.recipients])
        if not recipients:
            raise InvalidInput("a transfer needs at least one recipient", field="recipients")
        if len(recipients) > rules.RECIPIENTS_CEILING:
            raise InvalidInput(f"at most {rules.RECIPIENTS_CEILING} recipients",
                               field="recipients")
        if not new.upload_ids:
            raise InvalidInput("a transfer needs at least one file", field="files")
        if len(set(new.upload_ids)) != len(new.upload_ids):
            raise InvalidInput("the same file is listed twice", field="files")
        if len(new.message) > MAX_MESSAGE_CHARS or len(new.subject) > 200:
            raise InvalidInput("the message or subject is too long", field="message")
        if _has_control(new.subject, allowed="") or _has_control(new.message, allowed="\n\r\t"):
            raise InvalidInput("control characters are not allowed", field="subject")
        permanent = new.expires_in is None if new.permanent is None else new.permanent
        phones = {normalise_email(e): check_phone(p) for e, p in new.phones.items()}
        if set(phones) - set(recipients):
            raise InvalidInput("a phone number is given for an address that is not a recipient",
                               field="recipients")
        if phones and not self.sms_enabled:
            raise InvalidInput("codes by SMS are not configured on this server",
                               field="recipients")
        if phones and not new.verify_recipients:
            raise InvalidInput("phone numbers only serve to send one-time codes",
                               field="recipients")
        if new.max_downloads is not None and not 1 <= new.max_downloads <= 1000:
            raise InvalidInput("download limit must be between 1 and 1000", field="max_downloads")
        password_hash = None
        if new.password:
            if not 4 <= len(new.password) <= 256:
                raise InvalidInput(
                    "the link password must have 4 to 256 characters", field="password"
                )
            password_hash = credentials.hash_password(new.password)
        now = self.clock.now()
        links: dict[str, str] = {}
        with self.db.session() as session:
            sender = session.get(User, actor.user_id)
            assert sender is not None
            organisation = session.get(Organisation, actor.organisation_id)
            limits = self.quotas.limits(session, actor.organisation_id)
            rules.check_recipients(recipients, limits)
            expires_in = rules.resolve_expiry(new.expires_in, permanent=permanent, limits=limits)
            if not new.verify_recipients and not (
                organisation is not None and organisation.allow_unverified_recipients
            ):
                raise PermissionDenied(
                    "your organisation requires recipients to confirm their address with a "
                    "one-time code; an administrator can allow sending without it",
                    reason="verification_required",
                )
            transfer = Transfer(
                id=new_id(),
                organisation_id=actor.organisation_id,
                sender_id=actor.user_id,
                created_at=now,
                expires_at=now + expires_in if expires_in is not None else None,
                max_downloads=new.max_downloads,
                password_hash=password_hash,
                notify_on_download=new.notify_on_download,
                verify_recipients=new.verify_recipients,
            )
            org = actor.organisation_id
            transfer.message_sealed = self.keys.seal_text(
                session, org, new.message, f"transfer:{transfer.id}:message"
            )
            transfer.subject_sealed = self.keys.seal_text(
                session, org, new.subject.strip(), f"transfer:{transfer.id}:subject"
            )
            session.add(transfer)
            total = 0
            for position, upload_id in enumerate(new.upload_ids):
                upload = session.get(Upload, upload_id)
                if upload is None or upload.owner_id != actor.user_id or (
                    upload.depositor_id is not None  # a deposit in progress is not theirs
                ):
                    raise NotFound(
                        "upload not found", upload=upload_id, access_denied=upload is not None
                    )
                if upload.completed_at is None or upload.sha256 is None:
                    raise Conflict("this upload is not complete yet", upload=upload_id)
                if upload.attached_at is not None:
                    raise Conflict("this upload already belongs to a transfer", upload=upload_id)
                metadata = {}
                if upload.metadata_sealed:
                    metadata = json.loads(
                        self.keys.open_text(session, upload.metadata_sealed, f"upload:{upload.id}")
                    )
                name = sanitise_filename(metadata.get("filename") or f"fichier-{position + 1}")
                file = TransferFile(
                    id=new_id(),
                    transfer_id=transfer.id,
                    blob_id=upload.blob_id,
                    position=position,
                    size=upload.blob.plaintext_size,
                    sha256=upload.sha256,
                )
                file.name_sealed = self.keys.seal_text(session, org, name, f"file:{file.id}")
                session.add(file)
                upload.attached_at = now
                upload.metadata_sealed = None
                total += file.size
            rules.check_transfer_size(total, limits)
            discreet = discreet_mail(session, org)
            for position, email in enumerate(recipients):
                token = credentials.new_token()
                recipient = Recipient(
                    id=new_id(),
                    transfer_id=transfer.id,
                    position=position,
                    email=email,
                    token_hash=credentials.hash_token(token),
                    created_at=now,
                )
                if email in phones:
                    recipient.phone_sealed = self.keys.seal_text(
                        session, org, phones[email], phone_context(recipient.id)
                    )
                session.add(recipient)
                links[email] = self.link_url(token)
                self.mail.enqueue(
                    session,
                    org,
                    messages.transfer_link(
                        to=email,
                        sender=sender.display_name or sender.email,
                        sender_email=sender.email,
                        subject=new.subject.strip(),
                        message=new.message,
                        link=links[email],
                        expires_at=transfer.expires_at,
                        password=bool(password_hash),
                        code=("sms" if email in phones else "email")
                        if new.verify_recipients else None,
                        discreet=discreet,
                    ),
                    recipient_id=recipient.id,
                )
            contacts.record_use(session, org, actor.user_id, recipients, now)
            session.flush()
            trail.record(
                session,
                "transfer.created",
                actor=actor.user_id,
                organisation_id=org,
                object_type="transfer",
                object_id=transfer.id,
                context=ctx,
                files=len(new.upload_ids),
                recipients=len(recipients),
                bytes=total,
                expires_at=transfer.expires_at.isoformat() if transfer.expires_at else None,
                mode=rules.mode_of(transfer.expires_at),
                max_downloads=new.max_downloads,
                password=bool(password_hash),
                verify_recipients=new.verify_recipients,
                sms=len(phones),
            )
            session.refresh(transfer)
            view = self._view(session, transfer)
        return TransferView(**{**view.__dict__, "links": links})

    # -- read -------------------------------------------------------------------

    def list_sent(self, actor: Actor, include_inactive: bool = True) -> list[TransferView]:
        authorize(actor, Action.TRANSFER_LIST)
        with self.db.session() as session:
            rows = (
                session.execute(
                    select(Transfer)
                    .where(Transfer.sender_id == actor.user_id, Transfer.purged_at.is_(None),
                           Transfer.received_from.is_(None))
                    .order_by(Transfer.created_at.desc())
                )
                .scalars()
                .all()
            )
            views = [self._view(session, t) for t in rows]
        if not include_inactive:
            views = [v for v in views if v.status == "active"]
        return views

    def get(self, actor: Actor, transfer_id: str, ctx: trail.Context | None = None) -> TransferView:
        """One transfer; an administrator other than its sender reading it
        is recorded, and shown to the sender (SEC-4)."""
        with self.db.session() as session:
            transfer = self._managed(session, actor, transfer_id)
            record_admin_access(session, actor, transfer, "transfer", ctx, self.clock.now())
            return self._view(session, transfer)

    def _managed(self, session: Session, actor: Actor, transfer_id: str,
                 action: Action = Action.TRANSFER_READ) -> Transfer:
        transfer = session.get(Transfer, transfer_id)
        if transfer is None:
            raise NotFound("transfer not found")
        authorize(actor, action, Target(transfer.organisation_id, transfer.sender_id),
                  missing="transfer not found")
        return transfer

    def _view(self, session: Session, transfer: Transfer) -> TransferView:
        now = self.clock.now()
        counts = dict(
            session.execute(
                select(Download.recipient_id, func.count())
                .join(Recipient, Recipient.id == Download.recipient_id)
                .where(Recipient.transfer_id == transfer.id)
                .group_by(Download.recipient_id)
            ).all()
        )
        sent = dict(
            session.execute(
                select(FileRead.recipient_id, func.sum(FileRead.sent_total))
                .join(Recipient, Recipient.id == FileRead.recipient_id)
                .where(Recipient.transfer_id == transfer.id)
                .group_by(FileRead.recipient_id)
            ).all()
        )
        steps: dict[str, dict[str, int]] = {}
        for recipient_id, kind, number in session.execute(
            select(TransferEvent.recipient_id, TransferEvent.kind, func.count())
            .where(TransferEvent.transfer_id == transfer.id,
                   TransferEvent.recipient_id.is_not(None))
            .group_by(TransferEvent.recipient_id, TransferEvent.kind)
        ).all():
            steps.setdefault(str(recipient_id), {})[kind] = int(number)
        if transfer.purged_at is not None:
            status = "deleted"
        elif transfer.revoked_at is not None:
            status = "revoked"
        elif transfer.expires_at is not None and transfer.expires_at <= now:
            status = "expired"
        else:
            status = "active"
        purged = transfer.purged_at is not None
        subject, message = self.texts(session, transfer)
        return TransferView(
            id=transfer.id,
            subject=subject,
            message=message,
            created_at=transfer.created_at,
            expires_at=transfer.expires_at,
            max_downloads=transfer.max_downloads,
            password_protected=transfer.password_hash is not None,
            notify_on_download=transfer.notify_on_download,
            status=status,
            verify_recipients=transfer.verify_recipients,
            mode=rules.mode_of(transfer.expires_at),
            legal_hold=transfer.held_at is not None,
            files=[self.file_view(session, f) for f in transfer.files] if not purged else [],
            recipients=[self._recipient_view(r, counts.get(r.id, 0), int(sent.get(r.id) or 0),
                                             steps.get(r.id, {}))
                        for r in transfer.recipients],
        )

    @staticmethod
    def _recipient_view(recipient: Recipient, downloads: int, sent: int,
                        steps: dict[str, int]) -> RecipientView:
        return RecipientView(
            recipient.id, recipient.email, downloads, recipient.first_opened_at, sent,
            state=recipient_state(steps, revoked=recipient.revoked_at is not None,
                                  opened=recipient.first_opened_at is not None),
            times_downloaded=sum(n for kind, n in steps.items() if kind in DOWNLOAD_STEPS),
            revoked_at=recipient.revoked_at,
        )

    def texts(self, session: Session, transfer: Transfer) -> tuple[str, str]:
        """The transfer's (subject, message), unsealed; empty once purged."""

        def open_(sealed: bytes | None, part: str) -> str:
            if transfer.purged_at is not None or not sealed:
                return ""
            return self.keys.open_text(session, sealed, f"transfer:{transfer.id}:{part}")

        return open_(transfer.subject_sealed, "subject"), open_(transfer.message_sealed, "message")

    def file_view(self, session: Session, file: TransferFile) -> FileView:
        name = self.keys.open_text(session, file.name_sealed, f"file:{file.id}")
        return FileView(file.id, name, file.size, file.sha256)

    # -- change -----------------------------------------------------------------

    def revoke(self, actor: Actor, transfer_id: str, ctx: trail.Context) -> TransferView:
        with self.db.session() as session:
            transfer = self._managed(session, actor, transfer_id, Action.TRANSFER_MANAGE)
            if transfer.purged_at is not None:
                raise Gone("this transfer has been deleted")
            if transfer.revoked_at is None:
                transfer.revoked_at = self.clock.now()
                trail.record(
                    session,
                    "transfer.revoked",
                    actor=actor.user_id,
                    organisation_id=transfer.organisation_id,
                    object_type="transfer",
                    object_id=transfer.id,
                    context=ctx,
                )
            return self._view(session, transfer)

    def revoke_recipient(self, actor: Actor, transfer_id: str, recipient_id: str,
                         ctx: trail.Context) -> TransferView:
        """Revoke one recipient's link: it answers as a revoked transfer
        (410) at once, while the other recipients keep theirs. Idempotent
        (recorded once); a recipient of another transfer is not found."""
        with self.db.session() as session:
            transfer = self._managed(session, actor, transfer_id, Action.TRANSFER_MANAGE)
            recipient = session.get(Recipient, recipient_id)
            if recipient is None or recipient.transfer_id != transfer.id:
                raise NotFound("recipient not found")
            if transfer.purged_at is not None:
                raise Gone("this transfer has been deleted")
            if recipient.revoked_at is None:
                now = self.clock.now()
                recipient.revoked_at = now
                trail.record(
                    session,
                    "transfer.recipient_revoked",
                    actor=actor.user_id,
                    organisation_id=transfer.organisation_id,
                    object_type="recipient",
                    object_id=recipient.id,
                    context=ctx,
                    transfer=transfer.id,
                )
                track(session, transfer.id, "recipient_revoked", time=now,
                      recipient_id=recipient.id, actor_id=actor.user_id)
            return self._view(session, transfer)

    def extend(
        self, actor: Actor, transfer_id: str, expires_in: timedelta | None, ctx: trail.Context
    ) -> TransferView:
        """Set a new expiry counted from now (None = permanent); within the
        organisation's policy, and never earlier under a legal hold. A
        revoked transfer stays revoked: extending it is refused (409)."""
        with self.db.session() as session:
            transfer = self._managed(session, actor, transfer_id, Action.TRANSFER_MANAGE)
            if transfer.purged_at is not None:
                raise Gone("this transfer has been deleted; it cannot be extended")
            if transfer.revoked_at is not None:
                raise Conflict("this transfer is revoked: its links stay closed, so its "
                               "expiry cannot be changed", reason="revoked")
            limits = self.quotas.limits(session, transfer.organisation_id)
            expires_in = rules.resolve_expiry(expires_in, permanent=expires_in is None,
                                              limits=limits)
            now = self.clock.now()
            new_expiry = now + expires_in if expires_in is not None else None
            if transfer.held_at is not None and rules.lowers_expiry(transfer.expires_at,
                                                                    new_expiry):
                raise Conflict("this transfer is under legal hold: its expiry cannot be "
                               "brought forward", reason="legal_hold")
            transfer.expires_at = new_expiry
            trail.record(
                session,
                "transfer.extended",
                actor=actor.user_id,
                organisation_id=transfer.organisation_id,
                object_type="transfer",
                object_id=transfer.id,
                context=ctx,
                expires_at=transfer.expires_at.isoformat() if transfer.expires_at else None,
            )
            return self._view(session, transfer)

    def delete(self, actor: Actor, transfer_id: str, ctx: trail.Context) -> None:
        with self.db.session() as session:
            transfer = self._managed(session, actor, transfer_id, Action.TRANSFER_DELETE)
            if transfer.purged_at is not None:
                raise Gone("this transfer has already been deleted")
            if transfer.held_at is not None:
                raise Conflict("this transfer is under legal hold and cannot be deleted",
                               reason="legal_hold")
            keys = self._shred(session, transfer)
            trail.record(
                session,
                "transfer.deleted",
                actor=actor.user_id,
                organisation_id=transfer.organisation_id,
                object_type="transfer",
                object_id=transfer.id,
                context=ctx,
                files=len(keys),
            )
        self._remove_blobs(keys)

    def purge_expired(self) -> int:
        """Crypto-shred transfers past their expiry, except those under legal
        hold (each skipped one is recorded once). Returns how many."""
        now = self.clock.now()
        purged = 0
        self._record_held(now)
        while True:
            with self.db.session() as session:
                transfer = session.execute(
                    select(Transfer)
                    .where(Transfer.purged_at.is_(None), Transfer.expires_at <= now,
                           Transfer.held_at.is_(None))
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).scalar_one_or_none()
                if transfer is None:
                    return purged
                keys = self._shred(session, transfer)
                trail.record(
                    session,
                    "transfer.purged",
                    actor=None,
                    organisation_id=transfer.organisation_id,
                    object_type="transfer",
                    object_id=transfer.id,
                    files=len(keys),
                    reason="expired",
                    data_keys_destroyed=len(keys),
                )
            self._remove_blobs(keys)
            purged += 1

    def _record_held(self, now: datetime) -> None:
        with self.db.session() as session:
            held = session.execute(
                select(Transfer)
                .where(Transfer.purged_at.is_(None), Transfer.expires_at <= now,
                       Transfer.held_at.is_not(None), Transfer.purge_deferred_at.is_(None))
                .with_for_update(skip_locked=True)
            ).scalars().all()
            for transfer in held:
                transfer.purge_deferred_at = now
                trail.record(
                    session,
                    "transfer.purge_skipped",
                    actor=None,
                    organisation_id=transfer.organisation_id,
                    object_type="transfer",
                    object_id=transfer.id,
                    reason="legal_hold",
                )

    # -- legal hold ---------------------------------------------------------------

    def hold(self, actor: Actor, transfer_id: str, reason: str,
             ctx: trail.Context) -> TransferView:
        """Place a legal hold (administrators): no deletion, no purge."""
        reason = _hold_reason(reason)
        with self.db.session() as session:
            transfer = self._managed(session, actor, transfer_id, Action.TRANSFER_HOLD)
            if transfer.purged_at is not None:
                raise Gone("this transfer has been deleted")
            if transfer.held_at is not None:
                raise Conflict("this transfer is already under legal hold", reason="legal_hold")
            transfer.held_at = self.clock.now()
            transfer.held_by = actor.user_id
            transfer.purge_deferred_at = None
            trail.record(
                session,
                "transfer.hold_placed",
                actor=actor.user_id,
                organisation_id=transfer.organisation_id,
                object_type="transfer",
                object_id=transfer.id,
                context=ctx,
                reason=reason,
            )
            return self._view(session, transfer)

    def release(self, actor: Actor, transfer_id: str, reason: str,
                ctx: trail.Context) -> TransferView:
        """Lift a legal hold; an expired transfer is purged at the next run."""
        reason = _hold_reason(reason)
        with self.db.session() as session:
            transfer = self._managed(session, actor, transfer_id, Action.TRANSFER_HOLD)
            if transfer.held_at is None:
                raise Conflict("this transfer is not under legal hold", reason="not_held")
            held_since = transfer.held_at
            transfer.held_at = None
            transfer.held_by = None
            transfer.purge_deferred_at = None
            trail.record(
                session,
                "transfer.hold_released",
                actor=actor.user_id,
                organisation_id=transfer.organisation_id,
                object_type="transfer",
                object_id=transfer.id,
                context=ctx,
                reason=reason,
                held_since=held_since.isoformat(),
            )
            return self._view(session, transfer)

    def _shred(self, session: Session, transfer: Transfer) -> list[str]:
        """Destroy data keys and sealed metadata; returns the blobs' storage keys."""
        now = self.clock.now()
        storage_keys = []
        for file in transfer.files:
            file.blob.wrapped_key = None
            file.blob.shredded_at = now
            file.name_sealed = b""
            storage_keys.append(file.blob.storage_key)
        transfer.message_sealed = None
        transfer.subject_sealed = None
        transfer.purged_at = now
        return storage_keys

    def _remove_blobs(self, storage_keys: list[str]) -> None:
        # After the commit: if this fails, the ciphertext is already noise.
        self.db.flush_deleted()
        for key in storage_keys:
            self.store.delete(key)

    def notify_sender(self, session: Session, transfer: Transfer, mail: Mail) -> None:
        self.mail.enqueue(session, transfer.organisation_id, mail)


def _hold_reason(reason: str) -> str:
    reason = reason.strip()
    if not 3 <= len(reason) <= 500 or _has_control(reason, allowed=""):
        raise InvalidInput("a legal hold needs a written reason (3 to 500 characters, "
                           "one line)", field="reason")
    return reason


def _has_control(text: str, allowed: str) -> bool:
    """Control characters would break mail headers or fool terminals."""
    return any(unicodedata.category(c) == "Cc" and c not in allowed for c in text)


def _unique(items: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
