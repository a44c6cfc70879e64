"""Root key providers: a key file (mode 0400, created at first start) or
a secret given in the environment (``COFFRE_ROOT_KEY``, base64), which
stateless instances of the distributed profile share.

Either way the key is 32 random bytes. It must never be stored with the
database or the blobs' backups: a database dump alone decrypts nothing
(SEC-25).
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from coffre.crypto.envelope import KEY_SIZE, derive_key, new_key, open_sealed, seal
from coffre.errors import ConfigurationError

LABEL_ROOT_WRAP = b"coffre/v1/root-wrap"
LABEL_KEY_ID = b"coffre/v1/key-id"
LABEL_AUDIT_SIGNING = b"coffre/v1/audit-signing"


class RootKeyProvider:
    """``KeyProvider`` over the 32 bytes of the root key."""

    def __init__(self, raw: bytes, source: str = "env") -> None:
        if len(raw) != KEY_SIZE:
            raise ConfigurationError(f"the root key must be exactly {KEY_SIZE} bytes")
        self._wrap_key = derive_key(raw, LABEL_ROOT_WRAP)
        self._signing_seed = derive_key(raw, LABEL_AUDIT_SIGNING)
        self.key_id = f"{source}:" + derive_key(raw, LABEL_KEY_ID)[:8].hex()

    def wrap(self, key: bytes, context: bytes) -> bytes:
        return seal(self._wrap_key, key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        return open_sealed(self._wrap_key, wrapped, context)

    def audit_signing_seed(self) -> bytes:
        """An Ed25519 seed derived from the root key under its own label,
        for instances given the root key but no signing key of their own:
        they all sign audit checkpoints with the same key."""
        return self._signing_seed


class KeyFileProvider(RootKeyProvider):
    """``KeyProvider`` over a local 0400 file."""

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = path
        super().__init__(read_secret_file(path, "root key", create=create), "file")


def decode_secret(value: str, what: str) -> bytes:
    """32 bytes given in base64 (an environment secret); refused otherwise."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{what} is not valid base64") from None
    if len(raw) != KEY_SIZE:
        raise ConfigurationError(f"{what} must decode to exactly {KEY_SIZE} bytes")
    return raw

def read_secret_file(path: Path, what: str, *, create: bool) -> bytes:
    """The 32 random bytes of a 0400 key file, made on first use; refused if
    others can read it or it has another size."""
    if not path.exists():
        if not create:
            raise ConfigurationError(f"{what} file {path} does not exist")
        _create_key_file(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigurationError(f"{what} file {path} is readable by others (mode {mode:o})")
    raw = path.read_bytes()
    if len(raw) != KEY_SIZE:
        raise ConfigurationError(f"{what} file {path} must hold exactly {KEY_SIZE} bytes")
    return raw


def _create_key_file(path: Path) -> None:
    """Write a new key to ``path`` unless one is already there.

    Instances sharing a key directory may start together: the key is written
    whole to a temporary file first, then hard-linked to its name, which
    fails if another instance got there first (its key is then the one read
    back). A reader never sees a half-written key.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    try:
        try:
            os.write(fd, new_key())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return  # another instance created it first
        _sync_directory(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
