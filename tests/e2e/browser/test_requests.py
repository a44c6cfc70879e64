"""Upload requests in a real browser: the sender asks a depositor for
files; the depositor opens the mailed link on a phone, proves the address
with the mailed code, uploads two files over tus (one resuming an upload
interrupted earlier) and hands them over; the sender sees the deposit
arrive without reloading and downloads it, checksums compared."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.conftest import ADMIN_EMAIL, MailCatcher, login
from tests.e2e.browser.conftest import (
    DESKTOP,
    PHONE,
    Web,
    check_accessibility,
    screenshot,
    signed_in,
    small_touch_targets,
)
from tests.integration.flows import audit_events, wait_code
from tests.integration.support import api_client, new_address

SCAN = (b"%PDF-1.4 scanner " + bytes(range(256)) * 700)[: 150 * 1024]
PHOTO = (b"\xff\xd8\xff photo " + bytes(reversed(range(256))) * 400)[: 90 * 1024]
TUS = {"Tus-Resumable": "1.0.0"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def deposit_link(mail: MailCatcher, address: str) -> str:
    for message in mail.to(address):
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        found = re.search(r"https?://\S+/d/[A-Za-z0-9_-]+", body.get_content())
        if found:
            return found.group(0)
    raise AssertionError(f"no deposit link mailed to {address}")


def content_touch_targets(page: Any) -> list[str]:
    """Targets under 44 px in what this page shows; the frame's own (brand,
    language switch) are the frame's tests' and the walkthrough's."""
    frame = page.evaluate("""Array.from(document.querySelectorAll(
        'header a, header button, footer a, footer button')).map((e) => e.textContent.trim())""")
    return [t for t in small_touch_targets(page) if t.rsplit(" ", 1)[0] not in frame]


def interrupted_upload(web: Web, grant: str, name: str, data: bytes) -> None:
    """Half of ``data`` sent over tus with the depositor's grant, as a
    dropped connection would leave it."""
    grant_header = {**TUS, "X-Coffre-Deposit": grant}
    created = httpx.post(f"{web.url}/api/v1/uploads/", headers={
        **grant_header, "Upload-Length": str(len(data)),
        "Upload-Metadata": "filename " + base64.b64encode(name.encode()).decode()})
    assert created.status_code == 201, created.text
    half = httpx.patch(created.headers["location"], content=data[: len(data) // 2], headers={
        **grant_header, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert half.status_code == 204, half.text


def test_an_upload_request_is_created_completed_and_downloaded(
        page: Any, new_page: Any, web: Web, tmp_path: Path) -> None:
    sender = signed_in(page, web)
    depositor_address = new_address("patient")
    sender.goto("/requests")
    expect(sender.get_by_role("heading", name="Demandes de dépôt")).to_be_visible()
    sender.get_by_label("Adresses e-mail des déposants").fill(depositor_address)
    sender.get_by_label("Message aux déposants").fill("Merci de déposer votre scanner.")
    sender.get_by_label("Ouverte pendant").select_option("3d")
    sender.get_by_role("button", name="Envoyer la demande").click()
    expect(sender.get_by_role("status")).to_contain_text("La demande a été créée")
    sender.goto(sender.get_by_role("link", name="Toutes les demandes de dépôt")
                .get_attribute("href"))
    item = sender.get_by_role("listitem").filter(has_text="Merci de déposer votre scanner.")
    expect(item).to_contain_text("Demande ouverte")
    expect(item).to_contain_text("0 dépôt")
    check_accessibility(sender)
    item.get_by_role("link").click()
    expect(sender.get_by_text(depositor_address)).to_be_visible()
    request_url = sender.url
    expect(sender.get_by_text("Aucun dépôt pour l'instant.")).to_be_visible()

    # The depositor, on a phone: the mailed link, the mailed code.
    depositor = new_page(PHONE, is_mobile=True, has_touch=True)
    link = deposit_link(web.mail, depositor_address)
    assert depositor.goto(link).status == 401
    expect(depositor.get_by_text("Aucun code n'a encore été envoyé.")).to_be_visible()
    depositor.get_by_role("button", name="Recevoir mon code par e-mail").click()
    expect(depositor.get_by_role("status")).to_contain_text(
        "Un code à 8 chiffres a été envoyé par e-mail à")
    expect(depositor.get_by_label("Code reçu par e-mail")).to_be_focused()
    depositor.get_by_label("Code reçu par e-mail").fill(
        wait_code(web.mail, depositor_address, 1))
    depositor.get_by_role("button", name="Valider").click()
    expect(depositor.get_by_role("heading", name=re.compile("Déposer des fichiers pour")))\
        .to_be_visible()

    # A connection dropped earlier left half of the scan on the server.
    grant = next(c["value"] for c in depositor.context.cookies()
                 if c["name"] == "__Host-coffre-deposit")
    interrupted_upload(web, grant, "scanner.pdf", SCAN)
    depositor.reload()
    expect(depositor.locator("#waiting")).to_contain_text(
        "75,0 Ko sur 150,0 Ko envoyés (interrompu")
    check_accessibility(depositor)

    # Chosen files are listed at once, with their sizes, and can be removed.
    files = {"scanner.pdf": SCAN, "photo.jpg": PHOTO}
    for name, data in {**files, "erreur.txt": b"pas celui-ci"}.items():
        (tmp_path / name).write_bytes(data)
    choose = depositor.get_by_label("Choisir des fichiers")
    choose.set_input_files([str(tmp_path / "scanner.pdf"), str(tmp_path / "erreur.txt")])
    depositor.get_by_label("Ajouter des fichiers").set_input_files(str(tmp_path / "photo.jpg"))
    chosen = depositor.locator("#chosen li")
    expect(chosen).to_have_count(3)
    expect(chosen.filter(has_text="scanner.pdf")).to_contain_text("150,0 Ko")
    expect(chosen.filter(has_text="scanner.pdf")).to_contain_text(
        "reprend après les 75,0 Ko déjà envoyés")
    expect(chosen.filter(has_text="photo.jpg")).to_contain_text("90,0 Ko")
    depositor.get_by_role("button", name="Retirer erreur.txt").click()
    expect(chosen).to_have_count(2)
    assert depositor.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert not content_touch_targets(depositor)
    check_accessibility(depositor)
    screenshot(depositor, "deposit-upload-phone")
    depositor.set_viewport_size(DESKTOP)
    screenshot(depositor, "deposit-upload")
    depositor.set_viewport_size(PHONE)

    # One button sends; the hand-over follows by itself.
    mails_before = len(web.mail.to(ADMIN_EMAIL))
    depositor.get_by_role("button", name="Envoyer 2 fichiers").click()
    expect(depositor.get_by_role("heading", name="Vos 2 fichiers ont été remis")).to_be_visible()
    expect(depositor.locator("#handed")).to_be_focused()
    expect(depositor.locator("#handed")).to_contain_text("les a bien reçus")
    for name in files:
        expect(depositor.locator("#handed")).to_contain_text(name)
    expect(depositor.get_by_text("Pas encore remis")).to_have_count(0)  # the scan resumed
    handed = [e for e in audit_events(web.server.data_dir, "deposit.completed")
              if e["details"]["bytes"] == len(SCAN) + len(PHOTO)]
    assert [e["details"]["files"] for e in handed] == [2]
    content = depositor.content()
    assert "coffre deposit" not in content and "ligne de commande" not in content
    assert depositor.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert not content_touch_targets(depositor)
    check_accessibility(depositor)
    screenshot(depositor, "deposit-handed-phone")
    depositor.set_viewport_size(DESKTOP)
    screenshot(depositor, "deposit-handed")
    depositor.get_by_role("button", name="English").click()
    expect(depositor.get_by_role("heading", name="Your 2 files have been handed over"))\
        .to_be_visible()

    # The sender's page shows the deposit without a reload.
    assert sender.url == request_url
    deposit = sender.locator(".deposit-received")
    expect(deposit).to_contain_text(depositor_address)
    deadline = time.monotonic() + 20  # and is told by mail
    while len(web.mail.to(ADMIN_EMAIL)) == mails_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(web.mail.to(ADMIN_EMAIL)) == mails_before + 1
    expect(sender.locator(".depositors")).to_contain_text("2 fichiers envoyés, 240,0 Ko")
    for name, data in files.items():
        expect(deposit.get_by_role("listitem").filter(has_text=name).locator("code.hash"))\
            .to_have_text(sha256(data))
    with sender.expect_download() as download:
        deposit.get_by_role("link", name="Télécharger scanner.pdf").click()
    assert sha256(Path(download.value.path()).read_bytes()) == sha256(SCAN)
    check_accessibility(sender)
    screenshot(sender, "requests-detail")

    sender.on("dialog", lambda dialog: dialog.accept())
    sender.get_by_role("button", name="Clore la demande").click()
    expect(sender.get_by_role("heading", name=re.compile("Demande close"))).to_be_visible()
    sender.get_by_role("button", name="English").click()
    expect(sender.get_by_text("Deposits received")).to_be_visible()
    sender.goto("/requests")
    expect(sender.get_by_role("listitem").filter(has_text="Merci de déposer votre scanner."))\
        .to_contain_text("1 deposit")
    sender.get_by_role("button", name="Français").click()
    expect(sender.get_by_role("heading", name="Nouvelle demande de dépôt")).to_be_visible()
    screenshot(sender, "requests-list")


def test_requests_pages_on_a_phone_and_a_refused_form(phone_page: Any, new_page: Any,
                                                      web: Web) -> None:
    page = signed_in(phone_page, web)
    with api_client(web.server, login(web.url)) as client:
        added = client.post("/api/v1/contacts", json={
            "email": "dr.zoe.martin@exemple.fr", "name": "Zoé Martin"})
        assert added.status_code == 201, added.text
    page.goto("/requests")
    field = page.get_by_label("Adresses e-mail des déposants")
    field.press_sequentially("Zo")  # contact suggestions
    page.get_by_role("button", name="Zoé Martin <dr.zoe.martin@exemple.fr>").click()
    expect(field).to_have_value("dr.zoe.martin@exemple.fr, ")
    field.fill("pas-une-adresse")
    page.get_by_role("button", name="Envoyer la demande").click()
    expect(page.get_by_role("alert")).to_contain_text("Indiquez au moins une adresse e-mail valide")
    expect(page.get_by_label("Adresses e-mail des déposants")).to_have_value("pas-une-adresse")
    # Next to the field, near the button, and the field focused (issue 16).
    expect(page.locator("#depositors-error")).to_contain_text("Indiquez au moins une adresse")
    assert page.evaluate("document.activeElement.id") == "depositors"
    page.get_by_label("Adresses e-mail des déposants").fill("")
    page.get_by_label("Créer aussi un lien ouvert").check()
    size = page.get_by_label("Taille totale maximale")
    expect(page.locator("#size-hint")).to_have_text("Par exemple 500 Mo ou 2 Go.")
    size.fill("beaucoup")
    page.get_by_role("button", name="Envoyer la demande").click()
    expect(page.locator("#max_size-error")).to_have_text(
        "Écrivez une taille comme 500 Mo, 2 Go ou 1,5 Go (4 Po au plus).")
    expect(size).to_have_attribute("aria-invalid", "true")
    assert page.evaluate("document.activeElement.id") == "max_size"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    check_accessibility(page)
    size.fill("1,5 Go")
    page.get_by_role("button", name="Envoyer la demande").click()
    expect(page.locator(".requests .facts")).to_contain_text("1,5 Go")
    open_link = page.locator(".open-link input")
    expect(open_link).to_have_value(re.compile("/d/open/"))
    open_url = open_link.input_value().strip()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    check_accessibility(page)
    screenshot(page, "requests-detail-phone")
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name=re.compile("Upload request"))).to_be_visible()
    assert "/d/open/" not in page.content()  # shown once, after creation only

    # Anyone with the open link gives an address and gets a code there.
    stranger = new_page(PHONE)
    stranger.goto(open_url)
    expect(stranger.get_by_role("heading", name="Déposer des fichiers")).to_be_visible()
    assert not content_touch_targets(stranger)
    check_accessibility(stranger)
    address = new_address("voisin")
    stranger.get_by_label("Adresse e-mail").fill(address)
    stranger.get_by_role("button", name="Recevoir un code").click()
    expect(stranger.get_by_role("status")).to_contain_text(
        "Un code à 8 chiffres a été envoyé par e-mail à")
    expect(stranger.get_by_label("Code reçu par e-mail")).to_be_focused()
    stranger.get_by_label("Code reçu par e-mail").fill(wait_code(web.mail, address, 1))
    stranger.get_by_role("button", name="Valider").click()
    expect(stranger.get_by_role("heading", name=re.compile("Déposer des fichiers pour")))\
        .to_be_visible()


def test_a_depositor_pauses_and_resumes_an_upload(page: Any, web: Web, tmp_path: Path) -> None:
    """On a slow connection (Chromium's network throttling), Pause stops the
    upload and Resume carries on from the server's offset: one upload, the
    whole file, the right checksum."""
    address = new_address("patient")
    with api_client(web.server, login(web.url)) as client:
        made = client.post("/api/v1/requests", json={"depositors": [address]})
        assert made.status_code == 201, made.text
        page.goto(deposit_link(web.mail, address))
        page.get_by_role("button", name="Recevoir mon code par e-mail").click()
        page.get_by_label("Code reçu par e-mail").fill(wait_code(web.mail, address, 1))
        page.get_by_role("button", name="Valider").click()
        data = bytes(range(256)) * (12 * 4096)  # 12 Mo: two tus chunks
        (tmp_path / "irm.dcm").write_bytes(data)
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1,
            "uploadThroughput": 1024 * 1024})
        page.get_by_label("Choisir des fichiers").set_input_files(str(tmp_path / "irm.dcm"))
        expect(page.locator("#chosen li")).to_contain_text("irm.dcm")
        page.get_by_role("button", name="Envoyer 1 fichier").click()
        # Bytes done, the speed and the time left, as it goes.
        expect(page.locator("#overall-text")).to_contain_text(re.compile(
            r"sur 12,0 Mo · [\d,]+ \w+/s · encore environ \d+ (s|min)"))
        page.get_by_role("button", name="Pause").click()
        expect(page.get_by_role("status")).to_have_text(
            "En pause. Appuyez sur Reprendre pour continuer.")
        # What is done, in bytes, for the file and for the whole.
        expect(page.locator("#chosen li")).to_contain_text(re.compile(r"[\d,]+ \w+ sur 12,0 Mo"))
        expect(page.locator("#overall-text")).to_contain_text("sur 12,0 Mo")
        screenshot(page, "deposit-paused")
        cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        page.get_by_role("button", name="Reprendre").click()
        # Handed over by itself once sent.
        expect(page.get_by_role("heading", name="Votre fichier a été remis")).to_be_visible()
        expect(page.locator("#handed")).to_contain_text("irm.dcm")
        received = client.get("/api/v1/received").json()
        mine = [r for r in received if r["request_id"] == made.json()["id"]]
        assert [(f["name"], f["sha256"]) for r in mine for f in r["files"]] == [
            ("irm.dcm", sha256(data))]

        # More files later through the same link: a second hand-over, the
        # first one kept.
        (tmp_path / "compte-rendu.pdf").write_bytes(b"%PDF-1.4 compte rendu")
        page.get_by_label("Choisir des fichiers").set_input_files(
            str(tmp_path / "compte-rendu.pdf"))
        page.get_by_role("button", name="Envoyer 1 fichier").click()
        expect(page.locator("#handed")).to_contain_text("compte-rendu.pdf")
        expect(page.locator("#handed")).not_to_contain_text("irm.dcm")
        received = client.get("/api/v1/received").json()
        names = sorted(f["name"] for r in received if r["request_id"] == made.json()["id"]
                       for f in r["files"])
        assert names == ["compte-rendu.pdf", "irm.dcm"]

        # A refused file stays listed with the reason; removing it hands the
        # others over (they were kept).
        (tmp_path / "installe.exe").write_bytes(b"MZ pas un document")
        (tmp_path / "note.txt").write_bytes(b"note du patient")
        page.get_by_label("Choisir des fichiers").set_input_files(
            [str(tmp_path / "installe.exe"), str(tmp_path / "note.txt")])
        page.get_by_role("button", name="Envoyer 2 fichiers").click()
        refused = page.locator("#chosen li").filter(has_text="installe.exe")
        expect(refused).to_contain_text("les programmes et scripts (.exe, .bat, .js…) sont refusés")
        expect(page.get_by_role("status")).to_have_text(
            "Certains fichiers n'ont pas pu être envoyés : réessayez, ou retirez-les pour remettre "
            "les autres.")
        expect(page.get_by_role("button", name="Réessayer")).to_be_focused()
        page.get_by_role("button", name="Retirer installe.exe").click()
        expect(page.get_by_role("heading", name="Votre fichier a été remis")).to_be_visible()
        expect(page.locator("#handed")).to_contain_text("note.txt")
        check_accessibility(page)


def test_a_request_is_made_once_however_often_its_page_is_reloaded(
        page: Any, web: Web) -> None:
    """Issue 16: the form's answer redirects to the request's page (POST,
    redirect, GET): reloading it makes no second request and no second
    mail. Its open link is shown once, to copy or to scan."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sender = signed_in(page, web)
    depositor = new_address("patient")
    message = f"Déposez votre ordonnance {depositor[:16]}"
    sender.goto("/requests")
    sender.get_by_label("Adresses e-mail des déposants").fill(depositor)
    sender.get_by_label("Message aux déposants").fill(message)
    sender.get_by_label("Créer aussi un lien ouvert").check()
    sender.get_by_role("button", name="Envoyer la demande").click()
    sender.wait_for_url(re.compile(r"/requests/[0-9a-f]+\?done=created$"))
    expect(sender.locator(".notice")).to_contain_text("La demande a été créée")
    field = sender.get_by_label(re.compile("Lien ouvert à tous"))
    open_url = field.input_value()
    assert re.search(r"/d/open/[A-Za-z0-9_-]+$", open_url), open_url
    sender.get_by_role("button", name="Copier le lien").click()
    expect(sender.locator(".share-status")).to_have_text("Lien copié")
    assert sender.evaluate("navigator.clipboard.readText()") == open_url
    sender.get_by_text("Afficher le QR code").click()
    expect(sender.get_by_role("img", name="QR code du lien de dépôt ouvert à tous")).to_be_visible()
    check_accessibility(sender)

    sender.reload()
    sender.reload()
    expect(sender.locator(".notice")).to_contain_text("La demande a été créée")
    expect(sender.get_by_role("button", name="Copier le lien")).to_have_count(0)  # shown once
    deposit_link(web.mail, depositor)  # the first mail arrived...
    time.sleep(1)  # ...and no other follows
    assert len(web.mail.to(depositor)) == 1
    token = login(web.url)
    mine = httpx.get(f"{web.url}/api/v1/requests", headers={"Authorization": f"Bearer {token}"})
    assert [r["message"] for r in mine.json()].count(message) == 1
