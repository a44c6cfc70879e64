"""The audit trail's Ed25519 signing key, in its own 0400 file (SEC-25: one
key, one use; it signs audit checkpoints and nothing else).

Kept next to the root key, outside the database and its backups: an
attacker who can write the database but not read this file cannot sign a
checkpoint over a rewritten history.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from coffre.errors import ConfigurationError

SEED_SIZE = 32


class SigningKeyFile:
    """An Ed25519 private key whose 32-byte seed lives in a 0400 file."""

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = path
        if not path.exists():
            if not create:
                raise ConfigurationError(f"audit signing key file {path} does not exist")
            _create(path)
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigurationError(
                f"audit signing key file {path} is readable by others (mode {mode:o})"
            )
        seed = path.read_bytes()
        if len(seed) != SEED_SIZE:
            raise ConfigurationError(f"audit signing key file {path} must hold exactly 32 bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    try:
        os.write(fd, os.urandom(SEED_SIZE))
        os.fsync(fd)
    finally:
        os.close(fd)
