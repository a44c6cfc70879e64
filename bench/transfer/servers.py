"""The three servers under test, each started on loopback in a temp dir and
stopped (by its own pid) when the benchmark leaves its ``with`` block."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url}: server did not start:\n{log.read_text(errors='replace')}")


class _Process:
    """A child server process, stopped with SIGTERM (then SIGKILL) on exit."""

    process: subprocess.Popen[bytes] | None = None

    def _spawn(self, cmd: list[str], log: Path, **kwargs: object) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            self.process = subprocess.Popen(  # type: ignore[call-overload]
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs
            )
        assert self.process is not None
        return self.process

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


NGINX_CONF = """\
{user}daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    # Temp files on the same file system as the root, so a PUT is a rename.
    client_body_temp_path {dir}/root/.body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {dir}/root;
        client_max_body_size 0;
        client_body_buffer_size 1m;
        client_body_timeout 300s;
        send_timeout 300s;
        location /upload/ {{
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw;
        }}
    }}
}}
"""


class Nginx(_Process):
    """nginx with the dav module: PUT writes the body to a file, GET serves it."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.dir = workdir / "nginx"
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/upload/"

    @property
    def root(self) -> Path:
        return self.dir / "root" / "upload"

    def __enter__(self) -> Nginx:
        (self.dir / "root" / "upload").mkdir(parents=True, exist_ok=True)
        (self.dir / "root" / ".body").mkdir(exist_ok=True)
        (self.dir / "tmp").mkdir(exist_ok=True)
        conf = self.dir / "nginx.conf"
        # As root, workers would run as nobody and could not enter the 0700 temp dir.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONF.format(dir=self.dir, port=self.port, user=user))
        log = self.dir / "stdout.log"
        process = self._spawn(
            [self.binary, "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log")],
            log,
        )
        wait_http(f"http://127.0.0.1:{self.port}/", process, self.dir / "error.log")
        return self


class TusReference(_Process):
    """@tus/server with @tus/file-store (bench/tus-reference.mjs)."""

    def __init__(self, script: Path, workdir: Path) -> None:
        self.script = script
        self.dir = workdir / "tus-reference"
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/files"

    def __enter__(self) -> TusReference:
        (self.dir / "files").mkdir(parents=True, exist_ok=True)
        log = self.dir / "server.log"
        process = self._spawn(
            ["node", str(self.script), str(self.port), str(self.dir / "files")],
            log,
            cwd=self.script.parent,
        )
        wait_http(self.url, process, log)
        return self


ADMIN_EMAIL = "bench@coffre.test"


class Coffre(_Process):
    """``coffre serve`` (uvicorn), or the same app under granian, on a fresh
    data dir with an administrator and an API token."""

    def __init__(
        self,
        workdir: Path,
        name: str = "coffre",
        granian: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.extra_env = env or {}
        self.dir = workdir / name
        self.data_dir = self.dir / "data"
        self.port = free_port()
        self.granian = granian
        self.token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COFFRE_")}
        env.update(
            {
                "COFFRE_DATA_DIR": str(self.data_dir),
                "COFFRE_PORT": str(self.port),
                "COFFRE_PURGE_INTERVAL_SECONDS": "3600",
                "COFFRE_CONFIG": str(self.dir / "coffre.toml"),  # absent on purpose
                "PYTHONPATH": str(REPO),
                **self.extra_env,
            }
        )
        return env

    def __enter__(self) -> Coffre:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(24)
        password_file = self.dir / "admin-password"
        password_file.write_text(password)
        done = subprocess.run(
            [sys.executable, "-m", "coffre.cli.main", "setup", "--email", ADMIN_EMAIL,
             "--password-file", str(password_file), "--organisation", "Banc d'essai"],
            env=self.environ(), cwd=self.dir, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"coffre setup failed:\n{done.stdout}{done.stderr}")
        log = self.dir / "server.log"
        if self.granian:
            cmd = [
                self.granian, "--interface", "asgi", "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", "1", "--loop", "uvloop",
                "--no-ws", "--log-level", "warning", "bench.transfer.asgi:app",
            ]  # fmt: skip
        else:
            cmd = [sys.executable, "-m", "coffre.cli.main", "serve"]
        process = self._spawn(cmd, log, env=self.environ(), cwd=self.dir)
        wait_http(f"{self.url}/healthz", process, log)
        body = json.dumps({"email": ADMIN_EMAIL, "password": password}).encode()
        request = urllib.request.Request(
            f"{self.url}/api/v1/auth/token",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            self.token = json.load(response)["token"]
        self._second_factor(password)
        return self

    def _second_factor(self, password: str) -> None:
        """Administrators must use a second factor (SEC-9): enrol an
        authenticator app's key through the API, then take a token with
        its next code, as a person setting up the CLI would."""
        import pyotp

        begun = self.api("POST", "/api/v1/account/factors/totp", {"name": "bench"})
        totp = pyotp.TOTP(str(begun["secret"]))
        self.api("POST", f"/api/v1/account/factors/totp/{begun['id']}/confirm",
                 {"code": totp.now()})
        code = totp.at(time.time() + 30)  # the enrolment used this step's code
        body = json.dumps({"email": ADMIN_EMAIL, "password": password, "code": code,
                           "scopes": ["transfers:read", "transfers:write", "admin"]}).encode()
        request = urllib.request.Request(f"{self.url}/api/v1/auth/token", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            self.token = json.load(response)["token"]
        # The benchmark times the recipient's link itself, without the
        # one-time code step a person goes through once (a policy any
        # organisation may choose: transfers "without a verification code").
        self.api("PATCH", "/api/v1/organisation", {"allow_unverified_recipients": True})

    def api(self, method: str, path: str, payload: object | None = None) -> dict[str, object]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            raw = response.read()
        return json.loads(raw) if raw else {}
