"""A recipient's link in a real browser: the code from the real mail, the
file list with sizes and SHA-256, downloads checked byte for byte (one
file and the ZIP), and the clear pages for revoked, expired and unknown
links — on a phone, in French, and in English."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import login
from tests.e2e.browser.conftest import PHONE, Web, check_accessibility, screenshot
from tests.integration.flows import make_transfer, wait_code
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


def no_horizontal_scroll(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_a_recipient_opens_the_link_on_a_phone_and_downloads(
        phone_page: Any, web: Web, client: httpx.Client, tmp_path: Path) -> None:
    page = phone_page
    files = {"Compte rendu IRM é.pdf": REPORT, "radio.png": IMAGE}
    _, address, link = send(client, web, files)
    assert page.goto(link).status == 401
    expect(page.get_by_role("heading", name="Confirmez que ce lien vous est destiné")
           ).to_be_visible()
    check_accessibility(page)
    screenshot(page, "recipient-code-phone")

    page.get_by_role("button", name="Recevoir un code").click()
    expect(page.get_by_role("status")).to_contain_text(
        "Un code vient de vous être envoyé par e-mail")
    code = wait_code(web.mail, address, 1)
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    page.get_by_label("Code reçu par e-mail").fill(wrong)
    page.get_by_role("button", name="Valider").click()
    expect(page.get_by_role("alert")).to_have_text("Code incorrect. Il vous reste 4 essais.")

    page.get_by_label("Code reçu par e-mail").fill(code)
    page.get_by_role("button", name="Valider").click()
    expect(page.get_by_role("heading", name="Résultats d'examens")).to_be_visible()
    for name, data in files.items():
        item = page.get_by_role("listitem").filter(has_text=name)
        expect(item.locator("code.hash")).to_have_text(sha256(data))
        expect(item.locator("code.hash")).to_be_hidden()  # behind "Détails techniques"
        item.get_by_text("Détails techniques").click()
        expect(item.locator("code.hash")).to_be_visible()  # the hash wraps, it is not cut
    expect(page.get_by_text("10,0 Ko")).to_be_visible()  # French units
    no_horizontal_scroll(page)
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
    no_horizontal_scroll(page)


def test_code_page_and_file_list_on_a_desktop_in_english(
        page: Any, web: Web, client: httpx.Client) -> None:
    _, address, link = send(client, web, {"bilan.txt": b"bilan sanguin\n"})
    page.goto(link)
    screenshot(page, "recipient-code")
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="Confirm that this link is meant for you")
           ).to_be_visible()
    page.get_by_role("button", name="Get a code").click()
    expect(page.get_by_role("status")).to_contain_text("A code has just been sent to you by e-mail")
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
    no_horizontal_scroll(page)

    assert page.goto(expired_link).status == 410
    expect(page.get_by_role("heading", name="Lien expiré")).to_be_visible()
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="Link expired")).to_be_visible()
    expect(page.get_by_text("Ask the sender to send them to you again.")).to_be_visible()

    assert page.goto(f"{web.url}/t/{'x' * 43}").status == 404
    expect(page.get_by_role("heading", name="Unknown link")).to_be_visible()
    screenshot(page, "recipient-gone-phone")
    assert page.viewport_size == PHONE
