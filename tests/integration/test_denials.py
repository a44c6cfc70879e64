"""Access-control failures leave audit events (SEC-29), without the token
that was tried."""

from __future__ import annotations

import httpx

from tests.conftest import Server, login
from tests.integration.flows import TUS, audit_events, make_transfer
from tests.integration.support import other_organisation_admin


def test_refusals_are_audited(server: Server, client: httpx.Client) -> None:
    bogus = "cof_" + "A" * 43
    r = httpx.get(f"{server.url}/api/v1/transfers", headers={"Authorization": f"Bearer {bogus}"})
    assert r.status_code == 401
    (event,) = audit_events(server.data_dir, "access.unauthenticated")
    assert event["outcome"] == "failure" and event["source"] == "127.0.0.1"
    assert event["details"]["route"] == "/api/v1/transfers"
    assert bogus not in str(event)

    ro = login(server.url, scopes=["transfers:read"])
    r = httpx.post(f"{server.url}/api/v1/uploads/",
                   headers={"Authorization": f"Bearer {ro}", **TUS, "Upload-Length": "1"})
    assert r.status_code == 403
    assert len(audit_events(server.data_dir, "access.denied")) == 1

    guessed = "x" * 43
    assert httpx.get(f"{server.url}/api/v1/links/{guessed}").status_code == 404
    (unknown,) = audit_events(server.data_dir, "link.unknown")
    assert guessed not in str(unknown)
    assert unknown["details"]["route"] == "/api/v1/links/{token}"


def test_another_organisations_transfer_is_a_404_and_an_audited_denial(
    server: Server, client: httpx.Client
) -> None:
    transfer = make_transfer(client, {"a.txt": b"a"}, ["p@exemple.fr"])
    other = other_organisation_admin(server)
    r = httpx.get(f"{server.url}/api/v1/transfers/{transfer['id']}",
                  headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 404
    assert r.json()["error"]["details"] == {}
    denied = audit_events(server.data_dir, "access.denied")
    assert len(denied) == 1 and denied[0]["details"]["route"] == "/api/v1/transfers/{transfer_id}"
    unknown = httpx.get(f"{server.url}/api/v1/transfers/{'0' * 32}",
                        headers={"Authorization": f"Bearer {other}"})
    assert unknown.status_code == 404 and unknown.json() == r.json()
    assert len(audit_events(server.data_dir, "access.denied")) == 1
