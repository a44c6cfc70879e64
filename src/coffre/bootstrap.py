"""The composition root: settings -> adapters -> services.

Nothing else builds adapters; the HTTP app, the jobs and the server-side
CLI commands receive a ``Coffre`` from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from coffre.audit.log import AuditLog
from coffre.audit.witness import WitnessFile
from coffre.clock import SystemClock
from coffre.crypto import credentials
from coffre.crypto.keyfile import KeyFileProvider, RootKeyProvider, decode_secret
from coffre.crypto.signing import SigningKey, SigningKeyFile
from coffre.db.engine import Database
from coffre.db.migrate import upgrade
from coffre.domain import times
from coffre.domain.limits import InstanceLimits
from coffre.notify.live import InProcessEvents, events_for
from coffre.notify.mailbox import DevMailbox
from coffre.notify.sms import HttpSmsSender
from coffre.notify.smtp import SmtpMailer
from coffre.ports import BlobStore, Clock, EventBus, KeyProvider, Located, Mailer, SmsSender
from coffre.services.accounts import AccountService
from coffre.services.backups import BackupService
from coffre.services.contacts import ContactService
from coffre.services.denials import DenialLog
from coffre.services.deposits import DepositService
from coffre.services.factors import FactorService
from coffre.services.keys import KeyRing
from coffre.services.links import LinkService
from coffre.services.mail import MailQueue
from coffre.services.organisations import OrganisationService
from coffre.services.passwords import PasswordService
from coffre.services.quotas import Quotas
from coffre.services.requests import RequestService
from coffre.services.sessions import SessionService
from coffre.services.sweeper import Sweeper
from coffre.services.throttle import Throttles
from coffre.services.tracking import TrackingService
from coffre.services.transfers import TransferService
from coffre.services.uploads import UploadService
from coffre.services.verification import RecipientVerification
from coffre.settings import Settings
from coffre.storage import open_blob_store


@dataclass
class Coffre:
    settings: Settings
    db: Database
    store: BlobStore
    provider: KeyProvider
    keys: KeyRing
    clock: Clock
    mailer: Mailer
    dev_mailbox: DevMailbox | None
    mail: MailQueue
    accounts: AccountService
    factors: FactorService
    sessions: SessionService
    uploads: UploadService
    quotas: Quotas
    transfers: TransferService
    links: LinkService
    denials: DenialLog
    #: Failed-attempt throttles and per-source limits (purged by a job).
    throttles: Throttles
    #: Recipients' one-time codes, and the SMS provider if one is configured.
    codes: RecipientVerification
    sms: SmsSender | None
    tracking: TrackingService
    requests: RequestService
    deposits: DepositService
    organisations: OrganisationService
    audit: AuditLog
    contacts: ContactService
    backups: BackupService
    #: Shreds orphan keys and removes orphan objects (``coffre storage sweep``).
    sweeper: Sweeper
    #: Password change, forgotten-password and forced resets.
    passwords: PasswordService
    #: Wakes live streams (in-process, or LISTEN/NOTIFY across instances).
    events: EventBus = field(default_factory=InProcessEvents)

    def close(self) -> None:
        self.events.close()
        self.db.dispose()


def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    mailer: Mailer | None = None,
    migrate: bool = True,
    sms: SmsSender | None = None,
    adopt: bool = True,
) -> Coffre:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    times.use_zone(settings.timezone)
    clock = clock or SystemClock()
    db_url = settings.resolved_database_url
    if migrate:
        upgrade(db_url)
    db = Database(db_url)
    store = open_blob_store(settings.resolved_storage_url)
    provider, signing_key = _keys(settings)
    keys = KeyRing(provider)
    dev_mailbox = None
    if mailer is None:
        if settings.smtp_host:
            mailer = SmtpMailer(
                settings.smtp_host,
                settings.smtp_port,
                settings.mail_from,
                username=settings.smtp_username,
                password=settings.smtp_password.get_secret_value()
                if settings.smtp_password
                else None,
                tls=settings.smtp_tls,
            )
        else:
            dev_mailbox = DevMailbox(settings.data_dir / "mailbox", provider)
            mailer = dev_mailbox
    mail = MailQueue(db, keys, mailer, clock)
    if sms is None and settings.sms_url:
        sms = HttpSmsSender(
            settings.sms_url,
            settings.sms_api_key.get_secret_value() if settings.sms_api_key else None,
        )
    codes = RecipientVerification(
        db, keys, mail, clock, sms,
        code_lifetime=timedelta(minutes=settings.recipient_code_minutes),
        attempts=settings.recipient_code_attempts,
        resend_interval=timedelta(seconds=settings.recipient_code_resend_seconds),
        lock_time=timedelta(minutes=settings.recipient_lock_minutes),
    )
    throttles = Throttles(db, clock, max_failures=settings.login_attempts,
                          lockout=timedelta(minutes=settings.lockout_minutes),
                          source_attempts=settings.source_attempts,
                          source_window=timedelta(minutes=settings.source_window_minutes),
                          account_attempts=settings.account_attempts)
    credentials.configure_hashing(settings.password_hashing_slots)
    accounts = AccountService(db, keys, clock, throttles, mail=mail)
    denials = DenialLog(db, clock, window=timedelta(seconds=settings.refusal_window_seconds))
    factors = FactorService(db, keys, mail, clock, base_url=settings.base_url)
    quotas = Quotas(db, InstanceLimits(
        max_file_size=settings.max_file_size,
        default_expiry_days=settings.default_expiry_days,
        max_expiry_days=settings.max_expiry_days,
        max_recipients=settings.max_recipients,
        user_quota=settings.user_quota,
        organisation_quota=settings.organisation_quota,
        backup_quota=settings.backup_quota,
        backup_alert_days=settings.backup_alert_days,
    ), storage_location=store.location if isinstance(store, Located) else None)
    transfers = TransferService(
        db,
        store,
        keys,
        mail,
        clock,
        public_url=settings.base_url,
        max_expiry=timedelta(days=settings.max_expiry_days),
        sms_enabled=sms is not None,
        quotas=quotas,
    )
    uploads = UploadService(
        db,
        store,
        keys,
        clock,
        max_size=settings.max_file_size,
        expiry=timedelta(hours=settings.upload_expiry_hours),
        single_instance=db.url.startswith("sqlite"),
        quotas=quotas,
    )
    app = Coffre(
        settings=settings,
        db=db,
        store=store,
        provider=provider,
        keys=keys,
        clock=clock,
        mailer=mailer,
        dev_mailbox=dev_mailbox,
        mail=mail,
        accounts=accounts,
        factors=factors,
        quotas=quotas,
        sessions=SessionService(
            db, accounts, factors, throttles, clock,
            idle=timedelta(minutes=settings.session_idle_minutes),
            absolute=timedelta(hours=settings.session_absolute_hours),
            step_up=timedelta(minutes=settings.step_up_minutes),
        ),
        uploads=uploads,
        transfers=transfers,
        denials=denials,
        throttles=throttles,
        links=LinkService(
            db, store, keys, transfers, clock, codes, throttles,
            password_attempts=settings.link_password_attempts,
            claim_lifetime=timedelta(seconds=settings.download_claim_seconds),
        ),
        codes=codes,
        sms=sms,
        tracking=TrackingService(db, clock),
        requests=RequestService(db, store, keys, mail, clock, uploads, transfers, codes,
                                public_url=settings.base_url),
        deposits=DepositService(db, keys, mail, clock, uploads, codes,
                                public_url=settings.base_url,
                                joins_per_source=settings.deposit_joins_per_source,
                                codes_per_address=settings.deposit_codes_per_address),
        organisations=OrganisationService(
            db,
            mail,
            clock,
            public_url=settings.base_url,
            invitation_lifetime=timedelta(days=settings.invitation_days),
            quotas=quotas,
        ),
        audit=AuditLog(
            db,
            signing_key,
            clock,
            origin=f"{urlsplit(settings.base_url).netloc}/coffre/audit",
            retention=timedelta(days=settings.audit_retention_days),
            witness=WitnessFile(settings.resolved_audit_witness_file),
        ),
        contacts=ContactService(db, keys, clock, sms_enabled=sms is not None),
        backups=BackupService(
            db, store, keys, mail, clock, throttles,
            public_url=settings.base_url,
            organisation_quota=settings.backup_quota,
            alert_days=settings.backup_alert_days,
            session_idle=timedelta(seconds=settings.backup_session_idle_seconds),
        ),
        sweeper=Sweeper(db, store, clock,
                        grace=timedelta(minutes=settings.sweep_grace_minutes)),
        events=events_for(db),
        passwords=PasswordService(
            db, accounts, mail, clock, throttles, public_url=settings.base_url,
            lifetime=timedelta(minutes=settings.password_reset_minutes), denials=denials,
        ),
    )
    if adopt:
        # A trail from before seals (migration 0008) is sealed once, at the
        # first start, decided by the seal marker outside the database (never
        # by `coffre audit` commands, which build with ``adopt=False``).
        app.audit.adopt_legacy()
    return app


def _keys(settings: Settings) -> tuple[KeyProvider, SigningKey]:
    """The root key and the audit signing key: files in the key directory
    (created at first start), or secrets in the environment shared by
    stateless instances (``COFFRE_ROOT_KEY``, ``COFFRE_AUDIT_SIGNING_KEY``)."""
    signing_seed = (decode_secret(settings.audit_signing_key.get_secret_value(),
                                  "COFFRE_AUDIT_SIGNING_KEY")
                    if settings.audit_signing_key is not None else None)
    if settings.root_key is not None:
        provider = RootKeyProvider(decode_secret(settings.root_key.get_secret_value(),
                                                 "COFFRE_ROOT_KEY"))
        return provider, SigningKey(signing_seed or provider.audit_signing_seed())
    provider = KeyFileProvider(settings.resolved_root_key_file)
    if signing_seed is not None:
        return provider, SigningKey(signing_seed)
    return provider, SigningKeyFile(settings.resolved_root_key_file.parent / "audit-signing.key")
