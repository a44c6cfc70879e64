"""Contacts pages: the list with its search, add, edit, delete; import and
export go through the JSON API (``/api/v1/contacts/import`` takes the file
as the request body, sent by ``static/contacts.js``; the export is a plain
download link).

Thin, like the API handlers: parse the form, call ``ContactService``
(which authorises), render. Card contents never reach a URL or a log.
"""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import Depends, Query, Request, Response

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor, Role
from coffre.domain.contacts import Card
from coffre.domain.policy import Action
from coffre.errors import CoffreError, Conflict, InvalidInput
from coffre.http import deps
from coffre.http.web import guard
from coffre.http.web.forms import small_form
from coffre.http.web.i18n import N_, _, pick
from coffre.http.web.templating import page_router, phone_number, render

router = page_router()
Reader = Annotated[Actor, Depends(guard.page(Action.CONTACT_READ))]
Writer = Annotated[Actor, Depends(guard.page(Action.CONTACT_WRITE))]
Ctx = Annotated[Context, Depends(deps.context)]
#: The card's fields, in the form's order, with their labels.
FIELDS = (
    ("email", N_("E-mail address")),
    ("name", N_("Name")),
    ("phone", N_("Mobile phone")),
    ("profession", N_("Profession")),
    ("rpps", N_("RPPS number")),
    ("organisation", N_("Organisation")),
)
_DONE = {
    "added": N_("Contact added."),
    "saved": N_("Contact saved."),
    "deleted": N_("Contact deleted."),
}
_FIELD_ERRORS = {
    "email": N_("Enter a valid e-mail address."),
    "phone": N_("Enter a valid phone number (for example 06 12 34 56 78)."),
    "rpps": N_("An RPPS number has 11 digits."),
}
MAX_SHOWN = 500


def _field_error(exc: CoffreError) -> tuple[str, str]:
    """(field, message in the reader's language) for a refused form."""
    if isinstance(exc, Conflict):
        return "email", _("A contact with this address already exists.")
    field = str(exc.details.get("field") or "")
    if field in _FIELD_ERRORS:
        return field, _(_FIELD_ERRORS[field])
    if isinstance(exc, InvalidInput) and field:
        return field, _("This value is not accepted (too long, or with control characters).")
    return "", _("The contact could not be saved.")


def _list(request: Request, actor: Actor, q: str) -> list[object]:
    return list(deps.coffre(request).contacts.search(actor, q, MAX_SHOWN))


@router.get("/contacts")
async def contacts(request: Request, actor: Reader,
                   q: Annotated[str, Query(max_length=200)] = "",
                   done: Annotated[str, Query(max_length=20)] = "") -> Response:
    found = await to_thread.run_sync(_list, request, actor, q)
    context = {"contacts": found, "q": q, "notice": pick(_DONE, done),
               "admin": actor.role is Role.ADMIN}
    if request.headers.get("hx-target") == "contact-results":  # the search, as one types
        return render(request, "contacts/results.html", context, actor=actor)
    return render(request, "contacts/list.html", context, actor=actor)


def _form(request: Request, actor: Actor, values: dict[str, str], *, contact_id: str | None,
          error: tuple[str, str] | None = None, status: int = 200) -> Response:
    return render(request, "contacts/form.html", {
        "fields": [(name, _(label)) for name, label in FIELDS], "values": values,
        "contact_id": contact_id, "error": error, "admin": actor.role is Role.ADMIN,
    }, status=status, actor=actor)


async def _values(request: Request) -> dict[str, str]:
    form = await small_form(request)
    values = {name: str(form.get(name, ""))[:400] for name, _label in FIELDS}
    values["shared"] = "1" if form.get("shared") else ""
    return values


@router.get("/contacts/new")
async def new_contact(request: Request, actor: Writer) -> Response:
    return _form(request, actor, {}, contact_id=None)


@router.post("/contacts/new")
async def add_contact(request: Request, actor: Writer, ctx: Ctx) -> Response:
    values = await _values(request)
    card = Card.from_dict({k: v for k, v in values.items() if k != "email"})
    service = deps.coffre(request).contacts
    try:
        await to_thread.run_sync(lambda: service.create(actor, values["email"], card, ctx,
                                                        shared=bool(values["shared"])))
    except (InvalidInput, Conflict) as exc:
        return _form(request, actor, values, contact_id=None, error=_field_error(exc),
                     status=400 if isinstance(exc, InvalidInput) else 409)
    return guard.redirect(request, "/contacts?done=added")


@router.get("/contacts/{contact_id}")
async def edit_contact(contact_id: str, request: Request, actor: Writer) -> Response:
    view = await to_thread.run_sync(deps.coffre(request).contacts.get, actor, contact_id)
    values = {name: str(getattr(view, name)) for name, _label in FIELDS}
    values["phone"] = phone_number(view.phone)  # as people write it; read back the same
    return _form(request, actor, values, contact_id=view.id)


@router.post("/contacts/{contact_id}")
async def save_contact(contact_id: str, request: Request, actor: Writer, ctx: Ctx) -> Response:
    values = await _values(request)
    changes = {name: values[name] for name, _label in FIELDS}
    service = deps.coffre(request).contacts
    try:
        await to_thread.run_sync(lambda: service.update(actor, contact_id, ctx, **changes))
    except (InvalidInput, Conflict) as exc:
        return _form(request, actor, values, contact_id=contact_id, error=_field_error(exc),
                     status=400 if isinstance(exc, InvalidInput) else 409)
    return guard.redirect(request, "/contacts?done=saved")


@router.post("/contacts/{contact_id}/delete")
async def delete_contact(contact_id: str, request: Request, actor: Writer, ctx: Ctx) -> Response:
    await to_thread.run_sync(deps.coffre(request).contacts.delete, actor, contact_id, ctx)
    return guard.redirect(request, "/contacts?done=deleted")
