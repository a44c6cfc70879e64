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
from urllib.parse import urlparse

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from coffre.domain import times

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


def when(value: str | None, never: str = "—", *, seconds: bool = False) -> str:
    """An API time (UTC, ISO 8601) as people read it, in the zone of
    ``COFFRE_TIMEZONE`` (Europe/Paris by default); ``--json`` keeps the ISO
    text with its offset."""
    return times.people(value, seconds=seconds) if value else never


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


def error_details(response: httpx.Response) -> dict[str, Any]:
    """The ``details`` of an error answer ({} if there are none)."""
    try:
        details = response.json()["error"]["details"]
    except (ValueError, KeyError, TypeError):
        return {}
    return details if isinstance(details, dict) else {}


def _reason(response: httpx.Response) -> str | None:
    reason = error_details(response).get("reason")
    return reason if isinstance(reason, str) else None


#: Refusals of personal and deposit links, explained to their holder.
_REFUSED = {
    "wrong_code": "code incorrect",
    "code_expired": "ce code a expiré : relancez la commande pour en recevoir un nouveau",
    "no_code": "aucun code en cours : relancez la commande sans --code pour en recevoir un",
    "wrong_password": "mot de passe incorrect",
    "locked": "trop d'essais erronés : ce lien est verrouillé pour un moment",
    "resend_too_soon": "un code vient d'être envoyé : patientez avant d'en demander un autre",
    "too_many_codes": "trop de codes demandés pour ce lien : réessayez plus tard",
    "request_size": "ces fichiers dépassent la taille totale acceptée par cette demande",
    "too_many_files": "cette demande n'accepte pas autant de fichiers",
    "closed": "cette demande de dépôt est close",
    "expired": "cette demande de dépôt a expiré",
}


def explained(response: httpx.Response) -> Any:
    """The JSON body, or a link's refusal explained in French (with the
    attempts left and the wait), else the server's error."""
    if response.status_code < 400:
        return response.json()
    details = error_details(response)
    message = _REFUSED.get(str(details.get("reason")))
    if message is None:
        check(response)
    if details.get("attempts_left") is not None:
        message = f"{message} (encore {details['attempts_left']} essai(s))"
    if details.get("retry_after") is not None:
        message = f"{message} ; réessayez dans {details['retry_after']} s"
    fail(str(message), 2 if response.status_code in (401, 429) else 1)


def split_link(link: str, segment: str, refusal: str) -> tuple[str, str]:
    """(server base URL, token) of ``https://server/<segment>/<token>``."""
    parsed = urlparse(link)
    parts = parsed.path.rstrip("/").split("/")
    if parsed.scheme not in {"http", "https"} or len(parts) < 3 or parts[-2] != segment:
        fail(refusal)
    return f"{parsed.scheme}://{parsed.netloc}{'/'.join(parts[:-2])}", parts[-1]


def prompt_code(challenge: dict[str, Any], lead: str = "") -> str:
    """Say where the one-time code went and ask for it (on stderr, like
    every message: stdout stays for --json)."""
    by_sms = challenge.get("channel") == "sms"
    where = escape(str(challenge.get("recipient", "")))
    console.print(f"{lead}Un code à 8 chiffres a été envoyé "
                  f"{'par SMS au' if by_sms else 'à'} {where}.")
    return str(typer.prompt("Code reçu par SMS " if by_sms else "Code reçu par e-mail ",
                            err=True))


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
