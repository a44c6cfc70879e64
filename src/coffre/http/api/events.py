"""The sender's live tracking of a transfer: each recipient's timeline as
a list, or as Server-Sent Events (SEC-4).

The stream reads the database for steps above the last id sent whenever
a live event wakes it (``notify.live``: in-process, or PostgreSQL
LISTEN/NOTIFY across app instances) and every few seconds regardless;
it honours ``Last-Event-ID``, sends heartbeat comments, and ends when
the client goes away, or when the credential that opened it no longer
allows it (checked again every few seconds: logout, expiry, revocation,
disabling, demotion).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor
from coffre.domain.limits import MAX_DATABASE_INT
from coffre.domain.policy import Action, check_route
from coffre.errors import CoffreError
from coffre.http import deps
from coffre.http.api.schemas import TransferEventOut
from coffre.services.tracking import Step

router = APIRouter(prefix="/api/v1/transfers", tags=["tracking"])
Reader = Annotated[Actor, Depends(deps.acting(Action.TRANSFER_READ))]
Ctx = Annotated[Context, Depends(deps.context)]
HEARTBEAT_SECONDS = 15
RECHECK_SECONDS = 5
#: Ids below the last one sent that are read again: on PostgreSQL a row's
#: id is taken at its insert, so a transaction that commits later than
#: another with a higher id shows its step after that one (never skipped).
REREAD_IDS = 256


def _out(step: Step) -> TransferEventOut:
    return TransferEventOut.model_validate(step, from_attributes=True)


@router.get("/{transfer_id}/events", summary="Each recipient's timeline of a transfer")
def events(
    transfer_id: str, actor: Reader, request: Request, ctx: Ctx,
    after: Annotated[int, Query(ge=0, le=MAX_DATABASE_INT,
                                description="only steps with a larger id")] = 0,
) -> list[TransferEventOut]:
    steps = deps.coffre(request).tracking.timeline(actor, transfer_id, ctx, after)
    return [_out(s) for s in steps]


@router.get(
    "/{transfer_id}/events/stream",
    summary="The timeline as Server-Sent Events (text/event-stream)",
    response_class=EventSourceResponse,
)
async def stream(
    transfer_id: str, actor: Reader, request: Request, ctx: Ctx
) -> EventSourceResponse:
    tracking = deps.coffre(request).tracking
    await to_thread.run_sync(tracking.open, actor, transfer_id, "events", ctx)
    return live_stream(
        request, Action.TRANSFER_READ, "suivi en direct",
        recheck=lambda current: tracking.check(current, transfer_id),
        fetch=lambda last: tracking.since(transfer_id, last),
        render=lambda step: _out(step).model_dump(mode="json"),
        topic=f"transfer:{transfer_id}",
    )


def live_stream(request: Request, action: Action, comment: str, *,
                recheck: Callable[[Actor], None], fetch: Callable[[int], Sequence[Any]],
                render: Callable[[Any], dict[str, Any]],
                topic: str | None = None) -> EventSourceResponse:
    """Server-Sent Events of the rows ``fetch(last_id)`` returns (each with
    an ``id``), read again whenever a live event on ``topic`` (None: any)
    arrives, and at least every RECHECK_SECONDS; honours ``Last-Event-ID``; every
    RECHECK_SECONDS the credential is resolved again and ``recheck``ed,
    and the stream ends (event "end") once it no longer allows ``action``."""
    last_id = request.headers.get("last-event-id", "0").strip()
    valid = last_id.isascii() and last_id.isdigit() and len(last_id) <= 18
    resumed = last = int(last_id) if valid else 0
    sent: set[int] = set()  # ids sent on this connection, within the re-read window

    async def still_allowed() -> bool:
        try:
            current = await deps.resolve(request, touch=False)
            check_route(current, action)
            await to_thread.run_sync(recheck, current)
        except CoffreError:
            return False
        return True

    async def steps() -> AsyncIterator[ServerSentEvent]:
        nonlocal last
        yield ServerSentEvent(comment=comment, retry=1000)
        checked = time.monotonic()
        # Subscribed before the first read, so no step committed after it is missed.
        with contextlib.closing(deps.coffre(request).events.subscribe(topic)) as bell:
            while True:
                if time.monotonic() - checked >= RECHECK_SECONDS:
                    if not await still_allowed():
                        yield ServerSentEvent(event="end", data=json.dumps({"reason": "ended"}))
                        return
                    checked = time.monotonic()
                floor = max(resumed, last - REREAD_IDS)
                for step in await to_thread.run_sync(fetch, floor):
                    if step.id in sent:
                        continue
                    sent.add(step.id)
                    last = max(last, step.id)
                    yield ServerSentEvent(data=json.dumps(render(step)), id=str(step.id))
                sent.difference_update([i for i in sent if i <= last - REREAD_IDS])
                # Woken by a live event; the timeout is the fallback read.
                await bell.wait(max(0.0, RECHECK_SECONDS - (time.monotonic() - checked)))

    return EventSourceResponse(
        steps(),
        ping=HEARTBEAT_SECONDS,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
