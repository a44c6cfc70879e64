"""Password pages: the forgotten-password form, the page a mailed reset
link opens, a user's own change (``/account/password``, after step-up)
and the administrator's forced reset of a member.

Each calls ``PasswordService`` as the JSON API does (``api/passwords.py``).
The reset token is a capability in the path of a mailed link: redacted
from the access log, never sent as a referrer, never cached (SEC-27). A
reset never signs anyone in: the next sign-in asks for the second factor
as usual.
"""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import Depends, Query, Request, Response
from fastapi.responses import RedirectResponse

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action
from coffre.errors import (
    AuthenticationRequired,
    CoffreError,
    Conflict,
    InvalidInput,
    TooManyAttempts,
)
from coffre.http import deps
from coffre.http.api.auth import clear_session
from coffre.http.web import guard
from coffre.http.web.forms import small_form
from coffre.http.web.i18n import _, ngettext
from coffre.http.web.templating import page_router, render

public_router = page_router(public="forgotten password: the same answer for any address; "
                            "a reset page's token in the path is the capability")
router = page_router()
Ctx = Annotated[Context, Depends(deps.context)]
Changer = Annotated[Actor, Depends(guard.page(Action.PASSWORD_CHANGE))]
Manager = Annotated[Actor, Depends(guard.page(Action.MEMBER_MANAGE))]


def password_error(exc: CoffreError) -> str:
    """What is wrong with a new password, for people (SEC-12)."""
    if exc.details.get("reason") == "breached_password":
        return _("This password appears in lists of passwords leaked in data breaches: "
                 "choose another one.")
    return _("The password must be 12 to 256 characters long and varied.")


def _wait(exc: TooManyAttempts) -> str:
    seconds = int(exc.details.get("retry_after") or 60)
    minutes = -(-seconds // 60)
    return ngettext("Too many requests: try again in %(num)d minute.",
                    "Too many requests: try again in %(num)d minutes.", minutes)


def _minutes(request: Request) -> int:
    return deps.coffre(request).settings.password_reset_minutes


# -- forgotten password ------------------------------------------------------------


@public_router.get("/password/forgotten")
def forgotten_page(request: Request,
                   sent: Annotated[str, Query(max_length=1)] = "") -> Response:
    return render(request, "account/forgotten.html", {
        "sent": sent == "1", "error": None, "email": "", "minutes": _minutes(request)})


@public_router.post("/password/forgotten")
async def forgotten_submit(request: Request, ctx: Ctx) -> Response:
    """The same answer whether the address has an account or not."""
    app = deps.coffre(request)
    form = await small_form(request)
    email = str(form.get("email", ""))[:254]
    try:
        await to_thread.run_sync(lambda: app.passwords.request_reset(email, ctx))
    except (InvalidInput, TooManyAttempts) as exc:
        error = (_wait(exc) if isinstance(exc, TooManyAttempts)
                 else ("email", _("Enter a valid e-mail address.")))
        return render(request, "account/forgotten.html", {
            "sent": False, "error": error, "email": email, "minutes": _minutes(request)},
            status=exc.status)
    return guard.redirect(request, "/password/forgotten?sent=1")


# -- the page a reset link opens ---------------------------------------------------------


@public_router.get("/password/reset/{token}")
def reset_page(token: str, request: Request, ctx: Ctx) -> Response:
    preview = deps.coffre(request).passwords.preview_reset(token, ctx)
    return render(request, "account/reset.html", {
        "token": token, "email": preview.email, "error": None, "done": False})


@public_router.post("/password/reset/{token}")
async def reset_submit(token: str, request: Request, ctx: Ctx) -> Response:
    app = deps.coffre(request)
    form = await small_form(request)
    password = str(form.get("password", ""))[:256]
    again = str(form.get("password_again", ""))[:256]
    preview = await to_thread.run_sync(app.passwords.preview_reset, token, ctx)
    error: tuple[str, str]
    if password != again:
        error = ("password_again", _("The two passwords differ: type the same one twice."))
    else:
        try:
            await to_thread.run_sync(
                lambda: app.passwords.complete_reset(token, password, ctx))
        except InvalidInput as exc:
            error = ("password", password_error(exc))
        else:
            # Any session this browser had ended with the reset.
            response = render(request, "account/reset.html", {
                "token": "", "email": preview.email, "error": None, "done": True})
            clear_session(response)
            return response
    return render(request, "account/reset.html", {
        "token": token, "email": preview.email, "error": error, "done": False}, status=400)


# -- a signed-in user's own change ----------------------------------------------------


@router.get("/account/password")
def change_page(actor: Changer, request: Request) -> Response:
    return render(request, "account/password.html", {"error": None}, actor=actor)


@router.post("/account/password")
async def change_submit(actor: Changer, request: Request, ctx: Ctx) -> Response:
    app = deps.coffre(request)
    form = await small_form(request)
    current = str(form.get("current_password", ""))[:256]
    password = str(form.get("password", ""))[:256]
    again = str(form.get("password_again", ""))[:256]
    error: str | tuple[str, str]
    status = 400
    if password != again:
        error = ("password_again", _("The two passwords differ: type the same one twice."))
    else:
        try:
            await to_thread.run_sync(lambda: app.passwords.change(actor, current, password, ctx))
        except InvalidInput as exc:
            error = ("password", password_error(exc))
        except AuthenticationRequired as exc:
            error, status = (("current_password", _("Your current password is not the right one.")),
                             exc.status)
        except TooManyAttempts as exc:
            error, status = _wait(exc), exc.status
        else:
            return RedirectResponse("/account?done=password", status_code=303)
    return render(request, "account/password.html", {"error": error}, status=status,
                  actor=actor)


# -- an administrator's forced reset -----------------------------------------------------


@router.post("/admin/members/{member_id}/password-reset")
def force_reset(member_id: str, request: Request, actor: Manager, ctx: Ctx) -> Response:
    try:
        deps.coffre(request).passwords.force_reset(actor, member_id, ctx)
    except Conflict:
        return guard.redirect(request, "/admin?done=reset_refused")
    return guard.redirect(request, "/admin?done=password_reset")
