"""``coffre storage``: the blob store, server side (on the data directory,
like ``coffre setup``). ``sweep`` shreds orphan keys and removes orphan
objects (``services.sweeper``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from coffre.audit.trail import Context
from coffre.bootstrap import build
from coffre.cli.client import console, fail, out, print_json
from coffre.cli.server import load_settings
from coffre.errors import CoffreError
from coffre.services.sweeper import SweepReport

app = typer.Typer(help="The blob store (encrypted files and backup objects).",
                  no_args_is_help=True)
DataDir = Annotated[Path | None, typer.Option(envvar="COFFRE_DATA_DIR")]
CLI = Context(source="cli")


@app.command()
def sweep(
    grace_minutes: Annotated[int | None, typer.Option(
        "--grace-minutes", min=0,
        help="Spare what was written less than this many minutes ago (default: "
        "COFFRE_SWEEP_GRACE_MINUTES). 0 only while no server is running.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List what would be removed; change nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    data_dir: DataDir = None,
) -> None:
    """Shred data keys that nothing refers to and remove stored objects that
    no key opens (left by failed writes or crashes); audited."""
    coffre = build(load_settings(data_dir))
    try:
        grace = None if grace_minutes is None else timedelta(minutes=grace_minutes)
        with _progress(as_json) as advance:
            try:
                report = coffre.sweeper.sweep(grace=grace, dry_run=dry_run, context=CLI,
                                              record_empty=True, progress=advance)
            except CoffreError as exc:
                fail(exc.message)
    finally:
        coffre.close()
    if as_json:
        print_json(report.as_dict())
    else:
        _summary(report)
    if not report.ran:
        raise typer.Exit(2)
    if report.failed:
        raise typer.Exit(1)


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[int], None]]:
    with Progress(SpinnerColumn(), TextColumn("Inventaire du stockage : {task.completed} "
                                              "objet(s)"), TimeElapsedColumn(),
                  console=console, transient=True,
                  disable=quiet or not console.is_terminal) as bar:
        task = bar.add_task("sweep", total=None)
        yield lambda scanned: bar.update(task, completed=scanned)


def _summary(report: SweepReport) -> None:
    if not report.ran:
        console.print("Un autre processus nettoie déjà le stockage ; rien n'a été fait.",
                      style="bold yellow")
        return
    verb = "seraient" if report.dry_run else "ont été"
    out.print(f"{report.scanned} objet(s) examiné(s), {report.spared} épargné(s) "
              f"(récents ou en cours d'écriture, délai de grâce : "
              f"{report.grace_minutes:g} min).")
    out.print(f"{len(report.keys)} clé(s) orpheline(s) {verb} détruite(s), "
              f"{len(report.objects)} objet(s) orphelin(s) {verb} supprimé(s).")
    for key in report.keys:
        out.print(f"  clé   {key.blob_id}  ({key.storage_key})", markup=False, highlight=False)
    for name in report.objects:
        out.print(f"  objet {name}", markup=False, highlight=False)
    if report.failed:
        console.print(f"{report.failed} objet(s) n'ont pas pu être supprimé(s) ; "
                      "relancez la commande plus tard.", style="bold red")
