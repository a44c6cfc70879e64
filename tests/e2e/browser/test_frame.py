"""The frame every page shares: language switch, security headers, the
strict CSP, accessibility, phone-sized screens."""

from __future__ import annotations

from typing import Any

from tests.e2e.browser.conftest import Web, check_accessibility, screenshot, signed_in


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
