"""Server-side commands: ``coffre serve``, ``coffre setup``, ``coffre purge``."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from coffre.bootstrap import Coffre, build
from coffre.cli.auth import read_secret
from coffre.cli.client import fail, out
from coffre.errors import CoffreError
from coffre.settings import Settings


def load_settings(data_dir: Path | None = None) -> Settings:
    os.umask(0o077)  # database, blobs, keys, mail: readable by this user only
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if data_dir is not None:
            return Settings(data_dir=data_dir)
        return Settings()
    except CoffreError as exc:
        fail(exc.message)
    except ValueError as exc:
        fail(f"invalid settings: {exc}")


def _setup_link(app: Coffre) -> str | None:
    token = app.accounts.issue_setup_token()
    return f"{app.settings.base_url}/setup/{token}" if token else None


def serve(
    host: Annotated[str | None, typer.Option(help="Listen address")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port")] = None,
    data_dir: Annotated[Path | None, typer.Option(envvar="COFFRE_DATA_DIR")] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, max=64, help="Server processes (more than one needs PostgreSQL)")] = None,
) -> None:
    """Run the server (embedded profile unless the URLs say otherwise)."""
    import uvicorn

    from coffre.http.app import asgi_app

    settings = load_settings(data_dir)
    updates = {k: v for k, v in {"host": host, "port": port, "workers": workers}.items()
               if v is not None}
    settings = settings.model_copy(update=updates)
    if not settings.is_loopback and not settings.behind_tls_proxy:
        fail(
            "refusing plain HTTP on a non-loopback address: put Coffre behind a TLS proxy "
            "and set COFFRE_BEHIND_TLS_PROXY=true"
        )
    if settings.workers > 1 and settings.resolved_database_url.startswith("sqlite"):
        fail("several workers need the distributed profile (COFFRE_DATABASE_URL=postgresql://...)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        app = build(settings)
    except CoffreError as exc:
        fail(exc.message)
    link = _setup_link(app)
    out.print(
        f"Coffre écoute sur http://{settings.host}:{settings.port}  "
        f"(données : {settings.data_dir.resolve()})"
    )
    if link:
        out.print(
            "Première configuration — ouvrez ce lien à usage unique pour créer "
            f"l'administrateur :\n  [bold]{link}[/]"
        )
    else:
        out.print(f"Connexion : [bold]{settings.base_url}/login[/]")
    if app.dev_mailbox is not None:
        out.print(f"Boîte de développement : {settings.base_url}/dev/mailbox")
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": "httptools",
        "loop": "uvloop",
        "access_log": False,
        "log_level": "info",
        "timeout_keep_alive": 30,
        # Never uvicorn's own X-Forwarded-* handling: it would rewrite the
        # client's address from FORWARDED_ALLOW_IPS (an environment
        # variable, "*" in many guides) before ``http.deps.source`` sees
        # it. That one parser alone decides, from COFFRE_TRUSTED_PROXIES;
        # the scheme is COFFRE_BASE_URL's.
        "proxy_headers": False,
        "server_header": False,
    }
    if settings.workers > 1:
        app.close()
        _serve_workers(settings, options)
        return
    try:
        uvicorn.Server(uvicorn.Config(asgi_app(app), **options)).run()
    finally:
        app.close()


def _serve_workers(settings: Settings, options: dict[str, Any]) -> None:
    """uvicorn's process manager: each worker builds its own Coffre (and
    live-event listener) from the same settings, passed on in the
    environment; counters are shared through prometheus-client's
    multiprocess directory, emptied at start and removed at exit."""
    import uvicorn

    os.environ.update({
        "COFFRE_HOST": settings.host, "COFFRE_PORT": str(settings.port),
        "COFFRE_DATA_DIR": str(settings.data_dir.resolve()),
    })
    with tempfile.TemporaryDirectory(prefix="coffre-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        out.print(f"{settings.workers} processus de service")
        uvicorn.run("coffre.http.app:worker_app", factory=True, workers=settings.workers,
                    **options)


def setup(
    email: Annotated[str | None, typer.Option(help="Administrator e-mail")] = None,
    password_file: Annotated[Path | None, typer.Option(help="File holding the password")] = None,
    organisation: Annotated[str, typer.Option(help="Organisation name")] = "Mon organisation",
    name: Annotated[str, typer.Option(help="Administrator's name")] = "",
    data_dir: Annotated[Path | None, typer.Option(envvar="COFFRE_DATA_DIR")] = None,
) -> None:
    """Create the first administrator (or, without --email, print a setup link)."""
    app = build(load_settings(data_dir))
    try:
        if email is None:
            link = _setup_link(app)
            if link is None:
                fail("Coffre is already set up")
            out.print(link)
            return
        password = read_secret(password_file, "Mot de passe")
        try:
            user = app.accounts.complete_setup(None, email, password, organisation, name)
        except CoffreError as exc:
            fail(exc.message)
        out.print(f"Administrateur {user.email} créé. Connectez-vous avec `coffre login`.")
    finally:
        app.close()


def purge(data_dir: Annotated[Path | None, typer.Option(envvar="COFFRE_DATA_DIR")] = None) -> None:
    """Destroy expired transfers and abandoned uploads now."""
    from coffre.jobs.scheduler import run_purge

    app = build(load_settings(data_dir))
    try:
        transfers, uploads = asyncio.run(run_purge(app))
    finally:
        app.close()
    out.print(f"{transfers} transfert(s) et {uploads} dépôt(s) détruits.")
