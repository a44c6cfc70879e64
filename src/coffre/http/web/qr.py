"""QR codes of links a person passes on (a phone scans it from the
screen or from paper): inline SVG, drawn by segno, with no style
attribute (the Content-Security-Policy forbids them) and a text
alternative."""

from __future__ import annotations

import segno
from markupsafe import Markup, escape


def svg(url: str, label: str) -> Markup:
    """``url`` as an SVG image named ``label`` (what it leads to)."""
    drawn = segno.make(url, error="m").svg_inline(scale=4, border=4, dark="#000",
                                                  light="#fff", svgclass="qr",
                                                  title=str(label))
    # Safe: segno escapes the title; the label is escaped again here.
    return Markup(drawn.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" ', 1))  # noqa: S704
