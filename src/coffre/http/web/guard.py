"""Signed-in pages: who is reading, and where to send them when they may not.

Every page for account holders declares its action with ``page(Action.X)``,
as API routes do with ``deps.acting``: the browser session (cookie, and the
CSRF token on a state change) gives the actor and ``check_route`` checks
role, scope, second factor and step-up; services then check the object.
Instead of a JSON error, a reader who must sign in is sent to ``/login``,
one who must enrol a second factor to ``/account``, and one who must
confirm their identity to ``/reauth`` — each coming back afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from urllib.parse import quote, unquote, urlsplit

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from coffre.domain.accounts import Actor
from coffre.domain.policy import Action, check_route
from coffre.errors import AuthenticationRequired, PermissionDenied
from coffre.http import deps


class Redirect(Exception):
    """Leave this page for ``to`` (sign in, enrol a factor, confirm identity)."""

    def __init__(self, to: str) -> None:
        super().__init__(to)
        self.to = to


#: Not in a path to come back to: anything but printable ASCII, and "\\".
_UNSAFE_RAW = re.compile(r"[^\x21-\x7e]|\\")
#: Not in it once percent-decoded either: control characters and "\\".
_UNSAFE_DECODED = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")
#: Percent-decoding rounds tried before a value is refused as too nested.
_DECODE_ROUNDS = 3
#: Longest path accepted. ``local()`` in static/account.js applies the same rules.
NEXT_MAX_LENGTH = 2000


def safe_next(value: str | None, default: str = "/") -> str:
    """A local path to come back to: never another site.

    Browsers drop tabs and newlines from a URL and read ``\\`` as ``/``, so
    ``/\t\\evil.example`` (which ``urlsplit`` sees as a path) leads to
    ``//evil.example``: control characters, spaces and backslashes are refused
    anywhere, also percent-encoded (``%09``, ``%5C``, ``%2F%2F``), as is
    any value that is not a single-slash path (``//host``, ``javascript:``).
    """
    if not value or len(value) > NEXT_MAX_LENGTH or _UNSAFE_RAW.search(value):
        return default
    seen = value
    for _ in range(_DECODE_ROUNDS + 1):
        if not seen.startswith("/") or seen.startswith("//") or _UNSAFE_DECODED.search(seen):
            return default
        decoded = unquote(seen)
        if decoded == seen:
            break
        seen = decoded
    else:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def _back(request: Request) -> str:
    """Where the reader was: this page, or for a form or htmx request the
    page it was sent from."""
    if request.method in deps.SAFE_METHODS:
        return request.url.path
    current = request.headers.get("hx-current-url")
    if current:
        return safe_next(urlsplit(current).path)
    return "/"


def _to(page: str, request: Request) -> str:
    return f"{page}?next={quote(_back(request), safe='/')}"


async def signed_in(request: Request) -> Actor:
    """The browser session's actor, or a redirect to the sign-in page."""
    try:
        return await deps.resolve(request)
    except AuthenticationRequired as exc:
        raise Redirect(_to("/login", request)) from exc


def page(action: Action) -> Callable[[Request], Awaitable[Actor]]:
    """The signed-in actor, checked for what ``action`` needs."""

    async def dependency(request: Request) -> Actor:
        found = await signed_in(request)
        try:
            check_route(found, action)
        except PermissionDenied as exc:
            if exc.details.get("reason") == "second_factor_required":
                raise Redirect("/account") from exc
            raise
        except AuthenticationRequired as exc:
            if exc.details.get("reason") == "reauthentication_required":
                raise Redirect(_to("/reauth", request)) from exc
            raise
        return found

    dependency.coffre_action = action  # type: ignore[attr-defined]
    return dependency


def redirect(request: Request, to: str) -> Response:
    """A redirect a browser follows; for htmx, the whole page goes (not a
    fragment swapped into the current one)."""
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": to})
    return RedirectResponse(to, status_code=303)


def install(app: FastAPI) -> None:
    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Redirect)
        return redirect(request, exc.to)

    app.add_exception_handler(Redirect, handler)
