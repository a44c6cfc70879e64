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
from fastapi.responses import Response, StreamingResponse
from starlette.requests import ClientDisconnect

from coffre.crypto import stream
from coffre.domain import backups as rules
from coffre.domain.transfers import parse_range
from coffre.errors import (
    AuthenticationRequired,
    InvalidInput,
    StorageError,
    StorageFull,
    TooLarge,
)
from coffre.http import deps
from coffre.http.downloads import OCTET, delivered, started
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
    return StreamingResponse(delivered(first, ignore), status_code=status, headers=headers)


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
    # default): the SHA-256 must match before anything is stored.
    size = int(declared) if declared is not None else None
    # Bodies held at once by this process are bounded (an authenticated
    # client opening many uploads gets 503s to retry, not the OOM killer).
    reserved = size if size is not None else limit
    _BUFFERS.reserve(reserved)
    try:
        buffer = _BUFFERS.take(size) if size is not None else bytearray()
    except BaseException:
        _BUFFERS.release(reserved)
        raise
    try:
        try:
            if size is None:
                async for chunk in request.stream():
                    buffer += chunk
                    _admit(len(buffer), limit, free)
                body = memoryview(buffer)
            else:
                body = await _receive(request, memoryview(buffer), size)
        except ClientDisconnect:
            # The client went away mid-body: nothing is stored (not a 500).
            raise InvalidInput("the body is shorter than its Content-Length") from None
        with body:
            await to_thread.run_sync(service.write, who, repository, kind, name, body, ctx)
    finally:
        _BUFFERS.release(reserved)
        if size is not None:
            _BUFFERS.give(buffer)
    return Response(status_code=200)


async def _receive(request: Request, view: memoryview, size: int) -> memoryview:
    """Read a body of ``size`` bytes (its Content-Length) into ``view``; the
    part of ``view`` it filled."""
    received = 0
    async for chunk in request.stream():
        end = received + len(chunk)
        if end > size:
            raise InvalidInput("the body is longer than its Content-Length")
        view[received:end] = chunk
        received = end
    if received != size:
        raise InvalidInput("the body is shorter than its Content-Length")
    return view[:size]


class _Buffers:
    """Receive buffers for object bodies, kept by this process for the next
    requests (used from the event loop only).

    restic sends packs of about 16 MiB, several at once. A fresh buffer per
    pack means fresh pages from the kernel for every one (a page fault per
    4 KiB, and a trip to the hypervisor on a VM that hands freed memory back
    to its host), and growing it chunk by chunk copies it again: the body
    loop was the server's busiest line. Buffers are sized in steps of
    ``STEP`` so packs of slightly different sizes share them; at most
    ``KEEP`` of at most ``LARGEST`` bytes are kept idle.
    """

    STEP = 8 << 20
    LARGEST = 32 << 20
    KEEP = 4
    #: Smaller bodies (indexes, snapshots, keys) get a buffer of their own.
    SMALL = 1 << 20

    #: Bytes of bodies this process holds at once, at most (restic sends
    #: five 16 MiB packs at a time per client).
    BUDGET = 640 << 20

    def __init__(self) -> None:
        self._idle: list[bytearray] = []
        self._held = 0

    def reserve(self, size: int) -> None:
        if self._held + size > self.BUDGET:
            raise StorageError("the server is receiving too many backup objects at once: "
                               "retry shortly", reason="busy")
        self._held += size

    def release(self, size: int) -> None:
        self._held -= size

    def take(self, size: int) -> bytearray:
        if size < self.SMALL:
            return bytearray(size)
        for i, buffer in enumerate(self._idle):
            if len(buffer) >= size:
                return self._idle.pop(i)
        return bytearray(-(-size // self.STEP) * self.STEP)

    def give(self, buffer: bytearray) -> None:
        if self.SMALL <= len(buffer) <= self.LARGEST and len(self._idle) < self.KEEP:
            self._idle.append(buffer)


_BUFFERS = _Buffers()


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
