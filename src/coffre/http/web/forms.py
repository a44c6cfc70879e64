"""Reading the pages' forms."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import FormData

from coffre.errors import UnsupportedMediaType


async def small_form(request: Request, max_fields: int = 10) -> FormData:
    """URL-encoded forms only: a multipart body would spool files to disk."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("forms must be application/x-www-form-urlencoded")
    return await request.form(max_files=0, max_fields=max_fields)
