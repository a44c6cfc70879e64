"""The audit trail finds altered, removed, inserted and reordered events,
even when an attacker recomputes every later hash (signed checkpoints),
keeps its proofs valid through retention pruning, and escapes what it
stores (SEC-29 to SEC-32)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rfc8785
from sqlalchemy import delete, func, select, text, update

from coffre.audit import trail
from coffre.audit.log import AuditLog, verify_export
from coffre.audit.note import SEALS_EXTENSION, Checkpoint, open_checkpoint, sign
from coffre.audit.verify import reference_leaves
from coffre.clock import FrozenClock
from coffre.crypto.signing import SigningKeyFile
from coffre.db.engine import Database
from coffre.db.migrate import upgrade
from coffre.db.tables import AuditCheckpoint, AuditEvent
from coffre.errors import IntegrityError

START = datetime(2026, 1, 1, tzinfo=UTC)


def _db(tmp_path: Path, count: int = 5) -> Database:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    db = Database(url)
    _log(db, tmp_path)  # binds the seal key: every event below is sealed
    _add(db, 0, count)
    return db


def _add(db: Database, start: int, count: int, time: datetime = START) -> None:
    with db.session() as s:
        for i in range(start, start + count):
            trail.record(s, "test.event", actor=f"u{i}", organisation_id="o",
                         object_type="thing", object_id=str(i), time=time + timedelta(hours=i))


def _log(db: Database, tmp_path: Path, clock: FrozenClock | None = None) -> AuditLog:
    return AuditLog(db, SigningKeyFile(tmp_path / "keys" / "audit-signing.key"),
                    clock or FrozenClock(START), origin="test.local/coffre/audit",
                    retention=timedelta(days=365))


def _sql(db: Database, statement: str, **params: object) -> None:
    with db.session() as s:
        s.execute(text(statement), params)


def _problem(log: AuditLog, **kwargs: object) -> tuple[int | None, str]:
    report = log.verify(**kwargs)  # type: ignore[arg-type]
    assert report.problem is not None, "tampering went unnoticed"
    return report.problem.seq, report.problem.reason


def test_intact_chain_verifies(tmp_path: Path) -> None:
    db = _db(tmp_path)
    log = _log(db, tmp_path)
    assert log.checkpoint() is not None
    _add(db, 5, 3)
    with db.session() as s:
        assert trail.verify_chain(s) is None
    report = log.verify()
    assert report.intact and report.events == 8 and report.checkpoints == 1
    assert report.latest is not None and report.latest.tree_size == 5


def test_payload_is_rfc8785_with_a_leaf_hash_and_a_chain_over_leaves(tmp_path: Path) -> None:
    db = _db(tmp_path, 2)
    with db.session() as s:
        first, second = s.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars()
    assert first.payload is not None
    assert first.payload == rfc8785.dumps(json.loads(first.payload)).decode()
    assert set(json.loads(first.payload)) == {"action", "actor", "organisation", "object",
                                              "outcome", "source", "user_agent", "time",
                                              "details"}
    assert json.loads(first.payload)["time"] == "2026-01-01T00:00:00.000000Z"
    assert first.leaf_hash == trail.leaf_hash(first.payload)
    assert second.prev_hash == first.hash == trail.chain_hash(trail.GENESIS, first.leaf_hash)


def test_altered_event_is_reported(tmp_path: Path) -> None:
    db = _db(tmp_path)
    _sql(db, "UPDATE audit_events SET payload = replace(payload, 'u2', 'u9') WHERE seq = 3")
    with db.session() as s:
        problem = trail.verify_chain(s)
    assert problem is not None and problem.seq == 3
    assert _problem(_log(db, tmp_path))[0] == 3


def test_removed_event_is_reported(tmp_path: Path) -> None:
    db = _db(tmp_path)
    with db.session() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
    seq, reason = _problem(_log(db, tmp_path))
    assert seq == 2 and "supprimé" in reason


def test_inserted_event_is_reported(tmp_path: Path) -> None:
    db = _db(tmp_path)
    # Make room at seq 3 and slip in a forged event linked to nothing real.
    _sql(db, "UPDATE audit_events SET seq = seq + 100 WHERE seq >= 3")
    _sql(db, "UPDATE audit_events SET seq = seq - 99 WHERE seq >= 100")
    payload = trail.canonical_json({"action": "test.event", "organisation": "o"})
    leaf = trail.leaf_hash(payload)
    _sql(db, "INSERT INTO audit_events (seq, time, organisation_id, action, payload, leaf_hash, "
             "prev_hash, hash) VALUES (3, '2026-01-01 00:00:00.000000', 'o', 'test.event', "
             ":payload, :leaf, :prev, :hash)",
         payload=payload, leaf=leaf, prev="f" * 64, hash=trail.chain_hash("f" * 64, leaf))
    seq, reason = _problem(_log(db, tmp_path))
    assert seq == 3 and "lien" in reason


def test_swapped_events_are_reported(tmp_path: Path) -> None:
    db = _db(tmp_path)
    with db.session() as s:
        rows = {e.seq: (e.payload, e.leaf_hash, e.prev_hash, e.hash)
                for e in s.execute(select(AuditEvent)).scalars()}
    # Park both rows' unique hashes elsewhere first, then swap their contents.
    _sql(db, "UPDATE audit_events SET prev_hash = 'x' || seq, hash = 'y' || seq "
             "WHERE seq IN (2, 4)")
    for seq, other in ((2, 4), (4, 2)):
        payload, leaf, prev, hash_ = rows[other]
        _sql(db, "UPDATE audit_events SET payload = :p, leaf_hash = :l, prev_hash = :pr, "
                 "hash = :h WHERE seq = :s", p=payload, l=leaf, pr=prev, h=hash_, s=seq)
    assert _problem(_log(db, tmp_path))[0] == 2


def _rewrite_history(db: Database, victim: int, reseal: bytes | None = None) -> None:
    """An attacker with write access to the database edits one event and
    recomputes every later leaf and chain hash; with ``reseal`` (the seal
    key: an attacker who also read the key file) every seal too, so that
    the rows alone look intact."""
    with db.session() as s:
        events = list(s.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())
        prev = mac = trail.GENESIS
        # unique columns: park every link first
        s.execute(text("UPDATE audit_events SET prev_hash = 'p' || seq, hash = 'h' || seq"))
        for event in events:
            payload = event.payload
            assert payload is not None
            if event.seq == victim:
                payload = payload.replace('"success"', '"failure"')
            leaf = trail.leaf_hash(payload)
            chained = trail.chain_hash(prev, leaf)
            if reseal is not None:
                mac = trail.row_mac(reseal, mac, event.seq, leaf, event.time, event.action,
                                    event.organisation_id)
            s.execute(update(AuditEvent).where(AuditEvent.seq == event.seq).values(
                payload=payload, leaf_hash=leaf, prev_hash=prev, hash=chained,
                mac=mac if reseal is not None else event.mac))
            prev = chained


def test_rewritten_history_without_the_key_is_named_by_its_seal(tmp_path: Path) -> None:
    """SEC-31 (issue 15, finding 1): recomputing the public hashes is not
    enough without the seal key: the exact event is named, and nothing
    signs over it."""
    db = _db(tmp_path, 4)
    log = _log(db, tmp_path)
    log.checkpoint()
    _add(db, 4, 6)
    _rewrite_history(db, victim=9)  # in the unsigned tail
    seq, reason = _problem(log)
    assert seq == 9 and "sceau" in reason
    with pytest.raises(IntegrityError):
        log.checkpoint()
    assert _checkpoint_sizes(db) == [4]


def test_rewritten_history_is_caught_by_the_signed_checkpoints(tmp_path: Path) -> None:
    """SEC-31: an attacker who also read the seal key reseals every row: the
    rows verify, but the signed roots no longer match."""
    db = _db(tmp_path, 4)
    log = _log(db, tmp_path)
    log.checkpoint()
    _add(db, 4, 4)
    log.checkpoint()
    _add(db, 8, 2)
    _rewrite_history(db, victim=6, reseal=log.key.mac_key)
    with db.session() as s:
        assert trail.verify_chain(s) is None  # the chain alone was fooled
    seq, reason = _problem(log)
    assert seq == 5 and "réécrit" in reason  # first event after the last good checkpoint
    with pytest.raises(IntegrityError):  # and nothing signs over it (the alert)
        log.checkpoint()


def test_rewritten_history_is_pinpointed_with_an_earlier_export(tmp_path: Path) -> None:
    db = _db(tmp_path, 8)
    log = _log(db, tmp_path)
    exported = list(log.export())
    _rewrite_history(db, victim=6)
    seq, _ = _problem(log, reference=reference_leaves(exported[1:]))
    assert seq == 6


def test_checkpoints_kept_outside_the_host_still_catch_it(tmp_path: Path) -> None:
    """The limit of the witness file: an attacker who can write the database
    *and* the keys directory deletes the stored checkpoints and the witness
    file; only a copy kept elsewhere still catches the rewrite."""
    db = _db(tmp_path, 6)
    log = _log(db, tmp_path)
    signed = log.checkpoint()
    assert signed is not None
    _rewrite_history(db, victim=2, reseal=log.key.mac_key)
    _sql(db, "DELETE FROM audit_checkpoints")
    log.witness.path.unlink()
    assert log.verify().intact  # nothing left on this host to compare with
    seq, _ = _problem(log, witness_notes=[signed.note])
    assert seq == 1


def _checkpoint_sizes(db: Database) -> list[int]:
    with db.session() as s:
        return list(s.execute(select(AuditCheckpoint.tree_size)
                              .order_by(AuditCheckpoint.tree_size)).scalars())


def test_sec31_rewrite_after_deleting_every_stored_checkpoint_is_caught(tmp_path: Path) -> None:
    """SEC-31 (review finding): edit event 3, delete every stored
    checkpoint, recompute the chain. The witness file next to the signing
    key still holds the signed tree: verify fails and the server refuses
    to sign the forged history (the scheduler's alert)."""
    db = _db(tmp_path, 10)
    log = _log(db, tmp_path)
    assert log.checkpoint() is not None
    _rewrite_history(db, victim=3, reseal=log.key.mac_key)
    _sql(db, "DELETE FROM audit_checkpoints")
    seq, reason = _problem(log)
    assert seq == 1 and "réécrit" in reason
    with pytest.raises(IntegrityError):
        log.checkpoint()
    assert _checkpoint_sizes(db) == []  # nothing signed over the forgery


def test_sec31_rewrite_after_deleting_the_checkpoints_above_n_is_caught(tmp_path: Path) -> None:
    """SEC-31: keep the checkpoint of 4 events, delete the later one (8),
    rewrite event 6: the witnessed checkpoint of 8 still catches it."""
    db = _db(tmp_path, 4)
    log = _log(db, tmp_path)
    assert log.checkpoint() is not None
    _add(db, 4, 4)
    assert log.checkpoint() is not None
    _add(db, 8, 2)
    _sql(db, "DELETE FROM audit_checkpoints WHERE tree_size > 4")
    _rewrite_history(db, victim=6, reseal=log.key.mac_key)
    seq, reason = _problem(log)
    assert seq == 5 and "réécrit" in reason
    with pytest.raises(IntegrityError):
        log.checkpoint()
    assert _checkpoint_sizes(db) == [4]


def test_sec31_checkpoints_deleted_from_the_database_are_reported(tmp_path: Path) -> None:
    """SEC-31: stored checkpoints that shrink (the latest deleted) or vanish
    while the witness file holds them fail verification and the alert."""
    db = _db(tmp_path, 6)
    log = _log(db, tmp_path)
    assert log.checkpoint() is not None
    _add(db, 6, 2)
    assert log.checkpoint() is not None
    _sql(db, "DELETE FROM audit_checkpoints WHERE tree_size = 8")
    seq, reason = _problem(log)
    assert seq is None and "absent(s) de la base" in reason and "8" in reason
    with pytest.raises(IntegrityError):
        log.checkpoint()
    _sql(db, "DELETE FROM audit_checkpoints")
    seq, reason = _problem(log)
    assert seq is None and "tailles 6, 8" in reason
    with pytest.raises(IntegrityError):
        log.checkpoint()
    assert _checkpoint_sizes(db) == []


def test_witness_file_is_private_append_only_and_backfilled(tmp_path: Path) -> None:
    """SEC-31: each signed checkpoint is appended to keys/audit-checkpoints.txt
    (0600); a stored checkpoint the file lacks (an upgrade) is appended."""
    db = _db(tmp_path, 3)
    log = _log(db, tmp_path)
    first = log.checkpoint()
    _add(db, 3, 2)
    second = log.checkpoint()
    assert first is not None and second is not None
    path = tmp_path / "keys" / "audit-checkpoints.txt"
    assert log.witness.path == path
    assert path.stat().st_mode & 0o777 == 0o600
    assert log.witness.notes() == [first.note, second.note]
    assert log.witness.last() == second.note
    assert log.checkpoint() is None  # the tree did not grow: nothing appended
    assert log.witness.notes() == [first.note, second.note]
    report = log.verify()
    assert report.intact and report.checkpoints == 2
    path.unlink()  # an install from before the witness file
    assert log.checkpoint() is None
    assert log.witness.notes() == [second.note]
    assert log.verify().intact


def test_sec31_foreign_or_truncated_witness_file_raises_the_alert(tmp_path: Path) -> None:
    db = _db(tmp_path, 3)
    log = _log(db, tmp_path)
    assert log.checkpoint() is not None
    other = AuditLog(db, SigningKeyFile(tmp_path / "other" / "audit-signing.key"),
                     FrozenClock(START), origin="test.local/coffre/audit",
                     retention=timedelta(days=365), witness=log.witness)
    _add(db, 3, 1)
    with pytest.raises(IntegrityError):
        other.checkpoint()  # the witness file's last note is not by this key
    text_before = log.witness.path.read_text()
    log.witness.path.write_text(text_before[:text_before.rindex("\u2014")])  # no signature
    with pytest.raises(IntegrityError):
        log.checkpoint()
    seq, reason = _problem(log)
    assert seq is None and "témoin" in reason


def test_sec31_time_column_edit_is_reported(tmp_path: Path) -> None:
    """SEC-31/32 (review finding): the unhashed ``time`` column must say what
    the hashed payload says."""
    db = _db(tmp_path, 10)
    log = _log(db, tmp_path)
    _sql(db, "UPDATE audit_events SET time = '2000-01-01 00:00:00.000000' WHERE seq = 8")
    seq, reason = _problem(log)
    assert seq == 8 and "horodatage" in reason


def test_sec32_edited_time_column_does_not_steer_the_purge(tmp_path: Path) -> None:
    """SEC-32 (review finding): pushing a recent event's ``time`` column into
    the past must not let the legitimate purge erase the events up to it
    (their evidence) while the verifier says intact."""
    db = _db(tmp_path, 10)
    log = _log(db, tmp_path, FrozenClock(START + timedelta(days=30)))
    assert log.checkpoint() is not None
    _sql(db, "UPDATE audit_events SET time = '2000-01-01 00:00:00.000000' WHERE seq = 8")
    assert log.prune() == 0
    with db.session() as s:
        assert s.execute(select(func.count()).select_from(AuditEvent)
                         .where(AuditEvent.payload.is_(None))).scalar_one() == 0
    seq, reason = _problem(log)
    assert seq == 8 and "horodatage" in reason


def test_sec32_prune_bound_comes_from_the_hashed_payload_times(tmp_path: Path) -> None:
    """Only the events up to the first one whose signed time is within the
    retention period are pruned, even if later ones are older."""
    db = _db(tmp_path, 0)
    old, recent = START - timedelta(days=400), START
    for i, when in enumerate((old, old, recent, old)):
        _add(db, i, 1, when - timedelta(hours=i))
    log = _log(db, tmp_path, FrozenClock(START + timedelta(days=1)))
    assert log.prune() == 2
    with db.session() as s:
        stored = {e.seq: e.payload for e in s.execute(select(AuditEvent)).scalars()}
        (event,) = trail.events(s, "audit.pruned")
    assert [seq for seq, p in stored.items() if p is None] == [1, 2]
    assert event["details"]["up_to_seq"] == 2
    assert log.verify().intact


def test_sec32_prune_stops_at_a_payload_that_does_not_match_its_hash(tmp_path: Path) -> None:
    """An event whose payload time was edited (with the column) is not
    erased with its evidence: the purge refuses (the alert) and erases
    nothing; a tampered recent event is simply not reached."""
    db = _db(tmp_path, 8)
    clock = FrozenClock(START + timedelta(days=30))
    log = _log(db, tmp_path, clock)
    _sql(db, "UPDATE audit_events SET payload = replace(payload, '2026-01-01T07', "
             "'2000-01-01T07'), time = '2000-01-01 07:00:00.000000' WHERE seq = 8")
    assert log.prune() == 0
    assert _problem(log)[0] == 8
    clock.advance(timedelta(days=336))  # events 1..8 are now past retention
    with pytest.raises(IntegrityError):
        log.prune()
    with db.session() as s:
        assert s.execute(select(func.count()).select_from(AuditEvent)
                         .where(AuditEvent.payload.is_(None))).scalar_one() == 0
    assert _problem(log)[0] == 8


def test_truncated_trail_is_reported(tmp_path: Path) -> None:
    db = _db(tmp_path, 6)
    log = _log(db, tmp_path)
    log.checkpoint()
    _sql(db, "DELETE FROM audit_events WHERE seq >= 5")
    seq, reason = _problem(log)
    assert seq == 5 and "supprimés" in reason


def test_forged_checkpoint_is_reported(tmp_path: Path) -> None:
    db = _db(tmp_path)
    log = _log(db, tmp_path)
    log.checkpoint()
    _sql(db, "UPDATE audit_checkpoints SET note = replace(note, '\n5\n', '\n4\n')")
    seq, reason = _problem(log)
    assert seq is None and "signature" in reason


def test_erased_payload_outside_a_purge_is_reported(tmp_path: Path) -> None:
    db = _db(tmp_path)
    _sql(db, "UPDATE audit_events SET payload = NULL WHERE seq = 4")
    seq, reason = _problem(_log(db, tmp_path))
    assert seq == 4 and "purge" in reason


def test_moved_to_another_organisation_is_reported(tmp_path: Path) -> None:
    db = _db(tmp_path)
    _sql(db, "UPDATE audit_events SET organisation_id = 'other' WHERE seq = 2")
    assert _problem(_log(db, tmp_path))[0] == 2


def test_pruning_keeps_every_proof_valid(tmp_path: Path) -> None:
    """SEC-32: after a time jump, old payloads are erased, an event records
    it, and the chain, checkpoints and exported proofs all still verify."""
    db = _db(tmp_path, 6)
    clock = FrozenClock(START)
    log = _log(db, tmp_path, clock)
    before = log.checkpoint()
    assert before is not None
    exported_before = list(log.export())
    assert log.prune() == 0  # nothing is a year old yet
    clock.advance(timedelta(days=365, hours=3, minutes=30))  # events 0..3 are now too old
    assert log.prune() == 4
    with db.session() as s:
        stored = {e.seq: e.payload for e in s.execute(select(AuditEvent)).scalars()}
        pruned_events = trail.events(s, "audit.pruned")
    assert [seq for seq, p in stored.items() if p is None] == [1, 2, 3, 4]
    (event,) = pruned_events
    assert event["details"]["up_to_seq"] == 4 and event["details"]["count"] == 4
    assert event["actor"] is None and event["outcome"] == "success"
    report = log.verify(witness_notes=[before.note])
    assert report.intact and report.pruned == 4
    assert log.checkpoint() is not None
    assert verify_export(exported_before, log.public_key).problem is None
    after = list(log.export())
    check = verify_export(after, log.public_key)
    assert check.problem is None and check.count == len(after) - 1
    assert json.loads(after[1])["payload"] is None
    assert log.verify().intact


def test_export_proves_each_event_offline(tmp_path: Path) -> None:
    """SEC-29: exporting is itself recorded; each line carries its proof."""
    db = _db(tmp_path, 7)
    log = _log(db, tmp_path)
    lines = list(log.export(from_seq=2, to_seq=5, actor="admin", organisation_id="o"))
    header = json.loads(lines[0])
    assert header["tree_size"] == 8 and header["count"] == 4
    assert [json.loads(line)["seq"] for line in lines[1:]] == [2, 3, 4, 5]
    check = verify_export(lines, log.public_key)
    assert check.problem is None and check.count == 4
    with db.session() as s:
        (exported,) = trail.events(s, "audit.exported")
    assert exported["details"]["from_seq"] == 2 and exported["actor"] == "admin"
    forged = [*lines[:2], lines[2].replace("u2", "u7"), *lines[3:]]
    assert verify_export(forged, log.public_key).problem.seq == 3  # type: ignore[union-attr]
    other = SigningKeyFile(tmp_path / "other.key")
    assert verify_export(lines, other.public_key).problem is not None


def test_export_since_a_date(tmp_path: Path) -> None:
    db = _db(tmp_path, 6)
    log = _log(db, tmp_path)
    lines = list(log.export(since=START + timedelta(hours=4)))
    seqs = [json.loads(line)["seq"] for line in lines[1:]]
    assert seqs[:2] == [5, 6]
    assert verify_export(lines, log.public_key).problem is None


@pytest.mark.parametrize("hostile", [
    "evil\r\n\x1b[31mfake", "x\x9b31mC1", "bidi\u202egpj.exe", "line\u2028sep", "del\x7f"])
def test_log_injection_is_escaped(tmp_path: Path, hostile: str) -> None:
    """SEC-30: no raw CR, LF, ESC, C1, DEL, line separator or bidi override."""
    db = _db(tmp_path, 1)
    with db.session() as s:
        event = trail.record(s, "login.failed", actor=None, organisation_id=None,
                             context=trail.Context("127.0.0.1", hostile), name=hostile)
        payload = event.payload
    assert payload is not None
    for raw in "\r\n\x1b\x9b\x7f\u202e\u2028":
        assert raw not in payload
    decoded = json.loads(payload)
    for raw in "\x9b\x7f\u202e\u2028":
        assert raw not in decoded["user_agent"] and raw not in decoded["details"]["name"]
    if "\x1b" in hostile:
        assert decoded["user_agent"] == hostile  # C0 controls: JSON escapes, value intact


def test_unsafe_integers_become_strings(tmp_path: Path) -> None:
    assert trail.canonical_json({"n": 2**60}) == '{"n":"1152921504606846976"}'


def test_an_issue_2_trail_upgrades_and_verifies(tmp_path: Path) -> None:
    """Migration 0002 re-links events written with the old chain
    (SHA-256 over the previous hash and the payload) over leaf hashes."""
    import hashlib

    from alembic import command

    from coffre.db.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0001")
    prev = trail.GENESIS
    db = Database(url)
    for i in range(4):
        payload = json.dumps({"action": "auth.login", "actor": f"u{i}", "organisation": "o",
                              "time": "2026-11-01T00:00:00.000000Z"},
                             sort_keys=True, separators=(",", ":"))
        old_hash = hashlib.sha256(prev.encode() + b"\n" + payload.encode()).hexdigest()
        _sql(db, "INSERT INTO audit_events (time, organisation_id, action, payload, prev_hash, "
                 "hash) VALUES ('2026-11-01 00:00:00.000000', 'o', 'auth.login', :p, :prev, :h)",
             p=payload, prev=prev, h=old_hash)
        prev = old_hash
    db.dispose()
    upgrade(url)
    db = Database(url)
    log = _log(db, tmp_path)
    assert log.adopt_legacy() == 4  # migration 0008: sealed at the first start
    assert log.adopted_on_trust() == (1, 4)  # no signed checkpoint covered them
    _add(db, 10, 2)  # new events chain on after the migrated ones
    assert log.checkpoint() is not None
    report = log.verify()
    assert report.intact and report.events == 7


def _unseal(db: Database, log: AuditLog | None = None) -> None:
    """The trail as an install from before migration 0008 left it (with
    ``log``: its checkpoints too, signed without the seals extension)."""
    _sql(db, "UPDATE audit_events SET mac = NULL")
    if log is None:
        return
    notes = []
    with db.session() as s:
        for row in s.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size)
                             ).scalars():
            cp = open_checkpoint(row.note, log.public_key)
            row.note = sign(Checkpoint(cp.origin, cp.tree_size, cp.root_hash), cp.origin,
                            log.public_key, log.key.sign)
            notes.append(row.note + "\n")
    log.witness.path.write_text("".join(notes))


def test_upgrade_seals_the_trail_a_checkpoint_covers(tmp_path: Path) -> None:
    """Migration 0008: the first start seals rows written before seals
    existed, after checking them against the signed checkpoint, and names
    those after it (sealed on trust) in its ``audit.adopted`` event."""
    db = _db(tmp_path, 5)
    log = _log(db, tmp_path)
    assert log.checkpoint() is not None
    _add(db, 5, 2)
    _unseal(db, log)
    assert not log.verify().intact  # unsealed rows never verify
    with pytest.raises(IntegrityError):
        log.checkpoint()
    assert log.adopt_legacy() == 7
    assert log.adopt_legacy() == 0  # once
    assert log.adopted_on_trust() == (6, 7)
    with db.session() as s:
        (adopted,) = trail.events(s, "audit.adopted")
    assert adopted["details"]["signed_up_to"] == 5 and adopted["details"]["sealed"] == 7
    assert log.verify().intact
    assert log.checkpoint() is not None
    assert log.sealed() is not None and log.sealed().adopted == 8  # type: ignore[union-attr]
    _unseal(db)  # seals stripped to have the trail sealed again: a second adoption
    assert log.adopt_legacy() == 0  # refused: the marker outside the database says sealed
    seq, reason = _problem(log)
    assert seq == 1 and "sans sceau" in reason
    with pytest.raises(IntegrityError):
        log.checkpoint()
    log.marker.path.unlink()  # only someone who can write the key directory could
    assert log.adopt_legacy() == 0  # the signed checkpoint of 8 carries the seals extension
    _unseal(db, log)  # ... unless checkpoints are re-signed too: someone with the key
    assert log.adopt_legacy() == 8  # sealed again, but the database's adoption (8)
    seq, reason = _problem(log)      # is not the new marker's (9)
    assert seq == 8 and "marqueur de scellement" in reason


def test_upgrade_refuses_to_seal_a_rewritten_trail(tmp_path: Path) -> None:
    """An insider who rewrites the trail just before the upgrade does not
    get it sealed: the signed checkpoint no longer matches."""
    db = _db(tmp_path, 5)
    log = _log(db, tmp_path)
    assert log.checkpoint() is not None
    _unseal(db, log)
    _rewrite_history(db, victim=3)
    assert log.adopt_legacy() == 0
    with db.session() as s:
        assert s.execute(select(func.count()).select_from(AuditEvent)
                         .where(AuditEvent.mac.is_not(None))).scalar_one() == 0
    assert not log.verify().intact


def test_cli_prints_logged_values_inert() -> None:
    """SEC-30: what the CLI prints from the trail cannot move the cursor,
    clear the screen or start a new line."""
    from coffre.cli.audit import printable

    shown = printable("a\r\nb\x1b[2J\x9bc\u202ed [red]x[/red]")
    assert shown == "a\\x0d\\x0ab\\x1b[2J\\x9bc\\u202ed [red]x[/red]"


# -- issue 15, finding 1: an insider without the key file ---------------------------


def _forge(db: Database, action: str = "test.event", mac: str | None = None,
           **details: object) -> int:
    """Append a correctly chained event with raw SQL, as an insider who can
    write the database but has no key: returns its seq."""
    with db.session() as s:
        seq, prev = s.execute(select(AuditEvent.seq, AuditEvent.hash)
                              .order_by(AuditEvent.seq.desc()).limit(1)).one()
    time = START + timedelta(days=2)
    payload = trail.canonical_json({
        "action": action, "actor": "intrus", "organisation": None, "object": None,
        "outcome": "success", "source": None, "user_agent": None,
        "time": trail.utc_iso(time), "details": details or None})
    leaf = trail.leaf_hash(payload)
    _sql(db, "INSERT INTO audit_events (seq, time, organisation_id, action, payload, leaf_hash, "
             "prev_hash, hash, mac) VALUES (:seq, :time, NULL, :action, :payload, :leaf, "
             ":prev, :hash, :mac)",
         seq=seq + 1, time="2026-01-03 00:00:00.000000", action=action, payload=payload,
         leaf=leaf, prev=prev, hash=trail.chain_hash(prev, leaf), mac=mac)
    return int(seq + 1)


@pytest.mark.parametrize("mac", [None, "copy", "0" * 64])
def test_forged_tail_is_reported_and_never_signed(tmp_path: Path, mac: str | None) -> None:
    """Finding 1 (a): rows appended at the tail, chained correctly, with no
    seal, a copied one or a made-up one: verify names the first, and the
    checkpoint job refuses to sign them (no checkpoint is stored)."""
    db = _db(tmp_path, 5)
    log = _log(db, tmp_path)
    assert log.checkpoint() is not None
    with db.session() as s:
        head_mac = s.execute(select(AuditEvent.mac).where(AuditEvent.seq == 5)).scalar_one()
    first = _forge(db, mac=head_mac if mac == "copy" else mac)
    _forge(db)
    seq, reason = _problem(log)
    assert seq == first == 6 and "sceau" in reason
    with pytest.raises(IntegrityError):
        log.checkpoint()
    assert _checkpoint_sizes(db) == [5]


def test_forged_purge_does_not_excuse_an_erased_payload(tmp_path: Path) -> None:
    """Finding 1 (b): a forged ``audit.pruned`` (plausible: covering every
    earlier event, cutoff past their times and within its retention),
    then a signed event's payload erased: both are reported."""
    db = _db(tmp_path, 6)
    log = _log(db, tmp_path)
    assert log.checkpoint() is not None
    _forge(db, "audit.pruned", up_to_seq=6, count=1, retention_days=1,
           before=trail.utc_iso(START + timedelta(days=1)))
    _sql(db, "UPDATE audit_events SET payload = NULL WHERE seq = 3")
    seq, reason = _problem(log)
    assert seq == 3 and "purge" in reason  # not a prefix: erased outside a purge
    _sql(db, "UPDATE audit_events SET payload = NULL WHERE seq <= 3")
    seq, reason = _problem(log)
    # the forged purge itself: a retention below the settings' minimum (30
    # days) is refused before its seal is even checked
    assert seq == 7 and "purge invalide" in reason


def test_erased_prefix_needs_a_genuine_purge_past_its_time(tmp_path: Path) -> None:
    """Pruning is a prefix below a sealed purge's cutoff: erasing one event
    more than the purge did (still a prefix), or editing an erased event's
    time to slip it under the cutoff, is reported."""
    db = _db(tmp_path, 0)
    old = START - timedelta(days=400)
    _add(db, 0, 3, old)
    _add(db, 3, 3, START)
    log = _log(db, tmp_path, FrozenClock(START + timedelta(days=2)))
    assert log.prune() == 3
    assert log.verify().intact
    _sql(db, "UPDATE audit_events SET payload = NULL WHERE seq = 4")
    seq, reason = _problem(log)
    assert seq == 4 and "purge" in reason
    _sql(db, "UPDATE audit_events SET time = '2020-01-01 00:00:00.000000' WHERE seq = 4")
    seq, reason = _problem(log)
    assert seq == 4 and "sceau" in reason


def test_purge_cutoff_must_respect_the_retention(tmp_path: Path) -> None:
    """A purge event's cutoff is at least its stated retention before its
    own sealed time (a sealed purge can only come from the key holder; this
    checks the rule the verifier applies)."""
    db = _db(tmp_path, 0)
    _add(db, 0, 2, START)
    log = _log(db, tmp_path)
    with db.session() as s:
        trail.record(s, "audit.pruned", actor=None, organisation_id=None,
                     time=START + timedelta(days=3), up_to_seq=2, count=2,
                     before=trail.utc_iso(START + timedelta(days=2)), retention_days=365)
    _sql(db, "UPDATE audit_events SET payload = NULL WHERE seq <= 2")
    seq, reason = _problem(log)
    assert seq == 3 and "conservation" in reason


def test_reordered_events_are_reported_by_their_seals(tmp_path: Path) -> None:
    """Swapping two rows whole (seals included) breaks the seals' chain."""
    db = _db(tmp_path, 5)
    log = _log(db, tmp_path)
    _sql(db, "UPDATE audit_events SET seq = 100 WHERE seq = 2")
    _sql(db, "UPDATE audit_events SET seq = 2 WHERE seq = 3")
    _sql(db, "UPDATE audit_events SET seq = 3 WHERE seq = 100")
    assert _problem(log)[0] == 2


def test_truncated_unsigned_tail_raises_the_alert(tmp_path: Path) -> None:
    """The residual window: deleting the last events before the next
    checkpoint leaves a valid chain, but the checkpoint job notices that
    the head went back since its last run."""
    db = _db(tmp_path, 5)
    log = _log(db, tmp_path)
    assert log.checkpoint() is not None
    _add(db, 5, 3)
    assert log.checkpoint() is not None
    _add(db, 8, 2)
    assert log.checkpoint() is not None
    _sql(db, "DELETE FROM audit_checkpoints WHERE tree_size = 10")
    log.witness.path.write_text("".join(n + "\n" for n in log.witness.notes()[:2]))
    _sql(db, "DELETE FROM audit_events WHERE seq > 8")
    with pytest.raises(IntegrityError):
        log.checkpoint()


# -- issue 15, finding 5: lines removed from an export ----------------------------


@pytest.mark.parametrize("removed", [1, 2, 4])
def test_export_with_a_removed_line_fails(tmp_path: Path, removed: int) -> None:
    """The first, a middle and the last event line of a range export."""
    db = _db(tmp_path, 7)
    log = _log(db, tmp_path)
    lines = list(log.export(from_seq=2, to_seq=5))
    assert verify_export(lines, log.public_key).problem is None
    cut = [line for i, line in enumerate(lines) if i != removed]
    problem = verify_export(cut, log.public_key).problem
    assert problem is not None
    header = json.loads(cut[0])
    header["count"] -= 1  # the header adjusted too: the range still names the hole
    problem = verify_export([json.dumps(header) + "\n", *cut[1:]], log.public_key).problem
    assert problem is not None and problem.seq == removed + 1


def test_whole_export_with_a_removed_line_fails(tmp_path: Path) -> None:
    db = _db(tmp_path, 4)
    log = _log(db, tmp_path)
    lines = list(log.export())
    assert verify_export(lines, log.public_key).count == 5
    for removed in range(1, 6):
        cut = [line for i, line in enumerate(lines) if i != removed]
        assert verify_export(cut, log.public_key).problem is not None
    assert verify_export(lines[:1], log.public_key).problem is not None
    since = list(log.export(since=START + timedelta(hours=2)))
    assert verify_export(since, log.public_key).problem is None
    assert verify_export(since[:2] + since[3:], log.public_key).problem is not None
    assert verify_export([since[0], since[2], since[1], *since[3:]],
                         log.public_key).problem is not None


# -- issue 15, second review: several workers, the ORM's reading of times ----------


def test_review_5_checkpoint_signed_meanwhile_by_another_worker_is_no_alarm(
        tmp_path: Path) -> None:
    """Two workers on one database and key directory: one signs a bigger
    tree while the other is between its reads. The anchors are read before
    the rows, so the other finds at least the rows that tree covers (it
    used to read the rows first and raise AUDIT TRAIL ALTERED)."""
    db = _db(tmp_path, 3)
    first, second = _log(db, tmp_path), _log(db, tmp_path)
    assert first.checkpoint() is not None
    witnessed = first._witnessed
    raced: list[object] = []

    def meanwhile() -> object:
        if not raced:
            _add(db, 10, 2)
            raced.append(second.checkpoint())
        return witnessed()

    first._witnessed = meanwhile  # type: ignore[method-assign]
    first.checkpoint()  # no IntegrityError
    assert raced and raced[0] is not None
    assert first.verify().intact


def test_review_2_orm_converts_an_offset_instead_of_relabelling() -> None:
    from coffre.db.tables import UTCDateTime

    aware = datetime.fromisoformat("2026-03-02 06:00:00+19:00")
    assert UTCDateTime().process_result_value(aware, None) == datetime(  # type: ignore[arg-type]
        2026, 3, 1, 11, tzinfo=UTC)
    assert trail.canonical_time("2026-03-01 10:02:00.000000")
    for spelt in ("2026-03-01T10:02:00.000000", "2026-03-01 10:02:00.000000+00:00",
                  "2026-13-01 10:02:00.000000", "garbage", None,
                  datetime(2026, 3, 1, tzinfo=UTC)):
        assert not trail.canonical_time(spelt)


def test_review_6_purge_from_before_seals_with_the_old_bound_still_verifies(
        tmp_path: Path) -> None:
    """The purge before seals took the last seq with a time before the
    cutoff, and could erase an event of a later time at a lower seq. Such a
    purge, before the adoption the marker names, verifies; a sealed trail's
    purge may not do that."""
    db = _db(tmp_path, 0)
    old = START - timedelta(days=400)
    _add(db, 0, 1, old)
    _add(db, 1, 1, START)  # later time, lower seq than the next old one
    _add(db, 2, 1, old)
    log = _log(db, tmp_path)
    with db.session() as s:
        trail.record(s, "audit.pruned", actor=None, organisation_id=None,
                     time=START + timedelta(days=2), up_to_seq=3, count=3,
                     before=trail.utc_iso(START + timedelta(days=2) - timedelta(days=365)),
                     retention_days=365)
    _sql(db, "UPDATE audit_events SET payload = NULL WHERE seq <= 3")
    seq, reason = _problem(log)  # sealed from the first event: not allowed
    assert seq == 2 and "purge" in reason
    _unseal(db)
    assert log.adopt_legacy() == 4
    assert log.sealed() is not None and log.sealed().adopted == 5  # type: ignore[union-attr]
    assert log.verify().intact


def test_review_1_checkpoints_signed_over_a_sealed_trail_forbid_adoption(
        tmp_path: Path) -> None:
    """Every checkpoint signed by sealing code carries ``coffre-seals/1``
    (signed): with the marker lost too, seals dropped from the database are
    never made again while such a checkpoint is stored or witnessed."""
    db = _db(tmp_path, 4)
    log = _log(db, tmp_path)
    signed = log.checkpoint()
    assert signed is not None and signed.checkpoint.extensions == (SEALS_EXTENSION,)
    assert f"\n{SEALS_EXTENSION}\n\n" in signed.note
    log.marker.path.unlink(missing_ok=True)
    _unseal(db)
    _sql(db, "DELETE FROM audit_checkpoints")  # the witness file still has it
    assert log.adopt_legacy() == 0
    assert not log.marker.path.exists()
    seq, reason = _problem(log)
    assert seq == 1 and "sans sceau" in reason
