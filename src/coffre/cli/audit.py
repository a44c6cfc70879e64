"""``coffre audit``: check the hash chain and export events (server side,
on the data directory, like ``coffre setup``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from coffre.audit import trail
from coffre.bootstrap import build
from coffre.cli.client import fail, out
from coffre.cli.server import load_settings

app = typer.Typer(help="The audit trail (hash-chained).", no_args_is_help=True)
DataDir = Annotated[Path | None, typer.Option(envvar="COFFRE_DATA_DIR")]


@app.command()
def verify(data_dir: DataDir = None) -> None:
    """Check every event against the chain; report the first broken one."""
    coffre = build(load_settings(data_dir))
    try:
        with coffre.db.session() as session:
            problem = trail.verify_chain(session)
            count = len(trail.events(session))
    finally:
        coffre.close()
    if problem is not None:
        fail(f"audit trail broken at event {problem.seq}: {problem.reason}", code=3)
    out.print(f"Journal d'audit intact : {count} événement(s) vérifié(s).")


@app.command()
def export(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File (default: stdout)")]
    = None,
    action: Annotated[str | None, typer.Option(help="Only this action")] = None,
    data_dir: DataDir = None,
) -> None:
    """Write events as JSON Lines, oldest first, with their chain hashes."""
    coffre = build(load_settings(data_dir))
    try:
        with coffre.db.session() as session:
            rows = trail.chained_events(session, action)
    finally:
        coffre.close()
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if output is None:
        sys.stdout.write(lines)
    else:
        output.write_text(lines)
        out.print(f"{len(rows)} événement(s) écrits dans {output}.")
