"""ASGI middleware: security headers and an access log that never records
a token (personal links and setup links carry capabilities in the path)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time

from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("coffre.access")

#: Paths whose next segment is a capability token (personal links, setup,
#: invitations, deposit links): never written to the log.
_SECRET_PATH = re.compile(
    r"^(/t/|/setup/|/invitation/|/password/reset/|/api/v1/links/|/d/open/|/d/|/api/v1/deposit/open/"
    r"|/api/v1/deposit/)[^/]+"
)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


#: Request bodies other than tus uploads: JSON and forms are small.
MAX_BODY = 1 << 20


class BodyLimit:
    """Refuse oversized request bodies before anything reads them into memory
    (everything but the tus endpoint, whose bodies stream to storage)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # tus uploads stream to storage; restic's objects have their own
        # limit (``domain.backups.MAX_OBJECT_SIZE``).
        if scope["type"] != "http" or scope["path"].startswith(("/api/v1/uploads", "/backup/")):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _send_json(send, 413, "too_large", "the request body is too large")
            return
        seen = 0
        refused = False

        async def limited() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Answer now; the app sees the client go away.
                    refused = True
                    await _send_json(send, 413, "too_large", "the request body is too large")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        with contextlib.suppress(ClientDisconnect):
            await self.app(scope, limited, guarded_send)


async def _send_json(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def host_name(header: str) -> str:
    """The name in a ``Host`` header: lower case, without the port, an IPv6
    address without its brackets, without a final dot."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


class TrustedHosts:
    """Answer only to the host names Coffre is configured for (issue 15,
    finding 14): a page of another site whose name an attacker points at
    this server's address (DNS rebinding) sends its own name in ``Host``
    and gets a 400, never a page or the dev mailbox. Starlette's
    ``TrustedHostMiddleware`` does the same in plain text; this answers
    with the one JSON error shape and reads IPv6 ``Host`` values. A request
    without ``Host`` (HTTP/1.0) cannot come from a browser and passes."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = frozenset(host_name(name) for name in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            header = dict(scope["headers"]).get(b"host")
            if header is not None and host_name(header.decode("latin-1")) not in self.allowed:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await _send_json(send, 400, "invalid_host", "this host name is not served here")
                return
        await self.app(scope, receive, send)


def redact_path(path: str) -> str:
    return _SECRET_PATH.sub(lambda m: m.group(1) + "[redacted]", path)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        sent = 0
        is_static = scope["path"].startswith("/static/")

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Content-Security-Policy", CSP)
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                if not is_static:
                    headers.setdefault("Cache-Control", "no-store")
                if self.hsts:
                    headers.setdefault(
                        "Strict-Transport-Security", "max-age=63072000; includeSubDomains"
                    )
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            client = scope.get("client")
            access_log.info(
                '%s "%s %s" %d %d %.3fs',
                client[0] if client else "-",
                scope["method"],
                redact_path(scope["path"]),
                status,
                sent,
                time.perf_counter() - started,
            )
