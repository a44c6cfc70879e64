"""Signed checkpoints in the C2SP tlog-checkpoint / signed-note format, and
the audit signing key file (SEC-25, SEC-31)."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coffre.audit import note
from coffre.crypto.signing import SigningKeyFile
from coffre.errors import ConfigurationError

ORIGIN = "coffre.example.fr/coffre/audit"
ROOT = hashlib.sha256(b"root").digest()


def _signed(tmp_path: Path, size: int = 42) -> tuple[SigningKeyFile, str]:
    key = SigningKeyFile(tmp_path / "keys" / "audit-signing.key")
    cp = note.Checkpoint(ORIGIN, size, ROOT)
    return key, note.sign(cp, ORIGIN, key.public_key, key.sign)


def test_note_has_the_c2sp_layout(tmp_path: Path) -> None:
    key, text = _signed(tmp_path)
    body, signature = text.split("\n\n")
    assert body == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}"
    assert signature.startswith("\u2014 " + ORIGIN + " ") and signature.endswith("\n")
    raw = base64.b64decode(signature.rstrip("\n").rsplit(" ", 1)[1])
    key_id = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + key.public_key).digest()[:4]
    assert raw[:4] == key_id and len(raw) == 68
    # The Ed25519 signature covers the checkpoint body with its final newline.
    Ed25519PublicKey.from_public_bytes(key.public_key).verify(raw[4:], (body + "\n").encode())
    assert note.open_checkpoint(text, key.public_key) == note.Checkpoint(ORIGIN, 42, ROOT)


def test_vkey_round_trip(tmp_path: Path) -> None:
    key, _ = _signed(tmp_path)
    vkey = note.vkey(ORIGIN, key.public_key)
    name, key_id, encoded = vkey.split("+", 2)
    assert name == ORIGIN and len(key_id) == 8
    assert base64.b64decode(encoded) == b"\x01" + key.public_key
    assert note.parse_vkey(vkey).public_key == key.public_key
    with pytest.raises(note.NoteError):
        note.parse_vkey(vkey.replace(key_id, "00000000"))


@pytest.mark.parametrize("tamper", [
    lambda t: t.replace("\n42\n", "\n43\n"),
    lambda t: t.replace(ORIGIN + "\n", "evil.example/coffre/audit\n", 1),
    lambda t: t[:-10] + ("A" if t[-10] != "A" else "B") + t[-9:],
])
def test_altered_checkpoint_fails(tmp_path: Path, tamper: object) -> None:
    key, text = _signed(tmp_path)
    forged = tamper(text)  # type: ignore[operator]
    with pytest.raises(note.NoteError):
        note.open_checkpoint(forged, key.public_key)


def test_another_key_does_not_verify(tmp_path: Path) -> None:
    _, text = _signed(tmp_path / "a")
    other = SigningKeyFile(tmp_path / "b" / "audit-signing.key")
    with pytest.raises(note.NoteError):
        note.open_checkpoint(text, other.public_key)


def test_witness_file_holds_many_notes(tmp_path: Path) -> None:
    key, first = _signed(tmp_path, 1)
    second = note.sign(note.Checkpoint(ORIGIN, 2, ROOT), ORIGIN, key.public_key, key.sign)
    assert note.split_notes(first + "\n" + second + "\n") == [first, second]
    assert note.split_notes("") == []


def test_signing_key_file_is_0400_and_stable(tmp_path: Path) -> None:
    """SEC-25: the audit key is its own 0400 file, created once."""
    path = tmp_path / "keys" / "audit-signing.key"
    key = SigningKeyFile(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert SigningKeyFile(path).public_key == key.public_key
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError):
        SigningKeyFile(path)
    with pytest.raises(ConfigurationError):
        SigningKeyFile(tmp_path / "missing.key", create=False)


def test_vkey_whose_base64_holds_a_plus_sign() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    for seed in range(256):
        public = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32).public_key() \
            .public_bytes(Encoding.Raw, PublicFormat.Raw)
        vkey = note.vkey(ORIGIN, public)
        if "+" in vkey.split("+", 2)[2]:
            assert note.parse_vkey(vkey).public_key == public
            return
    raise AssertionError("no seed gave a '+' in base64")  # pragma: no cover
