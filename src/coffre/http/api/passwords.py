"""Passwords: a user's own change (after step-up), the forgotten-password
reset, and a reset forced by an administrator.

Thin: parse, call ``PasswordService`` (which authorises), answer. Reset
tokens travel in request bodies only, never in an API path; the mailed
link leads to a page (``/password/reset/...``), not here.
"""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action
from coffre.http import deps
from coffre.http.api.schemas import Strict

router = APIRouter(prefix="/api/v1", tags=["passwords"])
Ctx = Annotated[Context, Depends(deps.context)]
Public = Depends(deps.public(
    "forgotten password: answers alike for any address; the reset token is the capability"))
Changer = Annotated[Actor, Depends(deps.acting(Action.PASSWORD_CHANGE))]
Manager = Annotated[Actor, Depends(deps.acting(Action.MEMBER_MANAGE))]


class PasswordChange(Strict):
    current_password: str = Field(max_length=256)
    new_password: str = Field(max_length=256)


class ResetRequest(Strict):
    email: str = Field(max_length=254)


class ResetCompletion(Strict):
    token: str = Field(min_length=1, max_length=200)
    password: str = Field(max_length=256)


class ResetRequested(BaseModel):
    #: Always the same, whether the address has an account or not.
    status: str = "requested"


@router.post("/account/password", status_code=204,
             summary="Change your password (after step-up); ends your other sessions and tokens")
async def change_password(body: PasswordChange, actor: Changer, request: Request,
                          ctx: Ctx) -> Response:
    app = deps.coffre(request)
    token = deps.bearer_token(request)
    await to_thread.run_sync(lambda: app.passwords.change(
        actor, body.current_password, body.new_password, ctx, token=token))
    return Response(status_code=204)


@router.post("/auth/password-reset", status_code=202, dependencies=[Public],
             summary="Forgotten password: mail a reset link if the address has an account")
async def request_reset(body: ResetRequest, request: Request, ctx: Ctx) -> ResetRequested:
    app = deps.coffre(request)
    await to_thread.run_sync(lambda: app.passwords.request_reset(body.email, ctx))
    return ResetRequested()


@router.post("/auth/password-reset/complete", status_code=204, dependencies=[Public],
             summary="Set a new password with a mailed reset token (once)")
async def complete_reset(body: ResetCompletion, request: Request, ctx: Ctx) -> Response:
    app = deps.coffre(request)
    await to_thread.run_sync(lambda: app.passwords.complete_reset(body.token, body.password, ctx))
    return Response(status_code=204)


@router.post("/members/{member_id}/password-reset", status_code=202,
             summary="Force a member's password reset: ends their sessions and tokens, "
                     "mails them a link (administrators)")
async def force_reset(member_id: str, actor: Manager, request: Request, ctx: Ctx) -> Response:
    app = deps.coffre(request)
    await to_thread.run_sync(lambda: app.passwords.force_reset(actor, member_id, ctx))
    return Response(status_code=202)
