"""Envelope keys and the root key file (SEC-23, SEC-25)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coffre.crypto import envelope
from coffre.crypto.keyfile import KeyFileProvider
from coffre.errors import ConfigurationError, IntegrityError


def test_root_key_file_is_created_0400_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "root.key"
    first = KeyFileProvider(path)
    assert path.stat().st_mode & 0o777 == 0o400
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert len(path.read_bytes()) == 32
    again = KeyFileProvider(path)
    assert again.key_id == first.key_id
    wrapped = first.wrap(b"k" * 32, b"ctx")
    assert again.unwrap(wrapped, b"ctx") == b"k" * 32


def test_root_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o644)
    with pytest.raises(ConfigurationError):
        KeyFileProvider(path)


def test_missing_root_key_without_create_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        KeyFileProvider(tmp_path / "absent.key", create=False)


def test_wrapped_key_is_bound_to_its_context_and_key(tmp_path: Path) -> None:
    kek = envelope.new_key()
    data_key = envelope.new_key()
    wrapped = envelope.wrap_data_key(kek, data_key, b"coffre/blob/1")
    assert wrapped[0] == envelope.ALG_AES256_GCM  # algorithm recorded (crypto-agility)
    assert data_key not in wrapped
    assert envelope.unwrap_data_key(kek, wrapped, b"coffre/blob/1") == data_key
    with pytest.raises(IntegrityError):
        envelope.unwrap_data_key(kek, wrapped, b"coffre/blob/2")
    with pytest.raises(IntegrityError):
        envelope.unwrap_data_key(envelope.new_key(), wrapped, b"coffre/blob/1")


@pytest.mark.parametrize("position", [0, 1, 13, -1])
def test_any_flipped_bit_in_a_sealed_value_is_detected(position: int) -> None:
    key = envelope.new_key()
    sealed = bytearray(envelope.seal(key, b"nom du patient", b"ctx"))
    sealed[position] ^= 0x01
    with pytest.raises(IntegrityError):
        envelope.open_sealed(key, bytes(sealed), b"ctx")


def test_nonces_are_fresh() -> None:
    key = envelope.new_key()
    a = envelope.seal(key, b"same", b"ctx")
    b = envelope.seal(key, b"same", b"ctx")
    assert a[1:13] != b[1:13]


def test_subkeys_differ_per_label() -> None:
    key = envelope.new_key()
    labels = [envelope.LABEL_WRAP_DATA_KEY, envelope.LABEL_METADATA, envelope.LABEL_UPLOAD_TAIL]
    assert len({envelope.derive_key(key, label) for label in labels}) == 3
