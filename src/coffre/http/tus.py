"""tus 1.0.0 resumable uploads at ``/api/v1/uploads/``.

Extensions: creation, creation-with-upload, creation-defer-length,
expiration, checksum (sha1, sha256), termination. The body is streamed to
``services.uploads`` in batches run in a worker thread, one batch in
flight while the next arrives; everything received is acknowledged, even
when the client goes away mid-body.
"""

from __future__ import annotations

import asyncio
import contextlib
from email.utils import format_datetime
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Request, Response
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from coffre.audit.trail import Context
from coffre.domain.policy import Action, check_route
from coffre.domain.requests import Depositor
from coffre.errors import (
    CoffreError,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    UnsupportedMediaType,
)
from coffre.http import deps
from coffre.services.uploads import (
    Checksum,
    Uploader,
    UploadInfo,
    UploadWriter,
    encode_metadata,
    parse_metadata,
)

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,creation-defer-length,expiration,checksum,termination"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
#: Plaintext handed to the encrypting thread at a time.
BATCH = 4 << 20

router = APIRouter(prefix="/api/v1/uploads", tags=["uploads"])


class MethodOverride:
    """Honour ``X-HTTP-Method-Override`` on POSTs to the tus endpoint."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].startswith("/api/v1/uploads")
        ):
            for name, value in scope["headers"]:
                if name == b"x-http-method-override":
                    method = value.decode("latin-1").strip().upper()
                    if method in {"PATCH", "DELETE", "HEAD"}:
                        scope = {**scope, "method": method}
                    break
        await self.app(scope, receive, send)


def _require_version(request: Request) -> None:
    if request.headers.get("tus-resumable") != TUS_VERSION:
        raise PreconditionFailed("unsupported tus version", supported=TUS_VERSION)


def _int_header(request: Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    # ASCII digits only: str.isdigit() also accepts "²" (latin-1 \xb2), which int() refuses.
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise InvalidInput(f"{name} must be a non-negative integer")
    return int(value)


def _headers(info: UploadInfo) -> dict[str, str]:
    headers = {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(info.offset),
        "Cache-Control": "no-store",
    }
    if not info.completed:
        headers["Upload-Expires"] = format_datetime(info.expires_at, usegmt=True)
    return headers


DEPOSIT_HEADER = "x-coffre-deposit"
#: Depositors' pages: the grant is in an HttpOnly cookie the script cannot
#: read; it asks for it to be used with this header (never implied).
DEPOSIT_COOKIE_HEADER = "x-coffre-deposit-cookie"
DEPOSIT_COOKIE = "__Host-coffre-deposit"


async def uploader(request: Request) -> Uploader:
    """A member (token or session), or a depositor of an upload request
    presenting their deposit grant in ``X-Coffre-Deposit``: the grant only
    reaches that depositor's own uploads, within the request's limits."""
    grant = request.headers.get(DEPOSIT_HEADER)
    if grant is None and request.headers.get(DEPOSIT_COOKIE_HEADER) == "1":
        deps.check_origin(request)  # a cookie-carrying request (SEC-22)
        grant = request.cookies.get(DEPOSIT_COOKIE, "")
    if grant is not None:
        depositor: Depositor = await to_thread.run_sync(
            deps.coffre(request).deposits.grant_principal, grant
        )
        return depositor
    found = await deps.actor(request)
    check_route(found, Action.UPLOAD_WRITE)
    return found


uploader.coffre_action = Action.UPLOAD_WRITE  # type: ignore[attr-defined]
Actor_ = Annotated[Uploader, Depends(uploader)]
Ctx = Annotated[Context, Depends(deps.context)]


_DISCOVERY = [Depends(deps.public("tus capability discovery, no data"))]


@router.options("/", include_in_schema=False, dependencies=_DISCOVERY)
@router.options("/{upload_id}", include_in_schema=False, dependencies=_DISCOVERY)
async def options(request: Request) -> Response:
    app = deps.coffre(request)
    return Response(
        status_code=204,
        headers={
            "Tus-Resumable": TUS_VERSION,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": EXTENSIONS,
            "Tus-Max-Size": str(app.settings.max_file_size),
            "Tus-Checksum-Algorithm": "sha1,sha256",
        },
    )


@router.post("/", status_code=201, summary="Create an upload (tus creation)")
async def create(request: Request, actor: Actor_, ctx: Ctx) -> Response:
    _require_version(request)
    app = deps.coffre(request)
    length = _int_header(request, "upload-length")
    defer = request.headers.get("upload-defer-length")
    if defer is not None and defer != "1":
        raise InvalidInput("Upload-Defer-Length must be 1")
    if (length is None) == (defer is None):
        raise InvalidInput("send either Upload-Length or Upload-Defer-Length: 1")
    metadata = parse_metadata(request.headers.get("upload-metadata"))
    if isinstance(actor, Depositor):
        info = await to_thread.run_sync(app.deposits.create_upload, actor, length, metadata, ctx)
    else:
        info = await to_thread.run_sync(app.uploads.create, actor, length, metadata, ctx)
    # From the configured public URL: a forged Host header must not steer
    # clients (and their tokens) elsewhere.
    location = f"{app.settings.base_url}/api/v1/uploads/{info.id}"
    has_body = (
        request.headers.get("content-type", "").split(";")[0].strip() == OFFSET_CONTENT_TYPE
        and request.headers.get("content-length", "1") != "0"
    )
    if has_body or length == 0:
        try:
            info = await _append(request, actor, info.id, 0)
        except CoffreError:
            # A rejected creation-with-upload leaves no orphan upload behind
            # (one that crossed a quota is already gone).
            with contextlib.suppress(NotFound):
                await asyncio.shield(
                    to_thread.run_sync(app.uploads.terminate, actor, info.id, ctx)
                )
            raise
    headers = _headers(info)
    headers["Location"] = location
    return Response(status_code=201, headers=headers)


@router.get("/", summary="Your uploads not yet in a transfer (to resume one)")
async def unfinished(request: Request, actor: Actor_) -> list[UploadInfo]:
    """Not a tus request: a page reloaded mid-upload (or a client that lost
    its state) finds the upload to resume by its metadata (name, size,
    modification time), instead of keeping upload URLs in browser storage
    (SEC-27)."""
    return await to_thread.run_sync(deps.coffre(request).uploads.unfinished, actor)


@router.head("/{upload_id}", name="tus_upload")
async def head(request: Request, upload_id: str, actor: Actor_) -> Response:
    _require_version(request)
    app = deps.coffre(request)
    info = await to_thread.run_sync(app.uploads.info, actor, upload_id)
    headers = _headers(info)
    if info.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(info.length)
    if info.metadata:
        headers["Upload-Metadata"] = encode_metadata(info.metadata)
    return Response(status_code=200, headers=headers)


@router.patch("/{upload_id}", status_code=204)
async def patch(request: Request, upload_id: str, actor: Actor_) -> Response:
    _require_version(request)
    if request.headers.get("content-type", "").split(";")[0].strip() != OFFSET_CONTENT_TYPE:
        raise UnsupportedMediaType(f"Content-Type must be {OFFSET_CONTENT_TYPE}")
    offset = _int_header(request, "upload-offset")
    if offset is None:
        raise InvalidInput("Upload-Offset is required")
    info = await _append(request, actor, upload_id, offset)
    return Response(status_code=204, headers=_headers(info))


@router.delete("/{upload_id}", status_code=204)
async def terminate(request: Request, upload_id: str, actor: Actor_, ctx: Ctx) -> Response:
    _require_version(request)
    app = deps.coffre(request)
    await to_thread.run_sync(app.uploads.terminate, actor, upload_id, ctx)
    return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})


async def _append(request: Request, actor: Uploader, upload_id: str,
                  offset: int) -> UploadInfo:
    app = deps.coffre(request)
    checksum_header = request.headers.get("upload-checksum")
    checksum = Checksum.parse(checksum_header) if checksum_header else None
    length = _int_header(request, "upload-length")
    ctx = deps.context(request)

    def begin() -> UploadWriter:
        return app.uploads.begin_append(actor, upload_id, offset, length=length,
                                        checksum=checksum, ctx=ctx)

    writer = await to_thread.run_sync(begin)
    try:
        complete = await _pump(request, writer)
    except BaseException:
        await asyncio.shield(to_thread.run_sync(writer.abort))
        raise
    return await asyncio.shield(to_thread.run_sync(lambda: writer.finish(complete_body=complete)))


async def _pump(request: Request, writer: UploadWriter) -> bool:
    """Feed the body to ``writer``; False if the client went away mid-body."""
    pending: list[bytes] = []
    size = 0
    inflight: asyncio.Future[None] | None = None
    complete = True
    try:
        async for chunk in request.stream():
            pending.append(chunk)
            size += len(chunk)
            if size >= BATCH:
                if inflight is not None:
                    await inflight
                batch, pending = pending, []
                size = 0
                inflight = asyncio.ensure_future(to_thread.run_sync(writer.feed, batch))
    except ClientDisconnect:
        complete = False
    finally:
        if inflight is not None:
            await asyncio.shield(inflight)
    if pending:
        await asyncio.shield(to_thread.run_sync(writer.feed, pending))
    return complete
