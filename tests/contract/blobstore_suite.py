"""The conformance suite every ``BlobStore`` must pass (after restic's backend/test/suite.go).

Each test checks one clause of the contract written in ``coffre.ports``.
A store plugs in by subclassing ``BlobStoreSuite`` in a ``Test*`` class and
overriding the ``store`` fixture, which must return an empty store::

    class TestS3BlobStore(BlobStoreSuite):
        @pytest.fixture
        def store(self, s3_bucket: str) -> BlobStore:
            return S3BlobStore(bucket=s3_bucket, ...)

Tests only use keys under distinct prefixes and never a key that is also a
prefix of another key (``a`` and ``a/b``): a flat store (S3, memory) allows
that, a directory tree does not, and the contract leaves it open.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from coffre.errors import Conflict, InvalidInput, NotFound
from coffre.ports import BlobAppender, BlobStore, Dated, SequentialReads

MIB = 1 << 20

INVALID_KEYS = [
    "",
    "../x",
    "a/../x",
    "..",
    ".",
    "/abs",
    "a/",
    "a//b",
    "a/./b",
    "./a",
    "a\\b",
    "a\x00b",
    "a b",
    "a\nb",
    "é",
    "a:b",
    "a" * 256,  # one segment longer than a file name may be
    "a/" * 256 + "a",  # 513 characters
    "a/.tmp-reserved",
]


class StreamFailed(Exception):
    """Raised by a caller's chunk iterator in the middle of a ``put_stream``."""


def failing_chunks(*chunks: bytes) -> Iterator[bytes]:
    yield from chunks
    raise StreamFailed


def append_in_pieces(store: BlobStore, key: str, data: bytes, piece: int) -> None:
    """Write ``data`` under ``key`` by appends of ``piece`` bytes, each committed."""
    appender = store.open_append(key, 0)
    for start in range(0, len(data), piece):
        appender.write(data[start : start + piece])
        appender.commit()
    appender.close()


def all_keys(store: BlobStore, prefix: str = "") -> list[str]:
    return sorted(store.list(prefix))


class BlobStoreSuite:
    """Base class of the conformance tests; subclasses override ``store``."""

    @pytest.fixture
    def store(self) -> BlobStore:
        raise NotImplementedError("override the store fixture with an empty store")

    # -- the protocol itself ---------------------------------------------

    def test_is_a_blob_store(self, store: BlobStore) -> None:
        assert isinstance(store, BlobStore)
        appender = store.open_append("proto/blob", 0)
        assert isinstance(appender, BlobAppender)
        appender.close()

    def test_new_store_is_empty(self, store: BlobStore) -> None:
        assert all_keys(store) == []

    # -- put, read, size, exists -------------------------------------------

    def test_put_then_read(self, store: BlobStore) -> None:
        store.put("k/one", b"hello")
        assert store.read("k/one") == b"hello"
        assert store.size("k/one") == 5
        assert store.exists("k/one")

    def test_put_returns_none_and_stores_empty_blob(self, store: BlobStore) -> None:
        store.put("k/empty", b"")
        assert store.exists("k/empty")
        assert store.size("k/empty") == 0
        assert store.read("k/empty") == b""

    def test_put_replaces(self, store: BlobStore) -> None:
        store.put("k/r", b"first version, rather long")
        store.put("k/r", b"second")
        assert store.read("k/r") == b"second"
        assert store.size("k/r") == 6
        assert all_keys(store) == ["k/r"]

    def test_keys_are_independent(self, store: BlobStore) -> None:
        store.put("a/x", b"1")
        store.put("a/y", b"22")
        store.put("b/x", b"333")
        assert store.read("a/x") == b"1"
        assert store.read("a/y") == b"22"
        assert store.read("b/x") == b"333"

    def test_keys_are_case_sensitive(self, store: BlobStore) -> None:
        store.put("case/abc", b"lower")
        assert not store.exists("case/ABC")

    def test_exists_false_for_missing(self, store: BlobStore) -> None:
        assert not store.exists("missing")
        assert not store.exists("missing/deeper/key")

    def test_read_missing_raises_not_found(self, store: BlobStore) -> None:
        with pytest.raises(NotFound):
            store.read("missing")
        with pytest.raises(NotFound):
            store.read("missing/deeper/key", 10, 5)

    def test_size_missing_raises_not_found(self, store: BlobStore) -> None:
        with pytest.raises(NotFound):
            store.size("missing")
        with pytest.raises(NotFound):
            store.size("missing/deeper/key")

    def test_binary_data_integrity(self, store: BlobStore) -> None:
        data = bytes(range(256)) * 64 + os.urandom(100_000) + b"\x00\r\n\x1a" * 10
        store.put("bin/put", data)
        assert store.read("bin/put") == data
        store.put_stream("bin/stream", [data[:7], data[7:70_000], data[70_000:]])
        assert store.read("bin/stream") == data

    def test_unusual_but_valid_keys(self, store: BlobStore) -> None:
        keys = ["A-z_0.9", "...", "-", "_", ".hidden", "x/..y/z..", "d/" + "k" * 255]
        for index, key in enumerate(keys):
            store.put(key, str(index).encode())
        for index, key in enumerate(keys):
            assert store.read(key) == str(index).encode()
        assert all_keys(store) == sorted(keys)

    def test_deeply_nested_key(self, store: BlobStore) -> None:
        key = "/".join(["d"] * 200)
        store.put(key, b"deep")
        assert store.read(key) == b"deep"
        assert all_keys(store) == [key]

    # -- put_stream --------------------------------------------------------

    def test_put_stream_returns_size(self, store: BlobStore) -> None:
        assert store.put_stream("s/a", [b"ab", b"", b"cde", b"f"]) == 6
        assert store.read("s/a") == b"abcdef"

    def test_put_stream_from_generator(self, store: BlobStore) -> None:
        def chunks() -> Iterator[bytes]:
            for index in range(10):
                yield bytes([index]) * 1000

        assert store.put_stream("s/gen", chunks()) == 10_000
        assert store.read("s/gen") == b"".join(bytes([i]) * 1000 for i in range(10))

    def test_put_stream_no_chunks_stores_empty_blob(self, store: BlobStore) -> None:
        assert store.put_stream("s/none", iter([])) == 0
        assert store.exists("s/none")
        assert store.read("s/none") == b""

    def test_put_stream_large(self, store: BlobStore) -> None:
        piece = os.urandom(MIB)
        assert store.put_stream("s/large", [piece] * 8 + [b"tail"]) == 8 * MIB + 4
        assert store.size("s/large") == 8 * MIB + 4
        assert store.read("s/large", 5 * MIB + 3, 10) == piece[3:13]

    def test_failed_put_stream_stores_nothing(self, store: BlobStore) -> None:
        with pytest.raises(StreamFailed):
            store.put_stream("s/new", failing_chunks(b"partial", b"data"))
        assert not store.exists("s/new")
        assert all_keys(store) == []

    def test_failed_put_stream_keeps_old_value(self, store: BlobStore) -> None:
        store.put("s/old", b"old value")
        with pytest.raises(StreamFailed):
            store.put_stream("s/old", failing_chunks(b"new ", b"value that never completes"))
        assert store.read("s/old") == b"old value"
        assert store.size("s/old") == 9
        assert all_keys(store) == ["s/old"]

    def test_failed_put_stream_before_first_chunk(self, store: BlobStore) -> None:
        store.put("s/old", b"old")
        with pytest.raises(StreamFailed):
            store.put_stream("s/old", failing_chunks())
        assert store.read("s/old") == b"old"
        assert all_keys(store) == ["s/old"]

    # -- read with offset and length --------------------------------------

    @pytest.mark.parametrize(
        ("offset", "length", "expected"),
        [
            (0, None, b"0123456789"),
            (3, None, b"3456789"),
            (0, 4, b"0123"),
            (2, 3, b"234"),
            (5, 0, b""),
            (8, 10, b"89"),
            (9, 1, b"9"),
            (10, None, b""),
            (10, 5, b""),
            (11, None, b""),
            (1000, 5, b""),
        ],
    )
    def test_read_range(
        self, store: BlobStore, offset: int, length: int | None, expected: bytes
    ) -> None:
        store.put("r/digits", b"0123456789")
        assert store.read("r/digits", offset, length) == expected

    def test_read_range_keyword_arguments(self, store: BlobStore) -> None:
        store.put("r/kw", b"abcdef")
        assert store.read("r/kw", offset=1, length=2) == b"bc"
        assert store.read("r/kw", length=3) == b"abc"

    def test_read_negative_range_rejected(self, store: BlobStore) -> None:
        store.put("r/neg", b"abc")
        with pytest.raises(InvalidInput):
            store.read("r/neg", -1)
        with pytest.raises(InvalidInput):
            store.read("r/neg", 0, -1)

    # -- delete --------------------------------------------------------------

    def test_delete(self, store: BlobStore) -> None:
        store.put("d/x", b"x")
        store.put("d/y", b"y")
        store.delete("d/x")
        assert not store.exists("d/x")
        with pytest.raises(NotFound):
            store.read("d/x")
        with pytest.raises(NotFound):
            store.size("d/x")
        assert store.read("d/y") == b"y"
        assert all_keys(store) == ["d/y"]

    def test_delete_is_idempotent(self, store: BlobStore) -> None:
        store.put("d/once", b"x")
        store.delete("d/once")
        store.delete("d/once")
        store.delete("never/existed/at/all")
        assert all_keys(store) == []

    def test_put_after_delete(self, store: BlobStore) -> None:
        store.put("d/again/k", b"1")
        store.delete("d/again/k")
        store.put("d/again/k", b"2")
        assert store.read("d/again/k") == b"2"

    # -- list ----------------------------------------------------------------

    def test_list_by_prefix(self, store: BlobStore) -> None:
        keys = ["up/a/1", "up/a/2", "up/ab/1", "up/b", "down/a/1", "top"]
        for key in keys:
            store.put(key, b".")
        assert all_keys(store) == sorted(keys)
        assert all_keys(store, "") == sorted(keys)
        assert all_keys(store, "up/") == ["up/a/1", "up/a/2", "up/ab/1", "up/b"]
        assert all_keys(store, "up/a/") == ["up/a/1", "up/a/2"]
        assert all_keys(store, "up/a") == ["up/a/1", "up/a/2", "up/ab/1"]
        assert all_keys(store, "up/ab/1") == ["up/ab/1"]
        assert all_keys(store, "t") == ["top"]
        assert all_keys(store, "nothing/") == []
        assert all_keys(store, "up/c") == []
        assert all_keys(store, "down/a/1/") == []

    def test_list_returns_an_iterator(self, store: BlobStore) -> None:
        store.put("it/k", b".")
        listing = store.list("it/")
        assert iter(listing) is listing
        assert list(listing) == ["it/k"]

    def test_list_shows_appended_blobs(self, store: BlobStore) -> None:
        appender = store.open_append("l/app", 0)
        appender.write(b"x")
        appender.commit()
        appender.close()
        assert all_keys(store, "l/") == ["l/app"]

    @pytest.mark.parametrize("prefix", ["/", "/a", "../", "a/../", "a//", "a b", "a\x00"])
    def test_list_rejects_invalid_prefix(self, store: BlobStore, prefix: str) -> None:
        with pytest.raises(InvalidInput):
            store.list(prefix)

    # -- invalid keys --------------------------------------------------------

    @pytest.mark.parametrize("key", INVALID_KEYS, ids=repr)
    def test_invalid_keys_rejected_everywhere(self, store: BlobStore, key: str) -> None:
        with pytest.raises(InvalidInput):
            store.put(key, b"x")
        with pytest.raises(InvalidInput):
            store.put_stream(key, [b"x"])
        with pytest.raises(InvalidInput):
            store.read(key)
        with pytest.raises(InvalidInput):
            store.size(key)
        with pytest.raises(InvalidInput):
            store.exists(key)
        with pytest.raises(InvalidInput):
            store.delete(key)
        with pytest.raises(InvalidInput):
            store.open_append(key, 0)
        assert all_keys(store) == []

    def test_longest_key_accepted(self, store: BlobStore) -> None:
        key = "k" * 255 + "/" + "k" * 254 + "/k"
        assert len(key) == 512
        store.put(key, b"x")
        assert store.read(key) == b"x"

    # -- open_append ---------------------------------------------------------

    def test_append_creates_at_zero(self, store: BlobStore) -> None:
        appender = store.open_append("a/new", 0)
        appender.write(b"hello ")
        appender.write(b"world")
        assert appender.commit() == 11
        appender.close()
        assert store.read("a/new") == b"hello world"
        assert store.size("a/new") == 11

    def test_append_commit_with_nothing_written(self, store: BlobStore) -> None:
        appender = store.open_append("a/nothing", 0)
        assert appender.commit() == 0
        appender.close()
        assert store.exists("a/nothing")
        assert store.read("a/nothing") == b""

    def test_append_multiple_commits(self, store: BlobStore) -> None:
        appender = store.open_append("a/multi", 0)
        sizes = []
        for piece in (b"one", b"two", b"three"):
            appender.write(piece)
            sizes.append(appender.commit())
            assert store.read("a/multi") == b"onetwothree"[: sizes[-1]]
        assert appender.commit() == 11  # committing again changes nothing
        appender.close()
        assert sizes == [3, 6, 11]

    def test_append_continues_at_committed_offset(self, store: BlobStore) -> None:
        first = store.open_append("a/resume", 0)
        first.write(b"abc")
        assert first.commit() == 3
        first.close()
        second = store.open_append("a/resume", 3)
        second.write(b"def")
        assert second.commit() == 6
        second.close()
        assert store.read("a/resume") == b"abcdef"

    def test_append_to_a_put_blob(self, store: BlobStore) -> None:
        store.put("a/put", b"base")
        appender = store.open_append("a/put", 4)
        appender.write(b"+more")
        assert appender.commit() == 9
        appender.close()
        assert store.read("a/put") == b"base+more"

    def test_append_at_zero_restarts_existing_blob(self, store: BlobStore) -> None:
        store.put("a/restart", b"old content")
        appender = store.open_append("a/restart", 0)
        appender.write(b"new")
        assert appender.commit() == 3
        appender.close()
        assert store.read("a/restart") == b"new"

    def test_uncommitted_bytes_discarded_when_reopened(self, store: BlobStore) -> None:
        appender = store.open_append("a/lost", 0)
        appender.write(b"kept")
        assert appender.commit() == 4
        appender.write(b"never committed")
        appender.close()
        assert store.size("a/lost") in (4, 19)  # the contract allows either
        again = store.open_append("a/lost", 4)
        again.write(b"+next")
        assert again.commit() == 9
        again.close()
        assert store.read("a/lost") == b"kept+next"

    def test_committed_bytes_past_offset_discarded_when_reopened(self, store: BlobStore) -> None:
        appender = store.open_append("a/cut", 0)
        appender.write(b"0123456789")
        assert appender.commit() == 10
        appender.close()
        again = store.open_append("a/cut", 4)
        assert store.size("a/cut") in (4, 10)
        again.write(b"xy")
        assert again.commit() == 6
        again.close()
        assert store.read("a/cut") == b"0123xy"
        assert store.size("a/cut") == 6

    def test_reopen_at_same_offset_without_writing(self, store: BlobStore) -> None:
        store.put("a/same", b"abc")
        appender = store.open_append("a/same", 3)
        assert appender.commit() == 3
        appender.close()
        assert store.read("a/same") == b"abc"

    def test_append_offset_past_size_conflicts(self, store: BlobStore) -> None:
        store.put("a/short", b"abc")
        with pytest.raises(Conflict):
            store.open_append("a/short", 4)
        assert store.read("a/short") == b"abc"

    def test_append_offset_past_size_after_uncommitted_close_conflicts(
        self, store: BlobStore
    ) -> None:
        appender = store.open_append("a/gap", 0)
        appender.write(b"abc")
        appender.commit()
        appender.close()
        with pytest.raises(Conflict):
            store.open_append("a/gap", 100)

    def test_append_to_missing_key_past_zero_raises_not_found(self, store: BlobStore) -> None:
        with pytest.raises(NotFound):
            store.open_append("a/missing", 5)
        assert not store.exists("a/missing")

    def test_append_negative_offset_rejected(self, store: BlobStore) -> None:
        with pytest.raises(InvalidInput):
            store.open_append("a/neg", -1)

    def test_append_large_writes(self, store: BlobStore) -> None:
        pieces = [os.urandom(8 * MIB), os.urandom(MIB), os.urandom(8 * MIB)]
        appender = store.open_append("a/large", 0)
        appender.write(pieces[0])
        assert appender.commit() == 8 * MIB
        appender.write(pieces[1])
        appender.write(pieces[2])
        assert appender.commit() == 17 * MIB
        appender.close()
        assert store.size("a/large") == 17 * MIB
        assert store.read("a/large") == b"".join(pieces)
        assert store.read("a/large", 8 * MIB - 2, 4) == pieces[0][-2:] + pieces[1][:2]

    def test_append_binary_integrity_across_reopens(self, store: BlobStore) -> None:
        data = bytes(range(256)) * 300 + os.urandom(50_000)
        offset = 0
        for start in range(0, len(data), 23_456):
            appender = store.open_append("a/bin", offset)
            appender.write(data[start : start + 23_456])
            offset = appender.commit()
            appender.close()
        assert offset == len(data)
        assert store.read("a/bin") == data

    def test_put_replaces_appended_blob(self, store: BlobStore) -> None:
        appender = store.open_append("a/then-put", 0)
        appender.write(b"appended")
        appender.commit()
        appender.close()
        store.put("a/then-put", b"put")
        assert store.read("a/then-put") == b"put"

    def test_delete_appended_blob(self, store: BlobStore) -> None:
        appender = store.open_append("a/del", 0)
        appender.write(b"x")
        appender.commit()
        appender.close()
        store.delete("a/del")
        assert not store.exists("a/del")
        assert all_keys(store) == []

    # -- forward readers (optional: SequentialReads) ---------------------------

    @pytest.fixture
    def sequential(self, store: BlobStore) -> SequentialReads:
        if not isinstance(store, SequentialReads):
            pytest.skip("this store has no forward reader: read is its reader")
        return store

    def test_reader_reads_like_read(self, sequential: SequentialReads) -> None:
        store: BlobStore = sequential  # type: ignore[assignment]
        data = os.urandom(9 * MIB + 321)
        store.put("r/whole", data)
        reader = sequential.reader("r/whole", len(data))
        try:
            assert reader(0, 40) == data[:40]  # a short read, then forward ones
            position = 40
            for length in (2 * MIB, 3 * MIB, MIB + 1, 64):
                assert reader(position, length) == data[position : position + length]
                position += length
            assert reader(MIB, 2 * MIB) == data[MIB : 3 * MIB]  # backwards
            assert reader(7 * MIB, 2 * MIB) == data[7 * MIB : 9 * MIB]  # a jump forward
            assert reader(9 * MIB, MIB) == data[9 * MIB :]  # past ``end``: fewer bytes
        finally:
            reader.close()
        reader.close()  # idempotent
        with pytest.raises(ValueError, match="closed"):
            reader(0, 1)

    def test_reader_of_an_appended_blob(self, sequential: SequentialReads) -> None:
        store: BlobStore = sequential  # type: ignore[assignment]
        data = os.urandom(7 * MIB)
        append_in_pieces(store, "r/appended", data, 3 * MIB)
        reader = sequential.reader("r/appended", len(data))
        try:
            assert b"".join(reader(start, 2 * MIB) for start in range(0, len(data), 2 * MIB)) \
                == data
        finally:
            reader.close()

    def test_reader_of_a_missing_blob_raises_not_found(
        self, sequential: SequentialReads
    ) -> None:
        reader = sequential.reader("r/missing", 4 * MIB)
        try:
            with pytest.raises(NotFound):
                reader(0, 2 * MIB)
        finally:
            reader.close()

    # -- modification times (optional: Dated) -------------------------------------

    @pytest.fixture
    def dated(self, store: BlobStore) -> Dated:
        if not isinstance(store, Dated):
            pytest.skip("this store does not date its blobs")
        return store

    def test_list_dated_lists_like_list(self, dated: Dated) -> None:
        store: BlobStore = dated  # type: ignore[assignment]
        before = datetime.now(UTC) - timedelta(seconds=5)  # stores may round to seconds
        store.put("d/whole", b"w")
        append_in_pieces(store, "d/appended", os.urandom(2 * MIB), MIB)
        store.put("e/other", b"o")
        listed = dict(dated.list_dated("d/"))
        assert sorted(listed) == all_keys(store, "d/") == ["d/appended", "d/whole"]
        after = datetime.now(UTC) + timedelta(seconds=5)
        for when in listed.values():
            assert when.tzinfo is not None
            assert before <= when <= after
        assert sorted(dict(dated.list_dated())) == all_keys(store)
        store.delete("d/whole")
        assert list(dict(dated.list_dated("d/"))) == ["d/appended"]

    def test_list_dated_follows_writes(self, dated: Dated) -> None:
        store: BlobStore = dated  # type: ignore[assignment]
        store.put("t/k", b"1")
        first = dict(dated.list_dated("t/"))["t/k"]
        time.sleep(1.1)  # S3 dates to the second
        appender = store.open_append("t/k", 1)
        appender.write(b"2")
        appender.commit()
        appender.close()
        assert dict(dated.list_dated("t/"))["t/k"] > first

    @pytest.mark.parametrize("prefix", ["/", "../", "a//"])
    def test_list_dated_rejects_invalid_prefix(self, dated: Dated, prefix: str) -> None:
        with pytest.raises(InvalidInput):
            dated.list_dated(prefix)
