"""Append events to the audit trail (SEC-29, SEC-30).

Each event is RFC 8785 canonical JSON: actor, organisation, action, object,
outcome, source address, user agent, UTC ISO 8601 time and details. Its
leaf hash is the RFC 9162 one, SHA-256(0x00 || payload), and the chain
runs over leaf hashes (hash = SHA-256(previous hash || leaf hash)), so a
payload pruned by retention leaves the chain and every Merkle proof intact.

Those hashes are public: anyone who can write the database can recompute
them. Each row therefore also carries a keyed seal, ``mac`` =
HMAC-SHA256(K, label || previous seal || seq || leaf hash || time || action
|| organisation), K derived from the audit signing key (see
``coffre.crypto.signing``) and never stored in the database. Without K no
row can be forged, inserted, moved, or have its time, action or
organisation changed, even once its payload is pruned. The key is bound to
a database engine with ``authenticate`` (``AuditLog`` does it); an engine
without one writes unsealed rows, which the verifier reports.

Never log a secret, a token or file content. JSON escapes CR, LF and the
other C0 controls (ESC of ANSI sequences included); what JSON leaves raw
and a terminal or an editor would still act on (DEL, C1 controls, Unicode
line separators and bidirectional overrides) is written as a visible
``\\uXXXX`` text before canonicalisation (SEC-30).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785
from sqlalchemy import event as sa_event
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from coffre.db.tables import AuditEvent

GENESIS = "0" * 64
MAX_SAFE_INTEGER = 2**53 - 1
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


@dataclass(frozen=True)
class Context:
    """Where a request came from."""

    source: str | None = None
    user_agent: str | None = None


def neutralise(value: Any) -> Any:
    """``value`` with every string made inert (see the module docstring) and
    integers JSON cannot carry exactly turned into strings."""
    if isinstance(value, str):
        return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, dict):
        return {str(neutralise(k)): neutralise(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [neutralise(v) for v in items]
    if isinstance(value, float):
        return value
    return neutralise(str(value))


def canonical_json(value: Any) -> str:
    """RFC 8785 (JCS) canonical JSON of ``value``, strings neutralised."""
    return rfc8785.dumps(neutralise(value)).decode()


def leaf_hash(payload: str) -> str:
    """RFC 9162 leaf hash of a stored payload, hex."""
    return hashlib.sha256(b"\x00" + payload.encode()).hexdigest()


def chain_hash(prev_hash: str, leaf: str) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + bytes.fromhex(leaf)).hexdigest()


def utc_iso(time: datetime) -> str:
    return time.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


MAC_LABEL = b"coffre/v1/audit-row\x00"
_STORED = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
_MAC_KEYS: weakref.WeakKeyDictionary[Engine, bytes] = weakref.WeakKeyDictionary()


def authenticate(engine: Engine, key: bytes) -> None:
    """Seal every event appended through ``engine`` with ``key``."""
    _MAC_KEYS[engine] = key


def instant(value: object) -> str:
    """A stored ``time`` (aware or naive UTC datetime, or SQLite's text) as
    the UTC ISO 8601 text the seal covers."""
    if isinstance(value, str) and _STORED.fullmatch(value):  # SQLite's text, the hot path
        return value.replace(" ", "T") + "Z"
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return utc_iso(when if when.tzinfo is not None else when.replace(tzinfo=UTC))


def canonical_time(value: object) -> bool:
    """Whether a raw ``time`` value (read without the ORM) is in the one form
    the application stores: SQLite's text ``YYYY-MM-DD HH:MM:SS.ffffff``, a
    naive datetime on PostgreSQL. The seal covers the instant only: another
    spelling of it (``T``, an offset) would pass the seal but be read
    differently by SQL filters and the ORM, so the verifier and the
    checkpoint job refuse it."""
    if isinstance(value, datetime):
        return value.tzinfo is None
    if not isinstance(value, str) or not _STORED.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def stored_time(value: object) -> datetime:
    """A canonical stored ``time`` as an aware UTC datetime."""
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _field(value: str | None) -> bytes:
    if value is None:
        return b"\x00"
    data = value.encode()
    return b"\x01" + len(data).to_bytes(4, "big") + data


def row_mac(key: bytes, prev_mac: str | None, seq: int, leaf: str, time: object,
            action: str, organisation: str | None) -> str:
    """The seal of one row, chained on the previous row's (GENESIS first)."""
    message = b"".join((MAC_LABEL, bytes.fromhex(prev_mac or GENESIS), seq.to_bytes(8, "big"),
                        bytes.fromhex(leaf), _field(instant(time)), _field(action),
                        _field(organisation)))
    return hmac.digest(key, message, "sha256").hex()


def same_mac(stored: str | None, expected: str) -> bool:
    return stored is not None and hmac.compare_digest(stored, expected)


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
    """Append one event in the caller's transaction: chained when it
    commits, gone if it rolls back."""
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
        "time": utc_iso(time),
        "details": details or None,
    }
    payload = canonical_json(body)
    event = AuditEvent(
        time=time,
        organisation_id=organisation_id,
        action=action,
        payload=payload,
        leaf_hash=leaf_hash(payload),
    )
    session.info.setdefault(_PENDING, []).append(event)
    return event


_PENDING = "coffre.audit.pending"


def _append_pending(session: Session) -> None:
    """Chain the transaction's events at its commit, under the chain's lock.

    Appending last matters on PostgreSQL: the lock is held to the commit,
    and a transaction holding it must not then wait for a row another
    holds (which may itself be waiting for the lock: a deadlock)."""
    pending: list[AuditEvent] = session.info.pop(_PENDING, [])
    if not pending:
        return
    lock_chain(session)
    last = session.execute(
        select(AuditEvent.seq, AuditEvent.hash, AuditEvent.mac)
        .order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    # Numbered here, not by a PostgreSQL sequence: a rolled-back append
    # would burn a number, a hole the verifier reports as a deleted event.
    seq, prev, prev_mac = (last.seq, last.hash, last.mac) if last else (0, GENESIS, GENESIS)
    bind = session.get_bind()
    key = _MAC_KEYS.get(bind if isinstance(bind, Engine) else bind.engine)
    for event in pending:
        seq += 1
        event.seq, event.prev_hash = seq, prev
        event.hash = prev = chain_hash(prev, event.leaf_hash)
        if key is not None:
            event.mac = prev_mac = row_mac(key, prev_mac, seq, event.leaf_hash, event.time,
                                           event.action, event.organisation_id)
        session.add(event)
    session.flush()


def _forget_pending(session: Session, _transaction: Any = None) -> None:
    session.info.pop(_PENDING, None)


sa_event.listen(Session, "before_commit", _append_pending)
sa_event.listen(Session, "after_soft_rollback", _forget_pending)


#: The PostgreSQL advisory lock key serialising appends to the chain.
CHAIN_LOCK = 0x636F66667265  # "coffre"


def lock_chain(session: Session) -> None:
    """Serialise appends across instances until the caller's transaction
    ends, so two never chain onto the same head (a fork). SQLite needs
    nothing: every write transaction begins IMMEDIATE, holding the
    database's one write lock. Taken before the head is read: on
    PostgreSQL (READ COMMITTED) that read then sees the last append."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK})


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    reason: str


def verify_chain(session: Session) -> ChainProblem | None:
    """The first event whose content, leaf hash, link or seal (when the
    session's engine has its key) is wrong, or None (the rows alone;
    ``coffre.audit.verify`` adds the signed checkpoints)."""
    from coffre.audit.verify import verify_rows

    bind = session.get_bind()
    key = _MAC_KEYS.get(bind if isinstance(bind, Engine) else bind.engine)
    problem = verify_rows(session.connection(), key)
    return None if problem is None else ChainProblem(problem.seq or 0, problem.reason)


def decode(seq: int, action: str, payload: str | None) -> dict[str, Any]:
    """One stored event as a dict; a pruned one keeps only its seq and action."""
    if payload is None:
        return {"seq": seq, "action": action, "pruned": True}
    return {"seq": seq, **json.loads(payload)}


def _rows(session: Session, action: str | None) -> Iterator[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.seq)
    if action:
        query = query.where(AuditEvent.action == action)
    yield from session.execute(query).scalars()


def events(session: Session, action: str | None = None) -> list[dict[str, Any]]:
    """Decoded events, oldest first (for the API, the CLI and tests)."""
    return [decode(e.seq, e.action, e.payload) for e in _rows(session, action)]


def chained_events(session: Session, action: str | None = None) -> list[dict[str, Any]]:
    """Events with what a verifier needs: the stored payload and its links."""
    return [
        {
            "seq": e.seq,
            "leaf_hash": e.leaf_hash,
            "prev_hash": e.prev_hash,
            "hash": e.hash,
            "event": None if e.payload is None else json.loads(e.payload),
        }
        for e in _rows(session, action)
    ]
