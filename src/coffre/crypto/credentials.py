"""Passwords (Argon2id) and bearer tokens (256 bits, stored only as hashes)."""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# RFC 9106 "low memory" profile: Argon2id, m=64 MiB, t=3, p=4, 128-bit salt;
# above the SEC-13 floor (m=19 MiB, t=2).
_hasher = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4, hash_len=32, salt_len=16)
# A fixed hash to verify against when the account is unknown, so both
# answers cost the same time (SEC-14).
_DUMMY_HASH = _hasher.hash(_secrets.token_urlsafe(16))

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant-work check; ``stored_hash=None`` burns the same time and fails."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token(prefix: str = "") -> str:
    """A 256-bit URL-safe bearer token from the OS CSPRNG."""
    return prefix + _secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The only form in which a token is stored (SHA-256, hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
