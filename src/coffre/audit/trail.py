"""Append events to the hash-chained audit trail.

Each event is canonical JSON (sorted keys, no insignificant whitespace,
UTF-8; RFC 8785 for the value types we log) and its hash covers the
previous event's hash, so altering, removing or reordering a stored event
breaks the chain. Never log a secret, a token or file content; strings are
stored as JSON, which escapes CR, LF and ANSI control characters (SEC-30).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from coffre.db.tables import AuditEvent

GENESIS = "0" * 64


@dataclass(frozen=True)
class Context:
    """Where a request came from."""

    source: str | None = None
    user_agent: str | None = None


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(prev_hash: str, payload: str) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + payload.encode()).hexdigest()


def record(
    session: Session,
    action: str,
    *,
    actor: str | None,
    organisation_id: str | None,
    object_type: str | None = None,
    object_id: str | None = None,
    outcome: str = "success",
    context: Context | None = None,
    time: datetime | None = None,
    **details: Any,
) -> AuditEvent:
    """Append one event in the caller's transaction (it commits with it)."""
    context = context or Context()
    time = time or datetime.now(UTC)
    body = {
        "action": action,
        "actor": actor,
        "organisation": organisation_id,
        "object": {"type": object_type, "id": object_id} if object_type else None,
        "outcome": outcome,
        "source": context.source,
        "user_agent": (context.user_agent or "")[:300] or None,
        "time": time.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "details": details or None,
    }
    payload = canonical_json(body)
    last = session.execute(
        select(AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).scalar_one_or_none()
    prev = last or GENESIS
    event = AuditEvent(
        time=time,
        organisation_id=organisation_id,
        action=action,
        payload=payload,
        prev_hash=prev,
        hash=event_hash(prev, payload),
    )
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    reason: str


def verify_chain(session: Session) -> ChainProblem | None:
    """The first event whose hash or link is wrong, or None if intact."""
    prev = GENESIS
    for event in _events(session):
        if event.prev_hash != prev:
            return ChainProblem(event.seq, "link to the previous event is broken")
        if event_hash(prev, event.payload) != event.hash:
            return ChainProblem(event.seq, "event content was altered")
        prev = event.hash
    return None


def _events(session: Session) -> Iterator[AuditEvent]:
    yield from session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars()


def events(session: Session, action: str | None = None) -> list[dict[str, Any]]:
    """Decoded events, oldest first (for the API, the CLI and tests)."""
    query = select(AuditEvent).order_by(AuditEvent.seq)
    if action:
        query = query.where(AuditEvent.action == action)
    return [{"seq": e.seq, **json.loads(e.payload)} for e in session.execute(query).scalars()]


def chained_events(session: Session, action: str | None = None) -> list[dict[str, Any]]:
    """Events with what a verifier needs: the stored payload and its links."""
    query = select(AuditEvent).order_by(AuditEvent.seq)
    if action:
        query = query.where(AuditEvent.action == action)
    return [
        {"seq": e.seq, "prev_hash": e.prev_hash, "hash": e.hash, "event": json.loads(e.payload)}
        for e in session.execute(query).scalars()
    ]
