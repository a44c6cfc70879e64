"""Administration pages in a real browser: invite a member by mail, change
their role, disable them; change the policy; read, filter and verify the
audit trail; a member is refused."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests import backends
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Server
from tests.e2e.browser.conftest import (
    DESKTOP,
    PHONE,
    ConsoleWatch,
    Web,
    check_accessibility,
    fits_the_screen,
    screenshot,
    signed_in,
)

MEMBER = "secretariat@cabinet-exemple.fr"
MEMBER_PASSWORD = "une phrase de passe assez longue"


def _accept_invitation(web: Web, address: str) -> None:
    """The invitee follows the mailed link (through the API, as its page does)."""
    mails = web.mail.to(address)
    assert mails, f"no invitation mailed to {address}"
    body = mails[-1].get_body(preferencelist=("plain",))
    assert body is not None
    found = re.search(r"/invitation/([A-Za-z0-9_-]+)", body.get_content())
    assert found, "no invitation link in the mail"
    accepted = httpx.post(f"{web.url}/api/v1/invitations/accept", timeout=30, json={
        "token": found.group(1), "password": MEMBER_PASSWORD, "display_name": "Secretariat"})
    assert accepted.status_code == 201, accepted.text


def _member_signed_in(page: Any, web: Web) -> None:
    """A member (no second factor required) signs in with a password."""
    answer = page.context.request.post(
        f"{web.url}/api/v1/auth/login", headers={"Origin": web.url},
        data={"email": MEMBER, "password": MEMBER_PASSWORD})
    assert answer.ok, answer.text()
    assert answer.json()["stage"] == "full", answer.json()


def test_administrator_manages_members_policy_and_reads_the_audit_trail(
        page: Any, web: Web, new_page: Any) -> None:
    signed_in(page, web)
    page.goto("/admin")
    expect(page.get_by_role("heading", name="Membres")).to_be_visible()
    page.get_by_label("Adresse e-mail").fill(MEMBER)
    page.get_by_label("Rôle", exact=True).select_option("member")
    page.get_by_role("button", name="Envoyer l'invitation").click()
    expect(page.locator("p.notice")).to_have_text("Invitation envoyée.")
    expect(page.locator(".invitations")).to_contain_text(MEMBER)
    _accept_invitation(web, MEMBER)

    # The new member: no Administration menu, and /admin is refused.
    member = new_page()
    _member_signed_in(member, web)
    member.goto("/transfers")
    expect(member.get_by_role("link", name="Contacts")).to_be_visible()
    expect(member.get_by_role("link", name="Administration")).to_have_count(0)
    for path in ("/admin", "/admin/policy", "/admin/audit"):
        assert member.goto(path).status == 403

    page.reload()
    row = page.locator("table.members tbody tr", has_text=MEMBER)
    expect(row).to_contain_text("Actif")
    check_accessibility(page)
    screenshot(page, "admin-members")
    page.get_by_label(f"Rôle de {MEMBER}").select_option("admin")
    page.get_by_role("button", name=f"Modifier le rôle de {MEMBER}").click()
    expect(page.locator("p.notice")).to_have_text("Rôle modifié.")
    expect(page.get_by_label(f"Rôle de {MEMBER}")).to_have_value("admin")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Désactiver {MEMBER}").click()
    expect(page.locator("p.notice")).to_contain_text("Membre désactivé")
    expect(row).to_contain_text("Désactivé")
    member.goto("/contacts")
    expect(member).to_have_url(re.compile(r"/login"))  # their session ended

    page.get_by_role("link", name="Règles").click()
    expect(page.get_by_role("heading", name="Règles de l'organisation")).to_be_visible()
    page.get_by_label("Expiration la plus longue (jours)").fill("100000")
    page.get_by_role("button", name="Enregistrer les règles").click()
    expect(page.get_by_label("Expiration la plus longue (jours)")).to_have_attribute(
        "aria-invalid", "true")
    page.get_by_label("Expiration la plus longue (jours)").fill("")
    page.get_by_label("Expiration par défaut (jours)").fill("5")
    page.get_by_label("Nombre maximal de destinataires par transfert").fill("20")
    page.get_by_label("Jamais ces domaines de destinataires").fill("spam-exemple.com")
    page.get_by_role("button", name="Enregistrer les règles").click()
    expect(page.locator("p.notice")).to_have_text("Règles enregistrées.")
    page.reload()
    expect(page.get_by_label("Expiration par défaut (jours)")).to_have_value("5")
    expect(page.get_by_label("Nombre maximal de destinataires par transfert")).to_have_value("20")
    expect(page.get_by_label("Jamais ces domaines de destinataires")).to_have_value(
        "spam-exemple.com")
    check_accessibility(page)
    screenshot(page, "admin-policy")

    page.get_by_role("link", name="Stockage").click()
    expect(page.locator(".usage-total")).to_contain_text("L'organisation utilise")
    expect(page.locator("table.usage")).to_contain_text(MEMBER)
    where = ("un stockage objet S3" if backends.profile() == "distributed"
             else "un répertoire de ce serveur")
    expect(page.get_by_text(where, exact=False)).to_be_visible()

    page.get_by_role("link", name="Journal d'audit").click()
    events = page.locator("ol.events > li")
    # Issue 16, defect 11: sentences, not codes (those are behind "Détails").
    for sentence in ("a invité un membre", "Une invitation a été acceptée",
                     "a changé le rôle d'un membre", "a désactivé un membre",
                     "a modifié les règles de l'organisation", "s'est connecté"):
        expect(events.filter(has_text=sentence).first).to_be_visible()
    newest = events.first
    expect(newest).to_contain_text("a modifié les règles de l'organisation")  # newest first
    expect(newest.locator("code.action")).to_be_hidden()
    newest.get_by_text("Détails").click()
    expect(newest.locator("code.action")).to_have_text("organisation.policy_changed")
    # Filters by meaning, and a date range.
    page.get_by_label("Type d'événement").select_option(label="Administration")
    page.get_by_label("Du (jour)").fill((datetime.now(UTC) - timedelta(days=1)).date().isoformat())
    page.get_by_role("button", name="Filtrer").click()
    expect(events.filter(has_text="a désactivé un membre")).to_have_count(1)
    expect(events.filter(has_text="s'est connecté")).to_have_count(0)
    page.get_by_label("Type d'événement").select_option(label="Connexions et sécurité")
    page.get_by_role("button", name="Filtrer").click()
    expect(events.filter(has_text="s'est connecté").first).to_be_visible()
    expect(events.filter(has_text="a désactivé un membre")).to_have_count(0)
    page.get_by_label("Type d'événement").select_option(label="Sauvegardes")
    page.get_by_label("Auteur").select_option(label=MEMBER)
    page.get_by_role("button", name="Filtrer").click()
    expect(page.get_by_text("Aucun événement ne correspond à ces filtres.")).to_be_visible()
    page.get_by_role("link", name="Effacer les filtres").click()
    page.get_by_role("button", name="Vérifier l'intégrité").click()
    expect(page.locator(".verdict")).to_contain_text("Journal d'audit intact.")
    expect(page.locator(".verdict")).to_contain_text("événements vérifiés")
    expect(events.first).to_contain_text("a vérifié le journal d'audit")  # who checked
    check_accessibility(page)
    screenshot(page, "admin-audit")

    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("button", name="Verify integrity")).to_be_visible()
    expect(page.get_by_role("link", name="Members")).to_be_visible()

    phone = new_page(PHONE)
    signed_in(phone, web)
    phone.goto("/admin/audit")
    expect(phone.locator("ol.events > li").first).to_be_visible()
    fits_the_screen(phone)
    check_accessibility(phone)
    screenshot(phone, "admin-audit-phone")
    phone.goto("/admin")
    fits_the_screen(phone)


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server in dev mode without SMTP: its mail goes to the dev mailbox."""
    base = tmp_path_factory.mktemp("dev")
    server = Server(base / "data", env={"COFFRE_MODE": "dev"})
    password = base / "admin-password"
    password.write_text(ADMIN_PASSWORD)
    done = server.coffre("setup", "--email", ADMIN_EMAIL, "--password-file", str(password),
                         "--organisation", "Cabinet Exemple")
    assert done.returncode == 0, done.stderr + done.stdout
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_dev_mailbox_shows_the_mail_of_a_server_without_smtp(
        browser: Any, dev_server: Server) -> None:
    context = browser.new_context(base_url=dev_server.url, viewport=DESKTOP, locale="fr-FR")
    context.set_default_timeout(20_000)
    page = context.new_page()
    watch = ConsoleWatch(page)
    try:
        signed_in(page, Web(dev_server, None))  # type: ignore[arg-type]
        page.goto("/admin")
        page.get_by_label("Adresse e-mail").fill("remplacant@cabinet-exemple.fr")
        page.get_by_role("button", name="Envoyer l'invitation").click()
        expect(page.locator("p.notice")).to_have_text("Invitation envoyée.")
        # The mail queue delivers in the background: reload as a person would.
        mail = page.locator("article.mail", has_text="remplacant@cabinet-exemple.fr")
        deadline = time.monotonic() + 30
        while True:
            page.goto("/dev/mailbox")
            if mail.count() or time.monotonic() > deadline:
                break
            page.wait_for_timeout(500)
        expect(mail).to_have_count(1)
        expect(mail.locator("pre a").first).to_have_attribute("href", re.compile(r"/invitation/"))
        page.set_viewport_size(PHONE)
        fits_the_screen(page)
        check_accessibility(page)
        watch.check()
    finally:
        context.close()
