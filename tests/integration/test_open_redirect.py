"""Issue 15, finding 4: after signing in (password, then a second factor or
a passkey) or confirming one's identity, the pages send the reader back to
``next``; a crafted ``next`` must never lead to another site. Driven
through the real sign-in and step-up pages of a running server."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Server, second_factor
from tests.integration.support import module_server

mail, server, token, client, admin = module_server("redirects")
COOKIE = "__Host-coffre-session"
HOME = "/transfers"
#: The known bypasses (a browser goes to evil.example for most of them).
BYPASSES = [
    "/\t\\evil.example", "/\\evil.example", "/\n/evil.example", "//evil.example",
    "/\\/evil.example", "/%09/evil.example", "/%5Cevil.example", "/%2F%2Fevil.example",
    "https://evil.example/", "javascript:alert(1)", "\\\\evil.example",
]


def page_browser(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, headers={"Origin": server.url})


def password_step(browser: httpx.Client, after: str) -> tuple[str, str]:
    """Sign in with the password; returns where it sends the reader and the
    pending session cookie."""
    signed = browser.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD,
                                          "next": after})
    assert signed.status_code == 303, signed.text
    return signed.headers["location"], signed.cookies[COOKIE]


def shown_next(page: str) -> set[str]:
    """Every ``next`` a page carries: the form field and the passkey script's
    (not the language switcher's, which comes back to this very page)."""
    fields = [v for v in re.findall(r'name="next" value="([^"]*)"', page)
              if urlsplit(html.unescape(v)).path not in {"/login/second-factor", "/reauth"}]
    passkey = re.findall(r'data-next="([^"]*)"', page)
    assert passkey, "no passkey box on the page"
    return {html.unescape(v) for v in fields + passkey}


@pytest.fixture(scope="module", name="signed_in")
def signed_in_fixture(server: Server, token: str) -> Iterator[httpx.Client]:
    """A browser fully signed in (password and a recovery code)."""
    with page_browser(server) as browser:
        _to, pending = password_step(browser, HOME)
        done = browser.post("/login/second-factor", headers={"Cookie": f"{COOKIE}={pending}"},
                            data={"method": "recovery", "code": second_factor(server.url),
                                  "next": HOME})
        assert done.status_code == 303, done.text
        browser.headers["Cookie"] = f"{COOKIE}={done.cookies[COOKIE]}"
        yield browser


@pytest.mark.parametrize("after", BYPASSES)
def test_sign_in_never_sends_the_reader_to_another_site(server: Server, token: str,
                                                        after: str) -> None:
    with page_browser(server) as browser:
        to, pending = password_step(browser, after)
        assert to == f"/login/second-factor?next={HOME}"
        # The second-factor page, with the same ``next`` in its address, hands
        # only the safe one to its form and to the passkey script.
        page = browser.get("/login/second-factor", params={"next": after},
                           headers={"Cookie": f"{COOKIE}={pending}"})
        assert page.status_code == 200
        assert shown_next(page.text) == {HOME}


def test_the_second_factor_step_redirects_home(server: Server, token: str) -> None:
    with page_browser(server) as browser:
        _to, pending = password_step(browser, BYPASSES[0])
        done = browser.post("/login/second-factor", headers={"Cookie": f"{COOKIE}={pending}"},
                            data={"method": "recovery", "code": second_factor(server.url),
                                  "next": BYPASSES[0]})
        assert done.status_code == 303, done.text
        assert done.headers["location"] == HOME
        assert not urlsplit(done.headers["location"]).netloc


@pytest.mark.parametrize("after", BYPASSES)
def test_step_up_never_sends_the_reader_to_another_site(signed_in: httpx.Client,
                                                        after: str) -> None:
    page = signed_in.get("/reauth", params={"next": after})
    assert page.status_code == 200
    assert shown_next(page.text) == {"/account"}


def test_a_failed_step_up_keeps_the_safe_next(signed_in: httpx.Client) -> None:
    page = signed_in.get("/reauth", params={"next": BYPASSES[0]})
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf
    wrong = signed_in.post("/reauth", data={"csrf_token": csrf.group(1), "next": BYPASSES[0],
                                            "password": "pas le bon mot de passe"})
    assert wrong.status_code == 401
    assert shown_next(wrong.text) == {"/account"}


def test_step_up_redirects_to_the_account_page(server: Server,
                                               signed_in: httpx.Client) -> None:
    page = signed_in.get("/reauth", params={"next": BYPASSES[0]})
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf
    done = signed_in.post("/reauth", data={
        "csrf_token": csrf.group(1), "next": BYPASSES[0], "password": ADMIN_PASSWORD,
        "code": second_factor(server.url)})
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/account"


def test_a_local_next_is_kept(server: Server, signed_in: httpx.Client) -> None:
    page = signed_in.get("/reauth", params={"next": "/account/tokens"})
    assert shown_next(page.text) == {"/account/tokens"}
