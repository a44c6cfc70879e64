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
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import backends
from tests.conftest import login
from tests.integration.flows import audit_events, sql
from tests.integration.support import api_client, events_for, module_server

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic not installed")
# Sessions close after a second of quiet (five minutes in production), and
# a repository is stale after a day without a snapshot (a week by default).
mail, server, token, client, admin = module_server(
    "restic", COFFRE_BACKUP_SESSION_IDLE_SECONDS="1", COFFRE_BACKUP_ALERT_DAYS="1")
PASSWORD = "mot de passe du dépôt restic"


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


def wait_for(found: Any, timeout: float = 45) -> Any:
    """Poll ``found()`` until it is truthy (sessions are closed by the
    scheduler every ten seconds, after a second of quiet)."""
    deadline = time.monotonic() + timeout
    while True:
        result = found()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


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


def admin_client(server: Any) -> httpx.Client:
    """The administrator with the admin scope (fresh login: step-up holds)."""
    token = login(server.url, scopes=["transfers:read", "transfers:write", "admin"])
    return api_client(server, token)


#: The acceptance's "1 GB directory with many small files".
TREE_BYTES = 1 << 30


def test_a_gigabyte_backed_up_deduplicated_restored_and_checked(
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
    sessions = wait_for(lambda: all_counted(server, device_id, client))
    assert sessions, closed_sessions(server, device_id)
    assert sum(e["details"]["snapshots"] for e in sessions) == 2
    assert sum(e["details"]["bytes_written"] for e in sessions) >= shown["used_bytes"]
    assert wait_for(lambda: sum(e["details"]["objects_read"]
                                for e in closed_sessions(server, device_id)) > 0)
    events = backup_events(server, device_id)
    assert shown["object_count"] > 50
    assert len(events) <= 2 + 2 + len(closed_sessions(server, device_id)), events
    assert len(closed_sessions(server, device_id)) <= 20
    assert len(events_for(server.data_dir, "backup.repository_initialised", device_id)) == 1
    assert registered["credential"]["secret"] not in json.dumps(events)
