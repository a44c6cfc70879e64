"""The orphan sweeper: shreds data keys nothing refers to, and removes
stored objects no live key opens.

Two kinds of leftovers, both from a write that failed or a process that
died half-way (or from older versions):

* **orphan keys** -- a ``blobs`` row holding a wrapped data key that no
  upload, transfer file or backup object refers to: a decryptable copy
  nobody owns. Its key is destroyed (crypto-shredding) and its object
  removed.
* **orphan objects** -- an object in the blob store (local files or S3,
  whole or in appended pieces) without a row holding its key: no row at
  all (a backup object whose row never committed), a shredded row whose
  delete failed, or a staged blob (``services.staging``) whose writer died.
  Already noise; removed to free the space.

Safe against work in flight: nothing written (object) or created (row)
within the grace period is touched, nor anything an upload refers to;
staged blobs whose object is still being written are spared. One audit
event per sweep (``storage.swept``) counts what was destroyed and names
each key and object (ids and storage keys, never content). On
PostgreSQL, one instance sweeps at a time (an advisory lock).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import exists, select, text
from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.db.engine import Database
from coffre.db.tables import BackupObject, Blob, TransferFile, Upload
from coffre.errors import CoffreError
from coffre.ports import BlobStore, Clock, Dated

log = logging.getLogger(__name__)

#: The PostgreSQL advisory lock key of the sweep (any fixed 64-bit number).
SWEEP_LOCK = 0x636F_6666_7377_6570
#: Storage keys looked up in the database at once.
BATCH = 500
#: Keys and objects named one by one in the audit event, at most (the
#: counts are always complete).
MAX_NAMED = 1000


@dataclass(frozen=True)
class OrphanKey:
    blob_id: str
    organisation_id: str
    storage_key: str


@dataclass
class SweepReport:
    grace_minutes: float
    dry_run: bool
    #: Objects listed in the store.
    scanned: int = 0
    #: Orphan objects and keys left alone: written within the grace period,
    #: or used by an upload being written.
    spared: int = 0
    #: Data keys shredded (rows that nothing referred to).
    keys: list[OrphanKey] = field(default_factory=list)
    #: Objects removed (storage keys).
    objects: list[str] = field(default_factory=list)
    #: Objects whose removal failed (retried by the next sweep).
    failed: int = 0
    #: False when another instance was sweeping: this one did nothing.
    ran: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "ran": self.ran, "dry_run": self.dry_run, "grace_minutes": self.grace_minutes,
            "scanned": self.scanned, "spared": self.spared,
            "keys_shredded": len(self.keys), "objects_removed": len(self.objects),
            "failed": self.failed,
            "keys": [{"blob": k.blob_id, "organisation": k.organisation_id,
                      "storage_key": k.storage_key} for k in self.keys],
            "objects": list(self.objects),
        }


@dataclass(frozen=True)
class _Row:
    id: str
    organisation_id: str
    live: bool  # holds a wrapped key
    shredded: bool
    created_at: datetime
    leased: bool  # an upload that refers to it is being written


@dataclass
class _Found:
    #: Objects without a live key, old enough: to remove.
    removals: list[str] = field(default_factory=list)
    #: Staged rows whose writer is gone (old row, old object): given up.
    stale_staged: set[str] = field(default_factory=set)
    #: Orphan keys whose object is still being written: spared this time.
    young_keys: set[str] = field(default_factory=set)
    #: Orphan keys with an object in the store (removed with the key).
    keys_with_object: set[str] = field(default_factory=set)


def _referenced() -> Any:
    """SQL: some row refers to the blob (upload, transfer file, backup object)."""
    return (
        exists().where(Upload.blob_id == Blob.id)
        | exists().where(TransferFile.blob_id == Blob.id)
        | exists().where(BackupObject.blob_id == Blob.id)
    )


class Sweeper:
    def __init__(self, db: Database, store: BlobStore, clock: Clock, *,
                 grace: timedelta) -> None:
        self.db = db
        self.store = store
        self.clock = clock
        self.grace = grace
        self._local = threading.Lock()

    def sweep(self, *, grace: timedelta | None = None, dry_run: bool = False,
              context: trail.Context | None = None, record_empty: bool = False,
              progress: Callable[[int], None] | None = None) -> SweepReport:
        """One sweep. ``grace``: spare what is younger (default: the
        setting). ``dry_run``: report only, change nothing, record nothing.
        ``record_empty``: record the event even if nothing was destroyed
        (an operator's sweep). ``progress`` is called with the number of
        objects listed so far."""
        grace = self.grace if grace is None else grace
        report = SweepReport(grace_minutes=grace.total_seconds() / 60, dry_run=dry_run)
        with self._exclusive() as acquired:
            if not acquired:
                report.ran = False
                return report
            cutoff = self.clock.now() - grace
            candidates = self._orphan_keys(cutoff)
            found = self._classify(cutoff, candidates, report, progress)
            for blob_id in found.young_keys:
                candidates.pop(blob_id, None)
            if dry_run:
                report.keys = list(candidates.values())
                report.objects = found.removals + [
                    k.storage_key for k in report.keys if k.blob_id in found.keys_with_object]
                return report
            report.keys = self._shred(candidates, found, cutoff, report, context, record_empty)
            for storage_key in report.objects:
                try:
                    self.store.delete(storage_key)
                except CoffreError as exc:
                    report.failed += 1
                    log.warning("sweep: could not remove an orphan object: %s", exc.message)
        if report.keys or report.objects:
            log.info("sweep: %d orphan keys shredded, %d orphan objects removed",
                     len(report.keys), len(report.objects))
        return report

    # -- steps ------------------------------------------------------------------

    def _orphan_keys(self, cutoff: datetime) -> dict[str, OrphanKey]:
        with self.db.session() as session:
            rows = session.execute(
                select(Blob.id, Blob.organisation_id, Blob.storage_key).where(
                    Blob.wrapped_key.is_not(None), Blob.created_at < cutoff, ~_referenced(),
                )
            ).all()
        return {r.id: OrphanKey(r.id, r.organisation_id, r.storage_key) for r in rows}

    def _classify(self, cutoff: datetime, candidates: dict[str, OrphanKey],
                  report: SweepReport, progress: Callable[[int], None] | None) -> _Found:
        """Walk the store and sort what it holds (see ``_Found``)."""
        found = _Found()
        listing = self._listing()
        while batch := list(islice(listing, BATCH)):
            rows = self._rows([key for key, _ in batch])
            for storage_key, modified in batch:
                report.scanned += 1
                row = rows.get(storage_key)
                if row is not None and row.live and row.id not in candidates:
                    continue  # in use
                if modified >= cutoff or (row is not None and row.leased):
                    report.spared += 1
                    if row is not None and row.id in candidates:
                        found.young_keys.add(row.id)
                    continue
                if row is not None and row.id in candidates:
                    found.keys_with_object.add(row.id)  # removed with its key
                    continue
                if row is not None and not row.shredded:  # staged, its writer gone
                    if row.created_at >= cutoff:
                        report.spared += 1
                        continue
                    found.stale_staged.add(row.id)
                found.removals.append(storage_key)
            if progress is not None:
                progress(report.scanned)
        return found

    def _listing(self) -> Iterator[tuple[str, datetime]]:
        if isinstance(self.store, Dated):
            return self.store.list_dated("")
        now = self.clock.now()  # no dates: every object counts as new
        return ((key, now) for key in self.store.list(""))

    def _rows(self, storage_keys: list[str]) -> dict[str, _Row]:
        now = self.clock.now()
        leased = exists().where(Upload.blob_id == Blob.id, Upload.lease_until > now)
        with self.db.session() as session:
            found = session.execute(
                select(Blob.storage_key, Blob.id, Blob.organisation_id,
                       Blob.wrapped_key.is_not(None), Blob.shredded_at.is_not(None),
                       Blob.created_at, leased)
                .where(Blob.storage_key.in_(storage_keys))
            ).all()
        return {r[0]: _Row(r[1], r[2], bool(r[3]), bool(r[4]), r[5], bool(r[6]))
                for r in found}

    def _shred(self, candidates: dict[str, OrphanKey], found: _Found, cutoff: datetime,
               report: SweepReport, context: trail.Context | None,
               record_empty: bool) -> list[OrphanKey]:
        """One transaction: destroy the orphan keys and give up the stale
        staged rows (each checked again under its row lock), and record
        the sweep. The objects are removed after the commit."""
        now = self.clock.now()
        shredded: list[OrphanKey] = []
        with self.db.session() as session:
            for orphan in candidates.values():
                blob = self._locked(session, orphan.blob_id)
                if blob is None or blob.wrapped_key is None or self._in_use(session, blob.id):
                    continue
                blob.wrapped_key = None
                blob.shredded_at = now
                shredded.append(orphan)
            kept = set(found.removals)
            for blob_id in found.stale_staged:
                blob = self._locked(session, blob_id)
                if blob is None:
                    continue
                if (blob.wrapped_key is not None or blob.created_at >= cutoff
                        or self._in_use(session, blob.id)):
                    kept.discard(blob.storage_key)  # adopted meanwhile: live
                    continue
                if blob.shredded_at is None:
                    blob.shredded_at = now
            report.objects = [key for key in found.removals if key in kept]
            report.objects += [k.storage_key for k in shredded
                               if k.blob_id in found.keys_with_object]
            if shredded or report.objects or record_empty:
                self._record(session, report, shredded, context)
        return shredded

    @staticmethod
    def _locked(session: Session, blob_id: str) -> Blob | None:
        return session.get(Blob, blob_id, with_for_update=True, populate_existing=True)

    @staticmethod
    def _in_use(session: Session, blob_id: str) -> bool:
        return any(session.execute(select(model.blob_id).where(model.blob_id == blob_id)
                                   .limit(1)).first() is not None
                   for model in (Upload, TransferFile, BackupObject))

    def _record(self, session: Session, report: SweepReport, shredded: list[OrphanKey],
                context: trail.Context | None) -> None:
        trail.record(
            session, "storage.swept", actor=None, organisation_id=None, context=context,
            grace_minutes=report.grace_minutes, scanned=report.scanned, spared=report.spared,
            keys_shredded=len(shredded), objects_removed=len(report.objects),
            keys=[{"blob": k.blob_id, "organisation": k.organisation_id}
                  for k in shredded[:MAX_NAMED]],
            objects=report.objects[:MAX_NAMED],
            truncated=len(shredded) > MAX_NAMED or len(report.objects) > MAX_NAMED,
        )

    @contextmanager
    def _exclusive(self) -> Iterator[bool]:
        """One sweep at a time: in this process, and across instances on
        PostgreSQL (a session advisory lock on a connection of its own,
        released if the process dies)."""
        if not self._local.acquire(blocking=False):
            yield False
            return
        try:
            if self.db.engine.dialect.name != "postgresql":
                yield True
                return
            with self.db.engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT") as lock:
                got = lock.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                   {"key": SWEEP_LOCK}).scalar()
                try:
                    yield bool(got)
                finally:
                    if got:
                        lock.execute(text("SELECT pg_advisory_unlock(:key)"),
                                     {"key": SWEEP_LOCK})
        finally:
            self._local.release()
