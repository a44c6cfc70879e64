"""Upload requests ("invitation à déposer").

The requester's side (create, list, show, close, live events), the
received transfers (list, owner download, forward), and the depositors'
side: a personal link's token in the path is the capability; the one-time
code gives a deposit grant that travels in ``X-Coffre-Deposit`` (also to
the tus endpoint, ``coffre.http.tus``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from coffre.audit.trail import Context
from coffre.domain.accounts import Actor
from coffre.domain.limits import MAX_DATABASE_INT
from coffre.domain.policy import Action
from coffre.domain.requests import parse_size
from coffre.domain.transfers import parse_expiry
from coffre.errors import InvalidInput
from coffre.http import deps
from coffre.http.api.events import live_stream
from coffre.http.api.schemas import Access, CodeCheck, RecipientIn, Strict, TransferOut
from coffre.http.downloads import Delivery, base_headers, requested_range, send_timeout, started
from coffre.http.tus import DEPOSIT_HEADER
from coffre.services.deposits import DepositView
from coffre.services.requests import NewRequest, RequestStep, RequestView
from coffre.services.transfers import NewTransfer
from coffre.services.verification import ACCESS_LIFETIME, CodeSent

router = APIRouter(prefix="/api/v1/requests", tags=["requests"])
received_router = APIRouter(prefix="/api/v1", tags=["requests"])
deposit_router = APIRouter(
    prefix="/api/v1/deposit", tags=["deposit"],
    dependencies=[Depends(deps.public("deposit link: the token in the path is the capability"))],
)
Ctx = Annotated[Context, Depends(deps.context)]
Creator = Annotated[Actor, Depends(deps.acting(Action.REQUEST_CREATE))]
Reader = Annotated[Actor, Depends(deps.acting(Action.REQUEST_READ))]
Closer = Annotated[Actor, Depends(deps.acting(Action.REQUEST_CLOSE))]
Lister = Annotated[Actor, Depends(deps.acting(Action.TRANSFER_LIST))]
Downloader = Annotated[Actor, Depends(deps.acting(Action.TRANSFER_DOWNLOAD))]
Forwarder = Annotated[Actor, Depends(deps.acting(Action.TRANSFER_FORWARD))]


class RequestCreate(Strict):
    depositors: list[str | RecipientIn] = Field(
        default_factory=list, max_length=50,
        description='addresses, or {"email", "phone"} for a code by SMS')
    open_link: bool = Field(default=False, description="anyone with the link may deposit")
    message: str = Field(default="", max_length=10_000)
    expires_in: str = Field(default="7d", max_length=20, description="12h, 7d, 2w, 3m")
    max_size: int | str = Field(default="10G", description="total, e.g. 500M, 2G or bytes")
    max_files: int = Field(default=20, ge=1, le=1000)


class RequestEventOut(BaseModel):
    id: int
    kind: str
    time: datetime
    transfer_id: str
    depositor: str | None


class ReceivedOut(TransferOut):
    request_id: str
    received_from: str


class Forward(Strict):
    recipients: list[str | RecipientIn] = Field(min_length=1, max_length=100)
    subject: str = Field(default="", max_length=200)
    message: str = Field(default="", max_length=10_000)
    expires_in: str = Field(default="7d", max_length=20)


class Join(Strict):
    email: str = Field(max_length=254)


class JoinedOut(BaseModel):
    token: str
    url: str
    code: CodeSent


class DepositBody(Strict):
    uploads: list[str] | None = Field(default=None, max_length=1000,
                                      description="completed upload ids (default: all)")


class DepositedOut(BaseModel):
    transfer_id: str


def _event(step: RequestStep) -> RequestEventOut:
    return RequestEventOut.model_validate(step, from_attributes=True)


# -- the requester ------------------------------------------------------------------


@router.post("", status_code=201, summary="Ask named people (or an open link) to deposit files")
def create(body: RequestCreate, actor: Creator, request: Request, ctx: Ctx) -> RequestView:
    expires_in = parse_expiry(body.expires_in)
    if expires_in is None:
        raise InvalidInput("an upload request must expire", field="expires_in")
    depositors = {
        (d if isinstance(d, str) else d.email): (None if isinstance(d, str) else d.phone)
        for d in body.depositors
    }
    new = NewRequest(depositors=depositors, open_link=body.open_link, message=body.message,
                     expires_in=expires_in, max_total_size=parse_size(body.max_size),
                     max_files=body.max_files)
    return deps.coffre(request).requests.create(actor, new, ctx)


@router.get("", summary="Your upload requests")
def list_(actor: Lister, request: Request) -> list[RequestView]:
    return deps.coffre(request).requests.list_own(actor)


@router.get("/{request_id}")
def get(request_id: str, actor: Reader, request: Request, ctx: Ctx) -> RequestView:
    return deps.coffre(request).requests.get(actor, request_id, ctx)


@router.post("/{request_id}/close", summary="Accept no more deposits")
def close(request_id: str, actor: Closer, request: Request, ctx: Ctx) -> RequestView:
    return deps.coffre(request).requests.close(actor, request_id, ctx)


@router.get("/{request_id}/events", summary="Deposits received for this request")
def events(
    request_id: str, actor: Reader, request: Request, ctx: Ctx,
    after: Annotated[int, Query(ge=0, le=MAX_DATABASE_INT,
                                description="only steps with a larger id")] = 0,
) -> list[RequestEventOut]:
    service = deps.coffre(request).requests
    service.open_events(actor, request_id, ctx)
    return [_event(s) for s in service.since(request_id, after)]


@router.get("/{request_id}/events/stream", response_class=EventSourceResponse,
            summary="Deposits as they arrive (Server-Sent Events)")
async def stream(request_id: str, actor: Reader, request: Request,
                 ctx: Ctx) -> EventSourceResponse:
    service = deps.coffre(request).requests
    await to_thread.run_sync(service.open_events, actor, request_id, ctx)
    return live_stream(
        request, Action.REQUEST_READ, "dépôts en direct",
        recheck=lambda current: service.open_events(current, request_id),
        fetch=lambda last: service.since(request_id, last),
        render=lambda step: _event(step).model_dump(mode="json"),
    )


# -- received transfers -------------------------------------------------------------


@received_router.get("/received", summary="Transfers deposited for you")
def received(actor: Lister, request: Request) -> list[ReceivedOut]:
    return [
        ReceivedOut.model_validate({**TransferOut.model_validate(
            r.transfer, from_attributes=True).model_dump(), "request_id": r.request_id,
            "received_from": r.depositor})
        for r in deps.coffre(request).requests.received(actor)
    ]


@received_router.get("/transfers/{transfer_id}/files/{file_id}",
                    summary="Download a file of your own transfer (Range supported)")
@received_router.head("/transfers/{transfer_id}/files/{file_id}", include_in_schema=False)
def owner_file(transfer_id: str, file_id: str, actor: Downloader, request: Request,
               ctx: Ctx) -> Response:
    head = request.method == "HEAD"
    view, etag, lo, hi, body, on_end = deps.coffre(request).requests.open_file(
        actor, transfer_id, file_id, lambda size, tag: requested_range(request, size, tag),
        ctx, body=not head,
    )
    headers = base_headers(view.name)
    headers["ETag"] = etag
    headers["Content-Length"] = str(hi - lo)
    partial = not (lo == 0 and hi == view.size)
    if partial:
        headers["Content-Range"] = f"bytes {lo}-{hi - 1}/{view.size}"
    status = 206 if partial else 200
    if head:
        return Response(status_code=status, headers=headers,
                        media_type="application/octet-stream")
    return Delivery(started(body, on_end), on_end, timeout=send_timeout(request),
                    status_code=status, headers=headers)


@received_router.post("/transfers/{transfer_id}/forward", status_code=201,
                      summary="Send a copy of your transfer's files to new recipients")
def forward(transfer_id: str, body: Forward, actor: Forwarder, request: Request,
            ctx: Ctx) -> TransferOut:
    new = NewTransfer(
        upload_ids=[], recipients=[r if isinstance(r, str) else r.email for r in body.recipients],
        phones={r.email: r.phone for r in body.recipients if not isinstance(r, str) and r.phone},
        subject=body.subject, message=body.message, expires_in=parse_expiry(body.expires_in),
    )
    view = deps.coffre(request).requests.forward(actor, transfer_id, new, ctx)
    return TransferOut.model_validate(view, from_attributes=True)


# -- depositors ---------------------------------------------------------------------


def _grant(request: Request) -> str | None:
    return request.headers.get(DEPOSIT_HEADER)


@deposit_router.get("/{token}", summary="The request, and your own uploads (needs the grant)")
def view(token: str, request: Request) -> DepositView:
    return deps.coffre(request).deposits.view(token, _grant(request))


@deposit_router.post("/{token}/code", status_code=202, summary="Send the depositor a code")
def send_code(token: str, request: Request, ctx: Ctx) -> CodeSent:
    return deps.coffre(request).deposits.send_code(token, ctx)


@deposit_router.post("/{token}/verify", summary="Exchange the code for a deposit grant")
def verify(token: str, body: CodeCheck, request: Request, ctx: Ctx) -> Access:
    access = deps.coffre(request).deposits.verify(token, body.code, ctx)
    return Access(access=access, expires_in=int(ACCESS_LIFETIME.total_seconds()))


@deposit_router.post("/{token}/deposit", status_code=201,
                     summary="Hand your completed uploads over to the requester")
def deposit(token: str, request: Request, ctx: Ctx,
            body: DepositBody | None = None) -> DepositedOut:
    ids = body.uploads if body is not None else None
    return DepositedOut(transfer_id=deps.coffre(request).deposits.deposit(
        token, _grant(request), ids, ctx))


@deposit_router.post("/open/{open_token}/join", status_code=201,
                     summary="Give your address on an open link; a code is sent there")
def join(open_token: str, body: Join, request: Request, ctx: Ctx) -> JoinedOut:
    app = deps.coffre(request)
    joined = app.deposits.join(open_token, body.email, ctx)
    return JoinedOut(token=joined.token, url=app.deposits.deposit_url(joined.token),
                     code=joined.code)
