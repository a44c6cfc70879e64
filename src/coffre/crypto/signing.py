"""The audit trail's Ed25519 signing key, in its own 0400 file (SEC-25: one
key, one use; it signs audit checkpoints and nothing else).

Kept next to the root key, outside the database and its backups: an
attacker who can write the database but not read this file cannot sign a
checkpoint over a rewritten history.

The same seed also gives, under its own HKDF label, the key of the audit
trail's per-event seals (``mac_key``): one secret to keep outside the
database, two keys with one use each, and every instance that shares the
signing key (or the root key it is derived from) seals alike.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from coffre.crypto.envelope import derive_key
from coffre.crypto.keyfile import read_secret_file

LABEL_AUDIT_MAC = b"coffre/v1/audit-mac"


class SigningKey:
    """An Ed25519 private key from its 32-byte seed (given in the
    environment, or derived from the root key: see ``keyfile``)."""

    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        #: HMAC key of the audit trail's seals (never stored in the database).
        self.mac_key = derive_key(seed, LABEL_AUDIT_MAC)
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


class SigningKeyFile(SigningKey):
    """An Ed25519 private key whose 32-byte seed lives in a 0400 file."""

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = path
        super().__init__(read_secret_file(path, "audit signing key", create=create))

