"""SEC-30: capability tokens in paths never reach the access log."""

from __future__ import annotations

import pytest

from coffre.http.middleware import redact_path

TOKEN = "Zn_JIu3y2ytxwsSc5vnI7Fe2PYs2WWfpeAKEhY-XlaU"


@pytest.mark.parametrize("path", [
    "/t/{t}", "/t/{t}/verify", "/setup/{t}", "/invitation/{t}",
    "/api/v1/links/{t}/files/abc", "/d/{t}", "/d/{t}/upload", "/d/open/{t}",
    "/api/v1/deposit/{t}/verify", "/api/v1/deposit/open/{t}/join",
])
def test_capability_paths_are_redacted(path: str) -> None:
    redacted = redact_path(path.format(t=TOKEN))
    assert TOKEN not in redacted
    assert "[redacted]" in redacted


def test_other_paths_are_kept() -> None:
    assert redact_path("/api/v1/transfers/abc") == "/api/v1/transfers/abc"
