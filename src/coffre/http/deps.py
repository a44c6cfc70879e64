"""Request-scoped dependencies: the application, the actor, the context."""

from __future__ import annotations

from fastapi import Request

from coffre.audit.trail import Context
from coffre.bootstrap import Coffre
from coffre.domain.accounts import Actor
from coffre.errors import AuthenticationRequired


def coffre(request: Request) -> Coffre:
    app: Coffre = request.app.state.coffre
    return app


def context(request: Request) -> Context:
    return Context(
        source=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def actor(request: Request) -> Actor:
    """The authenticated user (Bearer API token; browser sessions come next)."""
    token = bearer_token(request)
    if token is None:
        raise AuthenticationRequired("an API token is required (Authorization: Bearer ...)")
    return coffre(request).accounts.actor_for_token(token)
