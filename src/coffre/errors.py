"""The one error tree of Coffre.

Every error raised on purpose by Coffre derives from ``CoffreError``.
Library errors are translated into this tree at the adapter boundary, and
the HTTP layer maps each class to one status code and one JSON shape
(``{"error": {"code", "message", "details"}}``)::

    CoffreError
    ├── InvalidInput            400  malformed or out-of-range input
    │   └── UnsupportedMediaType 415
    ├── AuthenticationRequired  401  no or bad credentials
    ├── PermissionDenied        403  authenticated but not allowed
    ├── NotFound                404  unknown object (or one you may not see)
    ├── RequestTimeout          408  a request body stalled
    ├── Conflict                409  state does not allow it (offset mismatch...)
    ├── Gone                    410  expired, revoked, exhausted, purged
    ├── PreconditionFailed      412  protocol version mismatch
    ├── TooLarge                413  over a size limit
    │   └── QuotaExceeded       413  the bytes do not fit a storage quota
    ├── TooManyAttempts         429  throttled or locked out
    │   └── Busy                503  no capacity left for it now (retryable)
    ├── ChecksumMismatch        460  tus checksum extension
    ├── StorageFull             507  quota or disk exhausted
    ├── IntegrityError          500  ciphertext or chain failed authentication
    ├── StorageError            503  the blob store failed (retryable)
    ├── DatabaseUnavailable     503  the database cannot be reached (retryable)
    └── ConfigurationError      start-up refused (never reaches a client)
"""

from __future__ import annotations

from typing import Any, ClassVar


class CoffreError(Exception):
    """Base class. ``code`` is a stable machine-readable identifier."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(CoffreError):
    status = 400
    code = "invalid_input"


class UnsupportedMediaType(InvalidInput):
    status = 415
    code = "unsupported_media_type"


class AuthenticationRequired(CoffreError):
    status = 401
    code = "authentication_required"


class PermissionDenied(CoffreError):
    status = 403
    code = "permission_denied"


class NotFound(CoffreError):
    status = 404
    code = "not_found"


class RequestTimeout(CoffreError):
    status = 408
    code = "request_timeout"


class Conflict(CoffreError):
    status = 409
    code = "conflict"


class Gone(CoffreError):
    status = 410
    code = "gone"


class PreconditionFailed(CoffreError):
    status = 412
    code = "precondition_failed"


class TooLarge(CoffreError):
    status = 413
    code = "too_large"


class QuotaExceeded(TooLarge):
    """``details["quota"]``: scope (user or organisation), used, limit, needed."""

    code = "quota_exceeded"


class TooManyAttempts(CoffreError):
    status = 429
    code = "too_many_attempts"


class Busy(TooManyAttempts):
    """Too many costly requests at once (password hashing): refused at
    once rather than queued, with ``details["retry_after"]`` seconds."""

    status = 503
    code = "busy"


class ChecksumMismatch(CoffreError):
    status = 460
    code = "checksum_mismatch"


class StorageFull(CoffreError):
    status = 507
    code = "storage_full"


class IntegrityError(CoffreError):
    """Authenticated decryption or a hash check failed: data was altered."""

    status = 500
    code = "integrity_error"


class StorageError(CoffreError):
    status = 503
    code = "storage_unavailable"


class DatabaseUnavailable(CoffreError):
    """The database is down or unreachable (PostgreSQL restarting, network
    cut, SQLite locked past its timeout): retry later."""

    status = 503
    code = "database_unavailable"


class ConfigurationError(CoffreError):
    code = "configuration_error"
