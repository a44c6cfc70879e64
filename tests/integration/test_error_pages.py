"""What a person's browser gets when something goes wrong, and what the
API gets at the same address (issue 16, defect 2): a French page in the
site's frame with the right status for a browser, the one JSON error shape
for an API client; mails in French whose links open pages; the
organisation policy that keeps subjects and messages out of mails
(defect 13); the site's icon (defect 12)."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from tests.conftest import ADMIN_EMAIL, MailCatcher, Server, login
from tests.integration.flows import audit_events
from tests.integration.support import assert_error, module_server, opened, page_session, send

mail, server, token, client, admin = module_server("error-pages",
                                                   COFFRE_LINK_PASSWORD_ATTEMPTS="1")

#: What Chromium sends when a person follows a link or types an address.
BROWSER = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
              "image/webp,*/*;q=0.8",
    "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "none",
}
API = {"Accept": "application/json"}
FRAME = "Coffre — échanges de données de santé chiffrés"


def page(response: httpx.Response, status: int, title: str) -> str:
    """A French HTML page in the site's frame, never cached, with a way back."""
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    html = response.text
    assert '<html lang="fr"' in html
    assert f'<h1 id="error-title">{title}</h1>' in html
    assert FRAME in html
    assert 'href="/login"' in html or 'href="/transfers"' in html
    assert '"error":' not in html and "Traceback" not in html
    return html


def test_an_unknown_address(server: Server) -> None:
    url = f"{server.url}/nimporte-quoi"
    html = page(httpx.get(url, headers=BROWSER), 404, "Page introuvable")
    assert "Aller à la page de connexion" in html
    english = httpx.get(url, headers=BROWSER, cookies={"coffre-lang": "en"})
    assert "<h1 id=\"error-title\">Page not found</h1>" in english.text
    # A browser that only says it prefers HTML (no Fetch Metadata) too.
    page(httpx.get(url, headers={"Accept": BROWSER["Accept"]}), 404, "Page introuvable")
    # The API's clients, and any client not asking for HTML: the JSON shape.
    for headers in (API, {}, {**BROWSER, "Authorization": "Bearer cof_x"}):
        response = httpx.get(url, headers=headers)
        assert_error(response, 404, "not_found", {})
        assert response.headers["cache-control"] == "no-store"
    # The API stays JSON even for a browser.
    for path in ("/api/v1/nulle-part", "/api/v2/"):
        assert_error(httpx.get(f"{server.url}{path}", headers=BROWSER), 404, "not_found")
    assert_error(httpx.get(f"{server.url}/backup/inconnu/config", headers=BROWSER), 401,
                 "authentication_required")


def test_a_revoked_file_link(server: Server, client: httpx.Client, mail: MailCatcher) -> None:
    transfer, (link,) = send(client, {"compte-rendu.pdf": b"%PDF-1.4 CANARY"})
    access = opened(server, mail, transfer, link)
    view = httpx.get(f"{server.url}/api/v1/links/{link}", headers=access).json()
    file_url = view["files"][0]["url"]
    assert client.post(f"/api/v1/transfers/{transfer['id']}/revoke").status_code == 200

    html = page(httpx.get(file_url, headers={**BROWSER, **access}), 410, "Lien révoqué")
    assert "Professionnels de santé : se connecter" in html  # a patient is not sent to sign in
    page(httpx.get(f"{server.url}/t/{link}", headers={**BROWSER, **access}), 410,
         "Lien révoqué")
    assert_error(httpx.get(file_url, headers={**API, **access}), 410, "gone",
                 {"reason": "revoked"})
    assert_error(httpx.get(f"{server.url}/api/v1/links/{link}", headers=access),
                 410, "gone", {"reason": "revoked"})


def test_a_forbidden_action(server: Server) -> None:
    """A form posted from another site: refused, and the person is told so."""
    cross = {**BROWSER, "Sec-Fetch-Site": "cross-site", "Origin": "https://ailleurs.example"}
    form = {"lang": "en", "next": "/"}
    html = page(httpx.post(f"{server.url}/lang", headers=cross, data=form), 403,
                "Accès refusé")
    assert "administrateur" in html
    assert_error(httpx.post(f"{server.url}/lang", headers={**cross, **API}, data=form),
                 403, "permission_denied", {"reason": "cross_origin"})


def test_too_many_attempts(server: Server, client: httpx.Client, mail: MailCatcher) -> None:
    transfer, (link,) = send(client, {"a.txt": b"a"}, password="le bon mot de passe")
    access = opened(server, mail, transfer, link)
    unlock = f"{server.url}/api/v1/links/{link}/unlock"
    assert_error(httpx.post(unlock, json={"password": "faux"}, headers=access), 401,
                 "authentication_required", {"reason": "wrong_password"})
    assert_error(httpx.post(unlock, json={"password": "faux"}, headers=access), 429,
                 "too_many_attempts", {})
    same_site = {**BROWSER, **access, "Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    html = page(httpx.post(f"{server.url}/t/{link}/unlock", headers=same_site,
                           data={"password": "faux"}), 429, "Trop de tentatives")
    assert "Demandez à l&#39;expéditeur un nouvel envoi." in html


def test_favicon(server: Server) -> None:
    icon = httpx.get(f"{server.url}/favicon.ico", headers={"Accept": "image/*"})
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    svg = httpx.get(f"{server.url}/static/favicon.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    login = httpx.get(f"{server.url}/login", headers=BROWSER)
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in login.text


def _text(message: Any) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def _save_policy(browser: httpx.Client, **switches: bool) -> None:
    """The administration's policy form, as shown, with ``switches`` set."""
    shown = browser.get("/admin/policy")
    assert shown.status_code == 200
    form: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", shown.text):
        name, value = re.search(r'name="([a-z_]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if name and value and ('type="checkbox"' not in tag or " checked" in tag):
            form[name.group(1)] = value.group(1)
    for name, on in switches.items():
        form.pop(name, None)
        if on:
            form[name] = "1"
    saved = browser.post("/admin/policy", data=form)
    assert saved.status_code == 303, saved.text


def test_mails_can_keep_the_subject_out(server: Server, client: httpx.Client,
                                        mail: MailCatcher, admin: dict[str, Any]) -> None:
    subject, message = "Résultats IRM du genou", "Votre IRM montre une entorse."
    plain, _ = send(client, {"irm.pdf": b"%PDF"}, subject=subject, message=message)
    (told,) = mail.to(plain["recipients"][0]["email"])
    assert told["Subject"] == f"[Coffre] {subject}"
    assert message in _text(told)

    browser = page_session(server)
    try:
        policy = browser.get("/admin/policy").text
        assert "Garder l&#39;objet et le message hors des e-mails" in policy
        assert 'name="discreet_mail" value="1">' in policy  # off by default
        hint = browser.get("/send").text
        assert "Les serveurs de messagerie peuvent lire l'objet" in hint
        _save_policy(browser, discreet_mail=True)
        event = audit_events(server.data_dir, "organisation.policy_changed")[-1]
        assert event["actor"] == admin["id"]
        assert event["details"]["changes"] == {"discreet_mail": {"before": False,
                                                                 "after": True}}
        assert 'name="discreet_mail" value="1" checked' in browser.get("/admin/policy").text
        assert "Votre organisation garde l'objet" in browser.get("/send").text

        transfer, (link,) = send(client, {"irm.pdf": b"%PDF"}, subject=subject,
                                 message=message)
        (neutral,) = mail.to(transfer["recipients"][0]["email"])
        sender = admin["display_name"] or admin["email"]
        assert neutral["Subject"] == f"[Coffre] Des fichiers vous ont été envoyés par {sender}"
        text = _text(neutral)
        assert subject not in text and message not in text and "IRM" not in text
        assert "vous les lirez sur la page du lien" in text
        # The recipient reads them on the link's page, once verified.
        assert_error(httpx.get(f"{server.url}/api/v1/links/{link}"), 401,
                     "authentication_required")
        access = opened(server, mail, transfer, link)
        shown = httpx.get(f"{server.url}/api/v1/links/{link}", headers=access).json()
        assert shown["subject"] == subject and shown["message"] == message
    finally:
        _save_policy(browser, discreet_mail=False)
        browser.close()


def test_a_signed_in_person_is_offered_the_dashboard(server: Server) -> None:
    browser = page_session(server)
    try:
        html = page(browser.get("/nimporte-quoi", headers=BROWSER), 404, "Page introuvable")
        assert 'href="/transfers">Retour au tableau de bord</a>' in html
    finally:
        browser.close()


def test_every_mail_is_french_and_links_to_pages(server: Server, client: httpx.Client,
                                                 mail: MailCatcher) -> None:
    transfer, (link,) = send(client, {"a.txt": b"a", "b.txt": b"b"},
                             notify_on_download=True)
    access = opened(server, mail, transfer, link)
    files = httpx.get(f"{server.url}/api/v1/links/{link}", headers=access).json()["files"]
    assert httpx.get(files[0]["url"], headers=access).status_code == 200
    address = transfer["recipients"][0]["email"]
    deadline = time.monotonic() + 15
    notices: list[Any] = []
    while not notices and time.monotonic() < deadline:  # sent once the bytes are out
        notices = [m for m in mail.to(ADMIN_EMAIL, timeout=1) if address in m["Subject"]]
    (notice,) = notices
    text = _text(notice)
    assert f"{address} a téléchargé 1 fichier de votre envoi." in text
    assert f"{server.url}/transfers/{transfer['id']}" in text
    with mail._lock:
        caught = list(mail.messages)
    assert caught
    for message in caught:
        text = _text(message)
        assert "\n--\n" not in text, message["Subject"]  # no English copy any more
        assert "(s)" not in text and "no limit" not in text
        for url in re.findall(r"https?://\S+", text):
            assert "/api/" not in url, (message["Subject"], url)
            assert re.match(rf"{re.escape(server.url)}/(t|d|transfers|requests|backups|"
                            r"invitation|password|setup)/", url), url


def test_the_cli_switches_discreet_mails(server: Server, tmp_path: Any) -> None:
    admin_token = login(server.url, scopes=["transfers:read", "transfers:write", "admin"])
    env = {"COFFRE_URL": server.url, "COFFRE_TOKEN": admin_token, "COLUMNS": "250",
           "XDG_CONFIG_HOME": str(tmp_path / "config")}

    def coffre(*args: str) -> str:
        done = server.coffre(*args, env=env)
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    assert re.search(r"sujets et messages hors des e-mails\s+.\s*non",
                     coffre("organisation", "show"))
    try:
        assert re.search(r"sujets et messages hors des e-mails\s+.\s*oui",
                         coffre("organisation", "set", "--discreet-mail"))
    finally:
        coffre("organisation", "set", "--no-discreet-mail")
