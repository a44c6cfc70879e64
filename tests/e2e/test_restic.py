"""Backups as a practice runs them: Debian's real ``restic`` (0.14) against
Coffre's REST backend, on whichever profile the suite runs (SQLite and
files, or PostgreSQL and S3)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.support import module_server, wait_events_for

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic not installed")
mail, server, token, client, admin = module_server(
    "restic", COFFRE_BACKUP_SESSION_IDLE_SECONDS="1")
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


def test_backup_snapshots_restore_and_check(server: Any, client: httpx.Client,
                                            tmp_path: Path) -> None:
    device = register(client, "Cabinet poste accueil")
    repo = device["credential"]["restic_repository"]
    source = tmp_path / "Documents"
    make_tree(source, 200, 20_000)
    restic(repo, "init")
    restic(repo, "backup", str(source))
    restic(repo, "snapshots")
    target = tmp_path / "restored"
    restic(repo, "restore", "latest", "--target", str(target))
    restored = target / source.relative_to("/")
    assert tree_digest(restored) == tree_digest(source)
    restic(repo, "check", "--read-data")
    listed = client.get(f"/api/v1/backup/devices/{device['device']['id']}").json()
    assert listed["last_snapshot_at"] is not None
    assert listed["objects"]["snapshots"] == 1
    events = wait_events_for(server.data_dir, "backup.session", device["device"]["id"], 1)
    assert events
