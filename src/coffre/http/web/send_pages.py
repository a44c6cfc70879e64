"""The new transfer page: files are uploaded by ``static/send.js`` with
tus (``/api/v1/uploads/``, resumable: after a reload, re-selecting a file
finds its unfinished upload through ``GET /api/v1/uploads/``), then this
form creates the transfer from the completed uploads, as
``POST /api/v1/transfers`` does, and the sender lands on its page.

Never puts an address, a file name or a password in a URL or a log.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from typing import Annotated, Any

from anyio import to_thread
from fastapi import Depends, Request, Response
from starlette.datastructures import FormData

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor, normalise_email
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
#: Between recipients: commas, semicolons, new lines; spaces only between
#: addresses ("Jean Dupont" is one contact's name).
_SEPARATORS = re.compile(r"[,;\r\n]+")
_NAMED = re.compile(r"^(.*)<([^<>]+)>$")
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
    commas, semicolons or new lines (or spaces between addresses); an entry
    without "@" is a contact's name, "Name <address>" an address."""
    found: list[str] = []
    for value in values:
        for raw in _SEPARATORS.split(str(value)[:10_000]):
            entry = " ".join(raw.split())
            named = _NAMED.match(entry)
            if named:
                found.append(named.group(2).strip())
            elif "@" in entry:  # "Jean Dupont jean@x.fr": the address only
                at = [word for word in entry.split(" ") if "@" in word]
                found += at if len(at) == 1 else entry.split(" ")
            elif entry:
                found.append(entry)
    return found[:MAX_RECIPIENTS + 1]


def _resolve(app: Any, actor: Actor, entries: list[str]) -> list[str]:
    """Names to their contact's address; each bad entry is refused by name
    (``InvalidInput`` with the entry), before the service sees the list."""
    out = []
    for entry in entries:
        if "@" in entry:
            try:
                normalise_email(entry)
            except InvalidInput:
                raise InvalidInput("invalid e-mail address", field="email",
                                   address=entry[:254]) from None
            out.append(entry)
            continue
        try:
            out += [r.email for r in app.contacts.resolve(actor, [entry])]
        except (InvalidInput, PermissionDenied) as exc:
            raise InvalidInput("no single contact has this name", field="recipients",
                               name=entry[:200], reason="contact_name",
                               candidates=exc.details.get("candidates") or []) from None
    return out


def _options(request: Request, actor: Actor) -> dict[str, Any]:
    app = deps.coffre(request)
    organisation = app.organisations.organisation(actor)
    return {"policy": organisation.effective,
            "allow_unverified": organisation.allow_unverified_recipients,
            "discreet_mail": organisation.discreet_mail,
            "usage": app.quotas.report(actor).user}


def _page(request: Request, actor: Actor, options: dict[str, Any], *,
          error: str | tuple[str, str] | None = None,
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


#: The page's field that caused an error, by the service's field name.
_FIELD_IDS = {"recipients": "recipient-input", "email": "recipient-input", "files": "file-input",
              "max_downloads": "max_downloads", "password": "password", "message": "message",
              "subject": "subject", "expires_in": "days"}


def refusal(exc: CoffreError, policy: dict[str, Any]) -> tuple[str | None, str]:
    """What went wrong, in the reader's language (never the exception's
    text), and the id of the field that caused it (None: the whole form)."""
    reason = exc.details.get("reason")
    field = str(exc.details.get("field") or "")
    if isinstance(exc, QuotaExceeded):
        return "file-input", _("Your storage quota is full: delete old transfers, or ask your "
                               "administrator for more space.")
    if isinstance(exc, TooLarge):
        return "file-input", _(
            "These files together are larger than one transfer may be (%(max)s).",
            max=filesize(int(exc.details.get("max_transfer_size") or 0)))
    if reason == "contact_name":
        if exc.details.get("candidates"):
            return "recipient-input", _(
                "Several contacts match “%(name)s”: choose one in the list, or type the "
                "address.", name=exc.details.get("name"))
        return "recipient-input", _(
            "No contact is named “%(name)s”: type their e-mail address, or add them to "
            "your contacts.", name=exc.details.get("name"))
    if field == "email" and exc.details.get("address"):
        return "recipient-input", _("This address is not valid: %(address)s. Check it, or "
                                    "remove it.", address=exc.details.get("address"))
    if reason == "too_many_recipients":
        return "recipient-input", _("Too many recipients: at most %(max)s per transfer.",
                                    max=exc.details.get("maximum"))
    if reason in {"recipient_domain_denied", "recipient_domain_not_allowed"}:
        return "recipient-input", _("Your organisation does not allow sending to: %(domains)s.",
                                    domains=", ".join(exc.details.get("domains") or []))
    if reason == "permanent_not_allowed":
        return "days", _("Your organisation does not allow permanent storage: choose an expiry.")
    if reason == "verification_required":
        return None, _("Your organisation requires recipients to confirm their address with "
                       "a code.")
    if isinstance(exc, Conflict | NotFound):
        return "file-input", _(
            "A file is not uploaded yet, or no longer available: wait for the upload to "
            "finish, or remove the file and add it again.")
    if field == "expires_in":
        return "days", _("Choose an expiry between 1 and %(max)s days.",
                         max=policy.get("max_expiry_days"))
    if field in _FIELD_ERRORS:
        return _FIELD_IDS.get(field), _(_FIELD_ERRORS[field])
    return None, _("The transfer could not be created.")


@router.post("/send")
async def send_submit(request: Request, actor: Creator, ctx: Ctx) -> Response:
    form = await small_form(request, max_fields=MAX_RECIPIENTS + MAX_FILES + 20)
    app = deps.coffre(request)
    try:
        new = _new_transfer(form)
        new = replace(new, recipients=await to_thread.run_sync(
            _resolve, app, actor, new.recipients))
        view = await to_thread.run_sync(app.transfers.create, actor, new, ctx)
    except (InvalidInput, Conflict, NotFound, TooLarge, PermissionDenied) as exc:
        if isinstance(exc, PermissionDenied) and exc.details.get("reason") is None:
            raise
        options = await to_thread.run_sync(_options, request, actor)
        field, message = refusal(exc, options["policy"])
        if request.headers.get("hx-request"):  # the page stays, with its uploads
            return render(request, "transfers/_send_error.html",
                          {"error": message, "field": field}, status=422, actor=actor)
        values = {k: str(form.get(k, ""))[:12_000] for k in (
            "subject", "message", "days", "max_downloads", "permanent", "notify",
            "skip_verification")}
        values["recipient"] = ", ".join(str(r) for r in form.getlist("recipient") if str(r))
        return _page(request, actor, options, error=(field, message) if field else message,
                     values=values, status=400)
    page = f"/transfers/{view.id}"
    response = guard.redirect(request, f"{page}?done=created")
    # The personal links, shown once on the transfer's page (never in a URL).
    flash.put(request, response, page, {"links": view.links or {}})
    return response
