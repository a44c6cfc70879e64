"""The distributed profile's storage: two ``coffre serve`` instances sharing
one PostgreSQL database and one SeaweedFS bucket (both real, started here,
whatever ``COFFRE_TEST_PROFILE`` says).

An upload begun on one instance completes on the other and is consolidated
into one object; SeaweedFS stopped in the middle of an upload gives clean
503s (uploads, downloads, readiness) and, once it is back, the upload
resumes from the server's offset with the right SHA-256; administrators
see the storage region (SEC-1).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import backends
from tests.conftest import MailCatcher, Server, login, running_server, started_mail
from tests.integration.flows import sql
from tests.integration.support import assert_error

MiB = 1 << 20
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}


@pytest.fixture(scope="module")
def weed() -> Iterator[backends.WeedServer]:
    server = backends.WeedServer(bucket="coffre-s3-profile")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def mail() -> Iterator[MailCatcher]:
    with started_mail() as catcher:
        yield catcher


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory, weed: backends.WeedServer,
          mail: MailCatcher) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("s3-profile")
    env = {"COFFRE_DATABASE_URL": backends.database_for(base / "data"),
           **backends.storage_environ(weed.service)}
    with running_server(base, mail, **env) as server:
        yield server


@pytest.fixture(scope="module")
def second(first: Server) -> Iterator[Server]:
    """Another instance: same database, bucket and root key, its own port."""
    server = Server(first.data_dir, env=dict(first.env))
    server.log_path = first.data_dir.parent / "second.log"
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def token(first: Server) -> str:
    return login(first.url)


def client(server: Server, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60,
                        headers={"Authorization": f"Bearer {token}"})


def new_upload(c: httpx.Client, length: int) -> str:
    created = c.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": str(length)})
    assert created.status_code == 201, created.text
    return str(created.headers["location"]).rsplit("/", 1)[-1]


def patch(c: httpx.Client, upload: str, offset: int, body: Any) -> httpx.Response:
    return c.patch(f"/api/v1/uploads/{upload}", content=body,
                   headers={**OCTETS, "Upload-Offset": str(offset)})


def server_offset(c: httpx.Client, upload: str) -> int:
    head = c.head(f"/api/v1/uploads/{upload}", headers=TUS)
    assert head.status_code == 200, head.text
    return int(head.headers["upload-offset"])


def send_to_self(c: httpx.Client, uploads: list[str]) -> dict[str, Any]:
    made = c.post("/api/v1/transfers", json={"files": uploads,
                                             "recipients": ["patient@exemple.fr"]})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


def downloaded_sha256(c: httpx.Client, transfer: dict[str, Any]) -> str:
    file_id = transfer["files"][0]["id"]
    digest = hashlib.sha256()
    with c.stream("GET", f"/api/v1/transfers/{transfer['id']}/files/{file_id}") as response:
        assert response.status_code == 200, response.read()
        for chunk in response.iter_bytes():
            digest.update(chunk)
    return digest.hexdigest()


def storage_key(server: Server, upload: str) -> str:
    (blob,) = sql(server.data_dir, "SELECT blob_id FROM uploads WHERE id = ?", upload)[0]
    return f"blobs/{blob[:2]}/{blob}"


def test_an_upload_begun_on_one_instance_completes_on_the_other(
    first: Server, second: Server, token: str, weed: backends.WeedServer,
) -> None:
    data = os.urandom(13 * MiB + 12345)
    with client(first, token) as a, client(second, token) as b:
        upload = new_upload(a, len(data))
        begun = patch(a, upload, 0, data[:7 * MiB + 999])
        assert begun.status_code == 204, begun.text
        offset = server_offset(b, upload)
        assert offset == 7 * MiB + 999
        done = patch(b, upload, offset, data[offset:])
        assert done.status_code == 204, done.text
        assert done.headers["upload-offset"] == str(len(data))

        transfer = send_to_self(b, [upload])
        assert transfer["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
        assert downloaded_sha256(a, transfer) == hashlib.sha256(data).hexdigest()

    # Completed, then consolidated (in the background, after the 204): one
    # object, no pieces left behind.
    key = storage_key(first, upload)

    def consolidated() -> bool:
        names = backends.bucket_names(weed.service)
        return key in names and not [n for n in names
                                     if n.startswith(".tmp-append/" + key + "/")]

    deadline = time.monotonic() + 60
    while not consolidated():
        assert time.monotonic() < deadline, "the upload was never consolidated"
        time.sleep(0.1)


def test_seaweedfs_down_mid_upload_answers_503_then_the_upload_resumes(
    first: Server, token: str, weed: backends.WeedServer,
) -> None:
    data = os.urandom(9 * MiB + 4321)
    with client(first, token) as a:
        stored = os.urandom(2 * MiB + 5)
        earlier = new_upload(a, len(stored))
        assert patch(a, earlier, 0, stored).status_code == 204
        kept = send_to_self(a, [earlier])

        upload = new_upload(a, len(data))
        begun = patch(a, upload, 0, data[:6 * MiB])
        assert begun.status_code == 204, begun.text
        committed = int(begun.headers["upload-offset"])

        def body() -> Iterator[bytes]:
            yield data[committed:committed + MiB]
            weed.stop()  # SeaweedFS goes away while the body is on its way
            yield data[committed + MiB:committed + 3 * MiB]

        try:
            failed = patch(a, upload, committed, body())
            error = assert_error(failed, 503, "storage_unavailable")
            assert failed.headers["retry-after"] == "5"
            assert failed.headers["tus-resumable"] == "1.0.0"
            assert error["details"] == {}
            assert server_offset(a, upload) == committed  # the database still answers

            file_id = kept["files"][0]["id"]
            down = a.get(f"/api/v1/transfers/{kept['id']}/files/{file_id}")
            assert_error(down, 503, "storage_unavailable")
            assert down.headers["retry-after"] == "5"

            ready = httpx.get(f"{first.url}/readyz", timeout=30)
            assert ready.status_code == 503
            assert ready.json() == {"status": "unavailable",
                                    "checks": {"database": "ok", "storage": "unavailable"}}
        finally:
            if weed.process is None:
                weed.start()

        assert httpx.get(f"{first.url}/readyz", timeout=30).status_code == 200
        offset = server_offset(a, upload)
        assert offset == committed
        resumed = patch(a, upload, offset, data[offset:])
        assert resumed.status_code == 204, resumed.text
        assert resumed.headers["upload-offset"] == str(len(data))
        transfer = send_to_self(a, [upload])
        assert transfer["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
        assert downloaded_sha256(a, transfer) == hashlib.sha256(data).hexdigest()
        assert downloaded_sha256(a, kept) == hashlib.sha256(stored).hexdigest()


ADMIN_SCOPES = ["transfers:read", "transfers:write", "admin"]


def test_administrators_see_the_storage_region(first: Server, token: str) -> None:
    with client(first, login(first.url, scopes=ADMIN_SCOPES)) as admin:
        report = admin.get("/api/v1/usage")
        assert report.status_code == 200, report.text
        assert report.json()["storage_location"] == "eu-west-3"
    with client(first, token) as member_view:  # without the admin scope: not shown
        assert member_view.get("/api/v1/usage").json()["storage_location"] is None


def test_the_region_is_not_invented_for_local_storage(tmp_path: Path) -> None:
    local = f"file://{tmp_path / 'blobs'}"
    with started_mail() as catcher, running_server(tmp_path, catcher,
                                                   COFFRE_STORAGE_URL=local) as server:
        admin = client(server, login(server.url, scopes=ADMIN_SCOPES))
        with admin:
            report = admin.get("/api/v1/usage").json()
        assert report["organisation"] is not None
        assert report["storage_location"] is None
