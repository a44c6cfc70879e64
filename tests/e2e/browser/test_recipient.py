"""A recipient's link in a real browser: the code from the real mail, the
file list with sizes and SHA-256, downloads checked byte for byte (one
file and the ZIP), and the clear pages for revoked, expired and unknown
links — on a phone, in French, and in English."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import login
from tests.e2e.browser.conftest import (
    PHONE,
    Web,
    check_accessibility,
    fits_the_screen,
    screenshot,
    small_touch_targets,
)
from tests.integration.flows import audit_events, code_mails, make_transfer, wait_code
from tests.integration.support import api_client, expire, new_address

REPORT = (b"%PDF-1.4 compte rendu " + bytes(range(256)) * 40)[:10 * 1024]  # 10,0 Ko
IMAGE = (b"\x89PNG radio " + bytes(reversed(range(256))) * 80)[:20 * 1024]  # 20,0 Ko


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def client(web: Web) -> Any:
    with api_client(web.server, login(web.url)) as made:
        yield made


def send(client: httpx.Client, web: Web, files: dict[str, bytes]) -> tuple[str, str, str]:
    """A transfer to a fresh address: (transfer id, address, the mailed link)."""
    address = new_address()
    transfer = make_transfer(client, files, [address], subject="Résultats d'examens")
    return transfer["id"], address, web.mail.link_for(address)


def content_touch_targets(page: Any) -> list[str]:
    """Targets under 44 px in what this page shows; the frame's own (brand,
    language switch) are the frame's tests' and the walkthrough's."""
    frame = page.evaluate("""Array.from(document.querySelectorAll(
        'header a, header button, footer a, footer button')).map((e) => e.textContent.trim())""")
    return [t for t in small_touch_targets(page) if t.rsplit(" ", 1)[0] not in frame]


def test_a_recipient_opens_the_link_on_a_phone_and_downloads(
        phone_page: Any, web: Web, client: httpx.Client, tmp_path: Path) -> None:
    page = phone_page
    files = {"Compte rendu IRM é.pdf": REPORT, "radio.png": IMAGE}
    transfer_id, address, link = send(client, web, files)
    # Opening the link sends nothing (mail scanners open links too): one
    # obvious first step, and the page says no code was sent yet.
    assert page.goto(link).status == 401
    expect(page.get_by_role("heading", name="Confirmez que ce lien vous est destiné")
           ).to_be_visible()
    local, domain = address.split("@")
    expect(page.locator("main")).to_contain_text(
        f"Nous allons vous envoyer un code à 8 chiffres par e-mail à {local[0]}•••@{domain}. "
        "Aucun code n'a encore été envoyé.")
    expect(page.get_by_label("Code reçu par e-mail")).to_have_count(0)
    assert not code_mails(web.mail, address)
    fits_the_screen(page)
    assert not content_touch_targets(page)
    check_accessibility(page)
    screenshot(page, "recipient-code-phone")

    page.get_by_role("button", name="Recevoir mon code par e-mail").click()
    # The page says what happened (to whom, when) and the field is ready.
    expect(page.get_by_role("status")).to_have_text(re.compile(
        rf"Un code à 8 chiffres a été envoyé par e-mail à {local[0]}•••@{re.escape(domain)} "
        r"à \d\d:\d\d"))
    field = page.get_by_label("Code reçu par e-mail")
    expect(field).to_be_focused()
    assert field.get_attribute("autocomplete") == "one-time-code"
    assert field.get_attribute("inputmode") == "numeric"
    code = wait_code(web.mail, address, 1)
    sent = [e for e in audit_events(web.server.data_dir, "link.code_sent")
            if e["details"].get("transfer") == transfer_id]
    assert [e["details"]["channel"] for e in sent] == ["email"]
    expect(page.get_by_role("button", name="Renvoyer le code")).to_be_visible()
    fits_the_screen(page)
    assert not content_touch_targets(page)
    check_accessibility(page)
    screenshot(page, "recipient-code-sent-phone")
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    field.fill(wrong)
    page.get_by_role("button", name="Valider").click()
    # The error sits under the field, which keeps the focus.
    expect(page.get_by_role("alert")).to_have_text("Code incorrect. Il vous reste 4 essais.")
    expect(field).to_be_focused()
    expect(field).to_have_attribute("aria-invalid", "true")

    field.fill(code)
    page.get_by_role("button", name="Valider").click()
    expect(page.get_by_role("heading", name="Résultats d'examens")).to_be_visible()
    for name, data in files.items():
        item = page.get_by_role("listitem").filter(has_text=name)
        expect(item.locator("code.hash")).to_have_text(sha256(data))
        expect(item.locator("code.hash")).to_be_hidden()  # behind "Détails techniques"
        item.get_by_text("Détails techniques").click()
        expect(item.locator("code.hash")).to_be_visible()  # the hash wraps, it is not cut
    expect(page.get_by_text("10,0 Ko")).to_be_visible()  # French units
    fits_the_screen(page)
    assert not content_touch_targets(page)
    check_accessibility(page)
    screenshot(page, "recipient-files-phone")

    with page.expect_download() as download:
        page.get_by_role("link", name="Télécharger radio.png").click()
    assert download.value.suggested_filename == "radio.png"
    assert sha256(Path(download.value.path()).read_bytes()) == sha256(IMAGE)

    with page.expect_download() as archive:
        page.get_by_role("link", name="Tout télécharger").click()
    with zipfile.ZipFile(io.BytesIO(Path(archive.value.path()).read_bytes())) as zipped:
        assert {n: sha256(zipped.read(n)) for n in zipped.namelist()} == {
            n: sha256(d) for n, d in files.items()}

    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("link", name="Download all (ZIP, 30.0 KB)")).to_be_visible()
    expect(page.get_by_text("Check the SHA-256 fingerprint after downloading")).to_be_visible()
    fits_the_screen(page)


def test_code_page_and_file_list_on_a_desktop_in_english(
        page: Any, web: Web, client: httpx.Client) -> None:
    _, address, link = send(client, web, {"bilan.txt": b"bilan sanguin\n"})
    page.goto(link)
    screenshot(page, "recipient-code")
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="Confirm that this link is meant for you")
           ).to_be_visible()
    expect(page.get_by_text("No code has been sent yet.")).to_be_visible()
    page.get_by_role("button", name="Get my code by e-mail").click()
    expect(page.get_by_role("status")).to_contain_text("An 8-digit code was sent by e-mail to")
    expect(page.get_by_label("Code received by e-mail")).to_be_focused()
    page.get_by_label("Code received by e-mail").fill(wait_code(web.mail, address, 1))
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("link", name="Download bilan.txt")).to_be_visible()
    page.get_by_text("Technical details").click()
    expect(page.get_by_text(sha256(b"bilan sanguin\n"))).to_be_visible()
    check_accessibility(page)
    page.get_by_role("button", name="Français").click()
    expect(page.get_by_role("link", name="Télécharger bilan.txt")).to_be_visible()
    screenshot(page, "recipient-files")


def test_revoked_expired_and_unknown_links_have_clear_pages(
        phone_page: Any, web: Web, client: httpx.Client) -> None:
    page = phone_page
    revoked, _, revoked_link = send(client, web, {"a.txt": b"a"})
    assert client.post(f"/api/v1/transfers/{revoked}/revoke").status_code == 200
    expired, _, expired_link = send(client, web, {"b.txt": b"b"})
    expire(web.server, expired)

    assert page.goto(revoked_link).status == 410
    expect(page.get_by_role("heading", name="Lien révoqué")).to_be_visible()
    expect(page.get_by_text("L'expéditeur a révoqué ce transfert.")).to_be_visible()
    check_accessibility(page)
    fits_the_screen(page)

    assert page.goto(expired_link).status == 410
    expect(page.get_by_role("heading", name="Lien expiré")).to_be_visible()
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="Link expired")).to_be_visible()
    expect(page.get_by_text("Ask the sender to send them to you again.")).to_be_visible()

    assert page.goto(f"{web.url}/t/{'x' * 43}").status == 404
    expect(page.get_by_role("heading", name="Unknown link")).to_be_visible()
    screenshot(page, "recipient-gone-phone")
    assert page.viewport_size == PHONE
