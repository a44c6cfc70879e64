"""The sender's pages: the dashboard (sent and received transfers, each
recipient's status kept live, usage against quota) and a transfer's
detail (files, each recipient's timeline kept live, revoke, extend,
forward, delete, legal hold).

Thin, like the API handlers: each page or form calls the same service as
its API twin (``http/api/transfers.py``, ``events.py``, ``requests.py``),
which authorises and audits. Forms answer with a redirect (to the page,
with a notice or an error code); a refused step-up goes to ``/reauth``
and back. Live status comes by Server-Sent Events (``static/live.js``);
no recipient's address, file name or link ever goes into a URL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from anyio import to_thread
from fastapi import Depends, Query, Request, Response
from sse_starlette import EventSourceResponse

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor, Role
from coffre.domain.limits import MAX_DATABASE_INT
from coffre.domain.policy import Action
from coffre.domain.transfers import RECIPIENT_STATES, REVOKED
from coffre.errors import (
    CoffreError,
    Conflict,
    Gone,
    InvalidInput,
    PermissionDenied,
    TooLarge,
)
from coffre.http import deps
from coffre.http.api.events import live_stream
from coffre.http.web import flash, guard, send_pages
from coffre.http.web.forms import small_form
from coffre.http.web.i18n import N_, _, pick
from coffre.http.web.templating import page_router, render, when
from coffre.services.tracking import Change, Repeated, Step, collapse
from coffre.services.transfers import NewTransfer, TransferView

router = page_router()
router.include_router(send_pages.router)
Lister = Annotated[Actor, Depends(guard.page(Action.TRANSFER_LIST))]
Reader = Annotated[Actor, Depends(guard.page(Action.TRANSFER_READ))]
Manager = Annotated[Actor, Depends(guard.page(Action.TRANSFER_MANAGE))]
Forwarder = Annotated[Actor, Depends(guard.page(Action.TRANSFER_FORWARD))]
Deleter = Annotated[Actor, Depends(guard.page(Action.TRANSFER_DELETE))]
Holder = Annotated[Actor, Depends(guard.page(Action.TRANSFER_HOLD))]
Ctx = Annotated[Context, Depends(deps.context)]

#: Forwarded copies are available this long (as the API's default).
FORWARD_LIFETIME = timedelta(days=7)
#: A timeline step, as people read it.
STEPS = {
    "mail_sent": N_("Link sent by e-mail"),
    "link_opened": N_("Link opened"),
    "code_sent": N_("Code sent"),
    "code_verified": N_("Code verified"),
    "code_failed": N_("Wrong code entered"),
    "link_locked": N_("Link locked"),
    "password_failed": N_("Wrong password entered"),
    "file_downloaded": N_("Downloaded"),
    "zip_downloaded": N_("Downloaded (ZIP)"),
    "admin_access": N_("Viewed by an administrator"),
    "deposit_received": N_("Files deposited"),
    "recipient_revoked": N_("Link revoked by the sender"),
}
#: A recipient's state (``domain.transfers.recipient_state``), as people read it.
STATUS = {
    "mail_sent": N_("Sent"),
    "link_opened": N_("Opened"),
    "code_sent": N_("Code sent"),
    "code_verified": N_("Verified"),
    "file_downloaded": N_("Downloaded"),
    REVOKED: N_("Link revoked"),
}
TRANSFER_STATUS = {
    "active": N_("Active"),
    "expired": N_("Expired"),
    "revoked": N_("Revoked"),
    "deleted": N_("Deleted"),
}
_DONE = {
    "created": N_("Transfer sent: each recipient gets their own link by e-mail."),
    "revoked": N_("Transfer revoked: its links no longer open."),
    "recipient_revoked": N_("This recipient's link is revoked: it no longer opens. The "
                            "other recipients keep theirs."),
    "extended": N_("Expiry changed."),
    "forwarded": N_("Files forwarded: this is the new transfer."),
    "deleted": N_("Transfer deleted: its files are destroyed."),
    "held": N_("Legal hold placed."),
    "released": N_("Legal hold lifted."),
}
_ERRORS = {
    "legal_hold": N_("This transfer is under legal hold: it cannot be deleted, nor its "
                     "expiry brought forward."),
    "gone": N_("This transfer has been deleted."),
    "revoked": N_("This transfer is revoked: its links no longer open, so its expiry "
                  "cannot be changed. Send the files again in a new transfer if needed."),
    "expiry": N_("Choose a number of days within your organisation's limit."),
    "permanent": N_("Your organisation does not allow permanent storage."),
    "recipients": N_("Enter a valid recipient address."),
    "refused": N_("Your organisation's policy does not allow this recipient."),
    "quota": N_("Not enough storage space left to forward these files."),
    "reason": N_("Give a reason of 3 to 500 characters."),
    "failed": N_("This action could not be done."),
}


def step_label(kind: str) -> str:
    return _(STEPS[kind]) if kind in STEPS else kind


def _statuses() -> dict[str, str]:
    return {kind: _(label) for kind, label in STATUS.items()}


def repeat_note(group: Repeated) -> str:
    """", 5 times, last on …" after a step seen more than once."""
    if group.count < 2:
        return ""
    return _("%(num)s times, last on %(when)s", num=group.count, when=when(group.last))


# -- the dashboard --------------------------------------------------------------------


def _dashboard(request: Request, actor: Actor) -> dict[str, Any]:
    app = deps.coffre(request)
    return {
        "transfers": app.transfers.list_sent(actor),
        "received": app.requests.received(actor),
        "usage": app.quotas.report(actor).user,
        "last_step": app.tracking.last_sent_step(actor),
    }


@router.get("/transfers")
async def dashboard(request: Request, actor: Lister,
                    done: Annotated[str, Query(max_length=20)] = "") -> Response:
    found = await to_thread.run_sync(_dashboard, request, actor)
    return render(request, "transfers/dashboard.html", {
        **found, "notice": pick(_DONE, done),
        "statuses": _statuses(), "transfer_status": TRANSFER_STATUS,
    }, actor=actor)


@router.get("/transfers/stream", response_class=EventSourceResponse)
async def dashboard_stream(request: Request, actor: Lister,
                           after: Annotated[int, Query(ge=0, le=MAX_DATABASE_INT)] = 0,
                           ) -> EventSourceResponse:
    """Which of the sender's transfers changed (their cards are fetched
    again): steps after ``after``, the last one the page was drawn with."""
    tracking = deps.coffre(request).tracking

    def fetch(last: int) -> list[Change]:
        return tracking.sent_since(actor, max(last, after))

    return live_stream(
        request, Action.TRANSFER_LIST, "tableau de bord",
        recheck=lambda current: None, fetch=fetch,
        render=lambda change: {"transfer_id": change.transfer_id, "kind": change.kind},
    )


@router.get("/transfers/{transfer_id}/card")
def transfer_card(transfer_id: str, request: Request, actor: Reader, ctx: Ctx) -> Response:
    """One transfer's card on the dashboard, drawn again when it changed."""
    view = deps.coffre(request).transfers.get(actor, transfer_id, ctx)
    return render(request, "transfers/_card.html", {
        "t": view, "statuses": _statuses(), "transfer_status": TRANSFER_STATUS,
    }, actor=actor)


# -- a transfer's detail ----------------------------------------------------------------


def _detail(request: Request, actor: Actor, transfer_id: str,
            ctx: Context) -> tuple[TransferView, list[Step]]:
    app = deps.coffre(request)
    view = app.transfers.get(actor, transfer_id, ctx)
    return view, app.tracking.timeline(actor, transfer_id, ctx)


@router.get("/transfers/{transfer_id}")
async def detail(transfer_id: str, request: Request, actor: Reader, ctx: Ctx,
                 done: Annotated[str, Query(max_length=20)] = "",
                 error: Annotated[str, Query(max_length=20)] = "") -> Response:
    view, steps = await to_thread.run_sync(_detail, request, actor, transfer_id, ctx)
    timelines: dict[str, list[Step]] = {r.id: [] for r in view.recipients}
    general: list[Step] = []
    for step in steps:
        timelines.get(step.recipient_id or "", general).append(step)
    files = {f.id: f.name for f in view.files}
    # The personal links, once, right after the transfer was made (never stored).
    links = flash.take(request, request.url.path).get("links") or {}
    response = render(request, "transfers/detail.html", {
        "t": view, "timelines": {rid: collapse(found) for rid, found in timelines.items()},
        "general": collapse(general), "files": files,
        "last_step": steps[-1].id if steps else 0,
        "step_label": step_label, "repeat_note": repeat_note,
        "transfer_status": TRANSFER_STATUS,
        "labels": {kind: _(label) for kind, label in STEPS.items()},
        "repeat": _("%(num)s times, last on %(when)s", num="{num}", when="{when}"),
        "statuses": _statuses(),
        "status_rank": list(RECIPIENT_STATES),
        "links": links if isinstance(links, dict) else {},
        "admin": actor.role is Role.ADMIN,
        "notice": pick(_DONE, done), "error": pick(_ERRORS, error),
    }, actor=actor)
    return flash.spent(request, response)


def _refusal(exc: CoffreError) -> str:
    """An error code for the page (shown translated, never the exception's text)."""
    reason = exc.details.get("reason")
    if reason in {"legal_hold", "revoked"}:
        return str(reason)
    if reason == "permanent_not_allowed":
        return "permanent"
    if isinstance(exc, Gone):
        return "gone"
    if isinstance(exc, PermissionDenied) and str(reason).startswith(("recipient", "too_many")):
        return "refused"
    if exc.code in {"too_large", "quota_exceeded"}:
        return "quota"
    field = exc.details.get("field")
    if isinstance(exc, InvalidInput) and field in {"expires_in", "recipients", "email", "reason"}:
        return {"expires_in": "expiry", "email": "recipients"}.get(str(field), str(field))
    return "failed"


async def _attempt(work: Callable[[], Any]) -> str | None:
    """Run a change; None, or the code of the error to show. Refusals by
    policy (403/404) and step-up are not caught: they answer like any page's."""
    try:
        await to_thread.run_sync(work)
    except (InvalidInput, Conflict, Gone, TooLarge) as exc:
        return _refusal(exc)
    except PermissionDenied as exc:
        if exc.details.get("reason") is None:
            raise
        return _refusal(exc)
    return None


async def _act(request: Request, transfer_id: str, work: Callable[[], Any],
               done: str) -> Response:
    """A change, then back to the transfer's page with a notice or an error."""
    error = await _attempt(work)
    if error is not None:
        return guard.redirect(request, f"/transfers/{transfer_id}?error={error}")
    return guard.redirect(request, f"/transfers/{transfer_id}?done={done}")


def _days(value: object) -> int:
    text = str(value or "").strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 36_500:
        raise InvalidInput("a number of days", field="expires_in")
    return int(text)


@router.post("/transfers/{transfer_id}/revoke")
async def revoke(transfer_id: str, request: Request, actor: Manager, ctx: Ctx) -> Response:
    transfers = deps.coffre(request).transfers
    return await _act(request, transfer_id,
                      lambda: transfers.revoke(actor, transfer_id, ctx), "revoked")


@router.post("/transfers/{transfer_id}/recipients/{recipient_id}/revoke")
async def revoke_recipient(transfer_id: str, recipient_id: str, request: Request,
                           actor: Manager, ctx: Ctx) -> Response:
    await small_form(request)
    transfers = deps.coffre(request).transfers
    return await _act(
        request, transfer_id,
        lambda: transfers.revoke_recipient(actor, transfer_id, recipient_id, ctx),
        "recipient_revoked")


@router.post("/transfers/{transfer_id}/extend")
async def extend(transfer_id: str, request: Request, actor: Manager, ctx: Ctx) -> Response:
    form = await small_form(request)
    transfers = deps.coffre(request).transfers

    def work() -> None:
        transfers.extend(actor, transfer_id, timedelta(days=_days(form.get("days"))), ctx)

    return await _act(request, transfer_id, work, "extended")


@router.post("/transfers/{transfer_id}/forward")
async def forward(transfer_id: str, request: Request, actor: Forwarder, ctx: Ctx) -> Response:
    form = await small_form(request)
    service = deps.coffre(request).requests
    recipients = send_pages.addresses(form.getlist("recipient"))
    made: list[TransferView] = []

    def work() -> None:
        if not recipients:
            raise InvalidInput("a recipient is needed", field="recipients")
        new = NewTransfer(upload_ids=[], recipients=recipients,
                          subject=str(form.get("subject", ""))[:200],
                          expires_in=FORWARD_LIFETIME)
        made.append(service.forward(actor, transfer_id, new, ctx))

    error = await _attempt(work)
    if error is not None:
        return guard.redirect(request, f"/transfers/{transfer_id}?error={error}")
    page = f"/transfers/{made[0].id}"
    response = guard.redirect(request, f"{page}?done=forwarded")
    flash.put(request, response, page, {"links": made[0].links or {}})
    return response


@router.post("/transfers/{transfer_id}/delete")
async def delete(transfer_id: str, request: Request, actor: Deleter, ctx: Ctx) -> Response:
    transfers = deps.coffre(request).transfers
    error = await _attempt(lambda: transfers.delete(actor, transfer_id, ctx))
    if error is not None:
        return guard.redirect(request, f"/transfers/{transfer_id}?error={error}")
    return guard.redirect(request, "/transfers?done=deleted")


@router.post("/transfers/{transfer_id}/hold")
async def hold(transfer_id: str, request: Request, actor: Holder, ctx: Ctx) -> Response:
    form = await small_form(request)
    transfers = deps.coffre(request).transfers
    reason = str(form.get("reason", ""))[:600]
    if form.get("release") == "1":
        return await _act(request, transfer_id,
                          lambda: transfers.release(actor, transfer_id, reason, ctx), "released")
    return await _act(request, transfer_id,
                      lambda: transfers.hold(actor, transfer_id, reason, ctx), "held")
