"""Storage modes, retention, legal hold, quotas and recipient limits, on a
real server: quotas refuse before any byte is stored (413), a deferred-length
upload crossing a quota stops cleanly, temporary transfers are
crypto-shredded at expiry while held ones survive, and the organisation's
recipient limits and domain lists refuse with clear errors (SEC-18, SEC-33).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server, login
from tests.integration.flows import TUS, sql, upload_bytes
from tests.integration.support import (
    api_client,
    assert_error,
    blob_files,
    events_for,
    expire,
    module_server,
    new_address,
    one_event,
    send,
)

mail, server, token, client, admin = module_server("retention")
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}
MiB = 1 << 20


@pytest.fixture(scope="module")
def boss(server: Server) -> Iterator[httpx.Client]:
    """The administrator with the admin scope (policy, legal hold)."""
    with api_client(server, login(server.url, scopes=["transfers:read", "transfers:write",
                                                      "admin"])) as c:
        yield c


@pytest.fixture
def policy(boss: httpx.Client) -> Iterator[Any]:
    """Set organisation policy fields; every one set is restored afterwards."""
    touched: set[str] = set()

    def set_(**fields: Any) -> dict[str, Any]:
        touched.update(fields)
        response = boss.patch("/api/v1/organisation", json=fields)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    yield set_
    if touched:
        defaults = {"allow_permanent": True, "recipient_domains_allowed": [],
                    "recipient_domains_denied": []}
        reset = boss.patch("/api/v1/organisation",
                           json={k: defaults.get(k) for k in touched})
        assert reset.status_code == 200, reset.text


def _used(client: httpx.Client) -> int:
    response = client.get("/api/v1/usage")
    assert response.status_code == 200, response.text
    used: int = response.json()["user"]["used"]
    return used


def _uploads(server: Server) -> int:
    return int(sql(server.data_dir, "SELECT count(*) FROM uploads")[0][0])


# -- quotas ---------------------------------------------------------------------------


def test_an_upload_that_does_not_fit_is_refused_before_any_byte(
        server: Server, client: httpx.Client, policy: Any, admin: dict[str, Any]) -> None:
    used = _used(client)
    policy(user_quota=used + 100_000)
    upload_bytes(client, os.urandom(95_000), "gros.bin")  # now at 95% of the quota
    assert _used(client) == used + 95_000
    files, uploads = blob_files(server), _uploads(server)

    refused = client.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "10000"})
    error = assert_error(refused, 413, "quota_exceeded")
    assert error["details"]["quota"] == {"scope": "user", "used": used + 95_000,
                                         "limit": used + 100_000, "needed": 10_000}
    assert "quota" in error["message"]
    # creation-with-upload: the body is refused too, nothing stored.
    with_body = client.post("/api/v1/uploads/", content=b"x" * 10_000,
                            headers={**PATCH, "Upload-Length": "10000"})
    assert_error(with_body, 413, "quota_exceeded")
    assert blob_files(server) == files
    assert _uploads(server) == uploads
    assert _used(client) == used + 95_000
    # What fits still goes through.
    upload_bytes(client, b"y" * 5_000, "petit.bin")
    assert _used(client) == used + 100_000


def test_two_uploads_racing_for_the_last_bytes_cannot_both_pass(
        server: Server, client: httpx.Client, policy: Any) -> None:
    policy(user_quota=_used(client) + 10_000)
    answers: list[int] = []

    def create() -> None:
        answers.append(client.post("/api/v1/uploads/",
                                   headers={**TUS, "Upload-Length": "6000"}).status_code)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [201, 413]


def test_a_deferred_upload_crossing_the_quota_stops_cleanly(
        server: Server, client: httpx.Client, policy: Any, admin: dict[str, Any]) -> None:
    before = _used(client)
    policy(user_quota=before + MiB + MiB // 2)
    files = blob_files(server)
    created = client.post("/api/v1/uploads/", headers={**TUS, "Upload-Defer-Length": "1"})
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    upload_id = url.rsplit("/", 1)[-1]
    first = client.patch(url, content=os.urandom(MiB), headers={**PATCH, "Upload-Offset": "0"})
    assert first.status_code == 204, first.text
    assert _used(client) == before + MiB

    crossing = client.patch(url, content=os.urandom(MiB),
                            headers={**PATCH, "Upload-Offset": str(MiB)})
    error = assert_error(crossing, 413, "quota_exceeded")
    assert error["details"]["quota"]["needed"] == 2 * MiB
    # The upload is gone, its blob too, and usage is what it was.
    assert client.head(url, headers=TUS).status_code == 404
    assert blob_files(server) == files
    assert _used(client) == before
    one_event(server.data_dir, "upload.quota_exceeded", object_type="upload",
              object_id=upload_id, organisation=admin["organisation_id"],
              actor=admin["id"], source=None)


def test_the_organisation_quota_counts_every_member(client: httpx.Client, boss: httpx.Client,
                                                    policy: Any) -> None:
    report = boss.get("/api/v1/usage").json()
    organisation_used = report["organisation"]["used"]
    assert organisation_used >= report["user"]["used"]
    assert {m["id"] for m in report["members"]} >= {report_id(client)}
    policy(organisation_quota=organisation_used + 10)
    refused = client.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "11"})
    assert assert_error(refused, 413, "quota_exceeded")["details"]["quota"]["scope"] == (
        "organisation")
    usage = boss.get("/api/v1/usage").json()["organisation"]
    assert usage == {"used": organisation_used, "limit": organisation_used + 10, "free": 10}


def report_id(client: httpx.Client) -> str:
    me: str = client.get("/api/v1/me").json()["id"]
    return me


def test_a_member_sees_only_their_own_usage(server: Server, client: httpx.Client) -> None:
    with api_client(server, login(server.url)) as member_view:  # no admin scope
        report = member_view.get("/api/v1/usage").json()
    assert report["organisation"] is None and report["members"] is None
    assert report["user"]["used"] == _used(client)


# -- storage modes and legal hold -------------------------------------------------------


def test_temporary_transfers_vanish_at_expiry_held_ones_survive(
        server: Server, client: httpx.Client, boss: httpx.Client,
        admin: dict[str, Any]) -> None:
    temporary, _ = send(client, {"t.bin": b"CANARY-TEMPORAIRE"}, expires_in="1d")
    held, _ = send(client, {"h.bin": b"a garder"}, expires_in="1d")
    assert temporary["mode"] == "temporary" and not temporary["legal_hold"]
    org = admin["organisation_id"]

    assert_error(boss.post(f"/api/v1/transfers/{held['id']}/hold", json={"reason": ""}),
                 400, "invalid_input")
    placed = boss.post(f"/api/v1/transfers/{held['id']}/hold",
                       json={"reason": "Réquisition judiciaire 2026-118"})
    assert placed.status_code == 200, placed.text
    assert placed.json()["legal_hold"] is True
    event = one_event(server.data_dir, "transfer.hold_placed", object_type="transfer",
                      object_id=held["id"], organisation=org, actor=admin["id"])
    assert event["details"]["reason"] == "Réquisition judiciaire 2026-118"
    # The owner's own token has no admin scope: the hold is not theirs to lift.
    assert client.request("DELETE", f"/api/v1/transfers/{held['id']}/hold",
                          json={"reason": "je veux"}).status_code == 403
    assert_error(boss.delete(f"/api/v1/transfers/{held['id']}"), 409, "conflict")
    assert_error(boss.post(f"/api/v1/transfers/{held['id']}/extend", json={"expires_in": "2h"}),
                 409, "conflict")

    expire(server, temporary["id"])
    expire(server, held["id"])
    for _ in range(2):
        done = server.coffre("purge")
        assert done.returncode == 0, done.stderr + done.stdout

    keys = sql(server.data_dir, "SELECT b.wrapped_key FROM transfer_files f JOIN blobs b "
               "ON b.id = f.blob_id WHERE f.transfer_id = ?", temporary["id"])
    assert keys == [(None,)]
    purged = one_event(server.data_dir, "transfer.purged", object_type="transfer",
                       object_id=temporary["id"], organisation=org, actor=None, source=None,
                       secrets=("CANARY",))
    assert purged["details"]["data_keys_destroyed"] == 1
    assert client.get(f"/api/v1/transfers/{temporary['id']}").json()["status"] == "deleted"

    kept = client.get(f"/api/v1/transfers/{held['id']}").json()
    assert kept["status"] == "expired" and kept["legal_hold"] is True
    assert kept["files"][0]["name"] == "h.bin"
    assert not events_for(server.data_dir, "transfer.purged", held["id"])
    skipped = one_event(server.data_dir, "transfer.purge_skipped", object_type="transfer",
                        object_id=held["id"], organisation=org, actor=None, source=None)
    assert skipped["details"]["reason"] == "legal_hold"

    released = boss.request("DELETE", f"/api/v1/transfers/{held['id']}/hold",
                            json={"reason": "Procédure close"})
    assert released.status_code == 200, released.text
    assert released.json()["legal_hold"] is False
    one_event(server.data_dir, "transfer.hold_released", object_type="transfer",
              object_id=held["id"], organisation=org, actor=admin["id"])
    assert server.coffre("purge").returncode == 0
    assert client.get(f"/api/v1/transfers/{held['id']}").json()["status"] == "deleted"


def test_storage_modes_follow_the_organisation_policy(
        server: Server, client: httpx.Client, policy: Any, admin: dict[str, Any]) -> None:
    permanent, _ = send(client, {"p.txt": b"p"}, mode="permanent")
    assert permanent["mode"] == "permanent" and permanent["expires_at"] is None
    policy(allow_permanent=False, default_expiry_days=2, max_expiry_days=10)
    upload = upload_bytes(client, b"z", "z.txt")
    body = {"files": [upload], "recipients": [new_address()]}
    refused = client.post("/api/v1/transfers", json={**body, "mode": "permanent"})
    assert_error(refused, 403, "permission_denied", {"reason": "permanent_not_allowed"})
    too_long = client.post("/api/v1/transfers", json={**body, "expires_in": "3w"})
    assert "10 days" in assert_error(too_long, 400, "invalid_input",
                                     {"field": "expires_in"})["message"]
    assert_error(client.post("/api/v1/transfers", json={**body, "mode": "temporary",
                                                        "expires_in": "permanent"}),
                 400, "invalid_input")
    made = client.post("/api/v1/transfers", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["mode"] == "temporary"
    assert made.json()["expires_at"][:10] >= made.json()["created_at"][:10]
    lifetime = (_time(made.json()["expires_at"]) - _time(made.json()["created_at"]))
    assert abs(lifetime.total_seconds() - 2 * 86400) < 60
    assert_error(client.post(f"/api/v1/transfers/{permanent['id']}/extend",
                             json={"expires_in": "permanent"}),
                 403, "permission_denied", {"reason": "permanent_not_allowed"})


def _time(value: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_size_limits_of_the_organisation(client: httpx.Client, policy: Any) -> None:
    policy(max_file_size=1000, max_transfer_size=1500)
    refused = client.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "1001"})
    assert_error(refused, 413, "too_large", {"max_size": 1000})
    ids = [upload_bytes(client, b"a" * 800, "a.bin"), upload_bytes(client, b"b" * 800, "b.bin")]
    too_big = client.post("/api/v1/transfers", json={"files": ids,
                                                     "recipients": [new_address()]})
    assert_error(too_big, 413, "too_large", {"max_transfer_size": 1500, "size": 1600})


# -- recipients --------------------------------------------------------------------------


def test_recipient_limits_and_domain_lists(client: httpx.Client, policy: Any) -> None:
    policy(max_recipients=2, recipient_domains_denied=["Gmail.com"])
    upload = upload_bytes(client, b"r", "r.txt")

    def create(*recipients: str) -> httpx.Response:
        return client.post("/api/v1/transfers",
                           json={"files": [upload], "recipients": list(recipients)})

    crowd = create(new_address(), new_address(), new_address())
    assert_error(crowd, 403, "permission_denied",
                 {"reason": "too_many_recipients", "maximum": 2, "given": 3})
    denied = create("patient@gmail.com")
    error = assert_error(denied, 403, "permission_denied",
                         {"reason": "recipient_domain_denied", "domains": ["gmail.com"]})
    assert "gmail.com" in error["message"]

    policy(recipient_domains_denied=[], recipient_domains_allowed=["chu-exemple.fr"])
    outside = create("confrere@exemple.fr")
    assert_error(outside, 403, "permission_denied",
                 {"reason": "recipient_domain_not_allowed", "domains": ["exemple.fr"]})
    assert create("radiologie@imagerie.chu-exemple.fr").status_code == 201


def test_policy_changes_are_validated_and_audited(server: Server, boss: httpx.Client,
                                                  policy: Any, admin: dict[str, Any]) -> None:
    instance_max = boss.get("/api/v1/organisation").json()["effective"]["max_file_size"]
    assert_error(boss.patch("/api/v1/organisation", json={"max_file_size": instance_max + 1}),
                 400, "invalid_input")
    assert_error(boss.patch("/api/v1/organisation",
                            json={"recipient_domains_denied": ["pas un domaine"]}),
                 400, "invalid_input")
    before = len(events_for(server.data_dir, "organisation.policy_changed",
                            admin["organisation_id"]))
    changed = policy(user_quota=5 * MiB, max_recipients=20)
    assert changed["policy"]["user_quota"] == 5 * MiB
    assert changed["effective"]["max_recipients"] == 20
    events = events_for(server.data_dir, "organisation.policy_changed", admin["organisation_id"])
    assert len(events) == before + 1
    assert events[-1]["details"]["changes"]["user_quota"] == {"before": None, "after": 5 * MiB}


# -- CLI ----------------------------------------------------------------------------------


def test_cli_usage_policy_and_hold(server: Server, client: httpx.Client, policy: Any,
                                   tmp_path: Any) -> None:
    token = login(server.url, scopes=["transfers:read", "transfers:write", "admin"])
    env = {"COFFRE_URL": server.url, "COFFRE_TOKEN": token, "COLUMNS": "250",
           "XDG_CONFIG_HOME": str(tmp_path / "config")}

    def coffre(*args: str) -> str:
        done = server.coffre(*args, env=env)
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    policy(user_quota=None, organisation_quota=None, max_recipients=None,
           recipient_domains_denied=[])
    shown = coffre("organisation", "set", "--user-quota", "2G", "--max-recipients", "12",
                   "--deny-domain", "gmail.com", "--no-allow-permanent")
    assert "2.0 Gio (organisation)" in shown and "gmail.com" in shown
    assert "12 (organisation)" in shown
    policy_now = client.get("/api/v1/organisation").json()["policy"]
    assert policy_now["user_quota"] == 2 << 30 and policy_now["allow_permanent"] is False
    report = coffre("usage")
    assert "Stockage utilisé" in report and "2.0 Gio" in report and "organisation" in report
    assert "illimité" in coffre("organisation", "set", "--user-quota", "défaut")

    transfer, _ = send(client, {"cli.txt": b"cli"})
    held = coffre("transfers", "hold", transfer["id"], "--reason", "Contrôle CNIL")
    assert "gel juridique" in held and "temporaire" in held
    assert "gel juridique" not in coffre("transfers", "release", transfer["id"],
                                         "--reason", "Contrôle terminé")
    policy(allow_permanent=True)


def test_forwarding_counts_against_the_quota(
        server: Server, client: httpx.Client, policy: Any) -> None:
    """A forward copies files under new keys: the copies must fit in the
    quota like any upload, and a refused forward leaves no copy behind."""
    transfer, _ = send(client, {"scanner.dcm": os.urandom(60_000)})
    used = _used(client)
    policy(user_quota=used + 100_000)
    files, uploads = blob_files(server), _uploads(server)
    first = client.post(f"/api/v1/transfers/{transfer['id']}/forward",
                        json={"recipients": ["confrere@exemple.fr"]})
    assert first.status_code == 201, first.text
    assert _used(client) == used + 60_000
    second = client.post(f"/api/v1/transfers/{transfer['id']}/forward",
                         json={"recipients": ["confrere@exemple.fr"]})
    assert_error(second, 413, "quota_exceeded")
    assert _used(client) == used + 60_000
    assert len(blob_files(server)) == len(files) + 1
    assert _uploads(server) == uploads + 1
