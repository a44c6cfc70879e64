"""The audit trail as a service: signed checkpoints, retention, verified
exports and the organisation-scoped reading of events.

Taking a checkpoint records no event (it would grow the tree it signs);
pruning and exporting do (SEC-29: log configuration changes, deletions and
exports). Pruning erases payloads only: leaf hashes and seals stay, so the
chain, every checkpoint and every proof remain valid (SEC-32).

The log binds its seal key (derived from the signing key) to the database
engine, so every event appended through it is sealed, and it refuses to
sign a checkpoint over rows whose seals do not verify (SEC-31).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.exc import IntegrityError as DuplicateRow

from coffre.audit import merkle, trail
from coffre.audit.note import (
    SEALS_EXTENSION,
    Checkpoint,
    NoteError,
    open_checkpoint,
    sign,
    vkey,
)
from coffre.audit.verify import ADOPTED, Problem, Progress, Report, verify
from coffre.audit.witness import FILE_NAME as WITNESS_FILE
from coffre.audit.witness import MARKER_NAME, Sealed, SealMarker, WitnessFile
from coffre.crypto.signing import SigningKey, SigningKeyFile
from coffre.db.engine import Database
from coffre.db.tables import AuditCheckpoint, AuditEvent
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action, Target, authorize
from coffre.errors import IntegrityError, InvalidInput
from coffre.ports import Clock

log = logging.getLogger(__name__)
EXPORT_FORMAT = "coffre-audit-export/2"
MAX_PAGE = 1000
PRUNE_BATCH = 1000


@dataclass(frozen=True)
class Signed:
    checkpoint: Checkpoint
    note: str


class AuditLog:
    def __init__(self, db: Database, key: SigningKey, clock: Clock, *, origin: str,
                 retention: timedelta, witness: WitnessFile | None = None) -> None:
        self.db = db
        self.key = key
        #: Every signed checkpoint is appended here too, outside the database
        #: (by default next to the signing key file).
        if witness is None:
            if not isinstance(key, SigningKeyFile):
                raise ValueError("a signing key given without a file needs a witness file")
            witness = WitnessFile(key.path.parent / WITNESS_FILE)
        self.witness = witness
        #: The fact that this trail is sealed, kept next to the witness file.
        self.marker = SealMarker(witness.path.with_name(MARKER_NAME))
        self.clock = clock
        self.origin = origin
        self.retention = retention
        trail.authenticate(db.engine, key.mac_key)
        #: The head (seq, seal) the last checkpoint run saw: a head that
        #: goes back between runs is a truncated tail.
        self._head: tuple[int, str] | None = None

    @property
    def public_key(self) -> bytes:
        return self.key.public_key

    def verifier_key(self) -> str:
        """The key auditors need to check checkpoints offline (C2SP vkey)."""
        return vkey(self.origin, self.key.public_key)

    # -- checkpoints ------------------------------------------------------------

    def checkpoint(self) -> Signed | None:
        """Sign the current tree if it grew since the last checkpoint, store
        it and append it to the witness file; returns it, or None.

        Anchors on the latest of the database's checkpoints and the witness
        file's: refuses (``IntegrityError``) when the database lost or
        changed a witnessed checkpoint (deleted rows hide a rewrite), or
        when the trail no longer extends the last signed tree. Run by the
        scheduler every few seconds, that is the alert of SEC-31. A stored
        checkpoint the witness file lacks (an upgrade, a crash between the
        two writes) is appended to it."""
        # The anchors first, the rows last: a checkpoint another worker signs
        # in between then covers fewer rows than were read, never more (no
        # false alarm with several workers or instances).
        with self.db.session() as session:
            last = session.execute(select(func.max(AuditCheckpoint.tree_size))).scalar()
        stored = self._stored(last) if last is not None else None
        witnessed = self._witnessed()
        with self.db.engine.connect() as conn:
            rows = conn.execute(text(  # raw: the seal covers the stored time, not the ORM's
                "SELECT seq, leaf_hash, time, action, organisation_id, mac FROM audit_events "
                "ORDER BY seq")).all()
        leaves = [bytes.fromhex(r.leaf_hash) for r in rows]
        if witnessed is not None:
            size = witnessed.checkpoint.tree_size
            same = self._stored(size) if stored is None or size != last else stored
            if same is None or same.checkpoint.root_hash != witnessed.checkpoint.root_hash:
                raise IntegrityError(
                    "the database lost or changed the signed checkpoint of the witness file "
                    f"{self.witness.path}: run `coffre audit verify`", tree_size=size)
        if stored is None and witnessed is None and not leaves:
            return None
        tree = merkle.Tree(leaves)
        for anchor in (witnessed, stored):
            if anchor is not None and (
                anchor.checkpoint.tree_size > tree.size
                or tree.root(anchor.checkpoint.tree_size) != anchor.checkpoint.root_hash
            ):
                raise IntegrityError("the audit trail no longer matches its last signed "
                                     "checkpoint: run `coffre audit verify`",
                                     tree_size=anchor.checkpoint.tree_size)
        signed_size = max((a.checkpoint.tree_size for a in (witnessed, stored) if a), default=0)
        self._check_tail(rows, signed_size)
        if stored is not None and (witnessed is None or
                                   stored.checkpoint.tree_size > witnessed.checkpoint.tree_size):
            self.witness.append(stored.note)
        if stored is not None and stored.checkpoint.tree_size == tree.size:
            return None
        cp = Checkpoint(self.origin, tree.size, tree.root(), (SEALS_EXTENSION,))
        note = sign(cp, self.origin, self.key.public_key, self.key.sign)
        try:
            with self.db.session() as session:
                session.add(AuditCheckpoint(tree_size=cp.tree_size, root_hash=cp.root_hash.hex(),
                                            time=self.clock.now(), note=note))
        except DuplicateRow:  # another instance signed the same size meanwhile
            signed = self._stored(tree.size)
            if signed is not None:
                self.witness.append(signed.note)
            return signed
        self.witness.append(note)
        return Signed(cp, note)

    def _check_tail(self, rows: Sequence[Any], signed: int) -> None:
        """Refuse (``IntegrityError``) to sign rows this key did not seal:
        each row after the last signed checkpoint must be numbered in
        order and carry the seal chained on the previous one; and the head
        must not have gone back since the last run (a truncated tail)."""
        if self._head is not None:
            seq, mac = self._head
            if seq > len(rows) or (seq > 0 and rows[seq - 1].mac != mac):
                raise IntegrityError("the audit trail lost or replaced events since the last "
                                     "check: run `coffre audit verify`", seq=seq)
        prev = rows[signed - 1].mac if signed else trail.GENESIS
        for index in range(signed, len(rows)):
            row = rows[index]
            if row.seq != index + 1 or not trail.canonical_time(row.time) or not trail.same_mac(
                    row.mac, trail.row_mac(self.key.mac_key, prev, row.seq, row.leaf_hash,
                                           row.time, row.action, row.organisation_id)):
                raise IntegrityError("refusing to sign audit events the server did not seal "
                                     "(forged, inserted or edited in the database): run "
                                     "`coffre audit verify`", seq=row.seq)
            prev = row.mac
        self._head = (len(rows), rows[-1].mac) if rows else (0, trail.GENESIS)

    def adopt_legacy(self) -> int:
        """Seal the events written before seals existed (the first start
        after migration 0008); returns how many were sealed.

        Happens once per trail, decided outside the database: the seal
        marker (next to the witness file) is written at the first start
        that finds the trail empty or sealed, or by this adoption. With a
        marker, a trail without seals is an insider's doing (the ``mac``
        column dropped to have a forgery sealed): nothing is sealed, the
        alert is logged and ``coffre audit verify`` reports the rows.

        Only a trail that verifies against its signed checkpoints (stored
        and witnessed) is adopted, under the chain's lock. Events after the
        last signed checkpoint cannot be told apart from rows an insider
        appended before the upgrade: they are sealed too, but named (in the
        marker and the ``audit.adopted`` event): ``coffre audit verify``
        fails until the operator acknowledges them (``coffre audit
        acknowledge``)."""
        try:
            marker = self.marker.read()
        except NoteError as error:
            log.error("AUDIT TRAIL ALTERED: %s: nothing sealed, run `coffre audit verify`", error)
            return 0
        with self.db.engine.connect() as conn:
            first = conn.execute(text("SELECT mac FROM audit_events ORDER BY seq LIMIT 1")).first()
            adopted = conn.execute(text("SELECT min(seq) FROM audit_events WHERE action = :a"),
                                   {"a": ADOPTED}).scalar()
        if marker is not None:
            if first is not None and first.mac is None:
                log.error("AUDIT TRAIL ALTERED: the seals of the audit trail were removed from "
                          "the database although it is sealed (marker %s): nothing sealed, "
                          "run `coffre audit verify`", self.marker.path)
            return 0
        if first is None or first.mac is not None:
            # A fresh trail (sealed from its first event) or one sealed by a
            # version without the marker: record the fact outside the database.
            trust = self._adopted_range() if adopted is not None else None
            self.marker.create(Sealed(None if adopted is None else int(adopted), trust))
            return 0
        with self.db.session() as session:
            trail.lock_chain(session)
            unsealed, top = session.execute(text(
                "SELECT count(*), max(seq) FROM audit_events WHERE mac IS NULL")).one()
            if not unsealed:
                return 0  # another instance adopted them meanwhile
            sealed = session.execute(text(
                "SELECT count(*) FROM audit_events WHERE mac IS NOT NULL")).scalar_one()
            try:
                notes = self.witness.notes()
            except NoteError:
                notes = None
            # Every purge so far ran before seals (the old bound: see verify).
            if notes is not None and self._signed_sealed(session.connection(), notes):
                log.error("AUDIT TRAIL ALTERED: the seals of the audit trail were removed from "
                          "the database although a signed checkpoint attests it was sealed: "
                          "nothing sealed, run `coffre audit verify`")
                return 0
            report = None if notes is None or sealed or unsealed != top else verify(
                session.connection(), self.key.public_key, notes,
                legacy=int(top) + 1)
            if report is None or report.problem is not None:
                reason = report.problem.reason if report and report.problem else (
                    "unreadable witness file" if notes is None else "not a prefix of the trail")
                log.error("AUDIT TRAIL ALTERED: events written before the upgrade not "
                          "sealed (%s): run `coffre audit verify`", reason)
                return 0
            signed = report.latest.tree_size if report.latest else 0
            prev = trail.GENESIS
            values = []
            for row in session.execute(text(  # raw: the verifier's reading of each column
                    "SELECT seq, leaf_hash, time, action, organisation_id FROM audit_events "
                    "ORDER BY seq")).all():
                prev = trail.row_mac(self.key.mac_key, prev, row.seq, row.leaf_hash, row.time,
                                     row.action, row.organisation_id)
                values.append({"seq": row.seq, "mac": prev})
            for start in range(0, len(values), PRUNE_BATCH):
                session.execute(update(AuditEvent), values[start:start + PRUNE_BATCH])
            unsigned = (signed + 1, int(top)) if top > signed else None
            trail.record(session, ADOPTED, actor=None, organisation_id=None,
                         time=self.clock.now(), sealed=top, signed_up_to=signed,
                         unsigned_from=unsigned[0] if unsigned else None,
                         unsigned_to=unsigned[1] if unsigned else None)
            # Written before the commit: a crash in between leaves a marker
            # and no seals (reported), never seals and no marker (adoptable).
            self.marker.create(Sealed(int(top) + 1, unsigned))
        if unsigned:
            log.error("audit: %d event(s) written before the upgrade and after the last signed "
                      "checkpoint (seq %d to %d) were sealed on trust: compare them with your "
                      "own records, then run `coffre audit acknowledge`", top - signed, *unsigned)
        else:
            log.info("audit: %d event(s) written before the upgrade sealed after checking "
                     "them against the signed checkpoint", top)
        return int(top)

    def _signed_sealed(self, conn: Connection, witnessed: list[str]) -> bool:
        """Whether a checkpoint signed by this key (stored or witnessed)
        carries the seals extension: the trail was sealed when it was signed."""
        stored = [row[0] for row in conn.execute(text("SELECT note FROM audit_checkpoints"))]
        for note in (*stored, *witnessed):
            try:
                if SEALS_EXTENSION in open_checkpoint(note, self.key.public_key).extensions:
                    return True
            except NoteError:
                continue
        return False

    def _adopted_range(self) -> tuple[int, int] | None:
        for event in self.page(action=ADOPTED, limit=1):
            details = event.get("details") or {}
            if details.get("unsigned_from") is not None:
                return int(details["unsigned_from"]), int(details["unsigned_to"])
        return None

    def sealed(self) -> Sealed | None:
        """The seal marker's statement (None before the first start)."""
        try:
            return self.marker.read()
        except NoteError as error:
            raise IntegrityError(f"{error}: run `coffre audit verify`") from error

    def adopted_on_trust(self) -> tuple[int, int] | None:
        """The range of events sealed at the upgrade without a signed
        checkpoint covering them and not yet acknowledged by the operator,
        as the seal marker (outside the database) states it."""
        sealed = self.sealed()
        return None if sealed is None or sealed.acknowledged else sealed.on_trust

    def acknowledge(self, context: trail.Context | None = None) -> tuple[int, int] | None:
        """The operator compared the events sealed on trust with their own
        records: recorded in the marker and as ``audit.acknowledged``."""
        sealed = self.sealed()
        if sealed is None or sealed.on_trust is None:
            return None
        if not sealed.acknowledged:
            self.marker.acknowledge()
            with self.db.session() as session:
                trail.record(session, "audit.acknowledged", actor=None, organisation_id=None,
                             context=context, on_trust_from=sealed.on_trust[0],
                             on_trust_to=sealed.on_trust[1])
        return sealed.on_trust

    def _witnessed(self) -> Signed | None:
        """The witness file's last checkpoint (the latest it holds)."""
        try:
            note = self.witness.last()
            return None if note is None else Signed(open_checkpoint(note, self.key.public_key),
                                                    note)
        except NoteError as error:
            raise IntegrityError(f"the audit witness file {self.witness.path} does not end "
                                 "with a checkpoint signed by this server: run "
                                 "`coffre audit verify`") from error

    def _stored(self, size: int) -> Signed | None:
        with self.db.session() as session:
            note = session.execute(select(AuditCheckpoint.note).where(
                AuditCheckpoint.tree_size == size)).scalar_one_or_none()
        if note is None:
            return None
        try:
            return Signed(open_checkpoint(note, self.key.public_key), note)
        except NoteError as error:
            raise IntegrityError(f"stored checkpoint of size {size} does not verify: "
                                 "run `coffre audit verify`", tree_size=size) from error

    def latest(self) -> Signed | None:
        with self.db.session() as session:
            size = session.execute(select(func.max(AuditCheckpoint.tree_size))).scalar()
        return None if size is None else self._stored(size)

    # -- verification -----------------------------------------------------------

    def verify(self, witness_notes: Iterable[str] = (), *, public_key: bytes | None = None,
               reference: dict[int, bytes] | None = None,
               progress: Progress | None = None) -> Report:
        """Verify the trail against the stored checkpoints, the witness
        file's and ``witness_notes`` (copies kept elsewhere)."""
        try:
            notes = [*self.witness.notes(), *witness_notes]
        except NoteError:
            return Report(0, 0, 0, Problem(None, f"fichier témoin des points de contrôle "
                                                 f"illisible ou incomplet : {self.witness.path}"))
        try:
            sealed = self.marker.read()
        except NoteError:
            return Report(0, 0, 0, Problem(None, f"marqueur de scellement du journal illisible : "
                                                 f"{self.marker.path}"))
        with self.db.engine.connect() as conn:
            return verify(conn, public_key or self.key.public_key, notes,
                          reference=reference, progress=progress, mac_key=self.key.mac_key,
                          sealed=sealed)

    def count(self) -> int:
        with self.db.session() as session:
            return int(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())

    # -- retention --------------------------------------------------------------

    def prune(self, now: datetime | None = None,
              context: trail.Context | None = None) -> int:
        """Erase the payloads of events older than the retention period;
        records ``audit.pruned`` when something was erased.

        The bound comes from the hashed payloads, never from the ``time``
        column (anyone who can write the database can edit it): the largest
        seq such that every event up to it has a payload time before the
        cutoff. A payload that does not match its leaf hash stops the purge
        (``IntegrityError``) rather than be erased with its evidence."""
        now = now or self.clock.now()
        cutoff = now - self.retention
        with self.db.session() as session:
            up_to, erased = self._prunable(session.connection(), cutoff)
            if not erased:
                return 0
            pruning = (AuditEvent.seq <= up_to, AuditEvent.payload.is_not(None))
            session.execute(update(AuditEvent).where(*pruning).values(payload=None))
            trail.record(session, "audit.pruned", actor=None, organisation_id=None,
                         context=context, time=now, up_to_seq=up_to,
                         count=erased,
                         before=trail.utc_iso(cutoff),
                         retention_days=self.retention.days)
        return erased

    @staticmethod
    def _prunable(conn: Connection, cutoff: datetime) -> tuple[int, int]:
        """The last seq to prune and how many payloads that erases."""
        up_to = erased = 0
        rows = conn.execute(text("SELECT seq, payload, leaf_hash FROM audit_events "
                                 "WHERE payload IS NOT NULL ORDER BY seq"))
        try:
            while batch := rows.fetchmany(PRUNE_BATCH):
                for seq, payload, leaf in batch:
                    if trail.leaf_hash(payload) != leaf:
                        raise IntegrityError(f"audit event {seq} does not match its hash: "
                                             "nothing pruned, run `coffre audit verify`",
                                             seq=seq)
                    when = _payload_time(payload)
                    if when is None or when >= cutoff:
                        return up_to, erased
                    up_to, erased = seq, erased + 1
        finally:
            rows.close()
        return up_to, erased

    # -- export -----------------------------------------------------------------

    def export(self, *, from_seq: int | None = None, to_seq: int | None = None,
               since: datetime | None = None, actor: str | None = None,
               organisation_id: str | None = None,
               context: trail.Context | None = None) -> Iterator[str]:
        """JSON Lines: a header with a checkpoint signed over the tree that
        ends with this export's ``audit.exported`` event (the event, its
        proof and its seq in the header: the range it records is the one the
        header declares), then each event of the range with its leaf hash,
        chain links and inclusion proof. A ``since`` export is the range
        from the first event stated at or after ``since`` to that event."""
        if since is not None:
            from_seq, to_seq = self._first_since(since), None
        with self.db.session() as session:
            exported = trail.record(session, "audit.exported", actor=actor,
                                    organisation_id=organisation_id, context=context,
                                    from_seq=from_seq, to_seq=to_seq,
                                    since=trail.utc_iso(since) if since else None)
        # Checks every event up to the head (the seals of the unsigned tail
        # too) and signs; the export's own checkpoint then stops at its event.
        signed = self.checkpoint() or self.latest()
        if signed is None:  # pragma: no cover - the event above makes the tree non-empty
            raise InvalidInput("nothing to export")
        with self.db.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT seq, payload, leaf_hash, prev_hash, hash FROM audit_events "
                "ORDER BY seq LIMIT :size"), {"size": signed.checkpoint.tree_size}).all()
        tree = merkle.Tree([bytes.fromhex(r.leaf_hash) for r in rows])
        size = exported.seq
        if tree.root() != signed.checkpoint.root_hash or size > tree.size:
            raise InvalidInput("the audit trail does not match its latest checkpoint: "
                               "run `coffre audit verify`")
        cp = Checkpoint(self.origin, size, tree.root(size), (SEALS_EXTENSION,))
        note = sign(cp, self.origin, self.key.public_key, self.key.sign)
        first = max(from_seq or 1, 1) - 1
        last = min(to_seq or size, size) - 1

        def line(index: int) -> dict[str, Any]:
            r = rows[index]
            return {
                "seq": r.seq,
                "index": index,
                "leaf_hash": r.leaf_hash,
                "prev_hash": r.prev_hash,
                "hash": r.hash,
                "payload": r.payload,
                "event": None if r.payload is None else json.loads(r.payload),
                "inclusion_proof": [p.hex() for p in tree.inclusion_proof(index, size)],
            }

        yield _line({"format": EXPORT_FORMAT, "origin": self.origin, "tree_size": size,
                     "root_hash": cp.root_hash.hex(), "checkpoint": note,
                     "count": max(0, last - first + 1), "from_seq": from_seq, "to_seq": to_seq,
                     "since": trail.utc_iso(since) if since else None,
                     "exported_seq": size, "exported": line(size - 1)})
        for index in range(first, last + 1):
            yield _line(line(index))

    def _first_since(self, since: datetime) -> int | None:
        """The seq of the first event whose (hashed) payload states a time at
        or after ``since``: pruned events are older. None when there is none
        yet (the export then holds its own event only)."""
        bound = trail.utc_iso(since)
        with self.db.engine.connect() as conn:
            rows = conn.execute(text("SELECT seq, payload FROM audit_events "
                                     "WHERE payload IS NOT NULL ORDER BY seq"))
            try:
                while batch := rows.fetchmany(PRUNE_BATCH):
                    for seq, payload in batch:
                        stamp = json.loads(payload).get("time")
                        if isinstance(stamp, str) and stamp >= bound:
                            return int(seq)
            finally:
                rows.close()
            top = conn.execute(text("SELECT max(seq) FROM audit_events")).scalar()
        return int(top or 0) + 1

    # -- reading (admin API) ------------------------------------------------------

    def read(self, actor: Actor, *, after: int = 0, limit: int = 100,
             action: str | None = None) -> list[dict[str, Any]]:
        """The actor's organisation's events after ``after``, oldest first (SEC-4)."""
        authorize(actor, Action.AUDIT_READ, Target(actor.organisation_id))
        return self.page(actor.organisation_id, after=after, limit=limit, action=action)

    def page(self, organisation_id: str | None = None, *, after: int = 0, limit: int = 100,
             action: str | None = None) -> list[dict[str, Any]]:
        """Decoded events after ``after`` (one organisation's, or all for the
        operator's CLI), oldest first."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        query = (select(AuditEvent.seq, AuditEvent.action, AuditEvent.payload)
                 .where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(limit))
        if organisation_id is not None:
            query = query.where(AuditEvent.organisation_id == organisation_id)
        if action:
            query = query.where(AuditEvent.action == action)
        with self.db.session() as session:
            return [trail.decode(seq, act, payload)
                    for seq, act, payload in session.execute(query)]


    def search(self, actor: Actor, *, before: int | None = None, limit: int = 50,
               action: str | None = None, by: str | None = None, object_id: str | None = None,
               since: datetime | None = None, until: datetime | None = None,
               actions: Collection[str] | None = None) -> list[dict[str, Any]]:
        """The actor's organisation's events, newest first (the web viewer):
        before seq ``before``, by one actor, about one object, within
        [``since``, ``until``). Actor and object are matched in the
        canonical payload (RFC 8785: no spaces, keys sorted)."""
        authorize(actor, Action.AUDIT_READ, Target(actor.organisation_id))
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
        query = (select(AuditEvent.seq, AuditEvent.action, AuditEvent.payload)
                 .where(AuditEvent.organisation_id == actor.organisation_id)
                 .order_by(AuditEvent.seq.desc()).limit(limit))
        if before is not None:
            query = query.where(AuditEvent.seq < before)
        if action:
            query = query.where(AuditEvent.action == action)
        if actions is not None:  # one of these (a category of the viewer)
            query = query.where(AuditEvent.action.in_(sorted(actions)))
        if since is not None:
            query = query.where(AuditEvent.time >= since)
        if until is not None:
            query = query.where(AuditEvent.time < until)
        if by:
            query = query.where(AuditEvent.payload.contains(
                f'"actor":{json.dumps(by, ensure_ascii=False)}', autoescape=True))
        if object_id:
            query = query.where(AuditEvent.payload.contains(
                f'"object":{{"id":{json.dumps(object_id, ensure_ascii=False)}', autoescape=True))
        with self.db.session() as session:
            return [trail.decode(seq, act, payload)
                    for seq, act, payload in session.execute(query)]

    def actions(self, actor: Actor) -> list[str]:
        """The actions the organisation's trail holds (the viewer's filter)."""
        authorize(actor, Action.AUDIT_READ, Target(actor.organisation_id))
        with self.db.session() as session:
            return list(session.execute(
                select(AuditEvent.action).where(
                    AuditEvent.organisation_id == actor.organisation_id)
                .distinct().order_by(AuditEvent.action)).scalars())

    def check(self, actor: Actor, context: trail.Context | None = None) -> Report:
        """``coffre audit verify`` for an administrator: the whole instance's
        trail against every signed checkpoint and the witness file. Records
        ``audit.verified`` (who checked, and the outcome)."""
        authorize(actor, Action.AUDIT_READ, Target(actor.organisation_id))
        report = self.verify()
        with self.db.session() as session:
            trail.record(session, "audit.verified", actor=actor.user_id,
                         organisation_id=actor.organisation_id, context=context,
                         outcome="success" if report.intact else "failure",
                         events=report.events, checkpoints=report.checkpoints,
                         first_bad_seq=report.problem.seq if report.problem else None)
        return report


def _payload_time(payload: str) -> datetime | None:
    """The UTC time a payload states, or None if it states none."""
    try:
        stamp = json.loads(payload).get("time")
        when = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except (ValueError, AttributeError):
        return None
    return when if when is not None and when.tzinfo is not None else None


def _line(value: dict[str, Any]) -> str:
    # ensure_ascii: a terminal shown the file sees no raw control or C1 character
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")) + "\n"


@dataclass
class ExportCheck:
    count: int
    tree_size: int
    problem: Problem | None
    #: The range the header declares, in French (for `verify-export`).
    declared: str = ""


def verify_export(lines: Iterable[str], public_key: bytes) -> ExportCheck:
    """Check an export offline: the header's signed checkpoint, which must
    end with the export's own ``audit.exported`` event (proved by its
    inclusion proof) recording the very range the header declares; then
    each event's payload, leaf hash, chain link and inclusion proof, and
    that no event is missing: every index of the range from its first to
    its last (the tree size bounds an open end), as many as counted."""
    iterator = iter(lines)
    try:
        header = json.loads(next(iterator))
        if header.get("format") != EXPORT_FORMAT:
            raise ValueError("format")
        cp = open_checkpoint(header["checkpoint"], public_key)
        declared = int(header["count"])
        span = _span(header, cp.tree_size)
        described = _described(header, span)
        problem = _check_header(header, cp)
    except StopIteration:
        return ExportCheck(0, 0, Problem(None, "fichier d'export vide"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return ExportCheck(0, 0, Problem(None, "en-tête d'export illisible"))
    except NoteError:
        return ExportCheck(0, 0, Problem(None, "point de contrôle de l'export : signature "
                                               "invalide pour cette clé"))
    if problem is not None:
        return ExportCheck(0, cp.tree_size, problem, described)
    checked = 0
    previous: dict[str, Any] | None = None
    for line in iterator:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            problem = _check_exported(row, previous, cp)
            if problem is None:
                problem = _check_place(row, previous, span)
        except (ValueError, KeyError, TypeError):
            problem = Problem(None, f"ligne {checked + 2} de l'export illisible")
        if problem is not None:
            return ExportCheck(checked, cp.tree_size, problem, described)
        previous = row
        checked += 1
    problem = None
    if checked != declared:
        problem = Problem(None, f"l'en-tête annonce {declared} événement(s), l'export en "
                                f"contient {checked} : événements supprimés ou ajoutés")
    elif checked != max(0, span[1] - span[0] + 1):
        problem = Problem(span[0] + checked + 1, "événements supprimés à la fin de la plage "
                                                 f"annoncée (événements {span[0] + 1} à "
                                                 f"{span[1] + 1})")
    return ExportCheck(checked, cp.tree_size, problem, described)


def _check_header(header: dict[str, Any], cp: Checkpoint) -> Problem | None:
    """The signed tree ends with the export's ``audit.exported`` event, and
    that event (hashed, proved) records the range the header declares: an
    edited header (range, since) no longer matches it."""
    row = header["exported"]
    if int(header["exported_seq"]) != cp.tree_size or int(row["seq"]) != cp.tree_size \
            or int(row["index"]) != cp.tree_size - 1:
        return Problem(None, "l'en-tête ne désigne pas l'événement audit.exported qui clôt "
                             "l'arbre signé de l'export")
    problem = _check_exported(row, None, cp)
    if problem is not None or row["payload"] is None:
        return problem or Problem(cp.tree_size, "événement audit.exported de l'export effacé")
    event = row["event"]
    details = event.get("details") or {}
    if event.get("action") != "audit.exported" or any(
            details.get(name) != header.get(name) for name in ("from_seq", "to_seq", "since")):
        return Problem(cp.tree_size, "en-tête de l'export modifié : sa plage ne correspond "
                                     "pas à celle de l'événement audit.exported signé")
    return None


def _described(header: dict[str, Any], span: tuple[int, int]) -> str:
    plage = f"événements {span[0] + 1} à {span[1] + 1}"
    if header.get("since"):
        return f"plage annoncée : {plage} (depuis le {header['since']})"
    return f"plage annoncée : {plage}"


def _span(header: dict[str, Any], size: int) -> tuple[int, int]:
    """The tree indices a ``from_seq``/``to_seq`` export covers, both ends
    included (events are numbered from 1, index = seq - 1)."""
    first = max(int(header["from_seq"] or 1), 1) - 1
    last = min(int(header["to_seq"] or size), size) - 1
    return first, last


def _check_place(row: dict[str, Any], previous: dict[str, Any] | None,
                 span: tuple[int, int]) -> Problem | None:
    """Each event after the previous one in the tree, at the next index of
    the declared range."""
    seq, index = int(row["seq"]), int(row["index"])
    if seq != index + 1:
        return Problem(seq, "numéro de l'événement différent de sa place dans l'arbre signé")
    if previous is not None and index <= int(previous["index"]):
        return Problem(seq, "événements de l'export dans le désordre ou répétés")
    expected = span[0] if previous is None else int(previous["index"]) + 1
    if index != expected or index > span[1]:
        return Problem(expected + 1, f"événement {expected + 1} absent de l'export "
                                     "(supprimé de la plage annoncée)")
    return None


def _check_exported(row: dict[str, Any], previous: dict[str, Any] | None,
                    cp: Checkpoint) -> Problem | None:
    seq = int(row["seq"])
    payload = row["payload"]
    if payload is not None:
        if trail.leaf_hash(payload) != row["leaf_hash"]:
            return Problem(seq, "contenu de l'événement modifié")
        if json.loads(payload) != row["event"]:
            return Problem(seq, "événement décodé différent du contenu signé")
    elif row.get("event") is not None:
        return Problem(seq, "événement décodé différent du contenu signé")
    if trail.chain_hash(row["prev_hash"], row["leaf_hash"]) != row["hash"]:
        return Problem(seq, "empreinte de chaîne de l'événement modifiée")
    if (previous is not None and int(previous["index"]) + 1 == int(row["index"])
            and previous["hash"] != row["prev_hash"]):
        return Problem(seq, "lien vers l'événement précédent rompu")
    proof = [bytes.fromhex(p) for p in row["inclusion_proof"]]
    if not merkle.verify_inclusion(int(row["index"]), cp.tree_size,
                                   bytes.fromhex(row["leaf_hash"]), proof, cp.root_hash):
        return Problem(seq, "preuve d'inclusion invalide pour le point de contrôle signé")
    return None
