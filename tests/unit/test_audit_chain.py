"""The audit trail's hash chain detects altered, removed and reordered
events (SEC-31) and escapes what it stores (SEC-30)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import delete, select, update

from coffre.audit import trail
from coffre.db.engine import Database
from coffre.db.migrate import upgrade
from coffre.db.tables import AuditEvent


def _db(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    db = Database(url)
    with db.session() as s:
        for i in range(5):
            trail.record(s, "test.event", actor=f"u{i}", organisation_id="o",
                         object_type="thing", object_id=str(i))
    return db


def test_intact_chain_verifies(tmp_path: Path) -> None:
    db = _db(tmp_path)
    with db.session() as s:
        assert trail.verify_chain(s) is None


def test_altered_event_is_reported(tmp_path: Path) -> None:
    db = _db(tmp_path)
    with db.session() as s:
        row = s.execute(select(AuditEvent).where(AuditEvent.seq == 3)).scalar_one()
        s.execute(update(AuditEvent).where(AuditEvent.seq == 3)
                  .values(payload=row.payload.replace("u2", "u9")))
    with db.session() as s:
        problem = trail.verify_chain(s)
    assert problem is not None and problem.seq == 3


def test_removed_event_is_reported(tmp_path: Path) -> None:
    db = _db(tmp_path)
    with db.session() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
    with db.session() as s:
        problem = trail.verify_chain(s)
    assert problem is not None and problem.seq == 3


def test_log_injection_is_escaped(tmp_path: Path) -> None:
    db = _db(tmp_path)
    with db.session() as s:
        event = trail.record(s, "login.failed", actor=None, organisation_id=None,
                             context=trail.Context("127.0.0.1", "evil\r\n\x1b[31mfake"))
        payload = event.payload
    assert "\r" not in payload and "\n" not in payload and "\x1b" not in payload
    assert json.loads(payload)["user_agent"] == "evil\r\n\x1b[31mfake"
