"""``coffre login``, ``coffre logout``, ``coffre token``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import httpx
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
) -> None:
    """Log in and save an API token for this machine."""
    password = read_secret(password_file, "Mot de passe")
    request: dict[str, object] = {"email": email, "password": password, "token_name": "coffre-cli"}
    if scope:
        request["scopes"] = scope
    with httpx.Client(base_url=url.rstrip("/"), timeout=TIMEOUT) as client:
        try:
            body = check(client.post("/api/v1/auth/token", json=request))
        except httpx.TransportError as exc:
            fail(f"cannot reach {url}: {exc}")
    save_credentials(url.rstrip("/"), body["token"])
    out.print(f"Connecté à {url} ({email}).")


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
    with api() as client:
        body = check(
            client.post(
                "/api/v1/tokens", json={"name": name, "scopes": scopes, "expires_in_days": days}
            )
        )
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
            t["created_at"][:16],
            (t["expires_at"] or "—")[:16],
        )
    out.print(table)


@token_app.command("revoke")
def revoke(token_id: str) -> None:
    """Revoke one of your API tokens."""
    with api() as client:
        check(client.delete(f"/api/v1/tokens/{token_id}"))
    out.print("Jeton révoqué.")
