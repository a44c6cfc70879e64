"""The frame every page shares: language switch, security headers, the
strict CSP, accessibility, phone-sized screens."""

from __future__ import annotations

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
    small_touch_targets,
)
from tests.integration.flows import upload_bytes


def test_pages_are_french_by_default_and_english_on_request(page: Any, web: Web) -> None:
    response = page.goto("/t/unknown-link-token")
    assert response.status == 404
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.get_by_text("Coffre — échanges de données de santé chiffrés").is_visible()
    page.get_by_role("button", name="English").click()
    page.wait_for_load_state()
    assert page.url.endswith("/t/unknown-link-token")  # back where the reader was
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_text("Coffre — encrypted exchange of health data").is_visible()
    page.get_by_role("button", name="Français").click()
    assert page.locator("html").get_attribute("lang") == "fr"


def test_pages_carry_the_security_headers(page: Any, web: Web) -> None:
    response = page.goto("/t/unknown-link-token")
    headers = response.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"


def test_a_browser_at_the_root_is_sent_to_sign_in(page: Any, web: Web) -> None:
    page.goto("/")
    assert "/login" in page.url


def test_signed_in_frame_is_accessible_on_a_phone(phone_page: Any, web: Web) -> None:
    signed_in(phone_page, web)
    phone_page.goto("/t/unknown-link-token")
    check_accessibility(phone_page)
    screenshot(phone_page, "frame-phone")


STORED = """async () => ({
    session: Object.entries(sessionStorage), local: Object.entries(localStorage),
    databases: (await indexedDB.databases()).map((d) => d.name),
})"""


def test_no_address_or_data_is_kept_in_browser_storage(page: Any, web: Web) -> None:
    """SEC-27: htmx records each page's address (path and query) in
    sessionStorage as it loads; a personal link's path is its capability,
    and a search's query is data."""
    token = "a-personal-link-capability"
    page.goto(f"/t/{token}")
    page.wait_for_load_state("load")
    assert page.evaluate(STORED) == {"session": [], "local": [], "databases": []}
    signed_in(page, web)
    page.goto("/contacts?q=dupont")
    page.wait_for_load_state("load")
    assert page.evaluate(STORED) == {"session": [], "local": [], "databases": []}


# -- phone layout and error pages (issue 16, defects 2 and 12) ---------------------

#: Elements that stick out of their card on the right (px past its edge).
CARD_SPILLS = """() => [...document.querySelectorAll('.card')].flatMap((card) => {
    const edge = card.getBoundingClientRect().right;
    return [...card.querySelectorAll('*')]
      .filter((e) => e.getBoundingClientRect().right > edge + 0.5)
      .map((e) => e.tagName + ' +' + Math.round(e.getBoundingClientRect().right - edge));
  })"""


def _phone_checks(page: Any, name: str) -> None:
    """No sideways scroll, nothing out of its card, fingers-sized targets."""
    fits_the_screen(page)
    assert page.evaluate(CARD_SPILLS) == [], name
    assert small_touch_targets(page) == [], name


def _transfer(web: Web, subject: str) -> str:
    with httpx.Client(base_url=web.url, timeout=60,
                      headers={"Authorization": f"Bearer {login(web.url)}"}) as client:
        ids = [upload_bytes(client, b"%PDF-1.4 compte rendu", "compte-rendu-operatoire-du-"
                            "genou-droit-version-definitive-signee.pdf")]
        created = client.post("/api/v1/transfers", json={
            "files": ids, "subject": subject, "message": "Bonjour, voici vos documents.",
            "recipients": ["jean-philippe.de-la-fontaine-beaumarchais@hopital-universitaire-"
                           "exemple.fr", "secretariat@cabinet-exemple.fr"]})
        assert created.status_code == 201, created.text
        return str(created.json()["id"])


def test_the_phone_menu_folds_and_pages_fit(phone_page: Any, web: Web) -> None:
    page = signed_in(phone_page, web)
    transfer = _transfer(web, "Résultats et compte rendu de l'intervention du 12 décembre "
                              "(genou droit), à conserver")
    page.goto("/transfers")
    menu = page.get_by_role("button", name="Menu")
    expect(menu).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "false")
    nav = page.get_by_role("navigation", name="Menu principal")
    expect(nav.get_by_role("link", name="Nouveau transfert")).to_be_hidden()
    header = page.locator("header").bounding_box()
    assert header is not None and header["height"] <= 80  # one line, not three
    _phone_checks(page, "/transfers")
    screenshot(page, "frame-phone-menu-closed")

    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(nav.get_by_role("link", name="Nouveau transfert")).to_be_visible()
    assert small_touch_targets(page) == []
    screenshot(page, "frame-phone-menu-open")
    page.keyboard.press("Escape")
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(menu).to_be_focused()
    menu.click()
    nav.get_by_role("link", name="Nouveau transfert").click()
    page.wait_for_url("**/send")
    expect(page.locator("#subject-privacy")).to_contain_text("serveurs de messagerie")
    check_accessibility(page)

    page.goto(f"/transfers/{transfer}")
    _phone_checks(page, "transfer page")
    check_accessibility(page)
    screenshot(page, "frame-phone-transfer")


def test_the_menu_needs_no_javascript(browser: Any, web: Web) -> None:
    context = browser.new_context(base_url=web.url, viewport={"width": 390, "height": 844},
                                  locale="fr-FR", java_script_enabled=False)
    try:
        page = signed_in(context.new_page(), web)
        page.goto("/transfers")
        assert not page.get_by_role("button", name="Menu").is_visible()
        nav = page.get_by_role("navigation", name="Menu principal")
        for name in ("Tableau de bord", "Nouveau transfert", "Mon compte"):
            assert nav.get_by_role("link", name=name).is_visible()
    finally:
        context.close()


def test_a_browser_gets_pages_not_json(phone_page: Any, page: Any, web: Web) -> None:
    response = page.goto("/nimporte-quoi")
    assert response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    expect(page.get_by_role("heading", level=1)).to_have_text("Page introuvable")
    expect(page.get_by_role("link", name="Aller à la page de connexion")).to_be_visible()
    check_accessibility(page)
    page.get_by_role("link", name="Aller à la page de connexion").click()
    page.wait_for_url("**/login")

    response = phone_page.goto("/t/un-lien-qui-n-existe-pas")
    assert response.status == 404
    expect(phone_page.get_by_role("heading", level=1)).to_have_text("Lien inconnu")
    _phone_checks(phone_page, "error page")
    check_accessibility(phone_page)
    screenshot(phone_page, "error-phone")
    icon = phone_page.request.get("/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"] == "image/x-icon"
