"""Browser sign-in (password, then second factor), sessions, step-up,
and the user's own second factors.

The session travels in the ``__Host-coffre-session`` cookie (Secure,
HttpOnly, SameSite=Strict, path /, no Domain: SEC-15); state-changing
requests made with it carry ``X-CSRF-Token`` (or a ``csrf_token`` form
field) and, when the browser sends one, a same-origin ``Origin``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action
from coffre.errors import AuthenticationRequired
from coffre.http import deps
from coffre.http.api.schemas import Strict
from coffre.services.factors import RECOVERY, TOTP, WEBAUTHN, FactorInfo, TotpEnrolment
from coffre.services.sessions import PENDING_LIFETIME, Proof, SessionInfo, SignIn, csrf_for

router = APIRouter(prefix="/api/v1", tags=["authentication"])
Ctx = Annotated[Context, Depends(deps.context)]
Public = Depends(deps.public("signing in"))
SessionOwner = Annotated[Actor, Depends(deps.acting(Action.SESSION_MANAGE))]
AccountReader = Annotated[Actor, Depends(deps.acting(Action.ACCOUNT_READ))]
FactorReader = Annotated[Actor, Depends(deps.acting(Action.FACTOR_READ))]
FactorManager = Annotated[Actor, Depends(deps.acting(Action.FACTOR_MANAGE))]


class Credentials(Strict):
    email: str = Field(max_length=254)
    password: str = Field(max_length=256)


class Code(Strict):
    code: str = Field(min_length=1, max_length=64)


class Assertion(Strict):
    credential: dict[str, Any]


class Reauth(Strict):
    password: str = Field(max_length=256)
    method: str | None = Field(default=None, max_length=16)
    code: str | None = Field(default=None, max_length=64)
    credential: dict[str, Any] | None = None


class NewFactor(Strict):
    name: str = Field(default="", max_length=100)


class NewPasskey(Strict):
    name: str = Field(default="", max_length=100)
    credential: dict[str, Any]


class SignInOut(BaseModel):
    stage: str
    methods: list[str]
    enrolment_required: bool
    csrf_token: str
    expires_at: datetime


class SessionOut(BaseModel):
    user_id: str
    mfa: bool
    mfa_required: bool
    auth_time: datetime | None
    csrf_token: str


class FactorsOut(BaseModel):
    factors: list[FactorInfo]
    recovery_codes_left: int


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


class SteppedUp(BaseModel):
    until: datetime




def _set_session(response: Response, sign_in: SignIn) -> SignInOut:
    max_age = int(PENDING_LIFETIME.total_seconds()) if sign_in.stage != "full" else None
    response.set_cookie(deps.SESSION_COOKIE, sign_in.token, max_age=max_age, path="/",
                        secure=True, httponly=True, samesite="strict")
    return SignInOut(stage=sign_in.stage, methods=sign_in.methods,
                     enrolment_required=sign_in.enrolment_required, csrf_token=sign_in.csrf,
                     expires_at=sign_in.expires_at)


def clear_session(response: Response) -> None:
    """Remove the session cookie (its session ended on the server)."""
    response.delete_cookie(deps.SESSION_COOKIE, path="/", secure=True, httponly=True,
                           samesite="strict")


def _session_cookie(request: Request) -> str:
    cookie = request.cookies.get(deps.SESSION_COOKIE)
    if cookie is None:
        raise AuthenticationRequired("sign in with your password first", reason="session_expired")
    return cookie


# -- signing in -----------------------------------------------------------------


@router.post("/auth/login", dependencies=[Public], summary="Sign in with a password")
async def login(body: Credentials, request: Request, response: Response, ctx: Ctx) -> SignInOut:
    app = deps.coffre(request)
    sign_in = await to_thread.run_sync(lambda: app.sessions.login(body.email, body.password, ctx))
    return _set_session(response, sign_in)


async def _second_factor(request: Request, response: Response, proof: Proof,
                         ctx: Context) -> SignInOut:
    app = deps.coffre(request)
    cookie = _session_cookie(request)
    sign_in = await to_thread.run_sync(lambda: app.sessions.second_factor(cookie, proof, ctx))
    return _set_session(response, sign_in)


@router.post("/auth/login/totp", dependencies=[Public], summary="Second step: a TOTP code")
async def login_totp(body: Code, request: Request, response: Response, ctx: Ctx) -> SignInOut:
    return await _second_factor(request, response, Proof(TOTP, body.code), ctx)


@router.post("/auth/login/recovery", dependencies=[Public],
             summary="Second step: a single-use recovery code")
async def login_recovery(body: Code, request: Request, response: Response,
                         ctx: Ctx) -> SignInOut:
    return await _second_factor(request, response, Proof(RECOVERY, body.code), ctx)


@router.post("/auth/login/webauthn/options", dependencies=[Public],
             summary="Second step: passkey challenge")
async def login_webauthn_options(request: Request) -> dict[str, Any]:
    app = deps.coffre(request)
    cookie = _session_cookie(request)
    options: dict[str, Any] = await to_thread.run_sync(app.sessions.webauthn_options, cookie)
    return options


@router.post("/auth/login/webauthn", dependencies=[Public],
             summary="Second step: passkey assertion")
async def login_webauthn(body: Assertion, request: Request, response: Response,
                         ctx: Ctx) -> SignInOut:
    proof = Proof(WEBAUTHN, credential=body.credential)
    return await _second_factor(request, response, proof, ctx)


@router.post("/auth/logout", status_code=204, dependencies=[Public],
             summary="End this browser session")
async def logout(request: Request, ctx: Ctx) -> Response:
    deps.check_origin(request)
    cookie = request.cookies.get(deps.SESSION_COOKIE)
    if cookie is not None:
        app = deps.coffre(request)
        await to_thread.run_sync(lambda: app.sessions.logout(cookie, ctx))
    response = Response(status_code=204)
    clear_session(response)
    return response


@router.get("/auth/session", summary="The current browser session")
def session_info(actor: AccountReader, request: Request) -> SessionOut:
    cookie = request.cookies.get(deps.SESSION_COOKIE)
    return SessionOut(user_id=actor.user_id, mfa=actor.mfa, mfa_required=actor.mfa_required,
                      auth_time=actor.auth_time,
                      csrf_token=csrf_for(cookie) if cookie and actor.session_id else "")


# -- step-up (SEC-17) -------------------------------------------------------------


@router.post("/auth/reauth", summary="Confirm your identity again before a sensitive action")
async def reauth(body: Reauth, actor: AccountReader, request: Request, ctx: Ctx) -> SteppedUp:
    app = deps.coffre(request)
    proof = None
    if body.method or body.code or body.credential:
        method = body.method or (TOTP if (body.code or "").strip().isdigit() else RECOVERY)
        proof = Proof(method, body.code or "", body.credential)
    token = deps.bearer_token(request)
    until = await to_thread.run_sync(
        lambda: app.sessions.reauthenticate(actor, token, body.password, proof, ctx)
    )
    return SteppedUp(until=until)


@router.post("/auth/reauth/webauthn/options", summary="Passkey challenge for a step-up")
def reauth_webauthn_options(actor: AccountReader, request: Request) -> dict[str, Any]:
    return deps.coffre(request).sessions.step_up_options(actor)


# -- one's own second factors ---------------------------------------------------


@router.get("/account/factors", summary="Your second factors")
def factors(actor: FactorReader, request: Request) -> FactorsOut:
    rows, left = deps.coffre(request).factors.enrolled(actor)
    return FactorsOut(factors=rows, recovery_codes_left=left)


@router.post("/account/factors/totp", status_code=201, summary="Start a TOTP enrolment")
def begin_totp(body: NewFactor, actor: FactorManager, request: Request,
               ctx: Ctx) -> TotpEnrolment:
    return deps.coffre(request).factors.begin_totp(actor, body.name, ctx)


@router.post("/account/factors/totp/{factor_id}/confirm",
             summary="Confirm a TOTP enrolment with its first code")
def confirm_totp(factor_id: str, body: Code, actor: FactorManager, request: Request,
                 ctx: Ctx) -> RecoveryCodesOut:
    codes = deps.coffre(request).factors.confirm_totp(actor, factor_id, body.code, ctx)
    return RecoveryCodesOut(recovery_codes=codes)


@router.post("/account/factors/webauthn/options", summary="Start a passkey registration")
def begin_webauthn(actor: FactorManager, request: Request) -> dict[str, Any]:
    return deps.coffre(request).factors.begin_webauthn(actor)


@router.post("/account/factors/webauthn", status_code=201, summary="Register a passkey")
def finish_webauthn(body: NewPasskey, actor: FactorManager, request: Request,
                    ctx: Ctx) -> RecoveryCodesOut:
    codes = deps.coffre(request).factors.finish_webauthn(actor, body.credential, body.name, ctx)
    return RecoveryCodesOut(recovery_codes=codes)


@router.delete("/account/factors/{factor_id}", status_code=204, summary="Remove a factor")
def remove_factor(factor_id: str, actor: FactorManager, request: Request, ctx: Ctx) -> Response:
    deps.coffre(request).factors.remove(actor, factor_id, ctx)
    return Response(status_code=204)


@router.post("/account/recovery-codes", summary="New recovery codes (the old ones stop working)")
def recovery_codes(actor: FactorManager, request: Request, ctx: Ctx) -> RecoveryCodesOut:
    return RecoveryCodesOut(recovery_codes=deps.coffre(request).factors.regenerate_recovery(
        actor, ctx))


# -- one's own sessions ---------------------------------------------------------


@router.get("/account/sessions", summary="Your open browser sessions")
def sessions(actor: SessionOwner, request: Request) -> list[SessionInfo]:
    return deps.coffre(request).sessions.active(actor)


@router.delete("/account/sessions/{session_id}", status_code=204, summary="End a session")
def end_session(session_id: str, actor: SessionOwner, request: Request, ctx: Ctx) -> Response:
    deps.coffre(request).sessions.end(actor, session_id, ctx)
    return Response(status_code=204)
