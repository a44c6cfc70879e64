"""Verify the audit trail: every row, its seal, the chain, the Merkle tree
and every signed checkpoint (SEC-31), in one pass over the table.

What it proves, against someone who can write the database but cannot read
the signing key file (nor the root key it may be derived from): any edited,
removed, inserted, reordered or forged event, any erased payload outside a
genuine purge, is found, anywhere in the trail, the tail included, except
the last events appended after the last signed checkpoint and removed
together (a truncation of the unsigned tail; see docs/design.md). Each
row's seal (an HMAC under a key derived from the signing key, chained on
the previous seal and covering seq, leaf hash, time, action and
organisation) cannot be recomputed without the key: a forged, inserted or
moved row, an edited time (pruned or not), a forged ``audit.pruned`` event
fail it. Erased payloads must form a prefix 1..P, each covered by a later,
sealed purge event whose cutoff is after the event's sealed time and at
least its stated retention before its own time. The signed checkpoints
(stored, in the witness file next to the key, copies kept elsewhere) catch
a rewrite by someone who has the key too but not the witness copies, and
a truncation of signed events. Messages are in French (they reach the
operator through ``coffre audit verify``) and name the first bad event.

Never prints or returns event content: only sequence numbers and reasons.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, text

from coffre.audit import merkle, trail
from coffre.audit.note import Checkpoint, NoteError, open_checkpoint
from coffre.audit.trail import GENESIS
from coffre.audit.witness import Sealed

BATCH = 5000
#: The event of the one-time sealing of a trail from before seals.
ADOPTED = "audit.adopted"
Progress = Callable[[int], None]
#: The shortest retention a purge may state (the settings' lower bound of
#: ``audit_retention_days``): a sealed purge event claiming less is refused.
MIN_RETENTION_DAYS = 30


@dataclass(frozen=True)
class Problem:
    """The first thing wrong: the event it names (None when no single event
    can be named) and why, in French."""

    seq: int | None
    reason: str


@dataclass
class Scan:
    """What one pass over the rows found."""

    seqs: list[int] = field(default_factory=list)
    leaves: list[bytes] = field(default_factory=list)
    pruned: int = 0
    problem: Problem | None = None


@dataclass
class Report:
    events: int
    pruned: int
    checkpoints: int
    problem: Problem | None
    latest: Checkpoint | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


def count(conn: Connection) -> int:
    return int(conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one())


@dataclass(frozen=True)
class _Purge:
    """An intact, sealed ``audit.pruned`` event: what it may have erased."""

    seq: int
    up_to: int
    cutoff: datetime


def scan(conn: Connection, mac_key: bytes | None = None,
         progress: Progress | None = None, sealed: Sealed | None = None,
         legacy: int = 0) -> Scan:
    """Check every row in seq order; stop at the first broken one. With
    ``mac_key``, every row's seal too (without it, the rows prove nothing
    against someone who can write the database). With ``sealed`` (the seal
    marker kept outside the database), the trail's ``audit.adopted``
    events must be exactly the one it names (or none). Purges before seq
    ``legacy`` (or the marker's adoption) ran before seals (see
    ``_check_erased``)."""
    result = Scan()
    sha = hashlib.sha256
    expected_prev = GENESIS
    prev_mac: str | None = GENESIS
    last_seq = 0
    purges: list[_Purge] = []
    adopted = False  # a trail is sealed once, at its upgrade
    erased: list[tuple[int, datetime]] = []  # the pruned prefix: seq, sealed time
    rows = conn.execute(
        text(
            "SELECT seq, payload, leaf_hash, prev_hash, hash, action, organisation_id, time, "
            "mac FROM audit_events ORDER BY seq"
        )
    )
    while batch := rows.fetchmany(BATCH):
        for seq, payload, leaf_hex, prev, stored, action, organisation, time, mac in batch:
            problem = None
            if not trail.canonical_time(time):
                # Any other spelling of the same instant would pass the seal
                # but not the SQL filters and the ORM (issue 15 review, 2).
                problem = Problem(seq, "colonne d'horodatage de l'événement modifiée (forme "
                                       "non canonique ou illisible)")
            elif prev != expected_prev:
                if seq > last_seq + 1:  # a hole in the numbering, where the link breaks
                    problem = Problem(last_seq + 1, "événement supprimé (absent de la chaîne)")
                else:
                    problem = Problem(seq, "lien vers l'événement précédent rompu (événement "
                                           "inséré, déplacé ou remplacé)")
            else:
                try:
                    leaf = bytes.fromhex(leaf_hex)
                    if len(leaf) != 32:
                        raise ValueError(leaf_hex)
                except (ValueError, TypeError):
                    leaf = b""
                if not leaf:
                    problem = Problem(seq, "empreinte de l'événement illisible")
                elif payload is not None and sha(b"\x00" + payload.encode()).digest() != leaf:
                    problem = Problem(seq, "contenu de l'événement modifié")
                elif sha(bytes.fromhex(expected_prev) + leaf).hexdigest() != stored:
                    problem = Problem(seq, "empreinte de chaîne de l'événement modifiée")
                elif payload is not None:
                    problem, purge = _check_columns(seq, payload, action, organisation, time)
                    if purge is not None:
                        purges.append(purge)
                elif seq != result.pruned + 1:
                    problem = Problem(seq, "contenu de l'événement effacé hors d'une purge "
                                           "(les purges n'effacent que les plus anciens)")
                if problem is None and mac_key is not None:
                    problem = _check_seal(mac_key, prev_mac, seq, leaf_hex, time, action,
                                          organisation, mac)
                if problem is None and action == ADOPTED:
                    if adopted:
                        problem = Problem(seq, "seconde adoption des événements : leurs sceaux "
                                               "ont été retirés de la base puis refaits")
                    elif sealed is not None and sealed.adopted != seq:
                        problem = Problem(seq, _adoption_mismatch(sealed))
                    adopted = True
                if problem is None and payload is None:
                    result.pruned += 1
                    erased.append((seq, trail.stored_time(time)))
            if problem is not None:
                result.problem = problem
                break
            result.seqs.append(seq)
            result.leaves.append(leaf)
            expected_prev = stored
            prev_mac = mac
            last_seq = seq
        if progress is not None:
            progress(len(batch))
        if result.problem is not None:
            break
    rows.close()
    if (result.problem is None and sealed is not None and sealed.adopted is not None
            and not adopted):
        result.problem = Problem(sealed.adopted, _adoption_mismatch(sealed))
    if result.problem is None:
        # Known only once every row is read: the purge that explains an
        # erased payload comes after it.
        if sealed is not None and sealed.adopted:
            legacy = max(legacy, sealed.adopted)
        result.problem = _check_erased(erased, purges, legacy)
    return result


def _check_seal(key: bytes, prev_mac: str | None, seq: int, leaf: str, time: object,
                action: str, organisation: str | None, mac: str | None) -> Problem | None:
    if mac is None:
        return Problem(seq, "événement sans sceau (ajouté sans la clé du journal)")
    try:
        expected = trail.row_mac(key, prev_mac, seq, leaf, time, action, organisation)
    except ValueError:
        expected = ""
    if not trail.same_mac(mac, expected):
        return Problem(seq, "sceau de l'événement invalide (événement forgé, inséré, déplacé "
                            "ou colonnes modifiées sans la clé du journal)")
    return None


def _adoption_mismatch(sealed: Sealed) -> str:
    where = (f"l'événement {sealed.adopted}" if sealed.adopted is not None
             else "aucune (journal scellé dès son premier événement)")
    return ("adoption des événements différente de celle enregistrée hors de la base "
            f"(marqueur de scellement : {where}) : sceaux retirés puis refaits")


def _check_erased(erased: list[tuple[int, datetime]], purges: list[_Purge],
                  legacy: int = 0) -> Problem | None:
    """Every erased payload (a prefix 1..P, checked while reading) must be
    covered by a later intact purge event whose cutoff is after the
    event's sealed time. Purges before the adoption (seq ``legacy``, from
    the seal marker) ran the old bound (the last seq with a time before the
    cutoff), which could erase an event of a later time at a lower seq:
    within their reach the time is not compared."""
    legacy_reach = max((p.up_to for p in purges if p.seq < legacy), default=0)
    by_reach = sorted(purges, key=lambda p: p.up_to, reverse=True)
    best: datetime | None = None
    index = 0
    for seq, time in reversed(erased):
        while index < len(by_reach) and by_reach[index].up_to >= seq:
            cutoff = by_reach[index].cutoff
            best = cutoff if best is None or cutoff > best else best
            index += 1
        if seq > legacy_reach and (best is None or time >= best):
            return Problem(seq, "contenu de l'événement effacé hors d'une purge (aucune purge "
                                "intacte ne le couvre)")
    return None


def _check_columns(seq: int, payload: str, action: str, organisation: str | None,
                   time: object) -> tuple[Problem | None, _Purge | None]:
    """The indexed columns must say what the (hashed) payload says: the
    action, the organisation and the time (which retention relies on). A
    purge event must itself respect the retention it states."""
    try:
        event = json.loads(payload)
    except ValueError:
        return Problem(seq, "contenu de l'événement illisible"), None
    if event.get("action") != action or event.get("organisation") != organisation:
        return Problem(seq, "colonnes de l'événement modifiées (action ou organisation)"), None
    if not _same_time(time, event.get("time")):
        return Problem(seq, "colonne d'horodatage de l'événement modifiée (différente de "
                            "l'heure signée dans son contenu)"), None
    if action != "audit.pruned":
        return None, None
    details = event.get("details") or {}
    up_to, days = details.get("up_to_seq"), details.get("retention_days")
    cutoff: datetime | None = None
    if (isinstance(up_to, int) and isinstance(days, int) and 0 < up_to < seq
            and days >= MIN_RETENTION_DAYS):
        try:
            cutoff = datetime.fromisoformat(str(details.get("before")))
            if cutoff.tzinfo is None or cutoff > (datetime.fromisoformat(event["time"])
                                                  - timedelta(days=days)):
                cutoff = None
        except (ValueError, TypeError, OverflowError):
            cutoff = None
    if cutoff is None or not isinstance(up_to, int):
        return Problem(seq, "événement de purge invalide (portée ou date limite "
                            "incompatibles avec la durée de conservation)"), None
    return None, _Purge(seq, up_to, cutoff)


def _same_time(column: object, stamp: object) -> bool:
    """The ``time`` column (naive UTC: text on SQLite, a datetime on
    PostgreSQL) is the instant the payload's UTC ISO 8601 time states."""
    if not isinstance(stamp, str):
        return False
    try:
        stated = datetime.fromisoformat(stamp)
        stored = column if isinstance(column, datetime) else datetime.fromisoformat(str(column))
    except ValueError:
        return False
    if stated.tzinfo is None:
        return False
    if stored.tzinfo is not None:
        stored = stored.astimezone(UTC).replace(tzinfo=None)
    return stated.astimezone(UTC).replace(tzinfo=None) == stored


def verify_rows(conn: Connection, mac_key: bytes | None = None) -> Problem | None:
    return scan(conn, mac_key).problem


def stored_notes(conn: Connection) -> list[str]:
    return [row[0] for row in conn.execute(
        text("SELECT note FROM audit_checkpoints ORDER BY tree_size"))]


def verify(
    conn: Connection,
    public_key: bytes,
    witness_notes: Iterable[str] = (),
    *,
    reference: Mapping[int, bytes] | None = None,
    progress: Progress | None = None,
    mac_key: bytes | None = None,
    sealed: Sealed | None = None,
    legacy: int = 0,
) -> Report:
    """Rows, chain, then every checkpoint (stored and witnessed) in size
    order: signature, root of that many leaves, consistency with the
    previous one; last, every witnessed checkpoint must also be stored (a
    missing one was deleted from the database). ``reference``: leaf hashes
    by seq from an earlier export, to name exactly the first rewritten
    event when a checkpoint fails."""
    result = scan(conn, mac_key, progress, sealed, legacy)
    stored = stored_notes(conn)
    known = set(stored)
    witnessed = [n for n in dict.fromkeys(witness_notes) if n not in known]
    notes = [*stored, *witnessed]
    report = Report(len(result.seqs), result.pruned, len(notes), result.problem)
    if result.problem is not None:
        return report
    tree = merkle.Tree(result.leaves)
    checkpoints: list[Checkpoint] = []
    for note in notes:
        try:
            checkpoints.append(open_checkpoint(note, public_key))
        except NoteError:
            size = note.split("\n")[1] if note.count("\n") > 1 else "?"
            report.problem = Problem(
                None, f"point de contrôle de taille {size} : signature invalide ou absente")
            return report
    in_database = {(c.tree_size, c.root_hash) for c in checkpoints[:len(stored)]}
    missing = sorted({c.tree_size for c in checkpoints[len(stored):]
                      if (c.tree_size, c.root_hash) not in in_database})
    checkpoints.sort(key=lambda c: c.tree_size)
    good: Checkpoint | None = None
    for checkpoint in checkpoints:
        report.problem = _check_checkpoint(tree, result.seqs, checkpoint, good, reference)
        if report.problem is not None:
            return report
        good = checkpoint
    report.latest = good
    if missing:
        report.problem = Problem(
            None, f"{len(missing)} point(s) de contrôle signé(s) du fichier témoin absent(s) "
                  f"de la base de données (tailles {_sizes(missing)}) : points de contrôle "
                  "supprimés de la base")
    return report


def _sizes(sizes: list[int]) -> str:
    shown = ", ".join(str(s) for s in sizes[:5])
    return shown + (", ..." if len(sizes) > 5 else "")


def _check_checkpoint(tree: merkle.Tree, seqs: list[int], checkpoint: Checkpoint,
                      good: Checkpoint | None,
                      reference: Mapping[int, bytes] | None) -> Problem | None:
    size = checkpoint.tree_size
    after = good.tree_size if good is not None else 0
    if size > tree.size:
        last = seqs[-1] if seqs else 0
        return Problem(
            last + 1,
            f"le point de contrôle signé atteste {size} événements, il n'en reste que "
            f"{tree.size} : événements supprimés après l'événement {last}",
        )
    if tree.root(size) != checkpoint.root_hash:
        first = _first_difference(tree, seqs, after, size, reference)
        exact = first is not None
        named = first if exact else seqs[after]
        where = ("premier événement différent de l'export de référence" if exact else
                 f"premier événement après le dernier point de contrôle valide "
                 f"(taille {after}) ; la falsification se situe entre les événements "
                 f"{seqs[after]} et {seqs[size - 1]}")
        return Problem(
            named,
            f"historique réécrit : la racine des {size} premiers événements ne correspond "
            f"plus au point de contrôle signé ({where})",
        )
    if good is not None:
        proof = tree.consistency_proof(good.tree_size, size)
        if not merkle.verify_consistency(good.tree_size, size, proof, good.root_hash,
                                         checkpoint.root_hash):
            return Problem(seqs[after], f"preuve de cohérence invalide entre les points de "
                                        f"contrôle de taille {after} et {size}")
    return None


def _first_difference(tree: merkle.Tree, seqs: list[int], start: int, end: int,
                      reference: Mapping[int, bytes] | None) -> int | None:
    if not reference:
        return None
    leaves = tree.levels[0]
    for index in range(start, end):
        known = reference.get(seqs[index])
        if known is not None and known != leaves[index]:
            return seqs[index]
    return None


def reference_leaves(lines: Iterable[str]) -> dict[int, bytes]:
    """Leaf hashes by seq from an export file (its event lines)."""
    found: dict[int, bytes] = {}
    for line in lines:
        if not line.strip():
            continue
        row = json.loads(line)
        if "seq" in row and "leaf_hash" in row:
            try:
                found[int(row["seq"])] = bytes.fromhex(row["leaf_hash"])
            except (ValueError, binascii.Error):
                continue
    return found
