"""Key files created by instances that start together on one shared key
directory (issue 6): whoever loses the race reads the winner's key, and no
one ever reads a half-written file."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from coffre.crypto.keyfile import KeyFileProvider, read_secret_file
from coffre.crypto.signing import SigningKeyFile

CONTENDERS = 8


def _root_key_id(path: Path) -> str:
    return KeyFileProvider(path).key_id


def _signing_public_key(path: Path) -> str:
    return SigningKeyFile(path).public_key.hex()


@pytest.mark.parametrize("identify", [_root_key_id, _signing_public_key])
def test_threads_creating_one_key_file_at_once_get_the_same_key(
        tmp_path: Path, identify: Callable[[Path], str]) -> None:
    path = tmp_path / "keys" / "shared.key"
    barrier = threading.Barrier(CONTENDERS)

    def contender() -> str:
        barrier.wait()
        return identify(path)

    with ThreadPoolExecutor(CONTENDERS) as pool:
        seen = [f.result() for f in [pool.submit(contender) for _ in range(CONTENDERS)]]
    assert len(set(seen)) == 1
    assert seen[0] == identify(path)
    assert path.stat().st_mode & 0o777 == 0o400
    assert [p.name for p in path.parent.iterdir()] == ["shared.key"]  # no temporary left


def _process_contender(path: str, barrier: threading.Barrier, results: object) -> None:
    barrier.wait()
    results.put(KeyFileProvider(Path(path)).key_id)  # type: ignore[attr-defined]


def test_processes_creating_one_key_file_at_once_get_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "root.key"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(CONTENDERS)
    results = context.Queue()
    processes = [context.Process(target=_process_contender, args=(str(path), barrier, results))
                 for _ in range(CONTENDERS)]
    for process in processes:
        process.start()
    seen = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert len(set(seen)) == 1
    assert seen[0] == KeyFileProvider(path).key_id
    assert [p.name for p in path.parent.iterdir()] == ["root.key"]


def test_an_existing_key_file_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    first = read_secret_file(path, "root key", create=True)
    from coffre.crypto import keyfile

    keyfile._create_key_file(path)  # as an instance that lost the race would
    assert read_secret_file(path, "root key", create=True) == first
    assert [p.name for p in tmp_path.iterdir()] == ["root.key"]
