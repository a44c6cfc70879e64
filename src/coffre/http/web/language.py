"""The language switch at the foot of every page (a preference cookie)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from coffre.http import deps
from coffre.http.web import i18n
from coffre.http.web.forms import small_form
from coffre.http.web.guard import safe_next

router = APIRouter(include_in_schema=False, dependencies=[Depends(deps.same_origin_forms)])
YEAR = 365 * 24 * 3600


@router.post("/lang", dependencies=[Depends(deps.public("a display preference, no data"))])
async def choose_language(request: Request) -> Response:
    """The page to return to comes in the body, never the URL: it may be a
    personal link whose path is a capability (SEC-27)."""
    form = await small_form(request)
    language = i18n.choose(str(form.get("lang", "")))
    response = RedirectResponse(safe_next(str(form.get("next", ""))), status_code=303)
    response.set_cookie(i18n.COOKIE, language, max_age=YEAR, path="/", secure=True,
                        httponly=True, samesite="lax")
    return response
