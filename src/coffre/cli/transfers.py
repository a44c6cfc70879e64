"""``coffre transfers``: list, show, revoke, extend, delete, and each
recipient's timeline (``events``, ``--follow`` over Server-Sent Events)."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from coffre.cli.client import api, check, fail, out, print_json, stepped_up, when

app = typer.Typer(help="Your transfers.", no_args_is_help=False, invoke_without_command=True)
JSON = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
MODES = {"temporary": "temporaire (détruit à l'expiration)",
         "permanent": "permanente (jusqu'à suppression)"}
Reason = Annotated[str, typer.Option("--reason", help="Why (recorded in the audit trail)")]


def _show(t: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(t)
        return
    out.print(f"[bold]{t['id']}[/]  {t['status']}  {t['subject']}")
    hold = "  [bold red]gel juridique[/]" if t.get("legal_hold") else ""
    out.print(f"  conservation : {MODES.get(t.get('mode', ''), t.get('mode'))}{hold}")
    out.print(
        f"  créé le {when(t['created_at'])}  expire : {when(t['expires_at'], 'jamais')}"
        f"  limite {t['max_downloads'] or '—'}"
        f"{'  mot de passe' if t['password_protected'] else ''}"
    )
    if t["message"]:
        out.print(f"  message : {t['message']}")
    for f in t["files"]:
        out.print(f"  fichier {f['name']}  {f['size']} octets  sha256 {f['sha256']}")
    for r in t["recipients"]:
        opened = when(r["first_opened_at"], "pas encore ouvert")
        revoked = "  [bold red]lien révoqué[/]" if r.get("revoked_at") else ""
        times = r.get("times_downloaded", r["downloads"])
        out.print(f"  → {r['email']}  {times} téléchargement(s)  ({opened}){revoked}")


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
            when(t["expires_at"], "jamais"),
        )
    out.print(table)


@app.command()
def show(transfer_id: str, as_json: JSON = False) -> None:
    """Details of one transfer, with each recipient's downloads."""
    with api() as client:
        _show(check(client.get(f"/api/v1/transfers/{transfer_id}")), as_json)


@app.command()
def revoke(
    transfer_id: str,
    recipient: Annotated[str | None, typer.Option(
        "--recipient", help="Only this recipient's link (address or id); the others keep "
        "theirs")] = None,
    as_json: JSON = False,
) -> None:
    """Revoke a transfer (its links stop working at once), or with
    --recipient one recipient's link only."""
    with api() as client:
        if recipient is None:
            _show(check(client.post(f"/api/v1/transfers/{transfer_id}/revoke")), as_json)
            return
        shown = check(client.get(f"/api/v1/transfers/{transfer_id}"))
        wanted = recipient.strip().lower()
        found = [r for r in shown["recipients"] if wanted in {r["id"], r["email"].lower()}]
        if not found:
            fail(f"{recipient} n'est pas un destinataire de ce transfert")
        _show(check(client.post(f"/api/v1/transfers/{transfer_id}/recipients/"
                                f"{found[0]['id']}/revoke")), as_json)


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
def hold(transfer_id: str, reason: Reason, as_json: JSON = False) -> None:
    """Place a legal hold (administrators): no deletion, no purge."""
    with api() as client:
        _show(check(client.post(f"/api/v1/transfers/{transfer_id}/hold",
                                json={"reason": reason})), as_json)


@app.command()
def release(transfer_id: str, reason: Reason, as_json: JSON = False) -> None:
    """Lift a legal hold (administrators)."""
    with api() as client:
        _show(check(client.request("DELETE", f"/api/v1/transfers/{transfer_id}/hold",
                                   json={"reason": reason})), as_json)


@app.command()
def delete(
    transfer_id: str, yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False
) -> None:
    """Delete a transfer now (its data keys are destroyed)."""
    if not yes:
        typer.confirm(f"Supprimer définitivement {transfer_id} ?", abort=True)
    with api() as client:
        check(stepped_up(client, lambda: client.delete(f"/api/v1/transfers/{transfer_id}")))
    out.print("Transfert supprimé.")


_KINDS = {
    "mail_sent": "lien envoyé par e-mail",
    "link_opened": "lien ouvert",
    "code_sent": "code envoyé",
    "code_verified": "code vérifié",
    "code_failed": "code erroné",
    "link_locked": "lien verrouillé (trop d'essais)",
    "password_failed": "mot de passe erroné",
    "file_downloaded": "fichier téléchargé",
    "zip_downloaded": "tout téléchargé (ZIP)",
    "admin_access": "consulté par un administrateur",
    "recipient_revoked": "lien révoqué par l'expéditeur",
}


def _step_line(step: dict[str, Any]) -> str:
    moment = when(str(step["time"]), seconds=True)
    who = step.get("recipient") or (f"administrateur {step['actor_id']}"
                                    if step.get("actor_id") else "—")
    what = _KINDS.get(step["kind"], step["kind"])
    file = f"  (fichier {step['file_id']})" if step.get("file_id") else ""
    return f"{moment}  {escape(who)}  {what}{file}"


def _emit(step: dict[str, Any], as_json: bool) -> None:
    """One step per line (JSON Lines with --json), flushed as it comes."""
    if as_json:
        out.print(json.dumps(step, ensure_ascii=False), markup=False, highlight=False,
                  soft_wrap=True)
    else:
        out.print(_step_line(step))


def _follow(client: httpx.Client, transfer_id: str, last: int, as_json: bool) -> None:
    """Server-Sent Events: one step per ``data:`` line, until Ctrl-C."""
    headers = {"Accept": "text/event-stream", "Last-Event-ID": str(last)}
    url = f"/api/v1/transfers/{transfer_id}/events/stream"
    with client.stream("GET", url, headers=headers, timeout=httpx.Timeout(30, read=None)) as r:
        if r.status_code >= 400:
            r.read()
            check(r)
        for line in r.iter_lines():
            if not line.startswith("data:"):
                continue  # ids, retry hints and heartbeat comments
            _emit(json.loads(line[5:].strip()), as_json)


@app.command()
def events(
    transfer_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep showing new steps")] = False,
    as_json: JSON = False,
) -> None:
    """Each recipient's timeline: mail sent, link opened, codes, downloads
    (with --follow and --json: one JSON object per line)."""
    with api() as client:
        steps = check(client.get(f"/api/v1/transfers/{transfer_id}/events"))
        if as_json and not follow:
            print_json(steps)
            return
        for step in steps:
            _emit(step, as_json)
        if not steps and not follow:
            out.print("Aucun événement pour l'instant.")
        if follow:
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the follow
                _follow(client, transfer_id, steps[-1]["id"] if steps else 0, as_json)
