"""Who gets a page and who gets JSON when something goes wrong, and what
an unexpected error shows (issue 16, defect 2). A real server cannot be
made to fail on purpose: the error handlers are mounted on a small app."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from coffre.http import errors
from coffre.http.web import error_pages

CHROMIUM = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
            "*/*;q=0.8")
SECRET = "blob 9f3c at /var/lib/coffre/blobs: errno 5"


def _get(path: str, headers: dict[str, str]) -> httpx.Response:
    app = FastAPI()
    errors.install(app, error_pages.render_error)

    @app.get("/transfers/boom")
    def boom() -> None:
        raise RuntimeError(SECRET)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://coffre") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(run())


def test_an_unexpected_error_shows_a_page_without_internals() -> None:
    shown = _get("/transfers/boom", {"Accept": CHROMIUM, "Sec-Fetch-Mode": "navigate"})
    assert shown.status_code == 500
    assert shown.headers["content-type"].startswith("text/html")
    assert shown.headers["cache-control"] == "no-store"
    assert "Erreur inattendue" in shown.text and "Vous n&#39;y êtes pour rien" in shown.text
    for internal in ("RuntimeError", "Traceback", "/var/lib", "9f3c", "errno"):
        assert internal not in shown.text
    api = _get("/transfers/boom", {"Accept": "application/json"})
    assert api.status_code == 500
    assert api.json() == {"error": {"code": "internal_error",
                                    "message": "an internal error occurred", "details": {}}}


@pytest.mark.parametrize(("accept", "html", "json"), [
    (CHROMIUM, 1.0, 0.8),
    ("*/*", 1.0, 1.0),
    ("application/json", 0.0, 1.0),
    ("text/html;q=0.5, application/json", 0.5, 1.0),
    ("application/*;q=0.2, text/*", 1.0, 0.2),
    ("text/html;q=nonsense", 0.0, 0.0),
    ("", 0.0, 0.0),
])
def test_accept_preferences(accept: str, html: float, json: float) -> None:
    assert error_pages._preferences(accept) == (html, json)
