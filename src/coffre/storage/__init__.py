"""Blob store adapters, chosen by one URL (``COFFRE_STORAGE_URL``).

* ``file:///abs/path`` -- ``LocalBlobStore``: files under a directory.
* ``memory://`` -- ``MemoryBlobStore``: a fresh, empty store in this process.

Every store passes the same conformance suite (``tests/contract``). This
package never decides what is stored: it holds the ciphertext callers give
it, and never repeats a storage URL in an error (it may carry credentials).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from coffre.errors import ConfigurationError
from coffre.ports import BlobStore
from coffre.storage.local import LocalBlobStore
from coffre.storage.memory import MemoryBlobStore

__all__ = ["LocalBlobStore", "MemoryBlobStore", "open_blob_store"]


def open_blob_store(url: str) -> BlobStore:
    """Build the blob store named by ``url``; raise ``ConfigurationError`` if unusable."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError("storage URL is malformed") from exc
    scheme = parts.scheme.lower()
    if parts.query or parts.fragment:
        raise ConfigurationError("storage URL takes no query or fragment")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationError(
                "file storage URL must be absolute, with three slashes: file:///srv/coffre"
            )
        path = unquote(parts.path)
        if not path.startswith("/") or "\x00" in path:
            raise ConfigurationError("file storage URL must name an absolute path")
        return LocalBlobStore(Path(path))
    if scheme == "memory":
        if parts.netloc or parts.path:
            raise ConfigurationError("memory storage URL takes no path: use memory://")
        return MemoryBlobStore()
    if scheme == "s3":
        raise ConfigurationError("s3:// storage is not implemented yet (it comes in a later issue)")
    # Not even the scheme is echoed: a URL pasted wrong may start with a secret.
    raise ConfigurationError("unsupported storage URL scheme: use file:///abs/path or memory://")
