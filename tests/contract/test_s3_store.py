"""S3BlobStore against a real SeaweedFS: the conformance suite, plus what
only the S3 layout has to prove (appends continued by another instance,
pieces cut on reopen, consolidation, errors translated without secrets)."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import socket
import threading
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from coffre.errors import ConfigurationError, InvalidInput, StorageError
from coffre.ports import BlobStore
from coffre.storage import open_blob_store
from coffre.storage.s3 import MIN_PIECE, PART_SIZE, S3BlobStore
from tests.backends import S3Service, seaweedfs

from .blobstore_suite import BlobStoreSuite, StreamFailed, append_in_pieces, failing_chunks

MIB = 1 << 20


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Service]:
    with seaweedfs() as service:
        yield service


def make_store(s3: S3Service, root: str, **options: object) -> S3BlobStore:
    return S3BlobStore(
        s3.bucket, endpoint=s3.endpoint, region=s3.region, access_key=s3.access_key,
        secret_key=s3.secret_key, root=root, **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def root() -> str:
    return f"t-{secrets.token_hex(6)}/"


@pytest.fixture
def raw(s3: S3Service):  # the bucket as S3 sees it, to look behind the store
    return boto3.client(
        "s3", endpoint_url=s3.endpoint, region_name=s3.region, aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key, config=Config(s3={"addressing_style": "path"}),
    )


def raw_names(raw, s3: S3Service, prefix: str) -> list[str]:
    pages = raw.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    return sorted(item["Key"][len(prefix):] for page in pages for item in page.get("Contents", ()))


class TestS3BlobStore(BlobStoreSuite):
    @pytest.fixture
    def store(self, s3: S3Service, root: str) -> BlobStore:
        return make_store(s3, root)


# -- appends without local state --------------------------------------------------


def test_append_continued_by_a_second_instance(s3: S3Service, root: str) -> None:
    data = os.urandom(13 * MIB + 777)
    first = make_store(s3, root)
    appender = first.open_append("up/blob", 0)
    appender.write(data[: 6 * MIB])
    assert appender.commit() == 6 * MIB
    appender.write(data[6 * MIB : 6 * MIB + 1000])
    assert appender.commit() == 6 * MIB + 1000
    appender.write(b"never committed")  # then the instance dies: no close
    second = make_store(s3, root)
    assert second.size("up/blob") == 6 * MIB + 1000
    again = second.open_append("up/blob", 6 * MIB + 1000)
    again.write(data[6 * MIB + 1000 :])
    assert again.commit() == len(data)
    again.close()
    assert first.read("up/blob") == data
    assert first.read("up/blob", 6 * MIB - 5, 2000) == data[6 * MIB - 5 : 6 * MIB + 1995]


def test_small_commits_merge_into_pieces_of_five_mib(s3: S3Service, root: str, raw) -> None:
    store = make_store(s3, root)
    data = os.urandom(12 * MIB)
    offset = 0
    for start in range(0, len(data), 3 * MIB):  # each commit through a fresh appender
        appender = store.open_append("m/blob", offset)
        appender.write(data[start : start + 3 * MIB])
        offset = appender.commit()
        appender.close()
    pieces = raw_names(raw, s3, f"{root}.tmp-append/m/blob/")
    assert pieces == [f".tmp-piece-{0:020d}", f".tmp-piece-{6 * MIB:020d}"]
    assert store.read("m/blob") == data


def test_reopen_discards_pieces_past_the_offset(s3: S3Service, root: str, raw) -> None:
    store = make_store(s3, root)
    data = os.urandom(18 * MIB)
    append_in_pieces(store, "cut/blob", data, 6 * MIB)
    holder = f"{root}.tmp-append/cut/blob/"
    assert len(raw_names(raw, s3, holder)) == 3
    # Into the second piece, past 5 MiB of it: cut server-side.
    again = store.open_append("cut/blob", 11 * MIB + 3)
    assert raw_names(raw, s3, holder) == [f".tmp-piece-{0:020d}", f".tmp-piece-{6 * MIB:020d}"]
    assert store.size("cut/blob") == 11 * MIB + 3
    again.write(b"tail")
    assert again.commit() == 11 * MIB + 7
    again.close()
    assert store.read("cut/blob") == data[: 11 * MIB + 3] + b"tail"
    # Into the first piece, under 5 MiB of it: read back and rewritten.
    small = store.open_append("cut/blob", 1000)
    assert raw_names(raw, s3, holder) == [f".tmp-piece-{0:020d}"]
    small.write(b"+")
    assert small.commit() == 1001
    small.close()
    assert store.read("cut/blob") == data[:1000] + b"+"


def test_consolidation(s3: S3Service, root: str, raw) -> None:
    store = make_store(s3, root)
    data = os.urandom(13 * MIB)
    appender = store.open_append("c/blob", 0)
    for start, end in ((0, 6 * MIB), (6 * MIB, 12 * MIB), (12 * MIB, 13 * MIB)):
        appender.write(data[start:end])
        assert appender.commit() == end
    appender.close()
    assert store.consolidate("c/blob") is True
    assert raw_names(raw, s3, f"{root}.tmp-append/") == []
    assert raw_names(raw, s3, root) == ["c/blob"]
    assert store.read("c/blob") == data
    assert store.read("c/blob", 6 * MIB - 1, 2) == data[6 * MIB - 1 : 6 * MIB + 1]
    assert store.consolidate("c/blob") is False  # already one object
    # Appending again turns it back into pieces, server-side.
    again = store.open_append("c/blob", 12 * MIB)
    again.write(b"end")
    assert again.commit() == 12 * MIB + 3
    again.close()
    assert raw_names(raw, s3, root) == [
        f".tmp-append/c/blob/.tmp-piece-{0:020d}",
        f".tmp-append/c/blob/.tmp-piece-{12 * MIB:020d}",
    ]
    assert store.read("c/blob") == data[: 12 * MIB] + b"end"
    assert list(store.list()) == ["c/blob"]


def test_consolidating_a_small_blob_copies_one_piece(s3: S3Service, root: str, raw) -> None:
    store = make_store(s3, root)
    appender = store.open_append("one", 0)
    appender.write(b"x" * (MIN_PIECE - 1))
    appender.commit()
    appender.close()
    assert store.consolidate("one") is True
    assert raw_names(raw, s3, root) == ["one"]
    assert store.read("one", MIN_PIECE - 3) == b"xx"
    assert store.consolidate("missing") is False


def test_a_delete_racing_a_consolidation_leaves_nothing(
    s3: S3Service, root: str, raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another instance deletes the blob while this one consolidates it, after
    the pieces were copied and before the whole object exists: the
    consolidation, finding its pieces gone, deletes that object too."""
    store, elsewhere = make_store(s3, root), make_store(s3, root)
    data = os.urandom(11 * MIB)
    appender = store.open_append("race/blob", 0)
    for start, end in ((0, 6 * MIB), (6 * MIB, 11 * MIB)):
        appender.write(data[start:end])
        assert appender.commit() == end
    appender.close()
    complete = store._client.complete_multipart_upload

    def deleted_first(**request: object) -> object:
        elsewhere.delete("race/blob")
        return complete(**request)

    monkeypatch.setattr(store._client, "complete_multipart_upload", deleted_first)
    assert store.consolidate("race/blob") is False
    assert raw_names(raw, s3, root) == []
    assert not store.exists("race/blob")


def test_failed_put_stream_leaves_no_multipart_upload(s3: S3Service, root: str, raw) -> None:
    store = make_store(s3, root)
    with pytest.raises(StreamFailed):
        store.put_stream("p/big", failing_chunks(os.urandom(9 * MIB), os.urandom(9 * MIB)))
    uploads = raw.list_multipart_uploads(Bucket=s3.bucket, Prefix=root).get("Uploads", [])
    assert uploads == []
    assert not store.exists("p/big")


def test_parts_in_flight_land_in_order(s3: S3Service, root: str) -> None:
    store = make_store(s3, root)
    data = os.urandom(6 * PART_SIZE + 12345)  # more parts than PARTS_IN_FLIGHT
    appender = store.open_append("many/parts", 0)
    for start in range(0, len(data), 3 * MIB + 7):
        appender.write(data[start : start + 3 * MIB + 7])
    assert appender.commit() == len(data)
    assert store.read("many/parts") == data
    assert store.consolidate("many/parts") is True
    assert store.read("many/parts", len(data) - 5) == data[-5:]
    assert store.read("many/parts", len(data)) == b""  # at the end: no HEAD first, still empty
    assert store.read("many/parts", len(data) + 10, 3) == b""


def test_failed_part_surfaces_at_commit_and_leaves_no_upload(
    s3: S3Service, root: str, raw
) -> None:
    store = make_store(s3, root)
    appender = store.open_append("lost/parts", 0)
    appender.write(os.urandom(2 * PART_SIZE + 1))  # two parts sent, one byte pending
    for upload in raw.list_multipart_uploads(Bucket=s3.bucket, Prefix=root).get("Uploads", []):
        raw.abort_multipart_upload(Bucket=s3.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    with pytest.raises(StorageError):
        appender.commit()
    with pytest.raises(StorageError):  # refuses further use: reopen instead
        appender.write(b"x")
    appender.close()
    assert raw.list_multipart_uploads(Bucket=s3.bucket, Prefix=root).get("Uploads", []) == []
    assert store.size("lost/parts") == 0


def test_closed_appender_refuses_use(s3: S3Service, root: str) -> None:
    appender = make_store(s3, root).open_append("k", 0)
    appender.close()
    appender.close()
    with pytest.raises(ValueError, match="closed"):
        appender.write(b"x")


# -- errors --------------------------------------------------------------------------


def test_bad_credentials_give_storage_error_without_secrets(s3: S3Service, root: str) -> None:
    secret = "wrong-" + secrets.token_hex(12)
    store = S3BlobStore(s3.bucket, endpoint=s3.endpoint, region=s3.region,
                        access_key="AKIAWRONGKEY", secret_key=secret, root=root)
    for call in (lambda: store.put("k", b"x"), lambda: store.read("k"),
                 lambda: list(store.list())):
        with pytest.raises(StorageError) as caught:
            call()
        shown = f"{caught.value.message} {caught.value.details}"
        assert secret not in shown
        assert s3.endpoint not in shown
        assert "AKIAWRONGKEY" not in shown


def test_stopped_seaweedfs_gives_retryable_storage_error(root: str) -> None:
    with seaweedfs(stop_timeout=1.0) as service:
        store = make_store(service, root, max_attempts=1, connect_timeout=1.0)
        store.put("k", b"kept")
    for call in (lambda: store.read("k"), lambda: store.put("k", b"x"),
                 lambda: store.open_append("k", 0), lambda: store.exists("k")):
        with pytest.raises(StorageError) as caught:
            call()
        assert caught.value.status == 503
        assert service.endpoint not in caught.value.message
        assert "127.0.0.1" not in caught.value.message


# -- configuration by URL ------------------------------------------------------------


def test_open_blob_store_s3_url(s3: S3Service, root: str) -> None:
    environ = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    store = open_blob_store(
        f"s3://{s3.bucket}/{root}?endpoint={s3.endpoint}&region=eu-west-3", environ
    )
    assert isinstance(store, S3BlobStore)
    assert store.location == "eu-west-3"
    assert store.root == root
    store.put("k", b"by url")
    assert make_store(s3, root).read("k") == b"by url"
    assert s3.secret_key not in repr(store)


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket?endpoint=http://127.0.0.1:1&secret=x",
        "s3://key:secret@bucket?endpoint=http://127.0.0.1:1",
        "s3://bucket?endpoint=http://user:secret@127.0.0.1:1",
        "s3://bucket?endpoint=ftp://127.0.0.1:1",
        "s3://bucket?region=a&region=b",
        "s3://bucket?addressing=odd",
        "s3://Not_A_Bucket",
        "s3://bucket/../x",
    ],
)
def test_open_blob_store_refuses_bad_s3_urls(url: str) -> None:
    environ = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"}
    with pytest.raises(ConfigurationError) as caught:
        open_blob_store(url, environ)
    assert "secret" not in caught.value.message


def test_open_blob_store_s3_needs_credentials() -> None:
    with pytest.raises(ConfigurationError, match="AWS_ACCESS_KEY_ID"):
        open_blob_store("s3://bucket?endpoint=http://127.0.0.1:1", {})


def test_query_still_refused_for_other_schemes() -> None:
    with pytest.raises(ConfigurationError):
        open_blob_store("memory://?endpoint=http://127.0.0.1:1")


def test_keys_are_validated_before_any_request() -> None:
    store = S3BlobStore("bucket", endpoint="http://127.0.0.1:1", access_key="a", secret_key="b",
                        max_attempts=1)
    with pytest.raises(InvalidInput):
        store.read("../x")
    with pytest.raises(InvalidInput):
        store.list("/")
    with pytest.raises(StorageError):  # nothing listens there
        store.read("x")


# -- forward reads from one streaming GET ------------------------------------------


def count_gets(store: S3BlobStore) -> list[str]:
    """Ranges of the GETs ``store`` sends from now on."""
    seen: list[str] = []
    store._client.meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: seen.append(params["headers"]["Range"])
    )
    return seen


def test_reader_serves_forward_reads_from_one_get(s3: S3Service, root: str) -> None:
    store = make_store(s3, root)
    data = os.urandom(20 * MIB)
    store.put("seq/blob", data)
    gets = count_gets(store)
    reader = store.reader("seq/blob", 18 * MIB)
    try:
        assert reader(0, 40) == data[:40]  # short: an ordinary ranged GET
        assert [reader(start, 4 * MIB) for start in range(40, 16 * MIB, 4 * MIB)] == [
            data[start : start + 4 * MIB] for start in range(40, 16 * MIB, 4 * MIB)]
        assert gets == ["bytes=0-39", f"bytes=40-{18 * MIB - 1}"]
        assert reader(MIB, 4 * MIB) == data[MIB : 5 * MIB]  # out of order: a new stream
        assert gets[-1] == f"bytes={MIB}-{18 * MIB - 1}"
    finally:
        reader.close()


def test_reader_survives_a_broken_stream(s3: S3Service, root: str) -> None:
    """A stream that fails (say a consumer slower than the server's timeouts)
    costs a request, never a wrong or missing byte."""
    store = make_store(s3, root)
    data = os.urandom(48 * MIB)
    store.put("seq/broken", data)
    gets = count_gets(store)
    reader = store.reader("seq/broken", len(data))
    try:
        assert reader(0, 4 * MIB) == data[: 4 * MIB]
        reader._body._raw_stream._fp.fp.raw._sock.shutdown(socket.SHUT_RDWR)  # it drops
        # What the kernel had already received (up to tcp_rmem's 32 MiB)
        # may still be read: ask for more than it can hold.
        assert reader(4 * MIB, 40 * MIB) == data[4 * MIB : 44 * MIB]
        assert gets[-1] == f"bytes={4 * MIB}-{44 * MIB - 1}"  # read again, by range
        assert reader(44 * MIB, 4 * MIB) == data[44 * MIB :]  # then a new stream
        assert gets[-1] == f"bytes={44 * MIB}-{48 * MIB - 1}"
    finally:
        reader.close()


def test_reader_of_pieces_then_consolidated(s3: S3Service, root: str) -> None:
    """Before consolidation the reader reads pieces; a consolidation in the
    middle of its reads changes nothing it returns."""
    store = make_store(s3, root)
    data = os.urandom(14 * MIB)
    append_in_pieces(store, "seq/pieces", data, 6 * MIB)
    reader = store.reader("seq/pieces", len(data))
    try:
        assert reader(0, 5 * MIB) == data[: 5 * MIB]
        assert store.consolidate("seq/pieces") is True
        assert reader(5 * MIB, 5 * MIB) == data[5 * MIB : 10 * MIB]
        assert reader(10 * MIB, 4 * MIB) == data[10 * MIB :]
    finally:
        reader.close()


def test_reader_closed_from_another_thread_mid_read(s3: S3Service, root: str) -> None:
    store = make_store(s3, root)
    data = os.urandom(24 * MIB)
    store.put("seq/closed", data)
    reader = store.reader("seq/closed", len(data))
    results: list[bytes] = []
    started = threading.Event()

    def read_all() -> None:
        started.set()
        with contextlib.suppress(ValueError):  # closed between two reads
            for start in range(0, len(data), 2 * MIB):
                results.append(reader(start, 2 * MIB))

    worker = threading.Thread(target=read_all)
    worker.start()
    started.wait()
    reader.close()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert b"".join(results) == data[: len(results) * 2 * MIB]  # whatever came is right
    assert reader._body is None  # the stream is released


def test_part_bodies_are_sent_as_their_pieces_and_rewind() -> None:
    from coffre.storage.s3 import _Body

    body = _Body([b"0123", memoryview(b"xx456789")[2:], b"", b"ab"])
    assert len(body) == 12 and body.seekable()
    sent = []
    while chunk := body.read(2):  # each read: the rest of one piece, whatever the size
        sent.append(bytes(chunk))
    assert sent == [b"0123", b"456789", b"ab"] and body.tell() == 12
    assert body.seek(0) == 0  # a retry rewinds
    assert b"".join(bytes(c) for c in iter(body.read, b"")) == b"0123456789ab"
    assert body.seek(-5, io.SEEK_END) == 7 and bytes(body.read()) == b"789"
    assert body.seek(1) == 1 and bytes(body.read()) == b"123"
    assert len(_Body([])) == 0 and _Body([]).read() == b""
