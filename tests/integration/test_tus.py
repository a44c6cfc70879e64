"""The tus 1.0.0 endpoint (``/api/v1/uploads/``) driven by real clients:
curl for the protocol surface, tuspy (PyPI) for a client nobody here wrote,
raw sockets and SIGKILL for crash safety, and a canary scan of everything
the server writes (SEC-23, SEC-30).

Most tests share one server (module scope, ``COFFRE_MAX_FILE_SIZE`` = 16
MiB); tests that kill or reconfigure a server start their own.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import backends
from tests.conftest import ADMIN_PASSWORD, MailCatcher, Server, login
from tests.integration.flows import audit_events, link_token, sql, verify_link

MiB = 1 << 20
MAX_SIZE = 16 * MiB
TUS_VERSION = "1.0.0"
TUS = {"Tus-Resumable": TUS_VERSION}
OCTETS = "application/offset+octet-stream"
SECOND_EMAIL = "secretariat@cabinet-exemple.fr"
SECOND_PASSWORD = "une autre phrase de passe assez longue"


# -- servers -------------------------------------------------------------------


def launch(base: Path, env: dict[str, str]) -> Server:
    """Set up (first administrator) and start a server under ``base``."""
    base.mkdir(parents=True, exist_ok=True)
    srv = Server(base / "data", env=env)
    password_file = base / "admin-password"
    password_file.write_text(ADMIN_PASSWORD)
    done = srv.coffre("setup", "--email", "medecin@cabinet-exemple.fr", "--password-file",
                      str(password_file), "--organisation", "Cabinet Exemple")
    assert done.returncode == 0, done.stderr + done.stdout
    srv.start()
    return srv


def smtp_env(mail: MailCatcher) -> dict[str, str]:
    return {"COFFRE_SMTP_HOST": "127.0.0.1", "COFFRE_SMTP_PORT": str(mail.port),
            "COFFRE_SMTP_TLS": "none"}


@pytest.fixture(scope="module")
def shared_mail() -> Iterator[MailCatcher]:
    catcher = MailCatcher()
    catcher.start()
    yield catcher
    catcher.stop()


@pytest.fixture(scope="module")
def tus_server(tmp_path_factory: pytest.TempPathFactory,
               shared_mail: MailCatcher) -> Iterator[Server]:
    srv = launch(tmp_path_factory.mktemp("tus"),
                 {**smtp_env(shared_mail), "COFFRE_MAX_FILE_SIZE": str(MAX_SIZE)})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def admin_token(tus_server: Server) -> str:
    return login(tus_server.url)


@pytest.fixture(scope="module")
def other_token(tus_server: Server) -> str:
    """A second user of the same organisation, created through the account
    service in-process (there is no HTTP API for it yet), logged in over HTTP."""
    from coffre.audit.trail import Context
    from coffre.bootstrap import build
    from coffre.domain.accounts import Role
    from coffre.notify.memory import MemoryMailer
    from coffre.settings import Settings

    admin_scoped = login(tus_server.url, scopes=["admin", "transfers:read", "transfers:write"])
    app = build(Settings(data_dir=tus_server.data_dir,
                         database_url=backends.database_setting(tus_server.data_dir)),
                mailer=MemoryMailer(), migrate=False)
    try:
        admin = app.accounts.actor_for_token(admin_scoped)
        app.accounts.create_user(admin, SECOND_EMAIL, SECOND_PASSWORD, Role.MEMBER,
                                 Context(source="test"))
    finally:
        app.close()
    return login(tus_server.url, email=SECOND_EMAIL, password=SECOND_PASSWORD)


@pytest.fixture(scope="module")
def api(tus_server: Server, admin_token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tus_server.url, timeout=60,
                      headers={"Authorization": f"Bearer {admin_token}"}) as c:
        yield c


# -- curl ------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def offset(self) -> int:
        return int(self.headers["upload-offset"])


def curl(method: str, url: str, headers: dict[str, str] | None = None,
         data: bytes | None = None) -> Reply:
    """One request with the real ``curl``; the body is sent from a file
    (``--data-binary @file``)."""
    with tempfile.TemporaryDirectory() as tmp:
        head_file, body_file, data_file = (Path(tmp) / n for n in ("h", "b", "d"))
        cmd = ["curl", "-sS", "--max-time", "60", "-D", str(head_file), "-o", str(body_file),
               "-w", "%{http_code}"]
        cmd += ["--head"] if method == "HEAD" else ["-X", method]
        for name, value in (headers or {}).items():
            cmd += ["-H", f"{name}: {value}"]
        if data is not None:
            data_file.write_bytes(data)
            cmd += ["--data-binary", f"@{data_file}"]
        cmd.append(url)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
        assert done.returncode == 0, done.stderr
        raw = head_file.read_bytes().decode("latin-1")
        blocks = [b for b in raw.split("\r\n\r\n") if b.strip()]
        parsed: dict[str, str] = {}
        for line in blocks[-1].split("\r\n")[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            parsed[key] = f"{parsed[key]}, {value.strip()}" if key in parsed else value.strip()
        # with --head, curl writes the headers where the body would go
        body = body_file.read_bytes() if body_file.exists() and method != "HEAD" else b""
        return Reply(int(done.stdout), parsed, body)


class Tus:
    """curl against the tus endpoint as one user."""

    def __init__(self, server: Server, token: str | None) -> None:
        self.endpoint = f"{server.url}/api/v1/uploads/"
        self.token = token

    def request(self, method: str, url: str | None = None, headers: dict[str, str] | None = None,
                data: bytes | None = None, *, version: str | None = TUS_VERSION) -> Reply:
        sent: dict[str, str] = {}
        if version is not None:
            sent["Tus-Resumable"] = version
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        sent.update(headers or {})
        return curl(method, url or self.endpoint, sent, data)

    def create(self, length: int | None, metadata: str | None = None,
               headers: dict[str, str] | None = None, data: bytes | None = None) -> Reply:
        sent = dict(headers or {})
        if length is None:
            sent["Upload-Defer-Length"] = "1"
        else:
            sent["Upload-Length"] = str(length)
        if metadata is not None:
            sent["Upload-Metadata"] = metadata
        if data is not None:
            sent["Content-Type"] = OCTETS
        return self.request("POST", headers=sent, data=data)

    def new(self, length: int | None, metadata: str | None = None) -> str:
        created = self.create(length, metadata)
        assert created.status == 201, created.body
        return created.headers["location"]

    def patch(self, url: str, offset: int, data: bytes,
              headers: dict[str, str] | None = None) -> Reply:
        return self.request("PATCH", url, {"Content-Type": OCTETS, "Upload-Offset": str(offset),
                                           **(headers or {})}, data)

    def head(self, url: str) -> Reply:
        return self.request("HEAD", url)


@pytest.fixture
def tus(tus_server: Server, admin_token: str) -> Tus:
    return Tus(tus_server, admin_token)


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def b64digest(algorithm: str, data: bytes) -> str:
    return base64.b64encode(hashlib.new(algorithm, data).digest()).decode()


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def assert_error(reply: Reply, status: int, code: str) -> dict[str, Any]:
    """Every error: the status, ``Tus-Resumable`` and the one JSON error shape
    (HEAD responses carry no body)."""
    assert reply.status == status, (reply.status, reply.body)
    assert reply.headers.get("tus-resumable") == TUS_VERSION
    if not reply.body:
        return {}
    body = reply.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    details: dict[str, Any] = body["error"]["details"]
    return details


def transfer_sha256(client: httpx.Client, ids: list[str],
                    recipient: str = "destinataire@exemple.fr") -> list[str]:
    """Attach completed uploads to a transfer; the file hashes it reports."""
    made = client.post("/api/v1/transfers", json={"files": ids, "recipients": [recipient]})
    assert made.status_code == 201, made.text
    return [f["sha256"] for f in made.json()["files"]]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- 1. protocol surface with curl -----------------------------------------------------


def test_options_advertises_version_extensions_and_limits(tus: Tus) -> None:
    tus.token = None  # OPTIONS is the discovery request: no token needed
    reply = tus.request("OPTIONS", version=None)
    assert reply.status == 204
    assert reply.headers["tus-version"] == TUS_VERSION
    extensions = {e.strip() for e in reply.headers["tus-extension"].split(",")}
    assert {"creation", "creation-with-upload", "creation-defer-length", "expiration",
            "checksum", "termination"} <= extensions
    assert reply.headers["tus-max-size"] == str(MAX_SIZE)
    algorithms = {a.strip() for a in reply.headers["tus-checksum-algorithm"].split(",")}
    assert {"sha1", "sha256"} <= algorithms
    on_upload = tus.request("OPTIONS", tus.endpoint + "0" * 32, version=None)
    assert on_upload.status == 204
    assert on_upload.headers["tus-extension"] == reply.headers["tus-extension"]


def test_create_head_and_patch_in_pieces(tus: Tus, api: httpx.Client) -> None:
    data = os.urandom(2 * MiB + 4321)
    created = tus.create(len(data), meta(filename="compte-rendu.pdf", filetype="application/pdf"))
    assert created.status == 201, created.body
    url = created.headers["location"]
    assert url.startswith(tus.endpoint) and len(upload_id(url)) >= 16
    assert created.headers["tus-resumable"] == TUS_VERSION
    expires = parsedate_to_datetime(created.headers["upload-expires"])
    assert datetime.now(UTC) + timedelta(hours=1) < expires

    head = tus.head(url)
    assert head.status == 200
    assert head.offset == 0
    assert head.headers["upload-length"] == str(len(data))
    assert head.headers["cache-control"] == "no-store"
    assert head.headers["tus-resumable"] == TUS_VERSION
    pairs = dict(p.split(" ") for p in head.headers["upload-metadata"].split(","))
    assert base64.b64decode(pairs["filename"]) == b"compte-rendu.pdf"
    assert base64.b64decode(pairs["filetype"]) == b"application/pdf"

    # Pieces that end inside segments (tails) and cross segment boundaries.
    cuts = [0, 1000, MiB + 5, 2 * MiB - 100, len(data)]
    for start, end in itertools.pairwise(cuts):
        reply = tus.patch(url, start, data[start:end])
        assert reply.status == 204, reply.body
        assert reply.offset == end
        assert reply.headers["tus-resumable"] == TUS_VERSION
        if end < len(data):
            assert "upload-expires" in reply.headers
        assert tus.head(url).offset == end
    assert transfer_sha256(api, [upload_id(url)]) == [sha(data)]


def test_wrong_version_is_412_with_tus_version(tus: Tus) -> None:
    url = tus.new(10)
    for method, target in [("POST", None), ("HEAD", url), ("PATCH", url), ("DELETE", url)]:
        headers = {"Upload-Length": "10"} if method == "POST" else {}
        if method == "PATCH":
            headers = {"Content-Type": OCTETS, "Upload-Offset": "0"}
        reply = tus.request(method, target, headers, b"x" if method == "PATCH" else None,
                            version="0.2.2")
        assert_error(reply, 412, "precondition_failed")
        assert reply.headers["tus-version"] == TUS_VERSION
    missing = tus.request("HEAD", url, version=None)
    assert_error(missing, 412, "precondition_failed")
    assert tus.head(url).offset == 0


def test_patch_needs_offset_octet_stream(tus: Tus) -> None:
    url = tus.new(10)
    # curl's default for --data-binary is application/x-www-form-urlencoded
    reply = tus.request("PATCH", url, {"Upload-Offset": "0"}, b"0123456789")
    assert_error(reply, 415, "unsupported_media_type")
    reply = tus.patch(url, 0, b"0123456789", {"Content-Type": "application/octet-stream"})
    assert_error(reply, 415, "unsupported_media_type")
    assert tus.head(url).offset == 0


def test_wrong_or_missing_offset(tus: Tus) -> None:
    url = tus.new(100)
    assert tus.patch(url, 0, b"a" * 40).status == 204
    for wrong in (0, 39, 41, 100):
        details = assert_error(tus.patch(url, wrong, b"b" * 10), 409, "conflict")
        assert details == {"expected": 40}
    for bad in ("", "-1", "4e1", "forty"):
        reply = tus.request("PATCH", url, {"Content-Type": OCTETS, "Upload-Offset": bad}, b"b")
        assert_error(reply, 400, "invalid_input")
    missing = tus.request("PATCH", url, {"Content-Type": OCTETS}, b"b")
    assert_error(missing, 400, "invalid_input")
    assert tus.head(url).offset == 40


def test_too_large_is_413(tus: Tus) -> None:
    assert_error(tus.create(MAX_SIZE + 1), 413, "too_large")
    assert tus.create(MAX_SIZE).status == 201
    # a deferred length declared on a PATCH is checked too
    url = tus.new(None)
    reply = tus.patch(url, 0, b"abc", {"Upload-Length": str(MAX_SIZE + 1)})
    assert_error(reply, 413, "too_large")
    assert tus.head(url).offset == 0


def test_deferred_upload_cannot_grow_past_the_maximum(tus: Tus) -> None:
    """Without Upload-Length the server must still stop at Tus-Max-Size."""
    url = tus.new(None)
    assert tus.patch(url, 0, b"x" * (MAX_SIZE - 10)).status == 204
    reply = tus.patch(url, MAX_SIZE - 10, b"y" * 11)
    assert_error(reply, 413, "too_large")
    assert tus.head(url).offset == MAX_SIZE - 10


def test_body_past_upload_length_is_refused(tus: Tus) -> None:
    url = tus.new(100)
    assert tus.patch(url, 0, b"a" * 60).status == 204
    assert_error(tus.patch(url, 60, b"b" * 41), 400, "invalid_input")
    assert tus.head(url).offset == 60
    assert tus.patch(url, 60, b"b" * 40).status == 204


@pytest.mark.parametrize("headers", [
    {},
    {"Upload-Length": "10", "Upload-Defer-Length": "1"},
    {"Upload-Defer-Length": "2"},
    {"Upload-Defer-Length": "0"},
    {"Upload-Length": "-1"},
    {"Upload-Length": "ten"},
    {"Upload-Length": "1" * 30},
], ids=["neither", "both", "defer-2", "defer-0", "negative", "words", "huge"])
def test_length_headers_are_validated(tus: Tus, headers: dict[str, str]) -> None:
    assert_error(tus.request("POST", headers=headers), 400, "invalid_input")


def test_non_ascii_digits_are_400_not_500(tus: Tus, tus_server: Server,
                                          admin_token: str) -> None:
    """"²" passes str.isdigit() but not int(): still a client error."""
    url = tus.new(10)
    auth = {"Authorization": f"Bearer {admin_token}", **TUS}
    requests = [("POST", tus.endpoint, {"Upload-Length": b"\xb2"}),
                ("POST", tus.endpoint, {"Upload-Defer-Length": b"1", "Upload-Length": b"\xb9"}),
                ("PATCH", url, {"Upload-Offset": b"\xb2", "Content-Type": OCTETS}),
                ("PATCH", url, {"Upload-Offset": b"0", "Upload-Length": b"\xb3",
                                "Content-Type": OCTETS})]
    for method, target, headers in requests:
        with httpx.Client(timeout=30) as c:
            r = c.request(method, target, headers={**auth, **headers}, content=b"x")
        assert_error(Reply(r.status_code, dict(r.headers), r.content), 400, "invalid_input")
    assert tus.head(url).offset == 0


@pytest.mark.parametrize("metadata", [
    "filename",  # key only is allowed...
    "filename bm90LWJhc2U2NA==,filename bm90LWJhc2U2NA==",
    "filename !!!",
    "filename " + base64.b64encode(b"\xff\xfe").decode(),
    " ,filename YQ==",
    "f\u00e9 YQ==",
    "filename " + "A" * 5000,
], ids=["key-only", "duplicate", "not-base64", "not-utf8", "empty-pair", "non-ascii-key",
        "too-long"])
def test_metadata_is_validated(tus: Tus, metadata: str) -> None:
    reply = tus.create(10, metadata)
    if metadata == "filename":
        assert reply.status == 201
        return
    assert_error(reply, 400, "invalid_input")


def test_metadata_filename_is_sanitised(tus: Tus) -> None:
    url = tus.new(1, meta(filename="../../etc/passwd\r\n\u202efdp.txt"))
    pairs = dict(p.split(" ") for p in tus.head(url).headers["upload-metadata"].split(","))
    name = base64.b64decode(pairs["filename"]).decode()
    assert "/" not in name and "\r" not in name and "\n" not in name and "\u202e" not in name


def test_creation_with_upload(tus: Tus, api: httpx.Client) -> None:
    data = os.urandom(MiB + 777)
    partial = tus.create(len(data), meta(filename="a.bin"), data=data[:5000])
    assert partial.status == 201, partial.body
    assert partial.offset == 5000
    assert "upload-expires" in partial.headers
    url = partial.headers["location"]
    assert tus.head(url).offset == 5000
    assert tus.patch(url, 5000, data[5000:]).offset == len(data)

    whole = os.urandom(3000)
    done = tus.create(len(whole), data=whole)
    assert done.status == 201 and done.offset == len(whole)
    assert "upload-expires" not in done.headers  # completed uploads do not expire this way

    empty = tus.create(0)
    assert empty.status == 201 and empty.offset == 0
    ids = [upload_id(url), upload_id(done.headers["location"]),
           upload_id(empty.headers["location"])]
    assert transfer_sha256(api, ids) == [sha(data), sha(whole), sha(b"")]


def test_defer_length(tus: Tus, api: httpx.Client) -> None:
    data = os.urandom(MiB + 99)
    url = tus.new(None, meta(filename="flux.bin"))
    head = tus.head(url)
    assert head.headers["upload-defer-length"] == "1"
    assert "upload-length" not in head.headers
    assert tus.patch(url, 0, data[:1000]).offset == 1000
    assert tus.patch(url, 1000, data[1000:MiB]).offset == MiB
    # a transfer refuses an upload that is not complete
    early = api.post("/api/v1/transfers", json={"files": [upload_id(url)],
                                                "recipients": ["x@exemple.fr"]})
    assert early.status_code == 409, early.text
    last = tus.patch(url, MiB, data[MiB:], {"Upload-Length": str(len(data))})
    assert last.status == 204 and last.offset == len(data)
    head = tus.head(url)
    assert head.headers["upload-length"] == str(len(data))
    assert "upload-defer-length" not in head.headers
    assert transfer_sha256(api, [upload_id(url)]) == [sha(data)]


def test_upload_length_cannot_change(tus: Tus) -> None:
    url = tus.new(100)
    reply = tus.patch(url, 0, b"a" * 10, {"Upload-Length": "200"})
    assert_error(reply, 400, "invalid_input")
    assert tus.patch(url, 0, b"a" * 10, {"Upload-Length": "100"}).offset == 10
    deferred = tus.new(None)
    assert tus.patch(deferred, 0, b"a" * 10).offset == 10
    assert_error(tus.patch(deferred, 10, b"", {"Upload-Length": "5"}), 400, "invalid_input")


def test_checksums(tus: Tus, tus_server: Server, api: httpx.Client) -> None:
    data = os.urandom(3 * MiB)
    a, b, c = data[:MiB + 11], data[MiB + 11:2 * MiB], data[2 * MiB:]
    url = tus.new(len(data))
    first = tus.patch(url, 0, a, {"Upload-Checksum": "sha1 " + b64digest("sha1", a)})
    assert first.status == 204 and first.offset == len(a)

    bad = tus.patch(url, len(a), b, {"Upload-Checksum": "sha256 " + b64digest("sha256", c)})
    assert_error(bad, 460, "checksum_mismatch")
    assert tus.head(url).offset == len(a)
    # the right chunk is then accepted (the stream moves to fresh keys first)
    good = tus.patch(url, len(a), b, {"Upload-Checksum": "sha256 " + b64digest("sha256", b)})
    assert good.status == 204 and good.offset == len(a) + len(b)
    last = tus.patch(url, len(a) + len(b), c, {"Upload-Checksum": "sha1 " + b64digest("sha1", c)})
    assert last.status == 204 and last.offset == len(data)
    assert transfer_sha256(api, [upload_id(url)]) == [sha(data)]
    rekeyed = [e for e in audit_events(tus_server.data_dir, "upload.rekeyed")
               if e["object"]["id"] == upload_id(url)]
    assert len(rekeyed) == 1


@pytest.mark.parametrize("header", ["md5 " + b64digest("md5", b"abc"), "crc32 AAAAAA==",
                                    "sha256 not*base64", "sha1"],
                         ids=["md5", "crc32", "bad-base64", "no-digest"])
def test_bad_checksum_header_is_400(tus: Tus, header: str) -> None:
    url = tus.new(3)
    assert_error(tus.patch(url, 0, b"abc", {"Upload-Checksum": header}), 400, "invalid_input")
    assert tus.head(url).offset == 0


def test_terminate(tus: Tus, api: httpx.Client) -> None:
    url = tus.new(100)
    assert tus.patch(url, 0, b"z" * 50).status == 204
    deleted = tus.request("DELETE", url)
    assert deleted.status == 204
    assert deleted.headers["tus-resumable"] == TUS_VERSION
    assert_error(tus.head(url), 404, "not_found")
    assert_error(tus.patch(url, 50, b"z" * 50), 404, "not_found")
    assert_error(tus.request("DELETE", url), 404, "not_found")

    # an upload attached to a transfer is deleted with the transfer, not here
    attached = tus.new(3)
    tus.patch(attached, 0, b"abc")
    transfer_sha256(api, [upload_id(attached)])
    assert_error(tus.request("DELETE", attached), 409, "conflict")


def test_method_override(tus: Tus, api: httpx.Client) -> None:
    data = os.urandom(5000)
    url = tus.new(len(data))
    patched = tus.request("POST", url, {"X-HTTP-Method-Override": "PATCH", "Content-Type": OCTETS,
                                        "Upload-Offset": "0"}, data[:3000])
    assert patched.status == 204 and patched.offset == 3000
    head = tus.request("POST", url, {"X-HTTP-Method-Override": "HEAD"})
    assert head.status == 200 and head.offset == 3000
    done = tus.request("POST", url, {"X-HTTP-Method-Override": "patch", "Content-Type": OCTETS,
                                     "Upload-Offset": "3000"}, data[3000:])
    assert done.status == 204 and done.offset == len(data)
    assert transfer_sha256(api, [upload_id(url)]) == [sha(data)]

    other = tus.new(10)
    deleted = tus.request("POST", other, {"X-HTTP-Method-Override": "DELETE"})
    assert deleted.status == 204
    assert_error(tus.head(other), 404, "not_found")


def test_authentication_required(tus: Tus, tus_server: Server) -> None:
    url = tus.new(10)
    for token in (None, "cof_not-a-real-token"):
        anonymous = Tus(tus_server, token)
        for reply in (anonymous.create(10), anonymous.head(url), anonymous.patch(url, 0, b"x"),
                      anonymous.request("DELETE", url)):
            assert_error(reply, 401, "authentication_required")
            assert reply.headers["www-authenticate"].startswith("Bearer")
    assert tus.head(url).offset == 0


def test_unknown_upload_and_method(tus: Tus) -> None:
    unknown = tus.endpoint + "0" * 32
    assert_error(tus.head(unknown), 404, "not_found")
    assert_error(tus.patch(unknown, 0, b"x"), 404, "not_found")
    assert_error(tus.request("DELETE", unknown), 404, "not_found")
    url = tus.new(10)
    assert_error(tus.request("GET", url), 405, "method_not_allowed")


def test_another_users_upload_is_not_found(tus: Tus, tus_server: Server,
                                           other_token: str) -> None:
    url = tus.new(100, meta(filename="dossier-patient.pdf"))
    assert tus.patch(url, 0, b"a" * 10).status == 204
    other = Tus(tus_server, other_token)
    for reply in (other.head(url), other.patch(url, 10, b"b" * 10),
                  other.request("DELETE", url)):
        assert_error(reply, 404, "not_found")
    with httpx.Client(base_url=tus_server.url, timeout=30,
                      headers={"Authorization": f"Bearer {other_token}"}) as c:
        stolen = c.post("/api/v1/transfers", json={"files": [upload_id(url)],
                                                   "recipients": ["x@exemple.fr"]})
        assert stolen.status_code == 404, stolen.text
    # the other user's own uploads work, and the owner's is untouched
    own = other.new(3)
    assert other.patch(own, 0, b"abc").offset == 3
    assert_error(tus.head(own), 404, "not_found")
    assert tus.head(url).offset == 10


def test_unfinished_uploads_are_listed_to_their_owner_only(
        tus: Tus, tus_server: Server, other_token: str, api: httpx.Client) -> None:
    """``GET /api/v1/uploads/`` (not tus): where a page reloaded mid-upload
    finds the upload to resume; never another user's, nor one already sent."""
    url = tus.new(100, meta(filename="scanner.bin", fingerprint="coffre/scanner.bin/100/1"))
    assert tus.patch(url, 0, b"a" * 40).status == 204
    sent = tus.new(3, meta(filename="fait.txt"))
    assert tus.patch(sent, 0, b"abc").offset == 3
    transfer_sha256(api, [upload_id(sent)])
    listed = {u["id"]: u for u in api.get("/api/v1/uploads/").json()}
    mine = listed[upload_id(url)]
    assert (mine["offset"], mine["length"], mine["completed"]) == (40, 100, False)
    assert mine["metadata"] == {"filename": "scanner.bin",
                                "fingerprint": "coffre/scanner.bin/100/1"}
    assert upload_id(sent) not in listed
    with httpx.Client(base_url=tus_server.url, timeout=30,
                      headers={"Authorization": f"Bearer {other_token}"}) as c:
        theirs = c.get("/api/v1/uploads/")
        assert theirs.status_code == 200, theirs.text
        assert upload_id(url) not in {u["id"] for u in theirs.json()}
    assert httpx.get(f"{tus_server.url}/api/v1/uploads/").status_code == 401


def test_expired_upload_is_gone(tus: Tus, tus_server: Server) -> None:
    url = tus.new(100)
    assert tus.patch(url, 0, b"a" * 10).status == 204
    sql(tus_server.data_dir, "UPDATE uploads SET expires_at = ? WHERE id = ?",
        "2000-01-01 00:00:00.000000", upload_id(url))
    assert_error(tus.head(url), 410, "gone")
    assert_error(tus.patch(url, 10, b"b" * 10), 410, "gone")


# -- 2. tuspy -------------------------------------------------------------------------


def tuspy_client(server: Server, token: str) -> Any:
    from tusclient import client

    return client.TusClient(f"{server.url}/api/v1/uploads/",
                            headers={"Authorization": f"Bearer {token}"})


def test_tuspy_upload_with_checksum_and_metadata(tus_server: Server, admin_token: str,
                                                 tus: Tus, api: httpx.Client) -> None:
    data = os.urandom(12 * MiB + 321)
    uploader = tuspy_client(tus_server, admin_token).uploader(
        file_stream=io.BytesIO(data), chunk_size=5 * MiB, upload_checksum=True,
        metadata={"filename": "IRM-genou.dcm", "filetype": "application/dicom"})
    uploader.upload()
    assert uploader.offset == len(data)
    head = tus.head(uploader.url)
    assert head.offset == len(data)
    pairs = dict(p.split(" ") for p in head.headers["upload-metadata"].split(","))
    assert base64.b64decode(pairs["filename"]) == b"IRM-genou.dcm"
    assert transfer_sha256(api, [upload_id(uploader.url)]) == [sha(data)]


def test_tuspy_resumes_from_the_server_offset(tus_server: Server, admin_token: str,
                                              api: httpx.Client) -> None:
    data = os.urandom(11 * MiB + 5)
    tus_client = tuspy_client(tus_server, admin_token)
    first = tus_client.uploader(file_stream=io.BytesIO(data), chunk_size=5 * MiB,
                                upload_checksum=True, metadata={"filename": "scanner.bin"})
    first.upload_chunk()  # creates the upload and sends one chunk, then "stops"
    assert first.offset == 5 * MiB
    again = tus_client.uploader(file_stream=io.BytesIO(data), url=first.url,
                                chunk_size=5 * MiB, upload_checksum=True)
    assert again.offset == 5 * MiB  # asked the server (HEAD)
    again.upload()
    assert again.offset == len(data)
    assert transfer_sha256(api, [upload_id(first.url)]) == [sha(data)]


# -- 3. crash safety ----------------------------------------------------------------------


def pattern(total: int, start: int = 0, piece: int = MiB) -> Iterator[bytes]:
    """Deterministic, incompressible-looking bytes [start, total) in pieces."""
    block = hashlib.sha256(b"coffre").digest() * (MiB // 32)
    pos = start
    while pos < total:
        index, within = divmod(pos, MiB)
        chunk = index.to_bytes(8, "big") + block[8:]
        out = chunk[within:within + min(piece, total - pos)]
        yield out
        pos += len(out)


def raw_patch_then_close(server: Server, token: str, url: str, offset: int, declared: int,
                         body: Iterable[bytes], linger: float) -> int:
    """Send a PATCH announcing ``declared`` bytes, send ``body``, wait
    ``linger`` seconds, then close the connection. Returns bytes sent."""
    path = "/" + url.split("/", 3)[3]
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall((f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                   f"Authorization: Bearer {token}\r\nTus-Resumable: {TUS_VERSION}\r\n"
                   f"Content-Type: {OCTETS}\r\nUpload-Offset: {offset}\r\n"
                   f"Content-Length: {declared}\r\n\r\n").encode())
        for piece in body:
            s.sendall(piece)
            sent += len(piece)
        time.sleep(linger)
    return sent


def wait_offset(tus: Tus, url: str, expected: int, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while True:
        offset = tus.head(url).offset
        if offset == expected or time.monotonic() > deadline:
            return offset
        time.sleep(0.05)


def wait_settled(server: Server, uid: str, timeout: float = 5) -> int:
    """The committed offset once the writer has let go of the upload."""
    deadline = time.monotonic() + timeout
    while True:
        offset, owner = sql(server.data_dir, 'SELECT "offset", lease_owner FROM uploads '
                            "WHERE id = ?", uid)[0]
        if (offset > 0 and owner is None) or time.monotonic() > deadline:
            return int(offset)
        time.sleep(0.05)


@pytest.mark.parametrize("size", [2 * MiB + 12345, 9 * MiB + 77],
                         ids=["under-one-batch", "over-one-batch"])
def test_client_disconnect_keeps_what_arrived(tus: Tus, tus_server: Server, admin_token: str,
                                              api: httpx.Client, size: int) -> None:
    total = 12 * MiB
    data = b"".join(pattern(total))
    url = tus.new(total)
    sent = raw_patch_then_close(tus_server, admin_token, url, 0, total,
                                (data[i:min(i + MiB, size)] for i in range(0, size, MiB)),
                                linger=1.0)
    assert sent == size
    # every byte the server read before the disconnect is acknowledged
    assert wait_offset(tus, url, sent) == sent
    resumed = tus.patch(url, sent, data[sent:])
    assert resumed.status == 204 and resumed.offset == total
    assert transfer_sha256(api, [upload_id(url)]) == [sha(data)]


def test_abrupt_disconnect_then_resume(tus: Tus, tus_server: Server, admin_token: str,
                                       api: httpx.Client) -> None:
    """Closing right after the last byte: the server keeps at most what it
    read (uvicorn may drop what it buffered but had not handed over), and
    HEAD tells the client where to resume."""
    total = 4 * MiB
    data = b"".join(pattern(total))
    url = tus.new(total)
    sent = raw_patch_then_close(tus_server, admin_token, url, 0, total, [data[:3 * MiB + 1]],
                                linger=0)
    offset = wait_settled(tus_server, upload_id(url))
    print(f"abrupt disconnect: sent {sent}, kept {offset}")
    assert 0 <= offset <= sent
    assert tus.head(url).offset == offset
    assert tus.patch(url, offset, data[offset:]).offset == total
    assert transfer_sha256(api, [upload_id(url)]) == [sha(data)]


def test_sigkill_mid_patch_then_resume(server: Server, client: httpx.Client, token: str,
                                       mail: MailCatcher) -> None:
    from coffre.services import uploads

    total = 128 * MiB
    expected = hashlib.sha256()
    for piece in pattern(total):
        expected.update(piece)
    created = client.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": str(total)})
    assert created.status_code == 201
    url = created.headers["location"]
    uid = upload_id(url)
    blob_before = sql(server.data_dir, "SELECT blob_id FROM uploads WHERE id = ?", uid)[0][0]

    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def fast_then_slowly() -> Iterator[bytes]:
        # Past one reserved window at full speed (the writer checkpoints the
        # whole segments at the window's end), then a trickle until the crash.
        window = uploads.RESERVE_WINDOW * MiB
        for n, piece in enumerate(pattern(total)):
            if stop.is_set():
                return
            yield piece
            if n * MiB > window + 16 * MiB:
                time.sleep(0.2)

    def send() -> None:
        try:
            with httpx.Client(timeout=120) as c:
                outcome["reply"] = c.patch(url, content=fast_then_slowly(), headers={
                    **TUS, "Authorization": f"Bearer {token}", "Content-Type": OCTETS,
                    "Upload-Offset": "0"})
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    try:
        deadline = time.monotonic() + uploads.CHECKPOINT_SECONDS + 30
        # A checkpoint is committed, then the next window reserved (its own
        # transaction): kill once both are in the database.
        while time.monotonic() < deadline and not sql(
                server.data_dir, 'SELECT "offset" > 0 AND segments_reserved > segments_committed '
                "FROM uploads WHERE id = ?", uid)[0][0]:
            time.sleep(0.05)
        server.kill()
    finally:
        stop.set()
        sender.join(30)
    assert "reply" not in outcome, "the PATCH finished before the crash"
    committed, done, reserved = sql(
        server.data_dir, 'SELECT "offset", segments_committed, segments_reserved FROM uploads '
        "WHERE id = ?", uid)[0]
    assert 0 < committed < total, "no checkpoint was committed"
    assert reserved > done  # the killed writer held reservations past its checkpoint

    server.start()
    with httpx.Client(base_url=server.url, timeout=120,
                      headers={"Authorization": f"Bearer {token}"}) as c:
        head = c.head(url, headers=TUS)
        assert head.status_code == 200
        offset = int(head.headers["upload-offset"])
        assert offset == committed
        resumed = c.patch(url, content=pattern(total, offset), headers={
            **TUS, "Content-Type": OCTETS, "Upload-Offset": str(offset)})
        assert resumed.status_code == 204, resumed.text
        assert resumed.headers["upload-offset"] == str(total)

        # segments reserved by the killed writer were never reused: new keys
        rekeyed = [e for e in audit_events(server.data_dir, "upload.rekeyed")
                   if e["object"]["id"] == uid]
        assert len(rekeyed) == 1
        blob_after = sql(server.data_dir, "SELECT blob_id FROM uploads WHERE id = ?", uid)[0][0]
        assert blob_after != blob_before
        assert sql(server.data_dir, "SELECT wrapped_key IS NULL, shredded_at IS NOT NULL "
                   "FROM blobs WHERE id = ?", blob_before) == [(1, 1)]
        assert not list(server.data_dir.rglob(blob_before))
        bucket = backends.stored_bucket(server.data_dir)  # the distributed profile's blobs
        assert bucket is None or not [n for n in backends.bucket_names(bucket)
                                      if blob_before in n]

        made = c.post("/api/v1/transfers", json={"files": [uid],
                                                 "recipients": ["patient@exemple.fr"]})
        assert made.status_code == 201, made.text
        assert made.json()["files"][0]["sha256"] == expected.hexdigest()
        token = link_token(mail.link_for("patient@exemple.fr"))
        access = verify_link(server.url, mail, token, "patient@exemple.fr")
        link = httpx.get(f"{server.url}/api/v1/links/{token}", headers=access).json()
        got = hashlib.sha256()
        with httpx.stream("GET", link["files"][0]["url"], headers=access,
                          timeout=120) as download:
            assert download.status_code == 200
            for piece in download.iter_bytes():
                got.update(piece)
        assert got.hexdigest() == expected.hexdigest()


# -- 4. canaries: no plaintext at rest ----------------------------------------------------


def find_in_files(roots: list[Path], needles: list[bytes]) -> list[tuple[str, bytes]]:
    """Every (file, needle) found. A file renamed while scanning (the mail
    queue writes atomically: temporary file, then rename) restarts the
    scan, so that its content is read under its final name."""
    for _ in range(20):
        hits: list[tuple[str, bytes]] = []
        try:
            for root in roots:
                files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
                for path in files:
                    content = path.read_bytes()
                    hits += [(str(path), n) for n in needles if n in content]
        except FileNotFoundError:
            time.sleep(0.05)
            continue
        return hits
    raise AssertionError("files kept changing while being scanned")


def bucket_hits(server: Server, needles: list[bytes]) -> dict[str, list[bytes]]:
    """Every object of the server's bucket (distributed profile), with the
    needles found in it; {} on the embedded profile."""
    bucket = backends.stored_bucket(server.data_dir)
    if bucket is None:
        return {}
    return {name: [n for n in needles if n in data]
            for name, data in backends.bucket_objects(bucket).items()
            if not needles or any(n in data for n in needles)}


def test_canaries_never_reach_the_disk(tmp_path: Path) -> None:
    canary = f"CANARY-{os.urandom(8).hex()}".encode()
    name_canary = f"PATIENT-DUPONT-{os.urandom(6).hex()}"
    needles = [canary, name_canary.encode(), base64.b64encode(name_canary.encode())]
    # a sanity check of the scanner itself
    planted = tmp_path / "planted"
    planted.write_bytes(b"xx" + canary + b"yy")
    assert find_in_files([planted], needles) == [(str(planted), canary)]

    total = 5 * MiB + 3000
    data = bytearray(os.urandom(total))
    partial = 3 * MiB + 777  # ends inside segment 3: a tail is kept
    for at in (100, 5000, MiB + 500, 2 * MiB + 1, partial - 300, total - 200):
        data[at:at + len(canary)] = canary
    data = bytes(data)

    srv = launch(tmp_path / "canary", {})  # no SMTP: mail goes to the (sealed) dev mailbox
    roots = [srv.data_dir, srv.data_dir.parent]  # the data directory and the server's log
    try:
        token = login(srv.url)
        tus = Tus(srv, token)
        filename = meta(filename=f"{name_canary}.pdf")
        needles.append(filename.split(" ")[1].encode())
        url = tus.new(total, filename)
        assert tus.patch(url, 0, data[:partial]).offset == partial
        tail = sql(srv.data_dir, "SELECT length(tail_sealed) FROM uploads WHERE id = ?",
                   upload_id(url))[0][0]
        assert tail and tail > 0
        assert list(srv.data_dir.parent.glob("server-*.log"))
        scanned = [p for p in srv.data_dir.rglob("*") if p.is_file()]
        if backends.profile() == "embedded":
            assert any(p.name == "coffre.db" for p in scanned)
        else:  # the database is not in the data directory: scan a dump of it
            assert not [n for n in needles if n in backends.database_bytes(srv.data_dir)]
        if backends.stored_bucket(srv.data_dir) is None:
            assert any("blobs" in p.parts for p in scanned)
        else:  # the blobs are objects in the server's bucket: scan them too
            assert any(n.startswith(".tmp-append/blobs/") for n in bucket_hits(srv, []))
            assert bucket_hits(srv, needles) == {}
        assert find_in_files(roots, needles) == []

        assert tus.patch(url, partial, data[partial:]).offset == total
        with httpx.Client(base_url=srv.url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            assert transfer_sha256(c, [upload_id(url)], "patient@exemple.fr") == [sha(data)]
        mailbox = srv.data_dir / "mailbox"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not [
                p for p in mailbox.glob("*") if p.name != "mailbox.key"]:
            time.sleep(0.1)
        assert [p for p in mailbox.glob("*") if p.name != "mailbox.key"], "no mail was queued"
        assert find_in_files(roots, needles) == []
    finally:
        srv.stop()
    assert find_in_files(roots, needles) == []  # nothing flushed at shutdown either
    assert bucket_hits(srv, needles) == {}
    assert not [n for n in needles if n in backends.database_bytes(srv.data_dir)]
