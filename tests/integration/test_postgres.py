"""Several instances on one PostgreSQL database (issue 6): the audit chain
stays one chain under concurrent appends, download claims and upload
leases are shared through the database.

Runs on both profiles: the module's server always uses its own database
in the test run's throwaway PostgreSQL cluster (``tests.backends``).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier
from typing import Any

import httpx
import pytest

from coffre.audit import trail
from coffre.clock import FrozenClock
from coffre.errors import Conflict, Gone
from coffre.services.deliveries import CLAIM_LIFETIME, ClaimLost, DownloadClaims, Span
from tests import backends
from tests.conftest import MailCatcher, Server, login, running_server, started_mail
from tests.integration.flows import audit_events, sql
from tests.integration.support import api_client, in_process, opened, send

APPENDS = 50
MiB = 1 << 20


@pytest.fixture(scope="module")
def mail() -> Iterator[MailCatcher]:
    with started_mail() as catcher:
        yield catcher


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mail: MailCatcher) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("postgres")
    url = backends.database_for(base / "data")
    with running_server(base, mail, COFFRE_DATABASE_URL=url) as srv:
        yield srv


@pytest.fixture(scope="module")
def second(server: Server) -> Iterator[Server]:
    """Another ``coffre serve`` on the same database, keys and storage."""
    other = Server(server.data_dir, env=dict(server.env))
    other.start()
    try:
        yield other
    finally:
        other.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with api_client(server, login(server.url)) as c:
        yield c


@pytest.fixture
def instances(server: Server) -> Iterator[tuple[Any, Any]]:
    """Two in-process ``Coffre`` instances on the server's database."""
    first, other = in_process(server), in_process(server)
    try:
        yield first, other
    finally:
        first.close()
        other.close()


def test_the_server_runs_on_postgresql(server: Server) -> None:
    assert backends.database_url(server.data_dir).startswith("postgresql://")
    assert sql(server.data_dir, "SELECT count(*) FROM pg_stat_activity") != [(0,)]


def test_concurrent_appends_from_two_instances_leave_one_chain(
        server: Server, instances: tuple[Any, Any]) -> None:
    start = Barrier(APPENDS)

    def append(i: int) -> None:
        app = instances[i % 2]
        start.wait(timeout=60)  # every thread appends at once
        with app.db.session() as session:
            trail.record(session, "test.concurrent", actor=None, organisation_id=None,
                         object_type="probe", object_id=str(i))

    with ThreadPoolExecutor(APPENDS) as pool:
        list(pool.map(append, range(APPENDS)))  # re-raises any append's error
    appended = audit_events(server.data_dir, "test.concurrent")
    assert sorted(int(e["object"]["id"]) for e in appended) == list(range(APPENDS))
    links = sql(server.data_dir, "SELECT seq, prev_hash, hash FROM audit_events ORDER BY seq")
    assert [seq for seq, _, _ in links] == list(range(1, len(links) + 1))
    assert all(prev == before[2] for (_, prev, _), before in zip(links[1:], links, strict=False))
    done = server.coffre("audit", "verify")
    assert done.returncode == 0, done.stderr


def test_a_rolled_back_append_leaves_no_hole(server: Server,
                                            instances: tuple[Any, Any]) -> None:
    """PostgreSQL sequences burn numbers on rollback; the verifier would
    read the hole as a deleted event."""
    app = instances[0]
    with pytest.raises(RuntimeError), app.db.session() as session:
        trail.record(session, "test.rolled_back", actor=None, organisation_id=None)
        raise RuntimeError("the caller's transaction fails")
    with app.db.session() as session:
        trail.record(session, "test.after_rollback", actor=None, organisation_id=None)
    assert audit_events(server.data_dir, "test.rolled_back") == []
    done = server.coffre("audit", "verify")
    assert done.returncode == 0, done.stderr


def test_download_claims_are_shared_by_instances(
        server: Server, client: httpx.Client, instances: tuple[Any, Any]) -> None:
    transfer, _ = send(client, {"unique.txt": b"une fois"}, max_downloads=1)
    recipient, file = transfer["recipients"][0]["id"], transfer["files"][0]["id"]
    whole = [Span(file, 8, 0, 8)]
    here, there = (DownloadClaims(app.db, app.clock) for app in instances)
    claim = here.claim(recipient, 1, whole)
    with pytest.raises(Gone):
        there.claim(recipient, 1, whole)
    with pytest.raises(Gone):  # the bytes are claimed: not even a part of them
        there.claim(recipient, 1, [Span(file, 8, 0, 4)])
    claim.release()
    claim = there.claim(recipient, 1, whole)
    # The instance holding it dies: its claim expires and stops counting.
    sql(server.data_dir, "UPDATE download_claims SET expires_at = ?", backends.ago(seconds=1))
    here.claim(recipient, 1, whole).release()
    claim.release()
    assert sql(server.data_dir, "SELECT count(*) FROM download_claims") == [(0,)]


def test_a_lapsed_claim_is_never_revived(client: httpx.Client,
                                        instances: tuple[Any, Any]) -> None:
    """A response that stalled past its claim's lifetime finds the claim
    lapsed at its next piece, whether another instance's claim replaced it
    or not, and must stop (a paused download resumed after a new one took
    the limit would otherwise send the file once more)."""
    transfer, _ = send(client, {"pause.txt": b"une fois"}, max_downloads=1)
    recipient, file = transfer["recipients"][0]["id"], transfer["files"][0]["id"]
    whole = [Span(file, 8, 0, 8)]
    clock = FrozenClock()
    here, there = (DownloadClaims(app.db, clock) for app in instances)
    paused = here.claim(recipient, 1, whole)
    clock.advance(CLAIM_LIFETIME / 5)
    assert paused.due()
    paused.keep()  # live: renewed
    assert not paused.due()
    clock.advance(CLAIM_LIFETIME + timedelta(seconds=1))  # the client stopped reading
    with pytest.raises(ClaimLost):  # expired, even though nobody removed it yet
        paused.keep()
    fresh = there.claim(recipient, 1, whole)  # the limit is free again...
    with pytest.raises(ClaimLost):  # ...and the paused response stays stopped
        paused.keep()
    with pytest.raises(Gone):  # its failed renewal revived nothing
        here.claim(recipient, 1, whole)
    paused.release()
    fresh.release()


def test_a_download_in_progress_on_one_server_blocks_the_other(
        server: Server, second: Server, mail: MailCatcher, client: httpx.Client) -> None:
    data = os.urandom(32 * MiB)  # more than the sockets buffer: the first GET stays open
    transfer, (token,) = send(client, {"unique.bin": data}, max_downloads=1)
    access = opened(server, mail, transfer, token)
    path = httpx.get(f"{server.url}/api/v1/links/{token}", headers=access).json()["files"][0]
    there = f"{second.url}{httpx.URL(path['url']).path}"
    # A raw GET on the first server with a small receive buffer (what the
    # server pushed into socket buffers counts as sent): read a little, keep it open.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.connect(("127.0.0.1", server.port))
        grant = "".join(f"{k}: {v}\r\n" for k, v in access.items())
        sock.sendall(f"GET {httpx.URL(path['url']).path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"{grant}Connection: close\r\n\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received or len(received) < 256 * 1024:
            block = sock.recv(64 * 1024)
            assert block
            received += block
        assert received.startswith(b"HTTP/1.1 200 ")
        refused = httpx.get(there, headers=access, timeout=60)
        assert refused.status_code == 410, refused.status_code
        assert refused.json()["error"]["details"]["reason"] == "exhausted"
    got = received.split(b"\r\n\r\n", 1)[1]
    # Cut short: the claim is released once the first server has counted
    # what it sent; the download resumes on the other server and counts once.
    rest = b""
    for _ in range(100):
        response = httpx.get(there, headers={**access, "Range": f"bytes={len(got)}-"},
                             timeout=60)
        if response.status_code == 206:
            rest = response.content
            break
        assert response.status_code == 410
        time.sleep(0.1)
    assert hashlib.sha256(got + rest).digest() == hashlib.sha256(data).digest()
    assert httpx.get(f"{server.url}{httpx.URL(path['url']).path}", headers=access,
                     timeout=60).status_code == 410


def test_a_stalled_writer_loses_its_upload_to_another_instance(
        server: Server, client: httpx.Client, instances: tuple[Any, Any]) -> None:
    """Fencing: the upload's lease lapses while its first writer stalls;
    another instance takes it over and completes it; the stalled writer's
    commit is refused instead of overwriting the upload."""
    data = os.urandom(3 * MiB + 1234)
    token = login(server.url, scopes=["transfers:read", "transfers:write"])
    created = client.post("/api/v1/uploads/", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data))})
    assert created.status_code == 201, created.text
    upload = created.headers["location"].rstrip("/").rsplit("/", 1)[-1]
    first, other = instances
    actor = first.accounts.actor_for_token(token)
    stalled = first.uploads.begin_append(actor, upload, 0)
    stalled.feed(data[:2 * MiB])
    sql(server.data_dir, "UPDATE uploads SET lease_until = ? WHERE id = ?",
        backends.ago(seconds=1), upload)
    taking_over = other.uploads.begin_append(other.accounts.actor_for_token(token), upload, 0)
    taking_over.feed(data)
    assert taking_over.finish(complete_body=True).sha256 == hashlib.sha256(data).hexdigest()
    with pytest.raises(Conflict):
        stalled.feed(data[2 * MiB:])
        stalled.finish(complete_body=True)
    assert sql(server.data_dir, "SELECT \"offset\", sha256 FROM uploads WHERE id = ?",
               upload) == [(len(data), hashlib.sha256(data).hexdigest())]


def test_database_bytes_is_a_dump_of_the_database(server: Server) -> None:
    dump = backends.database_bytes(server.data_dir)
    assert b"CREATE TABLE public.audit_events" in dump
