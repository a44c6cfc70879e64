"""``coffre audit``: verify the trail and its signed checkpoints, take
checkpoints, export with proofs, prune (server side, on the data directory,
like ``coffre setup``).

Event content printed to a terminal is made inert first (SEC-30): control
characters are shown as escapes and nothing is read as rich markup.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from coffre.audit import note as notes
from coffre.audit.log import verify_export
from coffre.audit.trail import Context
from coffre.audit.verify import Problem, reference_leaves
from coffre.bootstrap import Coffre, build
from coffre.cli.client import console, out
from coffre.cli.server import load_settings
from coffre.errors import IntegrityError

app = typer.Typer(help="The audit trail (hash chain, Merkle tree, signed checkpoints).",
                  no_args_is_help=True)
DataDir = Annotated[Path | None, typer.Option(envvar="COFFRE_DATA_DIR")]
PublicKey = Annotated[str | None, typer.Option(
    "--public-key", help="Verifier key (as printed by `coffre audit public-key`); "
    "default: the data directory's signing key")]
BROKEN = 3
#: Intact, but events sealed on trust at the upgrade await the operator's review.
ON_TRUST = 4
CLI = Context(source="cli")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(value: object) -> str:
    """``value`` as text a terminal will not act on: control characters
    (CR, LF, ESC of ANSI sequences...) become visible escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", str(value))


def say(message: str) -> None:
    out.print(printable(message), markup=False, highlight=False, soft_wrap=True)


def stop(message: str) -> NoReturn:
    """Like ``client.fail``, with the message printed as plain text (it may
    quote a file name or a value from the trail)."""
    console.print("Erreur : " + printable(message), markup=False, highlight=False,
                  style="bold red")
    raise typer.Exit(1)


def warn(message: str) -> None:
    console.print("Attention : " + printable(message), markup=False, highlight=False,
                  style="bold yellow")


def broken(problem: Problem) -> NoReturn:
    where = f"événement {problem.seq} : " if problem.seq is not None else ""
    console.print("Journal d'audit altéré — " + printable(where + problem.reason),
                  markup=False, highlight=False, style="bold red")
    raise typer.Exit(BROKEN)


@contextmanager
def opened(data_dir: Path | None) -> Iterator[Coffre]:
    # Never adopts a trail without seals: only a server start does, once
    # (`coffre audit verify` must not seal what it is asked to check).
    coffre = build(load_settings(data_dir), adopt=False)
    try:
        yield coffre
    finally:
        coffre.close()


def _public_key(text: str | None, coffre: Coffre | None) -> bytes:
    if text is None:
        if coffre is None:
            stop("--public-key est requis hors du répertoire de données")
        return coffre.audit.public_key
    try:
        return notes.parse_vkey(text).public_key
    except notes.NoteError:
        stop("clé de vérification invalide (attendue : nom+identifiant+clé, "
             "comme l'affiche `coffre audit public-key`)")


def _witness(files: list[Path]) -> list[str]:
    found: list[str] = []
    for path in files:
        try:
            found += notes.split_notes(path.read_text())
        except (OSError, notes.NoteError):
            stop(f"fichier de points de contrôle illisible ou incomplet : {path}")
    return found


@app.command()
def verify(
    checkpoints: Annotated[list[Path] | None, typer.Option(
        "--checkpoints", help="Witness file of signed checkpoints kept outside the database "
        "(repeatable)")] = None,
    export: Annotated[Path | None, typer.Option(
        "--export", help="An earlier export: names exactly the first rewritten event")] = None,
    public_key: PublicKey = None,
    data_dir: DataDir = None,
) -> None:
    """Check every event, the chain and every signed checkpoint (stored, in
    the witness file next to the signing key, in --checkpoints files);
    report the first altered, removed, inserted or reordered event, or a
    signed checkpoint deleted from the database (exit code 3)."""
    witness = _witness(checkpoints or [])
    reference = None
    if export is not None:
        try:
            reference = reference_leaves(export.read_text().splitlines()[1:])
        except (OSError, ValueError):
            stop(f"export illisible : {export}")
    with opened(data_dir) as coffre:
        key = _public_key(public_key, coffre)
        total = coffre.audit.count()
        with Progress("Vérification", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True,
                      disable=not console.is_terminal) as bar:
            task = bar.add_task("audit", total=total)
            report = coffre.audit.verify(witness, public_key=key, reference=reference,
                                         progress=lambda n: bar.advance(task, n))
        witness_file = coffre.audit.witness
        on_trust = coffre.audit.adopted_on_trust() if report.intact else None
    if report.problem is not None:
        broken(report.problem)
    latest = f", dernier point de contrôle : {report.latest.tree_size} événement(s)" \
        if report.latest else ", aucun point de contrôle signé"
    say(f"Journal d'audit intact : {report.events} événement(s) vérifié(s) "
        f"(dont {report.pruned} purgé(s)), {report.checkpoints} point(s) de contrôle "
        f"vérifié(s){latest}.")
    if report.latest is None and report.events:
        warn("aucun point de contrôle signé : rien ne prouve que ces événements n'ont pas été "
             "réécrits (normal avant le premier point de contrôle d'une installation neuve ; "
             "lancez `coffre audit checkpoint`).")
    if report.latest is not None and not witness_file.exists():
        warn(f"fichier témoin {witness_file.path} absent : il sera recréé au prochain point "
             "de contrôle ; gardez-en une copie hors de ce serveur.")
    if on_trust is not None:
        warn(f"les événements {on_trust[0]} à {on_trust[1]}, écrits avant la mise à niveau "
             "après le dernier point de contrôle signé, ont été scellés sans preuve (voir "
             "l'événement audit.adopted) : comparez-les avec vos propres traces, puis "
             "lancez `coffre audit acknowledge`.")
        raise typer.Exit(ON_TRUST)


@app.command()
def acknowledge(data_dir: DataDir = None) -> None:
    """Record that the events sealed on trust at the upgrade (named by
    `coffre audit verify`) were compared with your own records: verify
    then exits 0 for them (recorded as audit.acknowledged)."""
    with opened(data_dir) as coffre:
        done = coffre.audit.acknowledge(context=CLI)
    if done is None:
        say("Aucun événement scellé sans preuve à reconnaître.")
    else:
        say(f"Événements {done[0]} à {done[1]} reconnus (scellés sans preuve à la mise à "
            "niveau).")


@app.command()
def checkpoint(
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Witness file to append the signed checkpoint to")] = None,
    data_dir: DataDir = None,
) -> None:
    """Sign the current tree (if it grew), store the checkpoint and append it
    to the witness file next to the signing key (and to --output)."""
    with opened(data_dir) as coffre:
        try:
            signed = coffre.audit.checkpoint() or coffre.audit.latest()
        except IntegrityError:
            console.print("Journal d'audit altéré — refus de signer : il ne prolonge plus le "
                          "dernier point de contrôle signé (base de données ou fichier témoin) ; "
                          "lancez `coffre audit verify`.",
                          markup=False, highlight=False, style="bold red")
            raise typer.Exit(BROKEN) from None
    if signed is None:
        say("Journal d'audit vide : aucun point de contrôle.")
        return
    if output is not None:
        with output.open("a", encoding="utf-8") as f:
            f.write(signed.note + "\n")
        say(f"Point de contrôle ({signed.checkpoint.tree_size} événement(s)) ajouté à {output}.")
    else:
        sys.stdout.write(signed.note)


@app.command("public-key")
def public_key_command(data_dir: DataDir = None) -> None:
    """Print the key that verifies checkpoints (C2SP verifier key)."""
    with opened(data_dir) as coffre:
        sys.stdout.write(coffre.audit.verifier_key() + "\n")


@app.command()
def export(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File (default: stdout)")]
    = None,
    from_seq: Annotated[int | None, typer.Option("--from", help="First event (seq)")] = None,
    to_seq: Annotated[int | None, typer.Option("--to", help="Last event (seq)")] = None,
    since: Annotated[str | None, typer.Option(help="Events since this date (ISO 8601, UTC)")]
    = None,
    data_dir: DataDir = None,
) -> None:
    """Write events as JSON Lines with their leaf hashes and inclusion proofs
    under a signed checkpoint (first line), for offline verification."""
    if since is not None and (from_seq is not None or to_seq is not None):
        stop("--since ne se combine pas avec --from/--to")
    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since)
        except ValueError:
            stop(f"date invalide : {since}")
        start = start if start.tzinfo else start.replace(tzinfo=UTC)
    with opened(data_dir) as coffre:
        lines = coffre.audit.export(from_seq=from_seq, to_seq=to_seq, since=start, context=CLI)
        if output is None:
            for line in lines:
                sys.stdout.write(line)
            return
        written = -1
        with output.open("w", encoding="utf-8") as f:
            for line in lines:
                f.write(line)
                written += 1
    say(f"{written} événement(s) écrits dans {output}, avec leurs preuves.")


@app.command("verify-export")
def verify_export_command(
    file: Annotated[Path, typer.Argument(help="An export written by `coffre audit export`")],
    public_key: PublicKey = None,
    data_dir: DataDir = None,
) -> None:
    """Check an export offline: signed checkpoint, each event and its proof."""
    if public_key is not None:
        key = _public_key(public_key, None)
    else:
        with opened(data_dir) as coffre:
            key = coffre.audit.public_key
    try:
        with file.open(encoding="utf-8") as f:
            check = verify_export(f, key)
    except (OSError, UnicodeDecodeError):
        stop(f"export illisible : {file}")
    if check.problem is not None:
        broken(check.problem)
    say(f"Export intact : {check.count} événement(s) prouvé(s) dans l'arbre signé de "
        f"{check.tree_size} événement(s), {check.declared}.")


@app.command()
def prune(data_dir: DataDir = None) -> None:
    """Erase the content of events older than COFFRE_AUDIT_RETENTION_DAYS
    (their hashes stay: proofs remain valid)."""
    with opened(data_dir) as coffre:
        count = coffre.audit.prune(context=CLI)
        days = coffre.settings.audit_retention_days
    say(f"{count} événement(s) de plus de {days} jours purgé(s).")


@app.command()
def show(
    after: Annotated[int, typer.Option(help="Only events after this seq")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many events")] = 50,
    action: Annotated[str | None, typer.Option(help="Only this action")] = None,
    data_dir: DataDir = None,
) -> None:
    """Print events, one per line (content escaped)."""
    with opened(data_dir) as coffre:
        rows = coffre.audit.page(after=after, limit=limit, action=action)
    for event in rows:
        if event.get("pruned"):
            say(f"{event['seq']}  (purgé)  {event['action']}")
            continue
        target = event.get("object") or {}
        say("  ".join(str(x) for x in (
            event["seq"], event["time"], event["action"], event["outcome"],
            event.get("actor") or "-", f"{target.get('type', '-')}:{target.get('id', '-')}"
            if target else "-", event.get("source") or "-", event.get("details") or "")))
