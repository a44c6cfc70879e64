"""What a form's answer hands to the page it redirects to (POST, then
redirect, then GET: a reload never sends the form again) when it must
not travel in the URL: the personal links a transfer or an upload
request was just created with, shown once.

A short-lived cookie, sealed with AES-GCM under a key derived from the
browser's session cookie (useless without that session; the server
keeps no key and no copy), bound to the one page it is for, and cleared
by that page once read. Notices without secrets stay query flags
(``?done=created``). Never holds more than a cookie may carry: a value
too large is dropped (the links went by mail anyway).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import Request, Response

from coffre.crypto.envelope import derive_key
from coffre.http import deps

COOKIE = "__Host-coffre-flash"
#: Long enough for a redirect on a slow link, short enough not to linger.
LIFETIME_SECONDS = 300
#: What a browser keeps of one cookie, name and attributes included, is ~4 KB.
MAX_COOKIE_BYTES = 3800
_LABEL = b"coffre/v1/flash"
_NONCE = 12


def _key(request: Request) -> bytes | None:
    session = request.cookies.get(deps.SESSION_COOKIE)
    return derive_key(session.encode(), _LABEL) if session else None


def put(request: Request, response: Response, page: str, values: dict[str, Any]) -> bool:
    """Hand ``values`` to ``page`` (a path) on ``response``; False if they
    could not go (no session, or too large for a cookie)."""
    key = _key(request)
    if key is None:
        return False
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(key).encrypt(nonce, json.dumps(values).encode(), page.encode())
    value = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
    if len(value) > MAX_COOKIE_BYTES:
        return False
    response.set_cookie(COOKIE, value, max_age=LIFETIME_SECONDS, path="/", secure=True,
                        httponly=True, samesite="strict")
    return True


def take(request: Request, page: str) -> dict[str, Any]:
    """What was handed to ``page`` (this request's path), or nothing;
    call ``spent`` on the page's response to clear it."""
    value, key = request.cookies.get(COOKIE), _key(request)
    if not value or key is None or len(value) > MAX_COOKIE_BYTES:
        return {}
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        opened = AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], page.encode())
        found = json.loads(opened)
    except (ValueError, InvalidTag):
        return {}
    return found if isinstance(found, dict) else {}


def spent(request: Request, response: Response) -> Response:
    """Clear the flash cookie, if the request came with one."""
    if COOKIE in request.cookies:
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response
