"""The embedded profile as a new user tries it: no SMTP, the development
mailbox, files private to the server's user, plain HTTP only on loopback."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import httpx

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, MailCatcher, Server, login, running_server
from tests.integration.flows import make_transfer, sql, wait_for_events
from tests.integration.support import blob_files

CANARY = "CANARY-MESSAGE-7f3a"


def test_dev_mailbox_shows_links_and_keeps_mail_sealed(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data")
    pw = tmp_path / "pw"
    pw.write_text(ADMIN_PASSWORD)
    assert srv.coffre("setup", "--email", ADMIN_EMAIL, "--password-file", str(pw)).returncode == 0
    srv.start()
    try:
        token = login(srv.url)
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}) as c:
            make_transfer(c, {"a.txt": b"x"}, ["patient@exemple.fr"], message=CANARY)
        page = ""
        for _ in range(100):
            page = httpx.get(f"{srv.url}/dev/mailbox").text
            if "patient@exemple.fr" in page:
                break
            time.sleep(0.1)
        assert "patient@exemple.fr" in page and CANARY in page
        assert f"{srv.url}/t/" in page
        for path in srv.data_dir.rglob("*"):
            if path.is_file():
                assert CANARY.encode() not in path.read_bytes(), path
                assert not path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO), path
    finally:
        srv.stop()


def test_mailbox_page_is_absent_when_smtp_is_configured(server: Server) -> None:
    assert httpx.get(f"{server.url}/dev/mailbox").status_code == 404


def test_serve_refuses_plain_http_on_a_public_address(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", env={"COFFRE_HOST": "0.0.0.0"})
    done = srv.coffre("serve")
    assert done.returncode != 0
    assert "TLS" in done.stderr


def test_settings_from_coffre_toml(tmp_path: Path) -> None:
    config = tmp_path / "coffre.toml"
    config.write_text('max_file_size = 1000\nlink_password_attempts = 3\n')
    srv = Server(tmp_path / "data", env={"COFFRE_CONFIG": str(config)})
    srv.start()
    try:
        options = httpx.options(f"{srv.url}/api/v1/uploads/")
        assert options.headers["tus-max-size"] == "1000"
    finally:
        srv.stop()
    assert os.environ.get("COFFRE_CONFIG") is None


def test_scheduled_purge_shreds_expired_transfers(tmp_path: Path, mail: MailCatcher) -> None:
    """The in-process scheduler, not only `coffre purge`, destroys expired
    transfers: data keys gone, blobs removed, an audit event."""
    with running_server(tmp_path, mail, COFFRE_PURGE_INTERVAL_SECONDS="1") as srv:
        token = login(srv.url)
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}) as c:
            transfer = make_transfer(c, {"a.bin": os.urandom(3000)}, ["p@exemple.fr"])
        assert blob_files(srv)  # files, or objects in the bucket (distributed profile)
        sql(srv.data_dir, "UPDATE transfers SET expires_at = '2000-01-01 00:00:00' WHERE id = ?",
            transfer["id"])
        (event,) = wait_for_events(srv.data_dir, "transfer.purged", timeout=30)
        assert event["object"]["id"] == transfer["id"]
        assert event["details"]["data_keys_destroyed"] == 1
        assert sql(srv.data_dir, "SELECT count(*) FROM blobs WHERE wrapped_key IS NOT NULL") == [
            (0,)]
        # The keys go first (committed with the event), then the ciphertext.
        deadline = time.monotonic() + 15
        while blob_files(srv):
            assert time.monotonic() < deadline, "ciphertext left after the purge"
            time.sleep(0.1)


def test_audit_verify_and_export(server: Server, tmp_path: Path) -> None:
    """`coffre audit verify` finds an edited event; `export` writes JSON Lines."""
    login(server.url)  # a few events
    ok = server.coffre("audit", "verify")
    assert ok.returncode == 0, ok.stderr
    exported = tmp_path / "audit.jsonl"
    assert server.coffre("audit", "export", "-o", str(exported)).returncode == 0
    header, *rows = [json.loads(line) for line in exported.read_text().splitlines()]
    assert "checkpoint" in header
    assert rows and {"seq", "prev_hash", "hash", "event", "inclusion_proof"} <= set(rows[0])
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    victim = rows[1]["seq"]
    sql(server.data_dir, "UPDATE audit_events SET payload = replace(payload, 'success', "
        "'failure') WHERE seq = ?", victim)
    broken = server.coffre("audit", "verify")
    assert broken.returncode == 3
    assert f"événement {victim}" in broken.stderr
