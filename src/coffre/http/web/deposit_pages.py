"""Depositors' pages: the personal link ``/d/{token}`` (one-time code,
then the request, your own files, the upload form and the hand-over) and
the open link ``/d/open/{token}`` (give your address first).

The deposit grant lives in the ``__Host-coffre-deposit`` cookie (Secure,
HttpOnly, SameSite=Strict); the page's script uploads over tus with it
(``X-Coffre-Deposit-Cookie: 1``, see ``coffre.http.tus``). Forms posted
from another site are refused (SEC-22). The page never puts the grant, a
file's content or name in the URL or in browser storage (SEC-27).
"""

from __future__ import annotations

from typing import Annotated, Any

from anyio import to_thread
from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse

from coffre.audit.trail import Context
from coffre.errors import AuthenticationRequired, CoffreError, Gone, TooManyAttempts
from coffre.http import deps
from coffre.http.tus import DEPOSIT_COOKIE
from coffre.http.web.forms import small_form
from coffre.http.web.i18n import _
from coffre.http.web.pages import code_context, code_refusal
from coffre.http.web.templating import page_router, render
from coffre.services.verification import ACCESS_LIFETIME

router = page_router(public="deposit links: the token in the path is the capability, checked "
                     "by the service")
Ctx = Annotated[Context, Depends(deps.context)]


def _grant(request: Request) -> str | None:
    return request.cookies.get(DEPOSIT_COOKIE)


def _page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    return render(request, name, context, status=status)


def _closed(request: Request, exc: Gone) -> Response:
    why = "closed" if exc.details.get("reason") == "closed" else "expired"
    return _page(request, "deposit/closed.html", 410, why=why)


def _code_page(request: Request, token: str, *, error: str | None = None,
               error_at: str | None = None, status: int = 401) -> Response:
    """The one-time code's steps (the recipients' ones): get a code, enter it."""
    challenge = deps.coffre(request).deposits.challenge_for(token)
    return _page(request, "deposit/code.html", status, token=token,
                 **code_context(request, f"/d/{token}", challenge, error=error,
                                error_at=error_at))


@router.get("/d/{token}")
def deposit_page(token: str, request: Request) -> Response:
    """The request, the depositor's files and the upload form; after a
    hand-over (``?done=1``), what was handed over, to whom."""
    deposits = deps.coffre(request).deposits
    try:
        view = deposits.view(token, _grant(request))
    except Gone as exc:
        return _closed(request, exc)
    except AuthenticationRequired:
        return _code_page(request, token)
    waiting = [u for u in view.uploads if not u.deposited]
    done = [u for u in view.uploads if u.deposited]
    last = max((u.deposited_at for u in done if u.deposited_at), default=None)
    handed = [u for u in done if u.deposited_at == last] if (
        last and request.query_params.get("done")) else []
    return _page(request, "deposit/upload.html", token=token, view=view,
                 waiting=waiting, ready=[u for u in waiting if u.completed],
                 done=done, handed=handed,
                 nothing=bool(request.query_params.get("nothing")))


@router.post("/d/{token}/code")
async def deposit_code(token: str, request: Request, ctx: Ctx) -> Response:
    """Send (or send again) the code, then back to the page, which says
    where and when it went; opening the link sends nothing."""
    deposits = deps.coffre(request).deposits
    try:
        await to_thread.run_sync(deposits.send_code, token, ctx)
    except Gone as exc:
        return _closed(request, exc)
    except TooManyAttempts as exc:
        refusal = code_refusal(exc)
        return await to_thread.run_sync(lambda: _code_page(
            request, token, error=refusal, error_at="send", status=429))
    return RedirectResponse(f"/d/{token}", status_code=303)


@router.post("/d/{token}/verify")
async def deposit_verify(token: str, request: Request, ctx: Ctx) -> Response:
    deposits = deps.coffre(request).deposits
    form = await small_form(request)
    code = str(form.get("code", ""))[:32]
    try:
        access = await to_thread.run_sync(deposits.verify, token, code, ctx)
    except Gone as exc:
        return _closed(request, exc)
    except (AuthenticationRequired, TooManyAttempts) as exc:
        status = 429 if isinstance(exc, TooManyAttempts) else 401
        refusal = code_refusal(exc)
        return await to_thread.run_sync(lambda: _code_page(
            request, token, error=refusal, error_at="code", status=status))
    response = RedirectResponse(f"/d/{token}", status_code=303)
    response.set_cookie(DEPOSIT_COOKIE, access, max_age=int(ACCESS_LIFETIME.total_seconds()),
                        path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.post("/d/{token}/deposit")
async def deposit_submit(token: str, request: Request, ctx: Ctx) -> Response:
    """Hand the depositor's completed files over to the requester; the
    page's script posts this by itself once every chosen file is sent.
    Then back to the page, which confirms what went to whom (POST/redirect/GET)."""
    deposits = deps.coffre(request).deposits
    try:
        await to_thread.run_sync(deposits.deposit, token, _grant(request), None, ctx)
    except Gone as exc:
        return _closed(request, exc)
    except AuthenticationRequired:
        return RedirectResponse(f"/d/{token}", status_code=303)
    except CoffreError:
        return RedirectResponse(f"/d/{token}?nothing=1", status_code=303)
    return RedirectResponse(f"/d/{token}?done=1", status_code=303)


@router.get("/d/open/{token}")
def open_page(token: str, request: Request) -> Response:
    return _page(request, "deposit/open.html", token=token, error=None)


@router.post("/d/open/{token}")
async def open_submit(token: str, request: Request, ctx: Ctx) -> Response:
    deposits = deps.coffre(request).deposits
    form = await small_form(request)
    email = str(form.get("email", ""))[:254]
    try:
        joined = await to_thread.run_sync(deposits.join, token, email, ctx)
    except Gone as exc:
        return _closed(request, exc)
    except CoffreError as exc:
        reason = exc.details.get("reason")
        if isinstance(exc, TooManyAttempts) and reason == "too_many_depositors":
            error = _("This link accepts no new depositors.")
        elif isinstance(exc, TooManyAttempts):
            error = _("Too many attempts from here or for this address: try again later.")
        else:
            error = _("Invalid address or unknown link.")
        return _page(request, "deposit/open.html", 400, token=token, error=error)
    return RedirectResponse(f"/d/{joined.token}", status_code=303)
