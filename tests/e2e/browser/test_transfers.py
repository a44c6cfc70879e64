"""The sender's pages in a real browser: new transfer (tus uploads,
resumed after a reload), the transfer's page and the dashboard kept live
by Server-Sent Events, and the recipients downloading from their mail."""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.conftest import login
from tests.e2e.browser.conftest import (
    Web,
    check_accessibility,
    fits_the_screen,
    screenshot,
    signed_in,
)
from tests.integration.flows import upload_bytes, wait_code

MB = 1 << 20


def _address(who: str) -> str:
    return f"{who}-{uuid.uuid4().hex[:8]}@exemple.fr"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hashes_shown(page: Any, digests: list[str], summary: str = "Détails techniques") -> None:
    """SHA-256 lines are folded away until "Technical details" is opened."""
    for digest in digests:
        expect(page.get_by_text(digest)).to_be_hidden()
    details = page.locator("details.technical summary", has_text=summary)
    for index in range(details.count()):
        details.nth(index).click()
    for digest in digests:
        expect(page.get_by_text(digest)).to_be_visible()


def _focused_and_seen(page: Any, element_id: str) -> None:
    """The element has the focus, and it and its message are in the viewport."""
    assert page.evaluate("document.activeElement.id") == element_id
    for shown in (element_id, f"{element_id}-error"):
        box = page.evaluate(f"(() => {{ const r = document.getElementById('{shown}')"
                            ".getBoundingClientRect(); return [r.top, r.bottom]; })()")
        height = page.evaluate("window.innerHeight")
        assert box[0] >= 0 and box[1] <= height, (shown, box, height)


def _policy(web: Web, **limits: Any) -> None:
    token = login(web.url, scopes=["transfers:read", "transfers:write", "admin"])
    done = httpx.patch(f"{web.url}/api/v1/organisation", json=limits,
                       headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert done.status_code == 200, done.text


def _contact(web: Web, email: str, name: str) -> None:
    token = login(web.url)
    made = httpx.post(f"{web.url}/api/v1/contacts", json={"email": email, "name": name},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert made.status_code in {200, 201}, made.text


def _user_quota(web: Web, size: int | None) -> None:
    """The organisation's per-user quota (administrator's API)."""
    token = login(web.url, scopes=["transfers:read", "transfers:write", "admin"])
    done = httpx.patch(f"{web.url}/api/v1/organisation", json={"user_quota": size},
                       headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert done.status_code == 200, done.text


def _add_recipient(page: Any, address: str) -> None:
    field = page.locator("#recipient-input")
    field.fill(address)
    field.press("Enter")
    expect(page.locator("#recipient-list")).to_contain_text(address)


def _open_and_download(recipient: Any, web: Web, address: str,
                       sources: dict[str, Path]) -> None:
    """The recipient opens the mailed link, gets the code by mail, enters it,
    downloads each file and the ZIP; every byte checked against the source."""
    recipient.goto(web.mail.link_for(address))
    recipient.locator("form[action$='/code'] button[type=submit]").click()
    recipient.locator("input[name=code]").fill(wait_code(web.mail, address, 1))
    recipient.locator("form[action$='/verify'] button[type=submit]").click()
    links = recipient.locator("a[href*='/files/']")
    expect(links).to_have_count(len(sources))
    for index in range(len(sources)):
        with recipient.expect_download() as download:
            links.nth(index).click()
        got = Path(download.value.path())
        name = download.value.suggested_filename
        assert _sha256(got) == _sha256(sources[name]), name
    with recipient.expect_download() as download:
        recipient.locator("a[href$='archive.zip']").click()
    with zipfile.ZipFile(download.value.path()) as archive:
        assert sorted(archive.namelist()) == sorted(sources)
        for name, source in sources.items():
            with archive.open(name) as member:
                assert hashlib.sha256(member.read()).hexdigest() == _sha256(source)


def test_two_files_to_two_recipients_followed_live(page: Any, web: Web, new_page: Any,
                                                    tmp_path: Path) -> None:
    big = tmp_path / "irm-genou.bin"
    big.write_bytes(os.urandom(50 * MB))
    small = tmp_path / "compte-rendu.txt"
    small.write_bytes(b"Compte rendu : genou droit, RAS.\n")
    sources = {big.name: big, small.name: small}
    alice, bob = _address("alice"), _address("bob")
    signed_in(page, web)
    _user_quota(web, 4 << 30)

    page.goto("/send")
    check_accessibility(page)
    expect(page.locator("#files-hint")).to_contain_text("Espace disponible")
    page.locator("#file-input").set_input_files([big, small])
    _add_recipient(page, alice)
    _add_recipient(page, bob)
    page.get_by_label("Objet").fill("IRM du genou")
    page.get_by_label("Message aux destinataires").fill("Bonjour,\nvoici les images.")
    # Polled from here: wait_for_function would evaluate a string in the page,
    # which its Content-Security-Policy (rightly) refuses.
    deadline = time.monotonic() + 60
    while not page.evaluate("document.getElementById('overall-progress').value > 0"):
        assert time.monotonic() < deadline, "the upload did not start"
        page.wait_for_timeout(50)
    screenshot(page, "transfers-new")
    expect(page.locator(".upload[data-state=done]")).to_have_count(2, timeout=60_000)
    expect(page.locator("#overall-text")).to_have_text("100 %")
    page.get_by_role("button", name="Envoyer", exact=True).click()

    page.wait_for_url(re.compile(r"/transfers/[0-9a-f]+\?done=created"))
    expect(page.locator(".notice")).to_contain_text("Transfert envoyé")
    _hashes_shown(page, [_sha256(source) for source in sources.values()])
    check_accessibility(page)
    screenshot(page, "transfers-detail")

    # Alice downloads: her status on the open page changes without a reload.
    page.evaluate("window.stillTheSamePage = true")
    alice_row = page.locator("li.recipient", has_text=alice)
    expect(alice_row.locator(".recipient-state")).to_have_text("Envoyé")
    _open_and_download(new_page(), web, alice, sources)
    expect(alice_row.locator(".recipient-state")).to_have_text("Téléchargé")
    expect(alice_row.locator(".timeline")).to_contain_text("Code vérifié")
    expect(alice_row.locator(".timeline")).to_contain_text("Téléchargé (ZIP)")
    assert page.evaluate("window.stillTheSamePage") is True

    # Bob downloads while the dashboard is open: his card follows.
    page.goto("/transfers")
    check_accessibility(page)
    card = page.locator(".transfer-card", has_text="IRM du genou").first
    expect(card.locator("li", has_text=bob).locator(".recipient-state")).to_have_text("Envoyé")
    page.evaluate("window.stillTheSamePage = true")
    _open_and_download(new_page(), web, bob, sources)
    expect(card.locator("li", has_text=bob).locator(".recipient-state")).to_have_text(
        "Téléchargé")
    # Two files, then the ZIP: three downloads as Bob made them (not four files).
    expect(card.locator("li", has_text=bob)).to_contain_text("(3 téléchargements)")
    assert page.evaluate("window.stillTheSamePage") is True
    expect(page.locator("#usage-text")).to_contain_text("utilisés sur 4,0 Go")
    expect(page.locator("progress.usage-bar")).to_be_visible()
    screenshot(page, "transfers-dashboard")

    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="Sent transfers")).to_be_visible()
    card.get_by_role("link", name="IRM du genou").click()
    expect(page.locator("li.recipient", has_text=bob).locator(".recipient-state")).to_have_text(
        "Downloaded")


def test_an_upload_cut_by_a_reload_resumes_from_the_server_offset(
        page: Any, web: Web, tmp_path: Path) -> None:
    source = tmp_path / "scanner-thorax.bin"
    source.write_bytes(os.urandom(20 * MB))
    signed_in(page, web)
    page.goto("/send")

    # The first 8 MiB chunk goes through; the second never leaves the
    # browser, and the page is reloaded meanwhile.
    held: list[Any] = []

    def cut(route: Any) -> None:
        if route.request.method == "PATCH" and held.count("sent") >= 1:
            held.append(route)  # left pending: the reload cancels it
            return
        if route.request.method == "PATCH":
            held.append("sent")
        route.continue_()

    page.route(lambda url: "/api/v1/uploads/" in url, cut)
    page.locator("#file-input").set_input_files(source)

    def server_offset() -> tuple[int, int]:
        listed = page.request.get(f"{web.url}/api/v1/uploads/").json()
        mine = [u for u in listed if u["metadata"].get("filename") == source.name]
        return (mine[0]["offset"], mine[0]["length"]) if mine else (0, 0)

    deadline = time.monotonic() + 30
    while server_offset()[0] == 0:  # waits for the first chunk to be stored
        assert time.monotonic() < deadline, "the first chunk never arrived"
        page.wait_for_timeout(100)

    page.reload()  # cancels the held chunk: it never reaches the server
    page.unroute_all(behavior="ignoreErrors")
    offset, length = server_offset()
    assert 0 < offset < length == 20 * MB, (offset, length)
    page.locator("#file-input").set_input_files(source)
    item = page.locator(".upload")
    expect(item).to_have_attribute("data-resumed-from", str(offset))
    expect(item.locator(".upload-note")).to_have_text(f"Repris à {100 * offset // length} %")
    expect(item).to_have_attribute("data-state", "done", timeout=30_000)
    _add_recipient(page, _address("carole"))
    page.get_by_role("button", name="Envoyer", exact=True).click()
    page.wait_for_url(re.compile(r"/transfers/[0-9a-f]+\?done=created"))
    _hashes_shown(page, [_sha256(source)])


def test_on_a_phone_in_english_send_then_extend_forward_revoke_delete(
        phone_page: Any, web: Web, tmp_path: Path) -> None:
    page = phone_page
    page.on("dialog", lambda dialog: dialog.accept())
    note = tmp_path / "ordonnance.pdf"
    note.write_bytes(b"%PDF-1.4 ordonnance " + os.urandom(2000))
    signed_in(page, web)
    page.goto("/send")
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="New transfer")).to_be_visible()
    fits_the_screen(page)
    check_accessibility(page)

    # Sending with no file, or a file over the quota, is refused clearly.
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#file-input-error")).to_have_text("Add at least one file.")
    expect(page.locator("#send-error")).to_contain_text("Add at least one file.")
    _user_quota(web, 1)
    try:
        page.locator("#file-input").set_input_files(note)
        expect(page.locator(".upload[data-state=failed] .upload-status")).to_contain_text(
            "Your storage quota is full")
        page.get_by_role("button", name=f"Remove {note.name}").click()
        expect(page.locator(".upload")).to_have_count(0)
    finally:
        _user_quota(web, None)
    page.locator("#file-input").set_input_files(note)
    _add_recipient(page, _address("dora"))
    expect(page.locator(".upload[data-state=done]")).to_have_count(1)
    expect(page.locator(".upload-status")).to_have_text("Uploaded")
    fits_the_screen(page)
    screenshot(page, "transfers-new-phone")
    page.get_by_label("Subject").fill("Ordonnance")
    _add_recipient(page, "pas-une-adresse@exemple")
    expect(page.locator("#recipient-list li[data-invalid]")).to_contain_text("invalid address")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#send-error")).to_have_text(
        "An address is not valid: correct it, or remove it.")
    _focused_and_seen(page, "recipient-input")
    fits_the_screen(page)
    check_accessibility(page)
    page.get_by_role("button", name="Remove pas-une-adresse@exemple").click()
    page.get_by_role("button", name="Send", exact=True).click()

    page.wait_for_url(re.compile(r"/transfers/[0-9a-f]+\?done=created"))
    expect(page.locator(".notice")).to_have_text(
        "Transfer sent: each recipient gets their own link by e-mail.")
    _hashes_shown(page, [_sha256(note)], "Technical details")
    fits_the_screen(page)
    check_accessibility(page)
    screenshot(page, "transfers-detail-phone")

    page.get_by_label("New expiry, in days from now").fill("20")
    page.get_by_role("button", name="Change the expiry").click()
    expect(page.locator(".notice")).to_have_text("Expiry changed.")

    page.get_by_label("Forward the files to a new recipient").fill(_address("emile"))
    page.get_by_role("button", name="Forward", exact=True).click()
    expect(page.locator(".notice")).to_have_text("Files forwarded: this is the new transfer.")
    expect(page.get_by_role("heading", name="Ordonnance")).to_be_visible()
    _hashes_shown(page, [_sha256(note)], "Technical details")

    page.get_by_label("Reason for the legal hold").fill("Litige en cours")
    page.get_by_role("button", name="Place a legal hold").click()
    expect(page.locator(".notice")).to_have_text("Legal hold placed.")
    expect(page.get_by_role("button", name="Delete the transfer")).to_have_count(0)
    page.get_by_label("Reason for the legal hold").fill("Litige clos")
    page.get_by_role("button", name="Lift the legal hold").click()
    expect(page.locator(".notice")).to_have_text("Legal hold lifted.")

    page.get_by_role("button", name="Revoke", exact=True).click()
    expect(page.locator(".notice")).to_have_text("Transfer revoked: its links no longer open.")
    expect(page.locator(".transfer-detail .state")).to_have_text("Revoked")

    page.get_by_role("button", name="Delete the transfer").click()
    page.wait_for_url(re.compile(r"/transfers\?done=deleted"))
    expect(page.locator(".notice")).to_have_text("Transfer deleted: its files are destroyed.")
    fits_the_screen(page)
    check_accessibility(page)
    screenshot(page, "transfers-dashboard-phone")


def test_a_program_is_refused_with_a_clear_message(page: Any, web: Web, tmp_path: Path) -> None:
    """SEC-19: by its name when the upload starts, by its first bytes when
    they arrive (a Windows program renamed .pdf); the sender reads why."""
    from tests.unit.test_filetypes import pe_file

    named = tmp_path / "installer.exe"
    named.write_bytes(b"%PDF-1.4 " + os.urandom(100))
    disguised = tmp_path / "resultats.pdf"
    disguised.write_bytes(pe_file() + os.urandom(5000))
    signed_in(page, web)
    page.goto("/send")
    for source in (named, disguised):
        page.locator("#file-input").set_input_files(source)
        item = page.locator(".upload").filter(has_text=source.name)
        expect(item).to_have_attribute("data-state", "failed", timeout=30_000)
        expect(item.locator(".upload-status")).to_contain_text(
            "Votre organisation refuse les programmes et scripts")
        page.get_by_role("button", name=f"Retirer {source.name}").click()
        expect(page.locator(".upload")).to_have_count(0)


def _state(page: Any, address: str) -> Any:
    return page.locator("li.recipient", has_text=address).locator(".recipient-state")


def test_links_to_copy_one_state_everywhere_collapsed_timeline_and_one_recipient_revoked(
        page: Any, web: Web, new_page: Any, tmp_path: Path) -> None:
    """Issue 16: the personal links shown once after sending, with "Copier
    le lien" and a QR code; one recipient's state the same on the dashboard
    and the transfer's page; repeated steps on one line; one recipient's
    link revoked while the other's still opens."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.on("dialog", lambda dialog: dialog.accept())
    note = tmp_path / "compte-rendu.txt"
    note.write_bytes(b"Compte rendu de consultation.\n")
    alice, bob = _address("alice"), _address("bob")
    signed_in(page, web)
    page.goto("/send")
    page.locator("#file-input").set_input_files(note)
    _add_recipient(page, alice)
    _add_recipient(page, bob)
    page.get_by_label("Objet").fill("Compte rendu partagé")
    expect(page.locator(".upload[data-state=done]")).to_have_count(1)
    page.get_by_role("button", name="Envoyer", exact=True).click()
    page.wait_for_url(re.compile(r"/transfers/[0-9a-f]+\?done=created"))
    detail = page.url.split("?")[0]

    alice_row = page.locator("li.recipient", has_text=alice)
    field = alice_row.get_by_label(f"Lien personnel (affiché cette fois seulement) ({alice})")
    link = field.input_value()
    assert link == web.mail.link_for(alice)
    alice_row.get_by_role("button", name="Copier le lien").click()
    expect(alice_row.get_by_role("status").filter(has_text="Lien copié")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == link
    alice_row.get_by_text("Afficher le QR code").click()
    expect(alice_row.get_by_role("img", name=f"QR code du lien personnel de {alice}")
           ).to_be_visible()
    check_accessibility(page)
    screenshot(page, "transfers-links")
    page.reload()  # shown once: the links are not kept
    expect(page.get_by_role("button", name="Copier le lien")).to_have_count(0)

    # Alice opens her link four times and asks for a code: "Code envoyé"
    # on both pages; "Lien ouvert" once in her timeline, counted.
    token = link.rsplit("/", 1)[-1]
    for _ in range(2):
        assert httpx.get(f"{web.url}/api/v1/links/{token}").status_code == 401
    assert httpx.post(f"{web.url}/api/v1/links/{token}/code").status_code == 202
    expect(_state(page, alice)).to_have_text("Code envoyé")  # live
    for _ in range(2):
        assert httpx.get(f"{web.url}/api/v1/links/{token}").status_code == 401
    opened_line = alice_row.locator(".timeline li", has_text="Lien ouvert")
    expect(opened_line).to_have_count(1)
    expect(opened_line).to_contain_text(re.compile(r"4 fois, dernière le \d\d/\d\d/\d{4}"))
    page.reload()
    expect(opened_line).to_contain_text(re.compile(r"4 fois, dernière le \d\d/\d\d/\d{4}"))
    expect(_state(page, alice)).to_have_text("Code envoyé")
    page.goto("/transfers")
    card = page.locator(".transfer-card", has_text="Compte rendu partagé")
    expect(card.locator("li", has_text=alice).locator(".recipient-state")).to_have_text(
        "Code envoyé")

    # Alice's link alone is revoked: hers answers "Lien révoqué", Bob's opens.
    page.goto(detail)
    alice_row.get_by_role("button", name="Révoquer ce lien").click()
    expect(page.locator(".notice")).to_contain_text("Le lien de ce destinataire est révoqué")
    expect(_state(page, alice)).to_have_text("Lien révoqué")
    expect(_state(page, bob)).to_have_text("Envoyé")
    expect(alice_row.get_by_role("button", name="Révoquer ce lien")).to_have_count(0)
    expect(page.locator("li.recipient", has_text=bob).get_by_role(
        "button", name="Révoquer ce lien")).to_have_count(1)
    expect(alice_row.locator(".timeline")).to_contain_text("Lien révoqué par l'expéditeur")
    check_accessibility(page)
    recipient = new_page()
    answer = recipient.goto(link)
    assert answer is not None and answer.status == 410
    expect(recipient.get_by_role("heading", name="Lien révoqué")).to_be_visible()
    other = new_page()
    answer = other.goto(web.mail.link_for(bob))
    assert answer is not None and answer.status in {200, 401}
    expect(other.get_by_role("heading", name="Lien révoqué")).to_have_count(0)
    page.goto("/transfers")
    expect(card.locator("li", has_text=alice).locator(".recipient-state")).to_have_text(
        "Lien révoqué")


def test_extending_a_revoked_transfer_shows_an_error(page: Any, web: Web) -> None:
    token = login(web.url)
    with httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as client:
        upload = upload_bytes(client, b"ordonnance", "ordonnance.txt")
        made = client.post("/api/v1/transfers", json={
            "files": [upload], "recipients": [_address("claire")], "subject": "Ordonnance"})
        assert made.status_code == 201, made.text
        transfer = made.json()["id"]
        signed_in(page, web)
        page.goto(f"/transfers/{transfer}")
        # Revoked meanwhile (another tab, a colleague): the page still offers it.
        assert client.post(f"/api/v1/transfers/{transfer}/revoke").status_code == 200
    page.get_by_label("Nouvelle expiration, en jours à partir de maintenant").fill("30")
    page.get_by_role("button", name="Modifier l'expiration").click()
    expect(page.get_by_role("alert")).to_contain_text("Ce transfert est révoqué")
    expect(page.locator(".transfer-detail .state")).to_have_text("Révoqué")
    expect(page.get_by_role("button", name="Modifier l'expiration")).to_have_count(0)
    check_accessibility(page)


def test_errors_at_the_bottom_of_the_form_are_shown_where_the_sender_is(
        page: Any, web: Web) -> None:
    """Issue 16, defects 1 and 11: a bad address is marked when its chip is
    added; "Envoyer" at the bottom of the form scrolls to and focuses the
    first error, shown next to its cause and near the button; a contact is
    found by name ("Jean Dupont": one chip, the contact's address)."""
    jean = _address("jean.dupont")
    _contact(web, jean, "Jean Dupont")
    signed_in(page, web)
    page.goto("/send")
    field = page.locator("#recipient-input")
    field.fill("pas-une-adresse@exemple")
    field.press("Enter")
    chip = page.locator("#recipient-list li", has_text="pas-une-adresse@exemple")
    expect(chip).to_have_attribute("data-invalid", "true")
    expect(chip).to_contain_text("adresse invalide")  # in words, not colour only
    expect(page.locator("#recipient-input-error")).to_have_text(
        "Cette adresse n'est pas valide : pas-une-adresse@exemple. Vérifiez-la, ou retirez-la.")

    page.get_by_label("Message aux destinataires").fill("Bonjour,\nvoici les résultats.")
    page.locator("#notify").check()  # at the bottom of the form
    page.get_by_role("button", name="Envoyer", exact=True).click()
    expect(page.locator("#file-input-error")).to_have_text("Ajoutez au moins un fichier.")
    expect(page.locator("#send-error")).to_contain_text("Ajoutez au moins un fichier.")
    expect(page.locator("#send-error")).to_contain_text("Une adresse n'est pas valide")
    expect(field).to_have_attribute("aria-invalid", "true")
    _focused_and_seen(page, "file-input")
    check_accessibility(page)
    screenshot(page, "transfers-new-errors")

    # By name: one chip with the contact's address; an unknown name is said so.
    page.get_by_role("button", name="Retirer pas-une-adresse@exemple").click()
    field.fill("Jean Dupont")
    field.press("Enter")
    chips = page.locator("#recipient-list li")
    expect(chips).to_have_count(1)
    expect(chips.first).to_contain_text(jean)
    expect(chips.first.locator("input[name=recipient]")).to_have_value(jean)
    field.fill("Inconnu")
    page.get_by_role("button", name="Ajouter", exact=True).click()
    expect(page.locator("#recipient-input-error")).to_contain_text(
        "Aucun contact ne s'appelle « Inconnu »")
    expect(chips).to_have_count(1)
    field.fill("")
    field.press_sequentially("Dupo")
    suggestion = page.locator("#recipient-suggestions button", has_text=jean)
    expect(suggestion).to_be_visible()
    check_accessibility(page)

    # What only the server knows (htmx answers 422): next to the field too.
    field.fill("")
    page.locator("#file-input").set_input_files(
        {"name": "cr.txt", "mimeType": "text/plain", "buffer": b"Compte rendu"})
    expect(page.locator(".upload[data-state=done]")).to_have_count(1)
    _policy(web, recipient_domains_denied=["refuse-exemple.fr"])
    try:
        field.fill("marc@refuse-exemple.fr")
        field.press("Enter")
        page.get_by_role("button", name="Envoyer", exact=True).click()
        expect(page.locator("#recipient-input-error")).to_have_text(
            "Votre organisation n'autorise pas les envois vers : refuse-exemple.fr.")
        expect(page.locator("#send-error")).to_contain_text("n'autorise pas les envois vers")
        _focused_and_seen(page, "recipient-input")
    finally:
        _policy(web, recipient_domains_denied=[])


def test_send_pressed_during_an_upload_waits_for_it(page: Any, web: Web,
                                                    tmp_path: Path) -> None:
    """Issue 16, defect 6: bytes sent, speed and time left; "Envoyer" during
    an upload waits for it, says so, and then sends."""
    source = tmp_path / "echographie.bin"
    source.write_bytes(os.urandom(20 * MB))
    signed_in(page, web)
    page.goto("/send")
    held: list[Any] = []
    passed: list[int] = []

    def slow(route: Any) -> None:  # the first chunk goes, the second waits
        if route.request.method == "PATCH" and passed and not passed[-1] < 0:
            held.append(route)
            return
        if route.request.method == "PATCH":
            passed.append(1)
        route.continue_()

    page.route(lambda url: "/api/v1/uploads/" in url, slow)
    page.locator("#file-input").set_input_files(source)
    _add_recipient(page, _address("fanny"))
    detail = page.locator(".upload .progress-detail")
    expect(detail).to_contain_text(re.compile(r"8,0\sMo sur 20,0\sMo"))
    expect(detail).to_contain_text(re.compile(r"Mo/s · encore \d+ (s|min)"))
    expect(page.locator("#overall-detail")).to_contain_text(re.compile(r"sur 20,0\sMo"))

    send = page.get_by_role("button", name="Envoyer", exact=True)
    send.click()
    waiting = page.locator("#send-submit")
    expect(waiting).to_have_text("Envoi dès la fin des téléversements…")
    page.get_by_role("button", name="Annuler l'envoi").click()  # cancellable...
    expect(waiting).to_have_text("Envoyer")
    waiting.click()  # ...and asked again
    expect(waiting).to_have_text("Envoi dès la fin des téléversements…")
    screenshot(page, "transfers-new-waiting")
    assert page.url.endswith("/send")
    passed.append(-1)
    for route in held:
        route.continue_()
    page.unroute_all(behavior="ignoreErrors")
    page.wait_for_url(re.compile(r"/transfers/[0-9a-f]+\?done=created"), timeout=60_000)
    _hashes_shown(page, [_sha256(source)])
