"""``coffre backup``: devices backed up with restic (register one and get
its repository and credential, list, revoke), maintenance credentials for
pruning (administrators, step-up), and a status for monitoring (exit code
1 when a device has had no backup for the organisation's alert period)."""

from __future__ import annotations

import shlex
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from coffre.cli.client import api, check, error_details, fail, out, print_json, stepped_up, when
from coffre.cli.usage import human

app = typer.Typer(help="Backups with restic: devices, maintenance keys, status.",
                  no_args_is_help=True)
device_app = typer.Typer(help="Devices backed up with restic (one repository each).",
                         no_args_is_help=True)
app.add_typer(device_app, name="device")
JSON = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
DEVICES = "/api/v1/backup/devices"

#: Refusals explained in French (the server's messages are in English).
_REFUSED = {
    "role": "votre rôle ne le permet pas : seul un administrateur de l'organisation peut "
            "émettre une clé de maintenance",
    "second_factor_required": "activez d'abord un second facteur (TOTP ou clé d'accès) "
                              "et reconnectez-vous avec",
}


def _checked(response: httpx.Response, what: str = "appareil") -> Any:
    """The JSON body, or a French explanation of the refusal, else the
    server's error."""
    if response.status_code < 400:
        return check(response)
    details = error_details(response)
    reason = details.get("reason")
    if response.status_code == 403 and reason in _REFUSED:
        fail(_REFUSED[str(reason)], 2)
    if response.status_code == 403 and details.get("scope"):
        fail(f"ce jeton n'a pas la portée « {details['scope']} » : reconnectez-vous avec "
             f"`coffre login --scope {details['scope']}`", 2)
    if response.status_code == 404:
        fail(f"{what} introuvable (ou vous n'y avez pas accès)")
    return check(response)


def _date(value: str | None, never: str = "jamais") -> str:
    return when(value, never)


def _shown(line: str) -> None:
    """A line to copy as is: no markup, no highlighting, never wrapped."""
    out.print(line, markup=False, highlight=False, soft_wrap=True)


def _state(d: dict[str, Any]) -> str:
    if d.get("revoked_at"):
        return f"révoqué le {_date(d['revoked_at'])}"
    if d.get("stale"):
        since = datetime.fromisoformat(d["last_snapshot_at"] or d["created_at"])
        days = (datetime.now(UTC) - since.replace(tzinfo=since.tzinfo or UTC)).days
        return (f"[bold red]⚠ aucune sauvegarde depuis {days} jours[/] "
                f"(alerte à {d['alert_days']})")
    return "actif"


def _size(d: dict[str, Any]) -> str:
    used = human(d["used_bytes"])
    return f"{used} / {human(d['quota'])}" if d.get("quota") is not None else used


@device_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help='e.g. "Cabinet poste accueil"')],
    quota: Annotated[
        str | None, typer.Option(help="Size limit of this repository: 500G, 2T or bytes")
    ] = None,
    as_json: JSON = False,
) -> None:
    """Register a device: its restic repository and credential (shown once)."""
    body: dict[str, Any] = {"name": name}
    if quota is not None:
        body["quota"] = quota
    with api() as client:
        made = _checked(client.post(DEVICES, json=body))
    if as_json:
        print_json(made)
        return
    device, credential = made["device"], made["credential"]
    repository = credential["restic_repository"]
    out.print(f"Appareil enregistré : [bold]{escape(device['name'])}[/] ({device['id']}).")
    out.print("Identifiants restic, affichés [bold]une seule fois[/] : "
              "conservez-les maintenant (gestionnaire de mots de passe).")
    _shown(f"  Adresse du dépôt : {credential['url']}")
    _shown(f"  Utilisateur      : {credential['username']}")
    _shown(f"  Secret           : {credential['secret']}")
    out.print("Initialiser le dépôt puis sauvegarder (restic demande un mot de passe de "
              "dépôt : sans lui les sauvegardes sont illisibles, y compris pour Coffre) :")
    _shown(f"  restic -r {repository} init")
    _shown(f"  restic -r {repository} backup ~/Documents")
    out.print("Ou, pour une tâche planifiée :")
    _shown(f"  export RESTIC_REPOSITORY={shlex.quote(repository)}")
    _shown("  export RESTIC_PASSWORD_FILE=/chemin/vers/mot-de-passe-du-depot")
    out.print("Cet appareil peut ajouter et relire des sauvegardes, jamais en supprimer "
              "(voir `coffre backup maintenance-key`).")


@device_app.command("list")
def list_(as_json: JSON = False) -> None:
    """Your devices (an administrator's: the organisation's)."""
    with api() as client:
        devices = _checked(client.get(DEVICES))
    if as_json:
        print_json(devices)
        return
    if not devices:
        out.print("Aucun appareil enregistré : `coffre backup device add NOM`.")
        return
    table = Table("id", "nom", "propriétaire", "taille", "objets", "dernière sauvegarde",
                  "état")
    for d in devices:
        table.add_row(d["id"], escape(d["name"]), escape(d["owner_email"]), _size(d),
                      str(d["object_count"]), _date(d["last_snapshot_at"]), _state(d))
    out.print(table)


@device_app.command("revoke")
def revoke(
    device_id: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
    as_json: JSON = False,
) -> None:
    """Revoke a device's credential at once (its backups stay)."""
    if not yes:
        if not sys.stdin.isatty():
            fail("confirmation requise : relancez avec --yes")
        typer.confirm(f"Révoquer l'appareil {device_id} ? restic ne pourra plus y accéder",
                      abort=True, err=True)
    with api() as client:
        device = _checked(client.delete(f"{DEVICES}/{device_id}"))
    if as_json:
        print_json(device)
        return
    out.print(f"Appareil révoqué : {escape(device['name'])} ({device['id']}). "
              "Ses sauvegardes sont conservées ; une clé de maintenance permet encore "
              "de les restaurer.")


@app.command("maintenance-key")
def maintenance_key(
    device_id: str,
    hours: Annotated[
        float | None, typer.Option(help="Lifetime in hours (2 unless given, 24 at most)")
    ] = None,
    as_json: JSON = False,
) -> None:
    """A short-lived credential that may prune (administrators).

    It may also delete (restic forget --prune); the command confirms your
    identity first."""
    body = {} if hours is None else {"hours": hours}
    path = f"{DEVICES}/{device_id}/maintenance-keys"
    with api() as client:
        issued = _checked(stepped_up(client, lambda: client.post(path, json=body)))
    if as_json:
        print_json(issued)
        return
    repository = issued["restic_repository"]
    out.print(f"Clé de maintenance émise, valable jusqu'au {_date(issued['expires_at'])}, "
              "affichée [bold]une seule fois[/]. Elle peut supprimer des sauvegardes : "
              "ne l'enregistrez pas sur l'appareil sauvegardé.")
    _shown(f"  Utilisateur : {issued['username']}")
    _shown(f"  Secret      : {issued['secret']}")
    out.print("Par exemple, pour ne garder que les 30 dernières sauvegardes quotidiennes :")
    _shown(f"  restic -r {repository} forget --keep-daily 30 --prune")


@app.command()
def status(
    mine: Annotated[
        bool, typer.Option("--mine", help="Only your own devices (administrators see all)")
    ] = False,
    as_json: JSON = False,
) -> None:
    """Each device's size, objects, last backup and alert.

    Exit code 1 when a device has had no backup for the alert period
    (for monitoring)."""
    with api() as client:
        devices = _checked(client.get(DEVICES))
        if mine:
            me = check(client.get("/api/v1/me"))
            devices = [d for d in devices if d["owner_id"] == me["id"]]
    stale = [d for d in devices if d["stale"] and not d.get("revoked_at")]
    if as_json:
        print_json({"stale": bool(stale), "devices": devices})
    elif not devices:
        out.print("Aucun appareil enregistré.")
    else:
        table = Table("appareil", "propriétaire", "taille", "données", "index", "instantanés",
                      "clés", "dernière sauvegarde", "état")
        for d in devices:
            objects = d["objects"]
            table.add_row(f"{escape(d['name'])}\n{d['id']}", escape(d["owner_email"]), _size(d),
                          str(objects.get("data", 0)), str(objects.get("index", 0)),
                          str(objects.get("snapshots", 0)), str(objects.get("keys", 0)),
                          _date(d["last_snapshot_at"]), _state(d))
        out.print(table)
        if stale:
            out.print(f"[bold red]{len(stale)} appareil(s) sans sauvegarde récente.[/]")
    if stale:
        raise typer.Exit(1)
