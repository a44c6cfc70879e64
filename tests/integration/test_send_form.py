"""The new transfer form without JavaScript, and its htmx answers (issue
16, defects 1 and 11): a contact's name is one recipient ("Jean Dupont",
not two), a bad address or unknown name is refused next to the recipient
field with what was typed kept, and htmx gets 422 with the faulty field."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server
from tests.integration.flows import upload_bytes
from tests.integration.support import module_server, page_session

mail, server, token, client, admin = module_server("sendform")
JEAN = "jean.dupont@cabinet-exemple.fr"


@pytest.fixture(scope="module", name="browser")
def browser_fixture(server: Server, client: httpx.Client) -> Iterator[httpx.Client]:
    made = client.post("/api/v1/contacts", json={"email": JEAN, "name": "Jean Dupont"})
    assert made.status_code == 201, made.text
    session = page_session(server)
    yield session
    session.close()


def _form(browser: httpx.Client, upload: str, recipient: str) -> dict[str, str]:
    page = browser.get("/send")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf
    return {"csrf_token": csrf.group(1), "upload": upload, "recipient": recipient,
            "subject": "Résultats", "days": "7"}


def test_a_bad_address_is_refused_next_to_the_field_with_what_was_typed(
        browser: httpx.Client, client: httpx.Client) -> None:
    upload = upload_bytes(client, b"compte rendu", "cr.txt")
    sent = browser.post("/send", data={**_form(browser, upload, "Jean Dupont; marie@exemple"),
                                       "notify": "1", "max_downloads": "3"})
    assert sent.status_code == 400
    assert re.search(r'id="recipient-input"[^>]*value="Jean Dupont; marie@exemple"', sent.text)
    assert re.search(r'id="recipient-input"[^>]*aria-invalid="true"', sent.text)
    assert ('id="recipient-input-error">Cette adresse n&#39;est pas valide : marie@exemple.'
            in sent.text)
    assert 'id="send-error" role="alert"' in sent.text  # near the button, too
    assert 'value="Résultats"' in sent.text
    assert re.search(r'id="notify"[^>]*checked', sent.text)
    assert re.search(r'id="max_downloads"[^>]*value="3"', sent.text)


def test_htmx_gets_the_faulty_field_with_422(browser: httpx.Client,
                                             client: httpx.Client) -> None:
    upload = upload_bytes(client, b"compte rendu", "cr.txt")
    sent = browser.post("/send", data=_form(browser, upload, "Inconnu"),
                        headers={"HX-Request": "true"})
    assert sent.status_code == 422
    assert 'data-field="recipient-input"' in sent.text
    assert "Aucun contact ne s&#39;appelle « Inconnu »" in sent.text


def test_a_contact_by_name_is_one_recipient(browser: httpx.Client,
                                             client: httpx.Client) -> None:
    upload = upload_bytes(client, b"compte rendu", "cr.txt")
    sent = browser.post("/send", data=_form(browser, upload, "Jean Dupont"))
    assert sent.status_code == 303, sent.text[:500]
    transfer = sent.headers["location"].split("/")[-1].split("?")[0]
    shown = client.get(f"/api/v1/transfers/{transfer}").json()
    assert [r["email"] for r in shown["recipients"]] == [JEAN]
