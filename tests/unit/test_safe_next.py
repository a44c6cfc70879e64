"""Where a page sends the reader back to (issue 15, finding 4): a local path,
never another site, on the server (``guard.safe_next``) and in the passkey
script (``local()`` in static/account.js), for the known bypasses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from coffre.http.web import guard

ACCOUNT_JS = Path(guard.__file__).parent / "static" / "account.js"
FALLBACK = "/transfers"

#: Values a browser would follow to another site (or run), each refused.
BYPASSES = [
    "/\t\\evil.example", "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example",
    "/\\evil.example", "\\\\evil.example", "/\\/evil.example", "//evil.example",
    "///evil.example", "/ /evil.example", "/\x00/evil.example", "/\x0b/evil.example",
    "/\x7f/evil.example", "/%09/evil.example", "/%5Cevil.example", "/%5cevil.example",
    "/%2F%2Fevil.example", "/%2f/evil.example", "/%252F%252Fevil.example",
    "/%25%32%46/evil.example", "/%0a/evil.example", "/%0d%0a/evil.example",
    "https://evil.example", "//evil.example/%2e%2e", "javascript:alert(1)",
    "JaVaScRiPt:alert(1)", " /transfers", "/transfers\t", "/\u3000/evil.example",
    "/\u2028/evil.example", "\u2215\u2215evil.example", "", "evil.example",
    "/%25252525252F%25252525252F" + "evil.example",
]
#: Local paths kept as they are.
LOCAL = [
    "/", "/transfers", "/account/factors/abc/remove", "/admin/audit?since=2026-01-01&page=2",
    "/transfers/%C3%A9t%C3%A9", "/requests/x#section", "/javascript:alert(1)",
]


@pytest.mark.parametrize("value", BYPASSES)
def test_bypasses_are_refused(value: str) -> None:
    assert guard.safe_next(value, FALLBACK) == FALLBACK


@pytest.mark.parametrize("value", LOCAL)
def test_local_paths_are_kept(value: str) -> None:
    assert guard.safe_next(value, FALLBACK) == value


def test_account_js_applies_the_same_rules() -> None:
    """The passkey script's ``local()``, run by node on the same values."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    source = ACCOUNT_JS.read_text()
    found = re.search(r"\n  function local\(path\) \{\n.*?\n  \}\n", source, re.S)
    assert found, "local() not found in account.js"
    values = BYPASSES + LOCAL + [None, 42]
    script = (found.group(0) + "\nconst values = JSON.parse(require('fs').readFileSync(0));"
              "\nprocess.stdout.write(JSON.stringify(values.map(local)));")
    done = subprocess.run([node, "-e", script], input=json.dumps(values), text=True,
                          capture_output=True, timeout=60, check=True)
    results = json.loads(done.stdout)
    expected = [FALLBACK] * len(BYPASSES) + LOCAL + [FALLBACK, FALLBACK]
    assert dict(zip(map(repr, values), results, strict=True)) == dict(
        zip(map(repr, values), expected, strict=True))
