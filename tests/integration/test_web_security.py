"""The web pages' own defences, against a real server: what a browser
session's CSRF check reads of a request (SEC-22)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from tests.conftest import Server
from tests.integration.support import module_server
from tests.integration.test_auth import COOKIE

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
