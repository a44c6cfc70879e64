"""Access-control failures go to the audit trail too (SEC-29).

The use case that refused rolled its transaction back, so the denial is
recorded in a transaction of its own, after the fact.
"""

from __future__ import annotations

from coffre.audit import trail
from coffre.db.engine import Database

#: Which refusals are worth an event, by (status, kind of path).
_ACTIONS = {
    (401, "api"): "access.unauthenticated",
    (403, "api"): "access.denied",
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


def path_kind(path: str) -> str:
    if path.startswith(("/t/", "/api/v1/links/")):
        return "link"
    if path.startswith(("/setup/", "/api/v1/setup")):
        return "setup"
    if path.startswith("/backup/"):
        return "backup"
    return "api"


class DenialLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def wanted(self, status: int, path: str) -> str | None:
        """The audit action for this refusal, or None if it is not one we log."""
        return _ACTIONS.get((status, path_kind(path)))

    def record(self, action: str, status: int, method: str, route: str | None,
               reason: str, ctx: trail.Context) -> None:
        with self.db.session() as session:
            trail.record(
                session, action, actor=None, organisation_id=None, outcome="failure",
                context=ctx, status=status, method=method, route=route, reason=reason,
            )
