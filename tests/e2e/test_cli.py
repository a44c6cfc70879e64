"""The CLI as a new user runs it: login, send several files to two
recipients, each downloads with ``coffre get`` and with curl; a send
interrupted by a server crash resumes when run again."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import backends
from tests.conftest import ADMIN_EMAIL, MailCatcher, Server, second_factor
from tests.integration.flows import (
    code_mails,
    link_token,
    request_code,
    sql,
    wait_code,
    wait_for_events,
)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 8 << 20)
            f.write(os.urandom(n))
            left -= n
    return path


class Cli:
    """Runs ``coffre`` as a separate user would: own HOME, COFFRE_URL."""

    def __init__(self, home: Path, url: str) -> None:
        self.home = home
        self.url = url

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COFFRE_")}
        env.update({"HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config"),
                    "XDG_STATE_HOME": str(self.home / ".state"), "COFFRE_URL": self.url,
                    "COLUMNS": "200"})
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "coffre.cli.main", *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.command(*args), env=self.env(), capture_output=True,
                              text=True, timeout=900, check=False)
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(*args), env=self.env(), text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)


def get_with_code(cli: Cli, mail: MailCatcher, link: str, address: str,
                  *args: str) -> subprocess.CompletedProcess[str]:
    """``coffre get LINK`` as a recipient runs it: it asks for a code, the
    code arrives by mail, the recipient types it."""
    before = len(code_mails(mail, address))
    proc = cli.popen("get", link, *args)
    code = wait_code(mail, address, before + 1, timeout=60)
    stdout, stderr = proc.communicate(code + "\n", timeout=900)
    assert proc.returncode == 0, stdout + stderr
    assert "Code reçu par e-mail" in stdout + stderr
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def curl_access(server: Server, mail: MailCatcher, link: str, address: str) -> str:
    """The code flow with curl, as a recipient without Coffre would do it."""
    # A code was sent less than a minute ago (resend throttle): time travel.
    sql(server.data_dir, "UPDATE recipients SET code_sent_at = NULL WHERE email = ?", address)
    api = f"{server.url}/api/v1/links/{link_token(link)}"
    before = len(code_mails(mail, address))
    subprocess.run(["curl", "-sSf", "-X", "POST", f"{api}/code"], check=True, timeout=60,
                   capture_output=True)
    code = wait_code(mail, address, before + 1)
    verified = subprocess.run(["curl", "-sSf", "-H", "Content-Type: application/json",
                               "-d", json.dumps({"code": code}), f"{api}/verify"],
                              check=True, timeout=60, capture_output=True, text=True)
    access: str = json.loads(verified.stdout)["access"]
    return access


@pytest.fixture
def cli(server: Server, tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery staple\n")
    c = Cli(home, server.url)
    # The administrator enrolled TOTP on first use (conftest.login); the CLI
    # signs in with one of the recovery codes shown then.
    c.run("login", "--url", server.url, "--email", ADMIN_EMAIL, "--password-file", str(pw),
          "--code", second_factor(server.url))
    creds = home / ".config" / "coffre" / "credentials.json"
    assert creds.stat().st_mode & 0o777 == 0o600
    return c


def test_send_get_and_curl(server: Server, cli: Cli, mail: MailCatcher, tmp_path: Path) -> None:
    files = [random_file(tmp_path / "scanner.dcm", 40 * 1024 * 1024 + 123),
             random_file(tmp_path / "compte rendu é.pdf", 2000),
             random_file(tmp_path / "vide.txt", 0)]
    sent = cli.run("send", *map(str, files), "--to", "a@exemple.fr", "--to", "b@exemple.fr",
                   "--message", "Voici les examens", "--expires", "3d", "--json")
    transfer = json.loads(sent.stdout)
    assert [f["sha256"] for f in transfer["files"]] == [sha256_file(f) for f in files]
    assert transfer["status"] == "active"

    for address in ("a@exemple.fr", "b@exemple.fr"):
        link = mail.link_for(address)
        out = tmp_path / f"get-{address}"
        if address.startswith("a"):  # types the code it is asked for
            got = get_with_code(cli, mail, link, address, "-o", str(out), "--json")
        else:  # a code already received, given on the command line
            code = request_code(server.url, mail, link_token(link), address)
            wrong = cli.run("get", link, "-o", str(out), "--code", "00000000", check=False)
            assert wrong.returncode == 2
            assert "code incorrect (encore 4 essai(s))" in wrong.stderr
            got = cli.run("get", link, "-o", str(out), "--json", "--code", code)
        results = json.loads(got.stdout)
        assert [r["name"] for r in results] == [f.name for f in files]
        for f in files:
            assert sha256_file(out / f.name) == sha256_file(f)
        # and with curl, as a recipient without Coffre installed would
        access = curl_access(server, mail, link, address)
        info = httpx.get(f"{server.url}/api/v1/links/{link_token(link)}",
                         headers={"X-Coffre-Access": access}).json()
        curl_dir = tmp_path / f"curl-{address}"
        curl_dir.mkdir()
        subprocess.run(["curl", "-sSfOJ", "-H", f"X-Coffre-Access: {access}", "--output-dir",
                        str(curl_dir), info["files"][0]["url"]], check=True, timeout=300)
        assert sha256_file(curl_dir / "scanner.dcm") == sha256_file(files[0])

    # 2 recipients x (3 files by coffre get + 1 by curl)
    assert len(wait_for_events(server.data_dir, "transfer.downloaded", 8)) == 8
    shown = json.loads(cli.run("transfers", "show", transfer["id"], "--json").stdout)
    assert [r["downloads"] for r in shown["recipients"]] == [4, 4]

    # The sender's timeline, in French (SEC-4).
    timeline = cli.run("transfers", "events", transfer["id"]).stdout
    for step in ("lien envoyé par e-mail", "lien ouvert", "code envoyé", "code erroné",
                 "code vérifié", "fichier téléchargé"):
        assert step in timeline, step
    assert "a@exemple.fr" in timeline and "b@exemple.fr" in timeline
    # --follow prints what is already there, then waits for more (Ctrl-C ends it).
    follow = cli.popen("transfers", "events", transfer["id"], "--follow", "--json")
    try:
        assert follow.stdout is not None
        first = json.loads(follow.stdout.readline())
        assert first["kind"] == "mail_sent"
    finally:
        follow.kill()
        follow.communicate(timeout=30)
    # Turning verification off needs the organisation's permission.
    refused = cli.run("send", str(files[2]), "--to", "c@exemple.fr", "--no-verify",
                      check=False)
    assert refused.returncode == 2
    assert "one-time code" in refused.stderr


def test_send_resumes_after_server_crash(server: Server, cli: Cli, mail: MailCatcher,
                                         tmp_path: Path) -> None:
    big = random_file(tmp_path / "irm.bin", 400 * 1024 * 1024)

    def stored_bytes() -> int:
        return backends.stored_size(server.data_dir)

    proc = cli.popen("send", str(big), "--to", "patient@exemple.fr", "--json")
    deadline = time.monotonic() + 120
    while stored_bytes() < 150 * 1024 * 1024 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # crash mid-upload
    proc.kill()  # and the user gives up on this run
    proc.wait(timeout=30)
    server.start()
    # what the crash left: an upload URL in the CLI's state, and a server offset > 0
    (upload_url,) = json.loads((cli.home / ".state/coffre/uploads.json").read_text()).values()
    token = json.loads((cli.home / ".config/coffre/credentials.json").read_text())["token"]
    head = httpx.head(upload_url, headers={"Tus-Resumable": "1.0.0",
                                           "Authorization": f"Bearer {token}"})
    assert 0 < int(head.headers["upload-offset"]) < big.stat().st_size

    done = cli.run("send", str(big), "--to", "patient@exemple.fr", "--json")
    transfer = json.loads(done.stdout)
    assert transfer["files"][0]["sha256"] == sha256_file(big)
    # the second run did not start over: only one upload was created
    created = wait_for_events(server.data_dir, "upload.created")
    assert len(created) == 1
    link = mail.link_for("patient@exemple.fr")
    out = tmp_path / "out"
    get_with_code(cli, mail, link, "patient@exemple.fr", "-o", str(out))
    assert sha256_file(out / "irm.bin") == sha256_file(big)


@pytest.mark.slow
def test_send_five_gigabytes(server: Server, cli: Cli, mail: MailCatcher, tmp_path: Path) -> None:
    """The issue's acceptance: a 5 GB file and two small ones to two
    recipients, each downloading with ``coffre get`` and with curl."""
    files = [random_file(tmp_path / "etude.bin", 5 * 1000**3),
             random_file(tmp_path / "cr.pdf", 300_000), random_file(tmp_path / "note.txt", 42)]
    done = cli.run("send", *map(str, files), "--to", "a@exemple.fr", "--to", "b@exemple.fr",
                   "--json")
    expected = [sha256_file(f) for f in files]
    assert [f["sha256"] for f in json.loads(done.stdout)["files"]] == expected
    for address in ("a@exemple.fr", "b@exemple.fr"):
        link = mail.link_for(address)
        out = tmp_path / f"out-{address}"
        get_with_code(cli, mail, link, address, "-o", str(out))
        assert [sha256_file(out / f.name) for f in files] == expected
        for f in out.iterdir():
            f.unlink()
        access = curl_access(server, mail, link, address)
        info = httpx.get(f"{server.url}/api/v1/links/{link_token(link)}",
                         headers={"X-Coffre-Access": access}).json()
        subprocess.run(["curl", "-sSfOJ", "-H", f"X-Coffre-Access: {access}",
                        "--output-dir", str(out), info["files"][0]["url"]],
                       check=True, timeout=1800)
        assert sha256_file(out / "etude.bin") == expected[0]
        (out / "etude.bin").unlink()


def _expect(proc: subprocess.Popen[bytes], pattern: str, seen: bytearray,
            timeout: float = 30) -> str:
    """Read the process's output until ``pattern`` appears (prompts end
    without a newline, so read raw chunks)."""
    import re
    import select

    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while not (match := re.search(pattern, seen.decode(errors="replace"))):
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"waited for {pattern!r}, got:\n{seen.decode(errors='replace')}"
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, f"exited before {pattern!r}:\n{seen.decode(errors='replace')}"
        seen += chunk
    del seen[: match.end()]
    return match.group(match.lastindex or 0)


def test_sec9_an_administrator_enrols_totp_at_first_cli_login(server: Server,
                                                               tmp_path: Path) -> None:
    """A new administrator has no second factor: ``coffre login`` shows the
    QR code and the key, checks a first code, prints recovery codes, then
    signs in again with the next code."""
    import pyotp

    from coffre.crypto import credentials
    from coffre.db.tables import Organisation, User
    from tests.integration.support import in_process

    app = in_process(server)
    with app.db.session() as session:
        org_id = session.query(Organisation.id).scalar()
        session.add(User(organisation_id=org_id, email="chef@exemple.fr", role="admin",
                         password_hash=credentials.hash_password("une phrase de passe sûre")))
    app.close()
    pw = tmp_path / "pw"
    pw.write_text("une phrase de passe sûre")
    home = tmp_path / "home"
    home.mkdir()
    cli = Cli(home, server.url)
    proc = subprocess.Popen(
        cli.command("login", "--url", server.url, "--email", "chef@exemple.fr",
                    "--password-file", str(pw), "--scope", "transfers:read",
                    "--scope", "transfers:write", "--scope", "admin"),
        env=cli.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdin is not None
    seen = bytearray()
    secret = _expect(proc, r"clé : ([A-Z2-7]{32})", seen)
    totp = pyotp.TOTP(secret)
    _expect(proc, r"Code affiché par l'application: ", seen)
    proc.stdin.write(f"{totp.now()}\n".encode())
    proc.stdin.flush()
    _expect(proc, r"Codes de secours", seen)
    _expect(proc, r"ou code de secours: ", seen)
    proc.stdin.write(f"{totp.at(time.time() + 30)}\n".encode())
    proc.stdin.flush()
    _expect(proc, r"Connecté à", seen)
    assert proc.wait(30) == 0
    token = json.loads((home / ".config" / "coffre" / "credentials.json").read_text())
    me = httpx.get(f"{server.url}/api/v1/me",
                   headers={"Authorization": f"Bearer {token['token']}"}).json()
    assert me["mfa"] is True and "admin" in me["scopes"]


def test_sec17_cli_confirms_identity_before_deleting(server: Server, cli: Cli,
                                                     tmp_path: Path) -> None:
    """A token signed in long ago must step up before a deletion: the CLI
    asks for the password and a code, then deletes."""
    from tests.conftest import ADMIN_PASSWORD
    from tests.integration.flows import sql

    doc = random_file(tmp_path / "cr.pdf", 1000)
    sent = json.loads(cli.run("send", str(doc), "--to", "a@exemple.fr", "--json").stdout)
    sql(server.data_dir, "UPDATE api_tokens SET auth_time = '2020-01-01 00:00:00.000000'")
    refused = subprocess.run(cli.command("transfers", "delete", sent["id"], "--yes"),
                             env=cli.env(), input="", text=True, capture_output=True,
                             timeout=60, check=False)
    assert refused.returncode != 0
    done = subprocess.run(cli.command("transfers", "delete", sent["id"], "--yes"),
                          env=cli.env(), input=f"{ADMIN_PASSWORD}\n{second_factor(server.url)}\n",
                          text=True, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "confirmer votre identité" in done.stdout + done.stderr
    assert "Transfert supprimé." in done.stdout


def test_revoke_one_recipient_from_the_command_line(server: Server, cli: Cli,
                                                    tmp_path: Path) -> None:
    note = tmp_path / "ordonnance.txt"
    note.write_text("Ordonnance du 7 décembre.\n")
    sent = json.loads(cli.run("send", str(note), "--to", "gardee@exemple.fr", "--to",
                              "Retiree@Exemple.fr", "--json").stdout)
    done = json.loads(cli.run("transfers", "revoke", sent["id"], "--recipient",
                              "retiree@exemple.fr", "--json").stdout)
    assert {r["email"]: r["state"] for r in done["recipients"]} == {
        "gardee@exemple.fr": "mail_sent", "retiree@exemple.fr": "revoked"}
    assert done["status"] == "active"
    shown = cli.run("transfers", "show", sent["id"]).stdout
    assert "retiree@exemple.fr  0 téléchargement(s)  (pas encore ouvert)  lien révoqué" in shown
    assert "lien révoqué par l'expéditeur" in cli.run("transfers", "events", sent["id"]).stdout
    unknown = cli.run("transfers", "revoke", sent["id"], "--recipient", "x@exemple.fr",
                      check=False)
    assert unknown.returncode != 0
    assert "n'est pas un destinataire de ce transfert" in unknown.stderr
