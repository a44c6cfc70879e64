"""Blob store adapters, chosen by one URL (``COFFRE_STORAGE_URL``).

* ``file:///abs/path`` -- ``LocalBlobStore``: files under a directory.
* ``memory://`` -- ``MemoryBlobStore``: a fresh, empty store in this process.
* ``s3://bucket[/root/]?endpoint=http://127.0.0.1:8333&region=eu-west-3`` --
  ``S3BlobStore``: objects in ``bucket`` (under ``root/`` if given), path-style
  requests to ``endpoint`` (AWS itself when omitted; ``addressing=virtual``
  for virtual-hosted buckets), signed for ``region`` (``us-east-1`` if
  omitted), which is recorded as the store's ``location`` (SEC-1). The
  credentials come from ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``
  (and ``AWS_SESSION_TOKEN``), never from the URL. Only s3 URLs take a query.

Every store passes the same conformance suite (``tests/contract``). This
package never decides what is stored: it holds the ciphertext callers give
it, and never repeats a storage URL in an error (it may carry credentials).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from coffre.errors import ConfigurationError
from coffre.ports import BlobStore
from coffre.storage.local import LocalBlobStore
from coffre.storage.memory import MemoryBlobStore

if TYPE_CHECKING:  # boto3 is imported only by a process that uses S3
    from coffre.storage.s3 import S3BlobStore

__all__ = ["LocalBlobStore", "MemoryBlobStore", "open_blob_store"]

_S3_OPTIONS = frozenset({"endpoint", "region", "addressing"})


def open_blob_store(url: str, environ: Mapping[str, str] | None = None) -> BlobStore:
    """Build the blob store named by ``url``; raise ``ConfigurationError`` if unusable.

    ``environ`` (``os.environ`` by default) supplies the S3 credentials.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError("storage URL is malformed") from exc
    scheme = parts.scheme.lower()
    if scheme == "s3" and not parts.fragment:
        return _open_s3(parts.netloc, parts.path, parts.query, os.environ if environ is None
                        else environ)
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
    # Not even the scheme is echoed: a URL pasted wrong may start with a secret.
    raise ConfigurationError(
        "unsupported storage URL scheme: use file:///abs/path, s3://bucket?... or memory://"
    )


def _open_s3(bucket: str, path: str, query: str, environ: Mapping[str, str]) -> S3BlobStore:
    if "@" in bucket or ":" in bucket:
        raise ConfigurationError(
            "s3 storage URL takes no credentials or port: use AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, and ?endpoint=..."
        )
    try:
        options = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ConfigurationError("s3 storage URL has a malformed query") from exc
    if set(options) - _S3_OPTIONS or any(len(values) != 1 for values in options.values()):
        raise ConfigurationError(
            "s3 storage URL takes endpoint, region and addressing, once each"
        )
    option = {name: values[0] for name, values in options.items()}
    endpoint = option.get("endpoint")
    if endpoint is not None:
        target = urlsplit(endpoint)
        if (
            target.scheme not in ("http", "https")
            or not target.hostname
            or target.username is not None
            or target.query
            or target.fragment
            or target.path not in ("", "/")
        ):
            raise ConfigurationError(
                "s3 endpoint must be http(s)://host[:port] without credentials or path"
            )
    addressing = option.get("addressing", "path")
    if addressing not in ("path", "virtual"):
        raise ConfigurationError("s3 addressing must be path or virtual")
    root = unquote(path).strip("/")
    access_key = environ.get("AWS_ACCESS_KEY_ID", "")
    secret_key = environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not access_key or not secret_key:
        raise ConfigurationError(
            "s3 storage needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment"
        )
    from coffre.storage.s3 import S3BlobStore

    return S3BlobStore(
        bucket,
        endpoint=endpoint,
        region=option.get("region") or "us-east-1",
        access_key=access_key,
        secret_key=secret_key,
        session_token=environ.get("AWS_SESSION_TOKEN") or None,
        root=root + "/" if root else "",
        path_style=addressing == "path",
    )
