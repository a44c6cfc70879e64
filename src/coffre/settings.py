"""Typed settings, read once by ``bootstrap`` from ``COFFRE_*`` variables
and an optional ``coffre.toml``; never at import time.
"""

from __future__ import annotations

import os
from ipaddress import ip_network
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from coffre.domain import times
from coffre.errors import ConfigurationError

GiB = 1 << 30


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COFFRE_", extra="forbid")

    mode: Literal["dev", "production"] = "dev"
    data_dir: Path = Path("./data")
    #: Public base URL used in links sent by mail, e.g. https://coffre.example.fr
    public_url: str | None = None
    host: str = "127.0.0.1"
    #: The time zone people read times in (pages, mail, the CLI's human
    #: output), an IANA name; storage and the API stay in UTC.
    timezone: str = "Europe/Paris"
    port: int = 8000
    #: Set when a TLS-terminating proxy sits in front of a non-loopback listener.
    behind_tls_proxy: bool = False
    #: Host names answered besides the public URL's and the listener's
    #: (comma-separated), e.g. the name a proxy forwards in ``Host``.
    allowed_hosts: str = ""
    #: Server processes (uvicorn workers); more than one needs PostgreSQL.
    workers: int = Field(default=1, ge=1, le=64)
    #: Bearer secret for GET /metrics (Prometheus); unset: no /metrics.
    metrics_token: SecretStr | None = None
    database_url: str | None = None
    storage_url: str | None = None
    root_key_file: Path | None = None
    #: The root key itself (base64 of 32 bytes), for stateless instances
    #: given it as a secret; replaces the file. The audit signing key is
    #: then ``audit_signing_key`` or, unset, derived from the root key.
    root_key: SecretStr | None = None
    audit_signing_key: SecretStr | None = None
    #: Where signed audit checkpoints are also appended (default: next to
    #: the key files); must be writable.
    audit_witness_file: Path | None = None

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: Literal["starttls", "tls", "none"] = "starttls"
    mail_from: str = "Coffre <coffre@localhost>"

    max_file_size: int = Field(default=100 * GiB, gt=0)
    #: Uploads not completed within this many hours expire.
    upload_expiry_hours: int = Field(default=72, gt=0)
    default_expiry_days: int = Field(default=7, gt=0)
    max_expiry_days: int = Field(default=365, gt=0)
    purge_interval_seconds: int = Field(default=300, gt=0)
    #: Orphan sweeper (``coffre storage sweep``): how often it runs, and how
    #: old an object or key must be before it may be removed.
    sweep_interval_minutes: int = Field(default=360, gt=0)
    sweep_grace_minutes: int = Field(default=1440, ge=10)
    #: Storage quotas in bytes (None: unlimited); organisations may set their own.
    user_quota: int | None = Field(default=None, gt=0)
    organisation_quota: int | None = Field(default=None, gt=0)
    #: Recipients of one transfer at most (SEC-33); organisations may lower it.
    max_recipients: int = Field(default=100, gt=0, le=1000)
    #: Backups (restic): bytes per organisation (None: unlimited; each
    #: organisation may set its own), days without a snapshot before the
    #: owner is alerted, and the pause that ends a backup session (one
    #: aggregated audit event per session).
    backup_quota: int | None = Field(default=None, gt=0)
    backup_alert_days: int = Field(default=7, gt=0, le=365)
    backup_session_idle_seconds: int = Field(default=300, gt=0)
    #: Backup object bodies held in memory by one process at once (shared
    #: fairly by the organisations sending), bodies in flight per
    #: credential, and the silence after which a body is dropped (408).
    backup_body_budget: int = Field(default=640 << 20, ge=1 << 20)
    backup_bodies_per_credential: int = Field(default=8, gt=0, le=100)
    backup_body_idle_seconds: int = Field(default=60, gt=0, le=3600)
    #: Open deposit links: joins per client address, and deposit codes
    #: mailed to one address, per hour (all links together).
    deposit_joins_per_source: int = Field(default=20, gt=0)
    deposit_codes_per_address: int = Field(default=10, gt=0)
    #: Failed link-password attempts before a recipient link locks.
    link_password_attempts: int = Field(default=10, gt=0)
    #: Downloads: how long a limited link's claim on its limit outlives the
    #: last sign of life of its response (a live response renews it; one
    #: whose claim lapsed is cut), and how long a response may wait for the
    #: client to take the next piece before it is aborted (keep it below
    #: the claim's lifetime).
    download_claim_seconds: int = Field(default=600, ge=2, le=24 * 3600)
    download_send_timeout_seconds: int = Field(default=300, gt=0, le=24 * 3600)

    #: Browser sessions (SEC-16): idle and absolute limits, step-up window.
    session_idle_minutes: int = Field(default=15, gt=0)
    session_absolute_hours: int = Field(default=12, gt=0)
    step_up_minutes: int = Field(default=5, gt=0)
    #: Anti-automation (SEC-14): failures before a lock, and its length.
    login_attempts: int = Field(default=5, gt=0)
    lockout_minutes: int = Field(default=15, gt=0)
    #: Failed password checks (sign-in, link passwords, backup credentials)
    #: one source address may make per window before it gets 429.
    source_attempts: int = Field(default=40, gt=0)
    source_window_minutes: int = Field(default=10, gt=0)
    #: Failed sign-ins of one account, from all sources (in 24 h), after
    #: which each check of it waits a growing delay (at most a minute).
    account_attempts: int = Field(default=20, gt=0)
    #: Argon2id computations run at once by a process (default: its cores);
    #: more are refused with 503 and Retry-After.
    password_hashing_slots: int | None = Field(default=None, gt=0, le=256)
    #: Reverse proxies (comma-separated addresses or CIDRs) whose
    #: X-Forwarded-For names the client; from any other peer it is ignored.
    trusted_proxies: str = ""
    #: Anonymous refusals from one source: the first of each window is an
    #: audit event at once, the rest are folded into one count at its end.
    refusal_window_seconds: int = Field(default=60, gt=0, le=3600)
    invitation_days: int = Field(default=7, gt=0)
    #: How long a mailed password-reset link works.
    password_reset_minutes: int = Field(default=30, gt=0, le=24 * 60)

    #: Recipients' one-time codes: lifetime, tries, resend interval, lock.
    recipient_code_minutes: int = Field(default=10, gt=0)
    recipient_code_attempts: int = Field(default=5, gt=0)
    recipient_code_resend_seconds: int = Field(default=60, gt=0)
    recipient_lock_minutes: int = Field(default=30, gt=0)
    #: Optional SMS gateway for recipients' codes: POST {"to", "text"} as JSON.
    sms_url: str | None = None
    sms_api_key: SecretStr | None = None

    #: Audit trail: days before event payloads are pruned (SEC-32), and how
    #: often a signed checkpoint is taken.
    audit_retention_days: int = Field(default=365, ge=30, le=3 * 366)
    audit_checkpoint_seconds: int = Field(default=60, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = os.environ.get("COFFRE_CONFIG", "coffre.toml")
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file))

    @model_validator(mode="after")
    def _check(self) -> Settings:
        try:
            for part in self.trusted_proxies.split(","):
                if part.strip():
                    ip_network(part.strip(), strict=False)
        except ValueError as error:
            raise ConfigurationError(f"COFFRE_TRUSTED_PROXIES: {error}") from error
        try:
            times.zone(self.timezone)
        except ValueError as error:
            raise ConfigurationError(f"COFFRE_TIMEZONE: {error}") from error
        if self.mode == "production":
            if not (self.public_url or "").startswith("https://"):
                raise ConfigurationError("production mode needs an https:// COFFRE_PUBLIC_URL")
            if self.smtp_host is None:
                raise ConfigurationError("production mode needs COFFRE_SMTP_HOST")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'coffre.db').resolve()}"

    @property
    def resolved_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        return (self.data_dir / "blobs").resolve().as_uri()

    @property
    def resolved_root_key_file(self) -> Path:
        return self.root_key_file or self.data_dir / "keys" / "root.key"

    @property
    def resolved_audit_witness_file(self) -> Path:
        return self.audit_witness_file or self.resolved_root_key_file.parent / (
            "audit-checkpoints.txt")

    @property
    def is_loopback(self) -> bool:
        return self.host in {"127.0.0.1", "::1", "localhost"}

    @property
    def host_names(self) -> frozenset[str]:
        """The ``Host`` names answered (DNS rebinding, issue 15 finding 14):
        the public URL's, the listener's unless it is a wildcard, loopback
        names when listening on loopback, and ``allowed_hosts``."""
        names = {urlsplit(self.base_url).hostname or ""}
        if self.host not in {"0.0.0.0", "::", ""}:  # noqa: S104 - wildcards name no host
            names.add(self.host)
        if self.is_loopback:
            names |= {"localhost", "127.0.0.1", "::1"}
        names |= {n.strip() for n in self.allowed_hosts.split(",") if n.strip()}
        return frozenset(n.lower() for n in names if n)

    @property
    def base_url(self) -> str:
        """Public base URL for links in mail (defaults to the listener)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
