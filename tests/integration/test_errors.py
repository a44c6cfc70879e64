"""The one JSON error shape of the API, pinned::

    {"error": {"code": "...", "message": "...", "details": {...}}}

Every status the API can answer with an error is reached through the real
server, and each answer has exactly this shape, a stable code, and
``Cache-Control: no-store``. Recipient web pages answer with French HTML
instead (see test_downloads / test_transfers).
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import MailCatcher, Server, login
from tests.integration.flows import TUS, upload_bytes
from tests.integration.support import (
    api_client,
    assert_error,
    module_server,
    opened,
    send,
)

# -- one server for the module ----------------------------------------------------

mail, server, token, client, admin = module_server("errors", COFFRE_LINK_PASSWORD_ATTEMPTS="1")


def test_shape_is_exactly_code_message_details(client: httpx.Client) -> None:
    response = client.get("/api/v1/transfers/" + "0" * 32)
    assert response.json() == {"error": {"code": "not_found", "message": "transfer not found",
                                         "details": {}}}


def test_400_validation(client: httpx.Client) -> None:
    error = assert_error(client.post("/api/v1/transfers", json={}), 400, "invalid_input")
    assert error["message"] == "the request is malformed"
    problems = error["details"]["problems"]
    assert {p["field"] for p in problems} == {"files", "recipients"}
    assert all(set(p) == {"field", "problem"} and p["problem"] for p in problems)

    wrong_types = client.post("/api/v1/transfers", json={
        "files": "pas-une-liste", "recipients": ["a@exemple.fr"], "max_downloads": "beaucoup"})
    error = assert_error(wrong_types, 400, "invalid_input")
    assert {p["field"] for p in error["details"]["problems"]} == {"files", "max_downloads"}

    not_json = client.post("/api/v1/transfers", content=b"{pas du json",
                           headers={"Content-Type": "application/json"})
    assert_error(not_json, 400, "invalid_input")


def test_400_from_the_domain_names_the_field(client: httpx.Client) -> None:
    upload = upload_bytes(client, b"x", "x.txt")
    response = client.post("/api/v1/transfers", json={
        "files": [upload], "recipients": ["a@exemple.fr"], "expires_in": "0d"})
    error = assert_error(response, 400, "invalid_input", {"field": "expires_in"})
    assert "expiry" in error["message"]


def test_401(server: Server) -> None:
    for headers in ({}, {"Authorization": "Bearer cof_nimportequoi"},
                    {"Authorization": "Basic YTpi"}):
        response = httpx.get(f"{server.url}/api/v1/transfers", headers=headers)
        assert_error(response, 401, "authentication_required", {})
        assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.post(f"{server.url}/api/v1/auth/token",
                       json={"email": "medecin@cabinet-exemple.fr", "password": "faux"})
    assert_error(wrong, 401, "authentication_required", {})


def test_403_missing_scope(server: Server, client: httpx.Client) -> None:
    with api_client(server, login(server.url, scopes=["transfers:read"])) as reader:
        upload = upload_bytes(client, b"x", "x.txt")
        response = reader.post("/api/v1/transfers",
                               json={"files": [upload], "recipients": ["a@exemple.fr"]})
        assert_error(response, 403, "permission_denied", {"scope": "transfers:write"})


def test_404_unknown_route(server: Server, client: httpx.Client) -> None:
    for response in (client.get("/api/v1/nulle-part"), httpx.get(f"{server.url}/api/v2/")):
        error = assert_error(response, 404, "not_found", {})
        assert error["message"] == "Not Found"


def test_404_unknown_transfer_upload_and_link(server: Server, client: httpx.Client) -> None:
    unknown = "0" * 32
    assert_error(client.get(f"/api/v1/transfers/{unknown}"), 404, "not_found", {})
    assert_error(client.post(f"/api/v1/transfers/{unknown}/revoke"), 404, "not_found", {})
    assert_error(client.delete(f"/api/v1/transfers/{unknown}"), 404, "not_found", {})
    response = client.post("/api/v1/transfers",
                           json={"files": [unknown], "recipients": ["a@exemple.fr"]})
    assert_error(response, 404, "not_found", {"upload": unknown})
    assert_error(httpx.get(f"{server.url}/api/v1/links/{'x' * 43}"), 404, "not_found", {})


def test_405(client: httpx.Client) -> None:
    response = client.put("/api/v1/transfers")
    error = assert_error(response, 405, "method_not_allowed", {})
    assert error["message"] == "Method Not Allowed"
    allowed = set(response.headers["allow"].replace(" ", "").split(","))
    assert allowed
    assert "PUT" not in allowed
    assert_error(client.patch("/api/v1/transfers/" + "0" * 32), 405, "method_not_allowed")


def test_409(client: httpx.Client) -> None:
    started = client.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "10"})
    upload = started.headers["location"].rstrip("/").rsplit("/", 1)[-1]
    response = client.post("/api/v1/transfers",
                           json={"files": [upload], "recipients": ["a@exemple.fr"]})
    assert_error(response, 409, "conflict", {"upload": upload})
    # tus: an offset that is not the stored one.
    mismatch = client.patch(started.headers["location"], content=b"abc", headers={
        **TUS, "Upload-Offset": "5", "Content-Type": "application/offset+octet-stream"})
    assert_error(mismatch, 409, "conflict")
    assert mismatch.headers["tus-resumable"] == "1.0.0"


def test_410(server: Server, client: httpx.Client) -> None:
    transfer, (token,) = send(client, {"a.txt": b"a"})
    client.delete(f"/api/v1/transfers/{transfer['id']}")
    assert_error(httpx.get(f"{server.url}/api/v1/links/{token}"), 410, "gone",
                 {"reason": "deleted"})
    assert_error(client.delete(f"/api/v1/transfers/{transfer['id']}"), 410, "gone", {})


def test_413_and_415_on_uploads(client: httpx.Client) -> None:
    too_large = client.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": str(10**15)})
    assert_error(too_large, 413, "too_large")
    assert too_large.headers["tus-resumable"] == "1.0.0"
    started = client.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "3"})
    wrong_type = client.patch(started.headers["location"], content=b"abc", headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "text/plain"})
    assert_error(wrong_type, 415, "unsupported_media_type", {})


def test_416(server: Server, client: httpx.Client, mail: MailCatcher) -> None:
    transfer, (token,) = send(client, {"a.txt": b"0123456789"})
    access = opened(server, mail, transfer, token)
    url = httpx.get(f"{server.url}/api/v1/links/{token}", headers=access).json()["files"][0]["url"]
    response = httpx.get(url, headers={"Range": "bytes=10-", **access})
    assert_error(response, 416, "range_not_satisfiable", {"size": 10})
    assert response.headers["content-range"] == "bytes */10"


def test_401_and_429_on_a_link_password(server: Server, client: httpx.Client,
                                        mail: MailCatcher) -> None:
    transfer, (token,) = send(client, {"a.txt": b"a"}, password="bon mot de passe")
    link = f"{server.url}/api/v1/links/{token}"
    assert_error(httpx.get(link), 401, "authentication_required")
    access = opened(server, mail, transfer, token)
    assert_error(httpx.get(link, headers=access), 401, "authentication_required",
                 {"reason": "password_required"})
    assert_error(httpx.post(f"{link}/unlock", json={"password": "mauvais"}, headers=access),
                 401, "authentication_required", {"reason": "wrong_password"})
    assert_error(httpx.post(f"{link}/unlock", json={"password": "bon mot de passe"},
                            headers=access), 429, "too_many_attempts", {})


def test_every_error_is_json_with_the_same_keys(server: Server, client: httpx.Client) -> None:
    """A sweep: whatever goes wrong on /api/, the body has the one shape."""
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/v1/me", {"headers": {"Authorization": "Bearer x"}}),
        ("POST", "/api/v1/auth/token", {"json": {"email": 1}}),
        ("POST", "/api/v1/tokens", {"json": {"name": "t", "scopes": ["pouvoir:absolu"]}}),
        ("DELETE", "/api/v1/tokens/inconnu", {}),
        ("POST", "/api/v1/transfers/x/extend", {"json": {"expires_in": "0d"}}),
        ("GET", "/api/v1/links/x/files/y", {}),
        ("HEAD", "/api/v1/uploads/inconnu", {"headers": TUS}),
        ("POST", "/api/v1/uploads/", {"headers": {"Tus-Resumable": "0.2.2"}}),
    ]
    for method, path, options in requests:
        response = client.request(method, path, **options)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert response.headers["cache-control"] == "no-store"
        if method != "HEAD":
            assert_error(response, response.status_code, response.json()["error"]["code"])
