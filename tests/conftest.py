"""Shared fixtures: a real Coffre server in a subprocess, a real SMTP server
(aiosmtpd) catching its mail, and an administrator with an API token."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

ADMIN_EMAIL = "medecin@cabinet-exemple.fr"
ADMIN_PASSWORD = "correct horse battery staple"


_PORTS_GIVEN: set[int] = set()


def free_port() -> int:
    """A free loopback port, never the same twice in this process: the
    credentials ``login`` caches are keyed by URL, and a new server on an
    earlier one's port would get that server's (stale) recovery codes."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


class MailCatcher:
    """A real SMTP server (aiosmtpd) that keeps what it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        catcher = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                msg = message_from_bytes(envelope.content, policy=policy.default)
                with catcher._lock:
                    catcher.messages.append(msg)  # type: ignore[arg-type]
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def to(self, address: str, timeout: float = 15) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [m for m in self.messages if m["To"] == address]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def link_for(self, address: str, timeout: float = 15) -> str:
        for msg in self.to(address, timeout):
            body = msg.get_body(preferencelist=("plain",))
            assert body is not None
            match = re.search(r"https?://\S+/t/[A-Za-z0-9_-]+", body.get_content())
            if match:
                return match.group(0)
        raise AssertionError(f"no link mailed to {address}")


@dataclass
class Server:
    """``coffre serve`` in a subprocess, on its own data directory."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COFFRE_")}
        env.update({
            "COFFRE_DATA_DIR": str(self.data_dir),
            "COFFRE_PORT": str(self.port),
            "COFFRE_PURGE_INTERVAL_SECONDS": "3600",
            # Tests share a login for minutes; step-up itself is tested with 5.
            "COFFRE_STEP_UP_MINUTES": "120",
            **self.env,
        })
        from tests import backends

        if backends.profile() == "distributed":
            env.setdefault("COFFRE_DATABASE_URL", backends.database_for(self.data_dir))
            if "COFFRE_STORAGE_URL" not in env:
                env.update(backends.storage_environ(backends.bucket_for(self.data_dir)))
        return env

    def coffre(self, *args: str, input: str | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a ``coffre`` CLI command against this server's data directory."""
        return subprocess.run(
            [sys.executable, "-m", "coffre.cli.main", *args], input=input, text=True,
            capture_output=True, env={**self.environ(), **(env or {})}, timeout=600,
            check=False,
        )

    def start(self) -> None:
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "coffre.cli.main", "serve"],
            env=self.environ(), stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("server exited:\n" + self.log_path.read_text())
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start:\n" + self.log_path.read_text())

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, no clean shutdown."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""


@contextmanager
def started_mail() -> Iterator[MailCatcher]:
    catcher = MailCatcher()
    catcher.start()
    try:
        yield catcher
    finally:
        catcher.stop()


@contextmanager
def running_server(base: Path, mail: MailCatcher, **env: str) -> Iterator[Server]:
    """A started server whose mail goes to ``mail``, set up with an
    administrator (``ADMIN_EMAIL``)."""
    srv = Server(base / "data", env={
        "COFFRE_SMTP_HOST": "127.0.0.1", "COFFRE_SMTP_PORT": str(mail.port),
        "COFFRE_SMTP_TLS": "none", **env,
    })
    pw = base / "admin-password"
    pw.write_text(ADMIN_PASSWORD)
    done = srv.coffre("setup", "--email", ADMIN_EMAIL, "--password-file", str(pw),
                      "--organisation", "Cabinet Exemple")
    assert done.returncode == 0, done.stderr + done.stdout
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def mail() -> Iterator[MailCatcher]:
    with started_mail() as catcher:
        yield catcher


@pytest.fixture
def server(tmp_path: Path, mail: MailCatcher) -> Iterator[Server]:
    with running_server(tmp_path, mail) as srv:
        yield srv


#: (server url, e-mail) -> the TOTP seed enrolled for that user, and the
#: first token obtained with it (later logins mint from it: a TOTP code is
#: accepted once, so logging in twice within 30 s would be a replay).
TOTP_SECRETS: dict[tuple[str, str], str] = {}
#: (server url, e-mail) -> unused recovery codes (for tests that must log in
#: by hand: ``second_factor(url)``).
RECOVERY_CODES: dict[tuple[str, str], list[str]] = {}
_BASE_TOKENS: dict[tuple[str, str], str] = {}
DEFAULT_SCOPES = ["transfers:read", "transfers:write"]


def totp_code(secret: str, steps_ahead: int = 0) -> str:
    import pyotp

    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


def enrol_totp(url: str, token: str) -> tuple[str, list[str]]:
    """Enrol a TOTP factor with the API, as an authenticator app would;
    returns its seed and the recovery codes."""
    headers = {"Authorization": f"Bearer {token}"}
    begun = httpx.post(f"{url}/api/v1/account/factors/totp", json={"name": "tests"},
                       headers=headers, timeout=30)
    assert begun.status_code == 201, begun.text
    secret: str = begun.json()["secret"]
    confirmed = httpx.post(f"{url}/api/v1/account/factors/totp/{begun.json()['id']}/confirm",
                           json={"code": totp_code(secret)}, headers=headers, timeout=30)
    assert confirmed.status_code == 200, confirmed.text
    return secret, confirmed.json()["recovery_codes"]


def _first_login(url: str, email: str, password: str) -> str:
    body: dict[str, object] = {"email": email, "password": password,
                               "scopes": [*DEFAULT_SCOPES, "admin"]}
    response = httpx.post(f"{url}/api/v1/auth/token", json=body, timeout=30)
    if response.status_code == 400:  # not an administrator
        body["scopes"] = DEFAULT_SCOPES
        response = httpx.post(f"{url}/api/v1/auth/token", json=body, timeout=30)
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    me = httpx.get(f"{url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    if not me.json().get("mfa_required") or me.json().get("mfa"):
        return token
    # Administrators must use a second factor (SEC-9): enrol one, sign in again.
    secret, codes = enrol_totp(url, token)
    TOTP_SECRETS[(url, email)] = secret
    RECOVERY_CODES[(url, email)] = codes
    body["code"] = totp_code(secret, steps_ahead=1)
    response = httpx.post(f"{url}/api/v1/auth/token", json=body, timeout=30)
    assert response.status_code == 201, response.text
    token = response.json()["token"]
    return token


def second_factor(url: str, email: str = ADMIN_EMAIL) -> str:
    """A single-use recovery code of a user ``login`` enrolled."""
    if (url, email) not in RECOVERY_CODES:
        login(url, email)
    return RECOVERY_CODES[(url, email)].pop()


def login(url: str, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD,
          scopes: list[str] | None = None) -> str:
    """An API token for ``email`` (enrolling the TOTP factor an
    administrator needs on first use)."""
    key = (url, email)
    if key not in _BASE_TOKENS:
        _BASE_TOKENS[key] = _first_login(url, email, password)
    response = httpx.post(
        f"{url}/api/v1/tokens", json={"name": "tests", "scopes": scopes or DEFAULT_SCOPES},
        headers={"Authorization": f"Bearer {_BASE_TOKENS[key]}"}, timeout=30,
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


@pytest.fixture
def token(server: Server) -> str:
    """An API token of the administrator (transfers read+write)."""
    return login(server.url)


@pytest.fixture
def client(server: Server, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                      timeout=60) as c:
        yield c
