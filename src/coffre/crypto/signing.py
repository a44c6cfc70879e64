"""The audit trail's Ed25519 signing key, in its own 0400 file (SEC-25: one
key, one use; it signs audit checkpoints and nothing else).

Kept next to the root key, outside the database and its backups: an
attacker who can write the database but not read this file cannot sign a
checkpoint over a rewritten history.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from coffre.crypto.keyfile import read_secret_file


class SigningKey:
    """An Ed25519 private key from its 32-byte seed (given in the
    environment, or derived from the root key: see ``keyfile``)."""

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


class SigningKeyFile(SigningKey):
    """An Ed25519 private key whose 32-byte seed lives in a 0400 file."""

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = path
        super().__init__(read_secret_file(path, "audit signing key", create=create))

