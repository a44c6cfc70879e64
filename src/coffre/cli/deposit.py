"""``coffre deposit``: answer an upload request with only the link that
came by mail: prove the address with the one-time code, upload each file
over tus (resumable, with progress), then hand the files over.

An interrupted run keeps each file's upload URL in the state directory;
running the same command again (a new code, if the grant has expired)
resumes each file from the offset the server reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import httpx
import typer
from rich.markup import escape

from coffre.cli.client import TIMEOUT, check, console, fail, out, print_json
from coffre.cli.send import UploadState, progress_bar, upload_file

GRANT_HEADER = "X-Coffre-Deposit"
_REFUSED = {
    "wrong_code": "code incorrect",
    "code_expired": "ce code a expiré : relancez la commande pour en recevoir un nouveau",
    "no_code": "aucun code en cours : relancez la commande sans --code pour en recevoir un",
    "locked": "trop d'essais erronés : ce lien est verrouillé pour un moment",
    "resend_too_soon": "un code vient d'être envoyé : patientez avant d'en demander un autre",
    "too_many_codes": "trop de codes demandés pour ce lien : réessayez plus tard",
    "request_size": "ces fichiers dépassent la taille totale acceptée par cette demande",
    "too_many_files": "cette demande n'accepte pas autant de fichiers",
    "closed": "cette demande de dépôt est close",
    "expired": "cette demande de dépôt a expiré",
}


def _split_link(link: str) -> tuple[str, str]:
    parsed = urlparse(link)
    parts = parsed.path.rstrip("/").split("/")
    if parsed.scheme not in {"http", "https"} or len(parts) < 3 or parts[-2] != "d":
        fail("ce n'est pas un lien de dépôt Coffre (attendu : https://serveur/d/...)")
    return f"{parsed.scheme}://{parsed.netloc}{'/'.join(parts[:-2])}", parts[-1]


def _details(response: httpx.Response) -> dict[str, Any]:
    try:
        details = response.json()["error"]["details"]
    except (ValueError, KeyError, TypeError):
        return {}
    return details if isinstance(details, dict) else {}


def _checked(response: httpx.Response) -> Any:
    """The JSON body, or the refusal explained in French."""
    if response.status_code < 400:
        return response.json()
    details = _details(response)
    message = _REFUSED.get(str(details.get("reason")))
    if message is None:
        check(response)
    if details.get("attempts_left") is not None:
        message = f"{message} (encore {details['attempts_left']} essai(s))"
    if details.get("retry_after") is not None:
        message = f"{message} ; réessayez dans {details['retry_after']} s"
    fail(str(message), 2 if response.status_code in (401, 429) else 1)


def deposit(
    link: Annotated[str, typer.Argument(help="The deposit link received by mail (…/d/…)")],
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True)],
    code: Annotated[
        str | None,
        typer.Option(help="The one-time code already received (else one is sent and asked for)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Deposit files for someone who asked you to (upload request)."""
    base, token = _split_link(link)
    with httpx.Client(base_url=base, timeout=TIMEOUT,
                      headers={"User-Agent": "coffre-cli"}) as client:
        response = client.get(f"/api/v1/deposit/{token}")
        if response.status_code == 401:
            challenge = _details(response)
            if code is None:
                _checked(client.post(f"/api/v1/deposit/{token}/code"))
                by_sms = challenge.get("channel") == "sms"
                where = escape(str(challenge.get("recipient", "")))
                console.print(f"{escape(str(challenge.get('requester', '')))} vous demande des "
                              f"fichiers. Un code à 8 chiffres a été envoyé "
                              f"{'par SMS au' if by_sms else 'à'} {where}.")
                code = str(typer.prompt("Code reçu par SMS " if by_sms
                                        else "Code reçu par e-mail ", err=True))
            grant = _checked(client.post(f"/api/v1/deposit/{token}/verify",
                                         json={"code": code}))
            client.headers[GRANT_HEADER] = grant["access"]
            response = client.get(f"/api/v1/deposit/{token}")
        request = _checked(response)
        if request["message"]:
            console.print(f"Message : {escape(request['message'])}")
        state = UploadState()
        uploaded: list[dict[str, Any]] = []
        with progress_bar() as progress:
            for path in files:
                upload_id, sha256 = upload_file(client, state, path, progress)
                uploaded.append({"upload": upload_id, "name": path.name,
                                 "size": path.stat().st_size, "sha256": sha256})
        done = _checked(client.post(f"/api/v1/deposit/{token}/deposit",
                                    json={"uploads": [u["upload"] for u in uploaded]}))
    if as_json:
        print_json({"transfer_id": done["transfer_id"], "files": uploaded})
        return
    for u in uploaded:
        out.print(f"{escape(u['name'])}  {u['size']} octets  SHA-256 {u['sha256']}")
    out.print(f"Déposé : {len(uploaded)} fichier(s) remis à {escape(request['requester'])}.")
