"""LocalBlobStore against the conformance suite, plus its confinement and file modes.

Symlinks: the store never follows one, whichever path component it sits
on. Every operation that meets one raises ``PermissionDenied`` (the store
refuses to touch that path), and ``list`` skips it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from coffre.errors import ConfigurationError, Conflict, NotFound, PermissionDenied
from coffre.ports import BlobStore
from coffre.storage import LocalBlobStore, open_blob_store

from .blobstore_suite import BlobStoreSuite, StreamFailed, failing_chunks


class TestLocalBlobStore(BlobStoreSuite):
    @pytest.fixture
    def store(self, tmp_path: Path) -> BlobStore:
        return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
def local(root: Path) -> LocalBlobStore:
    return LocalBlobStore(root)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret").write_bytes(b"outside the root")
    return directory


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if not p.is_dir())


# -- confinement -------------------------------------------------------------


def test_symlinked_file_is_not_followed(local: LocalBlobStore, root: Path, outside: Path) -> None:
    (root / "k").mkdir()
    (root / "k" / "link").symlink_to(outside / "secret")
    with pytest.raises(PermissionDenied):
        local.read("k/link")
    with pytest.raises(PermissionDenied):
        local.size("k/link")
    with pytest.raises(PermissionDenied):
        local.exists("k/link")
    with pytest.raises(PermissionDenied):
        local.put("k/link", b"overwrite")
    with pytest.raises(PermissionDenied):
        local.put_stream("k/link", [b"overwrite"])
    with pytest.raises(PermissionDenied):
        local.open_append("k/link", 0)
    with pytest.raises(PermissionDenied):
        local.open_append("k/link", 3)
    with pytest.raises(PermissionDenied):
        local.delete("k/link")
    assert list(local.list()) == []
    assert (outside / "secret").read_bytes() == b"outside the root"
    assert (root / "k" / "link").is_symlink()


def test_symlinked_directory_is_not_followed(
    local: LocalBlobStore, root: Path, outside: Path
) -> None:
    (root / "k").mkdir()
    (root / "k" / "dir").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PermissionDenied):
        local.read("k/dir/secret")
    with pytest.raises(PermissionDenied):
        local.size("k/dir/secret")
    with pytest.raises(PermissionDenied):
        local.exists("k/dir/secret")
    with pytest.raises(PermissionDenied):
        local.put("k/dir/new", b"escape")
    with pytest.raises(PermissionDenied):
        local.put("k/dir/deeper/new", b"escape")
    with pytest.raises(PermissionDenied):
        local.open_append("k/dir/new", 0)
    with pytest.raises(PermissionDenied):
        local.open_append("k/dir/secret", 5)
    with pytest.raises(PermissionDenied):
        local.delete("k/dir/secret")
    assert list(local.list()) == []
    assert list(local.list("k/dir/")) == []
    assert files_under(outside) == ["secret"]
    assert (outside / "secret").read_bytes() == b"outside the root"


def test_symlinked_top_level_directory_is_not_followed(
    local: LocalBlobStore, root: Path, outside: Path
) -> None:
    (root / "top").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PermissionDenied):
        local.read("top/secret")
    with pytest.raises(PermissionDenied):
        local.put("top/new", b"escape")
    assert files_under(outside) == ["secret"]


def test_root_given_through_a_symlink_is_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    store = LocalBlobStore(tmp_path / "alias")
    store.put("k", b"x")
    assert (real / "k").read_bytes() == b"x"
    assert store.root == real.resolve()


def test_relative_root_refused() -> None:
    with pytest.raises(ConfigurationError):
        LocalBlobStore(Path("relative/blobs"))


def test_root_that_is_a_file_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ConfigurationError):
        LocalBlobStore(tmp_path / "file")


# -- layout, modes and temp files ------------------------------------------------


def test_key_maps_to_a_file_under_root(local: LocalBlobStore, root: Path) -> None:
    local.put("a/b/c", b"data")
    assert (root / "a" / "b" / "c").read_bytes() == b"data"


def test_modes_are_private(local: LocalBlobStore, root: Path) -> None:
    old_umask = os.umask(0)  # the store must not rely on the umask
    try:
        local.put("m/put/k", b"x")
        local.put_stream("m/stream/k", [b"x"])
        appender = local.open_append("m/append/k", 0)
        appender.write(b"x")
        appender.commit()
        appender.close()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for path in root.rglob("*"):
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_no_temp_files_after_failed_put_stream(local: LocalBlobStore, root: Path) -> None:
    local.put("t/k", b"old")
    with pytest.raises(StreamFailed):
        local.put_stream("t/k", failing_chunks(b"new"))
    with pytest.raises(StreamFailed):
        local.put_stream("t/fresh", failing_chunks(b"new"))
    assert files_under(root) == ["t/k"]
    assert (root / "t" / "k").read_bytes() == b"old"


def test_no_temp_files_after_successful_put(local: LocalBlobStore, root: Path) -> None:
    local.put("t/k", b"one")
    local.put("t/k", b"two")
    local.put_stream("t/k", iter([b"three"]))
    assert files_under(root) == ["t/k"]


def test_list_skips_temp_and_foreign_files(local: LocalBlobStore, root: Path) -> None:
    local.put("l/k", b"x")
    (root / "l" / ".tmp-0123abcd").write_bytes(b"left by a crash")
    (root / "l" / "not a key").write_bytes(b"")
    (root / "lost+found").mkdir()
    (root / "lost+found" / "x").write_bytes(b"")
    assert list(local.list()) == ["l/k"]


def test_delete_prunes_empty_directories(local: LocalBlobStore, root: Path) -> None:
    local.put("p/q/r/k", b"x")
    local.put("p/other", b"y")
    local.delete("p/q/r/k")
    assert not (root / "p" / "q").exists()
    assert (root / "p" / "other").exists()
    local.delete("p/other")
    assert root.is_dir()
    assert list(root.iterdir()) == []
    local.put("p/q/r/k", b"again")
    assert local.read("p/q/r/k") == b"again"


# -- what a directory tree cannot do, and non-files ------------------------


def test_key_cannot_be_both_blob_and_prefix(local: LocalBlobStore) -> None:
    local.put("both", b"blob")
    with pytest.raises(Conflict):
        local.put("both/child", b"x")
    with pytest.raises(Conflict):
        local.open_append("both/child", 0)
    local.put("dir/child", b"x")
    with pytest.raises(Conflict):
        local.put("dir", b"x")
    with pytest.raises(Conflict):
        local.open_append("dir", 0)
    assert local.read("both") == b"blob"
    assert local.read("dir/child") == b"x"


def test_directory_is_not_a_blob(local: LocalBlobStore) -> None:
    local.put("dir/child", b"x")
    assert not local.exists("dir")
    with pytest.raises(NotFound):
        local.read("dir")
    with pytest.raises(NotFound):
        local.size("dir")
    local.delete("dir")  # nothing stored under that key: a no-op
    assert local.read("dir/child") == b"x"


def test_path_through_a_file_is_not_found(local: LocalBlobStore) -> None:
    local.put("file", b"x")
    assert not local.exists("file/child")
    with pytest.raises(NotFound):
        local.read("file/child")
    local.delete("file/child")


def test_fifo_is_not_a_blob(local: LocalBlobStore, root: Path) -> None:
    os.mkfifo(root / "fifo")
    assert not local.exists("fifo")
    with pytest.raises(NotFound):
        local.read("fifo")  # and does not hang
    with pytest.raises(Conflict):
        local.open_append("fifo", 0)
    assert list(local.list()) == []


# -- appender --------------------------------------------------------------------


def test_uncommitted_bytes_may_be_lost_on_close(local: LocalBlobStore) -> None:
    appender = local.open_append("k", 0)
    appender.write(b"abc" * 5000)
    appender.commit()
    appender.write(b"def")
    appender.close()
    # Bytes after the last commit may or may not be there (staged for direct
    # I/O, they are dropped); what was committed is, and resuming there works.
    assert local.size("k") in (15000, 15003)
    again = local.open_append("k", 15000)
    again.write(b"xyz")
    assert again.commit() == 15003
    again.close()
    assert local.read("k", 14997) == b"abcxyz"


def test_closed_appender_refuses_use(local: LocalBlobStore) -> None:
    appender = local.open_append("k", 0)
    appender.close()
    appender.close()
    with pytest.raises(ValueError, match="closed"):
        appender.write(b"x")
    with pytest.raises(ValueError, match="closed"):
        appender.commit()


# -- the factory -----------------------------------------------------------


def test_open_blob_store_file_url(tmp_path: Path) -> None:
    store = open_blob_store((tmp_path / "by url").as_uri())
    assert isinstance(store, LocalBlobStore)
    assert store.root == (tmp_path / "by url").resolve()
    store.put("k", b"x")
    assert (tmp_path / "by url" / "k").read_bytes() == b"x"


def test_open_blob_store_file_localhost(tmp_path: Path) -> None:
    store = open_blob_store(f"file://localhost{tmp_path}/b")
    assert isinstance(store, LocalBlobStore)


def test_writer_retries_when_a_delete_prunes_its_directory(
    local: LocalBlobStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delete may remove an empty directory a writer has just entered."""
    real_open_parent = LocalBlobStore._open_parent
    pruned: list[bool] = []

    def open_parent_then_prune(self: LocalBlobStore, segments: list[str], *, create: bool) -> int:
        fd = real_open_parent(self, segments, create=create)
        if create and not pruned:
            (root / "race" / "dir").rmdir()  # what a concurrent delete would do
            pruned.append(True)
        return fd

    monkeypatch.setattr(LocalBlobStore, "_open_parent", open_parent_then_prune)
    local.put("race/dir/k", b"x")
    assert pruned == [True]
    assert local.read("race/dir/k") == b"x"

    local.delete("race/dir/k")
    pruned.clear()
    appender = local.open_append("race/dir/a", 0)
    appender.write(b"y")
    appender.commit()
    appender.close()
    assert pruned == [True]
    assert list(local.list()) == ["race/dir/a"]
    assert local.read("race/dir/a") == b"y"


def test_direct_io_appends_are_byte_exact(local: LocalBlobStore) -> None:
    """Large appends take the O_DIRECT path (where the file system allows it);
    commits in the middle of a block, resumes and odd sizes stay exact."""
    import os as _os

    data = _os.urandom(10 * 1024 * 1024 + 12345)
    appender = local.open_append("big", 0)
    assert appender._direct is not None or not hasattr(_os, "O_DIRECT")
    pieces = [data[i:i + 1_000_003] for i in range(0, 6_000_018, 1_000_003)]
    for piece in pieces[:3]:
        appender.write(piece)
    assert appender.commit() == 3_000_009  # a partial block, written buffered
    for piece in pieces[3:]:
        appender.write(piece)
    assert appender.commit() == 6_000_018
    appender.close()
    assert local.read("big") == data[:6_000_018]
    resumed = local.open_append("big", 4 * 1024 * 1024)  # block-aligned: direct again
    resumed.write(data[4 * 1024 * 1024:])
    assert resumed.commit() == len(data)
    resumed.close()
    assert local.read("big") == data
    odd = local.open_append("big", 1001)  # unaligned: buffered
    assert odd._direct is None
    odd.write(data[1001:2002])
    assert odd.commit() == 2002
    odd.close()
    assert local.read("big") == data[:2002]
