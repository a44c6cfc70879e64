"""The account security page (``/account``): second factors (TOTP with a
QR code, passkeys through ``static/account.js``), recovery codes, open
sessions and API tokens.

Each action calls the service its JSON API handler calls, with the same
``Action`` declared through ``guard.page``: changing factors, new recovery
codes and new tokens need a recent sign-in (SEC-17), so the guard sends
the reader to ``/reauth`` first. Those actions start from a page of their
own (a GET), so that the step-up comes back to it. Recovery codes and new
tokens are shown once, in the answer to the POST that made them: never in
a URL, never kept in the browser (SEC-27).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from anyio import to_thread
from fastapi import Depends, Query, Request, Response
from fastapi.responses import RedirectResponse

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor, Role, Scope, parse_scopes
from coffre.domain.policy import Action
from coffre.errors import Conflict, InvalidInput, NotFound
from coffre.http import deps
from coffre.http.api.auth import clear_session
from coffre.http.web import flash, guard
from coffre.http.web.forms import small_form
from coffre.http.web.i18n import N_, _, pick
from coffre.http.web.templating import page_router, render
from coffre.services.factors import FactorInfo

router = page_router()
Ctx = Annotated[Context, Depends(deps.context)]
FactorReader = Annotated[Actor, Depends(guard.page(Action.FACTOR_READ))]
FactorManager = Annotated[Actor, Depends(guard.page(Action.FACTOR_MANAGE))]
TokenManager = Annotated[Actor, Depends(guard.page(Action.TOKEN_MANAGE))]
SessionOwner = Annotated[Actor, Depends(guard.page(Action.SESSION_MANAGE))]

SCOPE_LABELS = {
    Scope.TRANSFERS_READ: N_("Read transfers and files"),
    Scope.TRANSFERS_WRITE: N_("Send files and manage transfers"),
    Scope.ADMIN: N_("Administer the organisation"),
}
TOKEN_DAYS = (30, 90, 365)
_BROWSERS = (("Edg/", "Edge"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
             ("Chromium/", "Chromium"), ("Safari/", "Safari"), ("curl/", "curl"))
_SYSTEMS = (("Android", "Android"), ("iPhone", "iOS"), ("iPad", "iPadOS"),
            ("Windows", "Windows"), ("Mac OS X", "macOS"), ("Linux", "Linux"))


def browser_name(user_agent: str | None) -> str:
    """A short "Firefox, Linux" from a User-Agent header, for people."""
    agent = user_agent or ""
    found = [next((name for mark, name in table if mark in agent), "")
             for table in (_BROWSERS, _SYSTEMS)]
    return ", ".join(part for part in found if part) or _("Unknown browser")


def must_sign_in_again(actor: Actor) -> bool:
    """This session was opened without the second factor the account now
    needs (SEC-9): it must sign in again with it."""
    return actor.mfa_required and not actor.mfa


def _page(request: Request, template: str, actor: Actor, status: int = 200,
          /, **context: Any) -> Response:
    return render(request, template, context, status=status, actor=actor)


def _done(request: Request, to: str = "/account") -> Response:
    """After an in-place change: nothing for htmx to swap in (the row goes),
    else the page again (post/redirect/get)."""
    if request.headers.get("hx-request"):
        return Response(status_code=200)
    return RedirectResponse(to, status_code=303)


#: Notices after a change made on another page (``/account?done=...``).
_DONE = {"password": N_("Your password has been changed. Your other sessions and your API "
                       "tokens have ended.")}


@router.get("/account")
async def account_page(actor: FactorReader, request: Request,
                       done: Annotated[str, Query(max_length=20)] = "") -> Response:
    app = deps.coffre(request)

    def load() -> tuple[Any, ...]:
        factors, left = app.factors.enrolled(actor)
        return (app.accounts.user(actor), factors, left, app.sessions.active(actor),
                app.accounts.list_tokens(actor))

    user, factors, left, sessions, tokens = await to_thread.run_sync(load)
    return _page(request, "account/security.html", actor, user=user, factors=factors,
                 recovery_left=left, sessions=sessions, tokens=tokens,
                 relogin=must_sign_in_again(actor), browser=browser_name,
                 notice=pick(_DONE, done),
                 scope_labels={str(k): v for k, v in SCOPE_LABELS.items()})


# -- TOTP -------------------------------------------------------------------------


def _email(request: Request, actor: Actor) -> str:
    """The reader's address (named in the recovery codes' file)."""
    return str(deps.coffre(request).accounts.user(actor).email)


@router.get("/account/totp")
def totp_page(actor: FactorManager, request: Request, ctx: Ctx, new: bool = False) -> Response:
    """An enrolment's key, shown as a QR code and as text: the one still
    waiting for its first code (a reload must not void what the app just
    scanned), or a new one (``?new=1``, or none pending). Safe on GET: it
    only replaces this user's own unconfirmed key, and the SameSite=Strict
    session cookie never comes with another site's request."""
    factors = deps.coffre(request).factors
    enrolment = (None if new else factors.resume_totp(actor)) or factors.begin_totp(
        actor, "", ctx)
    response = _page(request, "account/totp.html", actor, enrolment=enrolment, error=None,
                     first=must_sign_in_again(actor), email=_email(request, actor))
    guard.mark_browser(request, response)
    return response


@router.post("/account/totp/{factor_id}")
async def totp_confirm(factor_id: str, actor: FactorManager, request: Request,
                       ctx: Ctx) -> Response:
    app = deps.coffre(request)
    form = await small_form(request)
    code = str(form.get("code", ""))[:64]
    browser = guard.browser_digest(request)
    try:
        codes = await to_thread.run_sync(
            lambda: app.factors.confirm_totp(actor, factor_id, code, ctx, browser))
    except NotFound:  # confirmed already, or replaced by a newer enrolment
        return RedirectResponse("/account/totp", status_code=303)
    except InvalidInput:
        # The same key again (its QR code too): the app already holds it.
        try:
            enrolment = await to_thread.run_sync(app.factors.pending_totp, actor, factor_id)
        except NotFound:
            return RedirectResponse("/account/totp", status_code=303)
        error = _("This code was not accepted. Check that your device's clock is right and "
                  "type the 6 digits your app shows now.")
        return _page(request, "account/totp.html", actor, 400, enrolment=enrolment,
                     error=error, first=must_sign_in_again(actor),
                     email=await to_thread.run_sync(_email, request, actor))
    return await to_thread.run_sync(_recovery_codes, request, actor, codes)


RECOVERY_SHOWN = "/account/recovery-codes/new"


def _recovery_codes(request: Request, actor: Actor, codes: list[str]) -> Response:
    """New recovery codes go to a page of their own (a reload neither
    regenerates them, voiding what was just written down, nor confirms a
    factor twice), handed over once, sealed to this session."""
    if not codes:  # another factor: the recovery codes are unchanged
        return RedirectResponse("/account", status_code=303)
    response = guard.redirect(request, RECOVERY_SHOWN)
    if not flash.put(request, response, RECOVERY_SHOWN, {"codes": codes}):
        return _shown_codes(request, actor, codes)
    return response


def _shown_codes(request: Request, actor: Actor, codes: list[str]) -> Response:
    return _page(request, "account/recovery_codes.html", actor, codes=codes,
                 relogin=must_sign_in_again(actor), email=_email(request, actor))


@router.get(RECOVERY_SHOWN)
def recovery_codes_shown(actor: FactorManager, request: Request) -> Response:
    """The new codes, once; later, the account's page (they are not kept)."""
    codes = flash.take(request, RECOVERY_SHOWN).get("codes")
    if not isinstance(codes, list) or not codes:
        return guard.redirect(request, "/account")
    return flash.spent(request, _shown_codes(request, actor, [str(c) for c in codes]))


# -- removing a factor, new recovery codes ----------------------------------------------


def _factor(request: Request, actor: Actor, factor_id: str) -> FactorInfo:
    factors, _left = deps.coffre(request).factors.enrolled(actor)
    found = next((f for f in factors if f.id == factor_id), None)
    if found is None:
        raise NotFound("second factor not found")
    return found


@router.get("/account/factors/{factor_id}/remove")
def remove_factor_page(factor_id: str, actor: FactorManager, request: Request) -> Response:
    return _page(request, "account/remove_factor.html", actor,
                 factor=_factor(request, actor, factor_id), error=None)


@router.post("/account/factors/{factor_id}/remove")
async def remove_factor(factor_id: str, actor: FactorManager, request: Request,
                        ctx: Ctx) -> Response:
    app = deps.coffre(request)
    try:
        await to_thread.run_sync(lambda: app.factors.remove(actor, factor_id, ctx))
    except Conflict:
        factor = await to_thread.run_sync(_factor, request, actor, factor_id)
        error = _("Your account needs a second factor: add another one before removing "
                  "this one.")
        return _page(request, "account/remove_factor.html", actor, 409, factor=factor,
                     error=error)
    return RedirectResponse("/account", status_code=303)


@router.get("/account/recovery-codes")
def recovery_codes_page(actor: FactorManager, request: Request) -> Response:
    return _page(request, "account/new_recovery_codes.html", actor)


@router.post("/account/recovery-codes")
async def recovery_codes(actor: FactorManager, request: Request, ctx: Ctx) -> Response:
    app = deps.coffre(request)
    try:
        codes = await to_thread.run_sync(lambda: app.factors.regenerate_recovery(actor, ctx))
    except Conflict:  # no second factor yet
        return RedirectResponse("/account", status_code=303)
    return await to_thread.run_sync(_recovery_codes, request, actor, codes)


# -- sessions ---------------------------------------------------------------------


@router.post("/account/sessions/{session_id}/end")
async def end_session(session_id: str, actor: SessionOwner, request: Request,
                      ctx: Ctx) -> Response:
    app = deps.coffre(request)
    await to_thread.run_sync(lambda: app.sessions.end(actor, session_id, ctx))
    if session_id == actor.session_id:  # this very session: signed out
        response = guard.redirect(request, "/login")
        clear_session(response)
        return response
    return _done(request)


# -- API tokens -------------------------------------------------------------------


def _scopes_for(actor: Actor) -> list[Scope]:
    return [s for s in Scope if s is not Scope.ADMIN or actor.role is Role.ADMIN]


def _token_form(request: Request, actor: Actor, status: int = 200, error: str | None = None,
                name: str = "", chosen: frozenset[str] = frozenset({Scope.TRANSFERS_READ}),
                days: str = "90") -> Response:
    return _page(request, "account/new_token.html", actor, status, error=error, name=name,
                 scopes=[(str(s), SCOPE_LABELS[s]) for s in _scopes_for(actor)],
                 chosen=chosen, days=days, choices=TOKEN_DAYS)


@router.get("/account/tokens/new")
def new_token_page(actor: TokenManager, request: Request) -> Response:
    return _token_form(request, actor)


@router.post("/account/tokens")
async def create_token(actor: TokenManager, request: Request, ctx: Ctx) -> Response:
    app = deps.coffre(request)
    form = await small_form(request)
    name = str(form.get("name", "")).strip()[:100]
    chosen = frozenset(str(v) for v in form.getlist("scopes"))
    days = str(form.get("days", ""))
    if not name or not chosen:
        error = _("Give the token a name and choose at least one permission.")
        return _token_form(request, actor, 400, error, name, chosen, days)
    try:
        scopes = parse_scopes(" ".join(sorted(chosen)))
        lifetime = int(days) if re.fullmatch(r"[0-9]{1,4}", days) else None
        token = await to_thread.run_sync(
            lambda: app.accounts.create_token(actor, name, scopes, ctx, lifetime))
    except InvalidInput:
        error = _("These permissions or this lifetime cannot be given to a token.")
        return _token_form(request, actor, 400, error, name, chosen, days)
    # Then to a page of its own (a reload makes no second token); the token
    # is handed to it once, sealed to this session (never in the URL).
    shown = {"name": name, "token": token, "scopes": [str(s) for s in sorted(scopes)]}
    response = guard.redirect(request, TOKEN_CREATED)
    if not flash.put(request, response, TOKEN_CREATED, shown):
        return _token_created(request, actor, shown)
    return response


TOKEN_CREATED = "/account/tokens/created"  # noqa: S105 - a page, not a secret


def _token_created(request: Request, actor: Actor, shown: dict[str, Any]) -> Response:
    scopes = [Scope(s) for s in shown.get("scopes", []) if s in {str(v) for v in Scope}]
    return _page(request, "account/token_created.html", actor, name=str(shown.get("name")),
                 token=str(shown.get("token")), scopes=[_(SCOPE_LABELS[s]) for s in scopes])


@router.get(TOKEN_CREATED)
def token_created(actor: TokenManager, request: Request) -> Response:
    """The new token, once; later, the account's page (it is not kept)."""
    shown = flash.take(request, TOKEN_CREATED)
    if "token" not in shown:
        return guard.redirect(request, "/account")
    return flash.spent(request, _token_created(request, actor, shown))


@router.post("/account/tokens/{token_id}/revoke")
async def revoke_token(token_id: str, actor: SessionOwner, request: Request,
                       ctx: Ctx) -> Response:
    app = deps.coffre(request)
    await to_thread.run_sync(lambda: app.accounts.revoke_token(actor, token_id, ctx))
    return _done(request)
