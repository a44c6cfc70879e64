"""Backups: devices, their restic repositories and credentials, and the
objects restic stores in them (the restic REST backend's use cases).

Each object is stored through the blob store as its own encrypted stream
(a fresh data key wrapped by the organisation's key, as for transferred
files): restic encrypted it on the client, Coffre encrypts it again at
rest, so neither a stolen disk nor a leaked bucket gives anything, and
destroying the organisation's keys destroys its backups too.

An object's quotas are checked from its length before its body is read
(``free_space``), then it is written in two short transactions around the
blob write: the first checks the name is free, the blob is written
outside any transaction, and the second re-checks the name and the
quotas under the organisation's and the repository's row locks before
the row appears. A
write refused at the second check deletes its blob: nothing half-written
is kept, and an object becomes visible only once durable.

Credentials are HTTP basic-auth pairs whose secret is stored as an
Argon2id hash. Argon2id is deliberately slow (tens of milliseconds) and
restic makes thousands of requests, so a verified secret is remembered by
this process as SHA-256(secret) next to the hash it matched; every request
still reads the credential's row, so revoking takes effect at once on
every instance.

Auditing is aggregated (a backup writes thousands of objects): a
credential's activity accumulates in a ``backup_sessions`` row, closed
into one ``backup.session`` event after a pause. Rare or alarming things
are recorded at once: a repository initialised, each snapshot written
(with the session's counts so far), and, within seconds (the scheduler
folds the counts in), the first refused delete of a session, the first
reach for another repository, the first use of a maintenance credential.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.crypto import credentials, stream
from coffre.db.engine import Database
from coffre.db.tables import (
    BackupCredential,
    BackupObject,
    BackupRepository,
    BackupSession,
    Blob,
    Organisation,
    User,
    new_id,
)
from coffre.domain import backups as rules
from coffre.domain.accounts import Actor
from coffre.domain.backups import Activity, CredentialKind, Operation, Space
from coffre.domain.limits import DEFAULT_BACKUP_ALERT_DAYS
from coffre.domain.policy import Action, Target, allowed, authorize
from coffre.errors import AuthenticationRequired, InvalidInput, NotFound, PermissionDenied
from coffre.ports import BlobStore, Clock
from coffre.services import blobs, messages
from coffre.services.keys import KeyRing
from coffre.services.mail import MailQueue
from coffre.services.quotas import Quotas
from coffre.services.throttle import Throttles, per_source

log = logging.getLogger(__name__)

#: Batch of 1 MiB segments fetched per store read when restic reads a pack.
READ_BATCH_SEGMENTS = 8
#: Verified secrets remembered by this process, at most.
VERIFIED_CACHE_SIZE = 10_000
THROTTLE_KIND = "backup"
MISSING = "repository not found"


@dataclass(frozen=True)
class Access:
    """An authenticated backup credential, and the one repository it opens."""

    credential_id: str
    kind: CredentialKind
    repository_id: str
    organisation_id: str


@dataclass(frozen=True)
class IssuedCredential:
    """Shown once: ``secret`` is never stored in clear."""

    repository_id: str
    username: str
    secret: str
    kind: CredentialKind
    #: The repository's URL, and the same with the credential in it, as
    #: restic takes it (``restic -r rest:...``).
    url: str
    restic_repository: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class DeviceView:
    id: str
    name: str
    owner_id: str
    owner_email: str
    url: str
    quota: int | None
    used_bytes: int
    object_count: int
    #: Objects per restic type (data, index, snapshots...), for status views.
    objects: dict[str, int]
    created_at: datetime
    initialised_at: datetime | None
    last_snapshot_at: datetime | None
    #: No snapshot for the organisation's alert period.
    stale: bool
    alert_days: int
    revoked_at: datetime | None


@dataclass(frozen=True)
class ObjectRead:
    """What ``open_object`` found: where its ciphertext is and how to open it."""

    size: int
    key: bytes
    storage_key: str
    stream_size: int
    associated_data: bytes


def _associated_data(repository_id: str, kind: str, name: str) -> bytes:
    """Binds each ciphertext to its place: one object's blob swapped under
    another's name fails authentication instead of being served."""
    return f"coffre/backup/{repository_id}/{kind}/{name}".encode()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class BackupService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        keys: KeyRing,
        mail: MailQueue,
        clock: Clock,
        throttles: Throttles,
        *,
        public_url: str,
        organisation_quota: int | None = None,
        alert_days: int = DEFAULT_BACKUP_ALERT_DAYS,
        session_idle: timedelta = timedelta(minutes=5),
    ) -> None:
        self.db = db
        self.store = store
        self.keys = keys
        self.mail = mail
        self.clock = clock
        self.throttles = throttles
        self.public_url = public_url.rstrip("/")
        self.organisation_quota = organisation_quota
        self.alert_days = alert_days
        self.session_idle = session_idle
        self._verified: dict[str, tuple[str, str]] = {}
        self._pending: dict[str, tuple[Access, trail.Context, Activity]] = {}
        self._lock = threading.Lock()

    # -- devices (people, through the API, the pages and the CLI) -------------

    def register_device(self, actor: Actor, name: str, quota: int | None,
                        ctx: trail.Context) -> tuple[DeviceView, IssuedCredential]:
        """A new repository for one device, and its append-only credential."""
        authorize(actor, Action.BACKUP_REGISTER)
        name = rules.device_name(name)
        if quota is not None and quota <= 0:
            raise InvalidInput("a repository quota is a positive number of bytes", field="quota")
        with self.db.session() as session:
            repo = BackupRepository(id=new_id(), organisation_id=actor.organisation_id,
                                    owner_id=actor.user_id, name=name, quota=quota,
                                    used_bytes=0, object_count=0, created_at=self.clock.now())
            session.add(repo)
            session.flush()
            issued = self._issue(session, repo, CredentialKind.DEVICE, actor.user_id, None)
            trail.record(session, "backup.device_registered", actor=actor.user_id,
                         organisation_id=actor.organisation_id, object_type="backup_repository",
                         object_id=repo.id, context=ctx, name=name, quota=quota,
                         credential=issued.username)
            return self._view(session, repo), issued

    def devices(self, actor: Actor) -> list[DeviceView]:
        """The caller's devices; an administrator's list has the organisation's."""
        authorize(actor, Action.BACKUP_LIST)
        with self.db.session() as session:
            query = select(BackupRepository).where(
                BackupRepository.organisation_id == actor.organisation_id
            ).order_by(BackupRepository.created_at)
            if not allowed(actor, Action.MEMBER_LIST):
                query = query.where(BackupRepository.owner_id == actor.user_id)
            return [self._view(session, repo) for repo in session.execute(query).scalars()]

    def device(self, actor: Actor, repository_id: str) -> DeviceView:
        with self.db.session() as session:
            repo = self._repository(session, actor, Action.BACKUP_READ, repository_id)
            return self._view(session, repo)

    def revoke_device(self, actor: Actor, repository_id: str, ctx: trail.Context) -> DeviceView:
        """End the device's access at once (its backups stay, for a restore
        with a maintenance credential)."""
        with self.db.session() as session:
            repo = self._repository(session, actor, Action.BACKUP_REVOKE, repository_id)
            now = self.clock.now()
            if repo.revoked_at is None:
                repo.revoked_at = now
                # Every credential alive now, maintenance ones included (one
                # may have been typed on the compromised device); a new
                # maintenance key can still be issued to restore.
                for cred in session.execute(select(BackupCredential).where(
                    BackupCredential.repository_id == repo.id,
                    BackupCredential.revoked_at.is_(None),
                )).scalars():
                    cred.revoked_at = now
                trail.record(session, "backup.device_revoked", actor=actor.user_id,
                             organisation_id=repo.organisation_id,
                             object_type="backup_repository", object_id=repo.id, context=ctx)
            return self._view(session, repo)

    def issue_maintenance_key(self, actor: Actor, repository_id: str, hours: float | None,
                              ctx: trail.Context) -> IssuedCredential:
        """A credential that may also delete (``restic forget --prune``),
        for a few hours: administrators only, after step-up."""
        lifetime = rules.maintenance_lifetime(hours)
        with self.db.session() as session:
            repo = self._repository(session, actor, Action.BACKUP_MAINTAIN, repository_id)
            expires = self.clock.now() + lifetime
            issued = self._issue(session, repo, CredentialKind.MAINTENANCE, actor.user_id,
                                 expires)
            trail.record(session, "backup.maintenance_key_issued", actor=actor.user_id,
                         organisation_id=repo.organisation_id, object_type="backup_repository",
                         object_id=repo.id, context=ctx, credential=issued.username,
                         expires_at=trail.utc_iso(expires))
            return issued

    def _repository(self, session: Session, actor: Actor, action: Action,
                    repository_id: str) -> BackupRepository:
        # Locked only to change it: a look at a device must not hold up
        # the restic writes that update its usage.
        repo = session.get(BackupRepository, repository_id,
                           with_for_update=action is not Action.BACKUP_READ)
        if repo is None:
            raise NotFound(MISSING)
        authorize(actor, action, Target(repo.organisation_id, repo.owner_id), missing=MISSING)
        return repo

    def _issue(self, session: Session, repo: BackupRepository, kind: CredentialKind,
               created_by: str, expires: datetime | None) -> IssuedCredential:
        secret = credentials.new_token()
        cred = BackupCredential(id=new_id(), repository_id=repo.id, kind=kind,
                                secret_hash=credentials.hash_password(secret),
                                created_by=created_by, created_at=self.clock.now(),
                                expires_at=expires)
        session.add(cred)
        url = self.repository_url(repo.id)
        scheme, _, rest = url.partition("://")
        return IssuedCredential(
            repository_id=repo.id, username=cred.id, secret=secret, kind=kind, url=url,
            restic_repository=f"rest:{scheme}://{cred.id}:{secret}@{rest}", expires_at=expires,
        )

    def repository_url(self, repository_id: str) -> str:
        return f"{self.public_url}/backup/{repository_id}/"

    def _view(self, session: Session, repo: BackupRepository) -> DeviceView:
        counts = dict(session.execute(
            select(BackupObject.kind, func.count()).where(
                BackupObject.repository_id == repo.id
            ).group_by(BackupObject.kind)
        ).all())
        owner = session.get(User, repo.owner_id)
        alert_days = self._alert_days(session, repo.organisation_id)
        return DeviceView(
            id=repo.id, name=repo.name, owner_id=repo.owner_id,
            owner_email=owner.email if owner else "", url=self.repository_url(repo.id),
            quota=repo.quota, used_bytes=repo.used_bytes, object_count=repo.object_count,
            objects={kind: int(counts.get(kind, 0)) for kind in rules.OBJECT_TYPES},
            created_at=repo.created_at, initialised_at=repo.initialised_at,
            last_snapshot_at=repo.last_snapshot_at,
            stale=repo.revoked_at is None and rules.stale(
                repo.last_snapshot_at, repo.created_at, self.clock.now(), alert_days),
            alert_days=alert_days, revoked_at=repo.revoked_at,
        )

    def _alert_days(self, session: Session, organisation_id: str) -> int:
        org = session.get(Organisation, organisation_id)
        return (org.backup_alert_days if org and org.backup_alert_days else self.alert_days)

    # -- restic (a device or maintenance credential) ---------------------------

    def authenticate(self, username: str, secret: str, source: str | None = None) -> Access:
        """The credential's access; 401 for anything wrong, all alike.

        Wrong secrets are throttled per (credential, source), counted once
        the secret was checked: a guesser elsewhere never locks the device
        out, and a matching secret is never throttled (parallel requests of
        a fresh process all pass). A 256-bit secret cannot be guessed: the
        throttle and the source's ceiling bound the Argon2id work."""
        digest = _digest(secret)
        with self.db.session() as session:
            cred = self._usable(session, username)
            if cred is not None and self._verified.get(cred.id) == (digest, cred.secret_hash):
                return self._access(cred)
        if cred is None:
            # An unknown (or revoked, expired) credential id: refused without
            # hashing anything, so that requests naming random ids cost no
            # Argon2id (ids are 128-bit random: knowing that one exists
            # gives nothing without its 256-bit secret).
            raise AuthenticationRequired("invalid backup credential", reason="backup_credential")
        # Not verified by this process yet: throttled and hashed (SEC-14),
        # a few at a time (each Argon2id takes 64 MiB and tens of ms).
        subject = per_source(username, source)
        with credentials.hashing_slot():
            self.throttles.check(THROTTLE_KIND, subject)
            self.throttles.sources.check(source)
            verified = credentials.verify_password(cred.secret_hash, secret)
        if not verified:
            self.throttles.failed(THROTTLE_KIND, subject)
            self.throttles.sources.failed(source)
            raise AuthenticationRequired("invalid backup credential", reason="backup_credential")
        with self.db.session() as session:
            self.throttles.succeeded(session, THROTTLE_KIND, subject)
            row = session.get(BackupCredential, cred.id)
            if row is not None:
                row.last_used_at = self.clock.now()
        with self._lock:
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.pop(next(iter(self._verified)))
            self._verified[cred.id] = (digest, cred.secret_hash)
        return self._access(cred)

    def _usable(self, session: Session, username: str) -> BackupCredential | None:
        if len(username) != 32 or not username.isalnum():
            return None
        cred = session.get(BackupCredential, username)
        now = self.clock.now()
        if cred is None or cred.revoked_at is not None:
            return None
        if cred.expires_at is not None and cred.expires_at <= now:
            return None
        if cred.kind == CredentialKind.DEVICE and cred.repository.revoked_at is not None:
            return None
        if cred.kind == CredentialKind.MAINTENANCE:
            # It may delete backups: only while whoever issued it is still
            # an administrator of the organisation.
            issuer = session.get(User, cred.created_by)
            if issuer is None or issuer.disabled or issuer.role != "admin" or (
                    issuer.organisation_id != cred.repository.organisation_id):
                return None
        session.expunge(cred)
        return cred

    @staticmethod
    def _access(cred: BackupCredential) -> Access:
        return Access(cred.id, CredentialKind(cred.kind), cred.repository_id,
                      cred.repository.organisation_id)

    def _check_repository(self, access: Access, repository_id: str, ctx: trail.Context) -> None:
        """A credential opens its own repository only: any other answers
        404, as if it did not exist, and counts as a refusal."""
        if repository_id != access.repository_id:
            self._note(access, ctx, Activity(denied=1))
            raise NotFound(MISSING)

    def initialise(self, access: Access, repository_id: str, ctx: trail.Context) -> None:
        """``POST /backup/{repo}/?create=true``: the type directories always
        exist, so this only records the moment (idempotent)."""
        self._check_repository(access, repository_id, ctx)

    def listing(self, access: Access, repository_id: str, kind: str,
                ctx: trail.Context) -> list[tuple[str, int]]:
        self._check_repository(access, repository_id, ctx)
        rules.check_type(kind)
        with self.db.session() as session:
            rows = session.execute(
                select(BackupObject.name, BackupObject.size).where(
                    BackupObject.repository_id == repository_id, BackupObject.kind == kind
                ).order_by(BackupObject.name)
            ).all()
        self._note(access, ctx, Activity(listed=1))
        return [(name, size) for name, size in rows]

    def open_object(self, access: Access, repository_id: str, kind: str, name: str,
                    ctx: trail.Context) -> ObjectRead:
        self._check_repository(access, repository_id, ctx)
        rules.check_object(kind, name)
        with self.db.session() as session:
            obj = self._object(session, repository_id, kind, name)
            return ObjectRead(
                size=obj.size, key=self.keys.blob_key(session, obj.blob),
                storage_key=obj.blob.storage_key, stream_size=obj.blob.ciphertext_size,
                associated_data=_associated_data(repository_id, kind, name),
            )

    def read(self, access: Access, found: ObjectRead, start: int, end: int,
             ctx: trail.Context) -> Iterator[stream.Chunk]:
        """The plaintext bytes ``[start, end)`` of an object (restic reads
        packs by ranges). Counted in the session when it is consumed."""

        sent = 0
        try:
            for chunk in blobs.plaintext(self.store, found.storage_key, found.key,
                                         found.stream_size, start, end, found.associated_data,
                                         batch_segments=READ_BATCH_SEGMENTS,
                                         read_ahead=end - start > 2 * stream.SEGMENT_SIZE):
                sent += len(chunk)
                yield chunk
        finally:  # a read abandoned half-way counts too, with what went out
            self._note(access, ctx, Activity(read=1, bytes_read=sent))

    def free_space(self, access: Access, repository_id: str, ctx: trail.Context) -> int | None:
        """Bytes the repository may still take (None: unlimited)."""
        self._check_repository(access, repository_id, ctx)
        with self.db.session() as session:
            repo = self._open_repository(session, repository_id)
            frees = [s.free for s in self._spaces(session, repo)]
        known = [f for f in frees if f is not None]
        return min(known) if known else None

    def _spaces(self, session: Session, repo: BackupRepository) -> list[Space]:
        org = session.get(Organisation, repo.organisation_id)
        org_limit = org.backup_quota if org and org.backup_quota else self.organisation_quota
        org_used = session.execute(
            select(func.coalesce(func.sum(BackupRepository.used_bytes), 0)).where(
                BackupRepository.organisation_id == repo.organisation_id
            )
        ).scalar_one()
        return [Space("repository", repo.used_bytes, repo.quota),
                Space("organisation", int(org_used), org_limit)]

    def write(self, access: Access, repository_id: str, kind: str, name: str,
              body: bytes | bytearray | memoryview, ctx: trail.Context) -> None:
        """Store one object: SHA-256 checked against its name, never over
        an existing one (403), within the quotas (507), durable when this
        returns. ``body`` is not kept: the caller may reuse its buffer."""
        self._check_repository(access, repository_id, ctx)
        rules.check_object(kind, name)
        digest = hashlib.sha256(body).hexdigest()
        if not rules.verifies(kind, name, digest):
            raise InvalidInput("the body's SHA-256 does not match the object's name")
        blob = Blob(id=new_id(), organisation_id=access.organisation_id)
        # The quotas were checked against the body's length before it was
        # read (``free_space``) and are checked again under the row locks
        # before the object appears: not a third time here.
        with self.db.session() as session:
            self._refuse_existing(session, repository_id, kind, name)
            data_key = self.keys.new_blob_key(session, blob)
        blob.storage_key = f"backups/{repository_id}/{blob.id}"
        # Encrypted segment by segment into the store: the ciphertext is
        # never held whole (a second copy of a 16 MiB pack per request).
        pieces = stream.encrypt_segments(data_key, body,
                                         _associated_data(repository_id, kind, name))
        blob.header = next(pieces)
        blob.plaintext_size, blob.sha256 = len(body), digest
        blob.ciphertext_size = self.store.put_stream(
            blob.storage_key, itertools.chain((blob.header,), pieces))
        try:
            self._record_write(access, repository_id, kind, name, blob, ctx)
        except BaseException:
            self._discard(blob.storage_key)
            raise

    def _record_write(self, access: Access, repository_id: str, kind: str, name: str,
                      blob: Blob, ctx: trail.Context) -> None:
        now = self.clock.now()
        with self.db.session() as session:
            Quotas.lock(session, access.organisation_id)
            repo = self._open_repository(session, repository_id, lock=True)
            self._refuse_existing(session, repository_id, kind, name)
            rules.check_space(blob.plaintext_size, *self._spaces(session, repo))
            blob.created_at = now
            session.add(blob)
            session.add(BackupObject(id=new_id(), repository_id=repository_id, kind=kind,
                                     name=name, size=blob.plaintext_size, blob_id=blob.id,
                                     created_at=now))
            repo.used_bytes += blob.plaintext_size
            repo.object_count += 1
            activity = Activity(written=1, bytes_written=blob.plaintext_size)
            if kind == rules.CONFIG and repo.initialised_at is None:
                repo.initialised_at = now
                trail.record(session, "backup.repository_initialised", actor=None,
                             organisation_id=repo.organisation_id,
                             object_type="backup_repository", object_id=repo.id, context=ctx,
                             credential=access.credential_id)
            if kind == "snapshots":
                repo.last_snapshot_at = now
                repo.alerted_at = None
                activity.snapshots = 1
            row = self._session_row(session, access, ctx, activity)
            if kind == "snapshots":
                trail.record(session, "backup.snapshot_written", actor=None,
                             organisation_id=repo.organisation_id,
                             object_type="backup_repository", object_id=repo.id, context=ctx,
                             snapshot=name, credential=access.credential_id,
                             backup_session=row.id, **_counts(row))

    def _open_repository(self, session: Session, repository_id: str, *,
                         lock: bool = False) -> BackupRepository:
        repo = session.get(BackupRepository, repository_id, with_for_update=lock)
        if repo is None:
            raise NotFound(MISSING)
        return repo

    @staticmethod
    def _object(session: Session, repository_id: str, kind: str, name: str) -> BackupObject:
        obj = session.execute(select(BackupObject).where(
            BackupObject.repository_id == repository_id, BackupObject.kind == kind,
            BackupObject.name == name,
        )).scalar_one_or_none()
        if obj is None:
            raise NotFound("no such object")
        return obj

    @staticmethod
    def _refuse_existing(session: Session, repository_id: str, kind: str, name: str) -> None:
        found = session.execute(select(BackupObject.id).where(
            BackupObject.repository_id == repository_id, BackupObject.kind == kind,
            BackupObject.name == name,
        )).first()
        if found is not None:
            raise PermissionDenied("this object exists already and is never overwritten",
                                   reason="exists")

    def _discard(self, storage_key: str) -> None:
        try:
            self.store.delete(storage_key)
        except Exception:  # noqa: BLE001 - its key was never recorded: it is noise
            log.warning("could not remove an unrecorded backup blob")

    def delete(self, access: Access, repository_id: str, kind: str, name: str,
               ctx: trail.Context) -> None:
        """Delete an object: only ``locks`` with a device credential
        (append-only), anything with a maintenance one."""
        self._check_repository(access, repository_id, ctx)
        rules.check_object(kind, name)
        try:
            rules.permit(access.kind, Operation.DELETE, kind)
        except PermissionDenied:
            self._note(access, ctx, Activity(refused=1))
            raise
        with self.db.session() as session:
            repo = self._open_repository(session, repository_id, lock=True)
            obj = self._object(session, repository_id, kind, name)
            storage_key = obj.blob.storage_key
            repo.used_bytes -= obj.size
            repo.object_count -= 1
            blob_id = obj.blob_id
            session.delete(obj)
            session.flush()
            # The row held the only wrapped copy of the data key: the
            # ciphertext is noise from the commit on (crypto-shredding).
            session.execute(delete(Blob).where(Blob.id == blob_id))
            row = self._session_row(session, access, ctx, Activity(deleted=1))
            if kind in {"snapshots", "keys", rules.CONFIG}:
                # Erasing history (a snapshot) or access (a key): one event
                # each; the data packs a prune removes are counted.
                trail.record(session, "backup.object_deleted", actor=None,
                             organisation_id=repo.organisation_id,
                             object_type="backup_repository", object_id=repo.id, context=ctx,
                             type=kind, name=name, credential=access.credential_id,
                             kind=str(access.kind), backup_session=row.id)
        self._discard(storage_key)

    # -- aggregated activity ----------------------------------------------------

    def note_dropped(self, access: Access, ctx: trail.Context) -> None:
        """A body of this credential was dropped before it was stored
        (counted in its session; the first one is audited at once)."""
        self._note(access, ctx, Activity(dropped=1))

    def _note(self, access: Access, ctx: trail.Context, activity: Activity) -> None:
        """Count reads, listings and refusals in memory (no database write
        per GET); ``flush_activity`` folds them into the session rows."""
        with self._lock:
            entry = self._pending.get(access.credential_id)
            if entry is None:
                self._pending[access.credential_id] = (access, ctx, activity)
            else:
                entry[2].add(activity)

    def flush_activity(self) -> int:
        """Fold the counts noted in memory into the sessions' rows."""
        with self._lock:
            pending, self._pending = self._pending, {}
        entries = list(pending.values())
        for done, (access, ctx, activity) in enumerate(entries):
            try:
                with self.db.session() as session:
                    self._session_row(session, access, ctx, activity)
            except Exception:
                for left in entries[done:]:  # kept for the next flush
                    self._note(*left)
                raise
        return len(entries)

    def _session_row(self, session: Session, access: Access, ctx: trail.Context,
                     activity: Activity) -> BackupSession:
        """The credential's open session (one is opened after a pause),
        with ``activity`` added."""
        now = self.clock.now()
        row = session.execute(
            select(BackupSession).where(
                BackupSession.credential_id == access.credential_id,
                BackupSession.closed_at.is_(None),
                BackupSession.last_at >= now - self.session_idle,
            ).order_by(BackupSession.last_at.desc()).limit(1).with_for_update()
        ).scalar_one_or_none()
        if row is None:
            row = BackupSession(
                id=new_id(), repository_id=access.repository_id,
                credential_id=access.credential_id, source=ctx.source,
                user_agent=(ctx.user_agent or "")[:300] or None, started_at=now, last_at=now,
                **dict.fromkeys(rules.COUNTERS, 0),
            )
            session.add(row)
            if access.kind is CredentialKind.MAINTENANCE:
                self._event(session, access, "backup.maintenance_used", ctx, row)
        if activity.refused and not row.refused:
            # The first refusal of a session at once: ransomware trying to
            # erase the history is worth an alert before the session ends.
            self._event(session, access, "backup.delete_refused", ctx, row, outcome="failure")
        if activity.denied and not row.denied:
            # Likewise a credential reaching for another repository.
            self._event(session, access, "backup.access_denied", ctx, row, outcome="failure")
        if activity.dropped and not row.dropped:
            # And a body dropped (stalled, too many at once, no memory
            # left): a device stalling bodies on purpose shows at once.
            self._event(session, access, "backup.body_dropped", ctx, row, outcome="failure")
        row.last_at = now
        rules.add_counts(row, activity)
        return row

    @staticmethod
    def _event(session: Session, access: Access, action: str, ctx: trail.Context,
               row: BackupSession, outcome: str = "success") -> None:
        trail.record(session, action, actor=None, organisation_id=access.organisation_id,
                     object_type="backup_repository", object_id=access.repository_id,
                     outcome=outcome, context=ctx, credential=access.credential_id,
                     kind=str(access.kind), backup_session=row.id)

    def close_idle_sessions(self, limit: int = 200) -> int:
        """One ``backup.session`` event per session that has paused for
        the idle period (each instance may run this: rows are claimed)."""
        self.flush_activity()
        cutoff = self.clock.now() - self.session_idle
        with self.db.session() as session:
            rows = session.execute(
                select(BackupSession).where(BackupSession.closed_at.is_(None),
                                            BackupSession.last_at < cutoff)
                .order_by(BackupSession.last_at).limit(limit)
                .with_for_update(skip_locked=True)
            ).scalars().all()
            for row in rows:
                cred = session.get(BackupCredential, row.credential_id)
                repo = session.get(BackupRepository, row.repository_id)
                trail.record(
                    session, "backup.session", actor=None,
                    organisation_id=repo.organisation_id if repo else None,
                    object_type="backup_repository", object_id=row.repository_id,
                    context=trail.Context(row.source, row.user_agent),
                    credential=row.credential_id, kind=cred.kind if cred else None,
                    started_at=trail.utc_iso(row.started_at),
                    ended_at=trail.utc_iso(row.last_at), **_counts(row),
                )
                row.closed_at = self.clock.now()
            return len(rows)

    # -- alerts ----------------------------------------------------------------

    def alert_stale(self) -> int:
        """Mail each owner whose repository has had no snapshot for the
        alert period (again every period while it lasts)."""
        now = self.clock.now()
        sent = 0
        with self.db.session() as session:
            repos = session.execute(
                select(BackupRepository).where(BackupRepository.revoked_at.is_(None))
                .with_for_update(skip_locked=True)
            ).scalars().all()
            for repo in repos:
                days = self._alert_days(session, repo.organisation_id)
                if not rules.stale(repo.last_snapshot_at, repo.created_at, now, days):
                    continue
                if repo.alerted_at is not None and now - repo.alerted_at < timedelta(days=days):
                    continue
                owner = session.get(User, repo.owner_id)
                if owner is None or owner.disabled:
                    continue
                repo.alerted_at = now
                self.mail.enqueue(session, repo.organisation_id, messages.backup_stale(
                    to=owner.email, device=repo.name, days=days,
                    last=repo.last_snapshot_at, link=f"{self.public_url}/backups"))
                trail.record(session, "backup.stale_alerted", actor=None,
                             organisation_id=repo.organisation_id,
                             object_type="backup_repository", object_id=repo.id, days=days)
                sent += 1
        return sent


def _counts(row: BackupSession) -> dict[str, Any]:
    return {"objects_written": row.written, "bytes_written": row.bytes_written,
            "snapshots": row.snapshots, "objects_read": row.read, "bytes_read": row.bytes_read,
            "listings": row.listed, "objects_deleted": row.deleted,
            "deletes_refused": row.refused, "access_denied": row.denied,
            "bodies_dropped": row.dropped}
