"""Web pages: a recipient's link (one-time code, password, files) and the
development mailbox (error pages: ``error_pages``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from anyio import to_thread
from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse

from coffre.audit.trail import Context
from coffre.domain import times
from coffre.errors import (
    AuthenticationRequired,
    CoffreError,
    Conflict,
    NotFound,
    TooManyAttempts,
)
from coffre.http import deps
from coffre.http.api.links import access_of, set_access_cookie
from coffre.http.web.forms import small_form
from coffre.http.web.i18n import _, ngettext
from coffre.http.web.templating import page_router, render
from coffre.services.verification import Challenge

router = page_router(public="personal links: the token in the path is the capability, checked "
                     "by the service (and the dev mailbox: dev mode, loopback only)")
Ctx = Annotated[Context, Depends(deps.context)]


def code_context(request: Request, base: str, challenge: Challenge, *,
                 error: str | None = None, error_at: str | None = None) -> dict[str, Any]:
    """What the one-time code steps (``_code.html``) show, for recipients'
    and depositors' pages alike; ``base``: the link's path. ``error_at``:
    "code" (next to the field) or "send" (next to the button that sends)."""
    settings = deps.coffre(request).settings
    locked = challenge.locked_until is not None
    if locked and error is None:
        error = _locked_message(challenge.locked_until)
    return {
        "base": base, "challenge": challenge, "error": error, "error_at": error_at or "send",
        "locked": locked, "sent_time": sent_time(challenge.code_sent_at),
        "minutes": settings.recipient_code_minutes,
        "attempts": settings.recipient_code_attempts,
        "lock_minutes": settings.recipient_lock_minutes,
    }


def _code_page(
    request: Request, token: str, challenge: Challenge, *, error: str | None = None,
    error_at: str | None = None, status: int = 200,
) -> Response:
    """The one-time code's steps: get a code, then enter it."""
    return render(request, "recipient/code.html", {
        "token": token,
        **code_context(request, f"/t/{token}", challenge, error=error, error_at=error_at),
    }, status=status)


def _locked_message(until: datetime | None) -> str:
    if until is None:
        return _("Too many wrong codes were entered: this link is locked. "
                 "You can ask for a new code afterwards.")
    return _("Too many wrong codes were entered: this link is locked until %(time)s. "
             "You can ask for a new code afterwards.", time=times.hour(until))


def code_refusal(exc: CoffreError, locked_until: datetime | None = None) -> str:
    """A refused one-time code (send or check), in the reader's language,
    for recipients' and depositors' pages alike."""
    reason = exc.details.get("reason")
    wait = exc.details.get("retry_after")
    if reason == "wrong_code":
        left = int(exc.details.get("attempts_left") or 0)
        return ngettext("Wrong code. You have %(num)d attempt left.",
                        "Wrong code. You have %(num)d attempts left.", left)
    if reason == "locked":
        return _locked_message(locked_until)
    if reason == "resend_too_soon":
        return ngettext("A code has just been sent. Wait %(num)d second "
                        "before asking for another one.",
                        "A code has just been sent. Wait %(num)d seconds "
                        "before asking for another one.", int(wait or 1))
    if reason in {"too_many_codes", "too_many_codes_for_address"}:
        minutes = max(int(wait or 60) // 60, 1)
        return ngettext("Too many codes were asked for this link. "
                        "Try again in %(num)d minute.",
                        "Too many codes were asked for this link. "
                        "Try again in %(num)d minutes.", minutes)
    if reason == "too_many_depositors":
        return _("This link accepts no new depositors.")
    return _("This code has expired or is no longer valid: ask for a new code.")


def sent_time(moment: datetime | None) -> str:
    """The time a code was sent, as the code page says it ("at 14:02",
    in the deployment's zone)."""
    return times.hour(moment) if moment else ""


@router.post("/t/{token}/code")
async def code_send_page(token: str, request: Request, ctx: Ctx) -> Response:
    """Send (or send again) the code, then back to the link's page, which
    says where and when it went (POST/redirect/GET: a reload sends nothing).
    Opening the link never sends a code: mail scanners open links too."""
    app = deps.coffre(request)  # the form has no field: its body is not read
    try:
        await to_thread.run_sync(app.codes.send_code, token, ctx)
    except Conflict:  # this link needs no code
        return RedirectResponse(f"/t/{token}", status_code=303)
    except TooManyAttempts as exc:
        challenge = await to_thread.run_sync(app.codes.challenge_for, token)
        return _code_page(request, token, challenge, error_at="send",
                          error=code_refusal(exc, challenge.locked_until), status=429)
    return RedirectResponse(f"/t/{token}", status_code=303)


@router.post("/t/{token}/verify")
async def code_verify_page(token: str, request: Request, ctx: Ctx) -> Response:
    app = deps.coffre(request)
    form = await small_form(request)
    code = str(form.get("code", ""))[:32]
    try:
        access = await to_thread.run_sync(
            app.codes.verify, token, code, access_of(request), ctx
        )
    except Conflict:
        return RedirectResponse(f"/t/{token}", status_code=303)
    except (AuthenticationRequired, TooManyAttempts) as exc:
        challenge = await to_thread.run_sync(app.codes.challenge_for, token)
        return _code_page(request, token, challenge, error_at="code",
                          error=code_refusal(exc, challenge.locked_until),
                          status=429 if isinstance(exc, TooManyAttempts) else 401)
    response = RedirectResponse(f"/t/{token}", status_code=303)
    set_access_cookie(response, access)
    return response


@router.get("/t/{token}", name="link_page")
def link_page(token: str, request: Request, ctx: Ctx) -> Response:
    app = deps.coffre(request)
    try:
        link = app.links.view(token, access_of(request), ctx)
    except AuthenticationRequired as exc:
        if exc.details.get("reason") == "code_required":
            return _code_page(request, token, app.codes.challenge_for(token), status=401)
        sender = app.links.sender_email(token)
        return render(request, "recipient/unlock.html",
                      {"token": token, "sender": sender, "error": None})
    return render(request, "recipient/link.html", {"token": token, "link": link})


@router.post("/t/{token}/unlock")
async def unlock_page(token: str, request: Request, ctx: Ctx) -> Response:
    app = deps.coffre(request)
    form = await small_form(request)
    password = str(form.get("password", ""))[:256]
    try:
        access = await to_thread.run_sync(
            app.links.unlock, token, password, access_of(request), ctx
        )
    except AuthenticationRequired as exc:
        if exc.details.get("reason") == "code_required":
            return RedirectResponse(f"/t/{token}", status_code=303)
        sender = await to_thread.run_sync(app.links.sender_email, token)
        return render(request, "recipient/unlock.html",
                      {"token": token, "sender": sender, "error": _("Wrong password.")},
                      status=401)
    response = RedirectResponse(f"/t/{token}", status_code=303)
    set_access_cookie(response, access)
    return response


@router.get("/dev/mailbox")
def mailbox(request: Request) -> Response:
    """Development only: shown in dev mode, without SMTP, to loopback clients."""
    app = deps.coffre(request)
    client = request.client.host if request.client else ""
    if (
        app.dev_mailbox is None
        or app.settings.mode != "dev"
        or app.settings.public_url is not None  # behind a proxy every client looks local
        or client not in {"127.0.0.1", "::1"}
    ):
        raise NotFound("not found")
    return render(request, "mailbox.html", {"messages": app.dev_mailbox.messages()})
