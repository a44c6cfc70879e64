"""``UploadService`` driven directly: a temporary SQLite database, the
in-memory blob store, a frozen clock.

The central property (DESIGN.md "Uploads", SEC-23): a stream segment is
encrypted exactly once -- no (data key, salt, nonce) is ever used for two
different plaintexts, whatever crashes, checksum failures and restarts
happen between PATCHes. ``nonces`` records every segment encryption and
fails on a reuse.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from coffre.audit import trail
from coffre.bootstrap import Coffre, build
from coffre.clock import FrozenClock
from coffre.crypto import envelope, stream
from coffre.db.tables import Blob, Upload
from coffre.domain.accounts import Actor, Role
from coffre.errors import ChecksumMismatch, Conflict, Gone, InvalidInput, NotFound, TooLarge
from coffre.notify.memory import MemoryMailer
from coffre.services import uploads
from coffre.services.uploads import (
    Checksum,
    UploadInfo,
    UploadService,
    encode_metadata,
    parse_metadata,
)
from coffre.settings import Settings

MiB = 1 << 20
MAX_SIZE = 8 * MiB
CTX = trail.Context(source="test")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Coffre]:
    coffre = build(Settings(data_dir=tmp_path, storage_url="memory://", max_file_size=MAX_SIZE),
                   clock=FrozenClock(), mailer=MemoryMailer())
    yield coffre
    coffre.close()


@pytest.fixture
def actor(app: Coffre) -> Actor:
    user = app.accounts.complete_setup(None, "medecin@exemple.fr", "correct horse battery staple",
                                       "Cabinet")
    return Actor(user.id, user.organisation_id, Role.ADMIN)


@pytest.fixture
def nonces(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every (key, salt, nonce) -> plaintext hash; reuses land in the list
    returned (and fail the encryption at once)."""
    seen: dict[tuple[Any, ...], bytes] = {}
    reuses: list[tuple[Any, ...]] = []
    original_init = stream.SegmentCipher.__init__
    original_encrypt = stream.SegmentCipher.encrypt_segment

    def init(self: Any, key: bytes, header: stream.StreamHeader,
             associated_data: bytes = b"") -> None:
        original_init(self, key, header, associated_data)
        self.identity = (key, header.salt, header.nonce_prefix, associated_data)

    def encrypt(self: Any, index: int, plaintext: bytes, last: bool) -> bytes:
        ident = (*self.identity, index, last)
        digest = hashlib.sha256(plaintext).digest()
        if seen.setdefault(ident, digest) != digest:
            reuses.append(ident[1:])
            raise AssertionError(f"segment {index} encrypted twice with different contents")
        return original_encrypt(self, index, plaintext, last)

    monkeypatch.setattr(stream.SegmentCipher, "__init__", init)
    monkeypatch.setattr(stream.SegmentCipher, "encrypt_segment", encrypt)
    return reuses


def append(service: UploadService, actor: Actor, upload_id: str, offset: int, data: bytes,
           **options: Any) -> UploadInfo:
    """One PATCH: claim, feed in 1 MiB pieces, finish."""
    writer = service.begin_append(actor, upload_id, offset, **options)
    try:
        for i in range(0, len(data), MiB):
            writer.feed(data[i:i + MiB])
    except BaseException:
        writer.abort()  # as the HTTP layer does
        raise
    return writer.finish(complete_body=True)


def restarted(app: Coffre) -> UploadService:
    """The same database and store seen by a new process (empty caches)."""
    old = app.uploads
    return UploadService(old.db, old.store, old.keys, old.clock, max_size=old.max_size,
                         expiry=old.expiry, single_instance=old.single_instance)


def row(app: Coffre, upload_id: str) -> dict[str, Any]:
    with app.db.session() as session:
        upload = session.get(Upload, upload_id)
        assert upload is not None
        return {c.name: getattr(upload, c.name) for c in Upload.__table__.columns}


def stored(app: Coffre, upload_id: str) -> bytes:
    """Decrypt the completed upload's blob with its own key."""
    with app.db.session() as session:
        upload = session.get(Upload, upload_id)
        assert upload is not None
        key = app.keys.blob_key(session, upload.blob)
        ciphertext = app.store.read(upload.blob.storage_key)
        assert len(ciphertext) == upload.blob.ciphertext_size
        return stream.decrypt(key, ciphertext)


def events(app: Coffre, action: str) -> list[dict[str, Any]]:
    with app.db.session() as session:
        return trail.events(session, action)


def test_pieces_of_every_size_round_trip(app: Coffre, actor: Actor,
                                         nonces: list[Any]) -> None:
    first = stream.FIRST_PLAINTEXT_SEGMENT_SIZE
    data = os.urandom(3 * MiB + 1234)
    cuts = [0, 1, 2, first - 1, first, first + 1, 2 * MiB, 2 * MiB, 3 * MiB + 1, len(data)]
    info = app.uploads.create(actor, len(data), {"filename": "a.bin"}, CTX)
    for start, end in itertools.pairwise(cuts):
        info = append(app.uploads, actor, info.id, start, data[start:end])
        assert info.offset == end
    assert info.completed
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert stored(app, info.id) == data
    assert not events(app, "upload.rekeyed")  # clean PATCHes never need new keys
    assert nonces == []


def test_empty_upload(app: Coffre, actor: Actor) -> None:
    info = app.uploads.create(actor, 0, {}, CTX)
    info = append(app.uploads, actor, info.id, 0, b"")
    assert info.completed and info.sha256 == hashlib.sha256(b"").hexdigest()
    assert stored(app, info.id) == b""


def test_partial_segment_is_a_sealed_tail(app: Coffre, actor: Actor) -> None:
    data = os.urandom(2 * MiB + 500)
    info = app.uploads.create(actor, 3 * MiB, {}, CTX)
    append(app.uploads, actor, info.id, 0, data)
    state = row(app, info.id)
    assert state["offset"] == len(data)
    assert state["segments_committed"] == state["segments_reserved"] == 2
    assert state["lease_owner"] is None
    with app.db.session() as session:
        blob = session.get(Blob, state["blob_id"])
        assert blob is not None
        # only whole segments reach the blob; the rest is the tail
        assert app.store.size(blob.storage_key) == stream.segment_ciphertext_offset(2)
        key = app.keys.blob_key(session, blob)
    tail_start = stream.segment_plaintext_offset(2)
    sealed = state["tail_sealed"]
    assert sealed is not None and data[tail_start:tail_start + 64] not in sealed
    context = f"coffre/tail/{info.id}/{state['blob_id']}/2".encode()
    tail_key = envelope.derive_key(key, envelope.LABEL_UPLOAD_TAIL)
    assert envelope.open_sealed(tail_key, sealed, context) == data[tail_start:]
    # a fresh nonce for every tail: the same tail sealed twice differs
    append(app.uploads, actor, info.id, len(data), b"")
    assert row(app, info.id)["tail_sealed"] != sealed


def test_crash_after_a_checkpoint_rekeys_before_writing(
        app: Coffre, actor: Actor, nonces: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Segments encrypted after the last checkpoint may be on disk: the next
    writer must not encrypt different data under the same nonces."""
    monkeypatch.setattr(uploads, "CHECKPOINT_SECONDS", 0.0)
    data = os.urandom(6 * MiB)
    info = app.uploads.create(actor, len(data), {}, CTX)
    writer = app.uploads.begin_append(actor, info.id, 0)
    writer.feed(data[:2 * MiB + 10])  # a timed checkpoint: the 2 whole segments
    monkeypatch.setattr(uploads, "CHECKPOINT_SECONDS", 3600.0)
    writer.feed(os.urandom(2 * MiB))  # encrypted, never committed: then the process dies
    checkpoint = row(app, info.id)
    boundary = stream.segment_plaintext_offset(2)
    assert checkpoint["offset"] == boundary
    assert checkpoint["tail_sealed"] is None
    assert checkpoint["segments_reserved"] > checkpoint["segments_committed"] == 2
    old_blob = checkpoint["blob_id"]

    service = restarted(app)
    assert service.info(actor, info.id).offset == boundary
    done = append(service, actor, info.id, boundary, data[boundary:])
    assert done.completed and done.sha256 == hashlib.sha256(data).hexdigest()
    assert nonces == []
    assert len(events(app, "upload.rekeyed")) == 1
    assert row(app, info.id)["blob_id"] != old_blob
    with app.db.session() as session:
        blob = session.get(Blob, old_blob)
        assert blob is not None and blob.wrapped_key is None and blob.shredded_at is not None
        assert not app.store.exists(blob.storage_key)
    assert stored(app, info.id) == data


def test_checkpoint_at_the_end_of_each_reserved_window(
        app: Coffre, actor: Actor, nonces: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "RESERVE_WINDOW", 3)
    data = os.urandom(8 * MiB)
    info = app.uploads.create(actor, len(data), {}, CTX)
    writer = app.uploads.begin_append(actor, info.id, 0)
    for i in range(0, 7 * MiB, MiB):
        writer.feed(data[i:i + MiB])
        state = row(app, info.id)
        # progress becomes durable a window at a time; never past the reservations
        assert state["segments_committed"] <= state["segments_reserved"]
        assert state["segments_committed"] % 3 == 0
    state = row(app, info.id)
    assert state["segments_committed"] == 6
    assert state["offset"] == stream.segment_plaintext_offset(6)
    # the process dies here; another resumes from the last checkpoint
    done = append(restarted(app), actor, info.id, state["offset"], data[state["offset"]:])
    assert done.sha256 == hashlib.sha256(data).hexdigest()
    assert len(events(app, "upload.rekeyed")) == 1
    assert nonces == []
    assert stored(app, info.id) == data


def test_no_checkpoint_while_a_checksum_is_pending(
        app: Coffre, actor: Actor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uploads, "RESERVE_WINDOW", 2)
    monkeypatch.setattr(uploads, "CHECKPOINT_SECONDS", 0.0)
    data = os.urandom(5 * MiB)
    info = app.uploads.create(actor, len(data), {}, CTX)
    writer = app.uploads.begin_append(
        actor, info.id, 0, checksum=Checksum("sha256", hashlib.sha256(data).digest()))
    for i in range(0, 4 * MiB, MiB):
        writer.feed(data[i:i + MiB])
        assert row(app, info.id)["offset"] == 0  # unverified bytes are never acknowledged
    writer.feed(data[4 * MiB:])
    assert writer.finish(complete_body=True).sha256 == hashlib.sha256(data).hexdigest()


def test_server_error_mid_patch_keeps_reservations(app: Coffre, actor: Actor,
                                                   nonces: list[Any]) -> None:
    data = os.urandom(3 * MiB)
    info = app.uploads.create(actor, len(data), {}, CTX)
    append(app.uploads, actor, info.id, 0, data[:MiB])
    writer = app.uploads.begin_append(actor, info.id, MiB)
    writer.feed(os.urandom(MiB + 5))
    writer.abort()
    state = row(app, info.id)
    assert state["offset"] == MiB and state["segments_reserved"] > state["segments_committed"]
    done = append(app.uploads, actor, info.id, MiB, data[MiB:])
    assert done.sha256 == hashlib.sha256(data).hexdigest()
    assert len(events(app, "upload.rekeyed")) == 1
    assert nonces == []
    assert stored(app, info.id) == data


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_checksum_mismatch_keeps_nothing(app: Coffre, actor: Actor, nonces: list[Any],
                                         algorithm: str) -> None:
    data = os.urandom(3 * MiB + 3)
    info = app.uploads.create(actor, len(data), {}, CTX)
    append(app.uploads, actor, info.id, 0, data[:1000])
    right = Checksum(algorithm, hashlib.new(algorithm, data[1000:2 * MiB]).digest())
    corrupted = bytearray(data[1000:2 * MiB])
    corrupted[12345] ^= 1  # damaged in transit: segments 0 and 1 encrypted, then refused
    with pytest.raises(ChecksumMismatch):
        append(app.uploads, actor, info.id, 1000, bytes(corrupted), checksum=right)
    assert app.uploads.info(actor, info.id).offset == 1000
    # a body cut short cannot match its checksum either
    writer = app.uploads.begin_append(actor, info.id, 1000, checksum=right)
    writer.feed(data[1000:MiB])
    with pytest.raises(ChecksumMismatch):
        writer.finish(complete_body=False)
    assert app.uploads.info(actor, info.id).offset == 1000

    append(app.uploads, actor, info.id, 1000, data[1000:2 * MiB], checksum=right)
    done = append(app.uploads, actor, info.id, 2 * MiB, data[2 * MiB:])
    assert done.sha256 == hashlib.sha256(data).hexdigest()
    assert nonces == []
    assert stored(app, info.id) == data


def test_client_disconnect_commits_what_arrived(app: Coffre, actor: Actor) -> None:
    data = os.urandom(3 * MiB)
    info = app.uploads.create(actor, len(data), {}, CTX)
    writer = app.uploads.begin_append(actor, info.id, 0)
    writer.feed(data[:MiB + 77])
    assert writer.finish(complete_body=False).offset == MiB + 77
    assert row(app, info.id)["segments_reserved"] == row(app, info.id)["segments_committed"]
    done = append(app.uploads, actor, info.id, MiB + 77, data[MiB + 77:])
    assert done.sha256 == hashlib.sha256(data).hexdigest()
    assert not events(app, "upload.rekeyed")


def test_running_hash_survives_a_restart(app: Coffre, actor: Actor) -> None:
    data = os.urandom(4 * MiB + 9)
    info = app.uploads.create(actor, len(data), {}, CTX)
    append(app.uploads, actor, info.id, 0, data[:2 * MiB + 3])
    service = restarted(app)  # no cached hash state: rebuilt from the stored segments
    append(service, actor, info.id, 2 * MiB + 3, data[2 * MiB + 3:3 * MiB])
    done = append(restarted(app), actor, info.id, 3 * MiB, data[3 * MiB:])
    assert done.sha256 == hashlib.sha256(data).hexdigest()


def test_offset_must_match(app: Coffre, actor: Actor) -> None:
    info = app.uploads.create(actor, 100, {}, CTX)
    append(app.uploads, actor, info.id, 0, b"a" * 10)
    for wrong in (0, 9, 11):
        with pytest.raises(Conflict) as caught:
            app.uploads.begin_append(actor, info.id, wrong)
        assert caught.value.details == {"expected": 10}
    # a failed claim releases the upload for the next request at once
    append(app.uploads, actor, info.id, 10, b"b" * 90)


def test_lengths_and_limits(app: Coffre, actor: Actor) -> None:
    with pytest.raises(TooLarge):
        app.uploads.create(actor, MAX_SIZE + 1, {}, CTX)
    fixed = app.uploads.create(actor, 10, {}, CTX)
    with pytest.raises(InvalidInput):
        append(app.uploads, actor, fixed.id, 0, b"x" * 11)
    with pytest.raises(InvalidInput):
        append(app.uploads, actor, fixed.id, 0, b"x", length=11)
    assert append(app.uploads, actor, fixed.id, 0, b"x" * 10).completed

    deferred = app.uploads.create(actor, None, {}, CTX)
    assert append(app.uploads, actor, deferred.id, 0, b"y" * 100).length is None
    with pytest.raises(TooLarge):
        append(app.uploads, actor, deferred.id, 100, b"", length=MAX_SIZE + 1)
    with pytest.raises(InvalidInput):
        append(app.uploads, actor, deferred.id, 100, b"", length=99)
    # without a declared length the maximum still holds
    with pytest.raises(TooLarge):
        append(app.uploads, actor, deferred.id, 100, b"z" * (MAX_SIZE - 99))
    assert app.uploads.info(actor, deferred.id).offset == 100
    done = append(app.uploads, actor, deferred.id, 100, b"z" * 50, length=150)
    assert done.completed and done.length == 150
    assert done.sha256 == hashlib.sha256(b"y" * 100 + b"z" * 50).hexdigest()


def test_owner_expiry_termination_and_purge(app: Coffre, actor: Actor) -> None:
    stranger = Actor(actor.user_id[::-1], actor.organisation_id, Role.MEMBER)
    info = app.uploads.create(actor, 2 * MiB, {"filename": "x.pdf"}, CTX)
    for call in (lambda: app.uploads.info(stranger, info.id),
                 lambda: app.uploads.begin_append(stranger, info.id, 0),
                 lambda: app.uploads.terminate(stranger, info.id, CTX)):
        with pytest.raises(NotFound):
            call()

    append(app.uploads, actor, info.id, 0, os.urandom(MiB + 10))
    key = app.store.list("blobs/")
    assert len(list(key)) == 1
    clock = app.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(app.uploads.expiry + timedelta(seconds=1))
    with pytest.raises(Gone):
        app.uploads.info(actor, info.id)
    with pytest.raises(Gone):
        app.uploads.begin_append(actor, info.id, MiB + 10)
    assert app.uploads.purge_expired() == 1
    assert list(app.store.list("blobs/")) == []
    assert len(events(app, "upload.expired")) == 1
    with pytest.raises(NotFound):
        app.uploads.info(actor, info.id)

    other = app.uploads.create(actor, 10, {}, CTX)
    append(app.uploads, actor, other.id, 0, b"12345")
    app.uploads.terminate(actor, other.id, CTX)
    assert list(app.store.list("blobs/")) == []
    with pytest.raises(NotFound):
        app.uploads.info(actor, other.id)
    assert len(events(app, "upload.terminated")) == 1


def test_metadata_is_sealed(app: Coffre, actor: Actor) -> None:
    info = app.uploads.create(actor, 1, {"filename": "Dupont Jean.pdf"}, CTX)
    sealed = row(app, info.id)["metadata_sealed"]
    assert sealed is not None and b"Dupont" not in sealed
    assert app.uploads.info(actor, info.id).metadata == {"filename": "Dupont Jean.pdf"}


def test_the_name_is_sanitised_when_the_upload_is_created(app: Coffre, actor: Actor) -> None:
    info = app.uploads.create(actor, 1, {"filename": "../a/b\u202e.pdf"}, CTX)
    assert info.metadata == {"filename": "b.pdf"}
    assert app.uploads.info(actor, info.id).metadata == {"filename": "b.pdf"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_parse_metadata() -> None:
    assert parse_metadata(None) == {} and parse_metadata("") == {}
    name = b64("../a/b\u202e.pdf")
    parsed = parse_metadata(f"filename {name},filetype {b64('x' * 300)},flag")
    # The name as sent: the file-type policy judges it before ``create`` sanitises it.
    assert parsed["filename"] == "../a/b\u202e.pdf"
    assert len(parsed["filetype"]) == 100
    assert parsed["flag"] == ""
    assert parse_metadata(encode_metadata({"filename": "é.pdf", "empty": ""})) == {
        "filename": "é.pdf", "empty": ""}
    for bad in ("filename !!", f"a {b64('x')},a {b64('y')}", f" ,a {b64('x')}",
                "a " + base64.b64encode(b"\xff").decode(), "k" * 5000):
        with pytest.raises(InvalidInput):
            parse_metadata(bad)


def test_parse_checksum() -> None:
    digest = hashlib.sha256(b"abc").digest()
    assert Checksum.parse("sha256 " + base64.b64encode(digest).decode()) == Checksum(
        "sha256", digest)
    assert Checksum.parse("SHA1 " + base64.b64encode(hashlib.sha1(b"").digest()).decode()
                          ).algorithm == "sha1"
    for bad in ("md5 " + base64.b64encode(hashlib.md5(b"").digest()).decode(),
                "sha256 ***", "sha256", "sha1 " + base64.b64encode(digest).decode()):
        with pytest.raises(InvalidInput):
            Checksum.parse(bad)
