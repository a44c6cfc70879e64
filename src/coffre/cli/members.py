"""``coffre members`` and ``coffre organisation``: administration through
the HTTP API, with the user's own token (the server decides who may)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from coffre.cli.client import api, check, fail, out, print_json, when
from coffre.cli.usage import human

app = typer.Typer(
    help="Members of your organisation (administrators).",
    no_args_is_help=False,
    invoke_without_command=True,
)
organisation_app = typer.Typer(
    help="Your organisation and its security policy.",
    no_args_is_help=False,
    invoke_without_command=True,
)
JSON = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
ROLES = {"admin": "administrateur", "member": "membre"}
Limit = Annotated[str | None, typer.Option(help="A number (sizes: 10G, 500M) or 'défaut'")]


def _date(value: str | None) -> str:
    return when(value)


def _member_line(m: dict[str, Any]) -> str:
    state = "désactivé" if m["disabled"] else "actif"
    return f"{m['email']} ({m['id']}) : {ROLES.get(m['role'], m['role'])}, {state}"


@app.callback()
def list_(ctx: typer.Context, as_json: JSON = False) -> None:
    """List the members (default)."""
    if ctx.invoked_subcommand is not None:
        return
    with api() as client:
        members = check(client.get("/api/v1/members"))
    if as_json:
        print_json(members)
        return
    table = Table("id", "e-mail", "nom", "rôle", "statut", "2e facteur", "créé",
                  "dernière activité")
    for m in members:
        table.add_row(
            m["id"],
            m["email"],
            m["display_name"],
            ROLES.get(m["role"], m["role"]),
            "désactivé" if m["disabled"] else "actif",
            "oui" if m["second_factor"] else "non",
            _date(m["created_at"]),
            _date(m["last_active_at"]),
        )
    out.print(table)


@app.command()
def invite(
    email: str,
    role: Annotated[str, typer.Option(help="admin or member")] = "member",
    as_json: JSON = False,
) -> None:
    """Invite someone by mail to join the organisation."""
    with api() as client:
        invitation = check(client.post("/api/v1/invitations", json={"email": email, "role": role}))
    if as_json:
        print_json(invitation)
        return
    out.print(
        f"Invitation envoyée à {invitation['email']} ({ROLES.get(role, role)}), "
        f"valable jusqu'au {_date(invitation['expires_at'])}. "
        f"Identifiant : {invitation['id']}"
    )


@app.command()
def invitations(as_json: JSON = False) -> None:
    """Pending invitations."""
    with api() as client:
        pending = check(client.get("/api/v1/invitations"))
    if as_json:
        print_json(pending)
        return
    table = Table("id", "e-mail", "rôle", "envoyée", "expire")
    for i in pending:
        table.add_row(i["id"], i["email"], ROLES.get(i["role"], i["role"]),
                      _date(i["created_at"]), _date(i["expires_at"]))
    out.print(table)


@app.command()
def uninvite(invitation_id: str) -> None:
    """Revoke a pending invitation: its link stops working."""
    with api() as client:
        check(client.delete(f"/api/v1/invitations/{invitation_id}"))
    out.print("Invitation annulée.")


def _update(member_id: str, body: dict[str, Any], as_json: bool, message: str) -> None:
    with api() as client:
        member = check(client.patch(f"/api/v1/members/{member_id}", json=body))
    if as_json:
        print_json(member)
        return
    out.print(f"{message} {_member_line(member)}")


@app.command()
def disable(member_id: str, as_json: JSON = False) -> None:
    """Disable a member: their sessions and API tokens end at once."""
    _update(member_id, {"disabled": True}, as_json,
            "Membre désactivé, sessions et jetons révoqués :")


@app.command()
def enable(member_id: str, as_json: JSON = False) -> None:
    """Enable a disabled member again (they log in anew)."""
    _update(member_id, {"disabled": False}, as_json, "Membre réactivé :")


@app.command()
def role(
    member_id: str,
    new_role: Annotated[str, typer.Argument(metavar="ROLE", help="admin or member")],
    as_json: JSON = False,
) -> None:
    """Change a member's role."""
    _update(member_id, {"role": new_role}, as_json, "Rôle modifié :")


@app.command("end-sessions")
def end_sessions(member_id: str) -> None:
    """End every browser session of a member now."""
    with api() as client:
        ended = check(client.delete(f"/api/v1/members/{member_id}/sessions"))
    out.print(f"Sessions terminées : {ended['sessions_ended']}.")


@app.command("reset-password")
def reset_password(member_id: str) -> None:
    """Force a member's password reset: it stops working, their sessions and
    API tokens end, and they are mailed a link to choose a new one."""
    with api() as client:
        check(client.post(f"/api/v1/members/{member_id}/password-reset"))
    out.print("Mot de passe réinitialisé : un lien pour en choisir un nouveau a été envoyé "
              "au membre.")


def _show_organisation(org: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(org)
        return
    yes_no = {True: "oui", False: "non"}
    table = Table("paramètre", "valeur")
    table.add_row("nom", org["name"])
    table.add_row("identifiant", org["id"])
    table.add_row("second facteur exigé pour tous", yes_no[org["require_mfa"]])
    table.add_row("destinataires sans code autorisés", yes_no[org["allow_unverified_recipients"]])
    table.add_row("programmes et scripts refusés",
                  yes_no[bool(org.get("block_executables", True))])
    table.add_row("sujets et messages hors des e-mails",
                  yes_no[bool(org.get("discreet_mail", False))])
    limits = org.get("effective") or {}
    if limits:
        own = org.get("policy") or {}

        def mark(key: str) -> str:
            return "" if own.get(key) is None else " (organisation)"

        table.add_row("durée par défaut", f"{limits['default_expiry_days']} jours"
                      + mark("default_expiry_days"))
        table.add_row("durée maximale", f"{limits['max_expiry_days']} jours"
                      + mark("max_expiry_days"))
        table.add_row("conservation permanente permise", yes_no[limits["allow_permanent"]])
        table.add_row("taille maximale d'un fichier", human(limits["max_file_size"])
                      + mark("max_file_size"))
        table.add_row("taille maximale d'un transfert", human(limits["max_transfer_size"]))
        table.add_row("destinataires par transfert", str(limits["max_recipients"])
                      + mark("max_recipients"))
        table.add_row("domaines autorisés",
                      ", ".join(limits["recipient_domains_allowed"]) or "tous")
        table.add_row("domaines refusés", ", ".join(limits["recipient_domains_denied"]) or "aucun")
        table.add_row("quota par utilisateur", human(limits["user_quota"]) + mark("user_quota"))
        table.add_row("quota de l'organisation", human(limits["organisation_quota"])
                      + mark("organisation_quota"))
        table.add_row("quota des sauvegardes", human(limits.get("backup_quota"))
                      + mark("backup_quota"))
        table.add_row("alerte sans sauvegarde après",
                      f"{limits.get('backup_alert_days')} jours" + mark("backup_alert_days"))
    out.print(table)


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DEFAULT_WORDS = {"none", "aucun", "defaut", "défaut", "default"}


def _limit(value: str | None, *, size: bool) -> tuple[bool, int | None]:
    """``(given, value)``: ``10G``, ``500M``, ``12``; ``défaut`` restores the
    instance's value (null)."""
    if value is None:
        return False, None
    text = value.strip().lower()
    if text in _DEFAULT_WORDS:
        return True, None
    unit = text[-1] if size and text[-1:] in "kmgt" else ""
    number = text[: len(text) - len(unit)].removesuffix("io").strip()
    if not number.isdigit():
        fail(f"valeur invalide : {value} (exemples : 10G, 500M, 12, défaut)")
    return True, int(number) * _SIZE_UNITS[unit]


@organisation_app.callback()
def show_default(ctx: typer.Context, as_json: JSON = False) -> None:
    """Show the organisation and its policy (default)."""
    if ctx.invoked_subcommand is None:
        show(as_json)


@organisation_app.command()
def show(as_json: JSON = False) -> None:
    """Show the organisation and its policy."""
    with api() as client:
        _show_organisation(check(client.get("/api/v1/organisation")), as_json)


@organisation_app.command("set")
def set_(
    name: Annotated[str | None, typer.Option(help="New name of the organisation")] = None,
    require_mfa: Annotated[
        bool | None,
        typer.Option("--require-mfa/--no-require-mfa",
                     help="Require a second factor from every member"),
    ] = None,
    allow_unverified_recipients: Annotated[
        bool | None,
        typer.Option("--allow-unverified-recipients/--no-allow-unverified-recipients",
                     help="Let senders turn off recipients' one-time code"),
    ] = None,
    block_executables: Annotated[
        bool | None,
        typer.Option("--block-executables/--no-block-executables",
                     help="Refuse programs and scripts by name and content (SEC-19)"),
    ] = None,
    discreet_mail: Annotated[
        bool | None,
        typer.Option("--discreet-mail/--no-discreet-mail",
                     help="Keep transfers' subjects and messages out of mails"),
    ] = None,
    default_expiry_days: Limit = None,
    max_expiry_days: Limit = None,
    allow_permanent: Annotated[
        bool | None,
        typer.Option("--allow-permanent/--no-allow-permanent",
                     help="Let senders keep transfers until deleted"),
    ] = None,
    max_file_size: Limit = None,
    max_transfer_size: Limit = None,
    max_recipients: Limit = None,
    user_quota: Limit = None,
    organisation_quota: Limit = None,
    backup_quota: Annotated[
        str | None,
        typer.Option(help="Bytes of all the organisation's backups (2T, 500G) or 'défaut'"),
    ] = None,
    backup_alert_days: Annotated[
        str | None,
        typer.Option(help="Days without a backup before an alert (1-365) or 'défaut'"),
    ] = None,
    allow_domain: Annotated[
        list[str] | None,
        typer.Option(help="Only these recipient domains (repeat; 'aucun' clears the list)"),
    ] = None,
    deny_domain: Annotated[
        list[str] | None,
        typer.Option(help="Refuse these recipient domains (repeat; 'aucun' clears the list)"),
    ] = None,
    as_json: JSON = False,
) -> None:
    """Change the organisation's name or policy (administrators).

    Sizes take K, M, G, T suffixes; 'défaut' restores the instance's value."""
    body: dict[str, Any] = {
        key: value
        for key, value in {
            "name": name,
            "require_mfa": require_mfa,
            "allow_unverified_recipients": allow_unverified_recipients,
            "block_executables": block_executables,
            "discreet_mail": discreet_mail,
            "allow_permanent": allow_permanent,
        }.items()
        if value is not None
    }
    for key, raw, size in (
        ("default_expiry_days", default_expiry_days, False),
        ("max_expiry_days", max_expiry_days, False),
        ("max_file_size", max_file_size, True),
        ("max_transfer_size", max_transfer_size, True),
        ("max_recipients", max_recipients, False),
        ("user_quota", user_quota, True),
        ("organisation_quota", organisation_quota, True),
        ("backup_quota", backup_quota, True),
        ("backup_alert_days", backup_alert_days, False),
    ):
        given, value = _limit(raw, size=size)
        if given:
            body[key] = value
    for key, domains in (("recipient_domains_allowed", allow_domain),
                         ("recipient_domains_denied", deny_domain)):
        if domains is not None:
            body[key] = [d for d in domains if d.strip().lower() not in {"aucun", "none"}]
    if not body:
        fail("rien à modifier : précisez au moins une option (voir --help)")
    with api() as client:
        _show_organisation(check(client.patch("/api/v1/organisation", json=body)), as_json)
