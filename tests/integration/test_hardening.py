"""Hostile input found in review: oversized bodies, forged Host headers,
header injection through the subject, strict recipient addresses."""

from __future__ import annotations

import httpx

from tests import backends
from tests.conftest import MailCatcher, Server
from tests.integration.flows import TUS, sql, upload_bytes


def test_oversized_bodies_are_refused_before_reading(server: Server) -> None:
    big = b"x" * (2 << 20)
    for path in ["/api/v1/auth/token", "/api/v1/setup", "/t/" + "a" * 43 + "/unlock"]:
        r = httpx.post(server.url + path, content=big,
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 413, path
        assert r.json()["error"]["code"] == "too_large"


def test_chunked_oversized_body_is_refused(server: Server) -> None:
    def body():  # no Content-Length: chunked
        for _ in range(40):
            yield b"y" * 65536

    r = httpx.post(server.url + "/api/v1/auth/token", content=body(),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_forms_accept_only_urlencoded(server: Server) -> None:
    r = httpx.post(f"{server.url}/t/{'a' * 43}/unlock", files={"f": ("x", b"data")})
    assert r.status_code == 415


def test_forged_host_does_not_steer_locations(server: Server, client: httpx.Client) -> None:
    # A foreign Host is refused outright (issue 15, finding 14: DNS rebinding).
    r = client.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "3",
                                                  "Host": "evil.example"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host"
    # Another name of this server still gets the configured URL back.
    r = client.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "3",
                                                  "Host": f"localhost:{server.port}"})
    assert r.status_code == 201
    assert r.headers["location"].startswith(server.url + "/api/v1/uploads/")


def test_subject_with_newlines_is_refused_and_mail_still_flows(
    server: Server, client: httpx.Client, mail: MailCatcher
) -> None:
    upload = upload_bytes(client, b"abc")
    bad = client.post("/api/v1/transfers", json={
        "files": [upload], "recipients": ["p@exemple.fr"],
        "subject": "Résultats\r\nBcc: spy@evil.example"})
    assert bad.status_code == 400
    good = client.post("/api/v1/transfers", json={"files": [upload],
                                                   "recipients": ["p@exemple.fr"]})
    assert good.status_code == 201
    assert mail.to("p@exemple.fr")
    assert not mail.to("spy@evil.example", timeout=1)


def test_recipient_addresses_are_strict(client: httpx.Client) -> None:
    upload = upload_bytes(client, b"abc")
    for address in ["dr.martin:other@elsewhere.example", "a@b.fr (x)", "<a@b.fr>",
                    "a@b.fr\x00", "\"q\"@b.fr", "a@-b.fr"]:
        r = client.post("/api/v1/transfers", json={"files": [upload], "recipients": [address]})
        assert r.status_code == 400, address


def test_patch_on_a_completed_upload_is_a_conflict_not_an_error(client: httpx.Client) -> None:
    upload = upload_bytes(client, b"complete")
    url = f"/api/v1/uploads/{upload}"
    done = client.patch(url, content=b"", headers={
        **TUS, "Upload-Offset": "8", "Content-Type": "application/offset+octet-stream"})
    assert done.status_code == 204 and done.headers["upload-offset"] == "8"
    more = client.patch(url, content=b"x", headers={
        **TUS, "Upload-Offset": "8", "Content-Type": "application/offset+octet-stream"})
    assert more.status_code == 409
    assert more.json()["error"]["code"] == "conflict"


def test_shredded_keys_do_not_linger_in_the_wal(server: Server, client: httpx.Client) -> None:
    upload = upload_bytes(client, b"x" * 5000, "cr.pdf")
    made = client.post("/api/v1/transfers", json={"files": [upload],
                                                   "recipients": ["p@exemple.fr"]})
    transfer = made.json()
    ((wrapped,),) = sql(server.data_dir, "SELECT b.wrapped_key FROM blobs b JOIN uploads u "
                        "ON u.blob_id = b.id WHERE u.id = ?", upload)
    assert client.delete(f"/api/v1/transfers/{transfer['id']}").status_code == 204
    # SQLite: the database file and its WAL; PostgreSQL: a dump of the database.
    assert wrapped not in backends.database_bytes(server.data_dir)
