"""HTTP responses for downloads: Range, ETag, Content-Disposition, nosniff.

The first piece of a body (a file's first batch of segments) is read
before the response starts (in the caller's worker thread), so that
storage that cannot be reached answers a 503 instead of a 200 cut short.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import quote

from anyio import CancelScope, to_thread
from anyio.lowlevel import checkpoint
from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from coffre.crypto.stream import Chunk
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


async def delivered(
    body: Iterator[Chunk], on_end: Callable[[int, bool], None]
) -> AsyncIterator[Chunk]:
    """Stream ``body`` from a worker thread; tell ``on_end`` how many bytes
    went out and whether all did. A chunk counts as sent only once the
    server asks for the next one (its send completed). The server drops
    what is sent after the client left without saying so: before each
    chunk, the event loop gets a turn to notice a disconnect and end the
    response, so chunks that never left are not counted as sent."""
    sent = 0
    complete = False
    try:
        while True:
            # Several pieces per trip to the worker thread: fewer hops.
            pieces = await to_thread.run_sync(_take, body)
            if not pieces:
                complete = True
                break
            for piece in pieces:
                await checkpoint()
                yield piece
                sent += len(piece)
    finally:
        with CancelScope(shield=True):
            await to_thread.run_sync(_end, body, on_end, sent, complete)


def _end(body: Iterator[Chunk], on_end: Callable[[int, bool], None], sent: int,
         complete: bool) -> None:
    try:
        close(body)  # now, not at garbage collection: it may hold a storage connection
    finally:
        on_end(sent, complete)


def close(body: Iterator[Chunk]) -> None:
    """Close ``body`` if it can be (a generator, a body wrapping one)."""
    closing = getattr(body, "close", None)
    if closing is not None:
        closing()


def started(body: Iterator[Chunk], on_end: Callable[[int, bool], None],
            first_bytes: int = 1) -> Iterator[Chunk]:
    """``body`` with its first ``first_bytes`` (at least one piece) already
    read (blocking: call from a worker thread). If that read fails,
    ``on_end`` is told nothing went out and the error propagates (a
    ``StorageError`` answers 503)."""
    try:
        first = _take(body, first_bytes)
    except BaseException:
        _end(body, on_end, 0, False)
        raise
    return _chained(first, body)


def _chained(first: list[Chunk], body: Iterator[Chunk]) -> Iterator[Chunk]:
    try:
        yield from first
        yield from body
    finally:
        close(body)


def _take(body: Iterator[Chunk], limit: int = 4 << 20) -> list[Chunk]:
    pieces: list[Chunk] = []
    size = 0
    for piece in body:
        pieces.append(piece)
        size += len(piece)
        if size >= limit:
            break
    return pieces


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
    return StreamingResponse(delivered(started(dl.body, dl.on_end), dl.on_end),
                             status_code=status, headers=headers, media_type=OCTET)


def archive_response(
    name: str, size: int, body: Iterator[Chunk], on_end: Callable[[int, bool], None], head: bool
) -> Response:
    """Blocking (reads the body's first piece): call from a worker thread."""
    headers = base_headers(name)
    headers["Content-Length"] = str(size)
    headers.pop("Accept-Ranges")
    if head:
        return Response(status_code=200, headers=headers, media_type="application/zip")
    # An archive's first pieces are ZIP headers, not storage: read into its data.
    return StreamingResponse(delivered(started(body, on_end, first_bytes=4 << 20), on_end),
                             headers=headers, media_type="application/zip")
