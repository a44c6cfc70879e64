"""restic's REST backend (API v1 and v2), under ``/backup/{repository}/``.

Spec: restic ``doc/REST_backend.rst``; behaviour of the reference
rest-server in append-only mode (shared/PROTOCOLS.md). Each request
carries a device's (or a maintenance) credential in HTTP basic auth; the
use cases, checks and audit live in ``services.backups``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from coffre.crypto import stream
from coffre.domain import backups as rules
from coffre.domain.transfers import parse_range
from coffre.errors import (
    AuthenticationRequired,
    CoffreError,
    InvalidInput,
    RequestTimeout,
    StorageError,
    StorageFull,
    TooLarge,
    TooManyAttempts,
)
from coffre.http import deps
from coffre.http.backup_bodies import Body, BodyBudget, Buffer, Buffers
from coffre.http.downloads import OCTET, Delivery, send_timeout, started
from coffre.services.backups import Access, BackupService

V1 = "application/vnd.x.restic.rest.v1"
V2 = "application/vnd.x.restic.rest.v2"
#: Reads up to this size are answered in one piece; larger ones stream.
WHOLE_READ = 4 << 20

router = APIRouter(
    prefix="/backup",
    include_in_schema=False,
    dependencies=[Depends(deps.public("restic REST backend: HTTP basic auth with a device "
                                      "or maintenance credential of this repository"))],
)


def _service(request: Request) -> BackupService:
    return deps.coffre(request).backups


async def access(request: Request) -> Access:
    """The credential in ``Authorization: Basic``; 401 otherwise."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        raise AuthenticationRequired("a backup credential is needed (HTTP basic auth)",
                                     reason="backup_credential")
    try:
        username, sep, secret = base64.b64decode(value.strip(), validate=True).decode().partition(
            ":")
    except (binascii.Error, UnicodeDecodeError):
        username, sep, secret = "", "", ""
    if not sep or not username or not secret or len(secret) > 200:
        raise AuthenticationRequired("malformed backup credential", reason="backup_credential")
    found: Access = await to_thread.run_sync(_service(request).authenticate, username, secret,
                                             deps.source(request))
    return found


Credential = Annotated[Access, Depends(access)]


@router.post("/{repository}/")
async def create_repository(repository: str, request: Request,
                            who: Credential) -> Response:
    if request.query_params.get("create") != "true":
        raise InvalidInput("POST on a repository needs ?create=true")
    await to_thread.run_sync(_service(request).initialise, who, repository,
                             deps.context(request))
    return Response(status_code=200)


@router.api_route("/{repository}/config", methods=["GET", "HEAD"])
async def get_config(repository: str, request: Request,
                     who: Credential) -> Response:
    return await _read(request, who, repository, rules.CONFIG, rules.CONFIG)


@router.post("/{repository}/config")
async def post_config(repository: str, request: Request,
                      who: Credential) -> Response:
    return await _write(request, who, repository, rules.CONFIG, rules.CONFIG)


@router.delete("/{repository}/config")
async def delete_config(repository: str, request: Request,
                        who: Credential) -> Response:
    return await _delete(request, who, repository, rules.CONFIG, rules.CONFIG)


@router.get("/{repository}/{kind}/")
async def list_objects(repository: str, kind: str, request: Request,
                       who: Credential) -> Response:
    found = await to_thread.run_sync(_service(request).listing, who, repository, kind,
                                     deps.context(request))
    if V2 in request.headers.get("accept", ""):
        body = [{"name": name, "size": size} for name, size in found]
        return Response(json.dumps(body), media_type=V2)
    return Response(json.dumps([name for name, _ in found]), media_type=V1)


@router.api_route("/{repository}/{kind}/{name}", methods=["GET", "HEAD"])
async def get_object(repository: str, kind: str, name: str, request: Request,
                     who: Credential) -> Response:
    return await _read(request, who, repository, kind, name)


@router.post("/{repository}/{kind}/{name}")
async def post_object(repository: str, kind: str, name: str, request: Request,
                      who: Credential) -> Response:
    return await _write(request, who, repository, kind, name)


@router.delete("/{repository}/{kind}/{name}")
async def delete_object(repository: str, kind: str, name: str, request: Request,
                        who: Credential) -> Response:
    return await _delete(request, who, repository, kind, name)


async def _read(request: Request, who: Access, repository: str, kind: str,
                name: str) -> Response:
    service = _service(request)
    ctx = deps.context(request)
    found = await to_thread.run_sync(service.open_object, who, repository, kind, name, ctx)
    size = found.size
    headers = {"Accept-Ranges": "bytes", "Content-Type": OCTET}
    rng = parse_range(request.headers.get("range"), size) if size else None
    start, end = (rng.start, rng.end) if rng else (0, size)
    status = 206 if rng and (start, end) != (0, size) else 200
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    if request.method == "HEAD":
        headers["Content-Length"] = str(end - start)
        return Response(status_code=status, headers=headers)
    body: Iterator[stream.Chunk] = service.read(who, found, start, end, ctx)
    if end - start <= WHOLE_READ:
        content = await to_thread.run_sync(b"".join, body)
        return Response(content, status_code=status, headers=headers)
    headers["Content-Length"] = str(end - start)

    def ignore(sent: int, complete: bool) -> None:
        return None

    # The first pieces are read (storage, decryption) in a worker thread,
    # never on the event loop.
    first = await to_thread.run_sync(started, body, ignore)
    return Delivery(first, ignore, timeout=send_timeout(request), status_code=status,
                    headers=headers)


async def _write(request: Request, who: Access, repository: str, kind: str,
                 name: str) -> Response:
    service = _service(request)
    ctx = deps.context(request)
    rules.check_object(kind, name)
    free = await to_thread.run_sync(service.free_space, who, repository, ctx)
    limit = rules.MAX_OBJECT_SIZE
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise InvalidInput("invalid Content-Length")
        _admit(int(declared), limit, free)
    # Held in memory (at most MAX_OBJECT_SIZE; restic's packs are 16 MiB by
    # default): the SHA-256 must match before anything is stored. The
    # memory is taken as bytes arrive, within this credential's count of
    # bodies and its organisation's share (``backup_bodies``).
    size = int(declared) if declared is not None else None
    try:
        body = _bodies(request).admit(who.credential_id, who.organisation_id)
    except CoffreError:
        service.note_dropped(who, ctx)
        raise
    buffer: Buffer | None = None
    try:
        buffer = _BUFFERS.take(size if size is not None else limit)
        if isinstance(buffer, bytearray):
            body.grow(len(buffer))  # a small body's buffer is all taken now
        received = await _receive(request, body, buffer, size, limit, free)
        with memoryview(buffer) as whole, whole[:received] as view:
            await to_thread.run_sync(service.write, who, repository, kind, name, view, ctx)
    except (RequestTimeout, StorageError, TooManyAttempts) as exc:
        if exc.details.get("reason") in DROPPED:
            service.note_dropped(who, ctx)
        raise
    finally:
        body.close()
        if buffer is not None:
            _BUFFERS.give(buffer)
    return Response(status_code=200)


#: Why a body is dropped before it is stored (each counted in the backup session).
DROPPED = {"busy", "body_idle", "too_many_bodies"}


async def _receive(request: Request, body: Body, buffer: Buffer, size: int | None,
                   limit: int, free: int | None) -> int:
    """Read the body into ``buffer`` (its Content-Length ``size``, or any
    length up to ``limit`` when chunked); how many bytes it filled."""
    small = isinstance(buffer, bytearray)
    received = 0
    try:
        async for chunk in body.chunks(request.stream()):
            end = received + len(chunk)
            if size is not None and end > size:
                raise InvalidInput("the body is longer than its Content-Length")
            if size is None:
                _admit(end, limit, free)
            if not small:
                body.grow(len(chunk))
            buffer[received:end] = chunk
            received = end
    except ClientDisconnect:
        # The client went away mid-body: nothing is stored (not a 500).
        raise InvalidInput("the body is shorter than its Content-Length") from None
    if size is not None and received != size:
        raise InvalidInput("the body is shorter than its Content-Length")
    return received


def _bodies(request: Request) -> BodyBudget:
    budget: BodyBudget = request.app.state.backup_bodies
    return budget


_BUFFERS = Buffers()


def _admit(size: int, limit: int, free: int | None) -> None:
    if size > limit:
        raise TooLarge("a backup object is at most 160 MiB", limit=limit)
    if free is not None and size > free:
        raise StorageFull("the backup quota is reached", free=free)


async def _delete(request: Request, who: Access, repository: str, kind: str,
                  name: str) -> Response:
    await to_thread.run_sync(_service(request).delete, who, repository, kind, name,
                             deps.context(request))
    return Response(status_code=200)
