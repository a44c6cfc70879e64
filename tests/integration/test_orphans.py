"""Orphan blobs and keys (issue 15, finding 6), against a real server and
its data directory, on both profiles (local files or SeaweedFS).

* A re-key that loses its compare-and-set (the upload terminated while it
  re-encrypts) or fails half-way leaves no decryptable copy behind: no
  ``blobs`` row with a live key that nothing refers to, no stored copy.
  Same for the copy made when forwarding a transfer.
* The sweeper (``Sweeper.sweep``, the scheduled job, ``coffre storage
  sweep``) shreds planted orphan keys and removes planted orphan objects
  (no row, shredded row, staged row of a dead writer), spares what is
  younger than its grace period and what uploads use, and records one
  audit event per sweep naming what it destroyed, never content.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from coffre.audit.trail import Context
from coffre.crypto import stream
from coffre.db.tables import Blob, new_id
from coffre.errors import Conflict, StorageError
from coffre.services.transfers import NewTransfer
from tests import backends
from tests.conftest import Server
from tests.integration.flows import TUS, audit_events, make_transfer, sql, upload_bytes
from tests.integration.support import blob_files, in_process, module_server

mail, server, token, client, admin = module_server("orphans")

MiB = 1 << 20
OCTETS = "application/offset+octet-stream"
CANARY = b"CANARY-orphan-content-" + os.urandom(8).hex().encode()

UNREFERENCED_KEYS = (
    "SELECT id FROM blobs b WHERE wrapped_key IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.blob_id = b.id)"
    " AND NOT EXISTS (SELECT 1 FROM transfer_files f WHERE f.blob_id = b.id)"
    " AND NOT EXISTS (SELECT 1 FROM backup_objects o WHERE o.blob_id = b.id)"
)


def unreferenced_keys(srv: Server) -> set[str]:
    """Blob rows holding a data key that nothing refers to: decryptable orphans."""
    return {row[0] for row in sql(srv.data_dir, UNREFERENCED_KEYS)}


@pytest.fixture
def app(server: Server) -> Iterator[Any]:
    coffre = in_process(server)
    try:
        yield coffre
    finally:
        coffre.close()


class Hooked:
    """The store, with a hook run once a new blob (``open_append`` at
    offset 0: a re-key's or a copy's) is written and committed, and
    optional failures while it is written."""

    def __init__(self, inner: Any, on_written: Any = None, fail_reads: bool = False,
                 fail_commit: bool = False) -> None:
        self.inner = inner
        self.on_written = on_written
        self.fail_reads = fail_reads
        self.fail_commit = fail_commit
        self.created: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def open_append(self, key: str, offset: int) -> Any:
        appender = self.inner.open_append(key, offset)
        if offset == 0:
            self.created.append(key)
            commit = appender.commit

            def hooked_commit() -> int:
                if self.fail_commit:
                    raise StorageError("storage unreachable (test)")
                size = commit()
                if self.on_written is not None:
                    self.on_written(key)
                return int(size)
            appender.commit = hooked_commit
        return appender

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if self.fail_reads and self.created:
            raise StorageError("storage unreachable (test)")
        return self.inner.read(key, offset, length)


def partial_upload(c: httpx.Client, srv: Server, size: int, sent: int) -> tuple[str, str]:
    """An upload of ``size`` bytes with ``sent`` received, whose writer left
    reservations past its committed segments (as after a crash or a
    checksum mismatch): the next writer must re-key. Returns (url, id)."""
    created = c.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": str(size)})
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    patched = c.patch(url, content=CANARY + os.urandom(sent - len(CANARY)), headers={
        **TUS, "Upload-Offset": "0", "Content-Type": OCTETS})
    assert patched.status_code == 204, patched.text
    upload_id = url.rstrip("/").rsplit("/", 1)[-1]
    sql(srv.data_dir, "UPDATE uploads SET segments_reserved = segments_committed + 3 "
        "WHERE id = ?", upload_id)
    return url, upload_id


def blob_of(srv: Server, upload_id: str) -> str:
    return str(sql(srv.data_dir, "SELECT blob_id FROM uploads WHERE id = ?", upload_id)[0][0])


# -- re-keys and copies leave nothing decryptable behind -------------------------------


def test_terminate_during_rekey_leaves_no_decryptable_copy(
        server: Server, client: httpx.Client, token: str, app: Any) -> None:
    url, upload_id = partial_upload(client, server, 8 * MiB, 2 * MiB + 1000)
    before = unreferenced_keys(server)
    terminated: list[int] = []

    def terminate(_key: str) -> None:
        # Another request (through the real server) deletes the upload
        # once this writer has re-encrypted it, before its compare-and-set.
        terminated.append(client.delete(url, headers=TUS).status_code)

    hooked = Hooked(app.store, on_written=terminate)
    app.uploads.store = hooked
    actor = app.accounts.actor_for_token(token)
    with pytest.raises(Conflict):
        app.uploads.begin_append(actor, upload_id, 2 * MiB + 1000)
    assert terminated == [204]
    assert len(hooked.created) == 1
    copy_id = hooked.created[0].rsplit("/", 1)[1]
    # The compare-and-set lost: the copy's key was never stored, its object is gone.
    assert unreferenced_keys(server) == before
    assert sql(server.data_dir, "SELECT wrapped_key IS NULL, shredded_at IS NOT NULL "
               "FROM blobs WHERE id = ?", copy_id) == [(1, 1)]
    assert copy_id not in blob_files(server)
    assert not app.store.exists(hooked.created[0])


def test_failed_rekey_leaves_no_decryptable_copy(
        server: Server, client: httpx.Client, token: str, app: Any) -> None:
    url, upload_id = partial_upload(client, server, 8 * MiB, 2 * MiB + 1000)
    before = unreferenced_keys(server)
    old_blob = blob_of(server, upload_id)
    hooked = Hooked(app.store, fail_reads=True)
    app.uploads.store = hooked
    actor = app.accounts.actor_for_token(token)
    with pytest.raises(StorageError):
        app.uploads.begin_append(actor, upload_id, 2 * MiB + 1000)
    copy_id = hooked.created[0].rsplit("/", 1)[1]
    assert unreferenced_keys(server) == before
    assert copy_id not in blob_files(server)
    # The upload is intact and resumes (re-keying for real this time).
    assert blob_of(server, upload_id) == old_blob
    app.uploads.store = hooked.inner
    # The in-process writer's lease (it gave up) would hold the server off
    # for its 30 seconds on PostgreSQL.
    sql(server.data_dir, "UPDATE uploads SET lease_owner = NULL, lease_until = NULL "
        "WHERE id = ?", upload_id)
    rest = os.urandom(8 * MiB - (2 * MiB + 1000))
    done = client.patch(url, content=rest, headers={
        **TUS, "Upload-Offset": str(2 * MiB + 1000), "Content-Type": OCTETS})
    assert done.status_code == 204, done.text
    assert blob_of(server, upload_id) != old_blob
    assert unreferenced_keys(server) == before


def test_failed_forward_copy_leaves_no_decryptable_copy(
        server: Server, client: httpx.Client, token: str, app: Any) -> None:
    transfer = make_transfer(client, {"compte-rendu.pdf": CANARY * 1000},
                             ["confrere@exemple.fr"])
    before = unreferenced_keys(server)
    hooked = Hooked(app.store, fail_commit=True)
    app.requests.store = hooked
    actor = app.accounts.actor_for_token(token)
    with pytest.raises(StorageError):
        app.requests.forward(actor, transfer["id"],
                             NewTransfer(upload_ids=[], recipients=["autre@exemple.fr"]),
                             Context(source="test"))
    copy_id = hooked.created[0].rsplit("/", 1)[1]
    assert unreferenced_keys(server) == before
    assert sql(server.data_dir, "SELECT wrapped_key IS NULL FROM blobs WHERE id = ?",
               copy_id) == [(1,)]
    assert copy_id not in blob_files(server)


# -- the sweeper ---------------------------------------------------------------------


def plant_key(app: Any, *, created: datetime | None = None, with_object: bool = True) -> Blob:
    """A blob row with a live data key that nothing refers to (what a
    failed re-key used to leave), with its stored object."""
    org = sql_org(app)
    with app.db.session() as session:
        blob = Blob(id=new_id(), organisation_id=org)
        blob.storage_key = f"blobs/{blob.id[:2]}/{blob.id}"
        blob.header = stream.StreamHeader.random().to_bytes()
        app.keys.new_blob_key(session, blob)
        if created is not None:
            blob.created_at = created
        session.add(blob)
    if with_object:
        app.store.put(blob.storage_key, blob.header + CANARY)
    return blob


def plant_staged(app: Any, *, created: datetime | None = None) -> Blob:
    """A staged blob (row without key, nothing refers to it) whose writer died."""
    blob = plant_key(app, created=created)
    with app.db.session() as session:
        row = session.get(Blob, blob.id)
        row.wrapped_key = None
    return blob


def plant_object(app: Any, prefix: str = "blobs") -> str:
    """An object without any row (a write that crashed before its row committed)."""
    name = new_id()
    key = f"{prefix}/{name[:2]}/{name}" if prefix == "blobs" else f"{prefix}/{new_id()}/{name}"
    app.store.put(key, os.urandom(64) + CANARY)
    return key


def sql_org(app: Any) -> str:
    with app.db.session() as session:
        return str(session.execute(text("SELECT id FROM organisations ORDER BY created_at"))
                   .scalars().first())


def swept_events(srv: Server) -> list[dict[str, Any]]:
    return audit_events(srv.data_dir, "storage.swept")


def test_sweeper_removes_orphans_spares_young_and_live(
        server: Server, client: httpx.Client, app: Any) -> None:
    # Live data: a finished upload in a transfer, an upload in progress.
    transfer = make_transfer(client, {"irm.dcm": os.urandom(300_000)}, ["x@exemple.fr"])
    live_upload = upload_bytes(client, os.urandom(2 * MiB), "en-cours.bin")
    live_blobs = {blob_of(server, live_upload)} | {
        row[0] for row in sql(server.data_dir, "SELECT blob_id FROM transfer_files "
                              "WHERE transfer_id = ?", transfer["id"])}

    # Old orphans: a live key nobody refers to (with and without its object),
    # objects without rows (a blob, a backup object), a staged blob of a dead
    # writer, and a shredded blob whose object survived.
    old_key = plant_key(app)
    old_key_alone = plant_key(app, with_object=False)
    old_staged = plant_staged(app)
    old_object = plant_object(app)
    old_backup = plant_object(app, "backups")
    shredded = plant_key(app)
    sql(server.data_dir, "UPDATE blobs SET wrapped_key = NULL, shredded_at = ? WHERE id = ?",
        datetime.now(UTC), shredded.id)
    # SeaweedFS dates objects to the second: a clear gap between old and young.
    time.sleep(2.5)
    cutoff = datetime.now(UTC)
    time.sleep(1.5)
    young_key = plant_key(app)
    young_staged = plant_staged(app)
    young_object = plant_object(app)

    seen_before = len(swept_events(server))
    grace = datetime.now(UTC) - cutoff
    report = app.sweeper.sweep(grace=grace, context=Context(source="test"))

    shredded_ids = {k.blob_id for k in report.keys}
    assert {old_key.id, old_key_alone.id} <= shredded_ids
    assert {old_key.storage_key, old_staged.storage_key, old_object, old_backup,
            shredded.storage_key} <= set(report.objects)
    assert old_key_alone.storage_key not in report.objects  # it had no object
    assert not {young_key.id} & shredded_ids
    for gone in report.objects:
        assert not app.store.exists(gone)
    for kept in (young_key.storage_key, young_staged.storage_key, young_object):
        assert app.store.exists(kept)
    assert report.spared >= 2 and report.failed == 0  # the young staged blob and object
    assert young_key.id in unreferenced_keys(server)
    assert not {old_key.id, old_key_alone.id} & unreferenced_keys(server)
    assert sql(server.data_dir, "SELECT shredded_at IS NOT NULL FROM blobs WHERE id = ?",
               old_staged.id) == [(1,)]
    assert sql(server.data_dir, "SELECT shredded_at IS NULL FROM blobs WHERE id = ?",
               young_staged.id) == [(1,)]
    # Live data untouched: still readable through the real server.
    assert not live_blobs & shredded_ids
    assert live_blobs <= blob_files(server)
    head = client.head(f"/api/v1/uploads/{live_upload}", headers=TUS)
    assert head.status_code == 200 and head.headers["upload-offset"] == str(2 * MiB)

    events = swept_events(server)
    assert len(events) == seen_before + 1
    event = events[-1]
    assert event["organisation"] is None and event["actor"] is None
    assert event["source"] == "test"
    details = event["details"]
    assert details["keys_shredded"] == len(report.keys)
    assert details["objects_removed"] == len(report.objects)
    assert {k["blob"] for k in details["keys"]} == shredded_ids
    assert set(details["objects"]) == set(report.objects)
    assert CANARY.decode() not in json.dumps(event)

    # A second sweep finds nothing more, and records nothing (the job's way).
    again = app.sweeper.sweep(grace=datetime.now(UTC) - cutoff)  # the same cutoff
    assert not again.keys and not again.objects
    assert len(swept_events(server)) == seen_before + 1


def test_sweeper_spares_blobs_an_active_upload_uses(
        server: Server, client: httpx.Client, app: Any) -> None:
    """A key-less object of an upload being written (its lease is live) is never removed."""
    _url, upload_id = partial_upload(client, server, 8 * MiB, MiB + 10)
    blob_id = blob_of(server, upload_id)
    sql(server.data_dir, "UPDATE uploads SET lease_owner = 'elsewhere', lease_until = ? "
        "WHERE id = ?", datetime.now(UTC) + timedelta(minutes=5), upload_id)
    sql(server.data_dir, "UPDATE blobs SET wrapped_key = NULL WHERE id = ?", blob_id)
    report = app.sweeper.sweep(grace=timedelta(0), dry_run=True)
    assert not [o for o in report.objects if blob_id in o]
    sql(server.data_dir, "UPDATE uploads SET lease_until = ? WHERE id = ?",
        datetime.now(UTC) - timedelta(minutes=5), upload_id)
    report = app.sweeper.sweep(grace=timedelta(0), dry_run=True)
    assert [o for o in report.objects if blob_id in o]  # a dead writer's: noise


def test_storage_sweep_command(server: Server, app: Any) -> None:
    orphan_key = plant_key(app)
    orphan_object = plant_object(app, "backups")
    seen_before = len(swept_events(server))

    # Default grace (a day): everything planted is young, nothing is removed,
    # and the operator's sweep is recorded all the same.
    done = server.coffre("storage", "sweep", "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)
    assert report["keys_shredded"] == 0 and report["objects_removed"] == 0
    assert report["spared"] >= 1 and report["grace_minutes"] == 1440
    assert app.store.exists(orphan_object) and app.store.exists(orphan_key.storage_key)
    events = swept_events(server)
    assert len(events) == seen_before + 1 and events[-1]["source"] == "cli"

    # A dry run lists them, changes and records nothing.
    dry = server.coffre("storage", "sweep", "--dry-run", "--grace-minutes", "0", "--json")
    assert dry.returncode == 0, dry.stderr + dry.stdout
    listed = json.loads(dry.stdout)
    assert listed["dry_run"] is True
    assert orphan_key.id in {k["blob"] for k in listed["keys"]}
    assert orphan_object in listed["objects"]
    assert app.store.exists(orphan_object)
    assert orphan_key.id in unreferenced_keys(server)
    assert len(swept_events(server)) == seen_before + 1

    done = server.coffre("storage", "sweep", "--grace-minutes", "0")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "clé(s) orpheline(s) ont été détruite(s)" in done.stdout
    assert orphan_key.id in done.stdout and orphan_object in done.stdout
    assert not app.store.exists(orphan_object)
    assert not app.store.exists(orphan_key.storage_key)
    assert orphan_key.id not in unreferenced_keys(server)
    event = swept_events(server)[-1]
    assert event["source"] == "cli"
    assert orphan_key.id in {k["blob"] for k in event["details"]["keys"]}
    assert orphan_object in event["details"]["objects"]


def test_scheduled_sweep(server: Server, app: Any) -> None:
    """The job runs at start (then every COFFRE_SWEEP_INTERVAL_MINUTES)
    with the default grace: an orphan key older than a day is shredded; a
    young orphan object is spared. (On local files, where a file can be
    dated back, an object two days old goes too.)"""
    old = datetime.now(UTC) - timedelta(days=2)
    orphan_key = plant_key(app, created=old, with_object=False)
    young_object = plant_object(app)
    old_file = None
    if backends.stored_bucket(server.data_dir) is None:
        old_file = plant_object(app)
        path = Path(app.store.root) / old_file
        os.utime(path, (old.timestamp(), old.timestamp()))
    seen_before = len(swept_events(server))
    server.stop()
    server.start()
    deadline = time.monotonic() + 60
    while len(swept_events(server)) == seen_before and time.monotonic() < deadline:
        time.sleep(0.2)
    events = swept_events(server)
    assert len(events) == seen_before + 1, "the job did not sweep"
    details = events[-1]["details"]
    assert events[-1]["source"] is None  # a job, not a request
    assert orphan_key.id in {k["blob"] for k in details["keys"]}
    assert orphan_key.id not in unreferenced_keys(server)
    assert app.store.exists(young_object)
    if old_file is not None:
        assert old_file in details["objects"] and not app.store.exists(old_file)
