"""The ASGI application: routers, error handlers, middleware, jobs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from anyio import to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from coffre import __version__
from coffre.bootstrap import Coffre
from coffre.http import backup, deps, errors, metrics, tus
from coffre.http.api import (
    accounts,
    audit,
    auth,
    backups,
    contacts,
    events,
    links,
    organisations,
    passwords,
    requests,
    transfers,
)
from coffre.http.backup_bodies import BodyBudget
from coffre.http.middleware import BodyLimit, SecurityHeaders, TrustedHosts
from coffre.http.web import (
    backup_pages,
    deposit_pages,
    error_pages,
    guard,
    language,
    pages,
    password_pages,
    request_pages,
)
from coffre.http.web.account_pages import router as account_pages_router
from coffre.http.web.admin_pages import router as admin_pages_router
from coffre.http.web.audit_pages import router as audit_pages_router
from coffre.http.web.contact_pages import router as contacts_pages_router
from coffre.http.web.signin_pages import router as signin_pages_router
from coffre.http.web.transfer_pages import router as transfer_pages_router
from coffre.jobs import scheduler


def create_app(coffre: Coffre, *, run_jobs: bool = True) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(scheduler.run_forever(coffre)) if run_jobs else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # Backup reads and refusals counted in memory reach their
            # sessions (and the audit trail) before the process ends.
            with contextlib.suppress(Exception):
                await to_thread.run_sync(coffre.backups.flush_activity)
            # Likewise the refusals folded into windows not yet closed.
            with contextlib.suppress(Exception):
                await to_thread.run_sync(lambda: coffre.denials.flush(everything=True))

    app = FastAPI(
        title="Coffre",
        version=__version__,
        summary="Send, receive, share and back up health data, encrypted at rest.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.coffre = coffre
    app.state.backup_bodies = BodyBudget(
        coffre.settings.backup_body_budget, coffre.settings.backup_bodies_per_credential,
        coffre.settings.backup_body_idle_seconds)
    app.state.metrics = metrics.Metrics()
    errors.install(app, error_pages.render_error)
    guard.install(app)
    for router in (accounts.router, auth.router, transfers.router, links.router, tus.router,
                   pages.router, organisations.router):
        app.include_router(router)
    app.include_router(events.router)
    for router in (requests.router, requests.received_router, requests.deposit_router,
                   deposit_pages.router):
        app.include_router(router)
    app.include_router(audit.router)
    app.include_router(contacts.router)
    app.include_router(language.router)
    for router in (contacts_pages_router, admin_pages_router, audit_pages_router):
        app.include_router(router)
    app.include_router(request_pages.router)
    app.include_router(signin_pages_router)
    app.include_router(account_pages_router)
    app.include_router(passwords.router)
    app.include_router(password_pages.public_router)
    app.include_router(password_pages.router)
    app.include_router(transfer_pages_router)
    app.include_router(metrics.router)
    app.include_router(backup.router)
    app.include_router(backups.router)
    app.include_router(backup_pages.router)
    app.mount(
        "/static", StaticFiles(directory=Path(pages.__file__).parent / "static"), name="static"
    )

    favicon = Path(pages.__file__).parent / "static" / "favicon.ico"

    @app.get("/favicon.ico", include_in_schema=False,
             dependencies=[Depends(deps.public("the site's icon, the same for everyone"))])
    async def favicon_ico() -> FileResponse:
        """Browsers ask for it on every site (pages link the SVG icon)."""
        return FileResponse(favicon, media_type="image/x-icon",
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        def check() -> dict[str, str]:
            result = {}
            try:
                with coffre.db.session() as session:
                    session.execute(text("SELECT 1"))
                result["database"] = "ok"
            except Exception:  # noqa: BLE001 - readiness reports, never raises
                result["database"] = "unavailable"
            try:
                coffre.store.exists("readyz-probe")
                result["storage"] = "ok"
            except Exception:  # noqa: BLE001
                result["storage"] = "unavailable"
            return result

        checks = await to_thread.run_sync(check)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/transfers", status_code=303)  # a browser: the dashboard
        return JSONResponse(
            {
                "name": "Coffre",
                "version": __version__,
                "api": "/api/v1/",
                "openapi": "/api/openapi.json",
            }
        )

    hsts = coffre.settings.base_url.startswith("https://")
    served = TrustedHosts(BodyLimit(tus.MethodOverride(app)), coffre.settings.host_names)
    wrapped = metrics.Measured(SecurityHeaders(served, hsts=hsts), app.state.metrics)
    app.state.asgi = wrapped
    return app


def asgi_app(coffre: Coffre, *, run_jobs: bool = True) -> metrics.Measured:
    """The application with its outer middleware, as served."""
    app = create_app(coffre, run_jobs=run_jobs)
    asgi: metrics.Measured = app.state.asgi
    return asgi


def worker_app() -> metrics.Measured:
    """One worker of ``coffre serve --workers N`` (a uvicorn factory): its
    own settings, adapters, scheduler and live-event listener; the serve
    command has already migrated the database."""
    from coffre.bootstrap import build
    from coffre.settings import Settings

    return asgi_app(build(Settings(), migrate=False))
