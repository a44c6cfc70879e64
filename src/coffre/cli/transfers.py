"""``coffre transfers``: list, show, revoke, extend, delete."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from coffre.cli.client import api, check, out, print_json

app = typer.Typer(help="Your transfers.", no_args_is_help=False, invoke_without_command=True)
JSON = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def _show(t: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(t)
        return
    out.print(f"[bold]{t['id']}[/]  {t['status']}  {t['subject']}")
    out.print(
        f"  créé {t['created_at'][:16]}  expire {(t['expires_at'] or 'jamais')[:16]}"
        f"  limite {t['max_downloads'] or '—'}"
        f"{'  mot de passe' if t['password_protected'] else ''}"
    )
    if t["message"]:
        out.print(f"  message : {t['message']}")
    for f in t["files"]:
        out.print(f"  fichier {f['name']}  {f['size']} octets  sha256 {f['sha256']}")
    for r in t["recipients"]:
        opened = r["first_opened_at"][:16] if r["first_opened_at"] else "pas encore ouvert"
        out.print(f"  → {r['email']}  {r['downloads']} téléchargement(s)  ({opened})")


@app.callback()
def list_(ctx: typer.Context, as_json: JSON = False) -> None:
    """List your transfers (default)."""
    if ctx.invoked_subcommand is not None:
        return
    with api() as client:
        transfers = check(client.get("/api/v1/transfers"))
    if as_json:
        print_json(transfers)
        return
    table = Table("id", "statut", "objet", "fichiers", "destinataires", "expire")
    for t in transfers:
        table.add_row(
            t["id"],
            t["status"],
            t["subject"],
            str(len(t["files"])),
            ", ".join(r["email"] for r in t["recipients"]),
            (t["expires_at"] or "jamais")[:16],
        )
    out.print(table)


@app.command()
def show(transfer_id: str, as_json: JSON = False) -> None:
    """Details of one transfer, with each recipient's downloads."""
    with api() as client:
        _show(check(client.get(f"/api/v1/transfers/{transfer_id}")), as_json)


@app.command()
def revoke(transfer_id: str, as_json: JSON = False) -> None:
    """Revoke a transfer: its links stop working at once."""
    with api() as client:
        _show(check(client.post(f"/api/v1/transfers/{transfer_id}/revoke")), as_json)


@app.command()
def extend(
    transfer_id: str,
    expires: Annotated[str, typer.Option(help="New expiry from now: 12h, 7d, 2w, 3m, permanent")],
    as_json: JSON = False,
) -> None:
    """Give a transfer a new expiry."""
    with api() as client:
        _show(
            check(
                client.post(f"/api/v1/transfers/{transfer_id}/extend", json={"expires_in": expires})
            ),
            as_json,
        )


@app.command()
def delete(
    transfer_id: str, yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False
) -> None:
    """Delete a transfer now (its data keys are destroyed)."""
    if not yes:
        typer.confirm(f"Supprimer définitivement {transfer_id} ?", abort=True)
    with api() as client:
        check(client.delete(f"/api/v1/transfers/{transfer_id}"))
    out.print("Transfert supprimé.")
