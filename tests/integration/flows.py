"""Small steps shared by integration tests: upload bytes over tus, make a
transfer, read audit events from a server's database."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx

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
    """Decoded audit events straight from the server's SQLite database."""
    con = sqlite3.connect(data_dir / "coffre.db")
    try:
        rows = con.execute("SELECT seq, payload FROM audit_events ORDER BY seq").fetchall()
    finally:
        con.close()
    events = [{"seq": seq, **json.loads(payload)} for seq, payload in rows]
    return [e for e in events if action is None or e["action"] == action]


def sql(data_dir: Path, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run SQL on the server's database (tests that tamper or time-travel)."""
    con = sqlite3.connect(data_dir / "coffre.db")
    try:
        rows = con.execute(statement, params).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


def wait_for_events(data_dir: Path, action: str, count: int = 1,
                    timeout: float = 10) -> list[dict[str, Any]]:
    """Events are recorded right after the last byte leaves; poll for them."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        events = audit_events(data_dir, action)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)
