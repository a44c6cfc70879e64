"""Every web page declares who may see it, as every API route does:
``guard.page(Action.X)`` for account holders' pages, ``deps.public(...)``
for the pages of people without an account (personal links, deposit
links, setup and invitation links, sign-in). An account holder's page
sends an anonymous reader to sign in, whatever the method and the ids in
its path, and never answers with data or a server error."""

from __future__ import annotations

import re

import httpx

from tests.conftest import Server
from tests.routes import declared_routes

#: Not pages: the API index, health, readiness and metrics (its own bearer
#: secret, tested in test_metrics), the OpenAPI documents.
NOT_PAGES = {"/", "/healthz", "/readyz", "/metrics", "/api/openapi.json", "/api/docs",
             "/api/docs/oauth2-redirect"}
PAGES = [(m, p, a) for m, p, a in declared_routes()
         if not p.startswith("/api/") and p not in NOT_PAGES]
SIGNED_IN = [(m, p, a) for m, p, a in PAGES if a is not None and not a.startswith("public:")]


def test_every_page_declares_its_policy() -> None:
    undeclared = [f"{m} {p}" for m, p, a in PAGES if a is None]
    assert not undeclared, f"pages without a policy declaration: {undeclared}"


def test_account_pages_send_anonymous_readers_to_sign_in(server: Server) -> None:
    assert SIGNED_IN, "no signed-in page found"
    for method, path, _ in SIGNED_IN:
        concrete = re.sub(r"\{[^}]+\}", "0" * 32, path)
        response = httpx.request(
            method, server.url + concrete, follow_redirects=False, timeout=30,
            headers={"Origin": server.url, "Accept": "text/html"},
            data={"csrf_token": "x"} if method != "GET" else None,
        )
        assert response.status_code == 303, (method, path, response.status_code)
        assert response.headers["location"].startswith("/login?next="), (method, path)
