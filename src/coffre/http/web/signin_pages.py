"""Signing in from a browser (SEC-9, 14-17): the first-run setup link, an
invitation, the password then second-factor pages, signing out, and the
step-up page sensitive actions send people to.

Pages call the session service as the JSON API does (``api/auth.py``) and
set the session cookie with the API's own helper. Passwords and codes
travel in POST bodies only, never in a URL (SEC-27); the page to come back
to is always a local path (``guard.safe_next``).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from anyio import to_thread
from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse
from starlette.datastructures import FormData

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action
from coffre.errors import (
    AuthenticationRequired,
    Busy,
    CoffreError,
    Conflict,
    InvalidInput,
    TooManyAttempts,
    UnsupportedMediaType,
)
from coffre.http import deps
from coffre.http.api.auth import _set_session as set_session
from coffre.http.api.auth import clear_session
from coffre.http.web import guard
from coffre.http.web.forms import small_form
from coffre.http.web.i18n import _, ngettext
from coffre.http.web.password_pages import password_error
from coffre.http.web.templating import page_router, render
from coffre.services.factors import RECOVERY, TOTP
from coffre.services.organisations import InvitationPreview
from coffre.services.sessions import PENDING, Proof

router = page_router()
Ctx = Annotated[Context, Depends(deps.context)]
Public = Depends(deps.public("signing in: the page asks for a password or a one-time link"))
Reader = Annotated[Actor, Depends(guard.page(Action.ACCOUNT_READ))]
HOME = "/transfers"


def _page(request: Request, template: str, status: int = 200, actor: Actor | None = None,
          /, **context: Any) -> Response:
    return render(request, template, context, status=status, actor=actor)


def wait_message(exc: TooManyAttempts) -> str:
    """SEC-14: growing delays, then a lock; say how long, not why."""
    seconds = int(exc.details.get("retry_after") or 60)
    if isinstance(exc, Busy):  # the hashing gate is full: nothing was checked
        return ngettext("The server is busy: try again in %(num)d second.",
                        "The server is busy: try again in %(num)d seconds.", seconds)
    if seconds > 60:  # past the longest delay: the account is locked for a while
        minutes = -(-seconds // 60)
        return ngettext("Too many failed attempts: signing in is locked for %(num)d minute.",
                        "Too many failed attempts: signing in is locked for %(num)d minutes.",
                        minutes)
    return ngettext("Too many failed attempts: wait %(num)d second before trying again.",
                    "Too many failed attempts: wait %(num)d seconds before trying again.",
                    seconds)


# -- first run and invitations ------------------------------------------------------


def _setup_error(exc: CoffreError) -> str | tuple[str, str]:
    """The message, and the field it is about (shown next to it)."""
    field = str(exc.details.get("field"))
    if field == "password":
        return field, password_error(exc)
    message = {
        "email": _("This e-mail address is not valid."),
        "organisation": _("Give the organisation's name."),
    }.get(field)
    return (field, message) if message else _("The information entered is not valid.")


@router.get("/setup/{token}", dependencies=[Public])
def setup_page(token: str, request: Request) -> Response:
    """The one-time link ``coffre serve`` prints. Its token is a capability
    in the path: redacted from the access log, never sent as a referrer,
    never cached (SEC-27)."""
    deps.coffre(request).accounts.check_setup_token(token)
    return _page(request, "account/setup.html", token=token, error=None, email="",
                 organisation="", display_name="")


@router.post("/setup/{token}", dependencies=[Public])
async def setup_submit(token: str, request: Request, ctx: Ctx) -> Response:
    """Create the organisation and its administrator, sign them in, and go
    on to the second factor administrators must have (SEC-9)."""
    app = deps.coffre(request)
    form = await small_form(request)
    fields = {
        k: str(form.get(k, ""))[:256] for k in ("email", "password", "organisation", "display_name")
    }
    try:
        await to_thread.run_sync(
            lambda: app.accounts.complete_setup(
                token, fields["email"], fields["password"], fields["organisation"],
                fields["display_name"], ctx,
            )
        )
    except InvalidInput as exc:
        return _page(request, "account/setup.html", 400, token=token, error=_setup_error(exc),
                     **{**fields, "password": ""})
    sign_in = await to_thread.run_sync(
        lambda: app.sessions.login(fields["email"], fields["password"], ctx))
    response = RedirectResponse("/account/totp", status_code=303)
    set_session(response, sign_in)
    return response


@router.get("/invitation/{token}", dependencies=[Public])
def invitation_page(token: str, request: Request, ctx: Ctx) -> Response:
    """Join an organisation. Like the setup link, the token is a capability
    in the path of a mailed link: redacted from the access log, never sent
    as a referrer, never cached (SEC-27)."""
    invitation = deps.coffre(request).organisations.preview_invitation(token, ctx)
    return _invitation_form(request, token, invitation, None, "")


@router.post("/invitation/{token}", dependencies=[Public])
async def invitation_submit(token: str, request: Request, ctx: Ctx) -> Response:
    app = deps.coffre(request)
    form = await small_form(request)
    password = str(form.get("password", ""))[:256]
    display_name = str(form.get("display_name", ""))[:200]
    try:
        user = await to_thread.run_sync(
            lambda: app.organisations.accept(token, password, display_name, ctx)
        )
    except (InvalidInput, Conflict) as exc:
        invitation = await to_thread.run_sync(app.organisations.preview_invitation, token, ctx)
        error = (
            _("An account already exists for this e-mail address.")
            if isinstance(exc, Conflict)
            else _setup_error(exc)
        )
        return _invitation_form(request, token, invitation, error, display_name, 400)
    return _page(request, "account/invitation.html", done=True, email=user.email)


def _invitation_form(
    request: Request,
    token: str,
    invitation: InvitationPreview,
    error: str | tuple[str, str] | None,
    display_name: str,
    status: int = 200,
) -> Response:
    return _page(request, "account/invitation.html", status, done=False, token=token,
                 invitation=invitation, admin=invitation.role == "admin", error=error,
                 display_name=display_name)


# -- signing in -------------------------------------------------------------------


@router.get("/login", dependencies=[Public])
async def login_page(request: Request, next: str = HOME, enrolled: str = "") -> Response:
    after = guard.safe_next(next, HOME)
    if request.cookies.get(deps.SESSION_COOKIE) is not None:
        try:  # signed in already (with the second factor, if one is needed)
            actor = await deps.resolve(request)
            if actor.mfa or not actor.mfa_required:
                return RedirectResponse(after, status_code=303)
        except AuthenticationRequired:
            pass  # no session, or one still waiting for its second factor
    return _page(request, "account/login.html", next=after, email="", error=None,
                 enrolled=enrolled == "1")


@router.post("/login", dependencies=[Public])
async def login_submit(request: Request, ctx: Ctx) -> Response:
    app = deps.coffre(request)
    form = await small_form(request)
    email = str(form.get("email", ""))[:254]
    password = str(form.get("password", ""))[:256]
    after = guard.safe_next(str(form.get("next", "")), HOME)
    try:
        sign_in = await to_thread.run_sync(lambda: app.sessions.login(email, password, ctx))
    except (AuthenticationRequired, TooManyAttempts) as exc:
        # SEC-14: one message for an unknown account and a wrong password.
        error = (wait_message(exc) if isinstance(exc, TooManyAttempts)
                 else _("Wrong e-mail address or password."))
        return _page(request, "account/login.html", exc.status, next=after,
                     email=email, error=error, enrolled=False)
    if sign_in.stage == PENDING:
        to = f"/login/second-factor?next={quote(after, safe='/')}"
    else:  # no second factor yet: the guard sends those who need one to /account
        to = after
    response = RedirectResponse(to, status_code=303)
    set_session(response, sign_in)
    return response


@router.get("/login/second-factor", dependencies=[Public])
def second_factor_page(request: Request, next: str = HOME) -> Response:
    if request.cookies.get(deps.SESSION_COOKIE) is None:
        return RedirectResponse("/login", status_code=303)
    return _second_factor(request, guard.safe_next(next, HOME))


def _second_factor(request: Request, after: str, error: str | None = None,
                   status: int = 200, method: str = TOTP) -> Response:
    return _page(request, "account/second_factor.html", status, next=after, error=error,
                 method=method)


@router.post("/login/second-factor", dependencies=[Public])
async def second_factor_submit(request: Request, ctx: Ctx) -> Response:
    app = deps.coffre(request)
    form = await small_form(request)
    after = guard.safe_next(str(form.get("next", "")), HOME)
    method = RECOVERY if form.get("method") == RECOVERY else TOTP
    code = str(form.get("code", ""))[:64]
    cookie = request.cookies.get(deps.SESSION_COOKIE)
    if cookie is None:
        return _expired(request, after)
    try:
        sign_in = await to_thread.run_sync(
            lambda: app.sessions.second_factor(cookie, Proof(method, code), ctx))
    except AuthenticationRequired as exc:
        if exc.details.get("reason") == "session_expired":
            return _expired(request, after)
        error = (_("This code was not accepted. Codes from your app change every 30 seconds "
                   "and work once.") if method == TOTP
                 else _("This recovery code was not accepted (each one works once)."))
        return _second_factor(request, after, error, 401, method)
    except TooManyAttempts as exc:
        return _second_factor(request, after, wait_message(exc), 429, method)
    response = RedirectResponse(after, status_code=303)
    set_session(response, sign_in)
    return response


def _expired(request: Request, after: str) -> Response:
    return _page(request, "account/login.html", 401, next=after, email="", enrolled=False,
                 error=_("Your sign-in took too long: start again with your password."))


@router.post("/logout", dependencies=[Public])
async def logout(request: Request, ctx: Ctx) -> Response:
    """Ends the session on the server (SEC-16), then back to sign-in.
    A ``next`` field is kept for the sign-in that follows."""
    app = deps.coffre(request)
    cookie = request.cookies.get(deps.SESSION_COOKIE)
    if cookie is not None:
        await to_thread.run_sync(lambda: app.sessions.logout(cookie, ctx))
    try:
        form = await small_form(request)
    except UnsupportedMediaType:  # a bare POST (no field): nothing to come back to
        form = FormData()
    to = "/login"
    after = guard.safe_next(str(form.get("next", "")), "")
    if after:
        to += f"?next={quote(after, safe='/')}"
        if form.get("enrolled") == "1":
            to += "&enrolled=1"
    response = guard.redirect(request, to)
    clear_session(response)
    return response


# -- step-up (SEC-17) ---------------------------------------------------------------


@router.get("/reauth")
def reauth_page(actor: Reader, request: Request, next: str = "/account") -> Response:
    return _reauth(request, actor, guard.safe_next(next, "/account"))


def _reauth(request: Request, actor: Actor, after: str, error: str | None = None,
            status: int = 200) -> Response:
    return _page(request, "account/reauth.html", status, actor, next=after, error=error,
                 needs_factor=actor.mfa or actor.mfa_required)


@router.post("/reauth")
async def reauth_submit(actor: Reader, request: Request, ctx: Ctx) -> Response:
    """As ``POST /api/v1/auth/reauth``: the password, and a code when the
    account has a second factor (digits: TOTP; otherwise a recovery code)."""
    app = deps.coffre(request)
    form = await small_form(request)
    after = guard.safe_next(str(form.get("next", "")), "/account")
    password = str(form.get("password", ""))[:256]
    code = str(form.get("code", "")).strip()[:64]
    proof = Proof(TOTP if code.replace(" ", "").isdigit() else RECOVERY, code) if code else None
    try:
        await to_thread.run_sync(
            lambda: app.sessions.reauthenticate(actor, None, password, proof, ctx))
    except AuthenticationRequired as exc:
        if exc.details.get("reason") == "second_factor_required":
            error = _("Enter a code from your authenticator app (or a recovery code) as well.")
        else:
            error = _("Wrong password or code.")
        return _reauth(request, actor, after, error, 401)
    except TooManyAttempts as exc:
        return _reauth(request, actor, after, wait_message(exc), 429)
    return RedirectResponse(after, status_code=303)
