"""Backup pages in a real browser: register a device, copy the credential
shown once into Debian's real ``restic`` (init and a small backup), see
the last backup on the list, revoke the device; the "no backup for N
days" alert on a phone; a maintenance key after step-up, used by
``restic forget --prune``; a member sees only their own devices."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from coffre.crypto import credentials
from coffre.db.tables import Organisation, User
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, login, second_factor
from tests.e2e.browser.conftest import Web, check_accessibility, screenshot, signed_in
from tests.integration.flows import audit_events, sql
from tests.integration.support import in_process

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic not installed")
RESTIC_PASSWORD = "mot de passe du dépôt, gardé par le cabinet"
EXAMPLE = "~/Documents"
MEMBER_PASSWORD = "une phrase de passe assez longue"


def restic(command: str, *, extra: tuple[str, ...] = (), replace: Path | None = None,
           check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run a command line as the page shows it (``~/Documents`` swapped for
    ``replace``), with the repository's password in the environment."""
    words = shlex.split(command)
    assert words[:2] == ["restic", "-r"], command
    if replace is not None:
        words = [str(replace) if w == EXAMPLE else w for w in words]
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "RESTIC_PASSWORD": RESTIC_PASSWORD}
    done = subprocess.run([words[0], "--no-cache", *words[1:], *extra], env=env,
                          capture_output=True, timeout=120, check=False)
    if check:
        assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done


def _register(page: Any, name: str, quota: str = "") -> dict[str, str]:
    """Register a device on /backups; what the page showed once."""
    page.goto("/backups")
    page.get_by_label("Nom de l'appareil").fill(name)
    page.get_by_label("Quota (facultatif)").fill(quota)
    # POST, redirect, GET: a reload registers no second device.
    with page.expect_response(lambda r: r.url.endswith("/registered")) as answer:
        page.get_by_role("button", name="Enregistrer l'appareil").click()
    assert answer.value.status == 200
    assert answer.value.headers["cache-control"] == "no-store"  # SEC-27
    expect(page.get_by_role("heading", name=f"Appareil « {name} » enregistré")).to_be_visible()
    return {key: page.locator(f"#{key}").inner_text() for key in (
        "repository-url", "credential-username", "credential-secret", "command-init",
        "command-backup")}


def test_register_a_device_back_up_with_restic_and_revoke(page: Any, web: Web,
                                                          tmp_path: Path) -> None:
    signed_in(page, web)
    page.goto("/backups")
    expect(page.get_by_role("link", name="Sauvegardes")).to_have_attribute("aria-current",
                                                                          "page")
    page.get_by_label("Nom de l'appareil").fill("Poste accueil")
    page.get_by_label("Quota (facultatif)").fill("beaucoup")
    page.get_by_role("button", name="Enregistrer l'appareil").click()
    expect(page.get_by_role("alert")).to_have_text(
        "Écrivez un quota comme 500 Go, 2 To ou 1,5 To.")
    expect(page.get_by_label("Nom de l'appareil")).to_have_value("Poste accueil")

    devices = len(page.context.request.get("/api/v1/backup/devices").json())
    shown = _register(page, "Cabinet poste accueil", "5G")
    expect(page.get_by_role("alert")).to_contain_text("n'est affiché qu'une fois")
    expect(page.get_by_text("Coffre ne le voit jamais")).to_be_visible()
    repository = f"rest:{shown['repository-url'].replace('://', '://{}:{}@')}".format(
        shown["credential-username"], shown["credential-secret"])
    assert shown["command-init"] == f"restic -r {repository} init"
    assert shown["command-backup"] == f"restic -r {repository} backup {EXAMPLE}"
    device_id = shown["repository-url"].rstrip("/").rsplit("/", 1)[-1]
    check_accessibility(page)
    screenshot(page, "backups-created")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy = page.locator("button.copy[data-copy='command-init']")
    copy.click()
    expect(copy).to_have_text("Copié")
    assert page.evaluate("navigator.clipboard.readText()") == shown["command-init"]
    page.reload()  # shown once: the device's page, without the secret
    expect(page).to_have_url(re.compile(rf"/backups/{device_id}$"))
    assert shown["credential-secret"] not in page.content()
    assert len(page.context.request.get("/api/v1/backup/devices").json()) == devices + 1

    documents = tmp_path / "Documents"
    documents.mkdir()
    (documents / "compte-rendu.txt").write_text("Consultation du 3 mars : RAS.\n")
    (documents / "ordonnance.pdf").write_bytes(os.urandom(50_000))
    restic(shown["command-init"])
    restic(shown["command-backup"], replace=documents)

    page.goto("/backups")
    item = page.locator(".backup-item", has_text="Cabinet poste accueil")
    expect(item.locator(".last-backup")).not_to_have_text("jamais")
    expect(item.locator(".last-backup")).to_have_text(re.compile(r"\d\d/\d\d/\d{4} à \d\d:\d\d$"))
    expect(item).to_contain_text("sur 5,0 Go")
    expect(item).to_contain_text(f"Propriétaire : {ADMIN_EMAIL}")
    check_accessibility(page)
    screenshot(page, "backups-list")

    item.get_by_role("link", name="Cabinet poste accueil").click()
    expect(page).to_have_url(re.compile(f"/backups/{device_id}$"))
    objects = page.locator("table.backup-objects")
    expect(objects.locator("tr", has_text="snapshots")).to_contain_text("1")
    assert shown["credential-secret"] not in page.content()  # shown once only
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Révoquer l'appareil").click()
    expect(page.locator("p.notice")).to_have_text(
        "Appareil révoqué : son identifiant n'ouvre plus le dépôt.")
    expect(page.locator(".backup-head .state-revoked")).to_have_text("Révoqué")
    refused = httpx.get(f"{shown['repository-url']}config", timeout=30,
                        auth=(shown["credential-username"], shown["credential-secret"]))
    assert refused.status_code == 401
    assert [e["object"]["id"] for e in audit_events(web.server.data_dir,
                                                 "backup.device_revoked")] == [device_id]
    registered = audit_events(web.server.data_dir, "backup.device_registered")
    assert device_id in [e["object"]["id"] for e in registered]
    assert not any(shown["credential-secret"] in str(e) for e in registered)

    page.goto("/backups")
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="Backups", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Register a device")).to_be_visible()
    expect(page.locator(".backup-item", has_text="Cabinet poste accueil")).to_contain_text(
        "Revoked")


def test_a_device_without_backups_shows_the_alert_on_a_phone(phone_page: Any,
                                                             web: Web) -> None:
    page = signed_in(phone_page, web)
    _register(page, "Serveur PostgreSQL du cabinet")
    old = datetime.now(UTC) - timedelta(days=10, hours=1)
    sql(web.server.data_dir, "UPDATE backup_repositories SET created_at = ? WHERE name = ?",
        old, "Serveur PostgreSQL du cabinet")
    page.goto("/backups")
    item = page.locator(".backup-item", has_text="Serveur PostgreSQL du cabinet")
    expect(item.locator(".state-stale")).to_have_text("Aucune sauvegarde depuis 10 jours")
    expect(item.locator(".last-backup")).to_have_text("jamais")
    assert page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    check_accessibility(page)
    screenshot(page, "backups-list-phone")


def test_a_maintenance_key_needs_step_up_and_prunes(page: Any, web: Web,
                                                    tmp_path: Path) -> None:
    signed_in(page, web)
    shown = _register(page, "Portable du remplaçant")
    documents = tmp_path / "Documents"
    documents.mkdir()
    restic(shown["command-init"])
    for day in range(2):
        (documents / f"jour-{day}.txt").write_text(f"notes du jour {day}\n")
        restic(shown["command-backup"], replace=documents)

    device_id = shown["repository-url"].rstrip("/").rsplit("/", 1)[-1]
    sql(web.server.data_dir, "UPDATE user_sessions SET auth_time = '2000-01-01 00:00:00'")
    page.goto(f"/backups/{device_id}")
    page.get_by_role("link", name="Émettre une clé de maintenance").click()
    expect(page).to_have_url(re.compile(rf"/reauth\?next=/backups/{device_id}/maintenance$"))
    page.get_by_label("Mot de passe").fill(ADMIN_PASSWORD)
    page.get_by_label("ou code de secours").fill(second_factor(web.url))
    page.get_by_role("button", name="Valider").click()
    expect(page.get_by_role("heading", name="Clé de maintenance pour « Portable du remplaçant »")
           ).to_be_visible()
    page.get_by_label("Valable pendant (heures)").fill("3")
    page.get_by_role("button", name="Émettre la clé").click()
    expect(page.get_by_role("alert")).to_contain_text("n'est affiché qu'une fois")
    forget = page.locator("#command-forget").inner_text()
    assert forget.endswith(" forget --keep-last 7 --prune")
    expect(page).to_have_url(re.compile(rf"/backups/{device_id}/maintenance/issued$"))
    check_accessibility(page)
    restic(forget.replace("--keep-last 7", "--keep-last 1"))
    listed = restic(forget.replace("forget --keep-last 7 --prune", "snapshots --json"))
    assert len(json.loads(listed.stdout)) == 1

    issued = audit_events(web.server.data_dir, "backup.maintenance_key_issued")
    assert [e["object"]["id"] for e in issued] == [device_id]
    assert issued[0]["details"]["credential"] == page.locator(
        "#credential-username").inner_text()
    page.reload()  # POST, redirect, GET: no second key; shown once, then the device
    expect(page).to_have_url(re.compile(rf"/backups/{device_id}$"))
    assert len(audit_events(web.server.data_dir, "backup.maintenance_key_issued")) == 1


def _member(web: Web) -> str:
    """A member of the administrator's organisation (no second factor needed)."""
    email = "secretariat.sauvegardes@cabinet-exemple.fr"
    app = in_process(web.server)
    try:
        with app.db.session() as session:
            org_id = session.query(Organisation.id).scalar()
            session.add(User(organisation_id=org_id, email=email, role="member",
                             password_hash=credentials.hash_password(MEMBER_PASSWORD)))
    finally:
        app.close()
    return email


def test_a_member_sees_only_their_devices_and_no_maintenance_key(page: Any, web: Web) -> None:
    made = httpx.post(f"{web.url}/api/v1/backup/devices", json={"name": "Serveur du cabinet"},
                      headers={"Authorization": f"Bearer {login(web.url)}"}, timeout=30)
    assert made.status_code == 201, made.text
    theirs = made.json()["device"]["id"]
    email = _member(web)
    answer = page.context.request.post(f"{web.url}/api/v1/auth/login",
                                       headers={"Origin": web.url},
                                       data={"email": email, "password": MEMBER_PASSWORD})
    assert answer.ok and answer.json()["stage"] == "full", answer.text()

    shown = _register(page, "Portable de la secrétaire")
    page.get_by_role("link", name="Terminé").click()
    expect(page.get_by_role("heading", name="Portable de la secrétaire")).to_be_visible()
    expect(page.get_by_role("button", name="Révoquer l'appareil")).to_be_visible()
    expect(page.get_by_text("Clé de maintenance")).to_have_count(0)
    page.goto("/backups")
    expect(page.locator(".backup-item")).to_have_count(1)
    expect(page.locator(".backup-item")).to_contain_text("Portable de la secrétaire")
    expect(page.locator(".backup-item .owner")).to_have_count(0)  # no owner column for members
    assert page.goto(f"/backups/{theirs}").status == 404  # the administrator's device
    assert page.goto(f"/backups/{theirs}/maintenance").status == 403
    mine = shown["repository-url"].rstrip("/").rsplit("/", 1)[-1]
    assert page.goto(f"/backups/{mine}/maintenance").status == 403
