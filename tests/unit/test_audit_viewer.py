"""The administrators' audit viewer: their organisation's events only,
newest first, filtered; and the integrity check it offers, recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from coffre.audit import trail
from coffre.audit.log import AuditLog
from coffre.clock import FrozenClock
from coffre.crypto.signing import SigningKeyFile
from coffre.db.engine import Database
from coffre.db.migrate import upgrade
from coffre.domain.accounts import Actor, Role
from coffre.errors import NotFound

START = datetime(2026, 1, 1, tzinfo=UTC)
ADMIN = Actor("admin1", "org", Role.ADMIN, mfa=True)


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    db = Database(url)
    log = AuditLog(db, SigningKeyFile(tmp_path / "keys" / "audit-signing.key"),
                   FrozenClock(START), origin="test.local/coffre/audit",
                   retention=timedelta(days=365))  # first: it seals what follows
    with db.session() as s:
        for day, (action, actor, org, thing) in enumerate([
            ("invitation.created", "admin1", "org", "inv_1"),
            ("invitation.accepted", "user_2", "org", "inv_1"),
            ("member.disabled", "admin1", "org", "user_2"),
            ("member.disabled", "admin9", "other", "user_8"),  # another organisation
            ("contact.created", "user%_", "org", "c_%"),  # LIKE wildcards, taken literally
        ]):
            trail.record(s, action, actor=actor, organisation_id=org, object_type="thing",
                         object_id=thing, time=START + timedelta(days=day))
    return log


def _seqs(events: list[dict[str, object]]) -> list[object]:
    return [e["seq"] for e in events]


def test_the_viewer_shows_the_organisations_events_newest_first(log: AuditLog) -> None:
    assert _seqs(log.search(ADMIN)) == [5, 3, 2, 1]
    assert _seqs(log.search(ADMIN, before=3, limit=1)) == [2]
    assert _seqs(log.search(ADMIN, action="member.disabled")) == [3]
    assert _seqs(log.search(ADMIN, by="user_2")) == [2]
    assert _seqs(log.search(ADMIN, object_id="inv_1")) == [2, 1]
    assert _seqs(log.search(ADMIN, by="user%_", object_id="c_%")) == [5]
    assert log.search(ADMIN, by="user") == []  # whole identifiers only
    assert _seqs(log.search(ADMIN, since=START + timedelta(days=1),
                            until=START + timedelta(days=2))) == [2]
    assert log.actions(ADMIN) == ["contact.created", "invitation.accepted",
                                  "invitation.created", "member.disabled"]


def test_members_may_not_read_the_trail_nor_verify_it(log: AuditLog) -> None:
    member = Actor("user_2", "org", Role.MEMBER)
    for call in (lambda: log.search(member), lambda: log.check(member)):
        with pytest.raises(NotFound):  # as the API: hidden, not refused
            call()


def test_verifying_records_who_checked_and_the_outcome(log: AuditLog) -> None:
    log.checkpoint()
    report = log.check(ADMIN, trail.Context(source="192.0.2.1"))
    assert report.intact and report.events == 5
    assert report.latest is not None and report.latest.tree_size == 5
    newest = log.search(ADMIN, limit=1)[0]
    assert newest["action"] == "audit.verified"
    assert newest["actor"] == "admin1" and newest["outcome"] == "success"
    assert newest["details"] == {"events": 5, "checkpoints": 1, "first_bad_seq": None}

    with log.db.session() as s:  # an edit that keeps the JSON valid
        s.execute(text("UPDATE audit_events SET payload = replace(payload, 'admin1', "
                       "'admin2') WHERE seq = 1"))
    broken = log.check(ADMIN)
    assert broken.problem is not None and broken.problem.seq == 1
    newest = log.search(ADMIN, limit=1)[0]
    assert newest["outcome"] == "failure"
    assert newest["details"]["first_bad_seq"] == 1  # type: ignore[index]
