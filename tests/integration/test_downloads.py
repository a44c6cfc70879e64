"""A recipient's downloads from a real server: headers (RFC 6266/5987,
nosniff, no-store, ETag), byte ranges (RFC 9110), what counts as a
download (only a GET that delivers every byte), download limits, the
streamed ZIP (ZIP64), link passwords with lockout, and the sender's
download notice.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import socket
import time
import zipfile
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from coffre.audit.trail import Context
from tests.conftest import ADMIN_EMAIL, MailCatcher, Server
from tests.integration import support
from tests.integration.flows import TUS, sql, upload_bytes
from tests.integration.support import (
    assert_error,
    events_for,
    in_process,
    module_server,
    one_event,
    opened,
    wait_events_for,
)

ATTEMPTS = 3
MiB = 1 << 20

# -- one server for the module ----------------------------------------------------

mail, server, token, client, admin = module_server(
    "downloads", COFFRE_LINK_PASSWORD_ATTEMPTS=str(ATTEMPTS)
)


# -- recipients prove their address first (the real one-time code flow) ---------------

#: link token -> the access header its recipient got with the code mailed to them
ACCESS: dict[str, dict[str, str]] = {}
_RUN: dict[str, Any] = {}
_TOKEN = re.compile(r"/(?:api/v1/links|t)/([A-Za-z0-9_-]+)")


@pytest.fixture(autouse=True)
def _recipients(server: Server, mail: MailCatcher) -> None:
    _RUN.update(server=server, mail=mail)


def send(client: httpx.Client, files: dict[str, bytes] | list[tuple[str, bytes]],
         recipients: int = 1, **options: Any) -> tuple[dict[str, Any], list[str]]:
    """Create a transfer; each recipient enters the code mailed to them."""
    transfer, tokens = support.send(client, files, recipients, **options)
    for token in tokens:
        ACCESS[token] = opened(_RUN["server"], _RUN["mail"], transfer, token)
    return transfer, tokens


def _granted(url: str, headers: dict[str, str] | None) -> dict[str, str]:
    match = _TOKEN.search(url)
    return {**(ACCESS.get(match.group(1), {}) if match else {}), **(headers or {})}


class _Recipient:
    """httpx's get, head and stream with the grant of the link in the URL."""

    @staticmethod
    def get(url: str, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return httpx.get(url, headers=_granted(url, headers), **kw)

    @staticmethod
    def head(url: str, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return httpx.head(url, headers=_granted(url, headers), **kw)

    @staticmethod
    def stream(method: str, url: str, headers: dict[str, str] | None = None,
               **kw: Any) -> Any:
        return httpx.stream(method, url, headers=_granted(url, headers), **kw)


rc = _Recipient()


def _link(server: Server, token: str) -> str:
    return f"{server.url}/api/v1/links/{token}"


def _view(server: Server, token: str, **headers: str) -> dict[str, Any]:
    response = rc.get(_link(server, token), headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _recipient_ids(transfer: dict[str, Any]) -> list[str]:
    return [r["id"] for r in transfer["recipients"]]


def _downloads(client: httpx.Client, transfer_id: str) -> list[int]:
    shown = client.get(f"/api/v1/transfers/{transfer_id}").json()
    return [r["downloads"] for r in shown["recipients"]]


def _no_download_recorded(server: Server, recipient_id: str) -> None:
    time.sleep(0.3)  # a completed download is recorded right after its last byte
    assert not events_for(server.data_dir, "transfer.downloaded", recipient_id)


def _downloaded(server: Server, admin: dict[str, Any], recipient_id: str,
                secrets: tuple[str | bytes, ...]) -> dict[str, Any]:
    return one_event(server.data_dir, "transfer.downloaded", object_type="recipient",
                     object_id=recipient_id, organisation=admin["organisation_id"],
                     actor=None, secrets=secrets, wait=True)


# -- a whole file -------------------------------------------------------------------


def test_full_download(server: Server, client: httpx.Client, admin: dict[str, Any]) -> None:
    content = b"%PDF-1.7\nCANARY-DL " + os.urandom(2 * MiB + 12345)
    name = "Compte rendu é.pdf"
    transfer, (token,) = send(client, {name: content})
    (recipient,) = _recipient_ids(transfer)
    sha = hashlib.sha256(content).hexdigest()

    info = _view(server, token)
    (file,) = info["files"]
    assert (file["name"], file["size"], file["sha256"]) == (name, len(content), sha)
    assert file["downloads_left"] is None
    assert info["total_size"] == len(content)
    assert info["sender_email"] == ADMIN_EMAIL
    opened = one_event(server.data_dir, "link.opened", object_type="recipient",
                       object_id=recipient, organisation=admin["organisation_id"], actor=None,
                       secrets=(token, name))
    assert opened["details"]["transfer"] == transfer["id"]

    response = rc.get(file["url"])
    assert response.status_code == 200
    assert response.content == content
    h = response.headers
    assert h["content-length"] == str(len(content))
    assert h["content-type"] == "application/octet-stream"
    assert h["content-disposition"] == (
        "attachment; filename=\"Compte rendu e.pdf\"; "  # the ASCII fallback keeps letters
        "filename*=UTF-8''Compte%20rendu%20%C3%A9.pdf")
    # The extended parameter alone, through a real RFC 2231/5987 parser.
    extended = h["content-disposition"].split("; ")[2]
    parsed = EmailMessage()
    parsed["Content-Disposition"] = f"attachment; {extended}"
    assert parsed.get_filename() == name
    assert h["x-content-type-options"] == "nosniff"
    assert h["cache-control"] == "no-store"
    assert h["accept-ranges"] == "bytes"
    assert h["etag"] == f'"{sha[:32]}"'
    assert h["repr-digest"] == f"sha-256=:{base64.b64encode(bytes.fromhex(sha)).decode()}:"
    assert "sandbox" in h["content-security-policy"]

    event = _downloaded(server, admin, recipient, (token, "CANARY-DL", name))
    assert event["details"] == {"transfer": transfer["id"], "files": [file["id"]],
                                "archive": False, "start": 0, "end": len(content),
                                "sent": len(content), "complete": True,
                                "counted": [file["id"]]}
    assert not events_for(server.data_dir, "transfer.read", recipient)  # one event, not two
    assert _downloads(client, transfer["id"]) == [1]
    first_opened = client.get(f"/api/v1/transfers/{transfer['id']}").json()["recipients"][0]
    assert first_opened["first_opened_at"] is not None


def test_html_is_served_as_an_inert_attachment(server: Server, client: httpx.Client) -> None:
    files = {
        "page.html": b"<!doctype html><html><body><script>alert(document.cookie)</script>",
        "image.svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    }
    _, (token,) = send(client, files)
    for file in _view(server, token)["files"]:
        response = rc.get(file["url"])
        assert response.status_code == 200
        assert response.content == files[file["name"]]
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"].startswith("attachment;")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == "default-src 'none'; sandbox"


def test_empty_file(server: Server, client: httpx.Client, admin: dict[str, Any]) -> None:
    transfer, (token,) = send(client, {"vide.txt": b""})
    (file,) = _view(server, token)["files"]
    response = rc.get(file["url"])
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"
    _downloaded(server, admin, _recipient_ids(transfer)[0], (token,))


# -- ranges ---------------------------------------------------------------------------


def test_ranges_count_once_they_cover_the_file(server: Server, client: httpx.Client,
                                               admin: dict[str, Any]) -> None:
    """Single ranges never use up a download, but ranges that together
    deliver every byte, or as many bytes as the file holds, do (else ranges
    would get around a limit). Each response leaves one event with its
    bytes."""
    content = os.urandom(2 * MiB + 777)  # three encrypted segments
    size = len(content)
    transfer, (token,) = send(client, {"scanner.dcm": content})
    (recipient,) = _recipient_ids(transfer)
    (file,) = _view(server, token)["files"]
    url, etag = file["url"], f'"{file["sha256"][:32]}"'

    def get(range_: str, **headers: str) -> httpx.Response:
        return rc.get(url, headers={"Range": range_, **headers})

    for header, start, end in [
        ("bytes=1-99", 1, 100),
        ("bytes=1048570-1048590", 1048570, 1048591),  # across a segment boundary
        ("bytes=-500", size - 500, size),  # suffix
        ("bytes=2000000-", 2000000, size),  # open-ended
        (f"bytes={size - 10}-{size + 1000}", size - 10, size),  # clamped
        ("bytes=1-", 1, size),  # all but the first byte: the bytes add up to the file
    ]:
        response = get(header)
        assert response.status_code == 206, header
        assert response.content == content[start:end], header
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
        assert response.headers["content-length"] == str(end - start)
        assert response.headers["etag"] == etag
        assert response.headers["content-disposition"].startswith("attachment;")
        assert response.headers["cache-control"] == "no-store"
        assert "repr-digest" not in response.headers

    assert get("bytes=10-19", **{"If-Range": etag}).status_code == 206
    for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
        refused = get(header)
        assert_error(refused, 416, "range_not_satisfiable", {"size": size})
        assert refused.headers["content-range"] == f"bytes */{size}"

    head = rc.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(size)
    assert head.headers["etag"] == etag
    head_range = rc.head(url, headers={"Range": "bytes=0-9"})
    assert head_range.status_code == 206
    assert head_range.headers["content-range"] == f"bytes 0-9/{size}"

    reads = wait_events_for(server.data_dir, "transfer.read", recipient, 6)
    assert len(reads) == 6  # one per response that sent bytes, none for HEAD or a 416
    assert [(r["details"]["start"], r["details"]["end"], r["details"]["sent"])
            for r in reads[:2]] == [(1, 100, 99), (1048570, 1048591, 21)]
    assert reads[5]["details"]["start"] == 10  # the If-Range one
    assert all(r["details"]["complete"] is True and r["details"]["counted"] == []
               and r["outcome"] == "success" for r in reads)
    # The ranges sent as many bytes as the file holds by "bytes=1-": one download.
    counted = _downloaded(server, admin, recipient, (token,))
    assert (counted["details"]["start"], counted["details"]["sent"]) == (1, size - 1)
    assert counted["details"]["counted"] == [file["id"]]
    assert _downloads(client, transfer["id"]) == [1]

    # The first byte alone, afterwards: a read, not a download.
    assert get("bytes=0-0").content == content[:1]
    assert len(wait_events_for(server.data_dir, "transfer.read", recipient, 7)) == 7
    assert _downloads(client, transfer["id"]) == [1]

    # If-Range with another validator: the whole file, 200, which counts.
    full = get("bytes=0-9", **{"If-Range": '"not-the-etag"'})
    assert full.status_code == 200
    assert full.content == content
    assert "content-range" not in full.headers
    # Several ranges are answered with the whole file (RFC 9110 allows it): counts too.
    several = get("bytes=0-1,5-6")
    assert several.status_code == 200
    assert several.content == content
    assert len(wait_events_for(server.data_dir, "transfer.downloaded", recipient, 3)) == 3
    assert _downloads(client, transfer["id"]) == [3]


def test_one_time_link(server: Server, client: httpx.Client, admin: dict[str, Any]) -> None:
    content = b"CANARY-ONCE " + os.urandom(50_000)
    transfer, (token, other_token) = send(client, {"ordonnance.pdf": content}, recipients=2,
                                          max_downloads=1)
    recipient, other = _recipient_ids(transfer)
    (file,) = _view(server, token)["files"]
    url = file["url"]
    assert file["downloads_left"] == 1

    # Previews, HEAD and partial ranges leave the link usable.
    assert rc.get(f"{server.url}/t/{token}").status_code == 200
    assert rc.head(url).status_code == 200
    assert rc.get(url, headers={"Range": "bytes=0-99"}).status_code == 206
    assert rc.get(url, headers={"Range": "bytes=-1"}).status_code == 206
    _no_download_recorded(server, recipient)
    assert _view(server, token)["files"][0]["downloads_left"] == 1

    # The one full GET uses it up.
    assert rc.get(url).content == content
    _downloaded(server, admin, recipient, (token, "CANARY-ONCE"))
    exhausted = {"reason": "exhausted"}
    assert_error(rc.get(url), 410, "gone", exhausted)
    assert_error(rc.get(url, headers={"Range": "bytes=0-9"}), 410, "gone", exhausted)
    assert rc.head(url).status_code == 410
    assert_error(rc.get(f"{_link(server, token)}/archive.zip"), 410, "gone", exhausted)
    assert _view(server, token)["files"][0]["downloads_left"] == 0
    page = rc.get(f"{server.url}/t/{token}")
    assert page.status_code == 200
    assert "Limite atteinte" in page.text
    assert f"/files/{file['id']}" not in page.text
    assert len(events_for(server.data_dir, "transfer.downloaded", recipient)) == 1

    # The other recipient has a limit of its own.
    other_file = _view(server, other_token)["files"][0]
    assert other_file["downloads_left"] == 1
    assert rc.get(other_file["url"]).content == content
    _downloaded(server, admin, other, (other_token,))
    assert _downloads(client, transfer["id"]) == [1, 1]


def _aborted_get(url: str, keep: int = 256 * 1024) -> bytes:
    """GET ``url`` and hang up after ``keep`` bytes, with a small receive
    buffer so that the server cannot have pushed the whole body into
    socket buffers already (it would then rightly count it as sent)."""
    parts = httpx.URL(url)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.connect((parts.host, parts.port))
        grant = "".join(f"{k}: {v}\r\n" for k, v in _granted(url, None).items())
        sock.sendall(f"GET {parts.raw_path.decode()} HTTP/1.1\r\nHost: {parts.host}\r\n"
                     f"{grant}Connection: close\r\n\r\n".encode())
        received = b""
        while len(received) < keep:
            block = sock.recv(64 * 1024)
            if not block:
                break
            received += block
    return received


def _body_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


def _until(get: Any, status: int) -> httpx.Response:
    """``get()`` until it answers ``status``: an aborted read holds its claim
    until the server has noticed the disconnect (a 410 until then)."""
    for _ in range(100):
        response: httpx.Response = get()
        if response.status_code == status:
            break
        time.sleep(0.1)
    return response


def test_an_aborted_download_resumed_counts_once(server: Server, client: httpx.Client,
                                                 admin: dict[str, Any]) -> None:
    """A broken download of a one-time link, resumed with a range from
    where the client stopped: one download, one event per response, and
    the link is used up."""
    big = os.urandom(40 * MiB)  # more than any socket buffer will hold here
    transfer, (token,) = send(client, {"gros.bin": big}, max_downloads=1)
    (recipient,) = _recipient_ids(transfer)
    (file,) = _view(server, token)["files"]
    raw = _aborted_get(file["url"])
    assert raw.startswith(b"HTTP/1.1 200 ")
    got = len(_body_of(raw))
    assert 0 < got < len(big)
    cut = wait_events_for(server.data_dir, "transfer.read", recipient, 1)
    assert len(cut) == 1
    read = one_event(server.data_dir, "transfer.read", object_type="recipient",
                     object_id=recipient, organisation=admin["organisation_id"], actor=None,
                     outcome="failure", secrets=(token,))
    details = read["details"]
    assert (details["start"], details["end"], details["complete"]) == (0, len(big), False)
    assert got <= details["sent"] < len(big)
    assert details["counted"] == [] and details["files"] == [file["id"]]
    _no_download_recorded(server, recipient)
    assert _view(server, token)["files"][0]["downloads_left"] == 1

    resumed = _until(lambda: rc.get(file["url"], headers={"Range": f"bytes={got}-"}), 206)
    assert resumed.status_code == 206, resumed.text
    assert resumed.content == big[got:]
    event = _downloaded(server, admin, recipient, (token,))
    assert event["details"]["start"] == got and event["details"]["complete"] is True
    assert event["details"]["sent"] == len(big) - got
    assert event["details"]["counted"] == [file["id"]]
    assert len(events_for(server.data_dir, "transfer.read", recipient)) == 1
    # Each response also left one event before its first byte, with the range asked.
    starts = events_for(server.data_dir, "transfer.read_started", recipient)
    assert [(e["details"]["start"], e["details"]["end"]) for e in starts] == [
        (0, len(big)), (got, len(big))]
    assert all(e["actor"] is None and e["outcome"] == "success" for e in starts)
    assert _downloads(client, transfer["id"]) == [1]
    assert_error(rc.get(file["url"], headers={"Range": f"bytes={got}-"}), 410, "gone",
                 {"reason": "exhausted"})


def test_an_aborted_zip_counts_what_it_sent(server: Server, client: httpx.Client,
                                            admin: dict[str, Any]) -> None:
    """A ZIP cut short: one event, and each file's bytes that went out count
    (a ZIP cannot be resumed; its files can, one by one)."""
    # 64 MiB: a resume's allowance (16 MiB) is well above what a loaded
    # machine's socket buffers take before the server sees the hang-up.
    first, second = os.urandom(MiB), os.urandom(64 * MiB)
    transfer, (token,) = send(client, [("a.bin", first), ("b.bin", second)], max_downloads=1)
    (recipient,) = _recipient_ids(transfer)
    info = _view(server, token)
    raw = _aborted_get(info["archive_url"], keep=2 * MiB)
    assert raw.startswith(b"HTTP/1.1 200 ")
    (read,) = wait_events_for(server.data_dir, "transfer.downloaded", recipient, 1)
    assert read["outcome"] == "failure"
    assert read["details"]["archive"] is True and read["details"]["complete"] is False
    assert read["details"]["files"] == [f["id"] for f in transfer["files"]]
    # The first file went out whole inside the ZIP: its one download is used.
    assert read["details"]["counted"] == [transfer["files"][0]["id"]]
    assert [f["downloads_left"] for f in _view(server, token)["files"]] == [0, 1]
    assert_error(rc.get(info["files"][0]["url"]), 410, "gone", {"reason": "exhausted"})
    assert_error(_until(lambda: rc.get(info["archive_url"]), 410), 410, "gone",
                 {"reason": "exhausted"})
    # The second file can still be downloaded on its own (only a few MiB of it went out).
    assert _until(lambda: rc.get(info["files"][1]["url"]), 200).content == second


def test_links_and_files_are_personal(server: Server, client: httpx.Client) -> None:
    _, (token,) = send(client, {"a.txt": b"a"})
    _, (stranger,) = send(client, {"b.txt": b"b"})
    theirs = _view(server, stranger)["files"][0]["id"]
    assert_error(rc.get(f"{_link(server, token)}/files/{theirs}"), 404, "not_found")
    assert_error(rc.get(f"{_link(server, token)}/files/{'0' * 32}"), 404, "not_found")
    unknown = "A" * 43
    assert_error(rc.get(_link(server, unknown)), 404, "not_found")
    assert_error(rc.get(f"{_link(server, unknown)}/archive.zip"), 404, "not_found")
    page = rc.get(f"{server.url}/t/{unknown}")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Lien inconnu" in page.text


# -- the whole transfer as a ZIP ------------------------------------------------------


def test_zip_archive(server: Server, client: httpx.Client, admin: dict[str, Any]) -> None:
    files = [
        ("rapport.pdf", b"CANARY-ZIP-1 " + os.urandom(1500)),
        ("Rapport.pdf", os.urandom(MiB + 3)),
        ("rapport.pdf", b"troisieme"),
        ("vide.txt", b""),
        ("Compte rendu é.txt", "é".encode()),
    ]
    transfer, (token,) = send(client, files)
    (recipient,) = _recipient_ids(transfer)
    url = _view(server, token)["archive_url"]
    assert url == f"{_link(server, token)}/archive.zip"

    head = rc.head(url)
    assert head.status_code == 200
    assert head.headers["content-type"] == "application/zip"
    size = int(head.headers["content-length"])

    response = rc.get(url)
    assert response.status_code == 200
    assert len(response.content) == size
    h = response.headers
    day = transfer["created_at"][:10]  # no subject: named after its date
    assert h["content-disposition"].startswith(f"attachment; filename=\"fichiers-{day}.zip\"")
    assert h["x-content-type-options"] == "nosniff"
    assert h["cache-control"] == "no-store"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert names == ["rapport.pdf", "Rapport (2).pdf", "rapport (3).pdf", "vide.txt",
                         "Compte rendu é.txt"]
        for arcname, (_, data) in zip(names, files, strict=True):
            assert archive.read(arcname) == data
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}

    event = _downloaded(server, admin, recipient, (token, "CANARY-ZIP", "rapport"))
    assert event["details"]["archive"] is True
    assert event["details"]["files"] == [f["id"] for f in transfer["files"]]
    assert _downloads(client, transfer["id"]) == [len(files)]  # one per file


def test_zip_uses_up_a_limit_on_every_file(server: Server, client: httpx.Client,
                                           admin: dict[str, Any]) -> None:
    transfer, (token,) = send(client, {"a.txt": b"a", "b.txt": b"b"}, max_downloads=1)
    url = f"{_link(server, token)}/archive.zip"
    assert rc.head(url).status_code == 200  # HEAD does not count
    _no_download_recorded(server, _recipient_ids(transfer)[0])
    assert rc.get(url).status_code == 200
    _downloaded(server, admin, _recipient_ids(transfer)[0], (token,))
    assert_error(rc.get(url), 410, "gone", {"reason": "exhausted"})
    for file in _view(server, token)["files"]:
        assert file["downloads_left"] == 0
        assert_error(rc.get(file["url"]), 410, "gone", {"reason": "exhausted"})


def test_open_archive_size_is_exact_and_zip64_ready(server: Server, client: httpx.Client,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``LinkService.open_archive`` announces the exact size it sends, also
    when every entry needs ZIP64 records (forced here by lowering
    zipstream's limit: a real >4 GiB ZIP is the slow test below)."""
    import zipstream.ng

    files = {"a.bin": os.urandom(5000), "b.bin": os.urandom(MiB + 1), "c.txt": b"c"}
    _, tokens = send(client, files, recipients=2)
    app = in_process(server)
    grants = [ACCESS[t]["X-Coffre-Access"] for t in tokens]
    try:
        name, size, body, _ = app.links.open_archive(tokens[0], grants[0], Context(source="test"))
        data = b"".join(body)
        assert len(data) == size
        assert name.endswith(".zip")
        assert b"PK\x06\x06" not in data  # small: no ZIP64 end record needed

        monkeypatch.setattr(zipstream.ng, "ZIP64_LIMIT", 1000)
        _, size64, body64, _ = app.links.open_archive(tokens[1], grants[1],
                                                      Context(source="test"))
        data64 = b"".join(body64)
    finally:
        app.close()
    assert len(data64) == size64
    assert size64 > size  # the ZIP64 extra fields and end records
    assert b"PK\x06\x06" in data64 and b"PK\x06\x07" in data64  # ZIP64 end record, locator
    with zipfile.ZipFile(io.BytesIO(data64)) as archive:
        assert archive.testzip() is None
        assert {n: archive.read(n) for n in archive.namelist()} == files


# -- passwords ------------------------------------------------------------------------

PASSWORD = "trois petits chats"


def test_password_protected_link(server: Server, client: httpx.Client,
                                 admin: dict[str, Any]) -> None:
    """The password comes on top of the one-time code: the grant records both."""
    transfer, (token, neighbour) = send(client, {"secret.pdf": b"CANARY-PW"}, recipients=2,
                                        password=PASSWORD)
    recipient, _ = _recipient_ids(transfer)
    link = _link(server, token)
    coded = ACCESS[token]  # the code is proved, the password not yet
    opened_before = len(events_for(server.data_dir, "link.opened", recipient))

    # Without any proof: the code first (SEC-29: no file name before it).
    nothing = assert_error(httpx.get(link), 401, "authentication_required")
    assert nothing["details"]["reason"] == "code_required"
    assert "secret.pdf" not in httpx.get(link).text
    required = {"reason": "password_required"}
    assert_error(httpx.get(link, headers=coded), 401, "authentication_required", required)
    assert_error(httpx.get(f"{link}/archive.zip", headers=coded), 401,
                 "authentication_required", required)
    file_id = transfer["files"][0]["id"]
    assert_error(httpx.get(f"{link}/files/{file_id}", headers=coded), 401,
                 "authentication_required", required)
    assert httpx.head(f"{link}/files/{file_id}", headers=coded).status_code == 401
    forged = assert_error(httpx.get(link, headers={"X-Coffre-Access": "forged"}), 401,
                          "authentication_required")
    assert forged["details"]["reason"] == "code_required"
    page = httpx.get(f"{server.url}/t/{token}", headers=coded)
    assert page.status_code == 200
    assert "Ce lien est protégé par un mot de passe" in page.text
    assert "secret.pdf" not in page.text
    # Opening without every proof is recorded as such.
    opens = events_for(server.data_dir, "link.opened", recipient)[opened_before:]
    assert opens and all(e["details"]["proved"] is False for e in opens)

    wrong = httpx.post(f"{link}/unlock", json={"password": "pas le bon"}, headers=coded)
    assert_error(wrong, 401, "authentication_required", {"reason": "wrong_password"})
    failed = one_event(server.data_dir, "link.password_failed", object_type="recipient",
                       object_id=recipient, organisation=admin["organisation_id"], actor=None,
                       outcome="failure", secrets=(token, "pas le bon", PASSWORD))
    assert failed["details"]["failures"] == 1

    unlocked = httpx.post(f"{link}/unlock", json={"password": PASSWORD}, headers=coded)
    assert unlocked.status_code == 200, unlocked.text
    access = unlocked.json()["access"]
    assert access == coded["X-Coffre-Access"]  # the same grant, now with both proofs
    assert unlocked.json()["expires_in"] == 3600
    cookie = unlocked.headers["set-cookie"]
    assert cookie.startswith(f"__Host-coffre-access={access};")
    for attribute in ("HttpOnly", "Path=/", "SameSite=strict", "Secure", "Max-Age=3600"):
        assert attribute in cookie
    assert "Domain" not in cookie
    one_event(server.data_dir, "link.unlocked", object_type="recipient", object_id=recipient,
              organisation=admin["organisation_id"], actor=None,
              secrets=(token, access, PASSWORD))

    # The grant, by header...
    info = _view(server, token, **{"X-Coffre-Access": access})
    response = httpx.get(info["files"][0]["url"], headers={"X-Coffre-Access": access})
    assert response.content == b"CANARY-PW"
    # ... or by cookie (a browser sends it back; httpx keeps Secure cookies for https).
    by_cookie = {"Cookie": f"__Host-coffre-access={access}"}
    assert httpx.get(link, headers=by_cookie).status_code == 200
    assert httpx.get(f"{server.url}/t/{token}", headers=by_cookie).status_code == 200
    assert httpx.get(f"{link}/archive.zip", headers=by_cookie).status_code == 200
    # It opens this link only, not the other recipient's.
    other = assert_error(httpx.get(_link(server, neighbour), headers={"X-Coffre-Access": access}),
                         401, "authentication_required")
    assert other["details"]["reason"] == "code_required"
    # Never in the database in clear.
    stored = sql(server.data_dir, "SELECT token_hash FROM link_access WHERE recipient_id = ?",
                 recipient)
    assert stored == [(hashlib.sha256(access.encode()).hexdigest(),)]


def test_password_is_not_tried_before_the_code(server: Server, client: httpx.Client) -> None:
    """SEC-14: without the mailbox, the password cannot even be guessed at."""
    transfer, (token,) = support.send(client, {"a.txt": b"a"}, password=PASSWORD)
    refused = httpx.post(f"{_link(server, token)}/unlock", json={"password": PASSWORD})
    assert_error(refused, 401, "authentication_required")
    assert refused.json()["error"]["details"]["reason"] == "code_required"
    recipient = _recipient_ids(transfer)[0]
    assert sql(server.data_dir, "SELECT password_failures FROM recipients WHERE id = ?",
               recipient) == [(0,)]
    assert not events_for(server.data_dir, "link.unlocked", recipient)
    # The web form sends the recipient back to the code form.
    form = httpx.post(f"{server.url}/t/{token}/unlock", data={"password": PASSWORD})
    assert form.status_code == 303
    assert form.headers["location"] == f"/t/{token}"


def test_password_lockout(server: Server, client: httpx.Client, admin: dict[str, Any]) -> None:
    transfer, (token, neighbour) = send(client, {"a.txt": b"a"}, recipients=2,
                                        password=PASSWORD)
    recipient, _ = _recipient_ids(transfer)
    link = _link(server, token)
    coded = ACCESS[token]
    for attempt in range(1, ATTEMPTS + 1):
        assert_error(httpx.post(f"{link}/unlock", json={"password": f"essai {attempt}"},
                                headers=coded),
                     401, "authentication_required", {"reason": "wrong_password"})
    locked = httpx.post(f"{link}/unlock", json={"password": PASSWORD}, headers=coded)
    assert_error(locked, 429, "too_many_attempts")
    # The web form says so in French.
    form = httpx.post(f"{server.url}/t/{token}/unlock", data={"password": PASSWORD},
                      headers=coded)
    assert form.status_code == 429
    assert form.headers["content-type"].startswith("text/html")
    assert "Trop de tentatives" in form.text

    failures = events_for(server.data_dir, "link.password_failed", recipient)
    assert [e["details"]["failures"] for e in failures] == list(range(1, ATTEMPTS + 1))
    assert all(e["outcome"] == "failure" and e["source"] == "127.0.0.1" for e in failures)
    locks = events_for(server.data_dir, "link.password_locked", recipient)
    assert len(locks) == 2
    assert all(e["outcome"] == "failure" and PASSWORD not in str(e) for e in locks)
    assert not events_for(server.data_dir, "link.unlocked", recipient)
    # The sender's timeline shows the failures and the lock (SEC-4).
    kinds = [k for (k,) in sql(server.data_dir, "SELECT kind FROM transfer_events WHERE "
                               "recipient_id = ? ORDER BY id", recipient)]
    assert kinds.count("password_failed") == ATTEMPTS
    assert kinds.count("link_locked") == 1
    # Per link: the other recipient may still unlock.
    assert httpx.post(f"{_link(server, neighbour)}/unlock", json={"password": PASSWORD},
                      headers=ACCESS[neighbour]).status_code == 200


def test_unlock_form(server: Server, client: httpx.Client) -> None:
    _, (token,) = send(client, {"a.txt": b"a"}, password=PASSWORD)
    page = f"{server.url}/t/{token}"
    coded = {"Cookie": f"__Host-coffre-access={ACCESS[token]['X-Coffre-Access']}"}
    wrong = httpx.post(f"{page}/unlock", data={"password": "non"}, headers=coded)
    assert wrong.status_code == 401
    assert "Mot de passe incorrect." in wrong.text
    right = httpx.post(f"{page}/unlock", data={"password": PASSWORD}, headers=coded)
    assert right.status_code == 303
    assert right.headers["location"] == f"/t/{token}"
    access = right.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
    shown = httpx.get(page, headers={"Cookie": f"__Host-coffre-access={access}"})
    assert shown.status_code == 200
    assert "a.txt" in shown.text


# -- notice to the sender ----------------------------------------------------------


def test_sender_notified_after_a_full_download(server: Server, client: httpx.Client,
                                               mail: MailCatcher,
                                               admin: dict[str, Any]) -> None:
    transfer, (token,) = send(client, {"a.txt": b"CANARY-NOTICE"}, subject="Bilan",
                              notify_on_download=True)
    address = transfer["recipients"][0]["email"]
    (file,) = _view(server, token)["files"]
    assert rc.head(file["url"]).status_code == 200
    assert rc.get(file["url"], headers={"Range": "bytes=0-3"}).status_code == 206
    assert rc.get(file["url"]).status_code == 200
    _downloaded(server, admin, transfer["recipients"][0]["id"], (token,))

    deadline = time.monotonic() + 15
    notices: list[Any] = []
    while not notices and time.monotonic() < deadline:
        notices = [m for m in mail.to(ADMIN_EMAIL, timeout=1) if address in m["Subject"]]
    assert len(notices) == 1
    text = notices[0].get_body(preferencelist=("plain",)).get_content()
    assert address in text
    assert "Bilan" in text
    assert token not in text
    assert "CANARY" not in text


# -- more than 4 GiB (slow) -------------------------------------------------------------


@pytest.mark.slow
def test_zip64_archive_over_4_gib(server: Server, client: httpx.Client,
                                  tmp_path: Path) -> None:
    size = 4 * (1 << 30) + 100 * MiB
    chunk = 64 * MiB
    created = client.post("/api/v1/uploads/", headers={
        **TUS, "Upload-Length": str(size),
        "Upload-Metadata": "filename " + base64.b64encode(b"zeros.bin").decode()})
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    zeros = bytes(chunk)
    offset = 0
    while offset < size:
        piece = zeros[: min(chunk, size - offset)]
        patched = client.patch(location, content=piece, timeout=300, headers={
            **TUS, "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream"})
        assert patched.status_code == 204, patched.text
        offset = int(patched.headers["upload-offset"])
    upload_id = location.rstrip("/").rsplit("/", 1)[-1]
    small = upload_bytes(client, b"petit", "petit.txt")
    response = client.post("/api/v1/transfers", json={
        "files": [upload_id, small], "recipients": ["gros@exemple.fr"]})
    assert response.status_code == 201, response.text
    token = response.json()["links"]["gros@exemple.fr"].rsplit("/", 1)[-1]
    ACCESS[token] = opened(server, _RUN["mail"], response.json(), token)

    target = tmp_path / "archive.zip"
    with rc.stream("GET", f"{_link(server, token)}/archive.zip", timeout=600) as streamed:
        assert streamed.status_code == 200
        expected = int(streamed.headers["content-length"])
        with target.open("wb") as out:
            for block in streamed.iter_raw(8 * MiB):
                out.write(block)
    assert target.stat().st_size == expected
    # Constant memory: the server never held the file or the archive.
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status")
    if status.exists():
        peak_kib = int(next(line.split()[1] for line in status.read_text().splitlines()
                            if line.startswith("VmHWM:")))
        assert peak_kib < 1024 * 1024, f"server peak RSS {peak_kib} KiB"
    try:
        with zipfile.ZipFile(target) as archive:
            infos = {i.filename: i for i in archive.infolist()}
            assert infos["zeros.bin"].file_size == size
            assert infos["petit.txt"].header_offset > 0xFFFFFFFF  # found through ZIP64
            assert archive.read("petit.txt") == b"petit"
            assert archive.testzip() is None
    finally:  # 2 x 4 GiB on disk otherwise
        target.unlink()
        client.delete(f"/api/v1/transfers/{response.json()['id']}")


def test_parallel_downloads_cannot_pass_a_one_time_limit(server: Server,
                                                         client: httpx.Client) -> None:
    """Two full GETs at once on a max_downloads=1 link: one wins, one gets 410."""
    data = os.urandom(6 * 1024 * 1024)
    _, (token,) = send(client, {"unique.bin": data}, max_downloads=1)
    info = rc.get(f"{server.url}/api/v1/links/{token}").json()
    url = info["files"][0]["url"]
    with httpx.Client(headers=ACCESS[token]) as a, httpx.Client(headers=ACCESS[token]) as b:
        first = a.stream("GET", url)
        response = first.__enter__()
        assert response.status_code == 200
        second = b.get(url)
        assert second.status_code == 410
        assert second.json()["error"]["details"]["reason"] == "exhausted"
        assert response.read() == data
        first.__exit__(None, None, None)
    assert rc.get(url).status_code == 410


def test_ranges_cannot_get_around_a_one_time_limit(server: Server,
                                                   client: httpx.Client) -> None:
    """Fetch a one-time file as two ranges: one download, then nothing."""
    content = os.urandom(3000)
    _, (token,) = send(client, {"cr.pdf": content}, max_downloads=1)
    url = _view(server, token)["files"][0]["url"]
    first = rc.get(url, headers={"Range": "bytes=0-2998"})
    second = rc.get(url, headers={"Range": "bytes=2999-"})
    assert first.content + second.content == content
    again = _until(lambda: rc.get(url, headers={"Range": "bytes=0-2998"}), 410)
    assert_error(again, 410, "gone", {"reason": "exhausted"})


@pytest.mark.parametrize("size", [3000, 3 * MiB + 5])
def test_overlapping_ranges_cannot_get_around_a_one_time_limit(
        server: Server, client: httpx.Client, admin: dict[str, Any], size: int) -> None:
    """The review's attack: ``Range: bytes=0-(size-2)`` again and again
    never covers the file; the bytes it delivers use up the link instead."""
    content = os.urandom(size)
    transfer, (token,) = send(client, {"ordonnance.pdf": content}, max_downloads=1)
    (recipient,) = _recipient_ids(transfer)
    (file,) = _view(server, token)["files"]
    attack = {"Range": f"bytes=0-{size - 2}"}
    first = rc.get(file["url"], headers=attack)
    assert first.status_code == 206
    assert first.content == content[:-1]
    answers = []
    for _ in range(5):
        # Once the first response is accounted for (right after its last byte).
        answers.append(_until(lambda: rc.get(file["url"], headers=attack), 410).status_code)
    assert answers == [410] * 5
    refused = rc.get(file["url"], headers=attack)
    assert_error(refused, 410, "gone", {"reason": "exhausted"})
    assert "resume" in refused.json()["error"]["message"]
    assert rc.head(file["url"], headers=attack).status_code == 410
    assert _view(server, token)["files"][0]["downloads_left"] == 0
    # The link delivered the file once, less a byte: not a second time.
    sent = sum(e["details"]["sent"] for e in events_for(server.data_dir, "transfer.read",
                                                         recipient))
    assert sent == size - 1
    # A browser following the link gets a French page, not JSON.
    page = rc.get(file["url"], headers={**attack, "Sec-Fetch-Mode": "navigate",
                                        "Accept": "text/html"})
    assert page.status_code == 410
    assert page.headers["content-type"].startswith("text/html")
    assert "Limite atteinte" in page.text
    # The sender sees what the link sent...
    shown = client.get(f"/api/v1/transfers/{transfer['id']}").json()["recipients"][0]
    assert (shown["downloads"], shown["bytes_sent"]) == (0, size - 1)
    # ... and, with the missing byte, the download counts.
    last = rc.get(file["url"], headers={"Range": f"bytes={size - 1}-"})
    assert last.content == content[-1:]
    _downloaded(server, admin, recipient, (token,))
    assert _downloads(client, transfer["id"]) == [1]
    shown = client.get(f"/api/v1/transfers/{transfer['id']}").json()["recipients"][0]
    assert shown["bytes_sent"] == size


# -- every read of a file's bytes is audited, one event per response -------------------


def _owner_events(server: Server, file_id: str) -> list[dict[str, Any]]:
    return (events_for(server.data_dir, "transfer.owner_read", file_id)
            + events_for(server.data_dir, "transfer.owner_downloaded", file_id))


def test_owner_reads_leave_one_event_per_response(server: Server, client: httpx.Client,
                                                  token: str, admin: dict[str, Any]) -> None:
    """SEC-29: a stolen session copying a file in ranges, or cutting its
    download short, leaves a trace of every byte it got."""
    content = os.urandom(40 * MiB)
    transfer, _ = send(client, {"irm.dcm": content})
    file_id = transfer["files"][0]["id"]
    url = f"{server.url}/api/v1/transfers/{transfer['id']}/files/{file_id}"
    auth = {"Authorization": f"Bearer {token}"}
    half = len(content) // 2

    first = httpx.get(url, headers={**auth, "Range": f"bytes=0-{half - 1}"}, timeout=60)
    second = httpx.get(url, headers={**auth, "Range": f"bytes={half}-"}, timeout=60)
    assert first.content + second.content == content
    assert httpx.head(url, headers=auth).status_code == 200  # no bytes: no event
    ranged = wait_events_for(server.data_dir, "transfer.owner_read", file_id, 2)
    assert len(ranged) == 2
    for event, (start, end) in zip(ranged, [(0, half), (half, len(content))], strict=True):
        assert event["actor"] == admin["id"]
        assert event["object"] == {"type": "file", "id": file_id}
        assert event["organisation"] == admin["organisation_id"]
        assert event["outcome"] == "success" and event["source"] == "127.0.0.1"
        assert event["details"] == {"transfer": transfer["id"], "size": len(content),
                                    "start": start, "end": end, "sent": end - start,
                                    "complete": True}

    # Cut short: one event, with the bytes that went out.
    parts = httpx.URL(url)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.connect((parts.host, parts.port))
        sock.sendall(f"GET {parts.raw_path.decode()} HTTP/1.1\r\nHost: {parts.host}\r\n"
                     f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while len(received) < 256 * 1024:
            received += sock.recv(64 * 1024)
    assert received.startswith(b"HTTP/1.1 200 ")
    got = len(_body_of(received))
    events = wait_events_for(server.data_dir, "transfer.owner_read", file_id, 3)
    assert len(events) == 3
    aborted = events[2]
    assert aborted["outcome"] == "failure"
    assert aborted["actor"] == admin["id"]
    assert (aborted["details"]["start"], aborted["details"]["end"]) == (0, len(content))
    assert aborted["details"]["complete"] is False
    assert got <= aborted["details"]["sent"] < len(content)

    whole = httpx.get(url, headers=auth, timeout=60)
    assert whole.content == content
    done = one_event(server.data_dir, "transfer.owner_downloaded", object_type="file",
                     object_id=file_id, organisation=admin["organisation_id"],
                     actor=admin["id"], secrets=(token, "irm.dcm"), wait=True)
    assert done["details"]["sent"] == len(content) and done["details"]["complete"] is True
    time.sleep(0.3)
    assert len(_owner_events(server, file_id)) == 4  # one per response that sent bytes
    # ...and one before its first byte (HEAD sends none: no event).
    starts = events_for(server.data_dir, "transfer.owner_read_started", file_id)
    assert [(e["details"]["start"], e["details"]["end"]) for e in starts] == [
        (0, half), (half, len(content)), (0, len(content)), (0, len(content))]
    assert all(e["actor"] == admin["id"] for e in starts)
