"""Backups as a practice runs them: Debian's real ``restic`` (0.14) against
Coffre's REST backend, on whichever profile the suite runs (SQLite and
files, or PostgreSQL and S3)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import backends
from tests.conftest import ADMIN_EMAIL, login
from tests.integration.flows import audit_events, sql, wait_for
from tests.integration.support import api_client, events_for, module_server

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic not installed")
# Sessions close after a second of quiet (five minutes in production), and
# a repository is stale after a day without a snapshot (a week by default).
mail, server, token, client, admin = module_server(
    "restic", COFFRE_BACKUP_SESSION_IDLE_SECONDS="1", COFFRE_BACKUP_ALERT_DAYS="1")
PASSWORD = "mot de passe du dépôt restic"
#: restic's own retries (about 45 s for a 507, 30 s for a 401) make these
#: checks slow; on the distributed profile the server's side of each (507
#: with nothing partial in the bucket, revocation at once) is covered by
#: tests/integration/test_backup_rest.py, which runs there too.
once = pytest.mark.skipif(backends.profile() != "embedded",
                          reason="restic's retries: the server side runs on this profile in "
                                 "test_backup_rest")


def restic(repo: str, *args: str, stdin: bytes | None = None, timeout: float = 600,
           check: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "RESTIC_PASSWORD": PASSWORD, "RESTIC_REPOSITORY": repo,
           "RESTIC_CACHE_DIR": "/tmp/coffre-restic-cache"}
    done = subprocess.run(["restic", "--no-cache", *args], env=env, input=stdin,
                          capture_output=True, timeout=timeout, check=False)
    if check:
        assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done


def register(client: httpx.Client, name: str, **extra: Any) -> dict[str, Any]:
    made = client.post("/api/v1/backup/devices", json={"name": name, **extra})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def make_tree(root: Path, files: int, size: int, seed: int = 0) -> None:
    for i in range(files):
        folder = root / f"dossier-{i % 17:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"compte-rendu-{seed}-{i:05d}.bin").write_bytes(os.urandom(size))


def restic_refused(repo: str, *args: str, timeout: float = 150) -> str:
    """Run a restic command that must fail; its error output. restic 0.14
    retries a refused request for about 45 s before it gives up: a command
    still retrying at ``timeout`` counts as failed too."""
    try:
        done = restic(repo, *args, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as expired:
        return (expired.stderr or b"").decode(errors="replace") + "\n(timed out)"
    assert done.returncode != 0, done.stdout.decode()[-2000:]
    return done.stderr.decode(errors="replace")


def snapshots(repo: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(restic(repo, "snapshots", "--json").stdout)
    return found


def device(client: httpx.Client, device_id: str) -> dict[str, Any]:
    got = client.get(f"/api/v1/backup/devices/{device_id}")
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def make_big_tree(root: Path, total: int) -> None:
    """About ``total`` bytes: 30 % in many small files (1 to 24 KiB, as
    letters and reports), the rest in a few large ones (scans, exports)."""
    rng = random.Random(7)
    small = 0
    i = 0
    while small < total * 0.3:
        size = rng.randint(1024, 24 * 1024)
        folder = root / f"patients-{i % 40:02d}" / f"annee-{2000 + i % 25}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"courrier-{i:06d}.pdf").write_bytes(os.urandom(size))
        small += size
        i += 1
    large = root / "imagerie"
    large.mkdir()
    left, j = total - small, 0
    while left > 0:
        size = min(left, rng.randint(32 << 20, 96 << 20))
        with (large / f"scanner-{j:03d}.dcm").open("wb") as out:
            for offset in range(0, size, 8 << 20):
                out.write(os.urandom(min(8 << 20, size - offset)))
        left -= size
        j += 1


def change_a_little(root: Path) -> int:
    """Rewrite some small files, add one, delete a few, patch a large one
    in the middle; returns the bytes of new content."""
    small = sorted(p for p in root.rglob("courrier-*.pdf"))
    new = 0
    for path in small[:40]:
        size = path.stat().st_size
        path.write_bytes(os.urandom(size))
        new += size
    for path in small[40:60]:
        path.unlink()
    (root / "nouveau-compte-rendu.pdf").write_bytes(os.urandom(6 << 20))
    new += 6 << 20
    scan = sorted((root / "imagerie").iterdir())[0]
    with scan.open("r+b") as out:
        out.seek(scan.stat().st_size // 2)
        out.write(os.urandom(1 << 20))
    return new + (1 << 20)


def stored_blobs(server: Any, repository_id: str) -> set[str]:
    """The blob ids stored for a repository: files under the data directory,
    or objects in the server's bucket (distributed profile)."""
    bucket = backends.stored_bucket(server.data_dir)
    if bucket is None:
        folder = server.data_dir / "blobs" / "backups" / repository_id
        return {p.name for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()
    prefix = f"backups/{repository_id}/"
    return {name.rsplit("/", 1)[1] for name in backends.bucket_names(bucket)
            if name.startswith(prefix)}


def object_rows(server: Any, repository_id: str) -> list[tuple[Any, ...]]:
    """(kind, name, size, blob id) of a repository's objects, as the database has them."""
    return sql(server.data_dir,
               "SELECT o.kind, o.name, o.size, o.blob_id FROM backup_objects o "
               "WHERE o.repository_id = ? ORDER BY o.kind, o.name", repository_id)


def backup_events(server: Any, device_id: str) -> list[dict[str, Any]]:
    return [e for e in audit_events(server.data_dir)
            if e["action"].startswith("backup.") and (e.get("object") or {}).get("id") == device_id]


def closed_sessions(server: Any, device_id: str, *, kind: str = "device") -> list[dict[str, Any]]:
    return [e for e in events_for(server.data_dir, "backup.session", device_id)
            if e["details"]["kind"] == kind]


def all_counted(server: Any, device_id: str, client: httpx.Client) -> list[dict[str, Any]]:
    """The device credential's closed sessions, once they account for every
    object the repository holds (written minus deleted locks)."""
    sessions = closed_sessions(server, device_id)
    held = device(client, device_id)["object_count"]
    written = sum(e["details"]["objects_written"] - e["details"]["objects_deleted"]
                  for e in sessions)
    return sessions if written == held else []


def session_report(server: Any, device_id: str, client: httpx.Client) -> str:
    """What the sessions of a device say, for a failure's message."""
    closed = [(e["details"]["objects_written"], e["details"]["objects_deleted"],
               e["details"]["started_at"], e["details"]["ended_at"])
              for e in closed_sessions(server, device_id)]
    rows = sql(server.data_dir, "SELECT written, deleted, started_at, last_at, closed_at "
                                "FROM backup_sessions WHERE repository_id = ?", device_id)
    return (f"object_count {device(client, device_id)['object_count']}, "
            f"closed {closed}, rows {rows}")


def admin_client(server: Any) -> httpx.Client:
    """The administrator with the admin scope (fresh login: step-up holds)."""
    token = login(server.url, scopes=["transfers:read", "transfers:write", "admin"])
    return api_client(server, token)


#: The acceptance's "1 GB directory with many small files". The suite runs
#: this module on both profiles; the gigabyte alone takes two to three
#: minutes on the embedded one (2 CPUs), and more through PostgreSQL and
#: SeaweedFS, so the distributed pass backs up a quarter of it: what it
#: adds is the other database and store, not the size.
TREE_BYTES = (1 << 30) if backends.profile() == "embedded" else (256 << 20)


def test_the_acceptance_tree_backed_up_deduplicated_restored_and_checked(
        server: Any, client: httpx.Client, tmp_path: Path) -> None:
    registered = register(client, "Cabinet poste accueil")
    device_id = registered["device"]["id"]
    repo = registered["credential"]["restic_repository"]
    source = tmp_path / "Documents"
    make_big_tree(source, TREE_BYTES)
    try:
        restic(repo, "init")
        restic(repo, "backup", str(source))
        first = device(client, device_id)
        assert first["used_bytes"] >= TREE_BYTES * 0.98  # random bytes: nothing to squeeze
        assert first["objects"]["snapshots"] == 1
        assert first["last_snapshot_at"] is not None
        changed = change_a_little(source)
        restic(repo, "backup", str(source))
        second = device(client, device_id)
        grown = second["used_bytes"] - first["used_bytes"]
        # Deduplicated: the repository grows by about what changed (restic's
        # chunks around the patched region, trees, index and snapshot on top).
        assert changed * 0.95 <= grown <= changed + (24 << 20), (changed, grown)
        listed = snapshots(repo)
        assert len(listed) == 2
        assert all(s["paths"] == [str(source)] for s in listed)
        target = tmp_path / "restaure"
        restic(repo, "restore", "latest", "--target", str(target))
        restored = target / source.relative_to("/")
        assert tree_digest(restored) == tree_digest(source)
        shutil.rmtree(target)
        restic(repo, "check", "--read-data")
    finally:
        shutil.rmtree(source, ignore_errors=True)
    shown = device(client, device_id)
    assert shown["objects"]["snapshots"] == 2
    assert shown["objects"]["locks"] == 0  # restic removed its locks (allowed)
    # Aggregated: a handful of events for the whole story, with its counts.
    written = wait_for(lambda: events_for(server.data_dir, "backup.snapshot_written",
                                          device_id))
    assert len(written) == 2
    assert sorted(e["details"]["snapshot"] for e in written) == sorted(s["id"] for s in listed)
    assert all(e["details"]["objects_written"] >= 1 for e in written)
    sessions = wait_for(lambda: all_counted(server, device_id, client), timeout=90)
    assert sessions, session_report(server, device_id, client)
    assert sum(e["details"]["snapshots"] for e in sessions) == 2
    assert sum(e["details"]["bytes_written"] for e in sessions) >= shown["used_bytes"]
    assert wait_for(lambda: sum(e["details"]["objects_read"]
                                for e in closed_sessions(server, device_id)) > 0)
    events = backup_events(server, device_id)
    assert shown["object_count"] >= TREE_BYTES >> 24  # a 16 MiB pack at least per 16 MiB
    assert len(events) <= 2 + 2 + len(closed_sessions(server, device_id)), events
    assert len(closed_sessions(server, device_id)) <= 20
    assert len(events_for(server.data_dir, "backup.repository_initialised", device_id)) == 1
    assert registered["credential"]["secret"] not in json.dumps(events)


def test_a_postgresql_dump_piped_to_restic_restores_into_a_new_database(
        client: httpx.Client) -> None:
    """``pg_dump | restic backup --stdin``, then ``restic dump | psql`` into
    a new database: the same rows. (The throwaway cluster runs as
    ``nobody``; its clients connect over loopback as its ``coffre`` role.)"""
    registered = register(client, "serveur PostgreSQL")
    repo = registered["credential"]["restic_repository"]
    binaries = backends.postgres_bin()
    with backends.postgres_cluster() as url:
        base = url.rsplit("/", 1)[0]
        source, copy = f"{base}/cabinet", f"{base}/cabinet_restaure"
        psql = [str(binaries / "psql"), "-v", "ON_ERROR_STOP=1", "-q"]
        subprocess.run([*psql, url, "-c", "CREATE DATABASE cabinet",
                        "-c", "CREATE DATABASE cabinet_restaure"], check=True, timeout=60)
        subprocess.run([*psql, source, "-c", """
            CREATE TABLE patients (id serial PRIMARY KEY, nom text, naissance date);
            CREATE TABLE consultations (id serial PRIMARY KEY,
                patient integer REFERENCES patients, notes text);
            INSERT INTO patients (nom, naissance)
                SELECT 'Patient ' || i, date '1950-01-01' + i FROM generate_series(1, 5000) i;
            INSERT INTO consultations (patient, notes)
                SELECT 1 + i % 5000, md5(i::text) FROM generate_series(1, 40000) i;
        """], check=True, timeout=120)
        restic(repo, "init")
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
               "RESTIC_PASSWORD": PASSWORD, "RESTIC_REPOSITORY": repo}
        piped = subprocess.run(
            f"{binaries / 'pg_dump'} --no-owner '{source}' | restic --no-cache backup "
            "--stdin --stdin-filename base.sql", shell=True, env=env, capture_output=True,
            timeout=300, check=False)
        assert piped.returncode == 0, piped.stderr.decode()[-2000:]
        assert len(snapshots(repo)) == 1
        dumped = restic(repo, "dump", "latest", "base.sql").stdout
        assert b"CREATE TABLE public.consultations" in dumped
        restored = subprocess.run([*psql, copy], input=dumped, capture_output=True,
                                  timeout=300, check=False)
        assert restored.returncode == 0, restored.stderr.decode()[-2000:]

        def counts(database: str) -> list[str]:
            done = subprocess.run(
                [*psql, "-At", database, "-c",
                 "SELECT (SELECT count(*) FROM patients), (SELECT count(*) FROM consultations),"
                 " (SELECT sum(length(notes)) FROM consultations)"],
                capture_output=True, check=True, timeout=60)
            return done.stdout.decode().split()

        assert counts(copy) == counts(source) == ["5000|40000|1280000"]


def test_forget_prune_needs_a_maintenance_credential(
        server: Any, client: httpx.Client, tmp_path: Path) -> None:
    registered = register(client, "poste secrétariat")
    device_id = registered["device"]["id"]
    repo = registered["credential"]["restic_repository"]
    source = tmp_path / "Documents"
    make_tree(source, 60, 30_000)
    restic(repo, "init")
    restic(repo, "backup", str(source))
    make_tree(source, 20, 30_000, seed=1)
    restic(repo, "backup", str(source))
    assert len(snapshots(repo)) == 2
    before = [row for row in object_rows(server, device_id) if row[0] != "locks"]
    blobs = stored_blobs(server, device_id)
    # Ransomware (or a careless script) on the workstation tries to erase history.
    refused = restic_refused(repo, "forget", "--keep-last", "1", "--prune")
    assert "403" in refused or "Forbidden" in refused or "timed out" in refused, refused
    assert [row for row in object_rows(server, device_id) if row[0] != "locks"] == before
    assert {row[3] for row in before} <= stored_blobs(server, device_id)
    assert len(snapshots(repo)) == 2
    assert wait_for(lambda: events_for(server.data_dir, "backup.delete_refused", device_id))
    # An administrator issues a maintenance credential (step-up: a fresh login).
    with admin_client(server) as admin_api:
        issued = admin_api.post(f"/api/v1/backup/devices/{device_id}/maintenance-keys",
                                json={"hours": 1})
    assert issued.status_code == 201, issued.text
    maintenance = issued.json()["restic_repository"]
    assert maintenance != repo
    pruned = restic(maintenance, "forget", "--keep-last", "1", "--prune")
    assert b"remove 1 snapshots" in pruned.stdout or b"removed" in pruned.stdout.lower()
    left = snapshots(repo)
    assert len(left) == 1
    assert left[0]["id"] in {s["id"] for s in snapshots(maintenance)}
    restic(repo, "check")
    after = object_rows(server, device_id)
    assert len(after) < len(before)
    # The deleted objects' ciphertext is gone from the store too.
    assert stored_blobs(server, device_id) == {row[3] for row in after} != blobs
    # Audit: the refusal, the key, its use, and the sessions with their counts.
    assert len(events_for(server.data_dir, "backup.maintenance_key_issued", device_id)) == 1
    used = wait_for(lambda: events_for(server.data_dir, "backup.maintenance_used", device_id))
    assert used and all(e["details"]["kind"] == "maintenance" for e in used)
    maintenance_sessions = wait_for(lambda: closed_sessions(server, device_id,
                                                            kind="maintenance"))
    assert sum(e["details"]["objects_deleted"] for e in maintenance_sessions) >= 1
    device_sessions = wait_for(
        lambda: [e for e in closed_sessions(server, device_id)
                 if e["details"]["deletes_refused"]])
    assert device_sessions, closed_sessions(server, device_id)
    secret = issued.json()["secret"]
    assert secret not in json.dumps(backup_events(server, device_id))
    assert secret not in server.log()


def test_a_device_cannot_reach_another_device_repository(
        server: Any, client: httpx.Client, tmp_path: Path) -> None:
    owner = register(client, "poste docteur")
    intruder = register(client, "poste salle d'attente")
    repo = owner["credential"]["restic_repository"]
    source = tmp_path / "Documents"
    source.mkdir()
    secret_text = b"Dossier medical confidentiel " + os.urandom(8).hex().encode()
    (source / "dossier.txt").write_bytes(secret_text * 100)
    restic(repo, "init")
    restic(repo, "backup", str(source))
    # The intruder's own credential, aimed at the owner's repository.
    intruder_cred = intruder["credential"]
    stolen = (f"rest:http://{intruder_cred['username']}:{intruder_cred['secret']}"
              f"@127.0.0.1:{server.port}/backup/{owner['device']['id']}/")
    for args in (("snapshots",), ("cat", "config"), ("ls", "latest"),
                 ("backup", str(source)), ("init",)):
        failed = restic(stolen, *args, timeout=150, check=False)
        assert failed.returncode != 0, args
        assert secret_text not in failed.stdout + failed.stderr
    # Raw requests too: listings, reads and writes of the owner's objects.
    packs = client.get(f"/api/v1/backup/devices/{owner['device']['id']}").json()
    assert packs["objects"]["data"] >= 1
    names = [row[1] for row in object_rows(server, owner["device"]["id"])]
    with httpx.Client(base_url=server.url, timeout=60,
                      auth=(intruder_cred["username"], intruder_cred["secret"])) as raw:
        path = f"/backup/{owner['device']['id']}/"
        answers = [raw.get(f"{path}config"), raw.get(f"{path}data/"),
                   raw.get(f"{path}snapshots/", headers={"Accept": "application/vnd.x.restic"
                                                                   ".rest.v2"}),
                   raw.post(f"{path}locks/{hashlib.sha256(b'x').hexdigest()}", content=b"x")]
        answers += [raw.get(f"{path}data/{name}") for name in names if len(name) == 64][:5]
        for answer in answers:
            assert answer.status_code in (401, 403, 404), answer.text
            assert not any(name.encode() in answer.content for name in names)
    assert len(snapshots(repo)) == 1
    assert device(client, owner["device"]["id"])["objects"]["locks"] == 0
    assert device(client, intruder["device"]["id"])["object_count"] == 0


@once
def test_a_repository_at_its_quota_answers_507_and_keeps_nothing_partial(
        server: Any, client: httpx.Client, tmp_path: Path) -> None:
    registered = register(client, "poste radiologie", quota=8 << 20)
    device_id = registered["device"]["id"]
    repo = registered["credential"]["restic_repository"]
    source = tmp_path / "Images"
    make_tree(source, 6, 5 << 20)  # 30 MB of random data into 8 MB
    restic(repo, "init")
    refused = restic_refused(repo, "backup", str(source))
    assert "507" in refused or "Insufficient Storage" in refused or "timed out" in refused, (
        refused[-2000:])
    shown = device(client, device_id)
    assert shown["used_bytes"] <= 8 << 20
    assert shown["objects"]["snapshots"] == 0
    rows = object_rows(server, device_id)
    assert shown["used_bytes"] == sum(row[2] for row in rows)
    assert shown["object_count"] == len(rows)
    # Every stored blob has its row and every row its blob: nothing half-written.
    assert stored_blobs(server, device_id) == {row[3] for row in rows}
    # What is there is sound: the repository still opens.
    assert snapshots(repo) == []


@once
def test_revoking_a_device_ends_its_access_at_once(
        server: Any, client: httpx.Client, tmp_path: Path) -> None:
    registered = register(client, "ordinateur portable volé")
    device_id = registered["device"]["id"]
    repo = registered["credential"]["restic_repository"]
    source = tmp_path / "Documents"
    make_tree(source, 10, 5_000)
    restic(repo, "init")
    restic(repo, "backup", str(source))
    assert len(snapshots(repo)) == 1
    revoked = client.delete(f"/api/v1/backup/devices/{device_id}")
    assert revoked.status_code == 200, revoked.text
    failed = restic_refused(repo, "snapshots")
    assert "401" in failed or "Unauthorized" in failed or "timed out" in failed, failed
    user, secret = registered["credential"]["username"], registered["credential"]["secret"]
    answer = httpx.get(f"{server.url}/backup/{device_id}/config", auth=(user, secret))
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Basic ")
    assert len(events_for(server.data_dir, "backup.device_revoked", device_id)) == 1
    # The backups stay (for a restore with a maintenance credential).
    assert device(client, device_id)["objects"]["snapshots"] == 1


def test_thousands_of_objects_leave_a_handful_of_audit_events(
        server: Any, client: httpx.Client) -> None:
    """The audit is aggregated per session: writing 2,000 objects (as a large
    backup would) records sessions with counts, not an event per object."""
    registered = register(client, "serveur de fichiers")
    device_id = registered["device"]["id"]
    cred = registered["credential"]
    path = f"/backup/{device_id}/"
    bodies = [os.urandom(200) for _ in range(2000)]
    with httpx.Client(base_url=server.url, timeout=60, auth=(cred["username"], cred["secret"]),
                      limits=httpx.Limits(max_connections=8)) as raw:
        assert raw.post(f"{path}?create=true").status_code == 200

        def post(body: bytes) -> int:
            return raw.post(f"{path}data/{hashlib.sha256(body).hexdigest()}",
                            content=body).status_code

        with ThreadPoolExecutor(8) as pool:  # restic too sends several at once
            assert set(pool.map(post, bodies)) == {200}
        assert len(raw.get(f"{path}data/").json()) == 2000
    sessions = wait_for(lambda: all_counted(server, device_id, client), timeout=90)
    assert sessions, session_report(server, device_id, client)
    assert sum(e["details"]["objects_written"] for e in sessions) == 2000
    assert sum(e["details"]["bytes_written"] for e in sessions) == 2000 * 200
    events = backup_events(server, device_id)
    assert len(events) == 1 + len(sessions) <= 6, [e["action"] for e in events]
    assert {e["action"] for e in events} == {"backup.device_registered", "backup.session"}


def test_nothing_is_stored_in_clear(server: Any, client: httpx.Client, tmp_path: Path) -> None:
    """A canary in the backed-up files is nowhere in the data directory, the
    bucket or the server's log; nor is one in an object posted as is
    (restic encrypts on the client, Coffre again at rest)."""
    canary = f"CANARY-{os.urandom(12).hex()}"
    registered = register(client, "poste consultation")
    device_id = registered["device"]["id"]
    cred = registered["credential"]
    source = tmp_path / "Documents"
    source.mkdir()
    for i in range(20):
        (source / f"ordonnance-{i}.txt").write_text(f"Patient {i}: {canary}\n" * 200)
    restic(cred["restic_repository"], "init")
    restic(cred["restic_repository"], "backup", str(source))
    raw_body = f"not restic, but plain: {canary}".encode() * 50
    posted = httpx.post(f"{server.url}/backup/{device_id}/data/"
                        f"{hashlib.sha256(raw_body).hexdigest()}", content=raw_body,
                        auth=(cred["username"], cred["secret"]))
    assert posted.status_code == 200, posted.text
    got = httpx.get(f"{server.url}/backup/{device_id}/data/"
                    f"{hashlib.sha256(raw_body).hexdigest()}",
                    auth=(cred["username"], cred["secret"]))
    assert got.content == raw_body
    needle = canary.encode()
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), path
    bucket = backends.stored_bucket(server.data_dir)
    if bucket is not None:
        stored = backends.bucket_objects(bucket)
        assert any(name.startswith(f"backups/{device_id}/") for name in stored)
        for name, content in stored.items():
            assert needle not in content, name
    assert needle not in backends.database_bytes(server.data_dir)
    assert canary not in server.log()
    assert cred["secret"] not in server.log()


def test_a_device_without_backups_is_stale_and_its_owner_is_mailed(
        server: Any, client: httpx.Client, mail: Any) -> None:
    registered = register(client, "poste accueil annexe")
    device_id = registered["device"]["id"]
    assert device(client, device_id)["stale"] is False
    # Registered three days ago, never backed up (the alert period is one day here).
    sql(server.data_dir, "UPDATE backup_repositories SET created_at = ? WHERE id = ?",
        backends.ago(days=3), device_id)
    shown = device(client, device_id)
    assert shown["stale"] is True
    assert shown["alert_days"] == 1
    # The alert runs when the scheduler starts, then hourly: restart the server.
    server.stop()
    server.start()
    alerts = wait_for(lambda: events_for(server.data_dir, "backup.stale_alerted", device_id),
                      timeout=30)
    assert len(alerts) == 1
    assert alerts[0]["details"]["days"] == 1
    mailed = wait_for(lambda: [m for m in mail.to(ADMIN_EMAIL, timeout=1)
                               if "poste accueil annexe" in str(m["Subject"])], timeout=30)
    assert len(mailed) == 1
    body = mailed[0].get_body(preferencelist=("plain",)).get_content()
    assert "Aucune sauvegarde" in body
    assert "poste accueil annexe" in body
    with api_client(server, login(server.url)) as fresh:
        listed = {d["id"]: d for d in fresh.get("/api/v1/backup/devices").json()}
    assert listed[device_id]["stale"] is True
