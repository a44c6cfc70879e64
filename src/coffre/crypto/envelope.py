"""Envelope encryption: data keys wrapped by organisation KEKs, wrapped by
the root key.

Wrapped values carry a one-byte algorithm tag (SEC-25, crypto-agility) and a
random 96-bit nonce; the context (what the key is for, and for which
object) is bound as AES-GCM associated data, so a wrapped key moved to
another row does not unwrap. Subkeys for distinct uses are derived from a
KEK with HKDF and distinct labels ("one key, one use").
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from coffre.errors import IntegrityError

ALG_AES256_GCM = 0x01
NONCE_SIZE = 12
KEY_SIZE = 32

LABEL_WRAP_DATA_KEY = b"coffre/v1/wrap-data-key"
LABEL_METADATA = b"coffre/v1/metadata"
LABEL_UPLOAD_TAIL = b"coffre/v1/upload-tail"
LABEL_OUTBOX = b"coffre/v1/outbox"
LABEL_ONE_TIME_CODE = b"coffre/v1/one-time-code"
LABEL_DEPOSITOR_TOKEN = b"coffre/v1/depositor-token"


def new_key() -> bytes:
    """A fresh random 256-bit key from the OS CSPRNG."""
    return os.urandom(KEY_SIZE)


def derive_key(key: bytes, label: bytes) -> bytes:
    """A subkey of ``key`` for one use, named by ``label``."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=label).derive(key)


def seal(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    """AES-256-GCM with a random nonce: ``alg || nonce || ciphertext+tag``."""
    nonce = os.urandom(NONCE_SIZE)
    return bytes([ALG_AES256_GCM]) + nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def open_sealed(key: bytes, sealed: bytes, context: bytes) -> bytes:
    """Inverse of ``seal``; raises ``IntegrityError`` on any alteration."""
    if len(sealed) < 1 + NONCE_SIZE + 16 or sealed[0] != ALG_AES256_GCM:
        raise IntegrityError("unknown or truncated sealed value")
    nonce = sealed[1 : 1 + NONCE_SIZE]
    try:
        return AESGCM(key).decrypt(nonce, sealed[1 + NONCE_SIZE :], context)
    except InvalidTag:
        raise IntegrityError("sealed value failed authentication") from None


def wrap_data_key(kek: bytes, data_key: bytes, context: bytes) -> bytes:
    return seal(derive_key(kek, LABEL_WRAP_DATA_KEY), data_key, context)


def unwrap_data_key(kek: bytes, wrapped: bytes, context: bytes) -> bytes:
    return open_sealed(derive_key(kek, LABEL_WRAP_DATA_KEY), wrapped, context)
