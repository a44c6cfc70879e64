"""The audit viewer for administrators: the organisation's events, newest
first, each as a sentence (``audit_sentences``) with its raw record behind
"Details", filtered by category (sign-ins and security, transfers...),
actor, object and dates, a page at a time; and
"verify integrity", the same check as ``coffre audit verify`` (every
event, the chain, the signed checkpoints and the witness file), which
leaves an ``audit.verified`` event naming who checked and the outcome.

Event content is shown escaped (Jinja autoescape), never interpreted.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from anyio import to_thread
from fastapi import Depends, Query, Request, Response

from coffre.audit.trail import Context
from coffre.audit.verify import Report
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action
from coffre.http import deps
from coffre.http.web import audit_sentences as sentences
from coffre.http.web import guard
from coffre.http.web.admin_pages import tabs
from coffre.http.web.templating import page_router, render
from coffre.services import audit_names

router = page_router()
Ctx = Annotated[Context, Depends(deps.context)]
PAGE = 50
#: The largest sequence number the database holds (a signed 64-bit integer).
MAX_SEQ = 2**63 - 1
_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
Auditor = Annotated[Actor, Depends(guard.page(Action.AUDIT_READ))]


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _start(day: date | None) -> datetime | None:
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)


def _end(day: date | None) -> datetime | None:
    """The end of ``day`` (the filter's last day is included); none for the last one."""
    return None if day is None or day == date.max else _start(day + timedelta(days=1))


def _page(request: Request, actor: Actor, filters: dict[str, str], before: int | None,
          report: Report | None = None) -> Response:
    app = deps.coffre(request)
    log = app.audit
    members = app.organisations.members(actor)
    names = {m.id: m.email for m in members}
    since, until = _day(filters["since"]), _day(filters["until"])
    thing = filters["object"] if _ID.match(filters["object"]) else None
    category = filters["category"] if filters["category"] in sentences.CATEGORIES else ""
    events = log.search(
        actor, before=before, limit=PAGE + 1, action=filters["action"] or None,
        actions=sentences.actions_of(category) if category else None,
        by=filters["actor"] if filters["actor"] in names else None, object_id=thing,
        since=_start(since), until=_end(until))
    more = len(events) > PAGE
    events = [_timed(e) for e in events[:PAGE]]
    people, files = audit_names.names(
        app.db, app.keys, actor, {p for e in events if (p := sentences.person_id(e))},
        {f for e in events for f in sentences.file_ids(e)})
    known = sentences.Names(
        members={m.id: m.display_name or m.email for m in members},
        people=people, files=files)
    for event in events:
        event["sentence"] = sentences.describe(event, known)
        event["category"] = sentences.category_of(str(event.get("action")))
    return render(request, "admin/audit.html", {
        "tabs": tabs("/admin/audit"), "events": events, "names": names, "members": members,
        "categories": sentences.CATEGORIES, "filters": filters, "before": before,
        "older": events[-1]["seq"] if more and events else None,
        "filtered": any(filters.values()), "report": report,
    }, actor=actor)


def _timed(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its payload's time as a datetime (``when``), for display."""
    stamp = event.get("time")
    try:
        when = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        when = None
    return {**event, "when": when}


def _filters(action: str, by: str, thing: str, since: str, until: str,
             category: str = "") -> dict[str, str]:
    return {"action": action.strip(), "actor": by.strip(), "object": thing.strip(),
            "since": since.strip(), "until": until.strip(), "category": category.strip()}


@router.get("/admin/audit")
def audit(request: Request, actor: Auditor,
          action: Annotated[str, Query(max_length=64)] = "",
          by: Annotated[str, Query(max_length=64)] = "",
          object: Annotated[str, Query(max_length=64)] = "",
          since: Annotated[str, Query(max_length=10)] = "",
          until: Annotated[str, Query(max_length=10)] = "",
          category: Annotated[str, Query(max_length=20)] = "",
          before: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None) -> Response:
    return _page(request, actor, _filters(action, by, object, since, until, category), before)


@router.post("/admin/audit/verify")
async def verify(request: Request, actor: Auditor, ctx: Ctx) -> Response:
    log = deps.coffre(request).audit
    report = await to_thread.run_sync(log.check, actor, ctx)
    return await to_thread.run_sync(_page, request, actor, _filters("", "", "", "", ""), None,
                                    report)


@router.get("/admin/audit/verify")
def verify_again(request: Request, actor: Auditor) -> Response:
    """Where the language switch sends a reader of a verification's result."""
    return guard.redirect(request, "/admin/audit")
