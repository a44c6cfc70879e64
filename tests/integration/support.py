"""Helpers for the transfer, download and error tests: one real server per
test module (starting one costs seconds), audit assertions (SEC-29/30),
and a second organisation made in-process (there is no API for it yet)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from coffre.bootstrap import build
from coffre.crypto import credentials
from coffre.db.tables import Organisation, User
from coffre.domain.accounts import Role
from coffre.http.deps import SESSION_COOKIE
from coffre.ports import Mail
from coffre.settings import Settings
from tests import backends
from tests.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    MailCatcher,
    Server,
    login,
    running_server,
    second_factor,
    started_mail,
)
from tests.integration.flows import audit_events, link_token, sql, upload_bytes, verify_link


def module_server(label: str, **env: str) -> tuple[Any, ...]:
    """Module-scoped ``mail``, ``server``, ``token``, ``client`` and ``admin``
    fixtures (one server per test module: each start costs seconds)::

        mail, server, token, client, admin = module_server("downloads")
    """

    @pytest.fixture(scope="module", name="mail")
    def mail_fixture() -> Iterator[MailCatcher]:
        with started_mail() as catcher:
            yield catcher

    @pytest.fixture(scope="module", name="server")
    def server_fixture(tmp_path_factory: pytest.TempPathFactory,
                       mail: MailCatcher) -> Iterator[Server]:
        with running_server(tmp_path_factory.mktemp(label), mail, **env) as srv:
            yield srv

    @pytest.fixture(scope="module", name="token")
    def token_fixture(server: Server) -> str:
        return login(server.url)

    @pytest.fixture(scope="module", name="client")
    def client_fixture(server: Server, token: str) -> Iterator[httpx.Client]:
        with api_client(server, token) as c:
            yield c

    @pytest.fixture(scope="module", name="admin")
    def admin_fixture(client: httpx.Client) -> dict[str, Any]:
        return me(client)

    return mail_fixture, server_fixture, token_fixture, client_fixture, admin_fixture


def api_client(server: Server, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                        timeout=60)


# -- audit ----------------------------------------------------------------------


def events_for(data_dir: Path, action: str, object_id: str) -> list[dict[str, Any]]:
    return [e for e in audit_events(data_dir, action)
            if (e.get("object") or {}).get("id") == object_id]


def wait_events_for(data_dir: Path, action: str, object_id: str, count: int,
                    timeout: float = 10) -> list[dict[str, Any]]:
    """Downloads are recorded once the last byte is out: poll for them."""
    deadline = time.monotonic() + timeout
    while True:
        found = events_for(data_dir, action, object_id)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def one_event(data_dir: Path, action: str, *, object_type: str, object_id: str,
              organisation: str, actor: str | None, outcome: str = "success",
              source: str | None = "127.0.0.1", secrets: tuple[str | bytes, ...] = (),
              wait: bool = False) -> dict[str, Any]:
    """SEC-29: exactly one complete event for this action on this object.

    ``actor`` None means an anonymous recipient (known by its link, the
    object) or the system; ``source`` None means a job, not a request.
    SEC-30: none of ``secrets`` (tokens, passwords, file content, names)
    appears anywhere in it.
    """
    if wait:
        events = wait_events_for(data_dir, action, object_id, 1)
        time.sleep(0.2)  # a duplicate would follow right away
    events = events_for(data_dir, action, object_id)
    assert len(events) == 1, f"{action} on {object_id}: {events}"
    event = events[0]
    assert event["action"] == action
    assert event["object"] == {"type": object_type, "id": object_id}
    assert event["organisation"] == organisation
    assert event["actor"] == actor
    assert event["outcome"] == outcome
    assert event["source"] == source
    assert event["time"].endswith("Z")  # UTC ISO 8601
    raw = json.dumps(event, ensure_ascii=False)
    for secret in secrets:
        text = secret.decode("latin-1") if isinstance(secret, bytes) else secret
        assert text not in raw, f"{action} leaks {text[:20]!r}"
    return event


# -- accounts -------------------------------------------------------------------


class _NoMail:
    async def send(self, mail: Mail) -> None:  # pragma: no cover - never called
        raise AssertionError("in-process Coffre must not send mail")


def in_process(server: Server) -> Any:
    """A ``Coffre`` on the running server's data directory (same DB, same keys)."""
    environ = server.environ()
    database = environ.get("COFFRE_DATABASE_URL")
    return build(Settings(data_dir=server.data_dir, database_url=database,
                          storage_url=environ.get("COFFRE_STORAGE_URL")),
                 mailer=_NoMail(), migrate=False)


def other_organisation_admin(server: Server, email: str = "admin@autre-cabinet.fr",
                             password: str = "une autre phrase de passe") -> str:
    """Create a second organisation with its administrator; returns an API token."""
    app = in_process(server)
    try:
        with app.db.session() as session:
            org = Organisation(name="Autre Cabinet")
            session.add(org)
            session.flush()
            app.keys.create_kek(session, org.id)
            session.add(User(organisation_id=org.id, email=email, role=Role.ADMIN.value,
                             password_hash=credentials.hash_password(password)))
    finally:
        app.close()
    return login(server.url, email, password)


def me(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/api/v1/me")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def expire(server: Server, transfer_id: str) -> None:
    """Time travel: the transfer expired a minute ago (naive UTC, as stored)."""
    sql(server.data_dir, "UPDATE transfers SET expires_at = ? WHERE id = ?",
        backends.ago(minutes=1), transfer_id)


def blob_files(server: Server) -> set[str]:
    """The blob ids with something stored: files on disk, or objects (whole
    or appended pieces) in the server's bucket on the distributed profile."""
    bucket = backends.stored_bucket(server.data_dir)
    if bucket is None:
        root = server.data_dir / "blobs"
        return {p.name for p in root.rglob("*") if p.is_file()}
    found = set()
    for name in backends.bucket_names(bucket):
        if name.startswith("blobs/"):
            found.add(name.rsplit("/", 1)[1])
        elif name.startswith(".tmp-append/blobs/"):
            found.add(name.split("/")[3])
    return found


def assert_error(response: httpx.Response, status: int, code: str,
                 details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one JSON error shape: {"error": {"code", "message", "details"}}."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["details"], dict)
    if details is not None:
        assert error["details"] == details
    return error


def new_address(prefix: str = "patient") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@exemple.fr"


def send(client: httpx.Client, files: dict[str, bytes] | list[tuple[str, bytes]],
         recipients: int = 1, **options: Any) -> tuple[dict[str, Any], list[str]]:
    """Create a transfer to fresh addresses; returns it and each recipient's
    link token, in recipient order (from the creation answer, not the mail)."""
    pairs = list(files.items()) if isinstance(files, dict) else files
    ids = [upload_bytes(client, data, name) for name, data in pairs]
    addresses = [new_address() for _ in range(recipients)]
    response = client.post("/api/v1/transfers",
                           json={"files": ids, "recipients": addresses, **options})
    assert response.status_code == 201, response.text
    transfer: dict[str, Any] = response.json()
    return transfer, [link_token(transfer["links"][a]) for a in addresses]


def opened(server: Server, mail: MailCatcher, transfer: dict[str, Any], token: str,
           access: str | None = None) -> dict[str, str]:
    """The recipient of ``token`` proves their address with the one-time
    code mailed to them (read from the real SMTP catcher); returns the
    access header for the link's other requests."""
    address = next(a for a, link in transfer["links"].items() if link_token(link) == token)
    return verify_link(server.url, mail, token, address, access)


def page_session(server: Server, cookie: str = SESSION_COOKIE) -> httpx.Client:
    """The administrator signed in through the pages (password, then a
    recovery code), with the session cookie sent back by hand (it is Secure)."""
    browser = httpx.Client(base_url=server.url, timeout=30, headers={"Origin": server.url})
    signed = browser.post("/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    pending = signed.cookies[cookie]
    done = browser.post("/login/second-factor", headers={"Cookie": f"{cookie}={pending}"},
                        data={"method": "recovery", "code": second_factor(server.url)})
    assert done.status_code == 303, done.text
    browser.headers["Cookie"] = f"{cookie}={done.cookies[cookie]}"
    return browser
