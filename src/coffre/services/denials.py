"""Access-control failures go to the audit trail too (SEC-29), aggregated.

The use case that refused rolled its transaction back, so the denial is
recorded in a transaction of its own, after the fact.

A client hammering the server must not write one audit row per refusal
(1,500 requests, 1,500 events). Refusals are kept per (source, action,
object) in
windows of ``window``, as backup sessions are: the first refusal of a
window is an event at once (an alert is not delayed), the others are
counted in memory and folded into one ``access.refusals`` event when the
window ends (``flush``, run by the scheduler and at shutdown). Each
process keeps its own windows, at most ``MAX_WINDOWS`` (past that, new
sources share one overflow window per action), so a flood costs a bounded
number of events and of memory. The source is the limits' bucket (an
IPv6 /64 is one source, ``domain.addresses``); the events name the exact
address of the window's first refusal.

Services refuse through it too where an anonymous guess would otherwise
write one event per try: unknown, used or expired password-reset links
(``password.reset_invalid``/``password.reset_expired``, with the link when
it is known).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from coffre.audit import trail
from coffre.db.engine import Database
from coffre.domain.addresses import throttle_bucket
from coffre.ports import Clock

#: Which refusals are worth an event, by (status, kind of path).
_ACTIONS = {
    (401, "api"): "access.unauthenticated",
    (403, "api"): "access.denied",
    # A sign-in refused by a throttle or the source's ceiling.
    (429, "api"): "access.throttled",
    (401, "link"): "access.unauthenticated",
    (403, "link"): "access.denied",
    (404, "link"): "link.unknown",
    (404, "setup"): "setup.unknown",
    (410, "setup"): "setup.reused",
    (429, "link"): "access.throttled",
    # restic's REST backend: a wrong credential, or one locked out. Its
    # other refusals (a delete in an append-only repository, another
    # device's repository) are counted in the backup session instead.
    (401, "backup"): "access.unauthenticated",
    (429, "backup"): "access.throttled",
}
AGGREGATE = "access.refusals"
#: Open windows per process at most; then one overflow window per action.
MAX_WINDOWS = 10_000
#: Distinct routes named in an aggregate event at most.
MAX_ROUTES = 20
OVERFLOW = "*"


def path_kind(path: str) -> str:
    if path.startswith(("/t/", "/api/v1/links/")):
        return "link"
    if path.startswith(("/setup/", "/api/v1/setup")):
        return "setup"
    if path.startswith("/backup/"):
        return "backup"
    return "api"


@dataclass(frozen=True)
class Refused:
    """What a refusal was about, when a service knows it (a link)."""

    object_type: str | None = None
    object_id: str | None = None
    organisation_id: str | None = None
    #: Extra details of the first event (e.g. the link's state).
    details: tuple[tuple[str, str], ...] = ()


@dataclass
class _Window:
    key: tuple[str, str, str]
    action: str
    started: datetime
    context: trail.Context
    about: Refused = field(default_factory=Refused)
    #: Refusals after the first (which was recorded at once).
    folded: int = 0
    last: datetime | None = None
    routes: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)


class DenialLog:
    def __init__(self, db: Database, clock: Clock, *,
                 window: timedelta = timedelta(minutes=1)) -> None:
        self.db = db
        self.clock = clock
        self.window = window
        self._windows: dict[tuple[str, str, str], _Window] = {}
        self._lock = threading.Lock()

    def wanted(self, status: int, path: str) -> str | None:
        """The audit action for this refusal, or None if it is not one we log."""
        return _ACTIONS.get((status, path_kind(path)))

    def record(self, action: str, status: int, method: str | None, route: str | None,
               reason: str, ctx: trail.Context, about: Refused | None = None) -> None:
        """An event at once for the first refusal of a window; the others
        are counted towards its aggregate event."""
        now = self.clock.now()
        about = about or Refused()
        with self._lock:
            key = (throttle_bucket(ctx.source) or "-", action, about.object_id or "")
            shared = ctx
            if key not in self._windows and len(self._windows) >= MAX_WINDOWS:
                key, shared, about = (OVERFLOW, action, ""), trail.Context(None, None), Refused()
            current = self._windows.get(key)
            closed = None
            if current is not None and now - current.started < self.window:
                current.folded += 1
                current.last = now
                _tally(current.routes, route or "-", MAX_ROUTES)
                _tally(current.statuses, str(status), MAX_ROUTES)
                return
            if current is not None:
                closed = self._windows.pop(key)
            self._windows[key] = _Window(key, action, now, shared, about)
        with self.db.session() as session:
            if closed is not None:
                self._aggregate(session, closed)
            trail.record(
                session, action, actor=None, organisation_id=about.organisation_id,
                object_type=about.object_type, object_id=about.object_id, outcome="failure",
                context=ctx, status=status, method=method, route=route, reason=reason,
                **_details(about),
            )

    def flush(self, *, everything: bool = False) -> int:
        """Close the windows that have ended (all of them with
        ``everything``, at shutdown) into their aggregate events."""
        now = self.clock.now()
        with self._lock:
            ended = [key for key, w in self._windows.items()
                     if everything or now - w.started >= self.window]
            closed = [self._windows.pop(key) for key in ended]
        closed = [w for w in closed if w.folded]
        if not closed:
            return 0
        try:
            with self.db.session() as session:
                for window in closed:
                    self._aggregate(session, window)
        except Exception:
            with self._lock:  # kept for the next flush
                for window in closed:
                    self._windows.setdefault(window.key, window)
            raise
        return len(closed)

    @staticmethod
    def _aggregate(session: Session, window: _Window) -> None:
        if not window.folded:
            return
        trail.record(
            session, AGGREGATE, actor=None, organisation_id=window.about.organisation_id,
            object_type=window.about.object_type, object_id=window.about.object_id,
            outcome="failure", context=window.context, refused=window.action,
            count=window.folded,
            started_at=trail.utc_iso(window.started),
            ended_at=trail.utc_iso(window.last or window.started),
            routes=window.routes, statuses=window.statuses,
        )


def _details(about: Refused) -> dict[str, Any]:
    return dict(about.details)


def _tally(counts: dict[str, int], key: str, most: int) -> None:
    if key in counts or len(counts) < most:
        counts[key] = counts.get(key, 0) + 1
    else:
        counts["other"] = counts.get("other", 0) + 1
