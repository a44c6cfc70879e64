"""The walkthrough of issue 16: what a medical secretary and a patient do
the first time, in Debian's Chromium, in French, on a desktop and at
390 px, asserting what a person sees.

A server starts empty, as after ``make run``. The secretary sets it up
and enrols an authenticator app (one wrong code first), sends a file to a
patient and a colleague (pressing "Envoyer" at the bottom of the form
with a mistake in it first), the patient opens the link on a phone, the
secretary revokes the colleague's link alone, asks the patient for files
(an upload request) and the patient deposits two from the phone; last, a
browser meets an unknown address (404) and a file of a revoked transfer
(410). At every step: the error in view and focused, French HTML pages
(never JSON), times in Europe/Paris, no horizontal scroll, touch targets
of 44 px on the phone pages, and axe at zero violations.

The tests share one server and run in order, each one step of the story.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from coffre.domain import times
from tests.conftest import totp_code
from tests.e2e.browser.conftest import (
    DESKTOP,
    PHONE,
    Fresh,
    check_accessibility,
    empty_server,
    error_in_view,
    fits_the_screen,
    screenshot,
    small_touch_targets,
)
from tests.integration.flows import wait_code, wait_for

SECRETARY = "secretariat@cabinet-tilleuls.fr"
PASSWORD = "quatre mots sans rapport entre eux"
REPORT = (b"%PDF-1.4 compte rendu IRM " + bytes(range(256)) * 64)[: 16 * 1024]
SCAN = (b"%PDF-1.4 ordonnance " + bytes(range(256)) * 120)[: 30 * 1024]
PHOTO = (b"\xff\xd8\xff carte vitale " + bytes(reversed(range(256))) * 80)[: 20 * 1024]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def address(who: str) -> str:
    return f"{who}-{uuid.uuid4().hex[:6]}@exemple.fr"


@dataclass
class Story:
    """What the earlier steps left for the later ones."""

    fresh: Fresh
    secretary: Any = None
    patient: str = address("patient")
    colleague: str = address("confrere")
    transfer_id: str = ""
    patient_link: str = ""
    colleague_link: str = ""
    file_url: str = ""
    notes: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Story]:
    with empty_server(tmp_path_factory.mktemp("walkthrough")) as fresh:
        context = browser.new_context(base_url=fresh.url, viewport=DESKTOP, locale="fr-FR",
                                      accept_downloads=True,
                                      permissions=["clipboard-read", "clipboard-write"])
        context.set_default_timeout(20_000)
        told = Story(fresh, context.new_page())
        try:
            yield told
        finally:
            context.close()


@pytest.fixture
def phone(browser: Any, story: Story) -> Iterator[Any]:
    context = browser.new_context(base_url=story.fresh.url, viewport=PHONE, locale="fr-FR",
                                  is_mobile=True, has_touch=True, accept_downloads=True)
    context.set_default_timeout(20_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def on_a_phone(page: Any) -> None:
    """What every phone page must be: no horizontal scroll, 44 px targets, axe."""
    fits_the_screen(page)
    small = small_touch_targets(page)
    assert not small, f"touch targets under 44 px: {small}"
    check_accessibility(page)


def link_in_mail(story: Story, to: str, pattern: str) -> str:
    for message in story.fresh.mail.to(to):
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        found = re.search(pattern, body.get_content())
        if found:
            return found.group(0)
    raise AssertionError(f"no {pattern} mailed to {to}")


def api_json(page: Any, path: str) -> Any:
    """The API as the signed-in page sees it (its session cookie)."""
    answer = page.request.get(path)
    assert answer.ok, answer.text()
    return answer.json()


def test_setup_and_enrolment(story: Story) -> None:
    page = story.secretary
    page.goto(story.fresh.setup_link)
    expect(page.get_by_role("heading", name="Première configuration")).to_be_visible()
    check_accessibility(page)
    page.get_by_label("Nom de l'organisation").fill("Cabinet des Tilleuls")
    page.get_by_label("Votre nom").fill("Claire Martin")
    page.get_by_label("Adresse e-mail").fill(SECRETARY)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Créer l'administrateur").click()

    # Before a factor exists, the menu offers only what works.
    expect(page).to_have_url(re.compile(r"/account/totp"))
    menu = page.get_by_role("navigation", name="Menu principal")
    expect(menu.get_by_role("link", name="Nouveau transfert")).to_have_count(0)
    secret = page.locator("#totp-secret").inner_text().strip()
    menu.get_by_role("link", name="Mon compte").click()  # a warning, not a success
    expect(page.locator(".notice.warning")).to_contain_text("Important")
    page.go_back()
    page.reload()  # the key the app scanned stays the same
    assert page.locator("#totp-secret").inner_text().strip() == secret

    # A wrong code: the QR code stays, the error is next to the field, focused.
    page.get_by_label(re.compile("Code de l'application")).fill("000000")
    page.get_by_role("button", name="Valider").click()
    assert "n'a pas été accepté" in error_in_view(page) or page.locator(
        "[role=alert]").first.is_visible()
    expect(page.get_by_role("img", name=re.compile("QR code"))).to_be_visible()
    check_accessibility(page)
    page.get_by_label(re.compile("Code de l'application")).fill(totp_code(secret))
    page.get_by_role("button", name="Valider").click()

    # Recovery codes: copied, downloaded, printable.
    expect(page.get_by_role("heading", name="Vos codes de secours")).to_be_visible()
    codes = [c.strip() for c in page.locator(".codes code").all_inner_texts()]
    assert len(codes) == 10
    with page.expect_download() as download:
        page.get_by_role("button", name="Télécharger").click()
    saved = Path(download.value.path()).read_text()
    assert all(code in saved for code in codes)
    expect(page.get_by_role("button", name="Imprimer")).to_be_visible()
    check_accessibility(page)
    screenshot(page, "walkthrough-recovery-codes")
    page.get_by_role("button", name=re.compile("Je les ai conservés")).click()

    page.get_by_label("Adresse e-mail").fill(SECRETARY)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Continuer").click()
    page.get_by_label(re.compile("Code de votre application")).fill(
        totp_code(secret, steps_ahead=1))
    page.get_by_role("button", name="Se connecter", exact=True).click()
    expect(page).to_have_url(re.compile(r"/transfers$"))
    expect(menu.get_by_role("link", name="Nouveau transfert")).to_be_visible()


def test_sending_with_an_error_at_the_bottom_of_the_form(story: Story, tmp_path: Path) -> None:
    page = story.secretary
    page.goto("/send")
    check_accessibility(page)

    # A mistyped address is marked as soon as its chip is added.
    field = page.get_by_label(re.compile("Destinataire"))
    field.fill("jean.dupont@exemple")
    field.press("Enter")
    bad = page.locator("#recipient-list li", has_text="jean.dupont@exemple")
    expect(bad).to_contain_text(re.compile("invalide|incorrecte"))
    for who in (story.patient, story.colleague):
        field.fill(who)
        field.press("Enter")
    page.get_by_label("Objet").fill("Compte rendu d'IRM")

    # "Envoyer" at the bottom, no file chosen: the error comes into view, focused.
    page.get_by_role("button", name="Envoyer", exact=True).scroll_into_view_if_needed()
    page.get_by_role("button", name="Envoyer", exact=True).click()
    said = error_in_view(page)
    assert said, "the error says nothing"
    screenshot(page, "walkthrough-send-error")

    bad.get_by_role("button").click()  # remove the bad chip
    report = tmp_path / "compte-rendu-irm.pdf"
    report.write_bytes(REPORT)
    page.locator("#file-input").set_input_files(report)
    page.get_by_role("button", name="Envoyer", exact=True).click()  # waits for the upload
    page.wait_for_url(re.compile(r"/transfers/[0-9a-f]+"))
    expect(page.locator(".notice").first).to_contain_text("Transfert envoyé")
    story.transfer_id = re.search(r"/transfers/([0-9a-f]+)", page.url).group(1)  # type: ignore[union-attr]

    # Times in Europe/Paris, as the API's UTC time reads in Paris.
    sent = api_json(page, f"/api/v1/transfers/{story.transfer_id}")
    expect(page.locator("main")).to_contain_text(times.people(sent["expires_at"]))
    assert "UTC" not in page.locator("main").inner_text()
    check_accessibility(page)
    screenshot(page, "walkthrough-transfer")
    story.patient_link = story.fresh.mail.link_for(story.patient)
    mailed = story.fresh.mail.to(story.patient)[0].get_body(preferencelist=("plain",))
    assert times.people(sent["expires_at"]) in mailed.get_content()  # Paris time in mail too
    assert "UTC" not in mailed.get_content()
    story.colleague_link = story.fresh.mail.link_for(story.colleague)


def test_a_patients_first_visit_on_a_phone(story: Story, phone: Any) -> None:
    page = phone
    page.goto(story.patient_link)
    on_a_phone(page)
    screenshot(page, "walkthrough-recipient-phone")
    page.get_by_role("button", name=re.compile("Recevoir mon code")).click()
    expect(page.get_by_role("status")).to_contain_text("a été envoyé par e-mail")
    code_field = page.get_by_label("Code reçu par e-mail")
    expect(code_field).to_be_focused()
    code_field.fill(wait_code(story.fresh.mail, story.patient, 1))
    page.get_by_role("button", name="Valider").click()
    download_link = page.get_by_role("link", name="Télécharger compte-rendu-irm.pdf")
    expect(download_link).to_be_visible()
    sent = api_json(story.secretary, f"/api/v1/transfers/{story.transfer_id}")
    expect(page.locator("main")).to_contain_text(times.people(sent["expires_at"]))
    on_a_phone(page)
    screenshot(page, "walkthrough-recipient-files-phone")
    with page.expect_download() as download:
        download_link.click()
    assert sha256(Path(download.value.path()).read_bytes()) == sha256(REPORT)
    story.file_url = download_link.get_attribute("href") or ""


def test_revoking_one_recipient(story: Story, phone: Any) -> None:
    page = story.secretary
    page.goto(f"/transfers/{story.transfer_id}")
    row = page.locator("li.recipient", has_text=story.colleague)
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name=re.compile("Révoquer ce lien")).click()
    expect(row).to_contain_text(re.compile("[Rr]évoqué"))
    # The patient's line is untouched, in the same words as on the dashboard.
    patient_row = page.locator("li.recipient", has_text=story.patient)
    state = patient_row.locator(".recipient-state").inner_text()
    page.goto("/transfers")
    card = page.locator(".transfer-card", has_text="Compte rendu d'IRM").first
    expect(card.locator("li", has_text=story.patient).locator(".recipient-state")).to_have_text(
        state)

    answer = phone.goto(story.colleague_link)
    assert answer.status == 410
    assert "text/html" in answer.headers["content-type"]
    expect(phone.get_by_role("heading", name="Lien révoqué")).to_be_visible()
    on_a_phone(phone)
    answer = phone.goto(story.patient_link)
    assert answer.status in {200, 401}  # the patient's link still opens


def test_an_upload_request_and_a_patients_deposit(story: Story, phone: Any,
                                                  tmp_path: Path) -> None:
    page = story.secretary
    page.goto("/requests")
    page.get_by_label("Adresses e-mail des déposants").fill(story.patient)
    page.get_by_label("Message aux déposants").fill("Merci de déposer votre ordonnance.")
    page.get_by_role("button", name="Envoyer la demande").click()
    expect(page.get_by_role("status").first).to_contain_text("La demande a été créée")
    page.reload()  # a reload after creating does not create or mail twice
    deposit_mails = [m for m in story.fresh.mail.to(story.patient) if "/d/" in str(m)]
    assert len(deposit_mails) == 1
    assert len(api_json(page, "/api/v1/requests")) == 1

    link = link_in_mail(story, story.patient, r"https?://\S+/d/[A-Za-z0-9_-]+")
    phone.goto(link)
    on_a_phone(phone)
    phone.get_by_role("button", name=re.compile("Recevoir mon code")).click()
    phone.get_by_label("Code reçu par e-mail").fill(wait_code(story.fresh.mail, story.patient, 2))
    phone.get_by_role("button", name="Valider").click()
    files = {"ordonnance.pdf": SCAN, "carte-vitale.jpg": PHOTO}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    phone.get_by_label("Choisir des fichiers").set_input_files(
        [str(tmp_path / name) for name in files])
    chosen = phone.locator("#chosen li")
    expect(chosen).to_have_count(2)  # listed before sending
    on_a_phone(phone)
    screenshot(phone, "walkthrough-deposit-chosen-phone")
    phone.get_by_role("button", name="Envoyer 2 fichiers").click()
    expect(phone.get_by_role("heading", name="Vos 2 fichiers ont été remis")).to_be_visible()
    on_a_phone(phone)
    screenshot(phone, "walkthrough-deposit-done-phone")

    # The secretary's mail links to a page, not to JSON.
    received = wait_for(lambda: [
        m for m in story.fresh.mail.to(SECRETARY) if "déposé" in str(m.get("Subject", ""))
        or "dépos" in m.get_body(preferencelist=("plain",)).get_content()], timeout=30)
    assert received, "no mail about the deposit"
    body = received[-1].get_body(preferencelist=("plain",)).get_content()
    url = re.search(r"https?://\S+", body.split("\n\n", 1)[-1])
    assert url and "/api/" not in url.group(0)
    answer = page.goto(url.group(0))
    assert answer.ok and "text/html" in answer.headers["content-type"]
    for name in files:
        expect(page.locator("main")).to_contain_text(name)
    check_accessibility(page)


def test_a_browser_meets_404_and_410_pages(story: Story, phone: Any) -> None:
    page = story.secretary
    answer = page.goto("/nimporte-quoi")
    assert answer.status == 404 and "text/html" in answer.headers["content-type"]
    expect(page.get_by_role("heading", level=1)).to_contain_text("introuvable")
    expect(page.get_by_role("link", name="Coffre")).to_be_visible()  # in the site's frame
    check_accessibility(page)
    screenshot(page, "walkthrough-404")
    api = httpx.get(f"{story.fresh.url}/nimporte-quoi", headers={"Accept": "application/json"})
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"

    # The whole transfer revoked: the patient's file URL answers a French 410 page.
    page.goto(f"/transfers/{story.transfer_id}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Révoquer", exact=True).click()
    expect(page.get_by_role("button", name="Révoquer", exact=True)).to_have_count(0)
    answer = phone.goto(story.file_url)
    assert answer.status == 410 and "text/html" in answer.headers["content-type"]
    expect(phone.get_by_role("heading", level=1)).to_be_visible()
    assert "{" not in phone.locator("main").inner_text()
    on_a_phone(phone)
    screenshot(phone, "walkthrough-410-phone")
