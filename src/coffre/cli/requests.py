"""``coffre request``: ask people to deposit files (create, list, show,
close), and follow deposits as they arrive (``show --follow``)."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from coffre.cli.client import api, check, out, print_json, when

app = typer.Typer(help="Upload requests: ask a patient or a colleague to deposit files.",
                  no_args_is_help=True)
JSON = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def _size(n: int) -> str:
    for unit in ("o", "Kio", "Mio", "Gio"):
        if n < 1024:
            return f"{n} {unit}"
        n //= 1024
    return f"{n} Tio"


def _show(r: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(r)
        return
    out.print(f"[bold]{r['id']}[/]  {r['status']}  expire le {when(r['expires_at'])}")
    out.print(f"  au plus {r['max_files']} fichier(s), {_size(r['max_total_size'])} en tout")
    if r["message"]:
        out.print(f"  message : {escape(r['message'])}")
    for email, link in (r.get("links") or {}).items():
        out.print(f"  → {escape(email)} : {link}")
    if r.get("open_url"):
        out.print(f"  lien ouvert (à qui vous le donnez) : {r['open_url']}")
    for d in r["depositors"]:
        state = "adresse vérifiée" if d["verified_at"] else "pas encore vérifiée"
        out.print(f"  déposant {escape(d['email'])}  {d['files']} fichier(s) "
                  f"{_size(d['bytes'])}  ({state})")
    for transfer_id in r["received"]:
        out.print(f"  reçu : {transfer_id}  (coffre transfers received)")


@app.command()
def create(
    to: Annotated[list[str] | None, typer.Option(
        "--to", help="A depositor's address (repeat); address=+33612345678 for a code by SMS",
    )] = None,
    open_link: Annotated[bool, typer.Option("--open", help="Also make an open link")] = False,
    message: Annotated[str, typer.Option(help="What you ask for")] = "",
    expires: Annotated[str, typer.Option(help="12h, 7d, 2w, 3m")] = "7d",
    max_size: Annotated[str, typer.Option(help="Total size allowed: 500M, 2G...")] = "10G",
    max_files: Annotated[int, typer.Option(help="Number of files allowed")] = 20,
    as_json: JSON = False,
) -> None:
    """Ask people to deposit files: each gets a personal link by mail."""
    depositors: list[Any] = []
    for item in to or []:
        email, _, phone = item.partition("=")
        depositors.append({"email": email, "phone": phone} if phone else email)
    with api() as client:
        made = check(client.post("/api/v1/requests", json={
            "depositors": depositors, "open_link": open_link, "message": message,
            "expires_in": expires, "max_size": max_size, "max_files": max_files,
        }))
    _show(made, as_json)


@app.command("list")
def list_(as_json: JSON = False) -> None:
    """Your upload requests."""
    with api() as client:
        found = check(client.get("/api/v1/requests"))
    if as_json:
        print_json(found)
        return
    table = Table("id", "statut", "déposants", "fichiers", "reçus", "expire")
    for r in found:
        table.add_row(
            r["id"], r["status"],
            ", ".join(d["email"] for d in r["depositors"]) or ("lien ouvert"
                                                                if r["open_link"] else ""),
            str(sum(d["files"] for d in r["depositors"])), str(len(r["received"])),
            when(r["expires_at"]),
        )
    out.print(table)


@app.command()
def show(
    request_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f",
                                         help="Wait for deposits and show them live")] = False,
    as_json: JSON = False,
) -> None:
    """One request: depositors, what they deposited, received transfers."""
    with api() as client:
        _show(check(client.get(f"/api/v1/requests/{request_id}")), as_json)
        if not follow:
            return
        out.print("[dim]En attente des dépôts (Ctrl+C pour arrêter)…[/]")
        with contextlib.suppress(KeyboardInterrupt), client.stream(
            "GET", f"/api/v1/requests/{request_id}/events/stream",
            timeout=httpx.Timeout(10, read=None),
        ) as response:
            if response.status_code >= 400:
                response.read()
                check(response)
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                step = json.loads(line[5:])
                if as_json:
                    print_json(step)
                else:
                    moment = when(step["time"], seconds=True)
                    out.print(f"{moment}  {escape(step['depositor'] or '')} a "
                              f"déposé des fichiers : transfert reçu {step['transfer_id']}")


@app.command()
def close(request_id: str, as_json: JSON = False) -> None:
    """Accept no more deposits (what was deposited stays)."""
    with api() as client:
        _show(check(client.post(f"/api/v1/requests/{request_id}/close")), as_json)
