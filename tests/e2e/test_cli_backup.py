"""``coffre backup`` as a practice's IT person runs it: register a device,
paste the printed restic line into a shell, list and monitor the devices,
revoke one, issue a maintenance key (step-up), and set the organisation's
backup policy with ``coffre organisation set``."""

from __future__ import annotations

import json
import os
import pty
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from coffre.crypto import credentials
from coffre.db.tables import BackupRepository, Organisation, User
from coffre.domain.accounts import Role
from tests import backends
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Server, second_factor
from tests.e2e.test_cli import Cli
from tests.e2e.test_restic import make_tree, restic
from tests.integration.flows import sql
from tests.integration.support import (
    api_client,
    events_for,
    in_process,
    module_server,
    new_address,
    one_event,
)

pytestmark = [
    pytest.mark.skipif(shutil.which("restic") is None, reason="restic not installed"),
    # The CLI speaks HTTP only: what it asks the server to do is tested on
    # both profiles by test_backup_rest and test_restic.
    pytest.mark.skipif(backends.profile() != "embedded",
                       reason="the CLI is the same client on either profile"),
]
mail, server, token, client, admin = module_server(
    "cli-backup", COFFRE_BACKUP_SESSION_IDLE_SECONDS="1")
MEMBER_PASSWORD = "une phrase de passe de membre"


@pytest.fixture(scope="module")
def cli(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """The administrator's CLI, signed in with a recovery code."""
    home = tmp_path_factory.mktemp("admin-home")
    pw = home / "pw"
    pw.write_text(ADMIN_PASSWORD + "\n")
    c = Cli(home, server.url)
    c.run("login", "--url", server.url, "--email", ADMIN_EMAIL, "--password-file", str(pw),
          "--code", second_factor(server.url), "--scope", "transfers:read",
          "--scope", "transfers:write", "--scope", "admin")
    return c


@pytest.fixture(scope="module")
def member_cli(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """A member of the same organisation, signed in with ``coffre login``."""
    email = new_address("secretariat")
    app = in_process(server)
    try:
        with app.db.session() as session:
            org_id = session.query(Organisation.id).scalar()
            session.add(User(organisation_id=org_id, email=email, role=Role.MEMBER.value,
                             password_hash=credentials.hash_password(MEMBER_PASSWORD)))
    finally:
        app.close()
    home = tmp_path_factory.mktemp("member-home")
    pw = home / "pw"
    pw.write_text(MEMBER_PASSWORD + "\n")
    c = Cli(home, server.url)
    c.run("login", "--url", server.url, "--email", email, "--password-file", str(pw))
    return c


@pytest.fixture(scope="module")
def admin_client(server: Server, cli: Cli) -> Iterator[httpx.Client]:
    """The API with the administrator's CLI token (``admin`` scope)."""
    saved = json.loads((cli.home / ".config" / "coffre" / "credentials.json").read_text())
    with api_client(server, saved["token"]) as c:
        yield c


def printed(stdout: str, start: str) -> str:
    """The one line of ``stdout`` starting with ``start`` (spaces stripped)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip().startswith(start)]
    assert len(lines) == 1, stdout
    return lines[0]


def add_device(cli: Cli, name: str, *options: str) -> tuple[str, str, str]:
    """(device id, the repository restic takes, stdout) of ``device add``."""
    done = cli.run("backup", "device", "add", name, *options)
    lines = [shlex.split(line.strip()) for line in done.stdout.splitlines()
             if line.strip().startswith("restic -r rest:")]
    init = [words for words in lines if words[-1] == "init"]
    assert len(init) == 1, done.stdout
    repository = init[0][2]
    device_id = repository.rstrip("/").rsplit("/", 1)[-1]
    return device_id, repository, done.stdout


def devices(cli: Cli) -> dict[str, dict[str, Any]]:
    listed = json.loads(cli.run("backup", "device", "list", "--json").stdout)
    return {d["id"]: d for d in listed}


def move_back(server: Server, device_id: str, days: int) -> None:
    """Time travel: the device was registered (and last backed up) ``days`` ago."""
    app = in_process(server)
    try:
        with app.db.session() as session:
            repo = session.get(BackupRepository, device_id)
            assert repo is not None
            repo.created_at -= timedelta(days=days)
            if repo.last_snapshot_at is not None:
                repo.last_snapshot_at -= timedelta(days=days)
    finally:
        app.close()


def test_device_add_prints_a_restic_line_that_works(server: Server, cli: Cli,
                                                    tmp_path: Path) -> None:
    device_id, repository, stdout = add_device(cli, "Cabinet poste accueil")
    credential = printed(stdout, "Secret").split(":", 1)[1].strip()
    username = printed(stdout, "Utilisateur").split(":", 1)[1].strip()
    assert f"{username}:{credential}@" in repository
    assert printed(stdout, "Adresse du dépôt").endswith(f"/backup/{device_id}/")
    assert printed(stdout, "export RESTIC_REPOSITORY=") == (
        f"export RESTIC_REPOSITORY={shlex.quote(repository)}")
    assert "une seule fois" in stdout
    # The secret is shown once: listing the devices never shows it again.
    assert credential not in cli.run("backup", "device", "list").stdout
    assert credential not in cli.run("backup", "device", "list", "--json").stdout

    source = tmp_path / "Documents"
    make_tree(source, 20, 5_000)
    restic(repository, "init")
    restic(repository, "backup", str(source))
    assert b"1 snapshots" in restic(repository, "snapshots").stdout

    device = devices(cli)[device_id]
    assert device["last_snapshot_at"] is not None and device["stale"] is False
    assert device["objects"]["snapshots"] == 1 and device["used_bytes"] > 0
    table = cli.run("backup", "device", "list").stdout
    assert "Cabinet poste accueil" in table and "actif" in table
    status = cli.run("backup", "status")
    assert status.returncode == 0 and "Cabinet poste accueil" in status.stdout
    report = json.loads(cli.run("backup", "status", "--json").stdout)
    assert report["stale"] is False
    assert any(d["id"] == device_id for d in report["devices"])
    # The registration is audited, without the secret.
    event = one_event(server.data_dir, "backup.device_registered",
                      object_type="backup_repository", object_id=device_id,
                      organisation=_organisation(server), actor=device["owner_id"],
                      secrets=(credential,))
    assert event["details"]["name"] == "Cabinet poste accueil"


def _organisation(server: Server) -> str:
    app = in_process(server)
    try:
        with app.db.session() as session:
            org_id: str = session.query(Organisation.id).scalar()
            return org_id
    finally:
        app.close()


def test_status_exits_1_once_a_device_is_stale(server: Server, cli: Cli) -> None:
    shown = cli.run("organisation", "set", "--backup-alert-days", "3")
    assert "alerte sans sauvegarde après" in shown.stdout
    assert "3 jours (organisation)" in shown.stdout
    try:
        device_id, _repository, _stdout = add_device(cli, "Serveur PostgreSQL")
        assert cli.run("backup", "status").returncode == 0
        table = cli.run("backup", "device", "list").stdout
        assert "jamais" in table

        move_back(server, device_id, 4)
        stale = cli.run("backup", "status", check=False)
        assert stale.returncode == 1, stale.stdout + stale.stderr
        assert "aucune sauvegarde depuis 4 jours" in stale.stdout
        assert "(alerte à 3)" in stale.stdout
        assert "sans sauvegarde récente" in stale.stdout
        report = cli.run("backup", "status", "--json", check=False)
        assert report.returncode == 1
        body = json.loads(report.stdout)
        assert body["stale"] is True
        assert [d["id"] for d in body["devices"] if d["stale"]] == [device_id]
        # The alert period is the organisation's: a longer one clears it.
        cli.run("organisation", "set", "--backup-alert-days", "30")
        assert cli.run("backup", "status").returncode == 0
        # A revoked device is no longer watched.
        cli.run("organisation", "set", "--backup-alert-days", "3")
        assert cli.run("backup", "status", check=False).returncode == 1
        cli.run("backup", "device", "revoke", device_id, "--yes")
        assert cli.run("backup", "status").returncode == 0
    finally:
        cli.run("organisation", "set", "--backup-alert-days", "défaut")


def test_revoke_asks_then_restic_is_refused(server: Server, cli: Cli, tmp_path: Path) -> None:
    device_id, repository, _stdout = add_device(cli, "Poste consultation")
    restic(repository, "init")
    # Not a terminal and no --yes: nothing is revoked.
    unattended = cli.run("backup", "device", "revoke", device_id, check=False)
    assert unattended.returncode != 0 and "--yes" in unattended.stderr
    assert devices(cli)[device_id]["revoked_at"] is None
    # At a terminal, it asks; "n" keeps the device.
    terminal, tty = pty.openpty()
    try:
        asking = subprocess.Popen(cli.command("backup", "device", "revoke", device_id),
                                  env=cli.env(), stdin=tty, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        os.write(terminal, b"n\n")
        _out, err = asking.communicate(timeout=60)
    finally:
        os.close(terminal)
        os.close(tty)
    assert asking.returncode != 0 and "Révoquer l'appareil" in err, err
    assert devices(cli)[device_id]["revoked_at"] is None

    done = cli.run("backup", "device", "revoke", device_id, "--yes")
    assert "Appareil révoqué" in done.stdout
    assert devices(cli)[device_id]["revoked_at"] is not None
    assert "révoqué le" in cli.run("backup", "device", "list").stdout
    # restic retries a 401 for half a minute before giving up (test_restic
    # runs it once); its first request is enough here.
    after = httpx.get(repository.removeprefix("rest:") + "config", timeout=30)
    assert after.status_code == 401
    assert len(events_for(server.data_dir, "backup.device_revoked", device_id)) == 1


def test_maintenance_key_after_step_up(server: Server, cli: Cli, tmp_path: Path) -> None:
    device_id, repository, _stdout = add_device(cli, "Poste secrétariat")
    source = tmp_path / "Documents"
    make_tree(source, 5, 2_000)
    restic(repository, "init")
    restic(repository, "backup", str(source))
    cli.run("backup", "device", "revoke", device_id, "--yes")
    # Signed in long ago: the CLI confirms the administrator's identity.
    sql(server.data_dir, "UPDATE api_tokens SET auth_time = '2020-01-01 00:00:00.000000'")
    unattended = subprocess.run(cli.command("backup", "maintenance-key", device_id),
                                env=cli.env(), input="", text=True, capture_output=True,
                                timeout=60, check=False)
    assert unattended.returncode != 0
    assert not events_for(server.data_dir, "backup.maintenance_key_issued", device_id)
    done = subprocess.run(
        cli.command("backup", "maintenance-key", device_id, "--hours", "1"), env=cli.env(),
        input=f"{ADMIN_PASSWORD}\n{second_factor(server.url)}\n", text=True,
        capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "confirmer votre identité" in done.stdout + done.stderr
    forget = shlex.split(printed(done.stdout, "restic -r rest:"))
    assert forget[3:] == ["forget", "--keep-daily", "30", "--prune"]
    maintenance = forget[2]
    secret = printed(done.stdout, "Secret").split(":", 1)[1].strip()
    assert secret in maintenance and maintenance != repository
    # The device is revoked, its backups stay readable with the maintenance key.
    assert b"1 snapshots" in restic(maintenance, "snapshots").stdout
    restic(maintenance, "forget", "--keep-last", "1", "--prune")
    event = one_event(server.data_dir, "backup.maintenance_key_issued",
                      object_type="backup_repository", object_id=device_id,
                      organisation=_organisation(server),
                      actor=devices(cli)[device_id]["owner_id"], secrets=(secret,))
    assert event["details"]["expires_at"].endswith("Z")


def test_member_devices_and_refusal_in_french(cli: Cli, member_cli: Cli) -> None:
    device_id, _repository, _stdout = add_device(member_cli, "Poste du secrétariat",
                                                 "--quota", "500G")
    mine = devices(member_cli)
    assert list(mine) == [device_id]
    assert mine[device_id]["quota"] == 500 << 30
    assert "0 octets / 500.0 Gio" in member_cli.run("backup", "device", "list").stdout
    # The administrator sees the organisation's devices, the member's too.
    assert device_id in devices(cli)
    refused = member_cli.run("backup", "maintenance-key", device_id, check=False)
    assert refused.returncode == 2
    assert "seul un administrateur" in refused.stderr
    assert "role" not in refused.stderr
    missing = member_cli.run("backup", "device", "revoke", "0" * 32, "--yes", check=False)
    assert missing.returncode != 0 and "introuvable" in missing.stderr
    # An administrator's status can be limited to their own devices.
    own = json.loads(cli.run("backup", "status", "--mine", "--json").stdout)
    assert device_id not in {d["id"] for d in own["devices"]}


def test_organisation_backup_policy(server: Server, cli: Cli, member_cli: Cli,
                                    admin_client: httpx.Client) -> None:
    org = _organisation(server)
    before = len(events_for(server.data_dir, "organisation.policy_changed", org))
    shown = cli.run("organisation", "set", "--backup-quota", "2T", "--backup-alert-days", "5",
                    "--json")
    body = json.loads(shown.stdout)
    assert body["policy"]["backup_quota"] == 2 << 40
    assert body["policy"]["backup_alert_days"] == 5
    assert body["effective"]["backup_alert_days"] == 5
    events = events_for(server.data_dir, "organisation.policy_changed", org)
    assert len(events) == before + 1
    assert events[-1]["details"]["changes"] == {
        "backup_quota": {"before": None, "after": 2 << 40},
        "backup_alert_days": {"before": None, "after": 5},
    }
    table = cli.run("organisation", "show").stdout
    assert "quota des sauvegardes" in table and "2.0 Tio (organisation)" in table
    assert "5 jours (organisation)" in table
    # Through the API: read, out of range refused, null restores the instance's.
    read = admin_client.get("/api/v1/organisation").json()
    assert read["policy"]["backup_quota"] == 2 << 40
    too_long = admin_client.patch("/api/v1/organisation", json={"backup_alert_days": 366})
    assert too_long.status_code == 400, too_long.text
    assert too_long.json()["error"]["details"]["field"] == "backup_alert_days"
    assert admin_client.patch("/api/v1/organisation",
                              json={"backup_quota": 0}).status_code == 400
    reset = admin_client.patch("/api/v1/organisation",
                               json={"backup_quota": None, "backup_alert_days": None})
    assert reset.status_code == 200, reset.text
    assert reset.json()["policy"]["backup_quota"] is None
    assert reset.json()["effective"]["backup_alert_days"] == 7
    assert events_for(server.data_dir, "organisation.policy_changed", org)[-1][
        "details"]["changes"] == {"backup_quota": {"before": 2 << 40, "after": None},
                                  "backup_alert_days": {"before": 5, "after": None}}
    assert cli.run("organisation", "set", "--backup-alert-days", "400",
                   check=False).returncode != 0
    # A member reads the policy but cannot change it.
    assert "alerte sans sauvegarde après" in member_cli.run("organisation", "show").stdout
    refused = member_cli.run("organisation", "set", "--backup-alert-days", "1", check=False)
    assert refused.returncode == 2
    assert json.loads(cli.run("organisation", "show", "--json").stdout)[
        "policy"]["backup_alert_days"] is None
