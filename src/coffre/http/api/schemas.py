"""Request and response bodies of the JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from coffre.domain.limits import (
    MAX_BACKUP_ALERT_DAYS,
    MAX_BYTES,
    RECIPIENTS_CEILING,
)

#: Longest expiry, in days, an organisation may set (a century).
MAX_DAYS = 36_500


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SetupRequest(Strict):
    token: str = Field(max_length=200)
    email: str = Field(max_length=254)
    password: str = Field(max_length=256)
    organisation: str = Field(max_length=200)
    display_name: str = Field(default="", max_length=200)


class LoginRequest(Strict):
    email: str = Field(max_length=254)
    password: str = Field(max_length=256)
    token_name: str = Field(default="cli", max_length=100)
    scopes: list[str] = Field(default=["transfers:read", "transfers:write"], max_length=10)
    expires_in_days: int | None = Field(default=90, ge=1, le=3650)
    #: A TOTP or recovery code, when the account has a second factor.
    code: str | None = Field(default=None, max_length=64)


class TokenRequest(Strict):
    name: str = Field(max_length=100)
    scopes: list[str] = Field(max_length=10)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class TokenCreated(BaseModel):
    token: str
    scopes: list[str]


class TokenOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class Me(BaseModel):
    id: str
    email: str
    display_name: str
    role: str
    organisation_id: str
    scopes: list[str]
    #: Signed in with a second factor; one is required for this account.
    mfa: bool = False
    mfa_required: bool = False


class RecipientIn(Strict):
    email: str = Field(max_length=254)
    phone: str | None = Field(
        default=None, max_length=30, description="mobile number (E.164) for the code by SMS"
    )


class TransferCreate(Strict):
    files: list[str] = Field(min_length=1, max_length=1000, description="completed upload ids")
    recipients: list[str | RecipientIn] = Field(
        min_length=1, max_length=1000,
        description='addresses, or {"email", "phone"} for a code by SMS',
    )
    subject: str = Field(default="", max_length=200)
    message: str = Field(default="", max_length=10_000)
    expires_in: str | None = Field(
        default=None, max_length=20,
        description="12h, 7d, 2w, 3m or 'permanent' (default: the organisation's)",
    )
    mode: Literal["temporary", "permanent"] | None = Field(
        default=None,
        description="temporary (expires, then crypto-shredded) or permanent (kept until "
        "deleted, if the organisation allows it)",
    )
    max_downloads: int | None = Field(default=None, ge=1, le=1000)
    password: str | None = Field(default=None, max_length=256)
    notify_on_download: bool = False
    verify_recipients: bool = Field(
        default=True,
        description="recipients confirm their address with a one-time code "
        "(turning it off needs the organisation's permission)",
    )


class Extend(Strict):
    expires_in: str = Field(max_length=20)


class FileOut(BaseModel):
    id: str
    name: str
    size: int
    sha256: str


class RecipientOut(BaseModel):
    id: str
    email: str
    downloads: int = Field(description="files delivered in full (a ZIP counts each of its "
                           "files), as download limits count them")
    first_opened_at: datetime | None
    bytes_sent: int = 0
    state: str = Field(default="mail_sent", description="the furthest step reached: "
                       "mail_sent, link_opened, code_sent, code_verified, file_downloaded; "
                       "or revoked")
    times_downloaded: int = Field(default=0, description="downloads as the recipient made "
                                  "them: each file or whole ZIP that arrived in full")
    revoked_at: datetime | None = None


class TransferOut(BaseModel):
    id: str
    subject: str
    message: str
    status: str
    created_at: datetime
    expires_at: datetime | None
    max_downloads: int | None
    password_protected: bool
    notify_on_download: bool
    files: list[FileOut]
    recipients: list[RecipientOut]
    links: dict[str, str] | None = None
    verify_recipients: bool = True
    mode: str = "temporary"
    legal_hold: bool = False


class HoldRequest(Strict):
    reason: str = Field(max_length=500, description="why (recorded in the audit trail)")


class UsageOut(BaseModel):
    used: int
    limit: int | None
    free: int | None


class MemberUsageOut(BaseModel):
    id: str
    email: str
    used: int


class UsageReportOut(BaseModel):
    user: UsageOut
    organisation: UsageOut | None = None
    members: list[MemberUsageOut] | None = None
    #: Administrators: where the data is stored (an S3 region; null: this server's disk).
    storage_location: str | None = None


class Unlock(Strict):
    password: str = Field(max_length=256)


class Access(BaseModel):
    access: str
    expires_in: int


class CodeCheck(Strict):
    code: str = Field(max_length=32)


class TransferEventOut(BaseModel):
    id: int
    kind: str
    time: datetime
    recipient_id: str | None
    recipient: str | None
    file_id: str | None
    actor_id: str | None


class LinkFileOut(BaseModel):
    id: str
    name: str
    size: int
    sha256: str
    downloads_left: int | None
    url: str


class LinkOut(BaseModel):
    transfer_id: str
    sender: str
    sender_email: str
    subject: str
    message: str
    expires_at: datetime | None
    files: list[LinkFileOut]
    total_size: int
    archive_url: str


# -- organisations, members, invitations ------------------------------------------


class InvitationCreate(Strict):
    email: str = Field(max_length=254)
    role: str = Field(default="member", max_length=20)


class InvitationAccept(Strict):
    token: str = Field(max_length=200)
    password: str = Field(max_length=256)
    display_name: str = Field(default="", max_length=200)


class MemberUpdate(Strict):
    role: str | None = Field(default=None, max_length=20)
    disabled: bool | None = None


class SessionsEnded(BaseModel):
    sessions_ended: int


class OrganisationUpdate(Strict):
    name: str | None = Field(default=None, max_length=200)
    require_mfa: bool | None = None
    allow_unverified_recipients: bool | None = None
    block_executables: bool | None = Field(
        default=None, description="refuse executables and scripts by name and content")
    discreet_mail: bool | None = Field(
        default=None, description="keep transfers' subjects and messages out of mails")
    # Retention and limits: null restores the instance's value.
    default_expiry_days: int | None = Field(default=None, le=MAX_DAYS)
    max_expiry_days: int | None = Field(default=None, le=MAX_DAYS)
    allow_permanent: bool | None = None
    max_file_size: int | None = Field(default=None, le=MAX_BYTES, description="bytes")
    max_transfer_size: int | None = Field(default=None, le=MAX_BYTES, description="bytes")
    max_recipients: int | None = Field(default=None, le=RECIPIENTS_CEILING)
    recipient_domains_allowed: list[str] | None = Field(default=None, max_length=500)
    recipient_domains_denied: list[str] | None = Field(default=None, max_length=500)
    user_quota: int | None = Field(default=None, le=MAX_BYTES, description="bytes")
    organisation_quota: int | None = Field(default=None, le=MAX_BYTES, description="bytes")
    backup_quota: int | None = Field(
        default=None, le=MAX_BYTES,
        description="bytes of all the organisation's backup repositories")
    backup_alert_days: int | None = Field(
        default=None, le=MAX_BACKUP_ALERT_DAYS,
        description="days without a backup before an alert (1-365)")
