"""The organisation's file-type policy (SEC-19) on a real server: programs
are refused by name when the upload is created and by their first bytes
when they arrive (415, the upload destroyed, an audit event); medical
formats pass; an administrator may turn the policy off (audited)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MailCatcher, Server, login
from tests.integration.flows import TUS, audit_events, sql, upload_bytes
from tests.integration.support import (
    api_client,
    assert_error,
    blob_files,
    module_server,
    new_address,
    page_session,
)
from tests.integration.test_upload_requests import deposit_link, make_request, prove
from tests.unit.test_filetypes import MEDICAL, dicom_file, pe_dicom_polyglot, pe_file

mail, server, token, client, admin = module_server("filetypes")
ADMIN_SCOPES = ["transfers:read", "transfers:write", "admin"]


@pytest.fixture(scope="module", name="manager")
def manager_fixture(server: Server) -> Iterator[httpx.Client]:
    """The administrator with a token that may change the policy."""
    with api_client(server, login(server.url, scopes=ADMIN_SCOPES)) as c:
        yield c
OFFSET = {**TUS, "Content-Type": "application/offset+octet-stream"}


def meta(name: str) -> str:
    return "filename " + base64.b64encode(name.encode()).decode()


def create(client: httpx.Client, name: str, length: int,
           headers: dict[str, str] | None = None) -> httpx.Response:
    return client.post("/api/v1/uploads/", headers={
        **TUS, **(headers or {}), "Upload-Length": str(length), "Upload-Metadata": meta(name)})


def refused(response: httpx.Response, by: str, kind: str) -> None:
    error = assert_error(response, 415, "unsupported_media_type")
    assert error["details"] == {"reason": "file_type", "refused_by": by, "kind": kind}
    assert response.headers["tus-resumable"] == "1.0.0"


def uploads(server: Server) -> int:
    return int(sql(server.data_dir, "SELECT COUNT(*) FROM uploads")[0][0])


@pytest.fixture(name="policy_on")
def policy_on_fixture(manager: httpx.Client) -> Iterator[None]:
    yield
    assert manager.patch("/api/v1/organisation",
                        json={"block_executables": True}).status_code == 200


def test_the_policy_is_on_by_default(client: httpx.Client) -> None:
    assert client.get("/api/v1/organisation").json()["block_executables"] is True


@pytest.mark.parametrize("name", [
    "ordonnance.pdf.exe", "setup.MSI", "x.exe.", "lancer.bat", "script.ps1", "a.js",
    "compte-rendu\u202efdp.exe", "x.exe\x00.pdf", "outil.jar", "appli.apk",
])
def test_a_program_is_refused_by_its_name(server: Server, client: httpx.Client,
                                          admin: dict[str, Any], name: str) -> None:
    before, events = uploads(server), len(audit_events(server.data_dir, "upload.refused"))
    refused(create(client, name, 10), "name", "exe" if "exe" in name else
            name.rstrip(".").rsplit(".", 1)[-1].lower())
    assert uploads(server) == before  # nothing created
    found = audit_events(server.data_dir, "upload.refused")
    assert len(found) == events + 1
    event = found[-1]
    assert event["actor"] == admin["id"] and event["outcome"] == "denied"
    assert event["organisation"] == admin["organisation_id"]
    assert event["source"] == "127.0.0.1" and event["object"] == {"type": "upload", "id": None}
    assert event["details"]["refused_by"] == "name"
    assert name not in str(event)  # no file names in the trail (SEC-30)


@pytest.mark.parametrize("sample", ["pe", "polyglot"])
def test_a_program_renamed_pdf_is_refused_by_its_content(
        server: Server, client: httpx.Client, admin: dict[str, Any], sample: str) -> None:
    data = pe_file() if sample == "pe" else pe_dicom_polyglot()
    data += b"\x00" * (3 << 20)  # bytes past the first segment never reach storage
    blobs = blob_files(server)
    created = create(client, "resultats.pdf" if sample == "pe" else "IRM.dcm", len(data))
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    upload_id = url.rsplit("/", 1)[-1]
    refused(client.patch(url, content=data, headers={**OFFSET, "Upload-Offset": "0"}),
            "content", "pe")
    # Terminated and destroyed: gone, its blob shredded, nothing left behind.
    assert client.head(url, headers=TUS).status_code == 404
    assert sql(server.data_dir, "SELECT COUNT(*) FROM uploads WHERE id = ?",
               upload_id)[0][0] == 0
    assert blob_files(server) <= blobs
    event = [e for e in audit_events(server.data_dir, "upload.refused")
             if (e["object"] or {}).get("id") == upload_id]
    assert len(event) == 1
    assert event[0]["actor"] == admin["id"] and event[0]["outcome"] == "denied"
    assert event[0]["source"] == "127.0.0.1"
    assert event[0]["details"]["refused_by"] == "content"
    assert event[0]["details"]["kind"] == "pe"


def test_the_first_bytes_are_judged_across_patches(server: Server,
                                                   client: httpx.Client) -> None:
    """A program sent one byte at a time is still judged on its prefix."""
    data = pe_file()
    created = create(client, "lettre.pdf", len(data))
    url = created.headers["location"]
    for offset in range(0, 0x80, 0x20):  # the PE header is at 0x80
        sent = client.patch(url, content=data[offset:offset + 0x20],
                            headers={**OFFSET, "Upload-Offset": str(offset)})
        assert sent.status_code == 204, sent.text
    refused(client.patch(url, content=data[0x80:], headers={**OFFSET, "Upload-Offset": "128"}),
            "content", "pe")
    assert client.head(url, headers=TUS).status_code == 404


def test_creation_with_upload_of_a_program_leaves_nothing(server: Server,
                                                          client: httpx.Client) -> None:
    before = uploads(server)
    data = b"\x7fELF\x02\x01\x01" + b"\x00" * 500
    response = client.post("/api/v1/uploads/", content=data, headers={
        **OFFSET, "Upload-Length": str(len(data)), "Upload-Metadata": meta("donnees.bin")})
    refused(response, "content", "elf")
    assert uploads(server) == before


@pytest.mark.parametrize("kind", ["dicom", "pdf", "png", "zip", "docx", "doc", "text"])
def test_medical_formats_pass(client: httpx.Client, kind: str) -> None:
    names = {"dicom": "IRM.dcm", "pdf": "cr.pdf", "png": "radio.png", "zip": "serie.zip",
             "docx": "lettre.docx", "doc": "vieux.doc", "text": "notes.txt"}
    upload_id = upload_bytes(client, MEDICAL[kind] + b"\x01" * 1000, names[kind])
    state = client.head(f"/api/v1/uploads/{upload_id}", headers=TUS)
    assert state.status_code == 200


def test_a_depositor_cannot_send_a_program(server: Server, mail: MailCatcher,
                                           client: httpx.Client) -> None:
    patient = new_address("patient")
    make_request(client, depositors=[patient], max_size="10M", max_files=3)
    grant = prove(server, mail, deposit_link(mail, patient), patient)
    by_name = httpx.post(f"{server.url}/api/v1/uploads/", headers={
        **TUS, **grant, "Upload-Length": "10", "Upload-Metadata": meta("facture.pdf.scr")})
    refused(by_name, "name", "scr")
    data = pe_file()
    created = httpx.post(f"{server.url}/api/v1/uploads/", headers={
        **TUS, **grant, "Upload-Length": str(len(data)), "Upload-Metadata": meta("a.pdf")})
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    refused(httpx.patch(url, content=data, headers={**OFFSET, **grant, "Upload-Offset": "0"}),
            "content", "pe")
    event = audit_events(server.data_dir, "upload.refused")[-1]
    assert event["actor"] is None and event["details"]["refused_by"] == "content"
    fine = dicom_file()
    created = httpx.post(f"{server.url}/api/v1/uploads/", headers={
        **TUS, **grant, "Upload-Length": str(len(fine)), "Upload-Metadata": meta("IRM.dcm")})
    sent = httpx.patch(created.headers["location"], content=fine,
                       headers={**OFFSET, **grant, "Upload-Offset": "0"})
    assert sent.status_code == 204, sent.text


def test_an_administrator_may_turn_the_policy_off(server: Server, client: httpx.Client,
                                                  manager: httpx.Client, admin: dict[str, Any],
                                                  policy_on: None) -> None:
    assert_error(client.patch("/api/v1/organisation", json={"block_executables": False}),
                 403, "permission_denied")  # a token without the admin scope
    changed = manager.patch("/api/v1/organisation", json={"block_executables": False})
    assert changed.status_code == 200 and changed.json()["block_executables"] is False
    event = audit_events(server.data_dir, "organisation.policy_changed")[-1]
    assert event["actor"] == admin["id"]
    assert event["details"]["changes"] == {"block_executables": {"before": True,
                                                                 "after": False}}
    upload_id = upload_bytes(client, pe_file(), "outil.exe")
    assert client.head(f"/api/v1/uploads/{upload_id}", headers=TUS).status_code == 200


def test_the_policy_page(server: Server, client: httpx.Client, admin: dict[str, Any],
                         policy_on: None) -> None:
    browser = page_session(server)
    try:
        page = browser.get("/admin/policy")
        assert page.status_code == 200
        assert 'name="block_executables" value="1" checked' in page.text
        assert "Refuser les programmes et scripts" in page.text
        form = {name: value for name, value in re.findall(
            r'<input[^>]*name="([a-z_]+)"[^>]*value="([^"]*)"', page.text)}
        form.pop("block_executables")  # the box unticked
        form.pop("allow_permanent", None)
        form["allow_permanent"] = "1"
        form.pop("require_mfa", None)
        form.pop("allow_unverified_recipients", None)
        form.pop("discreet_mail", None)
        saved = browser.post("/admin/policy", data=form)
        assert saved.status_code == 303, saved.text
    finally:
        browser.close()
    assert client.get("/api/v1/organisation").json()["block_executables"] is False
    event = audit_events(server.data_dir, "organisation.policy_changed")[-1]
    assert event["actor"] == admin["id"]
    assert event["details"]["changes"]["block_executables"] == {"before": True, "after": False}


def test_the_cli_switches_the_policy(server: Server, manager: httpx.Client, tmp_path: Path,
                                     policy_on: None) -> None:
    env = {"COFFRE_URL": server.url, "COFFRE_TOKEN": login(server.url, scopes=ADMIN_SCOPES),
           "COLUMNS": "250", "XDG_CONFIG_HOME": str(tmp_path / "config")}

    def coffre(*args: str) -> str:
        done = server.coffre(*args, env=env)
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    assert re.search(r"programmes et scripts refusés\s+.\s*oui", coffre("organisation", "show"))
    shown = coffre("organisation", "set", "--no-block-executables")
    assert re.search(r"programmes et scripts refusés\s+.\s*non", shown)
    assert manager.get("/api/v1/organisation").json()["block_executables"] is False
    coffre("organisation", "set", "--block-executables")
    assert manager.get("/api/v1/organisation").json()["block_executables"] is True
