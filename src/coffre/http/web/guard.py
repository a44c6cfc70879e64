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

from anyio import to_thread
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from starlette.routing import Match

from coffre.crypto import credentials
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action, check_route
from coffre.errors import AuthenticationRequired, PermissionDenied
from coffre.http import deps
from coffre.services.sessions import csrf_for


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
    if _has_page(request):  # a form posted to its own page (remove_factor...)
        return safe_next(request.url.path)
    return "/"


def _has_page(request: Request) -> bool:
    """A page answers GET at the path this form was posted to."""
    scope = {**request.scope, "method": "GET"}
    return any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes)


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
                await _keep_intent(request, found, action)
                raise Redirect(_to("/reauth", request)) from exc
            raise
        return found

    dependency.coffre_action = action  # type: ignore[attr-defined]
    return dependency


#: A random mark this browser keeps across sign-outs (not a credential: it
#: opens nothing). A second factor remembers the digest of the mark that
#: used its last code, to tell its owner typing it again from an attacker
#: replaying it (docs/design.md, threat model).
BROWSER_COOKIE = "__Host-coffre-browser"
BROWSER_MAX_AGE = 400 * 24 * 3600  # the longest browsers keep a cookie


def browser_digest(request: Request) -> str | None:
    """The digest of this browser's mark, if it has one of ours."""
    mark = request.cookies.get(BROWSER_COOKIE, "")
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}", mark):
        return None
    return credentials.hash_token(f"browser:{mark}")


def mark_browser(request: Request, response: Response) -> None:
    """Give this browser its mark if it has none (at sign-in and enrolment)."""
    if browser_digest(request) is None:
        response.set_cookie(BROWSER_COOKIE, credentials.new_token(),
                            max_age=BROWSER_MAX_AGE, path="/", secure=True, httponly=True,
                            samesite="strict")


#: Most fields a resumed form may carry, and longest value kept.
_INTENT_FIELDS = 10
_INTENT_VALUE = 2000


async def _keep_intent(request: Request, actor: Actor, action: Action) -> None:
    """A form sent while step-up was due is kept on the server (sealed, in
    this session, bound to its CSRF token: ``SessionService.keep_intent``),
    to be resumed once the reader has confirmed who they are (GitHub's
    sudo mode does the same). Forms carrying a secret are not kept."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if (request.method != "POST" or kind != "application/x-www-form-urlencoded"
            or actor.session_id is None):
        return
    form = await request.form(max_files=0, max_fields=_INTENT_FIELDS + 1)
    fields = [(k, str(v)[:_INTENT_VALUE]) for k, v in form.multi_items()
              if k != "csrf_token" and isinstance(v, str)]
    if len(fields) > _INTENT_FIELDS or any("password" in k for k, _v in fields):
        return
    cookie = request.cookies.get(deps.SESSION_COOKIE, "")
    intent = {"path": request.url.path, "fields": fields, "action": str(action),
              "csrf": credentials.hash_token(csrf_for(cookie))}
    app = deps.coffre(request)
    await to_thread.run_sync(app.sessions.keep_intent, actor, intent)


def resumable(request: Request, intent: dict[str, object] | None) -> bool:
    """``intent`` was kept by this session, for a local path."""
    if not intent or not isinstance(intent.get("path"), str):
        return False
    cookie = request.cookies.get(deps.SESSION_COOKIE, "")
    return (credentials.tokens_equal(str(intent.get("csrf", "")),
                                     credentials.hash_token(csrf_for(cookie)))
            and safe_next(str(intent["path"]), "") == intent["path"])


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
