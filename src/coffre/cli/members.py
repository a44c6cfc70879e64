"""``coffre members`` and ``coffre organisation``: administration through
the HTTP API, with the user's own token (the server decides who may)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from coffre.cli.client import api, check, fail, out, print_json

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


def _date(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "—"


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
        f"valable jusqu'au {_date(invitation['expires_at'])} UTC. "
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
    out.print(table)


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
    as_json: JSON = False,
) -> None:
    """Change the organisation's name or policy (administrators)."""
    body = {
        key: value
        for key, value in {
            "name": name,
            "require_mfa": require_mfa,
            "allow_unverified_recipients": allow_unverified_recipients,
        }.items()
        if value is not None
    }
    if not body:
        fail("rien à modifier : précisez au moins une option (voir --help)")
    with api() as client:
        _show_organisation(check(client.patch("/api/v1/organisation", json=body)), as_json)
