"""Senders' side of transfers."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor
from coffre.domain.policy import Action
from coffre.domain.transfers import parse_expiry
from coffre.errors import InvalidInput
from coffre.http import deps
from coffre.http.api.schemas import Extend, HoldRequest, TransferCreate, TransferOut
from coffre.services.transfers import NewTransfer, TransferView

router = APIRouter(prefix="/api/v1/transfers", tags=["transfers"])
Actor_ = Annotated[Actor, Depends(deps.actor)]
Creator = Annotated[Actor, Depends(deps.acting(Action.TRANSFER_CREATE))]
Lister = Annotated[Actor, Depends(deps.acting(Action.TRANSFER_LIST))]
Reader = Annotated[Actor, Depends(deps.acting(Action.TRANSFER_READ))]
Manager = Annotated[Actor, Depends(deps.acting(Action.TRANSFER_MANAGE))]
Deleter = Annotated[Actor, Depends(deps.acting(Action.TRANSFER_DELETE))]
Holder = Annotated[Actor, Depends(deps.acting(Action.TRANSFER_HOLD))]
Ctx = Annotated[Context, Depends(deps.context)]


def _out(view: TransferView) -> TransferOut:
    return TransferOut.model_validate(view, from_attributes=True)


def _storage(expires_in: str | None, mode: str | None) -> tuple[timedelta | None, bool]:
    """(lifetime, permanent) from ``expires_in`` and ``mode``; a lifetime of
    None on a temporary transfer means the organisation's default."""
    lifetime = parse_expiry(expires_in) if expires_in is not None else None
    forever = expires_in is not None and lifetime is None
    if mode == "temporary" and forever:
        raise InvalidInput("a temporary transfer needs an expiry, not 'permanent'",
                           field="expires_in")
    if mode == "permanent" and lifetime is not None:
        raise InvalidInput("a permanent transfer has no expiry", field="expires_in")
    return lifetime, forever or mode == "permanent"


@router.post("", status_code=201, summary="Create a transfer from completed uploads")
def create(body: TransferCreate, actor: Creator, request: Request, ctx: Ctx) -> TransferOut:
    emails = [r if isinstance(r, str) else r.email for r in body.recipients]
    phones = {r.email: r.phone for r in body.recipients if not isinstance(r, str) and r.phone}
    expires_in, permanent = _storage(body.expires_in, body.mode)
    new = NewTransfer(
        upload_ids=body.files,
        recipients=emails,
        phones=phones,
        verify_recipients=body.verify_recipients,
        message=body.message,
        subject=body.subject,
        expires_in=expires_in,
        permanent=permanent,
        max_downloads=body.max_downloads,
        password=body.password,
        notify_on_download=body.notify_on_download,
    )
    return _out(deps.coffre(request).transfers.create(actor, new, ctx))


@router.get("")
def list_(actor: Lister, request: Request) -> list[TransferOut]:
    return [_out(v) for v in deps.coffre(request).transfers.list_sent(actor)]


@router.get("/{transfer_id}")
def get(transfer_id: str, actor: Reader, request: Request, ctx: Ctx) -> TransferOut:
    return _out(deps.coffre(request).transfers.get(actor, transfer_id, ctx))


@router.post("/{transfer_id}/revoke")
def revoke(transfer_id: str, actor: Manager, request: Request, ctx: Ctx) -> TransferOut:
    return _out(deps.coffre(request).transfers.revoke(actor, transfer_id, ctx))


@router.post(
    "/{transfer_id}/recipients/{recipient_id}/revoke",
    summary="Revoke one recipient's link (the other recipients keep theirs)",
    responses={404: {"description": "No such transfer of yours, or no such recipient in it"},
               410: {"description": "The transfer has been deleted"}},
)
def revoke_recipient(transfer_id: str, recipient_id: str, actor: Manager, request: Request,
                     ctx: Ctx) -> TransferOut:
    """The recipient's link answers 410 (``reason: revoked``) at once, as a
    revoked transfer's; idempotent. Their state becomes ``revoked``."""
    return _out(deps.coffre(request).transfers.revoke_recipient(actor, transfer_id,
                                                                recipient_id, ctx))


@router.post("/{transfer_id}/extend", responses={
    409: {"description": "The transfer is revoked (reason: revoked), or under legal hold "
                         "and the new expiry is earlier (reason: legal_hold)"}})
def extend(
    transfer_id: str, body: Extend, actor: Manager, request: Request, ctx: Ctx
) -> TransferOut:
    return _out(
        deps.coffre(request).transfers.extend(
            actor, transfer_id, parse_expiry(body.expires_in), ctx
        )
    )


@router.post("/{transfer_id}/hold", summary="Place a legal hold (administrators)")
def hold(
    transfer_id: str, body: HoldRequest, actor: Holder, request: Request, ctx: Ctx
) -> TransferOut:
    return _out(deps.coffre(request).transfers.hold(actor, transfer_id, body.reason, ctx))


@router.delete("/{transfer_id}/hold", summary="Lift a legal hold (administrators)")
def release(
    transfer_id: str, body: HoldRequest, actor: Holder, request: Request, ctx: Ctx
) -> TransferOut:
    return _out(deps.coffre(request).transfers.release(actor, transfer_id, body.reason, ctx))


@router.delete("/{transfer_id}", status_code=204)
def delete(transfer_id: str, actor: Deleter, request: Request, ctx: Ctx) -> Response:
    deps.coffre(request).transfers.delete(actor, transfer_id, ctx)
    return Response(status_code=204)
