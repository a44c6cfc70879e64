"""Backup devices: register one (a repository and its append-only restic
credential, shown once), list them with their state, revoke one, and
issue a short-lived maintenance credential (administrators, step-up).
The repositories themselves speak restic's protocol (``http.backup``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action
from coffre.domain.requests import parse_size
from coffre.http import deps
from coffre.http.api.schemas import Strict
from coffre.services.backups import DeviceView, IssuedCredential

router = APIRouter(prefix="/api/v1/backup", tags=["backup"])
Ctx = Annotated[Context, Depends(deps.context)]
Lister = Annotated[Actor, Depends(deps.acting(Action.BACKUP_LIST))]
Reader = Annotated[Actor, Depends(deps.acting(Action.BACKUP_READ))]
Registrar = Annotated[Actor, Depends(deps.acting(Action.BACKUP_REGISTER))]
Revoker = Annotated[Actor, Depends(deps.acting(Action.BACKUP_REVOKE))]
Maintainer = Annotated[Actor, Depends(deps.acting(Action.BACKUP_MAINTAIN))]


class DeviceCreate(Strict):
    name: str = Field(max_length=100, description='e.g. "Cabinet poste accueil"')
    quota: int | str | None = Field(default=None, description="500G, 2T or bytes (optional)")


class MaintenanceCreate(Strict):
    hours: float | None = Field(default=None, gt=0, le=24,
                                description="lifetime, 2 hours unless given (24 at most)")


@dataclass(frozen=True)
class DeviceRegistered:
    device: DeviceView
    credential: IssuedCredential


@router.post("/devices", status_code=201,
             summary="Register a device: its repository and restic credential (shown once)")
def register(body: DeviceCreate, actor: Registrar, request: Request,
             ctx: Ctx) -> DeviceRegistered:
    quota = None if body.quota is None else parse_size(body.quota, "quota")
    device, credential = deps.coffre(request).backups.register_device(
        actor, body.name, quota, ctx)
    return DeviceRegistered(device, credential)


@router.get("/devices", summary="Your devices (an administrator's: the organisation's)")
def list_(actor: Lister, request: Request) -> list[DeviceView]:
    return deps.coffre(request).backups.devices(actor)


@router.get("/devices/{device_id}", summary="A device: usage, objects, last backup")
def get(device_id: str, actor: Reader, request: Request) -> DeviceView:
    return deps.coffre(request).backups.device(actor, device_id)


@router.delete("/devices/{device_id}", summary="Revoke a device's credential (backups stay)")
def revoke(device_id: str, actor: Revoker, request: Request, ctx: Ctx) -> DeviceView:
    return deps.coffre(request).backups.revoke_device(actor, device_id, ctx)


@router.post("/devices/{device_id}/maintenance-keys", status_code=201,
             summary="A credential that may prune, for a few hours (administrators)")
def maintenance_key(device_id: str, body: MaintenanceCreate, actor: Maintainer,
                    request: Request, ctx: Ctx) -> IssuedCredential:
    return deps.coffre(request).backups.issue_maintenance_key(actor, device_id, body.hours,
                                                              ctx)
