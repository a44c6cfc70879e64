"""Browser tests: Debian's Chromium driven by Playwright against a real
server started by the tests, with its mail caught by a real SMTP server.

Fixtures:
- ``web`` (module): a started server with an administrator, and its mail.
- ``page``: a fresh browser context and page on ``web``, French, at a
  desktop size; ``phone_page`` is the same at 390x844 (touch, mobile).
- ``signed_in(page, web, email=...)``: sign ``page``'s context in through
  the JSON API (password + a recovery code), for tests of other pages.
- ``check_accessibility(page)``: axe-core in the page; no serious or
  critical violation allowed (WCAG 2.1 AA rules).
- ``screenshot(page, name)``: saved to ``docs/screenshots/`` when
  ``COFFRE_SCREENSHOTS=1`` (``make screenshots``), else to a temporary
  directory.

Every page must run under the strict Content-Security-Policy: a CSP
violation or a JavaScript error in the console fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    MailCatcher,
    Server,
    login,
    running_server,
    second_factor,
    started_mail,
)

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}



def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is a browser test (``make test-browser``)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


@dataclass
class Web:
    server: Server
    mail: MailCatcher

    @property
    def url(self) -> str:
        return self.server.url


#: The one-time setup link an empty server prints, as ``make run`` shows it.
SETUP_LINK = re.compile(r"http://\S+/setup/[A-Za-z0-9_-]{43}")


@dataclass
class Fresh:
    """A server started empty (no ``coffre setup``), as after ``make run``,
    answering on ``localhost`` (an IP address cannot be a WebAuthn relying
    party), with its mail caught."""

    server: Server
    mail: MailCatcher
    setup_link: str
    #: What a first test enrolled, for the ones after it.
    secret: str = ""
    recovery: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.server.port}"


@contextmanager
def empty_server(base: Path, **env: str) -> Iterator[Fresh]:
    with started_mail() as mail:
        server = Server(base / "data")
        server.env.update({
            "COFFRE_SMTP_HOST": "127.0.0.1", "COFFRE_SMTP_PORT": str(mail.port),
            "COFFRE_SMTP_TLS": "none", "COFFRE_PUBLIC_URL": f"http://localhost:{server.port}",
            **env,
        })
        server.start()
        try:
            found = SETUP_LINK.search(server.log())
            assert found, server.log()
            yield Fresh(server, mail, found.group(0))
        finally:
            server.stop()


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Debian's chromium is needed for the browser tests (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Per module: Playwright's sync API keeps an event loop running in this
    thread while it is started, which would break later tests' asyncio.run."""
    from playwright.sync_api import expect, sync_playwright

    # ``expect`` waits as long as actions do (its own default is 5 s): a live
    # event crossing PostgreSQL LISTEN/NOTIFY, or a busy machine, can take longer.
    expect.set_options(timeout=20_000)

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(),
                                              args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    with started_mail() as mail, running_server(
        tmp_path_factory.mktemp("web"), mail, COFFRE_PUBLIC_URL="",
    ) as server:
        login(server.url)  # enrols the administrator's TOTP (tests.conftest)
        yield Web(server, mail)


def _context(browser: Any, url: str, viewport: dict[str, int], **options: Any) -> Any:
    context = browser.new_context(base_url=url, viewport=viewport, locale="fr-FR",
                                  accept_downloads=True, **options)
    context.set_default_timeout(20_000)
    return context


class ConsoleWatch:
    """Console errors and CSP violations seen by a page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def check(self) -> None:
        serious = [e for e in self.errors if "Content Security Policy" in e
                   or "Uncaught" in e or ("Error" in e and "status of" not in e)]
        assert not serious, f"console errors: {serious}"


def _page(browser: Any, web: Web, viewport: dict[str, int], **options: Any) -> Iterator[Any]:
    context = _context(browser, web.url, viewport, **options)
    page = context.new_page()
    watch = ConsoleWatch(page)
    try:
        yield page
        watch.check()
    finally:
        context.close()


@pytest.fixture
def page(browser: Any, web: Web) -> Iterator[Any]:
    yield from _page(browser, web, DESKTOP)


@pytest.fixture
def phone_page(browser: Any, web: Web) -> Iterator[Any]:
    yield from _page(browser, web, PHONE, is_mobile=True, has_touch=True)


def pages_on(browser: Any, url: str) -> Iterator[Any]:
    """Yields a factory of pages on ``url``, each in its own browser context
    (another person); their consoles are checked, their contexts closed."""
    contexts: list[Any] = []
    watches: list[ConsoleWatch] = []

    def make(viewport: dict[str, int] = DESKTOP, **options: Any) -> Any:
        context = _context(browser, url, viewport, **options)
        contexts.append(context)
        made = context.new_page()
        watches.append(ConsoleWatch(made))
        return made

    try:
        yield make
        for watch in watches:
            watch.check()
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def new_page(browser: Any, web: Web) -> Iterator[Any]:
    """A factory of further pages, each in its own context (another person)."""
    yield from pages_on(browser, web.url)


def signed_in(page: Any, web: Web, email: str = ADMIN_EMAIL,
              password: str = ADMIN_PASSWORD) -> Any:
    """Sign the page's browser context in (password, then a recovery code)
    through the JSON API, as the sign-in page's script would."""
    login(web.url, email, password)  # enrols a second factor on first use
    request = page.context.request
    first = request.post(f"{web.url}/api/v1/auth/login",
                         data={"email": email, "password": password},
                         headers={"Origin": web.url})
    assert first.ok, first.text()
    second = request.post(f"{web.url}/api/v1/auth/login/recovery",
                          data={"code": second_factor(web.url, email)},
                          headers={"Origin": web.url})
    assert second.ok, second.text()
    return page


def check_accessibility(page: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": [
        "wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})
    serious = [v for v in results.response["violations"]
               if v.get("impact") in {"serious", "critical"}]
    assert not serious, "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} at "
        f"{[n['target'] for n in v['nodes']][:5]}" for v in serious)


def screenshot(page: Any, name: str, tmp: Path | None = None) -> Path:
    directory = SCREENSHOTS if os.environ.get("COFFRE_SCREENSHOTS") == "1" else (
        tmp or Path("/tmp/coffre-screenshots"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def fits_the_screen(page: Any) -> None:
    """No horizontal scrolling: the page is no wider than the viewport."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"horizontal scrolling: {width}px wide"


#: What a finger must hit on a phone (WCAG 2.5.5, Apple and Google's 44 px).
TOUCH_TARGET = 44


def small_touch_targets(page: Any, minimum: int = TOUCH_TARGET) -> list[str]:
    """Visible links, buttons and controls smaller than ``minimum`` px in
    either dimension (links inside a sentence excepted, as WCAG does)."""
    found: list[str] = page.evaluate(
        """(minimum) => {
          const picked = document.querySelectorAll(
            'a[href], button, summary, select, input:not([type=hidden]), [role=button]');
          const small = [];
          for (const el of picked) {
            const box = el.getBoundingClientRect();
            const style = getComputedStyle(el);
            if (!box.width || !box.height || style.visibility === 'hidden') continue;
            if (el.closest('.skip')) continue;  // the skip link shows on focus only
            const inline = el.tagName === 'A' && el.closest('p, li > span, td, dd, pre');
            if (inline && style.display === 'inline') continue;
            // A checkbox or radio is hit through its label.
            if (el.type === 'checkbox' || el.type === 'radio') {
              const label = el.closest('label') || (el.id && document.querySelector(
                'label[for="' + el.id + '"]'));
              if (label) {
                const lb = label.getBoundingClientRect();
                if (lb.height >= minimum) continue;
              }
            }
            if (box.width < minimum || box.height < minimum) {
              small.push((el.getAttribute('aria-label') || el.textContent || el.name || el.tagName)
                .trim().slice(0, 40) + ' ' + Math.round(box.width) + 'x' + Math.round(box.height));
            }
          }
          return small;
        }""",
        minimum,
    )
    return found


def error_in_view(page: Any) -> str:
    """The element that has the focus is an error (or a field marked
    invalid) and is inside the viewport; returns the error's text."""
    state: dict[str, Any] = page.evaluate(
        """() => {
          const el = document.activeElement;
          if (!el || el === document.body) return {focused: false};
          const box = el.getBoundingClientRect();
          const described = (el.getAttribute('aria-describedby') || '').split(/\\s+/)
            .map((id) => id && document.getElementById(id)).filter(Boolean)
            .map((node) => node.textContent.trim()).join(' ');
          return {
            focused: true,
            inside: box.top >= 0 && box.bottom <= window.innerHeight && box.height > 0,
            invalid: el.getAttribute('aria-invalid') === 'true',
            alert: Boolean(el.closest('[role=alert], .error, .errors')),
            text: el.closest('[role=alert], .error, .errors') ? el.textContent.trim() : described,
          };
        }"""
    )
    assert state["focused"], "nothing has the focus after the error"
    assert state["inside"], f"the focused error is outside the viewport: {state}"
    assert state["invalid"] or state["alert"], f"the focus is not on an error: {state}"
    return str(state["text"])
