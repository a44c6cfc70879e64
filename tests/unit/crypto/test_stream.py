"""Tests of ``coffre.crypto.stream`` (Tink ``AES256_GCM_HKDF_1MB`` wire format).

Tink itself is the oracle for the format (see ``tink_oracle``); the rest
checks random access, the layout arithmetic and tamper detection (SEC-23:
one flipped bit -> decryption fails).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coffre.crypto.stream import (
    FIRST_PLAINTEXT_SEGMENT_SIZE,
    HEADER_SIZE,
    NONCE_PREFIX_SIZE,
    PLAINTEXT_SEGMENT_SIZE,
    SALT_SIZE,
    SEGMENT_SIZE,
    TAG_SIZE,
    SegmentCipher,
    StreamEncryptor,
    StreamHeader,
    ciphertext_size,
    decrypt,
    decrypt_range,
    encrypt,
    encrypt_chunks,
    plaintext_size,
    segment_ciphertext_offset,
    segment_count,
    segment_index,
    segment_plaintext_offset,
    segment_plaintext_size,
)
from coffre.errors import IntegrityError, InvalidInput

from .tink_oracle import tink_decrypt, tink_encrypt

F = FIRST_PLAINTEXT_SEGMENT_SIZE
P = PLAINTEXT_SEGMENT_SIZE
MIB = 1 << 20

KEY = random.Random("coffre-stream-key").randbytes(32)
OTHER_KEY = random.Random("coffre-stream-other-key").randbytes(32)
AD = b"coffre:transfer:0190d5f2-7a1c:file:3"

SIZES = [0, 1, F - 1, F, F + 1, F + P - 1, F + P, F + P + 1, 5 * MIB + 12345]
ADS = [b"", AD]

HYPOTHESIS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def pseudo_random_bytes(size: int, seed: object = 0) -> bytes:
    """Cheap deterministic plaintext (AES does not care that it is not secret)."""
    return random.Random(f"{seed}:{size}").randbytes(size)


def reader(buf: bytes) -> Callable[[int, int], bytes]:
    def read(offset: int, length: int) -> bytes:
        return buf[offset : offset + length]

    return read


def counting_reader(buf: bytes, reads: list[tuple[int, int]]) -> Callable[[int, int], bytes]:
    """``reader(buf)`` that records each (offset, length) it is asked for in ``reads``."""
    read = reader(buf)

    def counted(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return read(offset, length)

    return counted


def read_range(
    ct: bytes,
    start: int = 0,
    end: int | None = None,
    associated_data: bytes = b"",
    key: bytes = KEY,
    batch_segments: int = 4,
) -> bytes:
    return b"".join(
        decrypt_range(
            key,
            reader(ct),
            len(ct),
            start,
            end,
            associated_data=associated_data,
            batch_segments=batch_segments,
        )
    )


def flip(buf: bytes, pos: int, bit: int = 0) -> bytes:
    out = bytearray(buf)
    out[pos] ^= 1 << bit
    return bytes(out)


def segments(ct: bytes) -> list[bytes]:
    """Split a stream into its ciphertext segments (header excluded)."""
    count = segment_count(plaintext_size(len(ct)))
    bounds = [segment_ciphertext_offset(i) for i in range(count)] + [len(ct)]
    return [ct[a:b] for a, b in itertools.pairwise(bounds)]


# --- 1. interoperability with Tink --------------------------------------------


@pytest.mark.parametrize("associated_data", ADS, ids=["no-ad", "ad"])
@pytest.mark.parametrize("size", SIZES)
def test_ours_encrypts_tink_decrypts(size: int, associated_data: bytes) -> None:
    pt = pseudo_random_bytes(size)
    ct = encrypt(KEY, pt, associated_data)

    assert len(ct) == ciphertext_size(size)
    assert plaintext_size(len(ct)) == size
    assert ct[0] == HEADER_SIZE
    assert tink_decrypt(KEY, ct, associated_data) == pt


@pytest.mark.parametrize("associated_data", ADS, ids=["no-ad", "ad"])
@pytest.mark.parametrize("size", SIZES)
def test_tink_encrypts_ours_decrypts(size: int, associated_data: bytes) -> None:
    pt = pseudo_random_bytes(size)
    ct = tink_encrypt(KEY, pt, associated_data)

    assert len(ct) == ciphertext_size(size)
    assert plaintext_size(len(ct)) == size
    assert decrypt(KEY, ct, associated_data) == pt
    assert read_range(ct, associated_data=associated_data) == pt
    assert read_range(ct, associated_data=associated_data, batch_segments=1) == pt
    lo, hi = size // 3, size - size // 4
    assert read_range(ct, lo, hi, associated_data=associated_data) == pt[lo:hi]


def test_tink_ciphertext_rejected_with_wrong_associated_data() -> None:
    """SEC-23: associated data is bound to the stream; a mismatch fails."""
    ct = tink_encrypt(KEY, pseudo_random_bytes(F + 10), AD)
    with pytest.raises(IntegrityError):
        decrypt(KEY, ct, AD + b"x")


# --- 2. incremental encryption --------------------------------------------------


IRREGULAR_CHUNKS = [
    [],
    [b""],
    [b"", b"a", b""],
    [1, 7, 1000, F - 1008, 1, P, 3, 65536, 0, 2 * P + 5],
    [F],
    [F, 0, 1],
    [F - 1, 1, P - 1, 1],
    [F + P],
    [3 * MIB + 17],
    [4096] * 700,
]


def _materialise(spec: list[int] | list[bytes], seed: int) -> list[bytes]:
    return [
        chunk if isinstance(chunk, bytes) else pseudo_random_bytes(chunk, (seed, i))
        for i, chunk in enumerate(spec)
    ]


@pytest.mark.parametrize("spec", IRREGULAR_CHUNKS, ids=lambda s: f"{len(s)}-chunks")
def test_encryptor_irregular_chunks_tink_decrypts(spec: list[int] | list[bytes]) -> None:
    chunks = _materialise(spec, seed=len(spec))
    pt = b"".join(chunks)
    enc = StreamEncryptor(KEY, AD)
    ct = b"".join(enc.update(c) for c in chunks) + enc.finalize()

    assert len(ct) == ciphertext_size(len(pt))
    assert tink_decrypt(KEY, ct, AD) == pt
    assert decrypt(KEY, ct, AD) == pt


def test_encryptor_random_chunks_same_bytes_as_one_shot() -> None:
    rng = random.Random(23)
    pt = pseudo_random_bytes(2 * MIB + 999)
    header = StreamHeader.random()
    whole = StreamEncryptor(KEY, AD, header)
    expected = whole.update(pt) + whole.finalize()

    for _ in range(5):
        enc = StreamEncryptor(KEY, AD, header)
        out = bytearray()
        pos = 0
        while pos < len(pt):
            step = rng.choice([0, 1, 15, 16, 17, 4095, 65536, 300_000, P])
            out += enc.update(pt[pos : pos + step])
            pos += step
        out += enc.finalize()
        assert bytes(out) == expected
    assert tink_decrypt(KEY, expected, AD) == pt


def test_encrypt_chunks_tink_decrypts() -> None:
    chunks = _materialise([5, F, 0, P + 3, 77], seed=1)
    pt = b"".join(chunks)
    ct = b"".join(encrypt_chunks(KEY, iter(chunks), AD))
    assert tink_decrypt(KEY, ct, AD) == pt


def test_encryptor_holds_back_a_full_segment_until_more_data() -> None:
    """A full segment is only known not to be the last when a byte follows."""
    enc = StreamEncryptor(KEY)
    assert len(enc.update(pseudo_random_bytes(F))) == HEADER_SIZE
    assert len(enc.update(b"x")) == SEGMENT_SIZE - HEADER_SIZE
    assert len(enc.finalize()) == 1 + TAG_SIZE


def test_encryptor_refuses_use_after_finalize() -> None:
    enc = StreamEncryptor(KEY)
    enc.update(b"abc")
    enc.finalize()
    with pytest.raises(InvalidInput):
        enc.update(b"more")
    with pytest.raises(InvalidInput):
        enc.finalize()


def test_encryptions_are_randomised() -> None:
    pt = b"same plaintext"
    a, b = encrypt(KEY, pt), encrypt(KEY, pt)
    assert a != b
    assert a[1:HEADER_SIZE] != b[1:HEADER_SIZE]


def test_bad_key_and_segment_sizes_rejected() -> None:
    with pytest.raises(InvalidInput):
        encrypt(KEY[:16], b"x")
    with pytest.raises(InvalidInput):
        decrypt(KEY + b"\0", encrypt(KEY, b"x"))
    cipher = SegmentCipher(KEY, StreamHeader.random())
    with pytest.raises(InvalidInput):
        cipher.encrypt_segment(0, b"short", last=False)
    with pytest.raises(InvalidInput):
        cipher.encrypt_segment(0, bytes(F + 1), last=True)
    with pytest.raises(InvalidInput):
        cipher.encrypt_segment(1, bytes(P + 1), last=True)


def test_header_roundtrip_and_parse_errors() -> None:
    header = StreamHeader.random()
    raw = header.to_bytes()
    assert len(raw) == HEADER_SIZE == 1 + SALT_SIZE + NONCE_PREFIX_SIZE
    assert StreamHeader.parse(raw) == header
    with pytest.raises(IntegrityError):
        StreamHeader.parse(raw[:-1])
    with pytest.raises(IntegrityError):
        StreamHeader.parse(bytes([HEADER_SIZE + 1]) + raw[1:])


# --- 3. random access -------------------------------------------------------------


@pytest.fixture(scope="module")
def multi_segment() -> tuple[bytes, bytes]:
    """Four segments: two full middle ones and a short last one."""
    pt = pseudo_random_bytes(F + 2 * P + 54321, "multi")
    return pt, encrypt(KEY, pt, AD)


def _ranges(n: int) -> list[tuple[int, int]]:
    b1, b2, b3 = F, F + P, F + 2 * P
    return [
        (0, 0),
        (0, 1),
        (0, n),
        (1, n - 1),
        (n - 1, n),
        (n, n),
        (b1 - 1, b1),
        (b1, b1),
        (b1, b1 + 1),
        (b1 - 1, b1 + 1),
        (b1 - 5, b2 + 5),
        (b1, b2),
        (b2 - 1, b2 + 1),
        (b2, b3),
        (b2 + 100, b2 + 200),
        (b3 - 1, b3 + 1),
        (b3 - 1, n),
        (b3, n),
        (12345, b3 + 6789),
        (b1 + 10, b1 + 10),
    ]


@pytest.mark.parametrize("batch", [1, 2, 4, 100])
def test_decrypt_range_matches_slicing(multi_segment: tuple[bytes, bytes], batch: int) -> None:
    pt, ct = multi_segment
    for start, end in _ranges(len(pt)):
        got = read_range(ct, start, end, AD, batch_segments=batch)
        assert got == pt[start:end], (start, end)


def test_decrypt_range_open_and_clipped_end(multi_segment: tuple[bytes, bytes]) -> None:
    pt, ct = multi_segment
    assert read_range(ct, F + 7, None, AD) == pt[F + 7 :]
    assert read_range(ct, len(pt) - 3, len(pt) + 1000, AD) == pt[-3:]


def test_decrypt_range_yields_no_empty_pieces(multi_segment: tuple[bytes, bytes]) -> None:
    pt, ct = multi_segment
    pieces = list(decrypt_range(KEY, reader(ct), len(ct), F - 1, F + P + 1, AD, 1))
    assert all(pieces)
    assert b"".join(pieces) == pt[F - 1 : F + P + 1]


def test_decrypt_range_reads_only_needed_segments(multi_segment: tuple[bytes, bytes]) -> None:
    pt, ct = multi_segment
    reads: list[tuple[int, int]] = []
    read = counting_reader(ct, reads)
    start, end = F + 10, F + P + 10  # segments 1 and 2
    got = b"".join(decrypt_range(KEY, read, len(ct), start, end, AD, batch_segments=1))
    assert got == pt[start:end]
    assert reads == [
        (0, HEADER_SIZE),
        (segment_ciphertext_offset(1), SEGMENT_SIZE),
        (segment_ciphertext_offset(2), SEGMENT_SIZE),
    ]


@pytest.mark.parametrize("batch", [1, 2, 100])
def test_decrypt_range_read_ahead_matches_slicing(
    multi_segment: tuple[bytes, bytes], batch: int
) -> None:
    pt, ct = multi_segment
    for start, end in _ranges(len(pt)):
        got = b"".join(decrypt_range(KEY, reader(ct), len(ct), start, end, AD, batch,
                                     read_ahead=True))
        assert got == pt[start:end], (start, end)


def test_decrypt_range_read_ahead_reads_each_batch_once_in_order(
    multi_segment: tuple[bytes, bytes]
) -> None:
    pt, ct = multi_segment
    reads: list[tuple[int, int]] = []
    read = counting_reader(ct, reads)
    got = b"".join(decrypt_range(KEY, read, len(ct), 0, None, AD, 1, read_ahead=True))
    assert got == pt
    assert [offset for offset, _ in reads] == sorted({offset for offset, _ in reads})
    # From the start, the header comes with the first segment: one read per segment.
    assert reads[0] == (0, SEGMENT_SIZE)
    assert len(reads) == segment_count(len(pt))


def test_decrypt_range_from_a_later_segment_reads_the_header_alone(
    multi_segment: tuple[bytes, bytes]
) -> None:
    pt, ct = multi_segment
    reads: list[tuple[int, int]] = []
    read = counting_reader(ct, reads)
    start = segment_plaintext_offset(2) + 5
    got = b"".join(decrypt_range(KEY, read, len(ct), start, None, AD, 1))
    assert got == pt[start:]
    assert reads[0] == (0, HEADER_SIZE)
    assert reads[1][0] == 2 * SEGMENT_SIZE


def test_decrypt_range_rejects_a_damaged_header_read_with_the_first_segment(
    multi_segment: tuple[bytes, bytes]
) -> None:
    _, ct = multi_segment
    damaged = bytes([HEADER_SIZE + 1]) + ct[1:]
    with pytest.raises(IntegrityError):
        b"".join(decrypt_range(KEY, reader(damaged), len(damaged), 0, None, AD))
    salted = ct[:1] + bytes([ct[1] ^ 1]) + ct[2:]  # another salt: another key
    with pytest.raises(IntegrityError):
        b"".join(decrypt_range(KEY, reader(salted), len(salted), 0, None, AD))


def test_decrypt_range_read_ahead_passes_read_errors_on(
    multi_segment: tuple[bytes, bytes]
) -> None:
    _, ct = multi_segment

    def read(offset: int, length: int) -> bytes:
        if offset > HEADER_SIZE:
            raise OSError("storage gone")
        return ct[offset : offset + length]

    with pytest.raises(OSError, match="storage gone"):
        b"".join(decrypt_range(KEY, read, len(ct), 0, None, AD, 1, read_ahead=True))


@pytest.mark.parametrize(("start", "end"), [(-1, 5), (10, 5), (1, 0)])
def test_decrypt_range_invalid_range(
    multi_segment: tuple[bytes, bytes], start: int, end: int
) -> None:
    _, ct = multi_segment
    with pytest.raises(InvalidInput):
        read_range(ct, start, end, AD)


def test_decrypt_range_start_past_end_of_stream() -> None:
    ct = encrypt(KEY, b"0123456789")
    with pytest.raises(InvalidInput):
        read_range(ct, 11)
    assert read_range(ct, 10) == b""


def test_empty_stream_is_authenticated() -> None:
    """SEC-23: even an empty stream has a tag that must verify."""
    ct = encrypt(KEY, b"", AD)
    assert len(ct) == HEADER_SIZE + TAG_SIZE
    assert read_range(ct, 0, 0, AD) == b""
    with pytest.raises(IntegrityError):
        read_range(ct, 0, 0, AD, key=OTHER_KEY)
    with pytest.raises(IntegrityError):
        decrypt(KEY, flip(ct, len(ct) - 1), AD)


# --- 4. tamper detection (SEC-23) ------------------------------------------------


def _flip_positions() -> list[tuple[str, int]]:
    seg1 = segment_ciphertext_offset(1)
    seg2 = segment_ciphertext_offset(2)
    seg3 = segment_ciphertext_offset(3)
    return [
        ("header-length", 0),
        ("salt-first", 1),
        ("salt-last", SALT_SIZE),
        ("nonce-prefix-first", 1 + SALT_SIZE),
        ("nonce-prefix-last", HEADER_SIZE - 1),
        ("seg0-first", HEADER_SIZE),
        ("seg0-middle", HEADER_SIZE + F // 2),
        ("seg0-tag", seg1 - 1),
        ("seg1-first", seg1),
        ("seg1-middle", seg1 + 123_457),
        ("seg1-tag", seg2 - TAG_SIZE),
        ("seg2-middle", seg2 + P // 2),
        ("seg3-first", seg3),
        ("last-tag-first", -TAG_SIZE),
        ("last-byte", -1),
    ]


@pytest.mark.parametrize("bit", [0, 7])
@pytest.mark.parametrize("pos", [pytest.param(p, id=w) for w, p in _flip_positions()])
def test_flipped_bit_fails(multi_segment: tuple[bytes, bytes], pos: int, bit: int) -> None:
    """SEC-23: one flipped bit -> decryption fails."""
    _, ct = multi_segment
    bad = flip(ct, pos % len(ct), bit)
    with pytest.raises(IntegrityError):
        decrypt(KEY, bad, AD)
    # random access to the damaged segment alone also fails
    index = (pos % len(ct)) // SEGMENT_SIZE
    offset = segment_plaintext_offset(index)
    with pytest.raises(IntegrityError):
        read_range(bad, offset, offset + 1, AD)


def test_flipped_bit_reports_segment(multi_segment: tuple[bytes, bytes]) -> None:
    _, ct = multi_segment
    with pytest.raises(IntegrityError) as info:
        decrypt(KEY, flip(ct, segment_ciphertext_offset(2) + 5), AD)
    assert info.value.details["segment"] == 2


def test_flipped_bit_outside_requested_range_not_read(
    multi_segment: tuple[bytes, bytes],
) -> None:
    """Segments decrypt on their own: damage in segment 2 does not affect segment 0."""
    pt, ct = multi_segment
    bad = flip(ct, segment_ciphertext_offset(2) + 5)
    assert read_range(bad, 0, 100, AD) == pt[:100]


TRUNCATIONS: dict[str, Callable[[int], int]] = {
    # kept length, as a function of the full stream length (4 segments)
    "drop-last-segment": lambda n: segment_ciphertext_offset(3),  # at a segment boundary
    "cut-at-2-segments": lambda n: segment_ciphertext_offset(2),
    "cut-at-1-segment": lambda n: segment_ciphertext_offset(1),
    "drop-1-byte": lambda n: n - 1,
    "drop-tag": lambda n: n - TAG_SIZE,
    "drop-tag-and-1": lambda n: n - TAG_SIZE - 1,
    "last-segment-15-bytes": lambda n: segment_ciphertext_offset(3) + TAG_SIZE - 1,
    "last-segment-16-bytes": lambda n: segment_ciphertext_offset(3) + TAG_SIZE,
    "last-segment-17-bytes": lambda n: segment_ciphertext_offset(3) + TAG_SIZE + 1,
    "mid-segment-1": lambda n: segment_ciphertext_offset(1) + 1000,
    "header-and-tag": lambda n: HEADER_SIZE + TAG_SIZE,
    "header-only": lambda n: HEADER_SIZE,
    "half-header": lambda n: HEADER_SIZE // 2,
    "nothing": lambda n: 0,
}


@pytest.mark.parametrize("cut", TRUNCATIONS)
def test_truncation_fails(multi_segment: tuple[bytes, bytes], cut: str) -> None:
    """SEC-23: dropping data, even whole segments, is detected."""
    _, ct = multi_segment
    with pytest.raises(IntegrityError):
        decrypt(KEY, ct[: TRUNCATIONS[cut](len(ct))], AD)


def test_cut_at_segment_boundary_has_a_valid_size_but_fails() -> None:
    """A boundary cut yields a plausible size: only the missing last flag catches it."""
    pt = pseudo_random_bytes(F + P + 10)
    ct = encrypt(KEY, pt, AD)
    cut = ct[: segment_ciphertext_offset(2)]
    assert plaintext_size(len(cut)) == F + P
    with pytest.raises(IntegrityError) as info:
        decrypt(KEY, cut, AD)
    assert info.value.details["segment"] == 1
    # the surviving full segments are still readable on their own
    assert read_range(cut, 0, 10, AD) == pt[:10]


def test_short_read_fails(multi_segment: tuple[bytes, bytes]) -> None:
    """The store returns fewer bytes than the recorded stream size."""
    _, ct = multi_segment

    def read(offset: int, length: int) -> bytes:
        return ct[: len(ct) - 1][offset : offset + length]

    with pytest.raises(IntegrityError, match="truncated"):
        b"".join(decrypt_range(KEY, read, len(ct), associated_data=AD))


def test_swapped_segments_fail(multi_segment: tuple[bytes, bytes]) -> None:
    _, ct = multi_segment
    segs = segments(ct)
    assert len(segs) == 4
    swapped = ct[:HEADER_SIZE] + segs[0] + segs[2] + segs[1] + segs[3]
    assert len(swapped) == len(ct)
    with pytest.raises(IntegrityError):
        decrypt(KEY, swapped, AD)
    duplicated = ct[:HEADER_SIZE] + segs[0] + segs[1] + segs[1] + segs[3]
    with pytest.raises(IntegrityError):
        decrypt(KEY, duplicated, AD)


def test_segment_from_another_stream_fails() -> None:
    pt = pseudo_random_bytes(F + P + 10)
    a, b = encrypt(KEY, pt, AD), encrypt(KEY, pt, AD)
    mixed = a[: segment_ciphertext_offset(1)] + b[segment_ciphertext_offset(1) :]
    with pytest.raises(IntegrityError):
        decrypt(KEY, mixed, AD)


def test_appended_data_fails(multi_segment: tuple[bytes, bytes]) -> None:
    """SEC-23: extending a stream is detected."""
    pt, ct = multi_segment
    for extra in (b"\0", bytes(TAG_SIZE), bytes(TAG_SIZE + 1), ct[-TAG_SIZE - 1 :]):
        with pytest.raises(IntegrityError):
            decrypt(KEY, ct + extra, AD)

    # A genuine next segment from a longer stream under the same header: the
    # old last segment carries the last flag, so it no longer verifies.
    header = StreamHeader.parse(ct)
    longer_enc = StreamEncryptor(KEY, AD, header)
    longer = longer_enc.update(pt + bytes(2 * P)) + longer_enc.finalize()
    short_enc = StreamEncryptor(KEY, AD, header)
    short = short_enc.update(pt[: F + P]) + short_enc.finalize()
    # same key and header: the non-last segment 0 is identical in both streams
    assert short[: segment_ciphertext_offset(1)] == longer[: segment_ciphertext_offset(1)]
    extended = short + longer[segment_ciphertext_offset(2) : segment_ciphertext_offset(3)]
    with pytest.raises(IntegrityError):
        decrypt(KEY, extended, AD)


def test_wrong_associated_data_fails(multi_segment: tuple[bytes, bytes]) -> None:
    _, ct = multi_segment
    for ad in (b"", AD + b"\0", AD[:-1], b"coffre:transfer:other"):
        with pytest.raises(IntegrityError):
            decrypt(KEY, ct, ad)
    with pytest.raises(IntegrityError):
        read_range(ct, F + 5, F + 6, b"")


def test_wrong_key_fails(multi_segment: tuple[bytes, bytes]) -> None:
    _, ct = multi_segment
    with pytest.raises(IntegrityError):
        decrypt(OTHER_KEY, ct, AD)
    with pytest.raises(IntegrityError):
        read_range(ct, F + P + 5, F + P + 6, AD, key=OTHER_KEY)


@pytest.mark.parametrize("size", [0, 1, 39, 40, 55, SEGMENT_SIZE + 1, SEGMENT_SIZE + 16])
def test_impossible_stream_sizes_fail(size: int) -> None:
    with pytest.raises(IntegrityError):
        plaintext_size(size)
    with pytest.raises(IntegrityError):
        decrypt(KEY, (bytes([HEADER_SIZE]) + bytes(size))[:size])


# --- 5. properties ------------------------------------------------------------------


MAX_SIZE = 5 * MIB // 2
big_sizes = st.one_of(
    st.integers(0, MAX_SIZE),
    st.integers(F, MAX_SIZE),  # always several segments
    st.sampled_from([F - 1, F, F + 1, F + P - 1, F + P, F + P + 1]),
)


@HYPOTHESIS
@given(size=big_sizes, seed=st.integers(0, 2**32), ad=st.binary(max_size=40))
def test_roundtrip_property(size: int, seed: int, ad: bytes) -> None:
    pt = pseudo_random_bytes(size, seed)
    ct = encrypt(KEY, pt, ad)
    assert len(ct) == ciphertext_size(size)
    assert decrypt(KEY, ct, ad) == pt


@HYPOTHESIS
@given(pt=st.binary(max_size=2048), ad=st.binary(max_size=40))
def test_roundtrip_small_property(pt: bytes, ad: bytes) -> None:
    assert decrypt(KEY, encrypt(KEY, pt, ad), ad) == pt


@HYPOTHESIS
@given(
    pt=st.binary(min_size=0, max_size=512),
    data=st.data(),
)
def test_any_flipped_bit_fails_property(pt: bytes, data: st.DataObject) -> None:
    """SEC-23: one flipped bit anywhere -> decryption fails."""
    ct = encrypt(KEY, pt, AD)
    pos = data.draw(st.integers(0, len(ct) - 1), label="pos")
    bit = data.draw(st.integers(0, 7), label="bit")
    with pytest.raises(IntegrityError):
        decrypt(KEY, flip(ct, pos, bit), AD)


@pytest.fixture(scope="module")
def property_stream() -> tuple[bytes, bytes]:
    pt = pseudo_random_bytes(MAX_SIZE, "property")
    return pt, encrypt(KEY, pt)


@HYPOTHESIS
@given(data=st.data())
def test_decrypt_range_property(property_stream: tuple[bytes, bytes], data: st.DataObject) -> None:
    full_pt, full_ct = property_stream
    size = data.draw(big_sizes, label="size")
    # a prefix of the plaintext, re-encrypted only when it differs in size
    pt = full_pt[:size]
    ct = full_ct if size == len(full_pt) else encrypt(KEY, pt)
    boundaries = [b + d for b in (F, F + P, F + 2 * P) for d in (-1, 0, 1) if 0 <= b + d <= size]
    offsets = st.one_of(st.integers(0, size), st.sampled_from([0, size, *boundaries]))
    start = data.draw(offsets, label="start")
    ends = st.one_of(
        st.integers(start, size),
        st.sampled_from([e for e in (size, *boundaries) if e >= start]),
    )
    end = data.draw(ends, label="end")
    batch = data.draw(st.integers(1, 5), label="batch")
    assert read_range(ct, start, end, batch_segments=batch) == pt[start:end]


def _valid_stream_size(n: int) -> bool:
    """Independent description of the sizes ``ciphertext_size`` can produce."""
    if n <= SEGMENT_SIZE:
        return n >= HEADER_SIZE + TAG_SIZE
    last_segment = (n - 1) % SEGMENT_SIZE + 1
    return last_segment > TAG_SIZE


@settings(max_examples=300)
@given(n=st.one_of(st.integers(0, 10**12), st.integers(0, 8 * MIB)))
def test_size_functions_inverse_property(n: int) -> None:
    c = ciphertext_size(n)
    assert plaintext_size(c) == n
    assert _valid_stream_size(c)
    assert c - n == HEADER_SIZE + segment_count(n) * TAG_SIZE


@settings(max_examples=300)
@given(c=st.one_of(st.integers(0, 10**12), st.integers(0, 8 * MIB)))
def test_plaintext_size_accepts_exactly_valid_sizes_property(c: int) -> None:
    if _valid_stream_size(c):
        assert ciphertext_size(plaintext_size(c)) == c
    else:
        with pytest.raises(IntegrityError):
            plaintext_size(c)


@pytest.mark.parametrize(
    "n", [0, 1, F - 1, F, F + 1, F + P - 1, F + P, F + P + 1, 10 * MIB, 10**12]
)
def test_size_functions_at_boundaries(n: int) -> None:
    assert plaintext_size(ciphertext_size(n)) == n


def test_layout_constants() -> None:
    assert HEADER_SIZE == 40
    assert SEGMENT_SIZE == 1 << 20
    assert F == SEGMENT_SIZE - HEADER_SIZE - TAG_SIZE
    assert P == SEGMENT_SIZE - TAG_SIZE
    assert ciphertext_size(0) == HEADER_SIZE + TAG_SIZE
    assert ciphertext_size(F) == SEGMENT_SIZE
    assert ciphertext_size(F + 1) == SEGMENT_SIZE + 1 + TAG_SIZE
    assert segment_count(F + P) == 2
    assert segment_count(F + P + 1) == 3


@settings(max_examples=300)
@given(offset=st.one_of(st.integers(0, 10**12), st.integers(0, 8 * MIB)))
def test_segment_index_offset_consistency_property(offset: int) -> None:
    i = segment_index(offset)
    seg_start = segment_plaintext_offset(i)
    assert seg_start <= offset < seg_start + segment_plaintext_size(i)
    assert segment_index(seg_start) == i
    assert segment_count(offset + 1) == i + 1


@settings(max_examples=300)
@given(i=st.integers(0, 10**6))
def test_segment_offsets_are_contiguous_property(i: int) -> None:
    p_next = segment_plaintext_offset(i) + segment_plaintext_size(i)
    assert segment_plaintext_offset(i + 1) == p_next
    assert segment_index(p_next) == i + 1
    assert segment_index(p_next - 1) == i
    c_next = segment_ciphertext_offset(i) + segment_plaintext_size(i) + TAG_SIZE
    assert segment_ciphertext_offset(i + 1) == c_next
    # ciphertext offset = header + plaintext offset + tags of the segments before
    assert segment_ciphertext_offset(i) == HEADER_SIZE + segment_plaintext_offset(i) + i * TAG_SIZE


@HYPOTHESIS
@given(
    chunk_sizes=st.lists(
        st.one_of(st.integers(0, 70_000), st.sampled_from([F, P, F - 1, P + 1])), max_size=8
    ),
    seed=st.integers(0, 2**16),
)
def test_chunking_does_not_change_ciphertext_property(chunk_sizes: list[int], seed: int) -> None:
    chunks = [pseudo_random_bytes(n, (seed, i)) for i, n in enumerate(chunk_sizes)]
    pt = b"".join(chunks)
    header = StreamHeader.random()
    one = StreamEncryptor(KEY, AD, header)
    expected = one.update(pt) + one.finalize()
    many = StreamEncryptor(KEY, AD, header)
    got = b"".join(many.update(c) for c in chunks) + many.finalize()
    assert got == expected
    assert decrypt(KEY, got, AD) == pt


def test_a_damaged_segment_withholds_its_whole_batch(multi_segment: tuple[bytes, bytes]) -> None:
    """Segments are decrypted into one buffer per batch, handed on only once
    all of them authenticate: nothing of a batch with a damaged segment goes
    out, not even the segments before it, and what went out is read-only."""
    pt, ct = multi_segment
    bad = flip(ct, segment_ciphertext_offset(3) + 5)  # the last batch of two: segments 2, 3
    pieces = decrypt_range(KEY, reader(bad), len(bad), associated_data=AD, batch_segments=2)
    first = next(pieces)
    assert bytes(first) == pt[: segment_plaintext_offset(2)]
    with pytest.raises(TypeError):
        first[0] = 0  # type: ignore[index]
    with pytest.raises(IntegrityError):
        next(pieces)
