"""First-run setup link, login, API tokens and their scopes."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Server, login, second_factor
from tests.integration.flows import TUS, audit_events


def test_first_start_prints_a_one_time_setup_link(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data")
    srv.start()
    try:
        match = re.search(r"http://\S+/setup/([A-Za-z0-9_-]{43})", srv.log())
        assert match, srv.log()
        token = match.group(1)
        page = httpx.get(match.group(0))
        assert page.status_code == 200
        assert "Première configuration" in page.text
        assert page.headers["cache-control"] == "no-store"
        body = {"token": token, "email": "admin@hopital.fr", "password": ADMIN_PASSWORD,
                "organisation": "Hôpital"}
        weak = httpx.post(f"{srv.url}/api/v1/setup", json={**body, "password": "court"})
        assert weak.status_code == 400
        assert weak.json()["error"]["details"]["field"] == "password"
        created = httpx.post(f"{srv.url}/api/v1/setup", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["role"] == "admin"
        again = httpx.post(f"{srv.url}/api/v1/setup", json=body)
        assert again.status_code == 410
        assert httpx.get(match.group(0)).status_code == 410
        # printed once for the operator, never in the access log
        access = [line for line in srv.log().splitlines() if "coffre.access" in line]
        assert not [line for line in access if token in line]
        assert any("/setup/[redacted]" in line for line in access)
        assert [e["action"] for e in audit_events(srv.data_dir, "setup.completed")] == [
            "setup.completed"]
        login(srv.url, "admin@hopital.fr")
    finally:
        srv.stop()


def test_wrong_password_and_unknown_account_answer_the_same(server: Server) -> None:
    wrong = httpx.post(f"{server.url}/api/v1/auth/token",
                       json={"email": ADMIN_EMAIL, "password": "wrong password here"})
    unknown = httpx.post(f"{server.url}/api/v1/auth/token",
                         json={"email": "nobody@nowhere.fr", "password": "wrong password here"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    failed = audit_events(server.data_dir, "login.failed")
    assert len(failed) == 2
    assert all(e["outcome"] == "failure" and e["source"] == "127.0.0.1" for e in failed)
    assert all("wrong password" not in str(e) for e in failed)


def test_tokens_scopes_and_revocation(server: Server, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    made = httpx.post(f"{server.url}/api/v1/tokens", headers=auth,
                      json={"name": "lecture", "scopes": ["transfers:read"]})
    assert made.status_code == 201
    read_only = made.json()["token"]
    assert read_only.startswith("cof_")
    ro = {"Authorization": f"Bearer {read_only}"}
    assert httpx.get(f"{server.url}/api/v1/transfers", headers=ro).status_code == 200
    denied = httpx.post(f"{server.url}/api/v1/uploads/", headers={**ro, **TUS,
                                                                  "Upload-Length": "1"})
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "permission_denied"
    listed = httpx.get(f"{server.url}/api/v1/tokens", headers=auth).json()
    ro_id = next(t["id"] for t in listed if t["name"] == "lecture")
    assert httpx.delete(f"{server.url}/api/v1/tokens/{ro_id}", headers=auth).status_code == 204
    assert httpx.get(f"{server.url}/api/v1/transfers", headers=ro).status_code == 401
    assert len(audit_events(server.data_dir, "token.revoked")) == 1
    # a member token cannot mint an admin scope beyond its own
    escalate = httpx.post(f"{server.url}/api/v1/tokens", headers=ro,
                          json={"name": "x", "scopes": ["admin"]})
    assert escalate.status_code == 401


def test_garbage_tokens_are_refused(server: Server) -> None:
    for header in ["Bearer nope", "Basic abc", "Bearer " + "x" * 5000]:
        r = httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": header})
        assert r.status_code == 401
        assert set(r.json()["error"]) == {"code", "message", "details"}


def test_tokens_cannot_outlive_or_outgrow_their_parent(server: Server) -> None:
    parent = httpx.post(f"{server.url}/api/v1/auth/token", json={
        "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "expires_in_days": 2,
        "code": second_factor(server.url)}).json()["token"]
    auth = {"Authorization": f"Bearer {parent}"}
    child = httpx.post(f"{server.url}/api/v1/tokens", headers=auth,
                       json={"name": "enfant", "scopes": ["transfers:read"]})
    assert child.status_code == 201
    listed = httpx.get(f"{server.url}/api/v1/tokens", headers=auth).json()
    by_name = {t["name"]: t for t in listed}
    assert by_name["enfant"]["expires_at"] is not None
    assert by_name["enfant"]["expires_at"] <= by_name["cli"]["expires_at"]
    read_only = {"Authorization": f"Bearer {child.json()['token']}"}
    minted = httpx.post(f"{server.url}/api/v1/tokens", headers=read_only,
                        json={"name": "x", "scopes": ["transfers:read"]})
    assert minted.status_code == 403
