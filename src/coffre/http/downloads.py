"""HTTP responses for downloads: Range, ETag, Content-Disposition, nosniff.

The first piece of a body (a file's first batch of segments) is read
before the response starts (in the caller's worker thread), so that
storage that cannot be reached answers a 503 instead of a 200 cut short.

A client that stops reading without closing would hold a response (its
storage stream, its claim on a link's limit) for ever: uvicorn never
times out a stalled send. Every piece must go out within the send
timeout (``download_send_timeout_seconds``) or the response is aborted;
and a response holding a claim checks, after each piece it sent, that
the claim is still live before it sends the next one.
"""

from __future__ import annotations

import base64
import logging
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol
from urllib.parse import quote

from anyio import CancelScope, fail_after, move_on_after, to_thread
from anyio.lowlevel import checkpoint
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Send

from coffre.crypto.stream import Chunk
from coffre.domain.transfers import ByteRange, parse_range
from coffre.http import deps
from coffre.services.deliveries import ClaimedBody, ClaimLost
from coffre.services.links import FileDownload

log = logging.getLogger(__name__)

OCTET = "application/octet-stream"


def content_disposition(name: str) -> str:
    """RFC 6266 attachment with an ASCII fallback (accents dropped:
    "Résultats" gives "Resultats") and the UTF-8 name (RFC 5987)."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", name)
                    if not unicodedata.combining(c))
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in plain)
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


class Guard(Protocol):
    """What a response checks after each piece it sent (a claim on a
    link's limit): ``due()`` cheaply, then ``keep()`` (blocking) which
    raises ``ClaimLost`` if the claim lapsed."""

    def due(self) -> bool: ...

    def keep(self) -> None: ...


def send_timeout(request: Request) -> float:
    return float(deps.coffre(request).settings.download_send_timeout_seconds)


class Delivery(StreamingResponse):
    """Stream ``body`` from a worker thread; tell ``on_end`` how many bytes
    went out and whether all did (once, whatever ends the response).

    A piece counts as sent once its send completed. The server drops what
    is sent after the client left without saying so: before each piece,
    the event loop gets a turn to notice a disconnect and end the
    response, so pieces that never left are not counted. A send that
    makes no progress for ``timeout`` seconds aborts the response (the
    piece it was sending is not written yet: uvicorn waits for the
    client before writing). After each piece, ``guard`` (a claim) is
    checked when due; a lapsed claim ends the response too.
    """

    def __init__(self, body: Iterator[Chunk], on_end: Callable[[int, bool], None], *,
                 timeout: float, guard: Guard | None = None, status_code: int = 200,
                 headers: Mapping[str, str] | None = None, media_type: str = OCTET) -> None:
        super().__init__((), status_code=status_code, headers=headers, media_type=media_type)
        self._body = body
        self._on_end = on_end
        self._timeout = timeout
        self._guard = guard

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        sent = 0
        complete = False
        try:
            while True:
                # Several pieces per trip to the worker thread: fewer hops.
                pieces = await to_thread.run_sync(_take, self._body)
                if not pieces:
                    complete = True
                    break
                for piece in pieces:
                    await checkpoint()
                    with fail_after(self._timeout):
                        await send({"type": "http.response.body", "body": piece,
                                    "more_body": True})
                    sent += len(piece)
                    if self._guard is not None and self._guard.due():
                        await to_thread.run_sync(self._guard.keep)
        except TimeoutError:
            log.warning("download aborted: the client took nothing for %ss", self._timeout)
            return  # the response is left incomplete: the server closes the connection
        except ClaimLost:
            log.warning("download aborted: its claim on the link's limit lapsed")
            return
        finally:
            with CancelScope(shield=True):
                await to_thread.run_sync(_end, self._body, self._on_end, sent, complete)
        with move_on_after(self._timeout):  # a client stalled at the very end
            await send({"type": "http.response.body", "body": b"", "more_body": False})


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
    guard = dl.body if isinstance(dl.body, ClaimedBody) else None
    return Delivery(started(dl.body, dl.on_end), dl.on_end, timeout=send_timeout(request),
                    guard=guard, status_code=status, headers=headers)


def archive_response(
    request: Request, name: str, size: int, body: Iterator[Chunk],
    on_end: Callable[[int, bool], None], head: bool
) -> Response:
    """Blocking (reads the body's first piece): call from a worker thread."""
    headers = base_headers(name)
    headers["Content-Length"] = str(size)
    headers.pop("Accept-Ranges")
    if head:
        return Response(status_code=200, headers=headers, media_type="application/zip")
    # An archive's first pieces are ZIP headers, not storage: read into its data.
    guard = body if isinstance(body, ClaimedBody) else None
    return Delivery(started(body, on_end, first_bytes=4 << 20), on_end,
                    timeout=send_timeout(request), guard=guard, headers=headers,
                    media_type="application/zip")
