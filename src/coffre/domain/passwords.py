"""SEC-12: passwords found in breach corpora are refused, offline.

The list ships with the package (``data/breached-passwords.txt.gz``, see
``data/README.md`` for its source and licence): no network call is ever
made to check a password. It is compared case-insensitively, as typed and
with its spaces removed ("Qwerty 123456" is "qwerty123456").
"""

from __future__ import annotations

import gzip
from functools import cache
from importlib import resources

BREACHED_LIST = "breached-passwords.txt.gz"


@cache
def breached_passwords() -> frozenset[str]:
    """The shipped list, lower-cased (loaded once, about 30,000 entries)."""
    data = resources.files("coffre.domain").joinpath("data", BREACHED_LIST).read_bytes()
    return frozenset(gzip.decompress(data).decode().split("\n")) - {""}


def is_breached(password: str) -> bool:
    folded = password.casefold()
    known = breached_passwords()
    return folded in known or "".join(folded.split()) in known
