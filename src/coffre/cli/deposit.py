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

import httpx
import typer
from rich.markup import escape

from coffre.cli.client import (
    TIMEOUT,
    console,
    error_details,
    explained,
    out,
    print_json,
    prompt_code,
    split_link,
)
from coffre.cli.send import UploadState, progress_bar, upload_file

GRANT_HEADER = "X-Coffre-Deposit"


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
    base, token = split_link(link, "d", "ce n'est pas un lien de dépôt Coffre "
                                        "(attendu : https://serveur/d/...)")
    with httpx.Client(base_url=base, timeout=TIMEOUT,
                      headers={"User-Agent": "coffre-cli"}) as client:
        response = client.get(f"/api/v1/deposit/{token}")
        if response.status_code == 401:
            challenge = error_details(response)
            if code is None:
                explained(client.post(f"/api/v1/deposit/{token}/code"))
                requester = escape(str(challenge.get("requester", "")))
                code = prompt_code(challenge, f"{requester} vous demande des fichiers. ")
            grant = explained(client.post(f"/api/v1/deposit/{token}/verify",
                                          json={"code": code}))
            client.headers[GRANT_HEADER] = grant["access"]
            response = client.get(f"/api/v1/deposit/{token}")
        request = explained(response)
        if request["message"]:
            console.print(f"Message : {escape(request['message'])}")
        state = UploadState()
        uploaded: list[dict[str, Any]] = []
        with progress_bar() as progress:
            for path in files:
                upload_id, sha256 = upload_file(client, state, path, progress)
                uploaded.append({"upload": upload_id, "name": path.name,
                                 "size": path.stat().st_size, "sha256": sha256})
        done = explained(client.post(f"/api/v1/deposit/{token}/deposit",
                                    json={"uploads": [u["upload"] for u in uploaded]}))
    if as_json:
        print_json({"transfer_id": done["transfer_id"], "files": uploaded})
        return
    for u in uploaded:
        out.print(f"{escape(u['name'])}  {u['size']} octets  SHA-256 {u['sha256']}")
    out.print(f"Déposé : {len(uploaded)} fichier(s) remis à {escape(request['requester'])}.")
