"""Forgotten password in a real browser: the link on the sign-in page, the
form that mails a link, the page the link opens (a breached password
refused next to the field, in French), and signing in with the new one."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.e2e.browser.conftest import Web, check_accessibility, screenshot
from tests.integration.test_auth import new_user
from tests.integration.test_passwords import BREACHED, NEW_PASSWORD, reset_links


def test_forgotten_password_from_sign_in_to_a_new_password(page: Any, web: Web) -> None:
    email = new_user(web.server)
    page.goto("/login")
    page.get_by_role("link", name="Mot de passe oublié ?").click()
    expect(page).to_have_url(re.compile(r"/password/forgotten$"))
    check_accessibility(page)
    page.get_by_label("Adresse e-mail").fill(email)
    page.get_by_role("button", name="M'envoyer un lien").click()
    expect(page.locator("#reset-sent")).to_contain_text("Si un compte existe pour cette adresse")

    [(base, token)] = reset_links(web.mail, email)
    page.goto(f"{base}/password/reset/{token}")
    expect(page.get_by_role("heading", name="Choisissez un nouveau mot de passe")).to_be_visible()
    page.get_by_label("Nouveau mot de passe (au moins 12 caractères)").fill(BREACHED)
    page.get_by_label("Le même mot de passe, à nouveau").fill(BREACHED)
    page.get_by_role("button", name="Changer mon mot de passe").click()
    error = page.get_by_role("alert")
    expect(error).to_contain_text("fuites de données")
    field = page.get_by_label("Nouveau mot de passe (au moins 12 caractères)")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_be_focused()
    check_accessibility(page)
    screenshot(page, "password-reset")

    field.fill(NEW_PASSWORD)
    page.get_by_label("Le même mot de passe, à nouveau").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Changer mon mot de passe").click()
    expect(page.locator("#reset-done")).to_contain_text(email)
    page.get_by_role("link", name="Se connecter").click()
    page.get_by_label("Adresse e-mail").fill(email)
    page.get_by_label("Mot de passe").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Continuer").click()
    expect(page).to_have_url(re.compile(r"/transfers$"))

    page.goto(f"/password/reset/{token}")  # used once already
    expect(page.get_by_role("heading", name="Lien déjà utilisé")).to_be_visible()
