"""``coffre send``: upload files over tus (resumable) and create a transfer.

We speak tus with httpx rather than tuspy: one streaming PATCH per file
(tuspy buffers each chunk in memory and reports progress per chunk), a
live progress bar, and the running SHA-256 compared with the server's.
An interrupted run leaves upload URLs in the state directory; running the
same command again resumes each file from the offset the server reports.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from coffre.cli.auth import read_secret
from coffre.cli.client import (
    api,
    check,
    console,
    fail,
    out,
    print_json,
    same_origin,
    state_dir,
    when,
)
from coffre.cli.contacts import resolve_recipients

TUS = {"Tus-Resumable": "1.0.0"}
READ_SIZE = 8 << 20
RETRIES = 5


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


class UploadState:
    """Upload URLs of files being sent, keyed by a file fingerprint."""

    def __init__(self) -> None:
        self.path = state_dir() / "uploads.json"

    def _load(self) -> dict[str, str]:
        try:
            data: dict[str, str] = json.loads(self.path.read_text())
            return data
        except (OSError, ValueError):
            return {}

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def set(self, key: str, url: str | None) -> None:
        data = self._load()
        if url is None:
            data.pop(key, None)
        else:
            data[key] = url
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)


def fingerprint(server: str, path: Path) -> str:
    st = path.stat()
    raw = f"{server}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()


def hash_prefix(path: Path, length: int) -> Any:
    """SHA-256 state over the first ``length`` bytes of ``path``."""
    hasher = hashlib.sha256()
    if not length:
        return hasher
    with path.open("rb") as f:
        remaining = length
        while remaining:
            chunk = f.read(min(READ_SIZE, remaining))
            if not chunk:
                break
            hasher.update(chunk)
            remaining -= len(chunk)
    return hasher


def _body(
    path: Path, offset: int, hasher: Any, progress: Progress, task: TaskID
) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(offset)
        while chunk := f.read(READ_SIZE):
            hasher.update(chunk)
            progress.advance(task, len(chunk))
            yield chunk


def upload_file(
    client: httpx.Client, state: UploadState, path: Path, progress: Progress
) -> tuple[str, str]:
    """Upload (or resume) ``path``; returns (upload id, local SHA-256)."""
    size = path.stat().st_size
    key = fingerprint(str(client.base_url), path)
    task = progress.add_task(path.name, total=size)
    url = state.get(key)
    offset = 0
    if url:
        head = client.head(url, headers=TUS)
        if head.status_code == 200 and head.headers.get("upload-length") == str(size):
            offset = int(head.headers["upload-offset"])
        else:
            url = None
    if not url:
        meta = "filename " + base64.b64encode(path.name.encode()).decode()
        created = client.post(
            "/api/v1/uploads/", headers={**TUS, "Upload-Length": str(size), "Upload-Metadata": meta}
        )
        check(created)
        url = same_origin(created.headers["location"], str(client.base_url))
        state.set(key, url)
    attempt = 0
    while True:
        hasher = hash_prefix(path, offset)
        progress.update(task, completed=offset)
        if offset == size:
            break
        try:
            response = client.patch(
                url,
                headers={
                    **TUS,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                    "Content-Length": str(size - offset),
                },
                content=_body(path, offset, hasher, progress, task),
            )
            check(response)
            offset = int(response.headers["upload-offset"])
            if offset == size:
                break
        except httpx.TransportError as exc:
            attempt += 1
            if attempt > RETRIES:
                fail(f"upload interrupted ({exc}); run the same command again to resume")
            time.sleep(min(2**attempt, 30))
            try:
                head = client.head(url, headers=TUS)
                check(head)
                offset = int(head.headers["upload-offset"])
            except httpx.TransportError:
                continue
    return url.rstrip("/").rsplit("/", 1)[-1], hasher.hexdigest()


def send(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True)],
    to: Annotated[list[str], typer.Option(
        "--to", help="Recipient e-mail, or the start of a contact's name (repeatable)")],
    message: Annotated[str, typer.Option(help="Message for the recipients")] = "",
    subject: Annotated[str, typer.Option(help="Subject")] = "",
    expires: Annotated[
        str | None,
        typer.Option(help="12h, 7d, 2w, 3m or permanent (default: the organisation's)"),
    ] = None,
    max_downloads: Annotated[
        int | None, typer.Option(help="Downloads per file and recipient")
    ] = None,
    password: Annotated[bool, typer.Option("--password", help="Protect with a password")] = False,
    password_file: Annotated[
        Path | None, typer.Option(help="Read the link password from a file")
    ] = None,
    notify: Annotated[bool, typer.Option(help="Mail me on each download")] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="Recipients confirm their address with a one-time code (turning it off "
            "needs your organisation's permission)",
        ),
    ] = True,
    phone: Annotated[
        list[str] | None,
        typer.Option(help="EMAIL=+33612345678: send that recipient's code by SMS (repeatable)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Send files to recipients, each with a personal download link."""
    with api() as client:
        resolved = resolve_recipients(client, to)
    addresses = {r["query"]: r["email"] for r in resolved} | {r["email"]: r["email"]
                                                               for r in resolved}
    phones: dict[str, str] = {}
    for item in phone or []:
        email, sep, number = item.partition("=")
        if not sep or email.strip() not in addresses:
            fail(f"--phone expects EMAIL=NUMBER for one of the --to addresses, not {item!r}")
        phones[addresses[email.strip()]] = number.strip()
    for r in resolved:
        if r["email"] != r["query"] and "@" not in r["query"]:
            console.print(f"{r['query']} → {r['name']} <{r['email']}>", markup=False)
        # Sending to a contact fills in their mobile number for the code.
        if verify and r["phone"] and r["email"] not in phones:
            phones[r["email"]] = r["phone"]
    to = list(dict.fromkeys(r["email"] for r in resolved))
    recipients: list[Any] = [{"email": a, "phone": phones[a]} if a in phones else a for a in to]
    link_password = None
    if password or password_file:
        link_password = read_secret(password_file, "Mot de passe du lien")
    state = UploadState()
    uploads: list[tuple[str, str, Path]] = []
    with api() as client, progress_bar() as progress:
        for path in files:
            upload_id, digest = upload_file(client, state, path, progress)
            uploads.append((upload_id, digest, path))
    with api() as client:
        transfer = check(
            client.post(
                "/api/v1/transfers",
                json={
                    "files": [u[0] for u in uploads],
                    "recipients": recipients,
                    "message": message,
                    "subject": subject,
                    "expires_in": expires,
                    "max_downloads": max_downloads,
                    "password": link_password,
                    "notify_on_download": notify,
                    "verify_recipients": verify,
                },
            )
        )
        server = str(client.base_url)
    for (_, digest, path), file in zip(uploads, transfer["files"], strict=True):
        if file["sha256"] != digest:
            fail(f"checksum mismatch for {path.name}: the server stored different bytes")
        state.set(fingerprint(server, path), None)
    if as_json:
        print_json(transfer)
        return
    out.print(
        f"Transfert [bold]{transfer['id']}[/] envoyé "
        f"(expire : {when(transfer['expires_at'], 'jamais')})."
    )
    for f in transfer["files"]:
        out.print(f"  {f['name']}  {f['size']} octets  sha256 {f['sha256']}")
    for email, link in (transfer.get("links") or {}).items():
        out.print(f"  → {email} : {link}")
