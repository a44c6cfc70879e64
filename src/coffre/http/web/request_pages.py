"""Upload requests, the requester's pages: ``/requests`` (your requests,
and the form that creates one) and ``/requests/{id}`` (who was asked,
the deposits received with their files, closing the request).

Each page calls the service its API handler calls
(``coffre.http.api.requests``), with the same action; files are
downloaded from the API (``/api/v1/transfers/{id}/files/{file}``, the
owner's download) and new deposits arrive through the API's event stream.
The depositors' personal links are mailed to them, never shown; an open
link is shown once, right after creation (it is not stored in clear).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from anyio import to_thread
from fastapi import Depends, Query, Request, Response

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action, allowed
from coffre.domain.requests import MAX_DEPOSITORS, parse_size
from coffre.domain.transfers import parse_expiry
from coffre.errors import InvalidInput
from coffre.http import deps
from coffre.http.web import flash, guard
from coffre.http.web.forms import small_form
from coffre.http.web.i18n import N_, _, pick
from coffre.http.web.templating import page_router, render
from coffre.services.requests import NewRequest, Received, RequestView

router = page_router()
Ctx = Annotated[Context, Depends(deps.context)]
Lister = Annotated[Actor, Depends(guard.page(Action.TRANSFER_LIST))]
Creator = Annotated[Actor, Depends(guard.page(Action.REQUEST_CREATE))]
Reader = Annotated[Actor, Depends(guard.page(Action.REQUEST_READ))]
Closer = Annotated[Actor, Depends(guard.page(Action.REQUEST_CLOSE))]

#: The form's choices of duration (the API accepts any up to 90 days).
EXPIRIES = [("1d", N_("1 day")), ("3d", N_("3 days")), ("7d", N_("1 week")),
            ("14d", N_("2 weeks")), ("30d", N_("1 month")), ("90d", N_("3 months"))]
_DONE = {
    "created": N_("The request has been created; each depositor has received their link "
                  "by e-mail."),
    "open": N_("The request has been created: share its open link with the people who "
               "should deposit files."),
    "closed": N_("The request is closed: nobody can deposit files any more."),
}
STATES = {"open": N_("Request open"), "closed": N_("Request closed"),
          "expired": N_("Request expired")}
_FIELD_ERRORS = {
    "depositors": N_("Give at least one valid e-mail address (at most %(max)d), "
                     "or choose an open link."),
    "email": N_("Give at least one valid e-mail address (at most %(max)d), "
                "or choose an open link."),
    "message": N_("The message is too long."),
    "expires_in": N_("A request lasts at most 90 days."),
    "max_size": N_("Write a size such as 500 MB, 2 GB or 1.5 GB (at most 4 PB)."),
    "max_files": N_("The number of files must be between 1 and 1000."),
}
_ADDRESSES = re.compile(r"[\s,;]+")
_DEFAULTS = {"depositors": "", "open_link": "", "message": "", "expires_in": "7d",
             "max_size": "10G", "max_files": "20"}
#: The form's field for each of the service's fields.
_FIELDS = {"depositors": "depositors", "email": "depositors", "message": "message",
           "expires_in": "expires_in", "max_size": "max_size", "max_files": "max_files"}


def _form_page(request: Request, actor: Actor, requests: list[RequestView],
               values: dict[str, str], error: str | tuple[str, str] | None = None,
               status: int = 200) -> Response:
    return render(request, "requests/list.html", {
        "requests": requests, "values": values, "error": error, "states": STATES,
        "expiries": EXPIRIES, "can_create": allowed(actor, Action.REQUEST_CREATE),
    }, status=status, actor=actor)


@router.get("/requests")
def list_page(actor: Lister, request: Request) -> Response:
    mine = deps.coffre(request).requests.list_own(actor)
    return _form_page(request, actor, mine, {**_DEFAULTS, "max_size": _("10 GB")})


def _new_request(values: dict[str, str]) -> NewRequest:
    """The form's fields, read as the API reads its JSON body."""
    expires_in = parse_expiry(values["expires_in"])
    if expires_in is None:
        raise InvalidInput("an upload request must expire", field="expires_in")
    try:
        max_files = int(values["max_files"])
    except ValueError:
        raise InvalidInput("the file count must be a number", field="max_files") from None
    addresses = [a for a in _ADDRESSES.split(values["depositors"]) if a]
    return NewRequest(depositors=dict.fromkeys(addresses), open_link=values["open_link"] == "1",
                      message=values["message"], expires_in=expires_in,
                      max_total_size=parse_size(values["max_size"]), max_files=max_files)


@router.post("/requests")
async def create_page(actor: Creator, request: Request, ctx: Ctx) -> Response:
    app = deps.coffre(request)
    form = await small_form(request)
    values = {k: str(form.get(k, v))[:10_000] for k, v in _DEFAULTS.items()}
    values["open_link"] = "1" if form.get("open_link") else ""
    try:
        new = _new_request(values)
        view = await to_thread.run_sync(app.requests.create, actor, new, ctx)
    except InvalidInput as exc:
        field = str(exc.details.get("field"))
        message = _(_FIELD_ERRORS.get(field, N_("The request could not be created.")),
                    max=MAX_DEPOSITORS)
        mine = await to_thread.run_sync(app.requests.list_own, actor)
        return _form_page(request, actor, mine, values,
                          (_FIELDS[field], message) if field in _FIELDS else message, status=400)
    # Then to the request's page (a reload does not make another one); the
    # open link, not kept in clear, is handed to it once (never in the URL).
    page = f"/requests/{view.id}"
    response = guard.redirect(request, f"{page}?done={'created' if view.depositors else 'open'}")
    if view.open_url:
        flash.put(request, response, page, {"open_url": view.open_url})
    return response


def _deposits(request: Request, actor: Actor, request_id: str,
              ctx: Context) -> tuple[RequestView, list[Received]]:
    """The request, and the transfers deposited for it (as GET
    /api/v1/requests/{id} and GET /api/v1/received answer them)."""
    service = deps.coffre(request).requests
    view = service.get(actor, request_id, ctx)
    return view, [r for r in service.received(actor) if r.request_id == view.id]


def _detail(request: Request, actor: Actor, request_id: str, ctx: Context,
            done: str = "") -> Response:
    view, received = _deposits(request, actor, request_id, ctx)
    open_url = flash.take(request, request.url.path).get("open_url")
    context: dict[str, Any] = {
        "view": view, "received": received, "states": STATES,
        "open_url": open_url if isinstance(open_url, str) else None,
        "notice": pick(_DONE, done),
        "can_close": view.status == "open",  # whoever may read it may close it (the service checks)
    }
    return flash.spent(request, render(request, "requests/detail.html", context, actor=actor))


@router.get("/requests/{request_id}")
def detail_page(request_id: str, actor: Reader, request: Request, ctx: Ctx,
                done: Annotated[str, Query(max_length=20)] = "") -> Response:
    return _detail(request, actor, request_id, ctx, done)


@router.get("/requests/{request_id}/deposits")
def deposits_fragment(request_id: str, actor: Reader, request: Request, ctx: Ctx) -> Response:
    """The deposits received, for the detail page's live update."""
    view, received = _deposits(request, actor, request_id, ctx)
    return render(request, "requests/_deposits.html", {"view": view, "received": received},
                  actor=actor)


@router.post("/requests/{request_id}/close")
async def close_page(request_id: str, actor: Closer, request: Request, ctx: Ctx) -> Response:
    await small_form(request)
    await to_thread.run_sync(deps.coffre(request).requests.close, actor, request_id, ctx)
    return guard.redirect(request, f"/requests/{request_id}?done=closed")
