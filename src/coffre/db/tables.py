"""SQLAlchemy 2 table definitions (declarative, typed)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC, on SQLite and PostgreSQL alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        # An aware value (text with an offset written behind the ORM's back)
        # is converted, never relabelled: 06:00+19:00 is 11:00 UTC the day before.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Organisation(Base):
    __tablename__ = "organisations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Every member (not only administrators) must use a second factor.
    require_mfa: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Senders may turn off recipients' one-time code per transfer.
    allow_unverified_recipients: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Refuse executables and scripts by name and content (SEC-19).
    block_executables: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Mails leave out transfers' subjects and messages (read on the link's page).
    discreet_mail: Mapped[bool] = mapped_column(Boolean, default=False)
    # Retention and limits (None: the instance's); see domain/limits.py.
    default_expiry_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_expiry_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allow_permanent: Mapped[bool] = mapped_column(Boolean, default=True)
    max_file_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_transfer_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_recipients: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Mail domains, one per line.
    recipient_domains_allowed: Mapped[str] = mapped_column(Text, default="")
    recipient_domains_denied: Mapped[str] = mapped_column(Text, default="")
    user_quota: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    organisation_quota: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: Backups (restic repositories): total bytes (None: the instance's), and
    #: days without a snapshot before the owner is alerted.
    backup_quota: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    backup_alert_days: Mapped[int | None] = mapped_column(Integer, nullable=True)


class OrganisationKey(Base):
    """An organisation's key-encryption key, wrapped by the root key."""

    __tablename__ = "organisation_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    root_key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default="member")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Preferred interface language (fr, en).
    locale: Mapped[str] = mapped_column(String(8), default="fr")


class SecondFactor(Base):
    """A TOTP seed (sealed) or a WebAuthn credential (public key)."""

    __tablename__ = "second_factors"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # totp | webauthn
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: None while a TOTP enrolment waits for its first code.
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: TOTP: the seed, sealed under the organisation's key.
    secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    #: TOTP: the last accepted time step (a code is never accepted twice).
    last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: TOTP: a digest of the browser mark that gave ``last_step`` (its owner
    #: typing the same code again is told to wait, not reported).
    last_step_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    credential_id: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, unique=True)
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[str] = mapped_column(String(100), default="")


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class UserSession(Base):
    """A browser session. The cookie holds a 256-bit token; only its hash
    is stored. ``stage`` is "password" until the second factor is given."""

    __tablename__ = "user_sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    stage: Mapped[str] = mapped_column(String(16), default="full")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: When the user last proved who they are (password, then factor).
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    mfa: Mapped[bool] = mapped_column(Boolean, default=False)
    csrf_hash: Mapped[str] = mapped_column(String(64))
    #: A pending WebAuthn challenge (registration or assertion) and its expiry.
    challenge: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    challenge_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(300), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: A POST that waited for step-up (SEC-17), sealed under the
    #: organisation's key and bound to this session, and when it lapses.
    intent_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    intent_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    user: Mapped[User] = relationship(lazy="joined")


class Invitation(Base):
    """A one-time link that lets someone join an organisation."""

    __tablename__ = "invitations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(20), default="member")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Throttle(Base):
    """Failed attempts against one secret (password, factor, link code),
    keyed by a hash of what was guessed at: growing delays, then a lock."""

    __tablename__ = "throttles"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: No attempt is even checked before this time.
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Obtained with a second factor (directly, or from a token that was).
    mfa: Mapped[bool] = mapped_column(Boolean, default=False)
    #: When its holder last proved who they are (login, or step-up).
    auth_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    user: Mapped[User] = relationship(lazy="joined")


class PasswordReset(Base):
    """A mailed single-use link that sets a new password (forgotten, or
    forced by an administrator). Only the 256-bit token's hash is stored."""

    __tablename__ = "password_resets"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: "forgotten" (asked for by its owner) or "forced" (by an administrator).
    reason: Mapped[str] = mapped_column(String(16), default="forgotten")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Replaced by a newer link, or ended when the password changed.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SetupToken(Base):
    """The one-time link that creates the first administrator."""

    __tablename__ = "setup_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Blob(Base):
    """One encrypted stream in the blob store. Deleting ``wrapped_key``
    shreds it: the ciphertext becomes noise."""

    __tablename__ = "blobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    storage_key: Mapped[str] = mapped_column(String(200), unique=True)
    kek_id: Mapped[str] = mapped_column(ForeignKey("organisation_keys.id"))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    header: Mapped[bytes] = mapped_column(LargeBinary)
    plaintext_size: Mapped[int] = mapped_column(BigInteger, default=0)
    ciphertext_size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    shredded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Upload(Base):
    """A tus upload in progress (or completed and not yet attached)."""

    __tablename__ = "uploads"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    blob_id: Mapped[str] = mapped_column(ForeignKey("blobs.id"))
    length: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Sealed tus Upload-Metadata (JSON), may name the patient.
    metadata_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    #: Segments durably written and acknowledged.
    segments_committed: Mapped[int] = mapped_column(Integer, default=0)
    #: Segment indices below this may have reached storage: never reuse them.
    segments_reserved: Mapped[int] = mapped_column(Integer, default=0)
    #: Plaintext after the last whole segment, sealed under the tail key.
    tail_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Which process writes it now, until when (one writer at a time).
    lease_owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attached_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Quota bytes held by a deferred-length upload while a PATCH streams.
    quota_reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Set when a depositor of an upload request writes it (through their
    #: grant, not an account); ``owner_id`` is then the requester.
    depositor_id: Mapped[str | None] = mapped_column(
        ForeignKey("request_depositors.id"), nullable=True, index=True
    )
    blob: Mapped[Blob] = relationship(lazy="joined")


class Transfer(Base):
    __tablename__ = "transfers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    sender_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    subject_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    message_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    max_downloads: Mapped[int | None] = mapped_column(Integer, nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    notify_on_download: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Recipients prove control of their mailbox with a one-time code.
    verify_recipients: Mapped[bool] = mapped_column(Boolean, default=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Legal hold: no deletion, no purge, no shorter expiry while set.
    held_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    held_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: When the purge first skipped this expired transfer because of a hold.
    purge_deferred_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: A received transfer: the depositor of an upload request it came from.
    received_from: Mapped[str | None] = mapped_column(
        ForeignKey("request_depositors.id"), nullable=True, index=True
    )
    files: Mapped[list[TransferFile]] = relationship(
        back_populates="transfer", order_by="TransferFile.position", lazy="selectin"
    )
    recipients: Mapped[list[Recipient]] = relationship(
        back_populates="transfer", order_by="Recipient.position", lazy="selectin"
    )


class TransferFile(Base):
    __tablename__ = "transfer_files"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), index=True)
    blob_id: Mapped[str] = mapped_column(ForeignKey("blobs.id"))
    position: Mapped[int] = mapped_column(Integer)
    name_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    transfer: Mapped[Transfer] = relationship(back_populates="files")
    blob: Mapped[Blob] = relationship(lazy="joined")


class OneTimeCode:
    """The pending one-time code (keyed hash), until when, wrong tries,
    sends and lock of a personal link (``coffre.domain.codes``)."""

    code_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    code_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    code_failures: Mapped[int] = mapped_column(Integer, default=0)
    code_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    code_sends: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Recipient(OneTimeCode, Base):
    __tablename__ = "recipients"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    email: Mapped[str] = mapped_column(String(254))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    password_failures: Mapped[int] = mapped_column(Integer, default=0)
    #: Optional mobile number for codes by SMS (E.164), sealed: personal data.
    phone_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The sender revoked this recipient's link alone (the others keep theirs).
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    transfer: Mapped[Transfer] = relationship(back_populates="recipients")


class Download(Base):
    """A download that delivered every byte (file, or the whole ZIP)."""

    __tablename__ = "downloads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recipient_id: Mapped[str] = mapped_column(ForeignKey("recipients.id"), index=True)
    file_id: Mapped[str] = mapped_column(ForeignKey("transfer_files.id"))
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    via_archive: Mapped[bool] = mapped_column(Boolean, default=False)


class FileRead(Base):
    """What a recipient's link has delivered of a file: the byte ranges and
    the bytes sent since its last counted download (JSON list of [start,
    end) pairs), and every byte it ever sent (what a download limit bounds)."""

    __tablename__ = "file_reads"
    recipient_id: Mapped[str] = mapped_column(ForeignKey("recipients.id"), primary_key=True)
    file_id: Mapped[str] = mapped_column(ForeignKey("transfer_files.id"), primary_key=True)
    delivered: Mapped[str] = mapped_column(Text, default="[]")
    sent_since: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    sent_total: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class DownloadClaim(Base):
    """A response of a limited file under way, on any instance, and the
    bytes it may still send (bytes are counted when they have gone out, so
    parallel GETs of a one-time link are refused while one is out; a claim
    of the whole file is a download in progress). Renewed while the body
    streams; an expired claim (its instance died) is ignored and removed."""

    __tablename__ = "download_claims"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    recipient_id: Mapped[str] = mapped_column(String(32), index=True)
    file_id: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class LinkAccess(Base):
    """A short-lived grant bound to one recipient link: what was proved
    (the one-time code, the transfer's password) and until when."""

    __tablename__ = "link_access"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    recipient_id: Mapped[str] = mapped_column(ForeignKey("recipients.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    code_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    password_verified: Mapped[bool] = mapped_column(Boolean, default=False)


class UploadRequest(Base):
    """An invitation to deposit files ("invitation à déposer"), with its limits."""

    __tablename__ = "upload_requests"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    message_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    #: The open link's token (hashed), if anyone with the link may deposit.
    open_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    max_total_size: Mapped[int] = mapped_column(BigInteger)
    max_files: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    depositors: Mapped[list[RequestDepositor]] = relationship(
        back_populates="request", order_by="RequestDepositor.created_at"
    )


class RequestDepositor(OneTimeCode, Base):
    """One depositor of a request: a personal link (hashed token) and the
    one-time code state that proves their mailbox."""

    __tablename__ = "request_depositors"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    request_id: Mapped[str] = mapped_column(ForeignKey("upload_requests.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    phone_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: Came through the open link (gave their own address).
    joined: Mapped[bool] = mapped_column(Boolean, default=False)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    request: Mapped[UploadRequest] = relationship(back_populates="depositors")


class DepositGrant(Base):
    """A short-lived grant bound to one depositor (code proved): it may
    create, see and append that depositor's uploads, nothing else."""

    __tablename__ = "deposit_grants"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    depositor_id: Mapped[str] = mapped_column(ForeignKey("request_depositors.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TransferEvent(Base):
    """A step of a recipient's timeline, for the sender's live tracking
    (the audit trail keeps the authoritative record)."""

    __tablename__ = "transfer_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), index=True)
    recipient_id: Mapped[str | None] = mapped_column(ForeignKey("recipients.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    file_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: Who, when it is not a recipient (an administrator or the operator).
    actor_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutgoingMail(Base):
    """Mail queue. The body is sealed (it carries links); cleared once sent."""

    __tablename__ = "outgoing_mail"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    organisation_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"))
    to: Mapped[str] = mapped_column(String(254))
    #: The recipient a transfer's link mail is for (live tracking: "mail sent").
    recipient_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    body_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)


class Contact(Base):
    """A personal contact (``owner_id``) or an entry of the organisation's
    directory (``owner_id`` NULL). The address is in clear like recipients'
    addresses; name, phone, profession, RPPS and organisation are one sealed
    JSON card."""

    __tablename__ = "contacts"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    owner_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id"), nullable=True, index=True
    )
    email: Mapped[str] = mapped_column(String(254))
    card_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Ranking: recipients matching a contact bump these when a transfer is sent.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    use_count: Mapped[int] = mapped_column(Integer, default=0)


class AuditEvent(Base):
    """Append-only, hash-chained trail under Merkle checkpoints (see
    ``coffre.audit``). ``payload`` is None once pruned by retention; the
    leaf hash stays so every later proof remains valid."""

    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("prev_hash"), Index("ix_audit_events_time", "time"))
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    organisation_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: RFC 9162 leaf hash of the payload: SHA-256(0x00 || payload).
    leaf_hash: Mapped[str] = mapped_column(String(64), default="")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: Keyed seal: HMAC-SHA256 under a key derived from the audit signing
    #: key (never stored here) over the previous seal, seq, leaf hash, time,
    #: action and organisation (``coffre.audit.trail.row_mac``). None only
    #: for rows not yet adopted after an upgrade.
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditCheckpoint(Base):
    """A signed statement of the tree's size and root (C2SP tlog-checkpoint)."""

    __tablename__ = "audit_checkpoints"
    tree_size: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    root_hash: Mapped[str] = mapped_column(String(64))
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    #: The whole signed note, as published.
    note: Mapped[str] = mapped_column(Text)


class BackupRepository(Base):
    """A device's restic repository ("Cabinet poste accueil"), served under
    ``/backup/{id}/``. Usage is kept here, updated with each object."""

    __tablename__ = "backup_repositories"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    #: Bytes at most (None: only the organisation's backup quota applies).
    quota: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    object_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    initialised_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_snapshot_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: When the owner was last told it had no recent snapshot.
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The device was revoked: its credential no longer opens anything.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class BackupCredential(Base):
    """HTTP basic-auth credential of one repository: ``id`` is the user
    name, the secret is stored only as an Argon2id hash. A device's is
    append-only; a maintenance one may delete, until ``expires_at``."""

    __tablename__ = "backup_credentials"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    repository_id: Mapped[str] = mapped_column(ForeignKey("backup_repositories.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # device | maintenance
    secret_hash: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    repository: Mapped[BackupRepository] = relationship(lazy="joined")


class BackupObject(Base):
    """One restic object, stored encrypted as ``blob`` (restic encrypted it
    already; Coffre encrypts it again at rest)."""

    __tablename__ = "backup_objects"
    __table_args__ = (UniqueConstraint("repository_id", "kind", "name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    repository_id: Mapped[str] = mapped_column(ForeignKey("backup_repositories.id"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    blob_id: Mapped[str] = mapped_column(ForeignKey("blobs.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    blob: Mapped[Blob] = relationship(lazy="joined")


class BackupSession(Base):
    """A credential's activity until it pauses: one audit event for a whole
    backup or restore instead of one per object."""

    __tablename__ = "backup_sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    repository_id: Mapped[str] = mapped_column(ForeignKey("backup_repositories.id"), index=True)
    credential_id: Mapped[str] = mapped_column(ForeignKey("backup_credentials.id"), index=True)
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(300), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    written: Mapped[int] = mapped_column(Integer, default=0)
    bytes_written: Mapped[int] = mapped_column(BigInteger, default=0)
    snapshots: Mapped[int] = mapped_column(Integer, default=0)
    read: Mapped[int] = mapped_column(Integer, default=0)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    listed: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    denied: Mapped[int] = mapped_column(Integer, default=0)
    dropped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
