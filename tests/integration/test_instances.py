"""Several app instances (issue 6): two ``coffre serve`` processes on
different ports share one PostgreSQL database, one SeaweedFS bucket and
one root key, each with a data directory of its own. An upload begun on
one resumes on the other, a recipient verified on one downloads through
the other, the sender's live stream on one sees what happens on the
other (PostgreSQL LISTEN/NOTIFY), and an instance whose PostgreSQL stops
answers 503 and recovers by itself.

The distributed profile only (``COFFRE_TEST_PROFILE=distributed``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from alembic.script import ScriptDirectory
from prometheus_client.parser import text_string_to_metric_families

from coffre.db.migrate import alembic_config
from tests import backends
from tests.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    MailCatcher,
    Server,
    free_port,
    login,
    started_mail,
)
from tests.integration.flows import TUS, link_token, upload_bytes, verify_link
from tests.integration.support import new_address
from tests.integration.test_tracking import EventStream

pytestmark = pytest.mark.skipif(
    backends.profile() != "distributed",
    reason="several instances share PostgreSQL and S3: run with COFFRE_TEST_PROFILE=distributed",
)
MiB = 1 << 20
METRICS_SECRET = "secret-de-supervision-du-groupe"


def _instances(base: Path, mail: MailCatcher, database: str, count: int) -> list[Server]:
    """``count`` servers sharing ``database``, one bucket and one root key,
    set up with an administrator (through the first)."""
    servers = _unstarted(base, mail, database, count)
    _set_up(servers[0], base)
    return servers


def _unstarted(base: Path, mail: MailCatcher, database: str, count: int) -> list[Server]:
    """``count`` servers sharing ``database``, one bucket and one (still
    empty) key directory, each with a data directory of its own."""
    keys = base / "keys"
    keys.mkdir(mode=0o700)
    shared = {
        "COFFRE_DATABASE_URL": database,
        **backends.storage_environ(backends.bucket_for(base / "i0" / "data")),
        "COFFRE_ROOT_KEY_FILE": str(keys / "root.key"),
        "COFFRE_SMTP_HOST": "127.0.0.1", "COFFRE_SMTP_PORT": str(mail.port),
        "COFFRE_SMTP_TLS": "none",
    }
    servers = [Server(base / f"i{n}" / "data", env=dict(shared)) for n in range(count)]
    for server in servers:
        server.data_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
    return servers


def _set_up(server: Server, base: Path) -> None:
    password = base / "admin-password"
    password.write_text(ADMIN_PASSWORD)
    done = server.coffre("setup", "--email", ADMIN_EMAIL, "--password-file", str(password),
                         "--organisation", "Groupe hospitalier")
    assert done.returncode == 0, done.stderr + done.stdout


@pytest.fixture(scope="module")
def mail() -> Iterator[MailCatcher]:
    with started_mail() as catcher:
        yield catcher


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory,
         mail: MailCatcher) -> Iterator[tuple[Server, Server]]:
    base = tmp_path_factory.mktemp("instances")
    first, second = _instances(base, mail, backends.database_for(base / "i0" / "data"), 2)
    # The first runs two worker processes (``coffre serve --workers 2``).
    first.env.update({"COFFRE_WORKERS": "2", "COFFRE_METRICS_TOKEN": METRICS_SECRET})
    try:
        first.start()
        second.start()
        yield first, second
    finally:
        first.stop()
        second.stop()


@pytest.fixture(scope="module")
def token(pair: tuple[Server, Server]) -> str:
    return login(pair[0].url)


def _path(url: str) -> str:
    return urlsplit(url).path


def test_upload_begun_on_one_instance_completes_on_the_other(
        pair: tuple[Server, Server], token: str, mail: MailCatcher) -> None:
    """Then a recipient verified through the first downloads through the
    second, while the sender's live stream on the first sees it."""
    first, second = pair
    auth = {"Authorization": f"Bearer {token}"}
    data = os.urandom(13 * MiB + 12345)  # S3 parts of 5 MiB and a tail
    created = httpx.post(f"{first.url}/api/v1/uploads/", headers={
        **auth, **TUS, "Upload-Length": str(len(data))})
    assert created.status_code == 201, created.text
    upload = _path(created.headers["location"])
    half = 6 * MiB + 7
    patched = httpx.patch(f"{first.url}{upload}", content=data[:half], timeout=60, headers={
        **auth, **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert patched.status_code == 204, patched.text

    head = httpx.head(f"{second.url}{upload}", headers={**auth, **TUS})
    assert head.status_code == 200
    assert head.headers["upload-offset"] == str(half)  # acknowledged bytes survive
    patched = httpx.patch(f"{second.url}{upload}", content=data[half:], timeout=60, headers={
        **auth, **TUS, "Upload-Offset": str(half),
        "Content-Type": "application/offset+octet-stream"})
    assert patched.status_code == 204, patched.text
    assert patched.headers["upload-offset"] == str(len(data))

    address = new_address()
    made = httpx.post(f"{second.url}/api/v1/transfers", headers=auth, timeout=60, json={
        "files": [upload.rstrip("/").rsplit("/", 1)[-1]], "recipients": [address]})
    assert made.status_code == 201, made.text
    transfer: dict[str, Any] = made.json()
    assert transfer["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    link = link_token(transfer["links"][address])

    stream = EventStream(f"{first.url}/api/v1/transfers/{transfer['id']}/events/stream", token)
    stream.start()
    try:
        assert stream.opened.wait(10)
        assert stream.status == 200
        access = verify_link(first.url, mail, link, address)
        stream.wait_for("code_verified")
        info = httpx.get(f"{second.url}/api/v1/links/{link}", headers=access)
        assert info.status_code == 200, info.text
        before = len(stream.events)
        got = httpx.get(f"{second.url}{_path(info.json()['files'][0]['url'])}", headers=access,
                        timeout=60)
        assert got.status_code == 200, got.text
        assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(data).hexdigest()
        stream.wait_for("file_downloaded")  # made through the second, seen on the first
    finally:
        stream.close()
    assert "file_downloaded" in [e["kind"] for e in stream.events[before:]]


def _requests_to_healthz(server: Server) -> float:
    response = httpx.get(f"{server.url}/metrics",
                         headers={"Authorization": f"Bearer {METRICS_SECRET}"})
    assert response.status_code == 200, response.text
    return sum(
        sample.value for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "coffre_http_requests_total"
        and sample.labels == {"method": "GET", "route": "/healthz", "status": "200"})


def test_metrics_of_several_workers_add_up(pair: tuple[Server, Server]) -> None:
    """Whichever worker answers /metrics counts the requests all of them served."""
    first, _ = pair
    before = _requests_to_healthz(first)
    for _ in range(20):
        with httpx.Client() as fresh:  # a new connection each: any worker may take it
            assert fresh.get(f"{first.url}/healthz").status_code == 200
    for _ in range(5):  # each scrape may be answered by another worker
        assert _requests_to_healthz(first) == before + 20


def test_instances_started_together_on_an_empty_database_share_one_schema_and_key(
        tmp_path: Path, mail: MailCatcher) -> None:
    """Two instances started at the same moment on an empty database and an
    empty shared key directory: one migrates while the other waits for it,
    and both end up with the key the first to write it wrote."""
    database = backends.database_for(tmp_path / "i0" / "data")
    servers = _unstarted(tmp_path, mail, database, 2)
    for server in servers:  # both sign checkpoints while the test runs
        server.env["COFFRE_AUDIT_CHECKPOINT_SECONDS"] = "1"
    keys = tmp_path / "keys"
    assert not any(keys.iterdir())
    try:
        with ThreadPoolExecutor(2) as pool:  # Server.start blocks until /healthz answers
            for started in [pool.submit(server.start) for server in servers]:
                started.result()
        for server in servers:
            assert _ready(server), server.log()
        with psycopg.connect(database) as connection:
            versions = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        head = ScriptDirectory.from_config(alembic_config(database)).get_current_head()
        assert versions == [(head,)]
        names = {p.name for p in keys.iterdir()}
        assert {"audit-signing.key", "root.key"} <= names
        assert not [name for name in names if name.endswith(".tmp")]

        first, second = servers
        _set_up(first, tmp_path)
        auth = {"Authorization": f"Bearer {login(first.url)}"}
        data = os.urandom(MiB + 17)
        with httpx.Client(base_url=first.url, headers=auth, timeout=60) as client:
            upload = upload_bytes(client, data)
            address = new_address()
            made = client.post("/api/v1/transfers", json={"files": [upload],
                                                          "recipients": [address]})
        assert made.status_code == 201, made.text
        link = link_token(made.json()["links"][address])
        access = verify_link(second.url, mail, link, address)
        info = httpx.get(f"{second.url}/api/v1/links/{link}", headers=access)
        assert info.status_code == 200, info.text
        got = httpx.get(f"{second.url}{_path(info.json()['files'][0]['url'])}", headers=access,
                        timeout=60)
        assert got.status_code == 200, got.text
        assert got.content == data  # the second unwraps keys the first wrapped

        with psycopg.connect(database) as connection:
            (events,) = connection.execute("SELECT count(*) FROM audit_events").fetchone() or (0,)

        def signed_by_an_instance() -> bool:
            with psycopg.connect(database) as connection:
                row = connection.execute("SELECT max(tree_size) FROM audit_checkpoints").fetchone()
            return row is not None and (row[0] or 0) >= events

        _until(signed_by_an_instance)
        verified = first.coffre("audit", "verify")
        assert verified.returncode == 0, verified.stderr + verified.stdout
        for server in servers:
            assert "AUDIT TRAIL ALTERED" not in server.log()
    finally:
        for server in servers:
            server.stop()


class Postgres:
    """A PostgreSQL cluster of this test's own, to stop and start again."""

    def __init__(self) -> None:
        self.binaries = backends.postgres_bin()
        self.base = Path(tempfile.mkdtemp(prefix="coffre-pg-stop-"))
        self.data, self.sockets = self.base / "data", self.base / "run"
        self.sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.base, "nobody", "nogroup")
            shutil.chown(self.sockets, "nobody", "nogroup")
        self.port = free_port()
        self.env = {**os.environ, "LC_ALL": "C.UTF-8"}
        self._run("initdb", "-D", str(self.data), "-U", "coffre", "--auth=trust",
                  "--encoding=UTF8", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://coffre@127.0.0.1:{self.port}/coffre"

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        subprocess.run(backends._as_owner([str(self.binaries / tool), *args]), check=check,
                       capture_output=True, env=self.env, timeout=120)

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.base / "log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def close(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def _until(check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the instance did not recover"
        time.sleep(0.25)


def _ready(server: Server) -> bool:
    try:
        return httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def _alone_on_a_database(base: Path, mail: MailCatcher) -> Iterator[
        tuple[Server, Postgres, dict[str, str]]]:
    """One instance on a PostgreSQL of its own, set up, with an API token's header."""
    postgres = Postgres()
    try:
        postgres.start()
        backends._create_database(postgres.port)
        (server,) = _instances(base, mail, postgres.url, 1)
        server.start()
        try:
            auth = {"Authorization": f"Bearer {login(server.url)}"}
            assert httpx.get(f"{server.url}/api/v1/transfers", headers=auth).status_code == 200
            assert _ready(server)
            yield server, postgres, auth
        finally:
            server.stop()
    finally:
        postgres.close()


def test_postgresql_stopping_fails_readiness_and_the_instance_recovers(
        tmp_path: Path, mail: MailCatcher) -> None:
    with _alone_on_a_database(tmp_path, mail) as (server, postgres, auth):
        postgres.stop()
        ready = httpx.get(f"{server.url}/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "unavailable", "storage": "ok"}
        assert httpx.get(f"{server.url}/healthz").status_code == 200  # alive, not ready

        postgres.start()
        _until(lambda: _ready(server))
        assert httpx.get(f"{server.url}/api/v1/transfers", headers=auth).status_code == 200
        assert server.process is not None and server.process.poll() is None


def test_requests_answer_503_while_postgresql_is_stopped(tmp_path: Path,
                                                         mail: MailCatcher) -> None:
    with _alone_on_a_database(tmp_path, mail) as (server, postgres, auth):
        postgres.stop()
        try:
            down = httpx.get(f"{server.url}/api/v1/transfers", headers=auth, timeout=30)
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"].endswith("unavailable")
            assert "postgres" not in down.text.lower()  # no connection details leak
        finally:
            postgres.start()
