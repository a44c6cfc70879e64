"""Transfers through the HTTP API of a real server: create (and every way to
get it wrong), personal links by mail, list/show/revoke/extend/delete,
expiry, the purge job's crypto-shredding, and isolation between
organisations. Each change is checked for exactly one complete audit
event (SEC-29) free of tokens and content (SEC-30).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests import backends
from tests.conftest import MailCatcher, Server, login
from tests.integration.flows import TUS, audit_events, link_token, sql, upload_bytes
from tests.integration.support import (
    api_client,
    assert_error,
    blob_files,
    events_for,
    expire,
    module_server,
    new_address,
    one_event,
    opened,
    other_organisation_admin,
    send,
    wait_events_for,
)

# -- one server for the module ----------------------------------------------------

mail, server, token, client, admin = module_server("transfers")


@pytest.fixture(scope="module")
def other(server: Server) -> Iterator[httpx.Client]:
    """The administrator of another organisation."""
    with api_client(server, other_organisation_admin(server)) as c:
        yield c


def _link(server: Server, token: str) -> str:
    return f"{server.url}/api/v1/links/{token}"


def _recipient_ids(transfer: dict[str, Any]) -> list[str]:
    return [r["id"] for r in transfer["recipients"]]


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _transfer_files(server: Server, transfer_id: str) -> list[tuple[str, Any, Any]]:
    """(blob id, wrapped key, shredded at) of each file of a transfer."""
    return [
        (r[0], r[1], r[2])
        for r in sql(server.data_dir,
                     "SELECT b.id, b.wrapped_key, b.shredded_at FROM transfer_files f "
                     "JOIN blobs b ON b.id = f.blob_id WHERE f.transfer_id = ? "
                     "ORDER BY f.position", transfer_id)
    ]


# -- create ---------------------------------------------------------------------------


def test_create_rejects_invalid_transfers(server: Server, client: httpx.Client,
                                          other: httpx.Client) -> None:
    good = upload_bytes(client, b"contenu", "ok.txt")
    created_before = len(audit_events(server.data_dir, "transfer.created"))

    def create(**body: Any) -> httpx.Response:
        return client.post("/api/v1/transfers",
                           json={"files": [good], "recipients": ["a@exemple.fr"], **body})

    # Recipients: none, not an address, a display name smuggled in.
    error = assert_error(create(recipients=[]), 400, "invalid_input")
    assert [p["field"] for p in error["details"]["problems"]] == ["recipients"]
    for bad in (["pas-une-adresse"], ["a@exemple.fr", "Eve <eve@exemple.fr>"], ["a@b"],
                ["a@exemple.fr\r\nBcc: eve@exemple.fr"]):
        assert_error(create(recipients=bad), 400, "invalid_input", {"field": "email"})
    # Files: none, the same twice, unknown, someone else's, incomplete.
    error = assert_error(create(files=[]), 400, "invalid_input")
    assert [p["field"] for p in error["details"]["problems"]] == ["files"]
    assert_error(create(files=[good, good]), 400, "invalid_input", {"field": "files"})
    unknown = "0" * 32
    assert_error(create(files=[unknown]), 404, "not_found", {"upload": unknown})
    theirs = upload_bytes(other, b"leur fichier", "autre.txt")
    assert_error(create(files=[good, theirs]), 404, "not_found", {"upload": theirs})
    started = client.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "10"})
    incomplete = started.headers["location"].rstrip("/").rsplit("/", 1)[-1]
    patched = client.patch(started.headers["location"], content=b"12345", headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert patched.status_code == 204
    assert_error(create(files=[incomplete]), 409, "conflict", {"upload": incomplete})
    # Options out of range.
    for expiry in ("0d", "0h", "13m", "400d", "53w", "demain", "7", "-1d"):
        assert_error(create(expires_in=expiry), 400, "invalid_input", {"field": "expires_in"})
    for limit in (0, -1, 1001):
        error = assert_error(create(max_downloads=limit), 400, "invalid_input")
        assert error["details"]["problems"][0]["field"] == "max_downloads"
    assert_error(create(password="abc"), 400, "invalid_input", {"field": "password"})
    assert_error(create(message="x" * 10_001), 400, "invalid_input")
    assert_error(create(unexpected=True), 400, "invalid_input")

    assert len(audit_events(server.data_dir, "transfer.created")) == created_before
    # Nothing was half-done: the good upload (listed with the foreign one
    # above) is still free, and is taken exactly once.
    ok = create(expires_in="12m")
    assert ok.status_code == 201, ok.text
    assert_error(create(), 409, "conflict", {"upload": good})
    assert len(audit_events(server.data_dir, "transfer.created")) == created_before + 1


def test_each_recipient_gets_a_personal_link_by_mail(server: Server, client: httpx.Client,
                                                     mail: MailCatcher,
                                                     admin: dict[str, Any]) -> None:
    message = "Résultats de l'IRM de M. Canari-7f3a2b, à conserver."
    name = "irm-canari-9d2e41.pdf"
    content = b"CANARY-CONTENT-" + os.urandom(16).hex().encode()
    first, second = "Alice.Martin@Exemple.FR", new_address("bob")
    ids = [upload_bytes(client, content, name)]
    response = client.post("/api/v1/transfers", json={
        "files": ids, "recipients": [first, second, first.lower()],
        "subject": "Votre IRM", "message": message, "expires_in": "7d"})
    assert response.status_code == 201, response.text
    transfer = response.json()
    links = transfer["links"]
    # Addresses normalised and deduplicated; one link each.
    assert set(links) == {"alice.martin@exemple.fr", second}
    assert [r["email"] for r in transfer["recipients"]] == ["alice.martin@exemple.fr", second]
    tokens = {address: link_token(link) for address, link in links.items()}
    assert len(set(tokens.values())) == 2
    for address, link in links.items():
        token = tokens[address]
        # 256 bits from the CSPRNG, base64url without padding.
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
        assert len(base64.urlsafe_b64decode(token + "=")) == 32
        assert link == f"{server.url}/t/{token}"
        # The mail, through real SMTP, carries this recipient's own link.
        received = mail.to(address)
        assert len(received) == 1
        assert received[0]["Subject"] == "[Coffre] Votre IRM"
        text = received[0].get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        assert message in text
        assert mail.link_for(address) == link
        assert all(t not in text for a, t in tokens.items() if a != address)
        access = opened(server, mail, transfer, token)
        assert httpx.get(_link(server, token), headers=access).status_code == 200

    # Only hashes are stored; no token, message, name or content in clear.
    stored = {r[0] for r in sql(server.data_dir,
                               "SELECT token_hash FROM recipients WHERE transfer_id = ?",
                               transfer["id"])}
    assert stored == {hashlib.sha256(t.encode()).hexdigest() for t in tokens.values()}
    # SQLite: a dump and the raw files (WAL included); PostgreSQL: pg_dump's.
    raw = backends.database_bytes(server.data_dir)
    dump = raw.decode("latin-1")
    if backends.profile() == "embedded":
        con = sqlite3.connect(server.data_dir / "coffre.db")
        try:
            dump = "\n".join(con.iterdump())
        finally:
            con.close()
    for secret in [*tokens.values(), message, "Canari-7f3a2b", name]:
        assert secret not in dump
        assert secret.encode() not in raw
    assert content not in raw
    assert all(t not in server.log() for t in tokens.values())  # access log redacts links

    event = one_event(server.data_dir, "transfer.created", object_type="transfer",
                      object_id=transfer["id"], organisation=admin["organisation_id"],
                      actor=admin["id"],
                      secrets=(*tokens.values(), message, name, "CANARY", "alice.martin"))
    assert event["details"]["files"] == 1
    assert event["details"]["recipients"] == 2
    assert event["details"]["bytes"] == len(content)
    assert event["details"]["password"] is False


def test_options_are_stored_and_password_hashed(server: Server, client: httpx.Client,
                                                admin: dict[str, Any]) -> None:
    password = "sesame-ouvre-toi"
    transfer, _ = send(client, {"a.txt": b"a"}, expires_in="permanent", max_downloads=3,
                       password=password, notify_on_download=True)
    assert transfer["expires_at"] is None
    assert transfer["max_downloads"] == 3
    assert transfer["password_protected"] is True
    assert transfer["notify_on_download"] is True
    (stored,) = sql(server.data_dir, "SELECT password_hash FROM transfers WHERE id = ?",
                    transfer["id"])[0]
    assert stored.startswith("$argon2id$")
    assert password not in stored
    event = one_event(server.data_dir, "transfer.created", object_type="transfer",
                      object_id=transfer["id"], organisation=admin["organisation_id"],
                      actor=admin["id"], secrets=(password,))
    assert event["details"]["password"] is True
    assert event["details"]["expires_at"] is None
    assert event["details"]["max_downloads"] == 3


# -- read -----------------------------------------------------------------------------


def test_list_and_show(client: httpx.Client) -> None:
    transfer, _ = send(client, {"a.txt": b"aaa", "b.txt": b"bb"}, recipients=2,
                       subject="Sujet", message="Bonjour", expires_in="2w")
    assert transfer["status"] == "active"
    assert [(f["name"], f["size"]) for f in transfer["files"]] == [("a.txt", 3), ("b.txt", 2)]
    assert transfer["files"][0]["sha256"] == hashlib.sha256(b"aaa").hexdigest()
    assert all(r["downloads"] == 0 and r["first_opened_at"] is None
               for r in transfer["recipients"])
    expected = datetime.now(UTC) + timedelta(weeks=2)
    assert abs(_parse_time(transfer["expires_at"]) - expected) < timedelta(minutes=1)

    shown = client.get(f"/api/v1/transfers/{transfer['id']}")
    assert shown.status_code == 200
    body = shown.json()
    assert body["links"] is None  # links exist in clear only in the creation answer
    assert {k: v for k, v in body.items() if k != "links"} == {
        k: v for k, v in transfer.items() if k != "links"}

    listed = client.get("/api/v1/transfers")
    assert listed.status_code == 200
    mine = [t for t in listed.json() if t["id"] == transfer["id"]]
    assert len(mine) == 1
    assert mine[0]["links"] is None
    assert mine[0]["subject"] == "Sujet"


# -- revoke, extend, delete ---------------------------------------------------------


def test_revoke(server: Server, client: httpx.Client, mail: MailCatcher,
                admin: dict[str, Any]) -> None:
    transfer, (token,) = send(client, {"a.txt": b"a"})
    view = httpx.get(_link(server, token), headers=opened(server, mail, transfer, token))
    assert view.status_code == 200
    file_url = view.json()["files"][0]["url"]

    revoked = client.post(f"/api/v1/transfers/{transfer['id']}/revoke")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    again = client.post(f"/api/v1/transfers/{transfer['id']}/revoke")
    assert again.status_code == 200  # idempotent, and recorded once
    one_event(server.data_dir, "transfer.revoked", object_type="transfer",
              object_id=transfer["id"], organisation=admin["organisation_id"],
              actor=admin["id"], secrets=(token,))

    gone = {"reason": "revoked"}
    assert_error(httpx.get(_link(server, token)), 410, "gone", gone)
    assert_error(httpx.get(file_url), 410, "gone", gone)
    assert_error(httpx.get(f"{_link(server, token)}/archive.zip"), 410, "gone", gone)
    assert_error(httpx.post(f"{_link(server, token)}/unlock", json={"password": "x"}),
                 410, "gone", gone)
    page = httpx.get(f"{server.url}/t/{token}")
    assert page.status_code == 410
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert "Lien révoqué" in page.text
    assert "a révoqué ce transfert" in page.text


def test_revoke_one_recipient(server: Server, client: httpx.Client, mail: MailCatcher,
                              admin: dict[str, Any], other: httpx.Client) -> None:
    """Issue 16: one recipient's link closes (410, "revoked"); the other
    recipient's keeps working; recorded once, seen on the timeline."""
    transfer, (gone_token, kept_token) = send(client, {"a.txt": b"a"}, recipients=2)
    tid = transfer["id"]
    gone_id, kept_id = _recipient_ids(transfer)
    kept_access = opened(server, mail, transfer, kept_token)
    url = f"/api/v1/transfers/{tid}/recipients/{gone_id}/revoke"

    # Another organisation, or a recipient of another transfer: not found.
    unknown = assert_error(other.post(f"/api/v1/transfers/{'f' * 32}/recipients/x/revoke"),
                           404, "not_found")
    assert assert_error(other.post(url), 404, "not_found") == unknown
    elsewhere, _ = send(client, {"b.txt": b"b"})
    assert_error(client.post(f"/api/v1/transfers/{elsewhere['id']}/recipients/{gone_id}/revoke"),
                 404, "not_found")
    assert not events_for(server.data_dir, "transfer.recipient_revoked", gone_id)

    revoked = client.post(url)
    assert revoked.status_code == 200, revoked.text
    shown = {r["id"]: r for r in revoked.json()["recipients"]}
    assert shown[gone_id]["state"] == "revoked" and shown[gone_id]["revoked_at"]
    assert shown[kept_id]["state"] != "revoked" and shown[kept_id]["revoked_at"] is None
    assert revoked.json()["status"] == "active"
    assert client.post(url).status_code == 200  # idempotent, and recorded once
    event = one_event(server.data_dir, "transfer.recipient_revoked", object_type="recipient",
                      object_id=gone_id, organisation=admin["organisation_id"],
                      actor=admin["id"], secrets=(gone_token, kept_token))
    assert event["details"]["transfer"] == tid

    assert_error(httpx.get(_link(server, gone_token)), 410, "gone", {"reason": "revoked"})
    assert_error(httpx.post(f"{_link(server, gone_token)}/code"), 410, "gone",
                 {"reason": "revoked"})
    page = httpx.get(f"{server.url}/t/{gone_token}")
    assert page.status_code == 410 and "Lien révoqué" in page.text
    assert httpx.get(_link(server, kept_token), headers=kept_access).status_code == 200
    steps = client.get(f"/api/v1/transfers/{tid}/events").json()
    assert [s["kind"] for s in steps if s["recipient_id"] == gone_id][-1] == "recipient_revoked"


def test_a_revoked_transfer_cannot_be_extended(server: Server, client: httpx.Client) -> None:
    transfer, _ = send(client, {"a.txt": b"a"}, expires_in="1d")
    assert client.post(f"/api/v1/transfers/{transfer['id']}/revoke").status_code == 200
    assert_error(client.post(f"/api/v1/transfers/{transfer['id']}/extend",
                             json={"expires_in": "2w"}), 409, "conflict", {"reason": "revoked"})
    shown = client.get(f"/api/v1/transfers/{transfer['id']}").json()
    assert shown["expires_at"] == transfer["expires_at"]
    assert not events_for(server.data_dir, "transfer.extended", transfer["id"])


def test_the_zip_is_named_after_the_subject_and_downloads_count_as_made(
        server: Server, client: httpx.Client, mail: MailCatcher) -> None:
    transfer, (token,) = send(client, {"a.txt": b"a" * 10, "b.txt": b"b" * 20},
                              subject="Résultats IRM / genou: été")
    access = opened(server, mail, transfer, token)
    archive = httpx.get(f"{_link(server, token)}/archive.zip", headers=access)
    assert archive.status_code == 200
    assert archive.headers["content-disposition"] == (
        "attachment; filename=\"Resultats IRM - genou_ ete.zip\"; "
        "filename*=UTF-8''R%C3%A9sultats%20IRM%20-%20genou_%20%C3%A9t%C3%A9.zip")
    for file in transfer["files"]:
        got = httpx.get(f"{_link(server, token)}/files/{file['id']}", headers=access)
        assert got.status_code == 200
    wait_events_for(server.data_dir, "transfer.downloaded", _recipient_ids(transfer)[0], 3)
    (shown,) = client.get(f"/api/v1/transfers/{transfer['id']}").json()["recipients"]
    # Three downloads as the recipient made them; four files delivered in full.
    assert (shown["times_downloaded"], shown["downloads"]) == (3, 4)
    assert shown["state"] == "file_downloaded"

    untitled, (token,) = send(client, {"a.txt": b"a"})
    access = opened(server, mail, untitled, token)
    head = httpx.head(f"{_link(server, token)}/archive.zip", headers=access)
    day = untitled["created_at"][:10]
    assert head.headers["content-disposition"] == (
        f"attachment; filename=\"fichiers-{day}.zip\"; filename*=UTF-8''fichiers-{day}.zip")


def test_extend(server: Server, client: httpx.Client, mail: MailCatcher,
                admin: dict[str, Any]) -> None:
    transfer, (token,) = send(client, {"a.txt": b"a"}, expires_in="1d")
    access = opened(server, mail, transfer, token)
    url = f"/api/v1/transfers/{transfer['id']}/extend"

    extended = client.post(url, json={"expires_in": "2w"})
    assert extended.status_code == 200
    new_expiry = _parse_time(extended.json()["expires_at"])
    assert abs(new_expiry - (datetime.now(UTC) + timedelta(weeks=2))) < timedelta(minutes=1)
    event = one_event(server.data_dir, "transfer.extended", object_type="transfer",
                      object_id=transfer["id"], organisation=admin["organisation_id"],
                      actor=admin["id"], secrets=(token,))
    assert _parse_time(event["details"]["expires_at"]) == new_expiry

    for bad in ("0d", "13m", "jamais-de-la-vie"):
        assert_error(client.post(url, json={"expires_in": bad}), 400, "invalid_input",
                     {"field": "expires_in"})
    assert_error(client.post(url, json={}), 400, "invalid_input")
    assert len(events_for(server.data_dir, "transfer.extended", transfer["id"])) == 1

    # An expired (not yet purged) transfer comes back to life when extended.
    expire(server, transfer["id"])
    assert_error(httpx.get(_link(server, token)), 410, "gone", {"reason": "expired"})
    assert client.post(url, json={"expires_in": "1d"}).status_code == 200
    assert httpx.get(_link(server, token), headers=access).status_code == 200

    permanent = client.post(url, json={"expires_in": "permanent"})
    assert permanent.status_code == 200
    assert permanent.json()["expires_at"] is None
    events = events_for(server.data_dir, "transfer.extended", transfer["id"])
    assert len(events) == 3
    assert events[-1]["details"]["expires_at"] is None


def test_delete_crypto_shreds(server: Server, client: httpx.Client,
                              admin: dict[str, Any]) -> None:
    content = b"CANARY-DELETE-" + os.urandom(3000)
    transfer, (token,) = send(client, {"x.bin": content, "y.bin": b"y"}, message="secret")
    blobs = _transfer_files(server, transfer["id"])
    assert len(blobs) == 2
    assert {b[0] for b in blobs} <= blob_files(server)
    assert all(b[1] is not None for b in blobs)

    deleted = client.delete(f"/api/v1/transfers/{transfer['id']}")
    assert deleted.status_code == 204
    assert not {b[0] for b in blobs} & blob_files(server)
    assert all(b[1] is None and b[2] is not None for b in _transfer_files(server, transfer["id"]))
    (message, subject) = sql(server.data_dir,
                             "SELECT message_sealed, subject_sealed FROM transfers WHERE id = ?",
                             transfer["id"])[0]
    assert message is None
    assert subject is None
    event = one_event(server.data_dir, "transfer.deleted", object_type="transfer",
                      object_id=transfer["id"], organisation=admin["organisation_id"],
                      actor=admin["id"], secrets=(token, "CANARY", "x.bin"))
    assert event["details"]["files"] == 2

    shown = client.get(f"/api/v1/transfers/{transfer['id']}").json()
    assert shown["status"] == "deleted"
    assert shown["files"] == []
    assert shown["message"] == ""
    assert transfer["id"] not in [t["id"] for t in client.get("/api/v1/transfers").json()]
    tid = transfer["id"]
    assert_error(client.delete(f"/api/v1/transfers/{tid}"), 410, "gone")
    assert_error(client.post(f"/api/v1/transfers/{tid}/revoke"), 410, "gone")
    assert_error(client.post(f"/api/v1/transfers/{tid}/extend", json={"expires_in": "1d"}),
                 410, "gone")
    assert len(events_for(server.data_dir, "transfer.deleted", tid)) == 1
    assert_error(httpx.get(_link(server, token)), 410, "gone", {"reason": "deleted"})
    page = httpx.get(f"{server.url}/t/{token}")
    assert page.status_code == 410
    assert "Transfert supprimé" in page.text


# -- expiry and purge -----------------------------------------------------------------


def test_expired_link_answers_410(server: Server, client: httpx.Client,
                                  mail: MailCatcher) -> None:
    transfer, (token,) = send(client, {"a.txt": b"a"})
    access = opened(server, mail, transfer, token)
    file_url = httpx.get(_link(server, token), headers=access).json()["files"][0]["url"]
    expire(server, transfer["id"])
    gone = {"reason": "expired"}
    assert_error(httpx.get(_link(server, token)), 410, "gone", gone)
    assert_error(httpx.get(file_url, headers=access), 410, "gone", gone)
    assert httpx.head(file_url, headers=access).status_code == 410
    page = httpx.get(f"{server.url}/t/{token}")
    assert page.status_code == 410
    assert "Lien expiré" in page.text
    assert client.get(f"/api/v1/transfers/{transfer['id']}").json()["status"] == "expired"


def test_purge_crypto_shreds_expired_transfers(server: Server, client: httpx.Client,
                                               mail: MailCatcher,
                                               admin: dict[str, Any]) -> None:
    keep, (keep_token,) = send(client, {"garde.txt": b"reste"}, expires_in="1d")
    transfer, (token,) = send(client, {"x.bin": os.urandom(5000), "y.bin": b"CANARY-PURGE"})
    doomed = _transfer_files(server, transfer["id"])
    kept = _transfer_files(server, keep["id"])
    expire(server, transfer["id"])

    done = server.coffre("purge")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "transfert(s)" in done.stdout

    on_disk = blob_files(server)
    assert not {b[0] for b in doomed} & on_disk
    assert {b[0] for b in kept} <= on_disk
    assert all(b[1] is None and b[2] is not None for b in _transfer_files(server, transfer["id"]))
    assert all(b[1] is not None for b in _transfer_files(server, keep["id"]))
    # A job, not a request: no actor, no source; the organisation and object are set.
    event = one_event(server.data_dir, "transfer.purged", object_type="transfer",
                      object_id=transfer["id"], organisation=admin["organisation_id"],
                      actor=None, source=None, secrets=(token, "CANARY", "x.bin"))
    assert event["details"]["data_keys_destroyed"] == 2
    assert event["details"]["reason"] == "expired"
    assert not events_for(server.data_dir, "transfer.purged", keep["id"])

    assert_error(httpx.get(_link(server, token)), 410, "gone", {"reason": "deleted"})
    assert client.get(f"/api/v1/transfers/{transfer['id']}").json()["status"] == "deleted"
    access = opened(server, mail, keep, keep_token)
    assert httpx.get(_link(server, keep_token), headers=access).status_code == 200

    again = server.coffre("purge")
    assert again.returncode == 0, again.stderr
    assert len(events_for(server.data_dir, "transfer.purged", transfer["id"])) == 1


# -- organisations --------------------------------------------------------------------


def test_other_organisation_cannot_see_or_manage(server: Server, client: httpx.Client,
                                                 mail: MailCatcher,
                                                 other: httpx.Client) -> None:
    transfer, (token,) = send(client, {"a.txt": b"a"})
    tid = transfer["id"]
    unknown = "f" * 32
    not_found = assert_error(other.get(f"/api/v1/transfers/{unknown}"), 404, "not_found")
    # Exactly the answer for a transfer that does not exist.
    for response in (
        other.get(f"/api/v1/transfers/{tid}"),
        other.post(f"/api/v1/transfers/{tid}/revoke"),
        other.post(f"/api/v1/transfers/{tid}/extend", json={"expires_in": "1d"}),
        other.delete(f"/api/v1/transfers/{tid}"),
    ):
        assert assert_error(response, 404, "not_found") == not_found
    assert tid not in [t["id"] for t in other.get("/api/v1/transfers").json()]

    for action in ("transfer.revoked", "transfer.extended", "transfer.deleted"):
        assert not events_for(server.data_dir, action, tid)
    assert client.get(f"/api/v1/transfers/{tid}").json()["status"] == "active"
    access = opened(server, mail, transfer, token)
    assert httpx.get(_link(server, token), headers=access).status_code == 200


def test_scopes_limit_what_a_token_may_do(server: Server, client: httpx.Client) -> None:
    transfer, _ = send(client, {"a.txt": b"a"})
    reader = login(server.url, scopes=["transfers:read"])
    with api_client(server, reader) as c:
        assert c.get(f"/api/v1/transfers/{transfer['id']}").status_code == 200
        assert_error(c.post(f"/api/v1/transfers/{transfer['id']}/revoke"), 403,
                     "permission_denied", {"scope": "transfers:write"})
        assert_error(c.delete(f"/api/v1/transfers/{transfer['id']}"), 403,
                     "permission_denied", {"scope": "transfers:write"})
    assert not events_for(server.data_dir, "transfer.revoked", transfer["id"])

