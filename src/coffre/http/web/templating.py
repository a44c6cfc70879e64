"""Rendering pages: the Jinja2 environment (with Babel's gettext), filters,
and ``render``, which every page uses so that each answer carries the
language, the signed-in user's navigation and CSRF token, and
``Cache-Control: no-store`` (pages show patient data, SEC-27)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from coffre.domain import times
from coffre.domain.accounts import Actor
from coffre.domain.phones import format_phone
from coffre.http import deps
from coffre.http.web import i18n, qr
from coffre.services.sessions import csrf_for


def _frame(request: Request) -> dict[str, Any]:
    """What every page's frame needs; sets the language the page is
    rendered in (the ``coffre-lang`` cookie, else French)."""
    i18n.use_language(request.cookies.get(i18n.COOKIE))
    return {"lang": i18n.current(), "languages": i18n.LANGUAGES, "here": request.url.path,
            "timezone": times.current_zone().key}


TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates",
                            context_processors=[_frame])
TEMPLATES.env.add_extension("jinja2.ext.i18n")
TEMPLATES.env.install_gettext_callables(  # type: ignore[attr-defined]
    i18n.gettext, i18n.ngettext, newstyle=True
)
NO_STORE = {"Cache-Control": "no-store"}
_URL = re.compile(r"https?://[^\s<>\"]+")


def filesize(value: int) -> str:
    """A size for people: 1.5 Mo / 1.5 MB."""
    units = ("octets", "Ko", "Mo", "Go", "To") if i18n.current() == "fr" else (
        "bytes", "KB", "MB", "GB", "TB")
    size = float(value)
    for unit in units:
        if size < 1024 or unit == units[-1]:
            text = f"{size:.0f} {unit}" if unit == units[0] else f"{size:.1f} {unit}"
            return text.replace(".", ",") if i18n.current() == "fr" else text
        size /= 1024
    return str(value)


def _linkify(text: str) -> Markup:
    escaped = str(escape(text))
    # Safe: the text is escaped first; URLs matched cannot contain quotes or <>.
    linked = _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
    return Markup(linked)  # noqa: S704


def when(value: datetime | float | str | None) -> str:
    """A date and time in the deployment's zone, in the reader's language."""
    return times.people(value, i18n.current())


TEMPLATES.env.filters["filesize"] = filesize
TEMPLATES.env.filters["linkify"] = _linkify
TEMPLATES.env.filters["datetime"] = when
TEMPLATES.env.globals["qr_svg"] = qr.svg


def phone_number(value: str | None) -> str:
    """A phone number as the reader writes it: ``06 12 34 56 78`` on a
    French page, ``+33 6 12 34 56 78`` otherwise (masked ones too)."""
    return format_phone(value or "", "FR" if i18n.current() == "fr" else None)


TEMPLATES.env.filters["phone"] = phone_number


def render(request: Request, name: str, context: dict[str, Any] | None = None, *,
           status: int = 200, actor: Actor | None = None,
           headers: dict[str, str] | None = None) -> Response:
    """Render template ``name`` in the reader's language. ``actor`` (the
    signed-in user, if the page has one) gives the navigation and the CSRF
    token that forms and htmx requests send back."""
    cookie = request.cookies.get(deps.SESSION_COOKIE)
    values: dict[str, Any] = {
        "actor": actor,
        "csrf_token": csrf_for(cookie) if actor is not None and cookie else "",
        **(context or {}),
    }
    return TEMPLATES.TemplateResponse(request, name, values, status_code=status,
                                      headers={**NO_STORE, **(headers or {})})


async def speak(request: Request) -> None:
    """The reader's language for messages made before ``render`` (async:
    set in the request's context, which sync routes' threads copy)."""
    i18n.use_language(request.cookies.get(i18n.COOKIE))


def page_router(public: str | None = None) -> APIRouter:
    """A router of pages: no OpenAPI entry, forms only from our own pages
    (SEC-22), messages in the reader's language. ``public`` says why its
    pages are open to people without an account (each page of a router
    without it declares ``guard.page(Action.X)`` itself)."""
    dependencies = [Depends(deps.same_origin_forms), Depends(speak)]
    if public is not None:
        dependencies.append(Depends(deps.public(public)))
    return APIRouter(include_in_schema=False, dependencies=dependencies)
