"""The new transfer page: files are uploaded by ``static/send.js`` with
tus (``/api/v1/uploads/``, resumable: after a reload, re-selecting a file
finds its unfinished upload through ``GET /api/v1/uploads/``), then this
form creates the transfer from the completed uploads, as
``POST /api/v1/transfers`` does, and the sender lands on its page.

Never puts an address, a file name or a password in a URL or a log.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from anyio import to_thread
from fastapi import Depends, Request, Response
from starlette.datastructures import FormData

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action
from coffre.errors import (
    CoffreError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    TooLarge,
)
from coffre.http import deps
from coffre.http.web import flash, guard
from coffre.http.web.forms import small_form
from coffre.http.web.i18n import N_, _
from coffre.http.web.templating import filesize, page_router, render
from coffre.services.transfers import NewTransfer

router = page_router()
Creator = Annotated[Actor, Depends(guard.page(Action.TRANSFER_CREATE))]
Ctx = Annotated[Context, Depends(deps.context)]
#: Recipients and files one form may carry (the API's own ceilings are higher).
MAX_RECIPIENTS = 100
MAX_FILES = 200
_SEPARATORS = re.compile(r"[,;\s]+")
_FIELD_ERRORS = {
    "recipients": N_("Add at least one recipient, with a valid e-mail address."),
    "email": N_("One of the recipients' addresses is not valid."),
    "files": N_("Add at least one file, and wait until it is uploaded."),
    "max_downloads": N_("The download limit must be between 1 and 1000."),
    "password": N_("The link password must have 4 to 256 characters."),
    "message": N_("The subject or the message is too long, or holds control characters."),
    "subject": N_("The subject or the message is too long, or holds control characters."),
}


def addresses(values: list[Any]) -> list[str]:
    """Recipients from the form: each field may hold several, separated by
    commas, semicolons or spaces."""
    found: list[str] = []
    for value in values:
        found += [a for a in _SEPARATORS.split(str(value)[:10_000]) if a]
    return found[:MAX_RECIPIENTS + 1]


def _options(request: Request, actor: Actor) -> dict[str, Any]:
    app = deps.coffre(request)
    organisation = app.organisations.organisation(actor)
    return {"policy": organisation.effective,
            "allow_unverified": organisation.allow_unverified_recipients,
            "usage": app.quotas.report(actor).user}


def _page(request: Request, actor: Actor, options: dict[str, Any], *, error: str | None = None,
          values: dict[str, Any] | None = None, status: int = 200) -> Response:
    return render(request, "transfers/send.html", {
        **options, "error": error, "values": values or {},
    }, status=status, actor=actor)


@router.get("/send")
async def send_page(request: Request, actor: Creator) -> Response:
    options = await to_thread.run_sync(_options, request, actor)
    return _page(request, actor, options)


def _number(value: Any, field: str) -> int | None:
    text = str(value or "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        raise InvalidInput("a whole number", field=field)
    return int(text)


def _new_transfer(form: FormData) -> NewTransfer:
    permanent = form.get("permanent") == "1"
    days = _number(form.get("days"), "expires_in")
    if not permanent and days is not None and days < 1:
        raise InvalidInput("at least one day", field="expires_in")
    password = str(form.get("password", ""))[:300]
    return NewTransfer(
        upload_ids=[str(u)[:64] for u in form.getlist("upload")][:MAX_FILES],
        recipients=addresses(form.getlist("recipient")),
        subject=str(form.get("subject", ""))[:300],
        message=str(form.get("message", ""))[:12_000],
        expires_in=None if permanent or days is None else timedelta(days=days),
        permanent=permanent,
        max_downloads=_number(form.get("max_downloads"), "max_downloads"),
        password=password or None,
        verify_recipients=form.get("skip_verification") != "1",
        notify_on_download=form.get("notify") == "1",
    )


def refusal(exc: CoffreError, policy: dict[str, Any]) -> str:
    """What went wrong, in the reader's language (never the exception's text)."""
    reason = exc.details.get("reason")
    if isinstance(exc, QuotaExceeded):
        return _("Your storage quota is full: delete old transfers, or ask your "
                 "administrator for more space.")
    if isinstance(exc, TooLarge):
        return _("These files together are larger than one transfer may be (%(max)s).",
                 max=filesize(int(exc.details.get("max_transfer_size") or 0)))
    if reason == "too_many_recipients":
        return _("Too many recipients: at most %(max)s per transfer.",
                 max=exc.details.get("maximum"))
    if reason in {"recipient_domain_denied", "recipient_domain_not_allowed"}:
        return _("Your organisation does not allow sending to: %(domains)s.",
                 domains=", ".join(exc.details.get("domains") or []))
    if reason == "permanent_not_allowed":
        return _("Your organisation does not allow permanent storage: choose an expiry.")
    if reason == "verification_required":
        return _("Your organisation requires recipients to confirm their address with a code.")
    if isinstance(exc, Conflict | NotFound):
        return _("A file is not uploaded yet, or no longer available: wait for the upload to "
                 "finish, or remove the file and add it again.")
    field = str(exc.details.get("field") or "")
    if field == "expires_in":
        return _("Choose an expiry between 1 and %(max)s days.",
                 max=policy.get("max_expiry_days"))
    if field in _FIELD_ERRORS:
        return _(_FIELD_ERRORS[field])
    return _("The transfer could not be created.")


@router.post("/send")
async def send_submit(request: Request, actor: Creator, ctx: Ctx) -> Response:
    form = await small_form(request, max_fields=MAX_RECIPIENTS + MAX_FILES + 20)
    app = deps.coffre(request)
    try:
        new = _new_transfer(form)
        view = await to_thread.run_sync(app.transfers.create, actor, new, ctx)
    except (InvalidInput, Conflict, NotFound, TooLarge, PermissionDenied) as exc:
        if isinstance(exc, PermissionDenied) and exc.details.get("reason") is None:
            raise
        options = await to_thread.run_sync(_options, request, actor)
        message = refusal(exc, options["policy"])
        if request.headers.get("hx-request"):  # the page stays, with its uploads
            return render(request, "transfers/_send_error.html", {"error": message},
                          actor=actor)
        values = {k: str(form.get(k, "")) for k in ("subject", "message", "days")}
        return _page(request, actor, options, error=message, values=values, status=400)
    page = f"/transfers/{view.id}"
    response = guard.redirect(request, f"{page}?done=created")
    # The personal links, shown once on the transfer's page (never in a URL).
    flash.put(request, response, page, {"links": view.links or {}})
    return response
