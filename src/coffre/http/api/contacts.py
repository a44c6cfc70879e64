"""Contacts: personal contacts and the organisation's directory.

Thin: parse, call ``ContactService`` (which authorises), render. Imports
take the file itself as the request body (``text/vcard`` or ``text/csv``),
within the 1 MiB body limit of every non-tus route: about 4,000 vCards.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor
from coffre.domain.contacts import Card
from coffre.domain.policy import Action
from coffre.http import deps
from coffre.services.contacts import ContactView

router = APIRouter(prefix="/api/v1/contacts", tags=["contacts"])
Reader = Annotated[Actor, Depends(deps.acting(Action.CONTACT_READ))]
Writer = Annotated[Actor, Depends(deps.acting(Action.CONTACT_WRITE))]
Ctx = Annotated[Context, Depends(deps.context)]
Scope = Literal["all", "personal", "shared"]
_Text = Field(default="", max_length=400)


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=254)
    name: str = _Text
    phone: str = _Text
    profession: str = _Text
    rpps: str = _Text
    organisation: str = _Text
    #: In the organisation's directory (administrators) rather than one's own.
    shared: bool = False


class ContactUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str | None = Field(default=None, max_length=254)
    name: str | None = Field(default=None, max_length=400)
    phone: str | None = Field(default=None, max_length=400)
    profession: str | None = Field(default=None, max_length=400)
    rpps: str | None = Field(default=None, max_length=400)
    organisation: str | None = Field(default=None, max_length=400)


class RejectedLine(BaseModel):
    line: int
    reason: str


class ImportOut(BaseModel):
    format: str
    created: int
    updated: int
    rejected: list[RejectedLine]
    dry_run: bool


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    recipients: list[str] = Field(min_length=1, max_length=100)


class ResolvedOut(BaseModel):
    query: str
    email: str
    name: str
    phone: str | None


class ResolveOut(BaseModel):
    recipients: list[ResolvedOut]


@router.get("", summary="Search contacts by the start of a name or address, most used first")
def search(
    actor: Reader,
    request: Request,
    q: Annotated[str, Query(max_length=200)] = "",
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    scope: Scope = "all",
) -> list[ContactView]:
    return deps.coffre(request).contacts.search(actor, q, limit, scope)


@router.post("", status_code=201, summary="Add a contact (shared: to the directory)")
def create(body: ContactIn, actor: Writer, request: Request, ctx: Ctx) -> ContactView:
    card = Card(name=body.name, phone=body.phone, profession=body.profession, rpps=body.rpps,
                organisation=body.organisation)
    return deps.coffre(request).contacts.create(actor, body.email, card, ctx,
                                                shared=body.shared)


@router.post("/import", summary="Import a vCard or CSV file (the request body)")
async def import_(
    actor: Writer,
    request: Request,
    ctx: Ctx,
    format: Literal["vcard", "csv"] | None = None,
    shared: bool = False,
    dry_run: bool = False,
) -> ImportOut:
    data = await request.body()
    if format is None:
        kind = request.headers.get("content-type", "")
        format = "vcard" if "vcard" in kind else "csv" if "csv" in kind else None
    report = await run_in_threadpool(
        deps.coffre(request).contacts.import_file, actor, data, ctx,
        format=format, shared=shared, dry_run=dry_run,
    )
    return ImportOut(format=report.format, created=report.created, updated=report.updated,
                     rejected=[RejectedLine(line=r.line, reason=r.reason)
                               for r in report.rejected],
                     dry_run=report.dry_run)


@router.get("/export.vcf", summary="Export contacts as vCard 3.0")
def export(actor: Reader, request: Request, ctx: Ctx, scope: Scope = "all") -> Response:
    count, text = deps.coffre(request).contacts.export(actor, ctx, scope)
    return Response(
        text.encode(),
        media_type="text/vcard; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="contacts.vcf"',
                 "X-Coffre-Count": str(count)},
    )


@router.post("/resolve", summary="Turn names or addresses into recipients (address, phone)")
def resolve(body: ResolveIn, actor: Reader, request: Request) -> ResolveOut:
    found = deps.coffre(request).contacts.resolve(actor, body.recipients)
    return ResolveOut(recipients=[ResolvedOut(**r.__dict__) for r in found])


@router.get("/{contact_id}", summary="One contact")
def get(contact_id: str, actor: Reader, request: Request) -> ContactView:
    return deps.coffre(request).contacts.get(actor, contact_id)


@router.patch("/{contact_id}", summary="Change a contact")
def update(contact_id: str, body: ContactUpdate, actor: Writer, request: Request,
           ctx: Ctx) -> ContactView:
    changes = body.model_dump(exclude_unset=True)
    return deps.coffre(request).contacts.update(actor, contact_id, ctx, **changes)


@router.delete("/{contact_id}", status_code=204, summary="Delete a contact")
def delete(contact_id: str, actor: Writer, request: Request, ctx: Ctx) -> Response:
    deps.coffre(request).contacts.delete(actor, contact_id, ctx)
    return Response(status_code=204)
