"""Passwords (Argon2id) and bearer tokens (256 bits, stored only as hashes).

Every Argon2id hash or verification of the process goes through one
bounded gate (``HashingGate``): at most ``slots`` run at once (about the
number of cores; each takes 64 MiB), a few more may wait briefly, and any
other is refused at once with ``Busy`` (503, ``Retry-After``) instead of
queueing without bound on the shared worker threads. A flood of sign-ins
then costs a bounded amount of memory and CPU, and the rest of the server
keeps answering. A caller may name its source (sign-ins, link
passwords): one source (bucket: an IPv6 /64 is one, ``domain.addresses``)
then holds at most one slot and has at most one more caller waiting, so a
few sources cannot take the whole gate from everyone else.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets as _secrets
import threading
import time
from collections.abc import Iterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from coffre.domain.addresses import throttle_bucket
from coffre.errors import Busy

# RFC 9106 "low memory" profile: Argon2id, m=64 MiB, t=3, p=4, 128-bit salt;
# above the SEC-13 floor (m=19 MiB, t=2).
_hasher = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4, hash_len=32, salt_len=16)
# A fixed hash to verify against when the account is unknown, so both
# answers cost the same time (SEC-14).
_DUMMY_HASH = _hasher.hash(_secrets.token_urlsafe(16))

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256


#: Seconds a refused caller is told to wait (``Retry-After``).
BUSY_RETRY_SECONDS = 2
#: How long a caller may wait for a slot when the queue is not full.
WAIT_SECONDS = 5.0
#: Callers one source may have in the gate at once: one holding a slot,
#: one waiting for it.
PER_SOURCE = 2


class HashingGate:
    """At most ``slots`` Argon2id computations at once, ``waiting`` more
    queued (each for at most ``wait_seconds``), every other refused.

    A thread that holds a slot may hash again without taking another (a
    service takes the slot before its throttle bookkeeping, so that a
    refused request costs no database write either)."""

    def __init__(self, slots: int, waiting: int, wait_seconds: float = WAIT_SECONDS) -> None:
        self._lock = threading.Lock()
        self._admitted = 0  # holding or waiting for a slot
        #: Per source bucket: callers admitted, and the lock that lets one
        #: of them at a time hold a slot.
        self._sources: dict[str, tuple[int, threading.Lock]] = {}
        self._held = threading.local()
        self.wait_seconds = wait_seconds
        self.resize(slots, waiting)

    def resize(self, slots: int, waiting: int) -> None:
        """New sizes (slots taken before keep their old semaphore)."""
        with self._lock:
            self.slots = max(1, slots)
            self.waiting = max(0, waiting)
            self._semaphore = threading.BoundedSemaphore(self.slots)

    @contextlib.contextmanager
    def slot(self, source: str | None = None) -> Iterator[None]:
        """Hold a slot (``Busy`` when the gate, or ``source``'s share of
        it, is full)."""
        if getattr(self._held, "depth", 0):
            self._held.depth += 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        bucket = throttle_bucket(source)
        own: threading.Lock | None = None
        with self._lock:
            if self._admitted >= self.slots + self.waiting:
                raise _busy()
            if bucket is not None:
                count, own = self._sources.get(bucket, (0, threading.Lock()))
                if count >= PER_SOURCE:
                    raise _busy()
                self._sources[bucket] = (count + 1, own)
            self._admitted += 1
            semaphore = self._semaphore
        try:
            deadline = time.monotonic() + self.wait_seconds
            if own is not None and not own.acquire(timeout=self.wait_seconds):
                raise _busy()
            try:
                if not semaphore.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    raise _busy()
                self._held.depth = 1
                try:
                    yield
                finally:
                    self._held.depth = 0
                    semaphore.release()
            finally:
                if own is not None:
                    own.release()
        finally:
            with self._lock:
                self._admitted -= 1
                if bucket is not None:
                    count, lock = self._sources[bucket]
                    if count > 1:
                        self._sources[bucket] = (count - 1, lock)
                    else:
                        del self._sources[bucket]


def _busy() -> Busy:
    return Busy("the server is busy checking passwords: try again shortly",
                retry_after=BUSY_RETRY_SECONDS)


def default_slots() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 2)


_gate = HashingGate(default_slots(), 4 * default_slots())


def configure_hashing(slots: int | None, waiting: int | None = None) -> None:
    """Size the process's gate (``bootstrap``, from the settings)."""
    size = slots or default_slots()
    _gate.resize(size, 4 * size if waiting is None else waiting)


def hashing_slot(source: str | None = None) -> contextlib.AbstractContextManager[None]:
    """Hold one of the process's Argon2id slots (``Busy`` when none is
    free, or when ``source`` already holds one and has another waiting)."""
    return _gate.slot(source)


def hash_password(password: str) -> str:
    with hashing_slot():
        return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant-work check; ``stored_hash=None`` burns the same time and fails."""
    with hashing_slot():
        try:
            return (_hasher.verify(stored_hash or _DUMMY_HASH, password)
                    and stored_hash is not None)
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
