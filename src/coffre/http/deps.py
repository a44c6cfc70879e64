"""Request-scoped dependencies: the application, the actor, the context.

Every API route declares what it does: ``acting(Action.X)`` (an
authenticated actor allowed to attempt X; services then check the object)
or ``public("why")``. The authorisation matrix test fails for a route that
declares neither.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any
from urllib.parse import urlsplit

from anyio import to_thread
from fastapi import Request

from coffre.audit.trail import Context
from coffre.bootstrap import Coffre
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action, check_route
from coffre.errors import AuthenticationRequired, PermissionDenied
from coffre.http.middleware import MAX_BODY

SESSION_COOKIE = "__Host-coffre-session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def coffre(request: Request) -> Coffre:
    app: Coffre = request.app.state.coffre
    return app


def context(request: Request) -> Context:
    return Context(source=source(request), user_agent=request.headers.get("user-agent"))


def source(request: Request) -> str | None:
    """The client's address, the one place it is derived (audit, throttles,
    per-source limits): the peer's, or, when the peer is a declared
    trusted proxy (``COFFRE_TRUSTED_PROXIES``), the one its
    ``X-Forwarded-For`` names: the rightmost entry that is not itself a
    trusted proxy (entries further left are the client's own say); a port
    (``a.b.c.d:port``, ``[v6]:port``) is dropped. uvicorn's own proxy
    handling is off (``cli.server``): this is the only parser. Limits
    count the address by bucket (``domain.addresses``); audit events keep
    it exact."""
    peer = request.client.host if request.client else None
    trusted = _networks(coffre(request).settings.trusted_proxies)
    if peer is None or not trusted or not _within(peer, trusted):
        return peer
    hops = [hop.strip() for header in request.headers.getlist("x-forwarded-for")
            for hop in header.split(",")]
    found = peer
    for hop in reversed(hops):
        address = _hop_address(hop)
        if address is None:
            break  # a malformed entry: trust nothing to its left
        found = address
        if not _within(address, trusted):
            break
    return found


def _hop_address(hop: str) -> str | None:
    """An ``X-Forwarded-For`` entry's address: ``a.b.c.d``, ``a.b.c.d:port``,
    an IPv6 address, or ``[v6]`` / ``[v6]:port``; None if it is none of them."""
    if hop.startswith("["):
        inside, closed, rest = hop[1:].partition("]")
        if not closed or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        hop = inside
    elif hop.count(":") == 1:
        hop, _, port = hop.partition(":")
        if not port.isdigit():
            return None
    try:
        return str(ip_address(hop))
    except ValueError:
        return None


@functools.lru_cache(maxsize=8)
def _networks(setting: str) -> tuple[IPv4Network | IPv6Network, ...]:
    return tuple(ip_network(part.strip(), strict=False)
                 for part in setting.split(",") if part.strip())


def _within(address: str, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_origin(request: Request) -> None:
    """A cookie-carrying state change must come from our own pages (SEC-22)."""
    origin = request.headers.get("origin")
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in {"same-origin", "none"}:
        raise PermissionDenied("cross-origin request refused", reason="cross_origin")
    if origin == "null" and site == "same-origin":
        # Our pages send Referrer-Policy: no-referrer, so browsers post
        # their forms with "Origin: null"; Fetch Metadata still tells us
        # the request came from one of our own pages.
        return
    if origin is not None and _origin(origin) != _origin(coffre(request).settings.base_url):
        raise PermissionDenied("cross-origin request refused", reason="cross_origin")


def same_origin_forms(request: Request) -> None:
    """Pages' forms: a state change posted from another site is refused
    (their URLs carry a one-time token; this is defence in depth, SEC-22)."""
    if request.method not in SAFE_METHODS:
        check_origin(request)


def _small_form(request: Request) -> bool:
    """A page's form (URL-encoded, of a declared size within the body
    limit): the only body read for a CSRF token. It is read before the
    session is checked, so a multipart body (spooled to disk) or one of
    unbounded size (uploads are exempt from the body limit) never is."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    length = request.headers.get("content-length", "")
    return (kind == "application/x-www-form-urlencoded" and length.isascii()
            and length.isdigit() and int(length) <= MAX_BODY)


async def _csrf_token(request: Request) -> str | None:
    token = request.headers.get(CSRF_HEADER)
    if token is None and _small_form(request):
        value = (await request.form(max_files=0)).get("csrf_token")
        token = value if isinstance(value, str) else None
    return token


async def actor(request: Request) -> Actor:
    """The authenticated user: an API token (Bearer) or a browser session
    (cookie, plus the CSRF token on state-changing requests)."""
    return await resolve(request)


async def resolve(request: Request, *, touch: bool = True) -> Actor:
    """``actor``; ``touch=False`` does not count as activity (a stream
    checking that its session still holds must not keep it alive)."""
    app = coffre(request)
    token = bearer_token(request)
    if token is not None:
        return await to_thread.run_sync(app.sessions.token_actor, token)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        raise AuthenticationRequired("sign in, or send an API token (Authorization: Bearer ...)")
    unsafe = request.method not in SAFE_METHODS
    if unsafe:
        check_origin(request)
    csrf = await _csrf_token(request) if unsafe else None
    found: Actor = await to_thread.run_sync(app.sessions.actor, cookie, csrf, unsafe, touch)
    return found


def acting(action: Action) -> Callable[[Request], Awaitable[Actor]]:
    """The actor, checked for what ``action`` needs whatever the object
    (role, scope, second factor, recent sign-in)."""

    async def dependency(request: Request) -> Actor:
        found = await actor(request)
        check_route(found, action)
        return found

    dependency.coffre_action = action  # type: ignore[attr-defined]
    return dependency


def public(reason: str) -> Callable[[], None]:
    """Marks a route open without an account (``reason`` says why it is safe)."""

    def dependency() -> None:
        return None

    dependency.coffre_public = reason  # type: ignore[attr-defined]
    return dependency


def declared_policy(call: Any) -> str | None:
    """What a dependency declares (for the matrix test), if anything."""
    action = getattr(call, "coffre_action", None)
    if action is not None:
        return str(action)
    reason = getattr(call, "coffre_public", None)
    return f"public:{reason}" if reason is not None else None
