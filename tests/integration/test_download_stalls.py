"""Downloads whose client stops reading without closing, against real
servers: a paused response never outlives its claim on a link's limit
(a one-time link delivers one copy, not one per paused connection), a
send that makes no progress is aborted, and every read leaves an audit
event before its first byte (a read still under way is visible).

Time passes for real here, on servers set up with a short claim lifetime
(``COFFRE_DOWNLOAD_CLAIM_SECONDS``) or a short send timeout
(``COFFRE_DOWNLOAD_SEND_TIMEOUT_SECONDS``); every wait polls for what it
waits for, with a generous deadline (no timing assertion).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from coffre.domain.deliveries import delivery_budget
from tests.conftest import MailCatcher, Server, login, running_server
from tests.integration import support
from tests.integration.support import (
    api_client,
    events_for,
    module_server,
    opened,
    wait_events_for,
)

MiB = 1 << 20
SIZE = 40 * MiB  # far more than the socket buffers hold: a stalled reader blocks the server
CLAIM_SECONDS = 4

mail, server, token, client, admin = module_server(
    "stalls", COFFRE_DOWNLOAD_CLAIM_SECONDS=str(CLAIM_SECONDS),
    COFFRE_DOWNLOAD_SEND_TIMEOUT_SECONDS="600",
)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory, mail: MailCatcher) -> Iterator[Server]:
    """A server that aborts a send making no progress for 2 seconds."""
    with running_server(tmp_path_factory.mktemp("quick"), mail,
                        COFFRE_DOWNLOAD_SEND_TIMEOUT_SECONDS="2") as srv:
        yield srv


class Stalled:
    """A GET whose client reads the headers and a little of the body, then
    stops reading (without closing) until ``finish()``. A small receive
    buffer: the server blocks once the socket buffers are full."""

    def __init__(self, url: str, headers: dict[str, str], first: int = 64 * 1024) -> None:
        parts = httpx.URL(url)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        self.sock.settimeout(120)
        self.sock.connect((parts.host, parts.port))
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.sock.sendall(f"GET {parts.raw_path.decode()} HTTP/1.1\r\nHost: {parts.host}\r\n"
                          f"{lines}Connection: close\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < first:
            block = self.sock.recv(16 * 1024)
            assert block, received[:200]
            received += block
        self.head, self.body = received.split(b"\r\n\r\n", 1)
        assert self.head.startswith(b"HTTP/1.1 200 "), self.head

    def finish(self) -> bytes:
        """Read on until the server closes; the whole body received."""
        try:
            while True:
                block = self.sock.recv(256 * 1024)
                if not block:
                    break
                self.body += block
        except ConnectionResetError:
            pass
        finally:
            self.sock.close()
        return self.body


def _poll(get: Any, status: int, deadline: float = 120) -> httpx.Response:
    end = time.monotonic() + deadline
    while True:
        response: httpx.Response = get()
        if response.status_code == status or time.monotonic() > end:
            return response
        time.sleep(0.25)


def _one_time_link(srv: Server, mail: MailCatcher, client: httpx.Client,
                   content: bytes) -> tuple[dict[str, Any], str, dict[str, str], dict[str, Any]]:
    transfer, (link,) = support.send(client, {"examen.dcm": content}, max_downloads=1)
    access = opened(srv, mail, transfer, link)
    view = httpx.get(f"{srv.url}/api/v1/links/{link}", headers=access).json()
    return transfer, link, access, view


@pytest.mark.parametrize("what", ["file", "archive"])
def test_a_paused_download_cannot_outlive_its_claim(
        server: Server, mail: MailCatcher, client: httpx.Client, what: str) -> None:
    """The review's attack: open a one-time link's download, read a little,
    stop reading past the claim's lifetime, download the whole file
    normally (the one download), then resume the first connection: it
    must not deliver the file a second time."""
    content = os.urandom(SIZE)
    transfer, _, access, view = _one_time_link(server, mail, client, content)
    (recipient,) = [r["id"] for r in transfer["recipients"]]
    url = view["files"][0]["url"] if what == "file" else view["archive_url"]

    paused = Stalled(url, access)
    # Finding 2: the read under way is in the audit trail before it ends.
    (started,) = wait_events_for(server.data_dir, "transfer.read_started", recipient, 1)
    assert started["details"]["start"] == 0 and started["details"]["archive"] is (what != "file")
    assert not events_for(server.data_dir, "transfer.read", recipient)
    assert not events_for(server.data_dir, "transfer.downloaded", recipient)

    # While the paused response's claim lives, the link is taken; once it
    # lapsed (nothing renews it), a whole download goes through.
    again = _poll(lambda: httpx.get(url, headers=access, timeout=120), 200)
    assert again.status_code == 200, again.text
    if what == "file":
        assert again.content == content
    assert len(again.content) >= SIZE

    # The paused connection resumes: cut short once its claim is found lapsed.
    rest = paused.finish()
    assert len(rest) < SIZE // 4
    assert len(rest) + SIZE <= delivery_budget(1, SIZE)

    ends = wait_events_for(server.data_dir, "transfer.read", recipient, 1, timeout=60)
    downloads = events_for(server.data_dir, "transfer.downloaded", recipient)
    events = ends + downloads
    assert len(events) == 2, events
    cut = next(e for e in events if e["details"]["complete"] is False)
    assert cut["outcome"] == "failure" and cut["details"]["sent"] < SIZE // 4
    assert len(events_for(server.data_dir, "transfer.read_started", recipient)) == 2
    shown = client.get(f"/api/v1/transfers/{transfer['id']}").json()
    assert [r["downloads"] for r in shown["recipients"]] == [1]
    assert httpx.get(url, headers=access).status_code == 410


def test_a_stalled_owner_download_is_aborted(quick: Server) -> None:
    """Any file download (here the owner's, which holds a storage stream)
    whose client takes nothing for the send timeout is aborted: one event
    before its first byte, one when it was cut."""
    owner = login(quick.url)
    with api_client(quick, owner) as own:
        content = os.urandom(SIZE)
        transfer, _ = support.send(own, {"irm.dcm": content})
    file_id = transfer["files"][0]["id"]
    url = f"{quick.url}/api/v1/transfers/{transfer['id']}/files/{file_id}"

    stalled = Stalled(url, {"Authorization": f"Bearer {owner}"})
    (started,) = wait_events_for(quick.data_dir, "transfer.owner_read_started", file_id, 1)
    assert (started["details"]["start"], started["details"]["end"]) == (0, SIZE)
    assert started["object"] == {"type": "file", "id": file_id}

    (cut,) = wait_events_for(quick.data_dir, "transfer.owner_read", file_id, 1, timeout=60)
    assert cut["outcome"] == "failure" and cut["details"]["complete"] is False
    assert cut["details"]["sent"] < SIZE
    received = stalled.finish()
    assert len(received) < SIZE
    assert not events_for(quick.data_dir, "transfer.owner_downloaded", file_id)


def test_a_stalled_link_download_is_aborted_and_frees_the_link(
        quick: Server, mail: MailCatcher) -> None:
    owner = login(quick.url)
    content = os.urandom(SIZE)
    with api_client(quick, owner) as own:
        transfer, _, access, view = _one_time_link(quick, mail, own, content)
    (recipient,) = [r["id"] for r in transfer["recipients"]]
    url = view["files"][0]["url"]

    stalled = Stalled(url, access)
    (cut,) = wait_events_for(quick.data_dir, "transfer.read", recipient, 1, timeout=60)
    assert cut["details"]["complete"] is False and cut["details"]["sent"] < SIZE
    received = stalled.finish()
    assert len(received) < SIZE
    # What it sent stays counted; the rest of the one download can be had.
    whole = _poll(lambda: httpx.get(url, headers=access, timeout=120), 200)
    assert whole.content == content
    assert httpx.get(url, headers=access).status_code == 410
