"""Backup object bodies under abuse (issue 15, finding 8), against a real
server: stalled bodies of one device do not stop the others, a device has
a bounded count of bodies in flight (429 with Retry-After, which restic
retries), a silent body is dropped (408) and its memory released, and an
organisation cannot take another's share of the memory budget."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.flows import wait_for
from tests.integration.support import (
    api_client,
    events_for,
    module_server,
    other_organisation_admin,
)
from tests.integration.test_backup_rest import Repo, basic, register, sha

IDLE = 12
#: Small enough for one test to fill it; the per-organisation share is
#: the budget divided among the organisations sending.
BUDGET = 8 << 20
PER_CREDENTIAL = 8

mail, server, token, client, admin = module_server(
    "backup-bodies", COFFRE_BACKUP_SESSION_IDLE_SECONDS="1",
    COFFRE_BACKUP_BODY_IDLE_SECONDS=str(IDLE), COFFRE_BACKUP_BODY_BUDGET=str(BUDGET),
    COFFRE_BACKUP_BODIES_PER_CREDENTIAL=str(PER_CREDENTIAL))


def initialised(server: Any, client: httpx.Client) -> Repo:
    made = Repo(server, register(client))
    assert made.http.post(f"{made.path}?create=true").status_code == 200
    assert made.http.post(f"{made.path}config", content=b"restic config").status_code == 200
    return made


@pytest.fixture
def repo(server: Any, client: httpx.Client) -> Iterator[Repo]:
    made = initialised(server, client)
    yield made
    made.close()


def open_body(server: Any, repo: Repo, name: str, *, length: int | None = None,
              sent: bytes = b"") -> socket.socket:
    """A POST whose headers are sent and whose body stops after ``sent``
    (chunked when ``length`` is None): the caller keeps it open."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    head = (f"POST {repo.path}data/{name} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {basic(repo)}\r\n{framing}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n")
    sock.sendall(head.encode() + sent)
    return sock


def answer(sock: socket.socket, timeout: float) -> bytes:
    """The status line and headers the server answered on ``sock``
    (b"" if it said nothing within ``timeout``)."""
    sock.settimeout(timeout)
    got = b""
    try:
        while b"\r\n\r\n" not in got:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return got


def session_events(server: Any, repo: Repo) -> list[dict[str, Any]]:
    return events_for(server.data_dir, "backup.session", repo.id)


def test_stalled_bodies_of_one_device_do_not_stop_another(
        server: Any, client: httpx.Client, repo: Repo) -> None:
    """The reviewed attack: chunked bodies that never send a byte. Before,
    each reserved the largest object (160 MiB of the process's 640) up
    front and four stopped every backup on the server with 503s."""
    stalled = [open_body(server, repo, sha(os.urandom(8))) for _ in range(PER_CREDENTIAL)]
    other = initialised(server, client)
    try:
        # Once the eight are in flight, the device's next body is refused
        # with a 429 and a Retry-After (restic retries it), not a 503.
        small = os.urandom(3000)
        def next_body() -> httpx.Response | None:
            sent = repo.post("data", os.urandom(100))
            return sent if sent.status_code == 429 else None

        refused = wait_for(next_body, timeout=30)
        assert refused is not None, "the device's bodies in flight were never capped"
        assert refused.json()["error"]["code"] == "too_many_attempts"
        assert refused.json()["error"]["details"]["reason"] == "too_many_bodies"
        assert int(refused.headers["retry-after"]) >= 1
        # Another device writes a 2 MiB pack meanwhile (and a small one).
        pack = os.urandom(2 << 20)
        assert other.post("data", pack).status_code == 200
        assert other.post("snapshots", small).status_code == 200
        assert other.http.head(f"{other.path}data/{sha(pack)}").status_code == 200
        # A silent body is dropped after the idle time, with a 408 and the
        # one JSON error shape; its place is free again.
        for sock in stalled:
            got = answer(sock, IDLE * 4)
            assert got.startswith(b"HTTP/1.1 408 "), got[:300]
        assert "unhandled error" not in server.log()
        body = os.urandom(5000)
        assert repo.post("data", body).status_code == 200
    finally:
        for sock in stalled:
            sock.close()
        other.close()
    # Audited: the first drop at once, then the session's count of drops.
    dropped = wait_for(lambda: events_for(server.data_dir, "backup.body_dropped", repo.id))
    assert len(dropped) == 1, dropped
    assert dropped[0]["outcome"] == "failure"
    assert dropped[0]["details"]["credential"] == repo.credential["username"]
    # (the session may pause, and close, between the refusals)
    assert wait_for(lambda: sum(e["details"]["bodies_dropped"] for e in session_events(
        server, repo)) >= PER_CREDENTIAL + 1), session_events(server, repo)
    assert not events_for(server.data_dir, "backup.body_dropped", other.id)


def test_an_organisation_cannot_take_another_organisations_share(
        server: Any, client: httpx.Client, repo: Repo) -> None:
    """One organisation's device holds most of the budget (6 of 8 MiB, then
    keeps quiet); a device of another organisation still gets its share:
    the first one's body, over its half, is dropped with a 503 (restic
    retries it) and the other's pack is stored."""
    outsider = api_client(server, other_organisation_admin(server))
    theirs = initialised(server, outsider)
    big = os.urandom(BUDGET)
    hog = open_body(server, repo, sha(big), length=len(big), sent=big[: 6 << 20])
    try:
        pack = os.urandom(3 << 20)
        statuses = []
        for _ in range(40):
            statuses.append(theirs.post("data", pack).status_code)
            if statuses[-1] == 200:
                break
            assert statuses[-1] == 503, statuses
            time.sleep(0.5)
        assert statuses[-1] == 200, statuses
        got = answer(hog, IDLE * 2)
        assert got.startswith(b"HTTP/1.1 503 "), got[:300]
        assert b"retry-after" in got.lower()
        assert theirs.http.head(f"{theirs.path}data/{sha(pack)}").status_code == 200
        assert repo.http.head(f"{repo.path}data/{sha(big)}").status_code == 404
    finally:
        hog.close()
        theirs.close()
        outsider.close()
