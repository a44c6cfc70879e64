"""Coffre as a plain ASGI app for other servers (granian), configured from
``COFFRE_*`` variables like ``coffre serve``."""

from coffre.bootstrap import build
from coffre.http.app import asgi_app
from coffre.settings import Settings

app = asgi_app(build(Settings()))
