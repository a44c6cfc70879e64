"""``coffre get LINK``: prove the one-time code sent to the recipient,
give the link password if there is one, then download every file and
check its SHA-256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from coffre.cli.auth import read_secret
from coffre.cli.client import (
    TIMEOUT,
    check,
    error_details,
    explained,
    fail,
    out,
    print_json,
    prompt_code,
    same_origin,
    split_link,
)
from coffre.cli.send import hash_prefix, progress_bar
from coffre.domain.transfers import sanitise_filename, unique_name

READ_SIZE = 4 << 20


def get(
    link: Annotated[str, typer.Argument(help="The personal link received by mail")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to write into")] = Path(
        "."
    ),
    password_file: Annotated[
        Path | None, typer.Option(help="Read the link password from a file")
    ] = None,
    code: Annotated[
        str | None,
        typer.Option(help="The one-time code already received (else one is sent and asked for)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Download every file of a transfer and verify its SHA-256."""
    base, token = split_link(link, "t", "this is not a Coffre link (expected https://server/t/...)")
    output.mkdir(parents=True, exist_ok=True)
    headers = {"User-Agent": "coffre-cli"}
    with httpx.Client(base_url=base, timeout=TIMEOUT, headers=headers) as client:
        response = client.get(f"/api/v1/links/{token}")
        if _reason(response) == "code_required":
            _prove_code(client, token, response.json()["error"]["details"], code)
            response = client.get(f"/api/v1/links/{token}")
        if _reason(response) == "password_required":
            password = read_secret(password_file, "Mot de passe du lien")
            _grant(client, client.post(f"/api/v1/links/{token}/unlock",
                                       json={"password": password}))
            response = client.get(f"/api/v1/links/{token}")
        info = check(response)
        results = []
        used: set[str] = set()
        with progress_bar() as progress:
            for file in info["files"]:
                target = output / unique_name(sanitise_filename(file["name"]), used)
                _download(client, file, target, progress)
                results.append(
                    {
                        "name": target.name,
                        "path": str(target),
                        "size": file["size"],
                        "sha256": file["sha256"],
                    }
                )
    if as_json:
        print_json(results)
        return
    for r in results:
        out.print(f"{escape(r['path'])}  {r['size']} octets  SHA-256 vérifié {r['sha256']}")


def _reason(response: httpx.Response) -> str | None:
    if response.status_code != 401:
        return None
    reason = error_details(response).get("reason")
    return reason if isinstance(reason, str) else None


def _grant(client: httpx.Client, response: httpx.Response) -> None:
    """Keep the access grant the server gave, or explain the refusal."""
    client.headers["X-Coffre-Access"] = explained(response)["access"]


def _prove_code(
    client: httpx.Client, token: str, challenge: dict[str, Any], code: str | None
) -> None:
    """Ask the server to send a code (unless one was given), then check it."""
    if code is None:
        explained(client.post(f"/api/v1/links/{token}/code"))
        code = prompt_code(challenge)
    _grant(client, client.post(f"/api/v1/links/{token}/verify", json={"code": code}))


def _download(
    client: httpx.Client, file: dict[str, object], target: Path, progress: object
) -> None:
    from rich.progress import Progress

    assert isinstance(progress, Progress)
    size = int(str(file["size"]))
    part = target.with_name(target.name + ".part")
    offset = 0
    if part.exists() and part.stat().st_size <= size:
        offset = part.stat().st_size
    hasher = hash_prefix(part, offset)
    task = progress.add_task(escape(target.name), total=size, completed=offset)
    headers = {"Range": f"bytes={offset}-"} if 0 < offset < size else {}
    if offset < size or size == 0:
        url = same_origin(str(file["url"]), str(client.base_url))
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                check(response)
            mode = "ab" if response.status_code == 206 else "wb"
            if mode == "wb":
                hasher = hashlib.sha256()
                progress.update(task, completed=0)
            flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
            flags |= os.O_APPEND if mode == "ab" else os.O_TRUNC
            with os.fdopen(os.open(part, flags, 0o600), mode) as f:
                for chunk in response.iter_bytes(READ_SIZE):
                    f.write(chunk)
                    hasher.update(chunk)
                    progress.advance(task, len(chunk))
                f.flush()
                os.fsync(f.fileno())
    if hasher.hexdigest() != file["sha256"]:
        part.unlink(missing_ok=True)
        fail(f"{target.name}: SHA-256 does not match the server's; the file was discarded")
    os.replace(part, target)
