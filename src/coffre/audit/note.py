"""Signed checkpoints: the C2SP tlog-checkpoint body inside a C2SP
signed-note, signed with Ed25519.

A note is the text (each line ending in a newline), a blank line, then one
line per signature: an em dash (U+2014), a space, the key name, a space and
base64(key ID (4 bytes) || signature). The key ID is the first four bytes
of SHA-256(key name || 0x0A || 0x01 || public key), 0x01 naming Ed25519.
A checkpoint's text is the origin, the tree size in decimal and the base64
root hash, one per line, then optional extension lines (C2SP): Coffre
writes ``coffre-seals/1`` in every checkpoint signed by code that seals
the trail's rows, so a signed checkpoint proves, outside the database,
that the trail was sealed when it was signed. Verifier keys are written
``<name>+<key ID in hex>+<base64(0x01 || public key)>`` (a "vkey").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ED25519 = b"\x01"
DASH = "\u2014 "
#: The extension line of checkpoints signed over a sealed trail.
SEALS_EXTENSION = "coffre-seals/1"


class NoteError(Exception):
    """A note that does not parse, or whose signature does not verify."""


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public_key).digest()[:4]


def vkey(name: str, public_key: bytes) -> str:
    encoded = base64.b64encode(ED25519 + public_key).decode()
    return f"{name}+{key_id(name, public_key).hex()}+{encoded}"


@dataclass(frozen=True)
class VerifierKey:
    name: str
    public_key: bytes


def parse_vkey(text: str) -> VerifierKey:
    try:
        name, hex_id, encoded = text.strip().split("+", 2)
        raw = base64.b64decode(encoded, validate=True)
        expected = bytes.fromhex(hex_id)
    except (ValueError, binascii.Error) as error:
        raise NoteError("malformed verifier key") from error
    if not name or raw[:1] != ED25519 or len(raw) != 33:
        raise NoteError("not an Ed25519 verifier key")
    if key_id(name, raw[1:]) != expected:
        raise NoteError("verifier key ID does not match its key")
    return VerifierKey(name, raw[1:])


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        root = base64.b64encode(self.root_hash).decode()
        return "".join(f"{line}\n" for line in (self.origin, str(self.tree_size), root,
                                                  *self.extensions))


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"invalid key name {name!r}")


def sign(checkpoint: Checkpoint, name: str, public_key: bytes,
         signer: Callable[[bytes], bytes]) -> str:
    """The signed note of ``checkpoint`` (one Ed25519 signature)."""
    _check_name(name)
    _check_name(checkpoint.origin)
    text = checkpoint.body()
    signature = signer(text.encode())
    encoded = base64.b64encode(key_id(name, public_key) + signature).decode()
    return f"{text}\n{DASH}{name} {encoded}\n"


def open_checkpoint(note: str, public_key: bytes) -> Checkpoint:
    """Parse ``note`` and return its checkpoint if one of its signatures is
    by ``public_key`` (under whatever key name the note gives: the key ID
    binds that name to the key) and verifies; raise ``NoteError`` if not."""
    text, signatures = _split(note)
    verifier = Ed25519PublicKey.from_public_bytes(public_key)
    for line in signatures:
        name, _, encoded = line[len(DASH):].rpartition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error as error:
            raise NoteError("malformed signature line") from error
        if len(raw) != 4 + 64 or raw[:4] != key_id(name, public_key):
            continue  # another signer's line
        try:
            verifier.verify(raw[4:], text.encode())
        except InvalidSignature as error:
            raise NoteError("checkpoint signature does not verify") from error
        return _parse_body(text)
    raise NoteError("checkpoint is not signed by this key")


def _split(note: str) -> tuple[str, list[str]]:
    text, sep, tail = note.rpartition("\n\n")
    if not sep or not text or not tail.endswith("\n"):
        raise NoteError("malformed note")
    lines = tail[:-1].split("\n")
    if not lines or not all(line.startswith(DASH) for line in lines):
        raise NoteError("malformed signature lines")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("control character in note text")
    return text + "\n", lines


def _parse_body(text: str) -> Checkpoint:
    lines = text.split("\n")[:-1]
    if len(lines) < 3:
        raise NoteError("checkpoint body needs origin, size and root hash")
    origin, size, root = lines[:3]
    if not size.isdigit() or (size != "0" and size.startswith("0")):
        raise NoteError("malformed tree size")
    try:
        root_hash = base64.b64decode(root, validate=True)
    except binascii.Error as error:
        raise NoteError("malformed root hash") from error
    if len(root_hash) != 32:
        raise NoteError("root hash must be 32 bytes")
    extensions = tuple(lines[3:])
    if any(not line for line in extensions):
        raise NoteError("empty extension line")
    return Checkpoint(origin, int(size), root_hash, extensions)


def split_notes(text: str) -> list[str]:
    """The notes of a witness file: notes one after another, each followed
    by an empty line (note text and signature blocks hold no empty line)."""
    blocks = [block.strip("\n") for block in text.split("\n\n") if block.strip()]
    if len(blocks) % 2:
        raise NoteError("witness file: a note is incomplete")
    return [f"{blocks[i]}\n\n{blocks[i + 1]}\n" for i in range(0, len(blocks), 2)]
