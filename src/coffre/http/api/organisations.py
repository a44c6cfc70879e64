"""The organisation's policy, its members and invitations to join it.

Thin: parse, call ``OrganisationService`` (which authorises), render.
The invitation token travels in request bodies only, never in an API path.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor
from coffre.domain.limits import Usage
from coffre.domain.policy import Action
from coffre.http import deps
from coffre.http.api.schemas import (
    InvitationAccept,
    InvitationCreate,
    Me,
    MemberUpdate,
    MemberUsageOut,
    OrganisationUpdate,
    SessionsEnded,
    UsageOut,
    UsageReportOut,
)
from coffre.services.organisations import (
    LIMIT_FIELDS,
    InvitationInfo,
    MemberInfo,
    OrganisationInfo,
)

router = APIRouter(prefix="/api/v1", tags=["organisation"])
Ctx = Annotated[Context, Depends(deps.context)]
Reader = Annotated[Actor, Depends(deps.acting(Action.ACCOUNT_READ))]
Lister = Annotated[Actor, Depends(deps.acting(Action.MEMBER_LIST))]
Inviter = Annotated[Actor, Depends(deps.acting(Action.MEMBER_INVITE))]
Manager = Annotated[Actor, Depends(deps.acting(Action.MEMBER_MANAGE))]
OrganisationManager = Annotated[Actor, Depends(deps.acting(Action.ORGANISATION_MANAGE))]
UsageReader = Annotated[Actor, Depends(deps.acting(Action.USAGE_READ))]


@router.post("/invitations", status_code=201, summary="Invite someone by mail (administrators)")
def invite(body: InvitationCreate, actor: Inviter, request: Request, ctx: Ctx) -> InvitationInfo:
    info = deps.coffre(request).organisations.invite(actor, body.email, body.role, ctx)
    return info


@router.get("/invitations", summary="Pending invitations (administrators)")
def invitations(actor: Lister, request: Request) -> list[InvitationInfo]:
    return deps.coffre(request).organisations.pending_invitations(actor)


@router.post(
    "/invitations/accept",
    status_code=201,
    summary="Join with an invitation token",
    dependencies=[Depends(deps.public("one-time invitation token in the body"))],
)
def accept(body: InvitationAccept, request: Request, ctx: Ctx) -> Me:
    user = deps.coffre(request).organisations.accept(
        body.token, body.password, body.display_name, ctx
    )
    return Me(id=user.id, email=user.email, display_name=user.display_name, role=user.role,
              organisation_id=user.organisation_id, scopes=[])


@router.delete("/invitations/{invitation_id}", status_code=204, summary="Revoke an invitation")
def revoke(invitation_id: str, actor: Inviter, request: Request, ctx: Ctx) -> Response:
    deps.coffre(request).organisations.revoke_invitation(actor, invitation_id, ctx)
    return Response(status_code=204)


@router.get("/members", summary="Members of the organisation (administrators)")
def members(actor: Lister, request: Request) -> list[MemberInfo]:
    return deps.coffre(request).organisations.members(actor)


@router.patch("/members/{member_id}", summary="Change a member's role, disable or enable them")
def update_member(
    member_id: str, body: MemberUpdate, actor: Manager, request: Request, ctx: Ctx
) -> MemberInfo:
    info = deps.coffre(request).organisations.update_member(
        actor, member_id, ctx, role=body.role, disabled=body.disabled
    )
    return info


@router.delete("/members/{member_id}/sessions", summary="End every session of a member")
def end_sessions(member_id: str, actor: Manager, request: Request, ctx: Ctx) -> SessionsEnded:
    ended = deps.coffre(request).organisations.end_sessions(actor, member_id, ctx)
    return SessionsEnded(sessions_ended=ended)


@router.get("/organisation", summary="The organisation and its policy")
def organisation(actor: Reader, request: Request) -> OrganisationInfo:
    return deps.coffre(request).organisations.organisation(actor)


@router.patch("/organisation", summary="Change the organisation's name or policy (administrators)")
def update_organisation(
    body: OrganisationUpdate, actor: OrganisationManager, request: Request, ctx: Ctx
) -> OrganisationInfo:
    info = deps.coffre(request).organisations.update_organisation(
        actor,
        ctx,
        name=body.name,
        require_mfa=body.require_mfa,
        allow_unverified_recipients=body.allow_unverified_recipients,
        block_executables=body.block_executables,
        discreet_mail=body.discreet_mail,
        limits={k: getattr(body, k) for k in body.model_fields_set if k in LIMIT_FIELDS},
    )
    return info


@router.get("/usage", summary="Storage used and quotas (the organisation's for administrators)")
def usage(actor: UsageReader, request: Request) -> UsageReportOut:
    report = deps.coffre(request).quotas.report(actor)

    def one(u: Usage) -> UsageOut:
        return UsageOut(used=u.used, limit=u.limit, free=u.free)

    return UsageReportOut(
        user=one(report.user),
        organisation=one(report.organisation) if report.organisation else None,
        members=[MemberUsageOut(**m.__dict__) for m in report.members]
        if report.members is not None else None,
        storage_location=report.storage_location,
    )
