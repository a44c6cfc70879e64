"""HTTP responses for downloads: Range, ETag, Content-Disposition, nosniff."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from coffre.domain.transfers import ByteRange, parse_range
from coffre.services.links import FileDownload

OCTET = "application/octet-stream"


def content_disposition(name: str) -> str:
    """RFC 6266 attachment with an ASCII fallback and the UTF-8 name (RFC 5987)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def base_headers(name: str) -> dict[str, str]:
    return {
        "Content-Disposition": content_disposition(name),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Accept-Ranges": "bytes",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }


def requested_range(request: Request, size: int, etag: str) -> ByteRange | None:
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        return None
    return parse_range(request.headers.get("range"), size)


def file_response(request: Request, dl: FileDownload, head: bool) -> Response:
    size = dl.file.size
    headers = base_headers(dl.file.name)
    headers["ETag"] = dl.etag
    partial = not (dl.start == 0 and dl.end == size)
    if partial:
        headers["Content-Range"] = f"bytes {dl.start}-{dl.end - 1}/{size}"
    else:
        digest = base64.b64encode(bytes.fromhex(dl.file.sha256)).decode()
        headers["Repr-Digest"] = f"sha-256=:{digest}:"
    headers["Content-Length"] = str(dl.end - dl.start)
    status = 206 if partial else 200
    if head:
        return Response(status_code=status, headers=headers, media_type=OCTET)
    return StreamingResponse(dl.body, status_code=status, headers=headers, media_type=OCTET)


def archive_response(name: str, size: int, body: Iterator[bytes], head: bool) -> Response:
    headers = base_headers(name)
    headers["Content-Length"] = str(size)
    headers.pop("Accept-Ranges")
    if head:
        return Response(status_code=200, headers=headers, media_type="application/zip")
    return StreamingResponse(body, headers=headers, media_type="application/zip")
