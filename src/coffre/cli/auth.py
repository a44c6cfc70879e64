"""``coffre login``, ``coffre logout``, ``coffre token``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import httpx
import segno
import typer
from rich.table import Table

from coffre.cli.client import (
    TIMEOUT,
    api,
    check,
    credentials_file,
    fail,
    out,
    print_json,
    save_credentials,
    stepped_up,
    when,
)

token_app = typer.Typer(help="API tokens for scripts and other machines.", no_args_is_help=True)


def read_secret(path: Path | None, prompt: str) -> str:
    if path is not None:
        try:
            return path.read_text().rstrip("\r\n")
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror}")
    return str(typer.prompt(prompt, hide_input=True))


def login(
    url: Annotated[str, typer.Option(envvar="COFFRE_URL", help="Server URL")],
    email: Annotated[str, typer.Option(prompt="E-mail")],
    password_file: Annotated[
        Path | None, typer.Option(help="Read the password from a file")
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="transfers:read, transfers:write, admin (administrators)"),
    ] = None,
    code: Annotated[
        str | None, typer.Option(help="A TOTP code or a recovery code (else asked if needed)")
    ] = None,
) -> None:
    """Log in and save an API token for this machine. Accounts with a
    second factor give a code; administrators without one enrol TOTP here."""
    password = read_secret(password_file, "Mot de passe")
    request: dict[str, object] = {"email": email, "password": password, "token_name": "coffre-cli"}
    if scope:
        request["scopes"] = scope
    if code:
        request["code"] = code
    base = url.rstrip("/")
    with httpx.Client(base_url=base, timeout=TIMEOUT) as client:
        try:
            response = client.post("/api/v1/auth/token", json=request)
            if _needs_code(response) and not code:
                request["code"] = typer.prompt(CODE_PROMPT)
                response = client.post("/api/v1/auth/token", json=request)
            body = check(response)
            headers = {"Authorization": f"Bearer {body['token']}"}
            me = check(client.get("/api/v1/me", headers=headers))
            if me.get("mfa_required") and not me.get("mfa"):
                _enrol_totp(client, headers)
                out.print("Reconnectez-vous avec le code suivant de votre application.")
                request["code"] = typer.prompt(CODE_PROMPT)
                body = check(client.post("/api/v1/auth/token", json=request))
        except httpx.TransportError as exc:
            fail(f"cannot reach {url}: {exc}")
    save_credentials(base, body["token"])
    out.print(f"Connecté à {url} ({email}).")


CODE_PROMPT = "Code de l'application d'authentification (6 chiffres) ou code de secours"


def _needs_code(response: httpx.Response) -> bool:
    if response.status_code != 401:
        return False
    details = response.json().get("error", {}).get("details", {})
    return bool(details.get("reason") == "second_factor_required")


def _enrol_totp(client: httpx.Client, headers: dict[str, str]) -> None:
    """SEC-9: an administrator must have a second factor before acting."""
    out.print("Votre compte doit utiliser un second facteur. Scannez ce QR code avec une "
              "application d'authentification (FreeOTP, Aegis, Google Authenticator...) :")
    begun = check(client.post("/api/v1/account/factors/totp", headers=headers,
                              json={"name": "coffre-cli"}))
    segno.make(begun["uri"], error="m").terminal(compact=True)
    out.print(f"ou saisissez cette clé : {begun['secret']}", markup=False)
    while True:
        confirmation = client.post(
            f"/api/v1/account/factors/totp/{begun['id']}/confirm", headers=headers,
            json={"code": typer.prompt("Code affiché par l'application")},
        )
        if confirmation.status_code != 400:
            break
        out.print("Ce code n'est pas valide : vérifiez l'heure de l'appareil et réessayez.")
    codes = check(confirmation)["recovery_codes"]
    out.print("Codes de secours (à usage unique, à conserver hors ligne) :")
    for recovery in codes:
        out.print(f"  {recovery}", markup=False)


def logout() -> None:
    """Forget the saved token."""
    credentials_file().unlink(missing_ok=True)
    out.print("Déconnecté.")


@token_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="What the token is for")] = "script",
    scope: Annotated[
        list[str] | None, typer.Option(help="transfers:read, transfers:write, admin")
    ] = None,
    days: Annotated[int | None, typer.Option(help="Lifetime in days")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create an API token and print it (shown once)."""
    scopes = scope or ["transfers:read", "transfers:write"]
    request = {"name": name, "scopes": scopes, "expires_in_days": days}
    with api() as client:
        body = check(stepped_up(client, lambda: client.post("/api/v1/tokens", json=request)))
    if as_json:
        print_json(body)
    else:
        out.print(body["token"])


@token_app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List your API tokens."""
    with api() as client:
        body = check(client.get("/api/v1/tokens"))
    if as_json:
        print_json(body)
        return
    table = Table("id", "nom", "droits", "créé", "expire")
    for t in body:
        table.add_row(
            t["id"],
            t["name"],
            " ".join(t["scopes"]),
            when(t["created_at"]),
            when(t["expires_at"]),
        )
    out.print(table)


@token_app.command("revoke")
def revoke(token_id: str) -> None:
    """Revoke one of your API tokens."""
    with api() as client:
        check(client.delete(f"/api/v1/tokens/{token_id}"))
    out.print("Jeton révoqué.")
