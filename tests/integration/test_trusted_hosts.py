"""Issue 15, finding 14: DNS rebinding. A page on evil.example whose name
an attacker re-points at 127.0.0.1 reaches Coffre with ``Host:
evil.example``; before, only the client address was checked, so the dev
mailbox (sign-in links, codes) was readable that way. Coffre now answers
only the host names it is configured for, in every mode."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Server, login
from tests.integration.flows import make_transfer
from tests.integration.support import assert_error

FOREIGN = ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "localhost.evil.example",
           "[::2]", "10.0.0.1", "coffre"]


@pytest.fixture(scope="module", name="dev")
def dev_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A development server without SMTP: its mail goes to the dev mailbox."""
    base = tmp_path_factory.mktemp("hosts")
    srv = Server(base / "data", env={"COFFRE_ALLOWED_HOSTS": "coffre.lan, Autre.Lan."})
    password = base / "pw"
    password.write_text(ADMIN_PASSWORD)
    done = srv.coffre("setup", "--email", ADMIN_EMAIL, "--password-file", str(password))
    assert done.returncode == 0, done.stderr
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def raw_get(server: Server, path: str, host: str | None) -> tuple[int, bytes]:
    """A request as a rebinding browser sends it: to 127.0.0.1, any Host."""
    head = f"GET {path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall((head + "Connection: close\r\n\r\n").encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def mailbox_with_mail(dev: Server) -> str:
    """The mailbox as the developer sees it, once a message is in it."""
    token = login(dev.url)
    with httpx.Client(base_url=dev.url, headers={"Authorization": f"Bearer {token}"}) as c:
        make_transfer(c, {"a.txt": b"x"}, ["patient@exemple.fr"])
    for _ in range(100):
        page = httpx.get(f"{dev.url}/dev/mailbox")
        if "patient@exemple.fr" in page.text:
            return page.text
        time.sleep(0.1)
    raise AssertionError("no mail in the dev mailbox")


@pytest.mark.parametrize("host", FOREIGN)
def test_the_mailbox_is_not_readable_through_a_foreign_host(dev: Server, host: str) -> None:
    assert "patient@exemple.fr" in mailbox_with_mail(dev)
    status, answer = raw_get(dev, "/dev/mailbox", host)
    assert status == 400
    assert b"patient@exemple.fr" not in answer and b"/t/" not in answer
    response = httpx.get(f"{dev.url}/dev/mailbox", headers={"Host": host})
    assert_error(response, 400, "invalid_host")


@pytest.mark.parametrize("path", ["/", "/login", "/api/v1/me", "/healthz", "/api/v1/uploads/",
                                  "/backup/x/config", "/static/coffre.css"])
def test_every_route_refuses_a_foreign_host(dev: Server, path: str) -> None:
    response = httpx.get(f"{dev.url}{path}", headers={"Host": "evil.example"})
    assert_error(response, 400, "invalid_host")


@pytest.mark.parametrize("host", [None, "127.0.0.1", "LOCALHOST", "localhost.", "[::1]",
                                  "coffre.lan", "autre.lan", "127.0.0.1:1"])
def test_configured_names_are_answered(dev: Server, host: str | None) -> None:
    status, _answer = raw_get(dev, "/healthz", host)
    assert status == 200


def test_the_public_url_names_the_host(tmp_path: Path) -> None:
    """With a public URL, its name is answered (a proxy in front of a
    loopback listener may send it or the listener's address)."""
    srv = Server(tmp_path / "data", env={"COFFRE_PUBLIC_URL": "https://coffre.example.fr"})
    srv.start()
    try:
        assert raw_get(srv, "/healthz", "coffre.example.fr")[0] == 200
        assert raw_get(srv, "/healthz", f"127.0.0.1:{srv.port}")[0] == 200
        assert raw_get(srv, "/healthz", "evil.example")[0] == 400
    finally:
        srv.stop()
