"""The sender's live tracking (SEC-4): each recipient's timeline as a list
and as Server-Sent Events, read by a real HTTP client in a thread while a
recipient goes through the real flow (mail caught by aiosmtpd)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from coffre.crypto import credentials
from coffre.db.tables import User
from coffre.domain.accounts import Role
from tests.conftest import ADMIN_EMAIL, MailCatcher, Server, login
from tests.integration.flows import link_token, request_code, sql, upload_bytes
from tests.integration.support import (
    api_client,
    assert_error,
    events_for,
    in_process,
    module_server,
    new_address,
    one_event,
    other_organisation_admin,
)

mail, server, token, client, admin = module_server("tracking")


class EventStream(threading.Thread):
    """Reads ``GET .../events/stream`` with httpx in a thread."""

    def __init__(self, url: str, token: str, last_event_id: int | None = None) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            self.headers["Last-Event-ID"] = str(last_event_id)
        self.events: list[dict[str, Any]] = []
        self.ids: list[int] = []
        self.comments: list[str] = []
        self.status: int | None = None
        self.content_type = ""
        self.opened = threading.Event()
        self._response: httpx.Response | None = None

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url, headers=self.headers,
                              timeout=httpx.Timeout(10, read=60)) as response:
                self._response = response
                self.status = response.status_code
                self.content_type = response.headers.get("content-type", "")
                self.opened.set()
                for line in response.iter_lines():
                    if line.startswith("id:"):
                        self.ids.append(int(line[3:].strip()))
                    elif line.startswith("data:"):
                        self.events.append(json.loads(line[5:].strip()))
                    elif line.startswith(":"):
                        self.comments.append(line[1:].strip())
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by the test
        finally:
            self.opened.set()

    def kinds(self) -> list[str]:
        return [e["kind"] for e in list(self.events)]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.kinds().count(kind) < count:
            assert time.monotonic() < deadline, f"no {kind} in {self.kinds()}"
            time.sleep(0.02)

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
        self.join(5)


def _create(client: httpx.Client, files: dict[str, bytes], **options: Any) -> tuple[
        dict[str, Any], str, str]:
    ids = [upload_bytes(client, data, name) for name, data in files.items()]
    address = new_address()
    response = client.post("/api/v1/transfers", json={"files": ids, "recipients": [address],
                                                      **options})
    assert response.status_code == 201, response.text
    transfer: dict[str, Any] = response.json()
    return transfer, address, link_token(transfer["links"][address])


def test_sse_shows_each_step_in_order(server: Server, client: httpx.Client, token: str,
                                      mail: MailCatcher, admin: dict[str, Any]) -> None:
    """SEC-4: the sender's stream shows each step (mail sent, link opened,
    code failed, code verified, file downloaded, ZIP downloaded) in order,
    as it happens; the download notice mail still goes out."""
    transfer, address, link = _create(
        client, {"scanner.dcm": b"DICOM" * 1000, "cr.pdf": b"%PDF"}, subject="Suivi",
        notify_on_download=True)
    base = f"{server.url}/api/v1/links/{link}"
    stream = EventStream(f"{server.url}/api/v1/transfers/{transfer['id']}/events/stream", token)
    stream.start()
    try:
        assert stream.opened.wait(10)
        assert stream.status == 200
        assert stream.content_type.startswith("text/event-stream")
        stream.wait_for("mail_sent")  # the queue delivered the link

        assert httpx.get(base).status_code == 401
        stream.wait_for("link_opened")
        code = request_code(server.url, mail, link, address)
        stream.wait_for("code_sent")
        wrong = f"{(int(code) + 1) % 10**8:08d}"
        assert httpx.post(f"{base}/verify", json={"code": wrong}).status_code == 401
        stream.wait_for("code_failed")
        verified = httpx.post(f"{base}/verify", json={"code": code})
        access = {"X-Coffre-Access": verified.json()["access"]}
        stream.wait_for("code_verified")
        info = httpx.get(base, headers=access).json()
        stream.wait_for("link_opened", 2)
        assert httpx.get(info["files"][0]["url"], headers=access).status_code == 200
        stream.wait_for("file_downloaded")
        assert httpx.get(info["archive_url"], headers=access).status_code == 200
        stream.wait_for("zip_downloaded")
    finally:
        stream.close()

    assert stream.kinds() == ["mail_sent", "link_opened", "code_sent", "code_failed",
                              "code_verified", "link_opened", "file_downloaded",
                              "zip_downloaded"]
    assert stream.ids == sorted(stream.ids) == [e["id"] for e in stream.events]
    recipient = transfer["recipients"][0]["id"]
    for event in stream.events:
        assert event["recipient"] == address
        assert event["recipient_id"] == recipient
        assert event["actor_id"] is None
    assert stream.events[6]["file_id"] == transfer["files"][0]["id"]
    assert stream.events[7]["file_id"] is None
    assert stream.comments  # the stream opens with a comment (heartbeats are comments too)
    # Nothing secret in the stream: no code, no token, no file name.
    raw = json.dumps(stream.events)
    for secret in (code, link, access["X-Coffre-Access"], "scanner.dcm"):
        assert secret not in raw

    # The same timeline as a list, and from an id on.
    listed = client.get(f"/api/v1/transfers/{transfer['id']}/events")
    assert listed.status_code == 200
    assert [e["id"] for e in listed.json()] == stream.ids
    later = client.get(f"/api/v1/transfers/{transfer['id']}/events",
                       params={"after": stream.ids[4]}).json()
    assert [e["kind"] for e in later] == ["link_opened", "file_downloaded", "zip_downloaded"]

    # Reconnecting with Last-Event-ID resumes after that event.
    resumed = EventStream(f"{server.url}/api/v1/transfers/{transfer['id']}/events/stream",
                          token, last_event_id=stream.ids[5])
    resumed.start()
    try:
        resumed.wait_for("zip_downloaded")
    finally:
        resumed.close()
    assert resumed.kinds() == ["file_downloaded", "zip_downloaded"]

    # The download notice to the sender still goes out (real SMTP).
    deadline = time.monotonic() + 15
    notices: list[Any] = []
    while len(notices) < 2 and time.monotonic() < deadline:
        notices = [m for m in mail.to(ADMIN_EMAIL, timeout=1) if address in m["Subject"]]
    assert len(notices) == 2


def test_other_organisations_get_404(server: Server, client: httpx.Client) -> None:
    """SEC-7/SEC-4: another organisation's administrator sees nothing, and
    leaves no admin-access step."""
    transfer, _, _ = _create(client, {"a.txt": b"a"})
    outsider = other_organisation_admin(server, email="admin@suivi-ailleurs.fr")
    with api_client(server, outsider) as other:
        for path in ("events", "events/stream"):
            assert_error(other.get(f"/api/v1/transfers/{transfer['id']}/{path}"), 404,
                         "not_found")
        assert_error(other.get(f"/api/v1/transfers/{'0' * 32}/events"), 404, "not_found")
    kinds = [k for (k,) in sql(server.data_dir, "SELECT kind FROM transfer_events "
                               "WHERE transfer_id = ?", transfer["id"])]
    assert "admin_access" not in kinds
    assert_error(httpx.get(f"{server.url}/api/v1/transfers/{transfer['id']}/events"), 401,
                 "authentication_required")


@pytest.fixture(scope="module")
def member(server: Server, admin: dict[str, Any]) -> str:
    """A member of the administrator's organisation; returns an API token."""
    email, password = "secretaire@cabinet-exemple.fr", "une phrase de passe du secretariat"
    app = in_process(server)
    try:
        with app.db.session() as session:
            session.add(User(organisation_id=admin["organisation_id"], email=email,
                             role=Role.MEMBER.value,
                             password_hash=credentials.hash_password(password)))
    finally:
        app.close()
    return login(server.url, email, password)


def test_administrators_reading_a_transfer_are_shown_to_its_sender(
        server: Server, client: httpx.Client, admin: dict[str, Any], member: str) -> None:
    """SEC-4: an administrator other than the sender reading a transfer or
    its timeline is one audit event and one "admin_access" step the sender
    sees; the sender's own reads are not."""
    with api_client(server, member) as sender:
        transfer, _, _ = _create(sender, {"a.txt": b"a"})
        assert sender.get(f"/api/v1/transfers/{transfer['id']}").status_code == 200
        own = sender.get(f"/api/v1/transfers/{transfer['id']}/events").json()
        assert "admin_access" not in [s["kind"] for s in own]
        # A member may not follow someone else's transfer.
        mine, _, _ = _create(client, {"b.txt": b"b"})
        assert_error(sender.get(f"/api/v1/transfers/{mine['id']}/events"), 404, "not_found")

        assert client.get(f"/api/v1/transfers/{transfer['id']}").status_code == 200
        event = one_event(server.data_dir, "transfer.admin_access", object_type="transfer",
                          object_id=transfer["id"], organisation=admin["organisation_id"],
                          actor=admin["id"])
        assert event["details"] == {"what": "transfer"}
        assert client.get(f"/api/v1/transfers/{transfer['id']}/events").status_code == 200

        steps = sender.get(f"/api/v1/transfers/{transfer['id']}/events").json()
    assert [(s["kind"], s["actor_id"], s["recipient"]) for s in steps
            if s["kind"] != "mail_sent"] == [
        ("admin_access", admin["id"], None), ("admin_access", admin["id"], None)]
    assert len(events_for(server.data_dir, "transfer.admin_access", transfer["id"])) == 2


def test_a_stream_ends_when_its_credential_does(server: Server, client: httpx.Client) -> None:
    """SEC-16: revoking the token (or ending the session) that opened a
    stream ends the stream too, within seconds; nothing more goes out."""
    transfer, _, _ = _create(client, {"cr.pdf": b"%PDF"})
    short_lived = login(server.url)
    stream = EventStream(f"{server.url}/api/v1/transfers/{transfer['id']}/events/stream",
                         short_lived)
    stream.start()
    try:
        assert stream.opened.wait(10)
        assert stream.status == 200
        token_id = client.get("/api/v1/tokens").json()[-1]["id"]
        with api_client(server, short_lived) as own:
            assert own.delete(f"/api/v1/tokens/{token_id}").status_code == 204
        stream.join(20)
        assert not stream.is_alive(), "the stream outlived its token"
        assert stream.events[-1] == {"reason": "ended"}
    finally:
        stream.close()
