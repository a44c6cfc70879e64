"""Error pages for people: a browser that navigates to a page, an unknown
address, a refused download or a revoked link gets a page in the site's
frame, in the reader's language, with the right status and a way back.

What a client asked for decides (never the error): the API (``/api/``,
``/backup/``, tus), and any client that does not prefer HTML, keep the
one JSON error shape of ``http/errors.py``. A page never shows a stack,
a storage key or any other internal detail.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from coffre.http import deps
from coffre.http.web import i18n
from coffre.http.web.i18n import N_, _
from coffre.http.web.templating import render

#: Paths answered with HTML pages (errors included), whatever the ``Accept``
#: header, unless a client asks for JSON.
HTML_PATHS = ("/t/", "/setup/", "/invitation/", "/dev/", "/d/", "/login", "/logout", "/reauth",
              "/account", "/send", "/transfers", "/received", "/requests", "/contacts",
              "/admin", "/lang", "/password", "/backups")
#: The API: JSON errors only (but for a browser following a download link).
API_PATHS = ("/api/", "/backup/")
#: Links whose paths hold a capability: "unknown" and "locked" speak of a link.
_LINK_PATHS = ("/t/", "/d/", "/api/v1/links/", "/api/v1/deposit/", "/setup/", "/invitation/",
               "/password/reset/")

_REASONS = {
    "expired": (
        N_("Link expired"),
        N_("This transfer has expired: its files are no longer available."),
        N_("Ask the sender to send them to you again."),
    ),
    "revoked": (
        N_("Link revoked"),
        N_("The sender has revoked this transfer."),
        N_("Ask the sender to send the files to you again if you still need them."),
    ),
    "deleted": (N_("Transfer deleted"), N_("This transfer has been deleted."), None),
    "exhausted": (
        N_("Limit reached"),
        N_("The number of downloads allowed has been reached."),
        N_("Ask the sender for a new transfer if needed."),
    ),
    "invitation_used": (
        N_("Invitation already used"),
        N_("This invitation has already been used to create an account."),
        N_("Sign in with the invited e-mail address."),
    ),
    "invitation_expired": (
        N_("Invitation expired"),
        N_("This invitation is no longer valid."),
        N_("Ask your organisation's administrator for a new invitation."),
    ),
    "reset_used": (
        N_("Link already used"),
        N_("This link to choose a new password has already been used, or a newer one "
           "replaced it."),
        N_("Ask for a new one from the sign-in page (Forgotten password?)."),
    ),
    "reset_expired": (
        N_("Link expired"),
        N_("This link to choose a new password has expired."),
        N_("Ask for a new one from the sign-in page (Forgotten password?)."),
    ),
    "invitation_revoked": (
        N_("Invitation cancelled"),
        N_("The administrator has cancelled this invitation."),
        N_("Ask them for a new invitation if needed."),
    ),
    "address_taken": (
        N_("Address already in use"),
        N_("This e-mail address already has an account on this service, in another "
           "organisation: an address can belong to only one organisation."),
        N_("Sign in with it, or ask to be invited with another address."),
    ),
}
_UNKNOWN_LINK = (
    N_("Unknown link"),
    N_("This link does not exist, or no longer does."),
    N_("Check that it was copied in full."),
)
_LOCKED_LINK = (
    N_("Too many attempts"),
    N_("Too many wrong passwords were entered: this link is locked."),
    N_("Ask the sender for a new transfer."),
)
#: What each status means to a person (title, explanation, what to do).
_STATUSES = {
    400: (N_("Request not understood"),
          N_("This page could not understand what was sent."),
          N_("Go back and try again.")),
    401: (N_("Sign-in needed"),
          N_("You must be signed in to see this page."), None),
    403: (N_("Access refused"),
          N_("You are not allowed to see this page or to do this."),
          N_("If you think you should be, ask your organisation's administrator.")),
    404: (N_("Page not found"),
          N_("This page does not exist, or no longer does."),
          N_("Check the address, or start again from the home page.")),
    405: (N_("Action not possible"),
          N_("This page cannot be used this way."),
          N_("Go back and use the page's buttons.")),
    409: (N_("Action not possible"),
          N_("This cannot be done in the current state (it may already be done)."),
          N_("Reload the page to see where things stand.")),
    410: (N_("No longer available"),
          N_("What this link led to is no longer available: it has expired, or it "
             "was revoked or deleted."),
          N_("Ask the sender to send the files to you again if you still need them.")),
    413: (N_("Too large"),
          N_("What was sent is larger than allowed."), None),
    429: (N_("Too many attempts"),
          N_("Too many attempts in a short time: for your security, this is paused "
             "for a while."),
          N_("Wait a few minutes, then try again.")),
    500: (N_("Unexpected error"),
          N_("Something went wrong on our side. Nothing you did caused it."),
          N_("Try again in a few moments. If it happens again, tell your organisation's "
             "administrator.")),
    503: (N_("Service unavailable for a moment"),
          N_("The service cannot answer right now."),
          N_("Try again in a few moments.")),
    507: (N_("Storage full"),
          N_("There is no room left to keep these files."),
          N_("Delete old transfers, or ask your administrator for more space.")),
}
_OTHER = (N_("Error"), N_("This could not be done."), N_("Go back and try again."))


def _preferences(accept: str) -> tuple[float, float]:
    """How much a client's ``Accept`` header wants HTML and JSON (RFC 9110
    quality values; a specific type outranks a wildcard)."""
    found: dict[str, float] = {}
    for part in accept.lower().split(",")[:40]:
        media, *params = part.strip().split(";")
        weight = 1.0
        for param in params:
            key, _sep, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    weight = max(0.0, min(float(value), 1.0))
                except ValueError:
                    weight = 0.0
        found.setdefault(media.strip(), weight)

    def quality(specific: tuple[str, ...], family: str) -> float:
        for media in specific:
            if media in found:
                return found[media]
        return found.get(family, found.get("*/*", 0.0))

    return (quality(("text/html", "application/xhtml+xml"), "text/*"),
            quality(("application/json", "application/problem+json"), "application/*"))


def _browser_download(request: Request) -> bool:
    """A browser following a download link of a page (the recipient's
    files, an owner's file) gets a page, not JSON, when it is refused."""
    path = request.url.path
    return request.headers.get("sec-fetch-mode") == "navigate" and (
        path.startswith("/api/v1/links/")
        or (path.startswith("/api/v1/transfers/") and "/files/" in path))


def wants_page(request: Request) -> bool:
    """Does this client want an HTML page rather than the JSON error shape?"""
    path = request.url.path
    if path.startswith(API_PATHS):
        return _browser_download(request)
    if "authorization" in request.headers:  # an API client (a token, restic)
        return False
    html, json = _preferences(request.headers.get("accept", ""))
    if json > html:
        return False
    if path.startswith(HTML_PATHS):
        return True
    return request.headers.get("sec-fetch-mode") == "navigate" or html > json


def _texts(request: Request, status: int, message: str,
           details: dict[str, Any]) -> tuple[str, str, str | None]:
    reason = details.get("reason")
    on_link = request.url.path.startswith(_LINK_PATHS)
    if isinstance(reason, str) and reason in _REASONS:
        title, explanation, hint = _REASONS[reason]
    elif status == 404 and on_link:
        title, explanation, hint = _UNKNOWN_LINK
    elif status == 429 and on_link:
        title, explanation, hint = _LOCKED_LINK
    else:
        title, explanation, hint = _STATUSES.get(status, _OTHER)
        # A service's message says more, where it has a translation (never
        # for a fault: it may name a storage key or a file).
        if status < 500 and message and _(message) != message:
            explanation = message
    wait = details.get("retry_after")
    if status == 429 and isinstance(wait, int) and wait > 0 and not on_link:
        minutes = max((wait + 59) // 60, 1)
        return (_(title), _(explanation),
                i18n.ngettext("Try again in %(num)d minute.", "Try again in %(num)d minutes.",
                              minutes))
    return _(title), _(explanation), _(hint) if hint else None


def render_error(
    request: Request, status: int, code: str, message: str, details: dict[str, Any]
) -> Response | None:
    """An HTML error page for a client that wants one; None for the API (JSON)."""
    if not wants_page(request):
        return None
    i18n.use_language(request.cookies.get(i18n.COOKIE))
    title, explanation, hint = _texts(request, status, message, details)
    headers = {}
    wait = details.get("retry_after")
    if status in (429, 503) and isinstance(wait, int):
        headers["Retry-After"] = str(wait)
    return render(request, "error.html", {
        "title": title, "explanation": explanation, "hint": hint, "status": status,
        # A way back: the dashboard for someone signed in (the cookie is
        # enough to offer it: the dashboard checks it), else sign-in.
        "signed_in": bool(request.cookies.get(deps.SESSION_COOKIE)),
        "on_link": request.url.path.startswith(_LINK_PATHS),
    }, status=status, headers=headers)
