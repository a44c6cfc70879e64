"""Upload requests ("invitation à déposer"), end to end on a real server
with a real SMTP catcher: a patient with only the mail deposits a file
through tus (interrupted, resumed), the requester is told by mail and by a
live event and downloads it; depositors are isolated from each other and
from other requests; limits answer 413/409 (SEC-7, SEC-18, SEC-29, SEC-30).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import ADMIN_EMAIL, MailCatcher, Server, login
from tests.integration.flows import TUS, audit_events, wait_code
from tests.integration.support import module_server, new_address, one_event

mail, server, token, client, admin = module_server("requests")
OFFSET = {**TUS, "Content-Type": "application/offset+octet-stream"}
RECEIVED_SUBJECT = "[Coffre] Des fichiers vous ont été déposés"


def deposit_link(mail: MailCatcher, address: str) -> str:
    for msg in mail.to(address):
        body = msg.get_body(preferencelist=("plain",))
        assert body is not None
        found = re.search(r"https?://\S+/d/([A-Za-z0-9_-]+)", body.get_content())
        if found:
            return found.group(1)
    raise AssertionError(f"no deposit link mailed to {address}")


def prove(server: Server, mail: MailCatcher, deposit_token: str, address: str,
          sent: int = 1) -> dict[str, str]:
    """The depositor's code flow; returns the grant header."""
    asked = httpx.post(f"{server.url}/api/v1/deposit/{deposit_token}/code")
    assert asked.status_code == 202, asked.text
    code = wait_code(mail, address, sent)
    verified = httpx.post(f"{server.url}/api/v1/deposit/{deposit_token}/verify",
                          json={"code": code})
    assert verified.status_code == 200, verified.text
    return {"X-Coffre-Deposit": verified.json()["access"]}


def make_request(client: httpx.Client, **body: Any) -> dict[str, Any]:
    made = client.post("/api/v1/requests", json={"message": "Vos analyses, merci", **body})
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


def tus_create(server: Server, grant: dict[str, str], length: int | None,
               name: str = "analyse.pdf") -> httpx.Response:
    headers = {**TUS, **grant,
               "Upload-Metadata": "filename " + base64.b64encode(name.encode()).decode()}
    if length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(length)
    return httpx.post(f"{server.url}/api/v1/uploads/", headers=headers)


def upload(server: Server, grant: dict[str, str], data: bytes, name: str = "a.pdf") -> str:
    created = tus_create(server, grant, len(data), name)
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    patched = httpx.patch(url, content=data, headers={**OFFSET, **grant, "Upload-Offset": "0"})
    assert patched.status_code == 204, patched.text
    return url.rsplit("/", 1)[-1]


def interrupted_patch(url: str, grant: dict[str, str], data: bytes, sent: int) -> None:
    """Announce the whole body, send only ``sent`` bytes, then hang up."""
    parts = urlsplit(url)
    head = "".join([
        f"PATCH {parts.path} HTTP/1.1\r\n", f"Host: {parts.netloc}\r\n",
        "Tus-Resumable: 1.0.0\r\n", "Upload-Offset: 0\r\n",
        "Content-Type: application/offset+octet-stream\r\n",
        f"Content-Length: {len(data)}\r\n",
        *(f"{k}: {v}\r\n" for k, v in grant.items()), "\r\n",
    ])
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(head.encode())
        sock.sendall(memoryview(data)[:sent])
        time.sleep(0.5)


def head_offset(url: str, grant: dict[str, str], timeout: float = 10) -> int:
    """HEAD until the cut-off PATCH has committed what it received."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.head(url, headers={**TUS, **grant})
        assert response.status_code == 200, response.status_code
        offset = int(response.headers["upload-offset"])
        if offset > 0 or time.monotonic() > deadline:
            return offset
        time.sleep(0.1)


def follow(server: Server, token: str, request_id: str, found: list[dict[str, Any]]) -> None:
    """Read the request's live stream until the first deposit arrives."""
    with httpx.Client(timeout=30) as c, c.stream(
        "GET", f"{server.url}/api/v1/requests/{request_id}/events/stream",
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                found.append(json.loads(line[5:]))
                return


def deposit_and_download(server: Server, mail: MailCatcher, client: httpx.Client, token: str,
                         data: bytes) -> None:
    patient = new_address("patient")
    request = make_request(client, depositors=[patient], max_size=str(len(data) + 10),
                           max_files=3)
    deposit_token = deposit_link(mail, patient)
    assert request["links"][patient].endswith(deposit_token)
    # Before the code, nothing but who asks and where the code goes.
    blind = httpx.get(f"{server.url}/api/v1/deposit/{deposit_token}")
    assert blind.status_code == 401
    assert blind.json()["error"]["details"]["reason"] == "code_required"
    grant = prove(server, mail, deposit_token, patient)

    created = tus_create(server, grant, len(data), "IRM genou.dcm")
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    interrupted_patch(url, grant, data, len(data) // 2 + 12345)
    offset = head_offset(url, grant)
    assert 0 < offset < len(data)
    view = memoryview(data)
    pieces = (bytes(view[i:i + (8 << 20)]) for i in range(offset, len(data), 8 << 20))
    rest = httpx.patch(url, content=pieces, timeout=600, headers={
        **OFFSET, **grant, "Upload-Offset": str(offset), "Content-Length": str(len(data) - offset)})
    assert rest.status_code == 204, rest.text
    assert rest.headers["upload-offset"] == str(len(data))

    events: list[dict[str, Any]] = []
    watcher = threading.Thread(target=follow, args=(server, token, request["id"], events))
    watcher.start()
    deposited = httpx.post(f"{server.url}/api/v1/deposit/{deposit_token}/deposit",
                           headers=grant, json={})
    assert deposited.status_code == 201, deposited.text
    transfer_id = deposited.json()["transfer_id"]
    watcher.join(timeout=20)
    assert events and events[0]["kind"] == "deposit_received"
    assert events[0]["transfer_id"] == transfer_id and events[0]["depositor"] == patient

    def notices() -> list[Any]:  # the module's server has earlier deposits' notices too
        return [m for m in mail.to(ADMIN_EMAIL) if m["Subject"] == RECEIVED_SUBJECT
                and patient in m.get_body(preferencelist=("plain",)).get_content()]

    deadline = time.monotonic() + 15
    while not notices() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert notices()
    # The mail opens the request's page (never the API), in French.
    text = notices()[0].get_body(preferencelist=("plain",)).get_content()
    assert f"{server.url}/requests/{request['id']}" in text and "/api/" not in text
    assert f"{patient} vous a déposé 1 fichier (" in text

    received = client.get("/api/v1/received").json()
    mine = next(r for r in received if r["id"] == transfer_id)
    assert mine["received_from"] == patient and mine["request_id"] == request["id"]
    assert transfer_id not in {t["id"] for t in client.get("/api/v1/transfers").json()}
    file = mine["files"][0]
    assert file["name"] == "IRM genou.dcm"
    digest = hashlib.sha256()
    with client.stream("GET", f"/api/v1/transfers/{transfer_id}/files/{file['id']}") as got:
        assert got.status_code == 200
        assert got.headers["content-disposition"].startswith("attachment")
        for chunk in got.iter_bytes():
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest() == file["sha256"]


def test_a_patient_deposits_with_only_the_mail(server: Server, mail: MailCatcher,
                                               client: httpx.Client, token: str,
                                               admin: dict[str, Any]) -> None:
    data = os.urandom(3 * (1 << 20) + 4321)
    deposit_and_download(server, mail, client, token, data)
    org = admin["organisation_id"]
    request_id = audit_events(server.data_dir, "request.created")[-1]["object"]["id"]
    one_event(server.data_dir, "request.created", object_type="upload_request",
              object_id=request_id, organisation=org, actor=admin["id"])
    verified = audit_events(server.data_dir, "depositor.code_verified")[-1]
    assert verified["actor"] is None and verified["details"]["request"] == request_id
    created = [e for e in audit_events(server.data_dir, "upload.created")
               if (e["details"] or {}).get("request") == request_id]
    assert len(created) == 1 and created[0]["actor"] is None
    completed = audit_events(server.data_dir, "deposit.completed")[-1]
    assert completed["details"]["request"] == request_id
    assert completed["details"]["files"] == 1
    raw = json.dumps(audit_events(server.data_dir))
    assert "IRM genou" not in raw  # no file names in the trail (SEC-30)


@pytest.mark.slow
def test_a_patient_deposits_two_gigabytes(server: Server, mail: MailCatcher,
                                          client: httpx.Client, token: str) -> None:
    block = os.urandom(1 << 20)
    deposit_and_download(server, mail, client, token, block * 2048)


def test_depositors_see_only_their_own_uploads(server: Server, mail: MailCatcher,
                                               client: httpx.Client, token: str) -> None:
    alice, bob = new_address("alice"), new_address("bob")
    make_request(client, depositors=[alice, bob])
    alice_grant = prove(server, mail, deposit_link(mail, alice), alice)
    bob_token = deposit_link(mail, bob)
    bob_grant = prove(server, mail, bob_token, bob)
    alice_upload = upload(server, alice_grant, b"compte rendu d'Alice")
    url = f"{server.url}/api/v1/uploads/{alice_upload}"

    assert httpx.head(url, headers={**TUS, **bob_grant}).status_code == 404
    append = httpx.patch(url, content=b"x", headers={**OFFSET, **bob_grant,
                                                     "Upload-Offset": "20"})
    assert append.status_code == 404
    assert httpx.delete(url, headers={**TUS, **bob_grant}).status_code == 404
    assert httpx.get(f"{server.url}/api/v1/deposit/{bob_token}",
                     headers=bob_grant).json()["uploads"] == []
    # Bob's grant does not open Bob's link for Alice's token, nor the reverse.
    alice_token = deposit_link(mail, alice)
    assert httpx.get(f"{server.url}/api/v1/deposit/{alice_token}",
                     headers=bob_grant).status_code == 401
    assert httpx.post(f"{server.url}/api/v1/deposit/{alice_token}/deposit",
                      headers=bob_grant, json={}).status_code == 401
    # Nor does the requester's own account reach a deposit in progress.
    assert httpx.head(url, headers={**TUS, "Authorization": f"Bearer {token}"}
                      ).status_code == 404
    # A grant is not an account.
    for path in ("/api/v1/transfers", "/api/v1/requests", "/api/v1/received"):
        assert httpx.get(server.url + path, headers=alice_grant).status_code == 401
    own = httpx.get(f"{server.url}/api/v1/deposit/{alice_token}", headers=alice_grant).json()
    assert [u["id"] for u in own["uploads"]] == [alice_upload]


def test_a_grant_of_one_request_cannot_reach_another(server: Server, mail: MailCatcher,
                                                     client: httpx.Client) -> None:
    patient = new_address("patient")
    first = make_request(client, depositors=[patient], max_files=1)
    first_token = deposit_link(mail, patient)
    grant = prove(server, mail, first_token, patient)
    other = new_address("autre")
    second = make_request(client, depositors=[other], max_files=5)
    second_token = deposit_link(mail, other)
    assert httpx.get(f"{server.url}/api/v1/deposit/{second_token}",
                     headers=grant).status_code == 401
    upload(server, grant, b"un fichier")
    # Counted against the first request only: its single slot is used...
    assert tus_create(server, grant, 3).status_code == 409
    shown = client.get(f"/api/v1/requests/{second['id']}").json()
    assert shown["depositors"][0]["files"] == 0
    assert client.get(f"/api/v1/requests/{first['id']}").json()["depositors"][0]["files"] == 1


def test_limits_on_size_count_and_closing(server: Server, mail: MailCatcher,
                                          client: httpx.Client, admin: dict[str, Any]) -> None:
    patient = new_address("patient")
    request = make_request(client, depositors=[patient], max_size="1000", max_files=2)
    deposit_token = deposit_link(mail, patient)
    grant = prove(server, mail, deposit_token, patient)
    too_big = tus_create(server, grant, 1001)
    assert too_big.status_code == 413
    assert too_big.json()["error"]["details"]["reason"] == "request_size"
    assert tus_create(server, grant, None).status_code == 400  # declared length required
    upload(server, grant, b"a" * 600)
    assert tus_create(server, grant, 401).status_code == 413  # 600 + 401 > 1000
    upload(server, grant, b"b" * 400)
    assert tus_create(server, grant, 0).status_code == 409  # the third file
    closed = client.post(f"/api/v1/requests/{request['id']}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    one_event(server.data_dir, "request.closed", object_type="upload_request",
              object_id=request["id"], organisation=admin["organisation_id"],
              actor=admin["id"])
    assert tus_create(server, grant, 1).status_code == 401
    assert httpx.post(f"{server.url}/api/v1/deposit/{deposit_token}/code").status_code == 410


def test_wrong_codes_are_counted_and_never_logged(server: Server, mail: MailCatcher,
                                                  client: httpx.Client) -> None:
    patient = new_address("patient")
    make_request(client, depositors=[patient])
    deposit_token = deposit_link(mail, patient)
    assert httpx.post(f"{server.url}/api/v1/deposit/{deposit_token}/code").status_code == 202
    code = wait_code(mail, patient, 1)
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    refused = httpx.post(f"{server.url}/api/v1/deposit/{deposit_token}/verify",
                         json={"code": wrong})
    assert refused.status_code == 401
    assert refused.json()["error"]["details"]["reason"] == "wrong_code"
    failed = audit_events(server.data_dir, "depositor.code_failed")[-1]
    assert failed["outcome"] == "failure"
    raw = json.dumps(audit_events(server.data_dir))
    assert code not in raw and wrong not in raw and deposit_token not in raw


def test_open_link_received_transfer_forward_and_delete(server: Server, mail: MailCatcher,
                                                        client: httpx.Client) -> None:
    request = make_request(client, open_link=True)
    open_token = request["open_url"].rsplit("/", 1)[-1]
    visitor = new_address("confrere")
    joined = httpx.post(f"{server.url}/api/v1/deposit/open/{open_token}/join",
                        json={"email": visitor})
    assert joined.status_code == 201, joined.text
    depositor_token = joined.json()["token"]
    code = wait_code(mail, visitor, 1)
    verified = httpx.post(f"{server.url}/api/v1/deposit/{depositor_token}/verify",
                          json={"code": code})
    grant = {"X-Coffre-Deposit": verified.json()["access"]}
    upload(server, grant, b"lettre de liaison", "lettre.pdf")
    assert httpx.post(f"{server.url}/api/v1/deposit/{depositor_token}/deposit",
                      headers=grant).status_code == 201
    received = next(r for r in client.get("/api/v1/received").json()
                    if r["request_id"] == request["id"])
    colleague = new_address("collegue")
    forwarded = client.post(f"/api/v1/transfers/{received['id']}/forward",
                            json={"recipients": [colleague], "message": "Pour avis"})
    assert forwarded.status_code == 201, forwarded.text
    sent = forwarded.json()
    assert sent["files"][0]["sha256"] == received["files"][0]["sha256"]
    assert client.delete(f"/api/v1/transfers/{received['id']}").status_code == 204
    assert received["id"] not in {r["id"] for r in client.get("/api/v1/received").json()}
    # The forwarded copy has its own data key: it survives the deletion.
    copy = sent["files"][0]
    got = client.get(f"/api/v1/transfers/{sent['id']}/files/{copy['id']}")
    assert got.status_code == 200 and got.content == b"lettre de liaison"


def test_the_cli_creates_lists_shows_and_closes(server: Server, mail: MailCatcher,
                                                token: str, tmp_path: Path) -> None:
    env = {**os.environ, "COFFRE_URL": server.url, "COFFRE_TOKEN": token,
           "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "COLUMNS": "250"}
    coffre = str(Path(sys.executable).parent / "coffre")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([coffre, "request", *args], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    patient = new_address("patient")
    made = json.loads(run("create", "--to", patient, "--message", "Vos résultats",
                          "--max-size", "50M", "--max-files", "3", "--json").stdout)
    assert made["max_total_size"] == 50 << 20 and made["status"] == "open"
    assert deposit_link(mail, patient)
    assert made["id"] in run("list").stdout
    shown = run("show", made["id"]).stdout
    assert patient in shown and "pas encore vérifiée" in shown
    closed = json.loads(run("close", made["id"], "--json").stdout)
    assert closed["status"] == "closed"


def test_a_patient_deposits_with_the_cli_client(server: Server, mail: MailCatcher,
                                                client: httpx.Client, tmp_path: Path) -> None:
    patient = new_address("patient")
    make_request(client, depositors=[patient])
    link = f"{server.url}/d/{deposit_link(mail, patient)}"
    files = [tmp_path / "bilan sanguin.pdf", tmp_path / "ordonnance.jpg"]
    for path, size in zip(files, (5 * (1 << 20) + 7, 1234), strict=True):
        path.write_bytes(os.urandom(size))
    env = {**os.environ, "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "coffre.cli.main", "deposit", link, *map(str, files), "--json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env,
    )
    code = wait_code(mail, patient, 1, timeout=60)
    stdout, stderr = proc.communicate(code + "\n", timeout=300)
    assert proc.returncode == 0, stdout + stderr
    assert "Code reçu par e-mail" in stderr
    result = json.loads(stdout)
    received = next(r for r in client.get("/api/v1/received").json()
                    if r["id"] == result["transfer_id"])
    assert [(f["name"], f["sha256"]) for f in received["files"]] == [
        (p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]


def test_the_depositor_pages(server: Server, mail: MailCatcher, client: httpx.Client) -> None:
    """The link in the mail opens French pages: code, then upload (the page's
    script speaks tus with the grant cookie, as here), then hand-over."""
    patient = new_address("patient")
    make_request(client, depositors=[patient], message="Merci pour la radio")
    deposit_token = deposit_link(mail, patient)
    page = f"{server.url}/d/{deposit_token}"
    same_site = {"Origin": server.url}
    first = httpx.get(page)
    assert first.status_code == 401 and "Recevoir mon code par e-mail" in first.text
    assert "Aucun code n'a encore été envoyé." in first.text  # opening it sends nothing
    sent = httpx.post(f"{page}/code", headers=same_site)
    assert sent.status_code == 303 and sent.headers["location"] == f"/d/{deposit_token}"
    assert "Un code à 8 chiffres a été envoyé par e-mail à" in httpx.get(page).text
    wrong = httpx.post(f"{page}/verify", data={"code": "00000000"}, headers=same_site)
    assert wrong.status_code == 401 and "Code incorrect" in wrong.text
    verified = httpx.post(f"{page}/verify", data={"code": wait_code(mail, patient, 1)},
                          headers=same_site)
    assert verified.status_code == 303
    set_cookie = verified.headers["set-cookie"]
    assert set_cookie.startswith("__Host-coffre-deposit=")
    assert all(a in set_cookie.lower() for a in ("secure", "httponly", "samesite=strict"))
    cookie = {"Cookie": set_cookie.split(";")[0]}
    shown = httpx.get(page, headers=cookie)
    assert shown.status_code == 200 and "Merci pour la radio" in shown.text
    assert "/static/deposit.js" in shown.text
    assert "coffre deposit" not in shown.text  # no command line for patients
    assert httpx.get(f"{server.url}/static/deposit.js").status_code == 200

    by_page = {**TUS, **cookie, **same_site, "X-Coffre-Deposit-Cookie": "1",
               "Upload-Length": "11",
               "Upload-Metadata": "filename " + base64.b64encode("radio é.pdf".encode()).decode()}
    # The cookie alone is never taken as a grant, nor from another site.
    bare = {k: v for k, v in by_page.items() if k != "X-Coffre-Deposit-Cookie"}
    assert httpx.post(f"{server.url}/api/v1/uploads/", headers=bare).status_code == 401
    forged = {**by_page, "Origin": "https://ailleurs.example"}
    assert httpx.post(f"{server.url}/api/v1/uploads/", headers=forged).status_code == 403
    created = httpx.post(f"{server.url}/api/v1/uploads/", headers=by_page)
    assert created.status_code == 201, created.text
    patched = httpx.patch(created.headers["location"], content=b"radio-genou", headers={
        **OFFSET, **cookie, **same_site, "X-Coffre-Deposit-Cookie": "1", "Upload-Offset": "0"})
    assert patched.status_code == 204, patched.text
    listed = httpx.get(page, headers=cookie)
    # Sent but not handed over (the page's script hands over by itself once
    # every chosen file is sent; a page left before that offers it).
    assert "radio é.pdf" in listed.text and "Remettre ce fichier à" in listed.text
    handed = httpx.post(f"{page}/deposit", headers={**cookie, **same_site})
    assert handed.status_code == 303 and handed.headers["location"] == f"/d/{deposit_token}?done=1"
    confirmed = httpx.get(f"{page}?done=1", headers=cookie).text
    assert "Votre fichier a été remis" in confirmed and "radio é.pdf" in confirmed
    assert httpx.post(f"{page}/deposit", headers={**cookie, "Origin": "https://ailleurs.example"}
                      ).status_code == 403


def test_the_open_link_page(server: Server, mail: MailCatcher, client: httpx.Client) -> None:
    request = make_request(client, open_link=True)
    page = request["open_url"]
    assert httpx.get(page).status_code == 200
    visitor = new_address("visiteur")
    joined = httpx.post(page, data={"email": visitor}, headers={"Origin": server.url})
    assert joined.status_code == 303 and joined.headers["location"].startswith("/d/")
    assert wait_code(mail, visitor, 1)
    closed = client.post(f"/api/v1/requests/{request['id']}/close")
    assert closed.status_code == 200
    assert httpx.get(server.url + joined.headers["location"]).status_code == 410


def test_an_administrator_reading_a_members_request_is_audited(
    server: Server, mail: MailCatcher, client: httpx.Client, admin: dict[str, Any],
) -> None:
    """SEC-4: the requester can learn that an administrator looked."""
    from coffre.crypto import credentials
    from coffre.db.tables import User
    from tests.conftest import login
    from tests.integration.support import api_client, in_process

    email, password = new_address("membre"), "une phrase de passe assez longue"
    app = in_process(server)
    try:
        with app.db.session() as session:
            session.add(User(organisation_id=admin["organisation_id"], email=email,
                             password_hash=credentials.hash_password(password)))
    finally:
        app.close()
    with api_client(server, login(server.url, email, password)) as member:
        mine = make_request(member, depositors=[new_address("patient")])
        assert member.get(f"/api/v1/requests/{mine['id']}").status_code == 200
    assert not audit_events(server.data_dir, "request.admin_access")
    assert client.get(f"/api/v1/requests/{mine['id']}").status_code == 200
    one_event(server.data_dir, "request.admin_access", object_type="upload_request",
              object_id=mine["id"], organisation=admin["organisation_id"], actor=admin["id"])


def test_received_files_follow_the_organisation_retention(server: Server, mail: MailCatcher,
                                                          client: httpx.Client) -> None:
    """Where permanent storage is not allowed, a deposit expires like any
    temporary transfer (it is crypto-shredded then), instead of being kept."""
    admin_token = login(server.url, scopes=["transfers:read", "transfers:write", "admin"])
    policy = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin_token}"})
    assert policy.patch("/api/v1/organisation", json={"allow_permanent": False}).status_code == 200
    try:
        patient = new_address("patient")
        make_request(client, depositors=[patient])
        deposit_token = deposit_link(mail, patient)
        grant = prove(server, mail, deposit_token, patient)
        upload(server, grant, b"compte rendu")
        done = httpx.post(f"{server.url}/api/v1/deposit/{deposit_token}/deposit",
                          json={}, headers=grant)
        assert done.status_code in (200, 201), done.text
        received = client.get("/api/v1/received").json()
        mine = [t for t in received if t["expires_at"] is not None]
        assert mine, received
    finally:
        assert policy.patch("/api/v1/organisation",
                            json={"allow_permanent": True}).status_code == 200
        policy.close()
