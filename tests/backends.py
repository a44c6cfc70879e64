"""Real backing services for the distributed profile, started by the tests:
a throwaway PostgreSQL cluster (Debian's PostgreSQL server: its initdb and
pg_ctl refuse to run as root, so as root they run as ``nobody`` in a
directory that user owns).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    commit; returns the rows, if any."""
    import re

    from sqlalchemy import create_engine, text

    names = iter(range(len(params)))
    bound = re.sub(r"\?", lambda _: f":p{next(names)}", statement)
    url = database_url(data_dir)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            result = connection.execute(text(bound), {f"p{i}": v for i, v in enumerate(params)})
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()
