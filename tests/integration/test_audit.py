"""`coffre audit` on a real data directory: the database is tampered with
every way (raw SQL, as an attacker with write access would) and the
verifier must name the right event (SEC-31); pruning keeps proofs valid
(SEC-32); exports verify offline; printed content is inert (SEC-30); the
admin API shows an organisation its own events only (SEC-4)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from coffre.audit import trail
from coffre.bootstrap import build
from coffre.crypto.signing import SigningKeyFile
from coffre.notify.memory import MemoryMailer
from coffre.settings import Settings
from tests import backends
from tests.conftest import Server, login
from tests.integration.flows import sql
from tests.integration.support import api_client, module_server, other_organisation_admin

mail, server, token, client, admin = module_server("audit", COFFRE_AUDIT_CHECKPOINT_SECONDS="1")

EVENTS = 20
ADMIN_SCOPES = ["transfers:read", "admin"]
OTHER_EMAIL, OTHER_PASSWORD = "admin@autre-cabinet.fr", "une autre phrase de passe"
HOSTILE = "[red]rouge[/red]\x1b[2J\r\nfaux événement"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding 20 events (the first 5 dated 2000, past
    retention; the others from yesterday), checkpoints signed at 10 and 15
    events (stored, in the data directory's witness file, and appended to
    a witness file kept elsewhere), and an export."""
    base = tmp_path_factory.mktemp("audit-pristine")
    data = base / "data"
    app = build(Settings(data_dir=data, database_url=backends.database_setting(data)),
                mailer=MemoryMailer())
    old, recent = datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) - timedelta(days=1)
    try:
        for i in range(EVENTS):
            with app.db.session() as session:
                trail.record(session, "test.event", actor=f"user{i}", organisation_id="org",
                             object_type="thing", object_id=str(i),
                             time=(old if i < 5 else recent) + timedelta(minutes=i),
                             name=f"fichier-{i}.pdf")
            if i + 1 in (10, 15):
                signed = app.audit.checkpoint()
                assert signed is not None
                with (base / "witness.txt").open("a") as f:
                    f.write(signed.note + "\n")
    finally:
        app.close()
    done = cli(data, "audit", "export", "-o", str(base / "export.jsonl"), "--to", "20")
    assert done.returncode == 0, done.stderr
    return base


def cli(data: Path, *args: str) -> Any:
    return Server(data).coffre(*args)


@pytest.fixture
def data(pristine: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the pristine data directory, to tamper with."""
    copy = tmp_path / "data"
    shutil.copytree(pristine / "data", copy)
    backends.copy_database(pristine / "data", copy)
    yield copy


def verify(data: Path, *args: str) -> Any:
    return cli(data, "audit", "verify", *args)


def rows(data: Path) -> dict[int, tuple[Any, ...]]:
    return {r[0]: r[1:] for r in sql(data, "SELECT seq, payload, leaf_hash, prev_hash, hash "
                                           "FROM audit_events")}


def rewrite_history(data: Path, victim: int, *, reseal: bool = False) -> None:
    """Edit one event and recompute every later leaf and chain hash; with
    ``reseal``, every seal too (an attacker who also read the key file)."""
    events = sql(data, "SELECT seq, payload, time, action, organisation_id, mac "
                       "FROM audit_events ORDER BY seq")
    key = SigningKeyFile(data / "keys" / "audit-signing.key", create=False).mac_key
    sql(data, "UPDATE audit_events SET prev_hash = 'p' || seq, hash = 'h' || seq")
    prev = mac = trail.GENESIS
    for seq, stored, when, action, organisation, sealed in events:
        payload = stored.replace('"success"', '"failure"') if seq == victim else stored
        leaf = trail.leaf_hash(payload)
        chained = trail.chain_hash(prev, leaf)
        mac = trail.row_mac(key, mac, seq, leaf, when, action, organisation) if reseal \
            else sealed
        sql(data, "UPDATE audit_events SET payload = ?, leaf_hash = ?, prev_hash = ?, "
                  "hash = ?, mac = ? WHERE seq = ?", payload, leaf, prev, chained, mac, seq)
        prev = chained


def forge(data: Path, action: str = "test.event", **details: Any) -> int:
    """Append a correctly chained event with raw SQL, as an insider who can
    write the database but has no key file: returns its seq."""
    ((seq, prev),) = sql(data, "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
    when = datetime.now(UTC) - timedelta(hours=1)
    payload = trail.canonical_json({
        "action": action, "actor": "intrus", "organisation": "org", "object": None,
        "outcome": "success", "source": None, "user_agent": None,
        "time": trail.utc_iso(when), "details": details or None})
    leaf = trail.leaf_hash(payload)
    sql(data, "INSERT INTO audit_events (seq, time, organisation_id, action, payload, "
              "leaf_hash, prev_hash, hash) VALUES (?, ?, 'org', ?, ?, ?, ?, ?)",
        seq + 1, when, action, payload, leaf, prev,
        trail.chain_hash(prev, leaf))
    return int(seq + 1)


def test_intact_trail_verifies(data: Path, pristine: Path) -> None:
    done = verify(data, "--checkpoints", str(pristine / "witness.txt"))
    assert done.returncode == 0, done.stderr
    assert "intact" in done.stdout and "21 événement(s)" in done.stdout  # + the export event


def test_edited_event_is_named(data: Path) -> None:
    """SEC-31: editing a row."""
    sql(data, "UPDATE audit_events SET payload = replace(payload, 'user6', 'user9') "
              "WHERE seq = 7")
    done = verify(data)
    assert done.returncode == 3
    assert "événement 7" in done.stderr and "modifié" in done.stderr


def test_deleted_event_is_named(data: Path) -> None:
    """SEC-31: deleting a row."""
    sql(data, "DELETE FROM audit_events WHERE seq = 7")
    done = verify(data)
    assert done.returncode == 3
    assert "événement 7" in done.stderr and "supprimé" in done.stderr


def test_inserted_event_is_named(data: Path) -> None:
    """SEC-31: a forged row slipped in at seq 7 (later rows renumbered)."""
    sql(data, "UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 7")
    sql(data, "UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1000")
    payload = trail.canonical_json({"action": "test.event", "organisation": "org"})
    leaf = trail.leaf_hash(payload)
    sql(data, "INSERT INTO audit_events (seq, time, organisation_id, action, payload, leaf_hash, "
              "prev_hash, hash) VALUES (7, '2026-01-01 06:30:00.000000', 'org', 'test.event', "
              "?, ?, ?, ?)", payload, leaf, "e" * 64, trail.chain_hash("e" * 64, leaf))
    done = verify(data)
    assert done.returncode == 3
    assert "événement 7" in done.stderr and "lien" in done.stderr


def test_swapped_events_are_named(data: Path) -> None:
    """SEC-31: two rows' contents swapped (reordering)."""
    before = rows(data)
    sql(data, "UPDATE audit_events SET prev_hash = 'x' || seq, hash = 'y' || seq "
              "WHERE seq IN (7, 9)")
    for seq, other in ((7, 9), (9, 7)):
        sql(data, "UPDATE audit_events SET payload = ?, leaf_hash = ?, prev_hash = ?, hash = ? "
                  "WHERE seq = ?", *before[other], seq)
    done = verify(data)
    assert done.returncode == 3
    assert "événement 7" in done.stderr


def test_rewritten_history_without_the_key_is_named_by_its_seal(data: Path) -> None:
    """Issue 15, finding 1: every later public hash recomputed by someone
    who can write the database but not read the key file: the seal names
    the edited event, even once every checkpoint and the witness file are
    gone, and nothing signs over it."""
    rewrite_history(data, victim=12)
    sql(data, "DELETE FROM audit_checkpoints")
    (data / "keys" / "audit-checkpoints.txt").unlink()
    done = verify(data)
    assert done.returncode == 3
    assert "événement 12" in done.stderr and "sceau" in done.stderr
    refused = cli(data, "audit", "checkpoint")
    assert refused.returncode == 3 and "refus de signer" in refused.stderr
    assert sql(data, "SELECT count(*) FROM audit_checkpoints") == [(0,)]


def test_rewritten_history_is_caught_by_the_checkpoints(data: Path) -> None:
    """SEC-31: every later hash and seal recomputed (the key file was read);
    the signed checkpoint of 15 events no longer matches; the first event
    after the good one (10) is named."""
    rewrite_history(data, victim=12, reseal=True)
    done = verify(data)
    assert done.returncode == 3
    assert "événement 11" in done.stderr and "réécrit" in done.stderr
    refused = cli(data, "audit", "checkpoint")  # nothing signs over a rewritten history
    assert refused.returncode == 3 and "refus de signer" in refused.stderr


def test_sec31_deleted_checkpoints_do_not_hide_a_rewrite(data: Path, pristine: Path) -> None:
    """SEC-31 (review finding): rewrite and delete every stored checkpoint.
    The witness file next to the signing key, read by default, catches it,
    and the server refuses to sign the forged history (an attacker who read
    the key file and resealed every row)."""
    rewrite_history(data, victim=12, reseal=True)
    sql(data, "DELETE FROM audit_checkpoints")
    done = verify(data)
    assert done.returncode == 3
    assert "événement 11" in done.stderr and "réécrit" in done.stderr
    refused = cli(data, "audit", "checkpoint")
    assert refused.returncode == 3 and "refus de signer" in refused.stderr
    assert sql(data, "SELECT count(*) FROM audit_checkpoints") == [(0,)]
    # The limit: whoever can also write the keys directory removes the witness
    # file; then only a copy kept elsewhere catches the rewrite.
    (data / "keys" / "audit-checkpoints.txt").unlink()
    fooled = verify(data)
    assert fooled.returncode == 0 and "aucun point de contrôle signé" in fooled.stderr
    done = verify(data, "--checkpoints", str(pristine / "witness.txt"))
    assert done.returncode == 3
    assert "événement 11" in done.stderr


def test_sec31_checkpoints_deleted_from_the_database_are_reported(data: Path) -> None:
    """SEC-31: the database lost signed checkpoints the witness file holds."""
    sql(data, "DELETE FROM audit_checkpoints WHERE tree_size > 10")
    done = verify(data)
    assert done.returncode == 3
    assert "témoin" in done.stderr and "tailles 15, 21" in done.stderr
    assert cli(data, "audit", "checkpoint").returncode == 3


def test_insider_appended_tail_is_reported_and_never_signed(data: Path) -> None:
    """Issue 15, finding 1 (a): events appended at the tail with raw SQL,
    correctly chained: without the key they carry no valid seal; verify
    names the first and the checkpoint command refuses to sign them."""
    first = forge(data)
    forge(data, "member.disabled")
    done = verify(data)
    assert done.returncode == 3
    assert f"événement {first}" in done.stderr and "sceau" in done.stderr
    refused = cli(data, "audit", "checkpoint")
    assert refused.returncode == 3 and "refus de signer" in refused.stderr
    assert sql(data, "SELECT max(tree_size) FROM audit_checkpoints") == [(first - 1,)]


def test_forged_purge_does_not_excuse_an_erased_payload(data: Path) -> None:
    """Issue 15, finding 1 (b): a forged ``audit.pruned`` with a huge
    ``up_to_seq``, then the payload of a signed event erased."""
    forged = forge(data, "audit.pruned", up_to_seq=10**9, count=1, retention_days=30,
                   before=trail.utc_iso(datetime.now(UTC) - timedelta(days=31)))
    sql(data, "UPDATE audit_events SET payload = NULL WHERE seq = 12")
    done = verify(data)
    assert done.returncode == 3
    assert "événement 12" in done.stderr and "purge" in done.stderr
    sql(data, "UPDATE audit_events SET payload = NULL WHERE seq <= 12")  # a prefix now
    done = verify(data)
    assert done.returncode == 3 and f"événement {forged}" in done.stderr


def test_erased_events_keep_a_sealed_time(data: Path) -> None:
    """Once pruned, an event's time is still sealed: moving it (to make a
    later purge look legitimate) is reported."""
    assert cli(data, "audit", "prune").returncode == 0
    assert verify(data).returncode == 0
    sql(data, "UPDATE audit_events SET time = ? WHERE seq = 3", datetime(1999, 1, 1, tzinfo=UTC))
    done = verify(data)
    assert done.returncode == 3
    assert "événement 3" in done.stderr and "sceau" in done.stderr


def before_seals(data: Path) -> None:
    """Take the database back to before the migration that added seals
    (as an install from before it, or an insider allowed to alter tables)."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from coffre.db.migrate import alembic_config

    config = alembic_config(backends.database_url(data))
    (seals,) = [r for r in ScriptDirectory.from_config(config).walk_revisions()
                if 'sa.Column("mac"' in Path(r.path).read_text()]
    assert isinstance(seals.down_revision, str)
    command.downgrade(config, seals.down_revision)


def test_stripped_seals_are_never_rebuilt(data: Path) -> None:
    """Without altering the schema, seals set to NULL stay missing (they are
    made once, at the upgrade), so a tail forged meanwhile is reported."""
    sql(data, "UPDATE audit_events SET mac = NULL")
    first = forge(data)
    done = verify(data)
    assert done.returncode == 3 and "sans sceau" in done.stderr
    assert sql(data, "SELECT count(*) FROM audit_events WHERE mac IS NOT NULL") == [(0,)]
    assert cli(data, "audit", "checkpoint").returncode == 3
    assert sql(data, "SELECT max(tree_size) FROM audit_checkpoints") == [(first - 1,)]


def test_upgrade_refuses_to_seal_a_rewritten_trail(data: Path) -> None:
    """An insider's rewrite just before the upgrade is not sealed."""
    rewrite_history(data, victim=12)
    before_seals(data)
    no_marker(data)
    start(data)
    done = verify(data)
    assert done.returncode == 3
    assert sql(data, "SELECT count(*) FROM audit_events WHERE mac IS NOT NULL") == [(0,)]


def test_export_with_removed_lines_fails(data: Path, tmp_path: Path) -> None:
    """Issue 15, finding 5: deleting event lines from an export (with or
    without adjusting the header's count) fails `coffre audit verify-export`."""
    exported = tmp_path / "range.jsonl"
    assert cli(data, "audit", "export", "--from", "3", "--to", "8",
               "-o", str(exported)).returncode == 0
    lines = exported.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    for removed, named in ((1, 3), (3, 5), (6, 8)):
        for count in (header["count"], header["count"] - 1):
            cut = tmp_path / f"cut-{removed}-{count}.jsonl"
            cut.write_text(json.dumps({**header, "count": count}) + "\n" + "".join(
                line for i, line in enumerate(lines[1:], 1) if i != removed))
            done = cli(data, "audit", "verify-export", str(cut))
            assert done.returncode == 3, (removed, count)
            if count != header["count"]:
                assert f"événement {named}" in done.stderr


def test_witness_file_holds_every_signed_checkpoint(data: Path) -> None:
    """SEC-31: keys/audit-checkpoints.txt, private to the server's user,
    holds the checkpoints of 10 and 15 events and the export's (21)."""
    witness = data / "keys" / "audit-checkpoints.txt"
    assert witness.stat().st_mode & 0o777 == 0o600
    notes = witness.read_text().split("\n\n")[0::2]
    assert [note.splitlines()[1] for note in notes if note.strip()] == ["10", "15", "21"]
    stored = [row[0] for row in sql(data, "SELECT note FROM audit_checkpoints "
                                          "ORDER BY tree_size")]
    assert witness.read_text() == "".join(note + "\n" for note in stored)


def test_fresh_trail_without_checkpoint_verifies_with_a_warning(tmp_path: Path) -> None:
    app = build(Settings(data_dir=tmp_path / "data",
                         database_url=backends.database_setting(tmp_path / "data")),
                mailer=MemoryMailer())
    try:
        with app.db.session() as session:
            trail.record(session, "test.event", actor="u", organisation_id="org")
    finally:
        app.close()
    done = verify(tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert "Attention" in done.stderr and "aucun point de contrôle signé" in done.stderr


def test_earlier_export_pinpoints_the_rewritten_event(data: Path, pristine: Path) -> None:
    rewrite_history(data, victim=12)
    done = verify(data, "--export", str(pristine / "export.jsonl"))
    assert done.returncode == 3
    assert "événement 12" in done.stderr


def test_export_verifies_offline_and_detects_edits(data: Path, tmp_path: Path) -> None:
    """SEC-29: the export is itself an event; a third party holding only the
    public key checks every line."""
    vkey = cli(data, "audit", "public-key").stdout.strip()
    exported = tmp_path / "range.jsonl"
    done = cli(data, "audit", "export", "--from", "3", "--to", "8", "-o", str(exported))
    assert done.returncode == 0, done.stderr
    lines = exported.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines[1:]] == [3, 4, 5, 6, 7, 8]
    assert "\u2014 " in json.loads(lines[0])["checkpoint"]
    offline = Server(tmp_path / "elsewhere").coffre(
        "audit", "verify-export", str(exported), "--public-key", vkey)
    assert offline.returncode == 0, offline.stderr
    assert "6 événement(s)" in offline.stdout
    (event,) = [e for e in trail_events(data) if e["action"] == "audit.exported"][-1:]
    assert event["details"]["from_seq"] == 3 and event["source"] == "cli"
    exported.write_text("\n".join([lines[0], lines[1], lines[2].replace("user3", "user0"),
                                   *lines[3:]]) + "\n")
    forged = Server(tmp_path / "elsewhere").coffre(
        "audit", "verify-export", str(exported), "--public-key", vkey)
    assert forged.returncode == 3 and "événement 4" in forged.stderr


def trail_events(data: Path) -> list[dict[str, Any]]:
    return [{"seq": seq, **json.loads(p)} for seq, p in
            sql(data, "SELECT seq, payload FROM audit_events WHERE payload IS NOT NULL "
                      "ORDER BY seq")]


def test_prune_after_a_year_keeps_every_proof(data: Path, pristine: Path) -> None:
    """SEC-32: the first 5 events are dated 2000: prune, then the trail,
    the witness checkpoints and the earlier export verify."""
    done = cli(data, "audit", "prune")
    assert done.returncode == 0, done.stderr
    assert "5 événement(s)" in done.stdout
    assert sql(data, "SELECT count(*) FROM audit_events WHERE payload IS NULL") == [(5,)]
    (pruned,) = [e for e in trail_events(data) if e["action"] == "audit.pruned"]
    assert pruned["details"]["up_to_seq"] == 5 and pruned["details"]["count"] == 5
    done = verify(data, "--checkpoints", str(pristine / "witness.txt"))
    assert done.returncode == 0, done.stderr
    assert "dont 5 purgé(s)" in done.stdout
    earlier = cli(data, "audit", "verify-export", str(pristine / "export.jsonl"))
    assert earlier.returncode == 0, earlier.stderr


def test_sec32_edited_time_column_is_reported_and_not_pruned(data: Path) -> None:
    """SEC-32 (review finding): a recent event's unhashed ``time`` column
    pushed into the past: the verifier names it and the purge, which
    reads the signed times, erases nothing beyond the 5 old events."""
    sql(data, "UPDATE audit_events SET time = '2000-01-01 00:00:00.000000' WHERE seq = 18")
    done = verify(data)
    assert done.returncode == 3
    assert "événement 18" in done.stderr and "horodatage" in done.stderr
    pruned = cli(data, "audit", "prune")
    assert pruned.returncode == 0, pruned.stderr
    assert "5 événement(s)" in pruned.stdout
    assert sql(data, "SELECT max(seq) FROM audit_events WHERE payload IS NULL") == [(5,)]
    assert "événement 18" in verify(data).stderr


def test_checkpoint_command_appends_to_a_witness_file(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "witness.txt"
    for _ in range(2):
        done = cli(data, "audit", "checkpoint", "-o", str(out))
        assert done.returncode == 0, done.stderr
    notes = out.read_text().split("\n\n")
    assert out.read_text().count("\u2014 ") == 2  # the tree did not grow: same checkpoint
    assert notes[0].splitlines()[1] == "21"
    assert verify(data, "--checkpoints", str(out)).returncode == 0


def test_printed_events_are_inert(data: Path) -> None:
    """SEC-30: CR/LF/ANSI and rich markup in a logged value reach the
    terminal as visible text."""
    app = build(Settings(data_dir=data, database_url=backends.database_setting(data)),
                mailer=MemoryMailer(), migrate=False)
    try:
        with app.db.session() as session:
            trail.record(session, "login.failed", actor=None, organisation_id="org",
                         context=trail.Context("127.0.0.1", HOSTILE), name=HOSTILE)
    finally:
        app.close()
    done = cli(data, "audit", "show", "--action", "login.failed")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\r" not in done.stdout
    assert "[red]rouge[/red]" in done.stdout  # shown, not interpreted as markup
    (line,) = [x for x in done.stdout.splitlines() if "login.failed" in x]
    assert "faux événement" in line  # on the same line: no injected line break


# -- the running server: scheduled checkpoints and the admin API -------------------------


def test_scheduler_signs_checkpoints(server: Server, token: str) -> None:
    """SEC-31: checkpoints are taken by the server when the trail grows."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        size = sql(server.data_dir, "SELECT max(tree_size) FROM audit_checkpoints")[0][0]
        count = sql(server.data_dir, "SELECT count(*) FROM audit_events")[0][0]
        if size and size == count:
            break
        time.sleep(0.2)
    assert size and size >= 1
    assert server.coffre("audit", "verify").returncode == 0


def test_api_shows_an_organisation_only_its_events(server: Server,
                                                   client: httpx.Client,
                                                   admin: dict[str, Any]) -> None:
    """SEC-4: the client sees its access traces, and nobody else's; reading
    them takes the admin scope."""
    refused = client.get("/api/v1/audit/events")
    assert refused.status_code == 403, refused.text
    with api_client(server, login(server.url, scopes=ADMIN_SCOPES)) as c:
        response = c.get("/api/v1/audit/events", params={"limit": 1000})
        page = c.get("/api/v1/audit/events", params={"after": 0, "limit": 1})
        assert page.status_code == 200, page.text
    assert response.status_code == 200, response.text
    mine = response.json()["events"]
    assert mine and all(e["organisation"] == admin["organisation_id"] for e in mine)
    assert {"seq", "action", "actor", "time", "outcome", "source"} <= set(mine[0])
    assert [e["seq"] for e in page.json()["events"]] == [mine[0]["seq"]]
    assert page.json()["next_after"] == mine[0]["seq"]
    some = sorted({e["action"] for e in mine})[0]
    with api_client(server, login(server.url, scopes=ADMIN_SCOPES)) as c:
        only = c.get("/api/v1/audit/events", params={"action": some}).json()["events"]
    assert only and {e["action"] for e in only} == {some}

    other_organisation_admin(server, OTHER_EMAIL, OTHER_PASSWORD)
    with api_client(server, login(server.url, OTHER_EMAIL, OTHER_PASSWORD,
                                  scopes=ADMIN_SCOPES)) as c:
        theirs = c.get("/api/v1/audit/events", params={"limit": 1000})
    assert theirs.status_code == 200, theirs.text
    seen = {e["seq"] for e in theirs.json()["events"]}
    assert not seen & {e["seq"] for e in mine}
    assert all(e["organisation"] != admin["organisation_id"] for e in theirs.json()["events"])


def test_api_refuses_without_credentials(server: Server) -> None:
    response = httpx.get(f"{server.url}/api/v1/audit/events")
    assert response.status_code == 401


def test_scheduler_raises_the_alert_on_a_rewritten_trail(server: Server, token: str) -> None:
    """SEC-31: any modification raises an alert: the server refuses to sign
    over a trail that no longer extends its last checkpoint, and says so."""
    assert server.log_path is not None
    test_scheduler_signs_checkpoints(server, token)  # a checkpoint covers event 1
    (original,) = sql(server.data_dir, "SELECT leaf_hash FROM audit_events WHERE seq = 1")[0]
    sql(server.data_dir, "UPDATE audit_events SET leaf_hash = ? WHERE seq = 1", "0" * 64)
    try:
        deadline = time.monotonic() + 20
        while "AUDIT TRAIL ALTERED" not in server.log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, "no alert in the server log"
            time.sleep(0.2)
    finally:
        sql(server.data_dir, "UPDATE audit_events SET leaf_hash = ? WHERE seq = 1", original)
    assert server.coffre("audit", "verify").returncode == 0


def test_scheduler_raises_the_alert_when_checkpoints_are_deleted(server: Server,
                                                                 token: str) -> None:
    """SEC-31 (review finding): deleting the stored checkpoints (to have a
    rewritten history signed) no longer works: the server's witness file
    still holds them, so it refuses to sign and raises the alert."""
    assert server.log_path is not None
    test_scheduler_signs_checkpoints(server, token)
    offset = len(server.log_path.read_text(errors="replace"))
    saved = sql(server.data_dir, "DELETE FROM audit_checkpoints "
                                 "RETURNING tree_size, root_hash, time, note")
    try:
        deadline = time.monotonic() + 20
        while "AUDIT TRAIL ALTERED" not in server.log_path.read_text(errors="replace")[offset:]:
            assert time.monotonic() < deadline, "no alert in the server log"
            time.sleep(0.2)
        assert sql(server.data_dir, "SELECT count(*) FROM audit_checkpoints") == [(0,)]
        assert server.coffre("audit", "verify").returncode == 3
    finally:
        for row in saved:
            sql(server.data_dir, "INSERT INTO audit_checkpoints (tree_size, root_hash, "
                                 "time, note) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", *row)
    assert server.coffre("audit", "verify").returncode == 0


def test_scheduler_refuses_to_sign_a_forged_tail(server: Server, token: str) -> None:
    """Issue 15, finding 1 (a) on the running server: a correctly chained
    row appended with raw SQL is never signed by the scheduler, which
    raises the alert."""
    assert server.log_path is not None
    test_scheduler_signs_checkpoints(server, token)
    offset = len(server.log_path.read_text(errors="replace"))
    forged = forge(server.data_dir)
    try:
        deadline = time.monotonic() + 20
        while "AUDIT TRAIL ALTERED" not in server.log_path.read_text(errors="replace")[offset:]:
            assert time.monotonic() < deadline, "no alert in the server log"
            time.sleep(0.2)
        assert sql(server.data_dir, "SELECT max(tree_size) FROM audit_checkpoints")[0][0] \
            < forged
        done = server.coffre("audit", "verify")
        assert done.returncode == 3 and f"événement {forged}" in done.stderr
    finally:
        sql(server.data_dir, "DELETE FROM audit_events WHERE seq >= ?", forged)
    assert server.coffre("audit", "verify").returncode == 0


# -- issue 15, second review of the seals: attacks by someone who can write the
# database only (the reviewer's scripts, against a real data directory) -------------


def start(data: Path) -> None:
    """A server start (what `coffre serve` builds first): migrations, then the
    one-time adoption of a trail from before seals."""
    build(Settings(data_dir=data, database_url=backends.database_setting(data)),
          mailer=MemoryMailer()).close()


def no_marker(data: Path) -> None:
    """The key directory and checkpoints of an install from before seals:
    no seal marker, checkpoints signed without the seals extension."""
    from coffre.audit.note import Checkpoint, open_checkpoint, sign

    (data / "keys" / "audit-sealed.json").unlink(missing_ok=True)
    key = SigningKeyFile(data / "keys" / "audit-signing.key", create=False)
    notes = []
    for size, note in sql(data, "SELECT tree_size, note FROM audit_checkpoints "
                                "ORDER BY tree_size"):
        cp = open_checkpoint(note, key.public_key)
        old = sign(Checkpoint(cp.origin, cp.tree_size, cp.root_hash), cp.origin,
                   key.public_key, key.sign)
        sql(data, "UPDATE audit_checkpoints SET note = ? WHERE tree_size = ?", old, size)
        notes.append(old + "\n")
    (data / "keys" / "audit-checkpoints.txt").write_text("".join(notes))


def marker(data: Path) -> dict[str, Any]:
    return dict(json.loads((data / "keys" / "audit-sealed.json").read_text()))


def test_review_1_downgrade_does_not_get_a_forgery_sealed(data: Path) -> None:
    """Review item 1: a correctly chained forged ``audit.pruned`` appended,
    every signed payload erased, then `alembic downgrade` drops the seals so
    that the next start "adopts" the forgery. The marker outside the
    database (written at this trail's first start) refuses the adoption;
    neither `coffre audit verify` nor a start seals anything, verify
    reports the rows and the checkpoint job refuses to sign."""
    top = forge(data, "audit.pruned", up_to_seq=21, count=21, retention_days=0,
                before=trail.utc_iso(datetime.now(UTC) - timedelta(minutes=1)))
    sql(data, "UPDATE audit_events SET payload = NULL WHERE seq <= 21")
    before_seals(data)
    done = verify(data)  # migrates, never adopts
    assert done.returncode == 3 and "événement 1 " in done.stderr and "sans sceau" in done.stderr
    srv = Server(data, env={"COFFRE_AUDIT_CHECKPOINT_SECONDS": "1"})
    srv.start()  # the next `coffre serve`: refuses to adopt, then to sign
    try:
        deadline = time.monotonic() + 30
        while srv.log().count("AUDIT TRAIL ALTERED") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        srv.stop()
    assert "seals of the audit trail were removed" in srv.log()
    assert "refusing to sign" in srv.log()
    # nothing written before the start got a seal (events the server adds are sealed)
    assert sql(data, "SELECT count(*) FROM audit_events WHERE mac IS NOT NULL AND seq <= ?",
               top) == [(0,)]
    done = verify(data)
    assert done.returncode == 3 and "sans sceau" in done.stderr
    refused = cli(data, "audit", "checkpoint")
    assert refused.returncode == 3
    assert sql(data, "SELECT max(tree_size) FROM audit_checkpoints") == [(top - 1,)]
    assert marker(data)["adopted_seq"] is None  # sealed from its first event


def test_review_1_upgrade_adopts_once_and_on_trust_needs_acknowledging(data: Path) -> None:
    """The genuine upgrade (a trail from before seals and before the marker):
    `coffre audit verify` does not adopt; the first start does, writes the
    marker with the adoption's seq and the range sealed on trust; verify
    exits 4 until the operator runs `coffre audit acknowledge`. Later, the
    genuine ``audit.adopted`` renamed (as once pruned) and the seals dropped
    again: no second adoption, reported."""
    tail = forge(data)
    before_seals(data)
    no_marker(data)
    done = verify(data)
    assert done.returncode == 3 and "sans sceau" in done.stderr
    assert not (data / "keys" / "audit-sealed.json").exists()
    start(data)
    assert sql(data, "SELECT count(*) FROM audit_events WHERE mac IS NULL") == [(0,)]
    (adopted,) = [e for e in trail_events(data) if e["action"] == "audit.adopted"]
    assert marker(data) == {"format": "coffre-audit-sealed/1", "adopted_seq": adopted["seq"],
                            "on_trust": [tail, tail], "acknowledged": False}
    done = verify(data)
    assert done.returncode == 4, done.stderr
    assert f"événements {tail} à {tail}" in done.stderr and "acknowledge" in done.stderr
    done = cli(data, "audit", "acknowledge")
    assert done.returncode == 0, done.stderr
    assert [e["details"] for e in trail_events(data) if e["action"] == "audit.acknowledged"] \
        == [{"on_trust_from": tail, "on_trust_to": tail}]
    assert verify(data).returncode == 0
    sql(data, "UPDATE audit_events SET action = 'test.event' WHERE seq = ?", adopted["seq"])
    before_seals(data)
    start(data)
    assert sql(data, "SELECT count(*) FROM audit_events WHERE mac IS NOT NULL") == [(0,)]
    done = verify(data)
    assert done.returncode == 3 and "sans sceau" in done.stderr


def test_review_1_adoption_not_matching_the_marker_is_reported(data: Path) -> None:
    """The database's ``audit.adopted`` events must be the one the marker
    names (here: none, the trail was sealed from its first event). With the
    seals intact, an extra one fails its seal; the marker check names it
    even for a verifier without the seal key (reported first either way)."""
    from coffre.audit.verify import verify as verify_rows
    from coffre.audit.witness import SealMarker
    from coffre.db.engine import Database

    seq = forge(data, "audit.adopted", sealed=21, signed_up_to=21, unsigned_from=None,
                unsigned_to=None)
    db = Database(backends.database_url(data))
    try:
        with db.engine.connect() as conn:
            report = verify_rows(conn, b"\0" * 32, sealed=SealMarker(
                data / "keys" / "audit-sealed.json").read())
    finally:
        db.dispose()
    assert report.problem is not None and report.problem.seq == seq
    assert "marqueur de scellement" in report.problem.reason


def test_review_2_respelled_times_are_reported_and_agree_with_the_checkpoint_job(
        data: Path) -> None:
    """Review item 2: the same instant spelt otherwise in the ``time`` column
    passed the seal but not the SQL filters (``T``) nor the ORM (an offset,
    read as another day): the checkpoint job then raised the alert forever
    while verify said intact. Both now refuse the non-canonical form."""
    if backends.database_setting(data):
        pytest.skip("text spellings of a time exist on SQLite only")
    sql(data, "UPDATE audit_events SET time = replace(time, ' ', 'T') WHERE seq = 3")
    done = verify(data)
    assert done.returncode == 3 and "événement 3 " in done.stderr and "canonique" in done.stderr
    sql(data, "UPDATE audit_events SET time = replace(time, 'T', ' ') WHERE seq = 3")
    assert verify(data).returncode == 0
    app = build(Settings(data_dir=data), mailer=MemoryMailer(), migrate=False)
    try:
        with app.db.session() as session:
            event = trail.record(session, "test.event", actor="late", organisation_id="org",
                                 time=datetime(2026, 3, 1, 11, 0, tzinfo=UTC))
        sql(data, "UPDATE audit_events SET time = '2026-03-02 06:00:00.000000+19:00' "
                  "WHERE seq = ?", event.seq)
        from sqlalchemy import select

        from coffre.db.tables import AuditEvent
        with app.db.session() as session:  # the ORM converts, never relabels
            assert session.execute(select(AuditEvent.time).where(
                AuditEvent.seq == event.seq)).scalar() == datetime(2026, 3, 1, 11, tzinfo=UTC)
    finally:
        app.close()
    done = verify(data)
    assert done.returncode == 3 and f"événement {event.seq} " in done.stderr
    assert "canonique" in done.stderr
    assert cli(data, "audit", "checkpoint").returncode == 3


def test_review_4_garbage_time_on_a_pruned_row_is_a_problem(data: Path) -> None:
    """Review item 4: an unparseable time on a pruned row made the verifier
    (and so the start that adopts) raise; it is reported."""
    if backends.database_setting(data):
        pytest.skip("PostgreSQL's timestamp column holds no unparseable time")
    assert cli(data, "audit", "prune").returncode == 0
    sql(data, "UPDATE audit_events SET time = 'pas une date' WHERE seq = 2")
    done = verify(data)
    assert done.returncode == 3 and "événement 2 " in done.stderr
    assert "Traceback" not in done.stderr
    before_seals(data)
    no_marker(data)
    start(data)  # no exception: adoption refused, logged
    assert sql(data, "SELECT count(*) FROM audit_events WHERE mac IS NOT NULL") == [(0,)]
    assert verify(data).returncode == 3


def test_review_3_export_header_is_tied_to_its_signed_event(data: Path, tmp_path: Path) -> None:
    """Review item 3 (issue finding 5): lines removed from a whole or a
    --since export, with the header's count, range or since edited to
    match, fail verify-export; verify-export prints the declared range."""
    whole = tmp_path / "whole.jsonl"
    assert cli(data, "audit", "export", "-o", str(whole)).returncode == 0
    lines = whole.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    cut = [line for i, line in enumerate(lines) if i != 4]
    for edited in ({"since": "1970-01-01T00:00:00.000000Z", "count": header["count"] - 1},
                   {"since": "", "count": header["count"] - 1},
                   {"from_seq": 2, "count": header["count"] - 1}):
        forged = tmp_path / "forged.jsonl"
        forged.write_text(json.dumps({**header, **edited}) + "\n" + "".join(cut[1:]))
        done = cli(data, "audit", "verify-export", str(forged))
        assert done.returncode == 3, edited
    dropped = tmp_path / "dropped.jsonl"  # the first three lines cut and the range moved
    dropped.write_text(json.dumps({**header, "from_seq": 4, "count": header["count"] - 3})
                       + "\n" + "".join(lines[4:]))
    done = cli(data, "audit", "verify-export", str(dropped))
    assert done.returncode == 3 and "en-tête" in done.stderr
    done = cli(data, "audit", "verify-export", str(whole))
    assert done.returncode == 0, done.stderr
    assert f"plage annoncée : événements 1 à {header['tree_size']}" in done.stdout
    assert header["exported_seq"] == header["tree_size"] == len(lines) - 1
    since = tmp_path / "since.jsonl"
    stamp = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    assert cli(data, "audit", "export", "--since", stamp, "-o", str(since)).returncode == 0
    lines = since.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    assert header["from_seq"] == 6  # the first event after the 5 dated 2000
    assert [json.loads(x)["seq"] for x in lines[1:]] == list(range(6, header["tree_size"] + 1))
    done = cli(data, "audit", "verify-export", str(since))
    assert done.returncode == 0, done.stderr
    assert "depuis le" in done.stdout and f"événements 6 à {header['tree_size']}" in done.stdout
    for i in (1, 5, len(lines) - 1):
        forged = tmp_path / f"since-{i}.jsonl"
        forged.write_text(json.dumps({**header, "count": header["count"] - 1}) + "\n"
                          + "".join(x for j, x in enumerate(lines[1:], 1) if j != i))
        assert cli(data, "audit", "verify-export", str(forged)).returncode == 3, i
