"""Issue 15, finding 15: integers a client sends that reach the database
(sizes, quotas, limits, days, event ids) were unbounded: ``999999999999999T``
or 10^30 made SQLite raise ``OverflowError`` (PostgreSQL a DataError), a
500. Each is now bounded where it is parsed and answers 400 with the one
JSON error shape; run on both profiles."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server, login
from tests.integration.flows import TUS
from tests.integration.support import api_client, assert_error, module_server, page_session, send

mail, server, token, client, admin = module_server("numbers")
ADMIN_SCOPES = ["transfers:read", "transfers:write", "admin"]
HUGE = [10**30, 2**63, 2**62 + 1, -1]
HUGE_SIZES = ["999999999999999T", "99999999999999999999", str(10**30), "9999999999999999999G"]
POLICY_FIELDS = ["max_file_size", "max_transfer_size", "user_quota", "organisation_quota",
                 "backup_quota", "max_recipients", "default_expiry_days", "max_expiry_days",
                 "backup_alert_days"]


@pytest.fixture(scope="module", name="manager")
def manager_fixture(server: Server) -> Iterator[httpx.Client]:
    with api_client(server, login(server.url, scopes=ADMIN_SCOPES)) as c:
        yield c


def refused(response: httpx.Response) -> dict[str, Any]:
    """A client error in the one JSON shape, never a server error."""
    assert response.status_code < 500, response.text
    return assert_error(response, 400, "invalid_input")


@pytest.mark.parametrize("field", POLICY_FIELDS)
@pytest.mark.parametrize("value", HUGE)
def test_organisation_policy_numbers(manager: httpx.Client, field: str, value: int) -> None:
    refused(manager.patch("/api/v1/organisation", json={field: value}))


def test_the_largest_sizes_still_fit(manager: httpx.Client) -> None:
    """The bound is far above any real quota: 2^62 bytes (4 EiB) is accepted."""
    for field in ("user_quota", "organisation_quota", "backup_quota", "max_transfer_size"):
        done = manager.patch("/api/v1/organisation", json={field: 2**62})
        assert done.status_code == 200, done.text
        assert done.json()["policy"][field] == 2**62
        assert manager.patch("/api/v1/organisation", json={field: None}).status_code == 200


@pytest.mark.parametrize("size", [*HUGE_SIZES, 10**30, -5])
def test_upload_request_sizes(client: httpx.Client, size: str | int) -> None:
    refused(client.post("/api/v1/requests", json={"message": "x", "open_link": True,
                                                  "max_size": size}))


@pytest.mark.parametrize("size", [*HUGE_SIZES, 10**30, -5])
def test_backup_device_quotas(client: httpx.Client, size: str | int) -> None:
    refused(client.post("/api/v1/backup/devices", json={"name": "poste", "quota": size}))


@pytest.mark.parametrize("after", [str(10**30), str(2**63), "99999999999999999999"])
def test_event_ids(client: httpx.Client, manager: httpx.Client, after: str) -> None:
    transfer, _tokens = send(client, {"a.txt": b"x"})
    refused(client.get(f"/api/v1/transfers/{transfer['id']}/events", params={"after": after}))
    made = client.post("/api/v1/requests", json={"message": "x", "open_link": True})
    assert made.status_code == 201, made.text
    refused(client.get(f"/api/v1/requests/{made.json()['id']}/events", params={"after": after}))
    refused(manager.get("/api/v1/audit/events", params={"after": after}))


@pytest.mark.parametrize("limit", [str(10**30), "-1"])
def test_contact_search_limit(client: httpx.Client, limit: str) -> None:
    refused(client.get("/api/v1/contacts", params={"limit": limit}))


@pytest.mark.parametrize("expires_in", ["99999m", "99999w", "99999d", "99999h"])
def test_transfer_expiry(client: httpx.Client, expires_in: str) -> None:
    upload = client.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "0"})
    assert upload.status_code == 201, upload.text
    upload_id = upload.headers["location"].rsplit("/", 1)[-1]
    refused(client.post("/api/v1/transfers", json={
        "files": [upload_id], "recipients": ["patient@exemple.fr"], "expires_in": expires_in}))


@pytest.mark.parametrize("header", ["Upload-Length", "Upload-Offset"])
@pytest.mark.parametrize("value", [str(10**30), str(2**63), "9" * 19])
def test_tus_headers(client: httpx.Client, header: str, value: str) -> None:
    if header == "Upload-Length":
        response = client.post("/api/v1/uploads/", headers={**TUS, header: value})
    else:
        created = client.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "10"})
        response = client.patch(created.headers["location"], content=b"x", headers={
            **TUS, header: value, "Content-Type": "application/offset+octet-stream"})
    refused(response)


@pytest.mark.parametrize("value", ["99999999999999", "1e300", "9" * 29])
def test_the_policy_page(server: Server, manager: httpx.Client, value: str) -> None:
    """The page answers its form again with an error, never a 500."""
    browser = page_session(server)
    try:
        page = browser.get("/admin/policy")
        form = dict(re.findall(r'<input[^>]*name="([a-z_]+)"[^>]*value="([^"]*)"', page.text))
        form.update({"user_quota": value, "allow_permanent": "1"})
        saved = browser.post("/admin/policy", data=form)
        assert saved.status_code == 400, saved.text[:500]
        assert 'aria-invalid="true"' in saved.text
    finally:
        browser.close()
    assert manager.get("/api/v1/organisation").json()["policy"]["user_quota"] is None


@pytest.mark.parametrize("value", HUGE_SIZES)
def test_the_request_page(server: Server, value: str) -> None:
    browser = page_session(server)
    try:
        page = browser.get("/requests")
        assert page.status_code == 200, page.text[:300]
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf
        saved = browser.post("/requests", data={
            "csrf_token": csrf.group(1), "message": "x", "open_link": "1", "expires_in": "7d",
            "max_size": value, "max_files": "20", "depositors": ""})
        assert saved.status_code == 400, saved.text[:500]
    finally:
        browser.close()
