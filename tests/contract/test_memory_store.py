"""MemoryBlobStore against the conformance suite, plus what only it promises."""

from __future__ import annotations

import threading

import pytest

from coffre.errors import ConfigurationError, Conflict
from coffre.ports import BlobStore
from coffre.storage import MemoryBlobStore, open_blob_store

from .blobstore_suite import BlobStoreSuite


class TestMemoryBlobStore(BlobStoreSuite):
    @pytest.fixture
    def store(self) -> BlobStore:
        return MemoryBlobStore()


def test_uncommitted_bytes_are_lost_on_close() -> None:
    store = MemoryBlobStore()
    appender = store.open_append("k", 0)
    appender.write(b"kept")
    appender.commit()
    appender.write(b"lost")
    assert store.read("k") == b"kept"  # not visible before commit
    appender.close()
    assert store.size("k") == 4
    with pytest.raises(Conflict):
        store.open_append("k", 8)


def test_closed_appender_refuses_use() -> None:
    appender = MemoryBlobStore().open_append("k", 0)
    appender.close()
    appender.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        appender.write(b"x")
    with pytest.raises(ValueError, match="closed"):
        appender.commit()


def test_concurrent_puts_and_reads() -> None:
    store = MemoryBlobStore()
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for index in range(200):
                key = f"w{worker}/{index % 5}"
                store.put(key, bytes([worker]) * 100)
                assert store.read(key) == bytes([worker]) * 100
                list(store.list(""))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(list(store.list())) == 40


def test_open_blob_store_memory_gives_fresh_stores() -> None:
    first = open_blob_store("memory://")
    second = open_blob_store("memory://")
    assert isinstance(first, MemoryBlobStore)
    first.put("k", b"x")
    assert not second.exists("k")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "memory://somewhere",
        "http://example.org/blobs",
        "ftp://user:secret@host/path",
        "user:secret@host",
        "file://relative/path",
        "file:relative",
        "file:///srv/coffre?fsync=off",
    ],
)
def test_open_blob_store_refuses(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_blob_store(url)
    assert "secret" not in caught.value.message
