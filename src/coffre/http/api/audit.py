"""The organisation's audit trail, read-only, for its administrators (SEC-4:
the client sees the access traces, the operator's included).

Thin: parse, call ``AuditLog.read`` (which authorises and scopes every
query to the caller's organisation), render.
"""

from __future__ import annotations

from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request

from coffre.audit.log import MAX_PAGE
from coffre.domain.accounts import Actor
from coffre.domain.limits import MAX_DATABASE_INT
from coffre.domain.policy import Action
from coffre.http import deps

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
Reader = Annotated[Actor, Depends(deps.acting(Action.AUDIT_READ))]


@router.get("/events", summary="The organisation's audit events, oldest first")
async def events(
    actor: Reader,
    request: Request,
    after: Annotated[int, Query(ge=0, le=MAX_DATABASE_INT,
                                description="only events with a larger seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    action: Annotated[str | None, Query(max_length=64, description="only this action")] = None,
) -> dict[str, Any]:
    log = deps.coffre(request).audit
    found = await to_thread.run_sync(
        lambda: log.read(actor, after=after, limit=limit, action=action))
    return {"events": found, "next_after": found[-1]["seq"] if found else after}
