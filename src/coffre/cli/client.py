"""The CLI's HTTP client: where the server is, which token, error display.

``COFFRE_URL`` and ``COFFRE_TOKEN`` win over the credentials saved by
``coffre login`` (``~/.config/coffre/credentials.json``, mode 0600).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console

console = Console(stderr=True)
out = Console()
TIMEOUT = httpx.Timeout(60.0, read=600.0)


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "coffre"


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "coffre"


def credentials_file() -> Path:
    return config_dir() / "credentials.json"


def save_credentials(url: str, token: str) -> None:
    path = credentials_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "token": token}, f)
    os.replace(tmp, path)


def load_credentials() -> tuple[str | None, str | None]:
    saved: dict[str, str] = {}
    if credentials_file().exists():
        saved = json.loads(credentials_file().read_text())
    url = os.environ.get("COFFRE_URL") or saved.get("url")
    token = os.environ.get("COFFRE_TOKEN") or saved.get("token")
    return (url.rstrip("/") if url else None), token


def fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[bold red]Erreur :[/] {message}")
    raise typer.Exit(code)


def api(token_required: bool = True) -> httpx.Client:
    url, token = load_credentials()
    if not url:
        fail("no server configured: run `coffre login --url URL` or set COFFRE_URL")
    headers = {"User-Agent": "coffre-cli"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif token_required:
        fail("not logged in: run `coffre login` or set COFFRE_TOKEN")
    return httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT)


def check(response: httpx.Response) -> Any:
    """Return the JSON body, or print the server's error and exit."""
    if response.status_code < 400:
        return response.json() if response.content else None
    try:
        error = response.json()["error"]
        message = error["message"]
    except (ValueError, KeyError, TypeError):
        message = f"HTTP {response.status_code}"
    fail(message, 2 if response.status_code in (401, 403) else 1)


def _reason(response: httpx.Response) -> str | None:
    try:
        reason = response.json()["error"]["details"].get("reason")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return reason if isinstance(reason, str) else None


def stepped_up(client: httpx.Client, send: Callable[[], httpx.Response]) -> httpx.Response:
    """Send a sensitive request; when the server wants a recent sign-in
    (SEC-17), ask for the password (and a code if the account has a second
    factor), confirm it with ``/auth/reauth`` and send it again."""
    response = send()
    if response.status_code != 401 or _reason(response) != "reauthentication_required":
        return response
    console.print("Cette action demande de confirmer votre identité.")
    body: dict[str, str] = {"password": typer.prompt("Mot de passe", hide_input=True)}
    answer = client.post("/api/v1/auth/reauth", json=body)
    if answer.status_code == 401 and _reason(answer) == "second_factor_required":
        body["code"] = typer.prompt(
            "Code de l'application d'authentification (6 chiffres) ou code de secours")
        answer = client.post("/api/v1/auth/reauth", json=body)
    check(answer)
    return send()


def same_origin(url: str, base: str) -> str:
    """``url`` if it points at the server ``base`` (scheme, host, port), else fail.

    Server-given URLs (tus ``Location``, file URLs) must not send our token
    or data anywhere else, nor downgrade https to http.
    """
    target, expected = httpx.URL(url), httpx.URL(base)
    if (target.scheme, target.host, target.port) != (expected.scheme, expected.host, expected.port):
        fail(f"the server answered with a URL on another origin ({target.scheme}://{target.host}); "
             "check COFFRE_PUBLIC_URL on the server")
    return url


def print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))
