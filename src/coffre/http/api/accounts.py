"""Setup, login (API token for the CLI), tokens, current user."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Request, Response

from coffre.audit.trail import Context
from coffre.db.tables import User
from coffre.domain.accounts import Actor, parse_scopes
from coffre.domain.policy import Action
from coffre.http import deps
from coffre.http.api.schemas import (
    LoginRequest,
    Me,
    SetupRequest,
    TokenCreated,
    TokenOut,
    TokenRequest,
)

router = APIRouter(prefix="/api/v1", tags=["accounts"])
Reader = Annotated[Actor, Depends(deps.acting(Action.ACCOUNT_READ))]
TokenManager = Annotated[Actor, Depends(deps.acting(Action.TOKEN_MANAGE))]
SessionOwner = Annotated[Actor, Depends(deps.acting(Action.SESSION_MANAGE))]
Ctx = Annotated[Context, Depends(deps.context)]


@router.post("/setup", status_code=201, summary="Create the first administrator",
             dependencies=[Depends(deps.public("one-time setup token"))])
async def setup(body: SetupRequest, request: Request, ctx: Ctx) -> Me:
    app = deps.coffre(request)
    user = await to_thread.run_sync(
        lambda: app.accounts.complete_setup(
            body.token, body.email, body.password, body.organisation, body.display_name, ctx
        )
    )
    return _me(user, [])


@router.post("/auth/token", status_code=201, summary="Log in and get an API token",
             dependencies=[Depends(deps.public("signing in"))])
async def login(body: LoginRequest, request: Request, ctx: Ctx) -> TokenCreated:
    app = deps.coffre(request)
    scopes = parse_scopes(" ".join(body.scopes))
    token = await to_thread.run_sync(lambda: app.sessions.token_login(
        body.email, body.password, body.code, body.token_name, scopes, ctx,
        body.expires_in_days))
    return TokenCreated(token=token, scopes=sorted(scopes))


@router.get("/me")
def me(actor: Reader, request: Request) -> Me:
    return _me(deps.coffre(request).accounts.user(actor), sorted(actor.scopes), actor)


def _me(user: User, scopes: list[str], actor: Actor | None = None) -> Me:
    return Me(id=user.id, email=user.email, display_name=user.display_name, role=user.role,
              organisation_id=user.organisation_id, scopes=scopes,
              mfa=bool(actor and actor.mfa), mfa_required=bool(actor and actor.mfa_required))


@router.get("/tokens")
def list_tokens(actor: Reader, request: Request) -> list[TokenOut]:
    return [TokenOut(**t.__dict__) for t in deps.coffre(request).accounts.list_tokens(actor)]


@router.post("/tokens", status_code=201)
def create_token(
    body: TokenRequest, actor: TokenManager, request: Request, ctx: Ctx
) -> TokenCreated:
    scopes = parse_scopes(" ".join(body.scopes))
    token = deps.coffre(request).accounts.create_token(
        actor, body.name, scopes, ctx, body.expires_in_days
    )
    return TokenCreated(token=token, scopes=sorted(scopes))


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, actor: SessionOwner, request: Request, ctx: Ctx) -> Response:
    deps.coffre(request).accounts.revoke_token(actor, token_id, ctx)
    return Response(status_code=204)
