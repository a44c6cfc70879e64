"""Small steps shared by integration tests: upload bytes over tus, make a
transfer, read audit events from a server's database."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx

from tests import backends

TUS = {"Tus-Resumable": "1.0.0"}


def upload_bytes(client: httpx.Client, data: bytes, name: str = "fichier.bin") -> str:
    """Create a tus upload and send ``data`` in one PATCH; returns its id."""
    meta = "filename " + base64.b64encode(name.encode()).decode()
    created = client.post("/api/v1/uploads/", headers={
        **TUS, "Upload-Length": str(len(data)), "Upload-Metadata": meta})
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    if data:
        patched = client.patch(url, content=data, headers={
            **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        assert patched.status_code == 204, patched.text
        assert patched.headers["upload-offset"] == str(len(data))
    return url.rstrip("/").rsplit("/", 1)[-1]


def make_transfer(client: httpx.Client, files: dict[str, bytes], recipients: list[str],
                  **options: Any) -> dict[str, Any]:
    ids = [upload_bytes(client, data, name) for name, data in files.items()]
    response = client.post("/api/v1/transfers",
                           json={"files": ids, "recipients": recipients, **options})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def link_token(link: str) -> str:
    return link.rstrip("/").rsplit("/", 1)[-1]


def audit_events(data_dir: Path, action: str | None = None) -> list[dict[str, Any]]:
    """Decoded audit events straight from the server's database."""
    rows = sql(data_dir, "SELECT seq, payload FROM audit_events ORDER BY seq")
    # Pruned events (payload erased by retention) have nothing to decode.
    events = [{"seq": seq, **json.loads(payload)} for seq, payload in rows if payload is not None]
    return [e for e in events if action is None or e["action"] == action]


def sql(data_dir: Path, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run SQL (``?`` placeholders) on the server's database, SQLite or
    PostgreSQL (tests that tamper or time-travel)."""
    return backends.run_sql(data_dir, statement, *params)


def wait_for(found: Any, timeout: float = 45, pause: float = 0.3) -> Any:
    """Poll ``found()`` until it is truthy or ``timeout`` seconds pass;
    returns its last result (what the background work had done by then)."""
    deadline = time.monotonic() + timeout
    while True:
        result = found()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(pause)


def wait_for_events(data_dir: Path, action: str, count: int = 1,
                    timeout: float = 10) -> list[dict[str, Any]]:
    """Events are recorded right after the last byte leaves; poll for them."""
    deadline = time.monotonic() + timeout
    while True:
        events = audit_events(data_dir, action)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


# -- recipients' one-time codes -------------------------------------------------

CODE_SUBJECT = "[Coffre] Votre code de vérification"
_CODE = re.compile(r"\b([0-9]{8})\b")


def code_mails(mail: Any, address: str) -> list[Any]:
    """The one-time code mails ``mail`` (the aiosmtpd catcher) holds for ``address``."""
    with mail._lock:
        return [m for m in mail.messages if m["To"] == address and m["Subject"] == CODE_SUBJECT]


def wait_code(mail: Any, address: str, count: int, timeout: float = 15) -> str:
    """The code of the ``count``-th code mail to ``address`` (waits for it)."""
    deadline = time.monotonic() + timeout
    while True:
        found = code_mails(mail, address)
        if len(found) >= count:
            body = found[count - 1].get_body(preferencelist=("plain",))
            match = _CODE.search(body.get_content())
            assert match, "no code in the mail"
            return match.group(1)
        assert time.monotonic() < deadline, f"no code mailed to {address}"
        time.sleep(0.05)


def request_code(base_url: str, mail: Any, token: str, address: str) -> str:
    """Ask for a code over the API and read it from the mail that brings it."""
    before = len(code_mails(mail, address))
    response = httpx.post(f"{base_url}/api/v1/links/{token}/code")
    assert response.status_code == 202, response.text
    return wait_code(mail, address, before + 1)


def verify_link(base_url: str, mail: Any, token: str, address: str,
                access: str | None = None) -> dict[str, str]:
    """The real code flow (request, read the mail, verify); returns the
    access header for the link's other requests."""
    code = request_code(base_url, mail, token, address)
    headers = {"X-Coffre-Access": access} if access else {}
    response = httpx.post(f"{base_url}/api/v1/links/{token}/verify", json={"code": code},
                          headers=headers)
    assert response.status_code == 200, response.text
    return {"X-Coffre-Access": response.json()["access"]}
