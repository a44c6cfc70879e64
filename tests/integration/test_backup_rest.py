"""restic's REST backend, request by request, with raw httpx (and a raw
socket where httpx will not send a broken request): what
shared/PROTOCOLS.md and restic's ``doc/REST_backend.rst`` say each request
answers, the append-only rules, authentication and its throttling, and
the one JSON error shape on every refusal."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from typing import Any

import httpx
import pytest

from tests import backends
from tests.conftest import login
from tests.integration.flows import audit_events, sql
from tests.integration.support import assert_error, events_for, module_server

mail, server, token, client, admin = module_server(
    "backup-rest", COFFRE_BACKUP_SESSION_IDLE_SECONDS="1")
V1 = "application/vnd.x.restic.rest.v1"
V2 = "application/vnd.x.restic.rest.v2"
TYPES = ("data", "keys", "locks", "snapshots", "index")


def register(client: httpx.Client, name: str | None = None, **extra: Any) -> dict[str, Any]:
    made = client.post("/api/v1/backup/devices",
                       json={"name": name or f"poste {uuid.uuid4().hex[:8]}", **extra})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


class Repo:
    """One device's repository, spoken to with its credential."""

    def __init__(self, server: Any, registered: dict[str, Any]) -> None:
        self.device = registered["device"]
        self.credential = registered["credential"]
        self.id = self.device["id"]
        self.path = f"/backup/{self.id}/"
        self.http = httpx.Client(
            base_url=server.url, timeout=60,
            auth=(self.credential["username"], self.credential["secret"]))

    def post(self, kind: str, body: bytes, name: str | None = None) -> httpx.Response:
        return self.http.post(f"{self.path}{kind}/{name or sha(body)}", content=body)

    def close(self) -> None:
        self.http.close()


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@pytest.fixture
def repo(server: Any, client: httpx.Client) -> Any:
    """A fresh, initialised repository (config written)."""
    made = Repo(server, register(client))
    assert made.http.post(f"{made.path}?create=true").status_code == 200
    assert made.http.post(f"{made.path}config", content=b"restic config").status_code == 200
    yield made
    made.close()


@pytest.fixture(scope="module")
def shared(server: Any, client: httpx.Client) -> Any:
    """An initialised repository shared by the tests that only add to it
    (each registration costs an Argon2id hash or two)."""
    made = Repo(server, register(client))
    assert made.http.post(f"{made.path}?create=true").status_code == 200
    assert made.http.post(f"{made.path}config", content=b"restic config").status_code == 200
    yield made
    made.close()


@pytest.fixture
def bare(server: Any, client: httpx.Client) -> Any:
    """A fresh repository nothing was written to."""
    made = Repo(server, register(client))
    yield made
    made.close()


def device(client: httpx.Client, repo: Repo) -> dict[str, Any]:
    got = client.get(f"/api/v1/backup/devices/{repo.id}")
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def stored(server: Any, repository_id: str) -> set[str]:
    """Names of the stored blobs of a repository: files under the data
    directory, or objects in the server's bucket (distributed profile)."""
    bucket = backends.stored_bucket(server.data_dir)
    if bucket is None:
        root = server.data_dir / "blobs" / "backups" / repository_id
        return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()
    prefix = f"backups/{repository_id}/"
    return {n for n in backends.bucket_names(bucket) if prefix in n}


def raw_request(server: Any, head: str, body: bytes = b"", *, close_write: bool = False,
                timeout: float = 30) -> bytes:
    """Send bytes as they are; return what the server answered (until it
    closes or stays quiet)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or not _complete(answer):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
        return answer


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def basic(repo: Repo) -> str:
    import base64

    pair = f"{repo.credential['username']}:{repo.credential['secret']}".encode()
    return "Basic " + base64.b64encode(pair).decode()


# -- repository and config ------------------------------------------------------------


def test_create_repository_needs_create_true_and_is_idempotent(bare: Repo) -> None:
    for _ in range(2):
        made = bare.http.post(f"{bare.path}?create=true")
        assert made.status_code == 200, made.text
    assert_error(bare.http.post(bare.path), 400, "invalid_input")
    assert_error(bare.http.post(f"{bare.path}?create=false"), 400, "invalid_input")


def test_config_is_written_once_and_never_deleted(bare: Repo, client: httpx.Client) -> None:
    assert bare.http.head(f"{bare.path}config").status_code == 404
    assert_error(bare.http.get(f"{bare.path}config"), 404, "not_found")
    config = os.urandom(155)
    assert bare.http.post(f"{bare.path}config", content=config).status_code == 200
    head = bare.http.head(f"{bare.path}config")
    assert head.status_code == 200
    assert head.headers["content-length"] == "155"
    got = bare.http.get(f"{bare.path}config")
    assert got.status_code == 200
    assert got.content == config
    assert_error(bare.http.post(f"{bare.path}config", content=b"another"), 403,
                 "permission_denied")
    assert_error(bare.http.delete(f"{bare.path}config"), 403, "permission_denied")
    assert bare.http.get(f"{bare.path}config").content == config
    assert device(client, bare)["initialised_at"] is not None


# -- listings ---------------------------------------------------------------------------


def test_a_fresh_repository_lists_nothing_for_every_type(bare: Repo) -> None:
    for kind in TYPES:
        v1 = bare.http.get(f"{bare.path}{kind}/")
        assert v1.status_code == 200, v1.text
        assert v1.headers["content-type"] == V1
        assert v1.json() == []
        v2 = bare.http.get(f"{bare.path}{kind}/", headers={"Accept": V2})
        assert v2.status_code == 200, v2.text
        assert v2.headers["content-type"] == V2
        assert v2.json() == []


def test_listings_v1_and_v2(repo: Repo) -> None:
    bodies = [os.urandom(n) for n in (10, 2000, 70_000)]
    for body in bodies:
        assert repo.post("data", body).status_code == 200
    assert repo.post("index", b"an index").status_code == 200
    v1 = repo.http.get(f"{repo.path}data/")
    assert v1.headers["content-type"] == V1
    assert sorted(v1.json()) == sorted(sha(b) for b in bodies)
    v2 = repo.http.get(f"{repo.path}data/", headers={"Accept": V2})
    assert v2.headers["content-type"] == V2
    assert sorted((e["name"], e["size"]) for e in v2.json()) == sorted(
        (sha(b), len(b)) for b in bodies)
    assert all(set(e) == {"name", "size"} for e in v2.json())
    assert repo.http.get(f"{repo.path}index/").json() == [sha(b"an index")]
    assert repo.http.get(f"{repo.path}snapshots/").json() == []


# -- reads ------------------------------------------------------------------------------


def test_head_and_ranged_reads(shared: Repo) -> None:
    repo = shared
    # Several of the store's 1 MiB segments, and over the size answered in one piece.
    body = os.urandom(5 * 1024 * 1024 + 321)
    size = len(body)
    name = sha(body)
    assert repo.post("data", body).status_code == 200
    url = f"{repo.path}data/{name}"
    head = repo.http.head(url)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(size)
    whole = repo.http.get(url)
    assert whole.status_code == 200
    assert whole.content == body
    cases = {
        "bytes=10-19": (10, 20),
        f"bytes={(1 << 20) - 5}-{(1 << 20) + 4}": ((1 << 20) - 5, (1 << 20) + 5),  # a seam
        "bytes=-100": (size - 100, size),
        f"bytes=-{size + 50}": (0, size),  # a suffix longer than the object: all of it
        f"bytes={size - 7}-": (size - 7, size),
        f"bytes=100-{size + 1000}": (100, size),  # clipped to the end
        "bytes=4096-": (4096, size),  # larger than one piece: streamed
    }
    for header, (start, end) in cases.items():
        got = repo.http.get(url, headers={"Range": header})
        if (start, end) == (0, size):
            assert got.status_code in (200, 206), header
        else:
            assert got.status_code == 206, header
            assert got.headers["content-range"] == f"bytes {start}-{end - 1}/{size}", header
        assert got.content == body[start:end], header
        assert int(got.headers["content-length"]) == end - start, header
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        refused = repo.http.get(url, headers={"Range": header})
        assert_error(refused, 416, "range_not_satisfiable")
        assert refused.headers["content-range"] == f"bytes */{size}"
    missing = f"{repo.path}data/{sha(b'never stored')}"
    assert repo.http.head(missing).status_code == 404
    assert_error(repo.http.get(missing, headers={"Range": "bytes=0-9"}), 404, "not_found")


# -- writes -----------------------------------------------------------------------------


def test_a_body_that_does_not_match_its_name_is_refused_and_not_kept(
        server: Any, client: httpx.Client, shared: Repo) -> None:
    repo = shared
    before, files = device(client, repo), stored(server, repo.id)
    name = sha(b"what the name says")
    assert_error(repo.post("data", b"something else", name=name), 400, "invalid_input")
    assert repo.http.head(f"{repo.path}data/{name}").status_code == 404
    after = device(client, repo)
    assert (after["used_bytes"], after["object_count"]) == (
        before["used_bytes"], before["object_count"])
    assert stored(server, repo.id) == files


def test_an_object_is_never_overwritten(shared: Repo) -> None:
    repo = shared
    body = os.urandom(1000)
    assert repo.post("snapshots", body).status_code == 200
    assert_error(repo.post("snapshots", body), 403, "permission_denied")
    assert repo.http.get(f"{repo.path}snapshots/{sha(body)}").content == body


def test_a_short_body_is_refused_and_not_kept(server: Any, client: httpx.Client,
                                              shared: Repo) -> None:
    """Content-Length says more than the client sends before it stops:
    nothing may be stored (httpx refuses to send this, hence the socket)."""
    repo = shared
    body = os.urandom(100_000)
    name = sha(body)
    before, shown = stored(server, repo.id), device(client, repo)
    answer = raw_request(server, f"POST {repo.path}data/{name} HTTP/1.1\nHost: 127.0.0.1\n"
                                 f"Authorization: {basic(repo)}\nContent-Length: {len(body)}\n"
                                 "Content-Type: application/octet-stream\n",
                         body[:40_000], close_write=True, timeout=10)
    # Gone before the answer, which the access log shows: a 400, not a 500.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    logged = f'"POST {repo.path}data/{name}" 400'
    assert _wait(lambda: logged in server.log()), server.log()[-3000:]
    assert "unhandled error" not in server.log()
    assert repo.http.head(f"{repo.path}data/{name}").status_code == 404
    assert stored(server, repo.id) == before
    assert device(client, repo)["objects"] == shown["objects"]


def test_a_declared_length_under_the_body_is_refused(shared: Repo) -> None:
    """The other short body: the request ends where Content-Length says,
    before the object does. Its SHA-256 cannot match: 400, nothing kept."""
    repo = shared
    body = os.urandom(5000)
    answer = raw_request(
        repo_server(repo), f"POST {repo.path}data/{sha(body)} HTTP/1.1\nHost: 127.0.0.1\n"
        f"Authorization: {basic(repo)}\nContent-Length: 4000\nConnection: close\n",
        body[:4000])
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b'"invalid_input"' in answer
    assert repo.http.head(f"{repo.path}data/{sha(body)}").status_code == 404


def repo_server(repo: Repo) -> Any:
    url = httpx.URL(str(repo.http.base_url))

    class Where:
        port = url.port

    return Where


def test_an_oversized_object_is_refused_before_its_body_is_read(shared: Repo) -> None:
    repo = shared
    name = sha(b"huge")
    answer = raw_request(
        repo_server(repo), f"POST {repo.path}data/{name} HTTP/1.1\nHost: 127.0.0.1\n"
        f"Authorization: {basic(repo)}\nContent-Length: {200 << 20}\n", b"x" * 1000)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b'"too_large"' in answer, answer[-300:]
    assert repo.http.head(f"{repo.path}data/{name}").status_code == 404


def test_a_repository_at_its_quota_answers_507_and_keeps_nothing(
        server: Any, client: httpx.Client) -> None:
    small = Repo(server, register(client, quota=60_000))
    try:
        assert small.http.post(f"{small.path}?create=true").status_code == 200
        first = os.urandom(50_000)
        assert small.post("data", first).status_code == 200
        files = stored(server, small.id)
        assert len(files) == 1
        too_much = os.urandom(20_000)
        full = small.post("data", too_much)
        assert_error(full, 507, "storage_full")
        assert full.json()["error"]["details"]["free"] == 10_000  # what still fits
        assert small.http.head(f"{small.path}data/{sha(too_much)}").status_code == 404
        # What still fits is taken, up to the last byte.
        rest = os.urandom(10_000)
        assert small.post("data", rest).status_code == 200
        assert_error(small.post("locks", b"x"), 507, "storage_full")
        shown = device(client, small)
        assert (shown["used_bytes"], shown["object_count"], shown["quota"]) == (
            60_000, 2, 60_000)
        assert len(stored(server, small.id)) == 2
    finally:
        small.close()


# -- deletes ----------------------------------------------------------------------------


def test_a_device_deletes_locks_only(server: Any, client: httpx.Client, repo: Repo) -> None:
    data, lock = os.urandom(3000), b'{"time":"2026-11-22T10:00:00Z","pid":42}'
    assert repo.post("data", data).status_code == 200
    assert repo.post("locks", lock).status_code == 200
    for kind, body in (("data", data), ("keys", None), ("snapshots", None), ("index", None)):
        name = sha(body) if body else sha(kind.encode())
        assert_error(repo.http.delete(f"{repo.path}{kind}/{name}"), 403, "permission_denied")
    assert repo.http.get(f"{repo.path}data/{sha(data)}").content == data
    assert repo.http.delete(f"{repo.path}locks/{sha(lock)}").status_code == 200
    assert repo.http.head(f"{repo.path}locks/{sha(lock)}").status_code == 404
    assert_error(repo.http.delete(f"{repo.path}locks/{sha(lock)}"), 404, "not_found")
    refused = _wait(lambda: events_for(server.data_dir, "backup.delete_refused", repo.id))
    assert len(refused) == 1  # the first refusal of the session, at once
    assert refused[0]["outcome"] == "failure"
    assert repo.credential["secret"] not in str(refused)


def test_a_maintenance_credential_deletes_and_its_use_is_audited(
        server: Any, client: httpx.Client, repo: Repo) -> None:
    body = os.urandom(4000)
    assert repo.post("data", body).status_code == 200
    used = device(client, repo)["used_bytes"]
    # The everyday token (no admin scope) cannot issue one.
    assert_error(client.post(f"/api/v1/backup/devices/{repo.id}/maintenance-keys", json={}),
                 403, "permission_denied")
    key = _issue_maintenance_key(server, repo)
    assert key["kind"] == "maintenance"
    assert key["expires_at"]
    assert key["username"] != repo.credential["username"]
    with httpx.Client(base_url=server.url, auth=(key["username"], key["secret"]),
                      timeout=60) as maint:
        assert maint.get(f"{repo.path}data/").json() == [sha(body)]
        assert maint.delete(f"{repo.path}data/{sha(body)}").status_code == 200
        assert maint.head(f"{repo.path}data/{sha(body)}").status_code == 404
        assert maint.delete(f"{repo.path}config").status_code == 200
        assert maint.head(f"{repo.path}config").status_code == 404
    assert device(client, repo)["used_bytes"] == used - len(body) - len(b"restic config")
    issued_events = events_for(server.data_dir, "backup.maintenance_key_issued", repo.id)
    assert len(issued_events) == 1
    assert key["secret"] not in str(issued_events)
    used_events = _wait(lambda: events_for(server.data_dir, "backup.maintenance_used", repo.id))
    assert len(used_events) == 1
    sessions = _wait(lambda: [e for e in events_for(server.data_dir, "backup.session", repo.id)
                              if "maintenance" in str(e)], timeout=30)
    assert sum(e["details"]["objects_deleted"] for e in sessions) == 2, sessions
    # Erasing access or history leaves one event per object (the config
    # here); the data packs a prune removes are only counted.
    deleted = events_for(server.data_dir, "backup.object_deleted", repo.id)
    assert [(e["details"]["type"], e["details"]["name"]) for e in deleted] == [
        ("config", "config")]


def _issue_maintenance_key(server: Any, repo: Repo) -> dict[str, Any]:
    """A maintenance key for ``repo``, issued by the administrator."""
    admin_token = login(server.url, scopes=["transfers:read", "transfers:write", "admin"])
    issued = httpx.post(f"{server.url}/api/v1/backup/devices/{repo.id}/maintenance-keys",
                        json={"hours": 1}, headers={"Authorization": f"Bearer {admin_token}"},
                        timeout=60)
    assert issued.status_code == 201, issued.text
    key: dict[str, Any] = issued.json()
    return key


def _maintenance_key(server: Any, repo: Repo) -> httpx.Client:
    key = _issue_maintenance_key(server, repo)
    return httpx.Client(base_url=server.url, auth=(key["username"], key["secret"]), timeout=60)


def test_revoking_a_device_revokes_its_maintenance_keys_too(
        server: Any, client: httpx.Client) -> None:
    """A maintenance key typed on a compromised machine dies with the
    device; a new one can be issued afterwards to restore."""
    repo = Repo(server, register(client))
    try:
        assert repo.http.post(f"{repo.path}?create=true").status_code == 200
        before = _maintenance_key(server, repo)
        assert before.get(f"{repo.path}data/").status_code == 200
        assert client.delete(f"/api/v1/backup/devices/{repo.id}").status_code == 200
        assert_error(before.get(f"{repo.path}data/"), 401, "authentication_required")
        after = _maintenance_key(server, repo)
        assert after.get(f"{repo.path}data/").status_code == 200
        before.close()
        after.close()
    finally:
        repo.close()


def test_a_maintenance_key_ends_when_its_issuer_is_no_longer_an_administrator(
        server: Any, client: httpx.Client) -> None:
    repo = Repo(server, register(client))
    try:
        maint = _maintenance_key(server, repo)
        assert maint.get(f"{repo.path}data/").status_code == 200
        issuer = sql(server.data_dir, "SELECT created_by FROM backup_credentials "
                     "WHERE kind = 'maintenance' AND repository_id = ?", repo.id)[0][0]
        sql(server.data_dir, "UPDATE users SET role = 'member' WHERE id = ?", issuer)
        try:
            assert_error(maint.get(f"{repo.path}data/"), 401, "authentication_required")
        finally:
            sql(server.data_dir, "UPDATE users SET role = 'admin' WHERE id = ?", issuer)
        assert maint.get(f"{repo.path}data/").status_code == 200
        maint.close()
    finally:
        repo.close()


# -- who may reach what -----------------------------------------------------------------


def test_missing_or_wrong_credentials_answer_401(server: Any, repo: Repo) -> None:
    url = f"{server.url}{repo.path}config"
    user, secret = repo.credential["username"], repo.credential["secret"]
    for auth_header in (None, "Bearer abc", "Basic !!!", "Basic " + "eDp5"[:3],
                        basic(repo).replace(basic(repo)[6:], "dXNlcm9ubHk=")):  # "useronly"
        headers = {"Authorization": auth_header} if auth_header else {}
        refused = httpx.get(url, headers=headers)
        assert_error(refused, 401, "authentication_required")
        assert refused.headers["www-authenticate"].startswith("Basic ")
    wrong = httpx.get(url, auth=(user, secret[:-2] + "xx"))
    assert_error(wrong, 401, "authentication_required")
    assert wrong.headers["www-authenticate"].startswith("Basic ")
    unknown = httpx.get(url, auth=(uuid.uuid4().hex, secret))
    assert_error(unknown, 401, "authentication_required")
    assert secret not in server.log()


def test_wrong_secrets_are_throttled_and_audited(server: Any, client: httpx.Client) -> None:
    target = Repo(server, register(client))
    # From a source of its own: earlier tests' refusals from 127.0.0.1 may
    # have opened this window already (the rest are folded).
    source = "127.0.0.23"
    guesser = httpx.Client(transport=httpx.HTTPTransport(local_address=source))
    try:
        user = target.credential["username"]
        url = f"{server.url}{target.path}data/"
        statuses = []
        for attempt in range(6):
            answer = guesser.get(url, auth=(user, f"devine-{attempt}"))
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                assert_error(answer, 429, "too_many_attempts")
                assert int(answer.headers["retry-after"]) >= 1
                break
            assert_error(answer, 401, "authentication_required")
        assert statuses[-1] == 429, statuses
        # The first refusal of the window is an event at once; the others
        # are folded into its ``access.refusals`` count (test_auth_limits).
        assert [e for e in audit_events(server.data_dir, "access.unauthenticated")
                if e["source"] == source]
        throttled = audit_events(server.data_dir, "access.throttled")
        assert throttled and throttled[-1]["outcome"] == "failure"
        assert all(f"devine-{i}" not in str(throttled) for i in range(6))
    finally:
        guesser.close()
        target.close()


def test_a_credential_reaches_only_its_own_repository(
        server: Any, client: httpx.Client, repo: Repo) -> None:
    secret_body = b"pack of the other device " + os.urandom(64)
    assert repo.post("data", secret_body).status_code == 200
    other = Repo(server, register(client))
    try:
        assert other.http.post(f"{other.path}?create=true").status_code == 200
        # The other device aims at this repository with its own credential.
        attempts = [
            other.http.post(f"{repo.path}?create=true"),
            other.http.get(f"{repo.path}config"),
            other.http.head(f"{repo.path}config"),
            other.http.get(f"{repo.path}data/"),
            other.http.get(f"{repo.path}data/", headers={"Accept": V2}),
            other.http.get(f"{repo.path}data/{sha(secret_body)}"),
            other.http.get(f"{repo.path}data/{sha(secret_body)}",
                           headers={"Range": "bytes=0-9"}),
            other.http.head(f"{repo.path}data/{sha(secret_body)}"),
            other.http.post(f"{repo.path}data/{sha(b'intrus')}", content=b"intrus"),
            other.http.post(f"{repo.path}config", content=b"intrus"),
            other.http.delete(f"{repo.path}locks/{sha(b'x')}"),
            other.http.delete(f"{repo.path}data/{sha(secret_body)}"),
        ]
        for answer in attempts:
            assert answer.status_code in (401, 403, 404), answer.request
            assert secret_body not in answer.content
            assert sha(secret_body).encode() not in answer.content
            if answer.request.method != "HEAD":
                assert answer.json()["error"]["code"] in (
                    "authentication_required", "permission_denied", "not_found")
        assert repo.http.get(f"{repo.path}data/").json() == [sha(secret_body)]
        assert repo.http.head(f"{repo.path}data/{sha(b'intrus')}").status_code == 404
        # The other organisation's API cannot see the device either.
        assert other.http.get(f"{other.path}data/").json() == []
        # Audited on the intruding credential's repository, at its first
        # attempt, as an access denied (not as a refused delete).
        denied = _wait(lambda: events_for(server.data_dir, "backup.access_denied", other.id))
        assert len(denied) == 1 and denied[0]["outcome"] == "failure"
        assert not events_for(server.data_dir, "backup.delete_refused", other.id)
    finally:
        other.close()


def test_revoking_a_device_ends_its_access_at_once(server: Any, client: httpx.Client,
                                                   repo: Repo) -> None:
    assert repo.http.get(f"{repo.path}config").status_code == 200  # verified and remembered
    revoked = client.delete(f"/api/v1/backup/devices/{repo.id}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    for answer in (repo.http.get(f"{repo.path}config"), repo.http.get(f"{repo.path}data/"),
                   repo.post("data", b"after revocation")):
        assert_error(answer, 401, "authentication_required")
    assert len(events_for(server.data_dir, "backup.device_revoked", repo.id)) == 1


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "unknown/"),
    ("GET", "config2/"),
    ("GET", "data/" + "A" * 64),
    ("GET", "data/" + "a" * 63),
    ("HEAD", "snapshot/" + "a" * 64),
    ("POST", "data/not-a-sha256"),
    ("POST", "bogus/" + "a" * 64),
    ("DELETE", "locks/" + "a" * 65),
    ("DELETE", "keys/xyz"),
])
def test_unknown_types_and_bad_names_answer_400(shared: Repo, method: str, path: str) -> None:
    repo = shared
    answer = repo.http.request(method, f"{repo.path}{path}", content=b"x" if method == "POST"
                               else None)
    if method == "HEAD":
        assert answer.status_code == 400
    else:
        assert_error(answer, 400, "invalid_input")


def _wait(found: Any, timeout: float = 15) -> Any:
    """Poll ``found()`` until it returns something (the scheduler closes
    sessions every ten seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        result = found()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)
