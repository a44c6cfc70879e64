"""The web pages' own defences, against a real server: what a browser
session's CSRF check reads of a request (SEC-22), the sign-in pages
(SEC-14, SEC-16), and the administrators' pages answering a page, never a
server error, whatever their query."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import Server
from tests.integration.support import module_server, page_session
from tests.integration.test_auth import COOKIE, PASSWORD, new_user

mail, server, token, client, admin = module_server("web-security")


def _raw(server: Server, head: str, body: bytes) -> str:
    """Send ``head`` and the start of a body whose announced rest never
    comes; the status line of the answer ("" if the server waits for it)."""
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(head.encode() + body)
        try:
            return s.recv(200).decode(errors="replace").split("\r\n", 1)[0]
        except TimeoutError:
            return ""


def test_sec22_csrf_check_never_reads_an_upload_body_before_the_session(
    server: Server,
) -> None:
    """A multipart body sent with any session cookie was parsed for a CSRF
    field before the session was even checked: on the upload endpoint (no
    body limit) an anonymous client could spool gigabytes to the server's
    disk. The server must answer without reading it."""
    boundary = "coffre-boundary"
    start = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\nx\r\n"
             f"--{boundary}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\n").encode() + b"\0" * 4096
    host = urlsplit(server.url).netloc
    for kind, path in ((f"multipart/form-data; boundary={boundary}", "/api/v1/uploads/"),
                       ("application/x-www-form-urlencoded", "/api/v1/uploads/")):
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nTus-Resumable: 1.0.0\r\n"
                f"Cookie: {COOKIE}=not-a-session\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {10 * 1024**3}\r\nConnection: close\r\n\r\n")
        assert _raw(server, head, start).startswith("HTTP/1.1 401"), kind


@pytest.mark.usefixtures("token")
def test_audit_viewer_answers_any_filter_without_a_server_error(server: Server) -> None:
    browser = page_session(server)
    try:
        for query in ("until=9999-12-31", "since=9999-12-31&until=9999-12-31",
                      f"before={2**70}", "since=0001-01-01"):
            response = browser.get(f"/admin/audit?{query}")
            assert response.status_code in {200, 400}, (query, response.status_code)
            assert response.headers["cache-control"] == "no-store"
    finally:
        browser.close()


def test_sec14_sign_in_page_same_answer_for_unknown_account_and_wrong_password(
    server: Server,
) -> None:
    known, unknown = new_user(server), "personne-inconnue@exemple.fr"
    answers = [httpx.post(f"{server.url}/login", timeout=30,
                          headers={"Origin": server.url},
                          data={"email": email, "password": "pas le bon mot de passe"})
               for email in (known, unknown)]
    assert [a.status_code for a in answers] == [401, 401]
    assert answers[0].text.replace(known, "@") == answers[1].text.replace(unknown, "@")
    assert not any(a.headers.get_list("set-cookie") for a in answers)


def test_sec16_sign_out_page_ends_the_session_on_the_server(server: Server) -> None:
    email = new_user(server)
    signed = httpx.post(f"{server.url}/login", headers={"Origin": server.url}, timeout=30,
                        data={"email": email, "password": PASSWORD})
    assert signed.status_code == 303, signed.text
    cookie = {"Cookie": f"{COOKIE}={signed.cookies[COOKIE]}", "Origin": server.url}
    assert httpx.get(f"{server.url}/transfers", headers=cookie, timeout=30).status_code == 200
    out = httpx.post(f"{server.url}/logout", headers=cookie, timeout=30)
    assert out.status_code == 303
    assert "Max-Age=0" in out.headers["set-cookie"]  # the browser forgets it
    again = httpx.get(f"{server.url}/transfers", headers=cookie, timeout=30)  # the old cookie
    assert again.status_code == 303
    assert again.headers["location"].startswith("/login")
