"""The send path end to end through the HTTP API, with mail caught by a
real SMTP server."""

from __future__ import annotations

import hashlib
import os

import httpx

from tests.conftest import MailCatcher, Server
from tests.integration.flows import link_token, make_transfer, verify_link, wait_for_events


def test_send_and_download(server: Server, client: httpx.Client, mail: MailCatcher) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)
    transfer = make_transfer(client, {"irm.bin": big, "note.txt": b"bonjour"},
                             ["a@exemple.fr", "b@exemple.fr"], message="Résultats")
    assert [f["sha256"] for f in transfer["files"]] == [
        hashlib.sha256(big).hexdigest(), hashlib.sha256(b"bonjour").hexdigest()]
    link = mail.link_for("a@exemple.fr")
    token = link_token(link)
    access = verify_link(server.url, mail, token, "a@exemple.fr")
    info = httpx.get(f"{server.url}/api/v1/links/{token}", headers=access).json()
    got = httpx.get(info["files"][0]["url"], headers=access)
    assert got.status_code == 200
    assert got.content == big
    assert len(wait_for_events(server.data_dir, "transfer.downloaded")) == 1
