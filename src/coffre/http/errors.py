"""One JSON error shape for every endpoint::

    {"error": {"code": "not_found", "message": "...", "details": {...}}}

A client that wants a page (a browser navigating) gets the same
information as a French HTML page instead (``render_page``); a fault's
details are never shown to anyone.
"""

from __future__ import annotations

import logging
from typing import Any

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from coffre.errors import CoffreError
from coffre.http import deps

log = logging.getLogger(__name__)

#: ``Retry-After`` of a 503: a backend restarting is usually back by then.
RETRY_UNAVAILABLE_SECONDS = 5

_HTTP_CODES = {
    400: "invalid_input",
    401: "authentication_required",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    411: "length_required",
    412: "precondition_failed",
    413: "too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    429: "too_many_attempts",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def _extra_headers(request: Request) -> dict[str, str]:
    headers = {"Cache-Control": "no-store"}
    if request.url.path.startswith("/api/v1/uploads"):
        headers["Tus-Resumable"] = "1.0.0"
    return headers


async def _audit_denial(request: Request, status: int, code: str, hidden: bool) -> None:
    """Record access-control failures (never the path: it may hold a token).

    ``hidden``: someone else's object answered as a 404.
    """
    app = request.app.state.coffre
    action = ("access.denied" if hidden else "access.busy" if code == "busy"
              else app.denials.wanted(status, request.url.path))
    if action is None:
        return
    route = getattr(request.scope.get("route"), "path", None)
    ctx = deps.context(request)
    await to_thread.run_sync(
        lambda: app.denials.record(action, status, request.method, route, code, ctx)
    )


def install(app: FastAPI, render_page: Any) -> None:
    """Register the handlers. ``render_page(request, status, error)`` may
    return an HTML response for browser pages, or None."""

    @app.exception_handler(CoffreError)
    async def coffre_error(request: Request, exc: CoffreError) -> Response:
        status, code = exc.status, exc.code
        hidden = bool(exc.details.pop("access_denied", False))
        await _audit_denial(request, status, code, hidden)
        headers = _extra_headers(request)
        if exc.details.get("unsatisfiable"):
            # RFC 9110 15.5.17: a 416 names the current length.
            status, code = 416, _HTTP_CODES[416]
            if isinstance(exc.details.get("size"), int):
                headers["Content-Range"] = f"bytes */{exc.details['size']}"
        # 507: a quota or the disk is full, the client's to act on (and
        # restic retries it for a while): not a fault of ours to log.
        # 503 busy: a flood of sign-ins refused by the hashing gate, not a fault.
        fault = status >= 500 and status != 507 and code != "busy"
        if fault:
            log.error("%s: %s", type(exc).__name__, exc.message)
        page = render_page(request, status, code, "" if fault else exc.message,
                           {} if fault else exc.details)
        if page is not None:
            return page  # type: ignore[no-any-return]
        if status == 401 and request.url.path.startswith("/api/") and (
            exc.details.get("reason") is None
        ):
            headers["WWW-Authenticate"] = 'Bearer realm="coffre"'
        if status == 401 and request.url.path.startswith("/backup/"):
            headers["WWW-Authenticate"] = 'Basic realm="coffre-backup", charset="UTF-8"'
        if status == 429 and isinstance(exc.details.get("retry_after"), int):
            headers["Retry-After"] = str(exc.details["retry_after"])
        if status == 503:
            # A backend down (storage, database), or the server busy:
            # worth retrying, after a pause.
            wait = exc.details.get("retry_after")
            headers["Retry-After"] = str(wait if isinstance(wait, int)
                                         else RETRY_UNAVAILABLE_SECONDS)
        if status == 412 and request.url.path.startswith("/api/v1/uploads"):
            headers["Tus-Version"] = "1.0.0"
        details = {k: v for k, v in exc.details.items() if k != "unsatisfiable"}
        if fault:
            details = {}  # storage keys, errno...: for the log, not for clients
        elif status == 507:
            details = {k: v for k, v in details.items() if k in {"quota", "free"}}
        return error_response(status, code, exc.message, details, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"field": ".".join(str(p) for p in e.get("loc", ())[1:]), "problem": e.get("msg")}
            for e in exc.errors()
        ]
        details: dict[str, Any] = {"problems": problems}
        if len(problems) == 1:  # named like the services' InvalidInput(field=...)
            details["field"] = problems[0]["field"]
        page = render_page(request, 400, "invalid_input", "the request is malformed", {})
        if page is not None:
            return page  # type: ignore[no-any-return]
        return error_response(
            400,
            "invalid_input",
            "the request is malformed",
            details,
            _extra_headers(request),
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        page = render_page(request, exc.status_code, code, message, {})
        if page is not None:
            return page  # type: ignore[no-any-return]
        headers = {**_extra_headers(request), **(exc.headers or {})}
        return error_response(exc.status_code, code, message, None, headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.scope.get("route"))
        page = render_page(request, 500, "internal_error", "", {})
        if page is not None:
            return page  # type: ignore[no-any-return]
        return error_response(
            500, "internal_error", "an internal error occurred", None, _extra_headers(request)
        )
