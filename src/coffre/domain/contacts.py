"""Contacts: what a card holds, how it is checked, searched and ranked.

Pure: the service decrypts cards and hands them here; nothing in this
module sees a database or a key.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, fields
from datetime import datetime

from coffre.errors import InvalidInput

MAX_FIELD_CHARS = 200
_PHONE_CHARS = re.compile(r"[\s.\-()/]")
_PHONE = re.compile(r"^\+?[0-9]{4,20}$")
_RPPS = re.compile(r"^[0-9]{11}$")
#: Half-life-like constant of the ranking: a use 30 days ago counts half.
_RECENCY_DAYS = 30.0


@dataclass(frozen=True)
class Card:
    """What is sealed for one contact (everything but the address)."""

    name: str = ""
    phone: str = ""
    profession: str = ""
    rpps: str = ""
    organisation: str = ""

    def as_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Card:
        return cls(**{f.name: str(data.get(f.name) or "") for f in fields(cls)})


def check_card(card: Card) -> Card:
    """The card cleaned (trimmed, phone compacted), or ``InvalidInput``."""
    values = {}
    for f in fields(card):
        value = " ".join(str(getattr(card, f.name)).split())
        if len(value) > MAX_FIELD_CHARS:
            raise InvalidInput(f"{f.name} is too long (at most {MAX_FIELD_CHARS} characters)",
                               field=f.name)
        if any(unicodedata.category(c) in ("Cc", "Cf") for c in value):
            raise InvalidInput("control characters are not allowed", field=f.name)
        values[f.name] = value
    values["phone"] = normalise_phone(values["phone"])
    if values["rpps"] and not _RPPS.fullmatch(values["rpps"]):
        raise InvalidInput("an RPPS number has 11 digits", field="rpps")
    return Card(**values)


def normalise_phone(phone: str) -> str:
    """Compact form; a French national number (``06 12 34 56 78``) becomes
    E.164 (``+33612345678``) so that it can receive one-time codes."""
    if not phone:
        return ""
    compact = _PHONE_CHARS.sub("", phone)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if re.fullmatch(r"0[1-9][0-9]{8}", compact):
        compact = "+33" + compact[1:]
    if not _PHONE.fullmatch(compact):
        raise InvalidInput("invalid phone number", field="phone")
    return compact


def fold(text: str) -> str:
    """Case- and accent-insensitive form: ``Hélène`` -> ``helene``."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def matches(query: str, email: str, card: Card) -> bool:
    """Prefix match on the name (whole or any word of it) and on the address
    (whole or its domain)."""
    q = fold(query.strip())
    if not q:
        return True
    name = fold(card.name)
    words = re.split(r"[\s\-']+", name)
    domain = email.partition("@")[2]
    return (
        name.startswith(q)
        or any(w.startswith(q) for w in words)
        or email.startswith(q)
        or domain.startswith(q)
    )


def rank(use_count: int, last_used_at: datetime | None, now: datetime) -> float:
    """Recently and frequently used first: the number of uses, discounted
    by the age of the last one (a use a month ago counts half)."""
    if not use_count or last_used_at is None:
        return 0.0
    days = max((now - last_used_at).total_seconds() / 86400, 0.0)
    return use_count / (1.0 + days / _RECENCY_DAYS)
