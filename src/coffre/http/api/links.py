"""Recipients' side: a personal link's files, one-time code, password
unlock, downloads.

The link token travels in the path (it is the capability); an access
grant obtained with the one-time code (and the transfer's password, if
any) travels in the ``X-Coffre-Access`` header or the
``__Host-coffre-access`` cookie.
"""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Request, Response

from coffre.audit.trail import Context
from coffre.http import deps
from coffre.http.api.schemas import (
    Access,
    CodeCheck,
    LinkFileOut,
    LinkOut,
    Unlock,
)
from coffre.http.downloads import archive_response, file_response, requested_range
from coffre.services.links import ACCESS_LIFETIME
from coffre.services.verification import CodeSent

# Recipients have no account: the token in the path is the capability.
router = APIRouter(
    prefix="/api/v1/links", tags=["links"],
    dependencies=[Depends(deps.public("personal link: the token in the path is the capability"))],
)
Ctx = Annotated[Context, Depends(deps.context)]
ACCESS_COOKIE = "__Host-coffre-access"


def set_access_cookie(response: Response, access: str) -> None:
    """The access grant for browsers: host-only, Secure, HttpOnly, SameSite."""
    response.set_cookie(ACCESS_COOKIE, access, max_age=int(ACCESS_LIFETIME.total_seconds()),
                        path="/", secure=True, httponly=True, samesite="strict")


def access_of(request: Request) -> str | None:
    return request.headers.get("x-coffre-access") or request.cookies.get(ACCESS_COOKIE)


@router.get("/{token}", summary="What a personal link gives access to")
def view(token: str, request: Request, ctx: Ctx) -> LinkOut:
    link = deps.coffre(request).links.view(token, access_of(request), ctx)
    # Built from the configured public URL, never from the request's Host.
    base = f"{deps.coffre(request).settings.base_url}/api/v1/links/{token}/files/"
    return LinkOut(
        transfer_id=link.transfer_id,
        sender=link.sender,
        sender_email=link.sender_email,
        subject=link.subject,
        message=link.message,
        expires_at=link.expires_at,
        total_size=link.total_size,
        files=[LinkFileOut(**f.__dict__, url=base + f.id) for f in link.files],
        archive_url=f"{deps.coffre(request).settings.base_url}/api/v1/links/{token}/archive.zip",
    )


@router.post("/{token}/code", status_code=202, summary="Send the recipient a one-time code")
def send_code(token: str, request: Request, ctx: Ctx) -> CodeSent:
    return deps.coffre(request).codes.send_code(token, ctx)


@router.post("/{token}/verify", summary="Exchange the one-time code for an access grant")
def verify(token: str, body: CodeCheck, request: Request, response: Response, ctx: Ctx) -> Access:
    access = deps.coffre(request).codes.verify(token, body.code, access_of(request), ctx)
    set_access_cookie(response, access)
    return Access(access=access, expires_in=int(ACCESS_LIFETIME.total_seconds()))


@router.post("/{token}/unlock", summary="Add the link password to the access grant")
def unlock(token: str, body: Unlock, request: Request, response: Response, ctx: Ctx) -> Access:
    access = deps.coffre(request).links.unlock(token, body.password, access_of(request), ctx)
    set_access_cookie(response, access)
    return Access(access=access, expires_in=int(ACCESS_LIFETIME.total_seconds()))


@router.get("/{token}/files/{file_id}", name="link_file", response_class=Response)
@router.head("/{token}/files/{file_id}", include_in_schema=False, response_class=Response)
async def download_file(token: str, file_id: str, request: Request, ctx: Ctx) -> Response:
    app = deps.coffre(request)
    head = request.method == "HEAD"
    access = access_of(request)

    def prepare() -> Response:
        dl = app.links.open_file(
            token,
            access,
            file_id,
            lambda size, etag: requested_range(request, size, etag),
            ctx,
            body=not head,
        )
        return file_response(request, dl, head)

    return await to_thread.run_sync(prepare)


@router.get("/{token}/archive.zip", name="link_archive", response_class=Response)
@router.head("/{token}/archive.zip", include_in_schema=False, response_class=Response)
async def download_archive(token: str, request: Request, ctx: Ctx) -> Response:
    app = deps.coffre(request)
    head = request.method == "HEAD"
    access = access_of(request)

    def prepare() -> Response:
        name, size, body, on_end = app.links.open_archive(token, access, ctx, body=not head)
        return archive_response(request, name, size, body, on_end, head)

    return await to_thread.run_sync(prepare)
