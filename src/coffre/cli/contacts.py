"""``coffre contacts``: personal contacts and the organisation's directory,
through the HTTP API; and turning ``coffre send --to NAME`` into an address."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from coffre.cli.client import api, check, console, fail, out, print_json

app = typer.Typer(help="Contacts: yours and your organisation's directory.",
                  no_args_is_help=True)
JSON = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
#: The server's limit on request bodies (tus uploads aside).
MAX_IMPORT = 1 << 20


def _table(contacts: list[dict[str, Any]]) -> Table:
    table = Table("id", "nom", "e-mail", "téléphone", "profession", "RPPS", "structure",
                  "annuaire", "envois")
    for c in contacts:
        table.add_row(*(escape(str(v)) for v in (
            c["id"], c["name"], c["email"], c["phone"], c["profession"], c["rpps"],
            c["organisation"], "organisation" if c["shared"] else "personnel", c["use_count"],
        )))
    return table


def _show(contacts: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(contacts)
    elif not contacts:
        out.print("Aucun contact.")
    else:
        out.print(_table(contacts))


@app.command()
def add(
    email: str,
    name: Annotated[str, typer.Option("--name", help="Nom affiché")] = "",
    phone: Annotated[str, typer.Option("--phone", help="Mobile, e.g. +33612345678")] = "",
    profession: Annotated[str, typer.Option("--profession")] = "",
    rpps: Annotated[str, typer.Option("--rpps", help="RPPS number (11 digits)")] = "",
    organisation: Annotated[str, typer.Option("--organisation")] = "",
    shared: Annotated[bool, typer.Option(
        "--shared", help="Add to the organisation's directory (administrators)")] = False,
    as_json: JSON = False,
) -> None:
    """Add a contact."""
    with api() as client:
        made = check(client.post("/api/v1/contacts", json={
            "email": email, "name": name, "phone": phone, "profession": profession,
            "rpps": rpps, "organisation": organisation, "shared": shared}))
    if as_json:
        print_json(made)
        return
    out.print(f"Contact [bold]{escape(made['email'])}[/] ajouté ({made['id']}).")


@app.command("list")
def list_(
    shared: Annotated[bool, typer.Option("--shared", help="Only the directory")] = False,
    personal: Annotated[bool, typer.Option("--personal", help="Only yours")] = False,
    as_json: JSON = False,
) -> None:
    """List your contacts and the organisation's directory, most used first."""
    scope = "shared" if shared else "personal" if personal else "all"
    with api() as client:
        _show(check(client.get("/api/v1/contacts", params={"scope": scope})), as_json)


@app.command()
def search(
    text: str,
    limit: Annotated[int, typer.Option(help="At most this many")] = 20,
    as_json: JSON = False,
) -> None:
    """Contacts whose name or address starts with TEXT (accents and case ignored)."""
    with api() as client:
        _show(check(client.get("/api/v1/contacts", params={"q": text, "limit": limit})),
              as_json)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    shared: Annotated[bool, typer.Option(
        "--shared", help="Into the organisation's directory (administrators)")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Check the file and report, import nothing")] = False,
    as_json: JSON = False,
) -> None:
    """Import a vCard (.vcf) or CSV file: the good entries, each bad line reported."""
    size = file.stat().st_size
    if size > MAX_IMPORT:
        fail(f"{file.name} pèse {size} octets ; la limite est de {MAX_IMPORT} octets "
             "(environ 4 000 fiches) : découpez le fichier")
    data = file.read_bytes()
    suffix = file.suffix.lower()
    format_ = "vcard" if suffix in {".vcf", ".vcard"} else "csv" if suffix == ".csv" else None
    params: dict[str, Any] = {"shared": shared, "dry_run": dry_run}
    if format_:
        params["format"] = format_
    with api() as client, console.status(f"Import de {file.name}…"):
        report = check(client.post("/api/v1/contacts/import", params=params, content=data,
                                   headers={"Content-Type": "application/octet-stream"}))
    if as_json:
        print_json(report)
        return
    verb = "seraient" if report["dry_run"] else "ont été"
    out.print(f"{report['created']} contact(s) {verb} créé(s), {report['updated']} mis à jour, "
              f"{len(report['rejected'])} ligne(s) refusée(s).")
    if report["rejected"]:
        table = Table("ligne", "raison")
        for r in report["rejected"]:
            table.add_row(str(r["line"]), escape(r["reason"]))
        out.print(table)
    if report["rejected"]:
        raise typer.Exit(3)


@app.command()
def export(
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                help="File to write (default: stdout)")] = None,
    shared: Annotated[bool, typer.Option("--shared", help="Only the directory")] = False,
    personal: Annotated[bool, typer.Option("--personal", help="Only yours")] = False,
) -> None:
    """Export contacts as vCard 3.0."""
    scope = "shared" if shared else "personal" if personal else "all"
    with api() as client, console.status("Export des contacts…"):
        response = client.get("/api/v1/contacts/export.vcf", params={"scope": scope})
    if response.status_code >= 400:
        check(response)
    if output is None:
        typer.echo(response.text, nl=False)
        return
    output.write_text(response.text, encoding="utf-8")
    console.print(f"{response.headers.get('x-coffre-count', '?')} contact(s) écrits "
                  f"dans {output}.")


@app.command()
def delete(contact_id: str) -> None:
    """Delete a contact."""
    with api() as client:
        check(client.delete(f"/api/v1/contacts/{contact_id}"))
    out.print("Contact supprimé.")


def resolve_recipients(client: httpx.Client, to: list[str]) -> list[dict[str, Any]]:
    """``--to`` values (addresses, or the start of a contact's name) as
    {"query", "email", "name", "phone"}; the phone only when the server can
    send codes by SMS. Fails on an unknown or ambiguous name."""
    response = client.post("/api/v1/contacts/resolve", json={"recipients": to})
    if response.status_code == 403 and all("@" in t for t in to):
        # A token without the contacts' scope can still send to addresses.
        return [{"query": t, "email": t, "name": "", "phone": None} for t in to]
    if response.status_code == 400:
        error = response.json()["error"]
        candidates = error.get("details", {}).get("candidates")
        hint = f" ({', '.join(candidates)})" if candidates else ""
        fail(f"{error['message']}{hint}")
    found: list[dict[str, Any]] = check(response)["recipients"]
    return found
