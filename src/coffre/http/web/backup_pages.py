"""Backup pages: the reader's devices (an administrator's: the
organisation's) with their usage and last backup, registering a device,
a device's detail, revoking it, and a maintenance credential for
administrators (after step-up, as the JSON API asks).

Thin, like the API handlers (``http.api.backups``): parse the form, call
``BackupService`` (which authorises), render. A device's secret and a
maintenance secret are shown once (``Cache-Control: no-store``): a
device's on the page its registration redirects to (``http.web.flash``),
a maintenance key's in the answer to the POST that made it; never in a
URL, a log or the browser's storage (SEC-27). The maintenance form has a page of its own (a GET) so
that the step-up on ``/reauth`` comes back to it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from anyio import to_thread
from fastapi import Depends, Query, Request, Response

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor, Role
from coffre.domain.backups import MAINTENANCE_DEFAULT, MAINTENANCE_MAX
from coffre.domain.policy import Action
from coffre.domain.requests import parse_size
from coffre.errors import InvalidInput
from coffre.http import deps
from coffre.http.web import flash, guard
from coffre.http.web.forms import small_form
from coffre.http.web.i18n import N_, _, pick
from coffre.http.web.templating import page_router, render
from coffre.services.backups import DeviceView

router = page_router()
Ctx = Annotated[Context, Depends(deps.context)]
Lister = Annotated[Actor, Depends(guard.page(Action.BACKUP_LIST))]
Reader = Annotated[Actor, Depends(guard.page(Action.BACKUP_READ))]
Registrar = Annotated[Actor, Depends(guard.page(Action.BACKUP_REGISTER))]
Revoker = Annotated[Actor, Depends(guard.page(Action.BACKUP_REVOKE))]
Maintainer = Annotated[Actor, Depends(guard.page(Action.BACKUP_MAINTAIN))]

_DONE = {"revoked": N_("Device revoked: its credential no longer opens the repository.")}
#: What a folder to back up looks like in the example command.
EXAMPLE_FOLDER = "~/Documents"
KEEP_LAST = 7


def _now(request: Request) -> datetime:
    moment = deps.coffre(request).backups.clock.now()
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def quiet_days(device: DeviceView, now: datetime) -> int:
    """Whole days since the last snapshot (or the registration, if none)."""
    since = device.last_snapshot_at or device.created_at
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return max((now - since).days, 0)


def _list(request: Request, actor: Actor, status: int = 200,
          error: tuple[str, str] | None = None,
          values: dict[str, str] | None = None, notice: str | None = None) -> Response:
    devices = deps.coffre(request).backups.devices(actor)
    return render(request, "backups/list.html", {
        "devices": devices, "now": _now(request), "quiet_days": quiet_days,
        "admin": actor.role is Role.ADMIN, "error": error, "values": values or {},
        "notice": notice,
    }, status=status, actor=actor)


@router.get("/backups")
async def backups(request: Request, actor: Lister,
                  done: Annotated[str, Query(max_length=20)] = "") -> Response:
    notice = pick(_DONE, done)
    return await to_thread.run_sync(lambda: _list(request, actor, notice=notice))


@router.post("/backups")
async def register(request: Request, actor: Registrar, ctx: Ctx) -> Response:
    form = await small_form(request)
    values = {"name": str(form.get("name", ""))[:200], "quota": str(form.get("quota", ""))[:40]}
    service = deps.coffre(request).backups
    try:
        quota = parse_size(values["quota"], "quota") if values["quota"].strip() else None
    except InvalidInput:
        error = ("quota", _("Write a quota such as 500 GB, 2 TB or 1.5 TB."))
        return await to_thread.run_sync(lambda: _list(request, actor, 400, error, values))
    try:
        device, credential = await to_thread.run_sync(
            lambda: service.register_device(actor, values["name"], quota, ctx))
    except InvalidInput as exc:
        error = (("quota", _("A quota must be a positive size."))
                 if exc.details.get("field") == "quota"
                 else ("name", _("Give the device a name of 1 to 100 characters.")))
        return await to_thread.run_sync(lambda: _list(request, actor, 400, error, values))
    # Then to a page of its own (a reload registers no second device); the
    # secret is handed to it once, sealed to this session (never in the URL).
    page = f"/backups/{device.id}/registered"
    response = guard.redirect(request, page)
    shown = {"url": credential.url, "username": credential.username,
             "secret": credential.secret, "restic_repository": credential.restic_repository}
    if not flash.put(request, response, page, {"credential": shown}):
        return _registered(request, actor, device, shown, status=201)
    return response


def _registered(request: Request, actor: Actor, device: DeviceView, credential: dict[str, str],
                status: int = 200) -> Response:
    repository = credential["restic_repository"]
    return render(request, "backups/created.html", {
        "device": device, "credential": credential,
        "init": f"restic -r {repository} init",
        "backup": f"restic -r {repository} backup {EXAMPLE_FOLDER}",
    }, status=status, actor=actor)


@router.get("/backups/{device_id}/registered")
async def registered(device_id: str, request: Request, actor: Reader) -> Response:
    """The device's secret, once, right after it was registered; later,
    the device's page (the secret is not kept)."""
    shown = flash.take(request, request.url.path).get("credential")
    if not isinstance(shown, dict):
        return guard.redirect(request, f"/backups/{device_id}")
    found = await to_thread.run_sync(deps.coffre(request).backups.device, actor, device_id)
    return flash.spent(request, _registered(request, actor, found,
                                            {k: str(v) for k, v in shown.items()}))


@router.get("/backups/{device_id}")
async def device(device_id: str, request: Request, actor: Reader,
                 done: Annotated[str, Query(max_length=20)] = "") -> Response:
    found = await to_thread.run_sync(deps.coffre(request).backups.device, actor, device_id)
    return render(request, "backups/device.html", {
        "device": found, "now": _now(request), "quiet_days": quiet_days,
        "admin": actor.role is Role.ADMIN, "notice": pick(_DONE, done),
    }, actor=actor)


@router.post("/backups/{device_id}/revoke")
async def revoke(device_id: str, request: Request, actor: Revoker, ctx: Ctx) -> Response:
    service = deps.coffre(request).backups
    await to_thread.run_sync(lambda: service.revoke_device(actor, device_id, ctx))
    return guard.redirect(request, f"/backups/{device_id}?done=revoked")


def _maintenance_form(request: Request, actor: Actor, found: DeviceView, status: int = 200,
                      error: tuple[str, str] | None = None, hours: str = "") -> Response:
    default = int(MAINTENANCE_DEFAULT.total_seconds() // 3600)
    return render(request, "backups/maintenance.html", {
        "device": found, "error": error, "hours": hours or str(default),
        "max_hours": int(MAINTENANCE_MAX.total_seconds() // 3600),
    }, status=status, actor=actor)


@router.get("/backups/{device_id}/maintenance")
async def maintenance_page(device_id: str, request: Request, actor: Maintainer) -> Response:
    found = await to_thread.run_sync(deps.coffre(request).backups.device, actor, device_id)
    return _maintenance_form(request, actor, found)


@router.post("/backups/{device_id}/maintenance")
async def maintenance_key(device_id: str, request: Request, actor: Maintainer,
                          ctx: Ctx) -> Response:
    form = await small_form(request)
    hours = str(form.get("hours", "")).strip()[:10]
    service = deps.coffre(request).backups
    found = await to_thread.run_sync(service.device, actor, device_id)
    try:
        lifetime = float(hours.replace(",", "."))
        if not 1 <= lifetime <= MAINTENANCE_MAX.total_seconds() / 3600:
            raise ValueError(hours)
    except ValueError:
        error = ("hours", _("Choose a lifetime of 1 to 24 hours."))
        return _maintenance_form(request, actor, found, 400, error, hours)
    issued = await to_thread.run_sync(
        lambda: service.issue_maintenance_key(actor, device_id, lifetime, ctx))
    # As for a device's secret: a page of its own, the key handed to it once.
    page = f"/backups/{device_id}/maintenance/issued"
    response = guard.redirect(request, page)
    shown = {"username": issued.username, "secret": issued.secret,
             "restic_repository": issued.restic_repository,
             "expires_at": issued.expires_at.isoformat() if issued.expires_at else None}
    if not flash.put(request, response, page, {"credential": shown}):
        return _maintenance_issued(request, actor, found, shown, status=201)
    return response


def _maintenance_issued(request: Request, actor: Actor, found: DeviceView,
                        credential: dict[str, Any], status: int = 200) -> Response:
    expires = credential.get("expires_at")
    context: dict[str, Any] = {
        "device": found,
        "credential": {**credential,
                       "expires_at": datetime.fromisoformat(expires) if expires else None},
        "forget": f"restic -r {credential['restic_repository']} forget --keep-last {KEEP_LAST}"
                  " --prune",
        "keep_last": KEEP_LAST,
    }
    return render(request, "backups/maintenance_created.html", context, status=status,
                  actor=actor)


@router.get("/backups/{device_id}/maintenance/issued")
async def maintenance_issued(device_id: str, request: Request, actor: Maintainer) -> Response:
    """The maintenance key, once, right after it was issued; later, the
    device's page (the secret is not kept)."""
    shown = flash.take(request, request.url.path).get("credential")
    if not isinstance(shown, dict):
        return guard.redirect(request, f"/backups/{device_id}")
    found = await to_thread.run_sync(deps.coffre(request).backups.device, actor, device_id)
    return flash.spent(request, _maintenance_issued(request, actor, found, shown))
