"""Contacts pages in a real browser: add, search as one types, edit,
delete, import a vCard file through the JSON API, export a .vcf."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.e2e.browser.conftest import Web, check_accessibility, screenshot, signed_in

VCARD = (b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Dr Louise Bernard\r\n"
         b"EMAIL:louise.bernard@labo-exemple.fr\r\nTITLE:Biologiste\r\nEND:VCARD\r\n")


def _add(page: Any, email: str, name: str, profession: str = "") -> None:
    page.get_by_role("link", name="Ajouter un contact").click()
    page.get_by_label("Adresse e-mail").fill(email)
    page.get_by_label("Nom", exact=True).fill(name)
    page.get_by_label("Profession").fill(profession)
    page.get_by_role("button", name="Ajouter", exact=True).click()
    expect(page.locator("p.notice")).to_have_text("Contact ajouté.")


def test_contacts_add_search_edit_delete_import_and_export(page: Any, web: Web) -> None:
    signed_in(page, web)
    page.goto("/contacts")
    expect(page.get_by_role("heading", name="Contacts", exact=True)).to_be_visible()
    _add(page, "claire.martin@clinique-exemple.fr", "Dr Claire Martin", "Cardiologue")
    _add(page, "paul.durand@cabinet-exemple.fr", "Paul Durand")

    rows = page.locator("#contact-results tbody tr")
    expect(rows).to_have_count(2)
    page.get_by_label("Rechercher par nom ou adresse").press_sequentially("clai")
    expect(rows).to_have_count(1)  # htmx replaced the list as the query was typed
    expect(rows.first).to_contain_text("claire.martin@clinique-exemple.fr")
    page.get_by_label("Rechercher par nom ou adresse").fill("")
    page.get_by_role("button", name="Rechercher").click()  # works as a plain form too
    expect(rows).to_have_count(2)

    page.get_by_role("link", name="Modifier Paul Durand").click()
    page.get_by_label("Profession").fill("Kinésithérapeute")
    page.get_by_label("Téléphone mobile").fill("not a phone")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.get_by_label("Téléphone mobile")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Téléphone mobile").fill("06 12 34 56 78")
    page.get_by_role("button", name="Enregistrer").click()
    expect(page.locator("p.notice")).to_have_text("Contact enregistré.")
    expect(rows.filter(has_text="Paul Durand")).to_contain_text("Kinésithérapeute")
    # Stored in E.164, shown as people write it, and read back the same way.
    expect(rows.filter(has_text="Paul Durand")).to_contain_text("06 12 34 56 78")
    page.get_by_role("link", name="Modifier Paul Durand").click()
    expect(page.get_by_label("Téléphone mobile")).to_have_value("06 12 34 56 78")
    page.get_by_role("link", name="Annuler").click()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Supprimer Paul Durand").click()
    expect(page.locator("p.notice")).to_have_text("Contact supprimé.")
    expect(rows).to_have_count(1)

    importing = page.locator("#contact-import")
    importing.get_by_label("Fichier vCard").set_input_files(
        {"name": "collegues.vcf", "mimeType": "text/vcard", "buffer": VCARD})
    importing.get_by_role("button", name="Importer").click()
    expect(page.locator("#contact-import-result")).to_contain_text("1 nouveau(x)")
    expect(rows.filter(has_text="louise.bernard@labo-exemple.fr")).to_have_count(1)
    importing.get_by_label("Fichier vCard").set_input_files(
        {"name": "trop-gros.vcf", "mimeType": "text/vcard", "buffer": b"x" * (1024 * 1024 + 1)})
    importing.get_by_role("button", name="Importer").click()
    expect(page.locator("#contact-import-result")).to_have_text(
        "Ce fichier dépasse 1 Mo : découpez-le en fichiers plus petits.")
    # Next to the file field too, which gets the focus (issue 16).
    expect(page.locator("#contact-file-error")).to_have_text(
        "Ce fichier dépasse 1 Mo : découpez-le en fichiers plus petits.")
    expect(page.locator("#contact-file")).to_be_focused()

    with page.expect_download() as info:
        page.get_by_role("link", name="Exporter tous les contacts (.vcf)").click()
    exported = Path(info.value.path()).read_text()
    assert "BEGIN:VCARD" in exported
    assert "claire.martin@clinique-exemple.fr" in exported
    assert "louise.bernard@labo-exemple.fr" in exported
    assert "paul.durand" not in exported

    check_accessibility(page)
    screenshot(page, "contacts")
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("link", name="Add a contact")).to_be_visible()
    expect(page.get_by_label("Search by name or address")).to_be_visible()


def test_contacts_fit_a_phone(phone_page: Any, web: Web) -> None:
    signed_in(phone_page, web)
    phone_page.goto("/contacts/new")
    phone_page.get_by_label("Adresse e-mail").fill("infirmiere@ssiad-exemple.fr")
    phone_page.get_by_label("Nom", exact=True).fill("Sophie Leroy")
    phone_page.get_by_role("button", name="Ajouter", exact=True).click()
    expect(phone_page.locator("p.notice")).to_have_text("Contact ajouté.")
    assert phone_page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    check_accessibility(phone_page)
    screenshot(phone_page, "contacts-phone")
