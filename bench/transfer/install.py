"""Install what the benchmark needs when it is missing: nginx (Debian),
the reference tus server (npm, pinned in bench/package-lock.json), py-spy
and optionally granian (PyPI, into the running venv)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], **kwargs: object) -> None:
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def nginx() -> str:
    """Path of an nginx binary with the dav module (PUT)."""
    found = shutil.which("nginx")
    if found is None and Path("/usr/sbin/nginx").exists():
        found = "/usr/sbin/nginx"  # root's PATH may lack sbin
    if found is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise SystemExit("nginx is missing: install nginx-light (Debian) and run again")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-qq"], env=env)
        try:
            _run(["apt-get", "install", "-y", "-qq", "nginx-light"], env=env)
        except subprocess.CalledProcessError:
            _run(["apt-get", "install", "-y", "-qq", "nginx"], env=env)
        found = shutil.which("nginx") or "/usr/sbin/nginx"
    version = subprocess.run([found, "-V"], capture_output=True, text=True, check=True).stderr
    if "http_dav_module" not in version:
        raise SystemExit(f"{found} lacks the dav module (PUT); install Debian's nginx-light")
    return found


def tus_reference() -> Path:
    """bench/tus-reference.mjs with its node_modules installed from the lock file."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit("node and npm are needed for the reference tus server")
    lock = BENCH / "package-lock.json"
    stamp = BENCH / "node_modules" / ".bench-installed"
    wanted = hashlib.sha256(lock.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=BENCH)
        stamp.write_text(wanted)
    return BENCH / "tus-reference.mjs"


def _pip(package: str) -> None:
    _run([sys.executable, "-m", "pip", "install", "--quiet", package])


def py_spy() -> str | None:
    """The py-spy binary (installed into this venv if missing), or None."""
    candidate = VENV_BIN / "py-spy"
    if not candidate.exists() and shutil.which("py-spy") is None:
        try:
            _pip("py-spy")
        except subprocess.CalledProcessError:
            log("could not install py-spy: profiles skipped")
            return None
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def granian() -> str | None:
    """The granian binary (installed into this venv if missing), or None."""
    if importlib.util.find_spec("granian") is None:
        try:
            _pip("granian")
        except subprocess.CalledProcessError:
            log("could not install granian: variant skipped")
            return None
    candidate = VENV_BIN / "granian"
    return str(candidate) if candidate.exists() else shutil.which("granian")
