"""Phone numbers as people write them.

Numbers are stored in E.164 (``+33612345678``); pages show them grouped
the way their readers write them: ``06 12 34 56 78`` for a French number
on a French page, ``+32 470 12 34 56`` for a foreign one (or any number on
a page in another language). A masked number (``+33•••••••78``, ``•``
standing for a hidden digit) is grouped the same way. Formatting never
adds, drops or reorders a digit; anything that is not an E.164 number is
returned as it came.
"""

from __future__ import annotations

import re

#: A hidden digit in a masked number.
HIDDEN = "•"
_NUMBER = re.compile(rf"^\+[0-9{HIDDEN}]{{7,15}}$")
#: Country codes of one and two digits; every other one has three (ITU-T E.164).
_SHORT_CODES = frozenset({
    "1", "7", "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44",
    "45", "46", "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61",
    "62", "63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95",
    "98",
})
#: France and the overseas departments that share its ten-digit national
#: plan (0 then nine digits, dialled from France without the country code).
_FRENCH_PLAN = frozenset({"33", "262", "590", "594", "596"})
#: International grouping of the national number where the country's own
#: habit differs from the generic one: (country, length) -> group sizes.
_GROUPS = {
    ("33", 9): (1, 2, 2, 2, 2),  # +33 6 12 34 56 78
    ("1", 10): (3, 3, 4),  # +1 415 555 2671
    ("41", 9): (2, 3, 2, 2),  # +41 79 123 45 67
    ("44", 10): (4, 6),  # +44 7911 123456
}


def split(number: str) -> tuple[str, str] | None:
    """(country code, national number) of an E.164 number, masked or not;
    None when it is not one (or its country code is hidden)."""
    if not _NUMBER.fullmatch(number):
        return None
    digits = number[1:]
    for size in (1, 2, 3):
        code = digits[:size]
        if HIDDEN in code:
            return None
        if size == 3 or code in _SHORT_CODES:
            return code, digits[size:]
    return None  # pragma: no cover - the loop always returns


def _grouped(digits: str, sizes: tuple[int, ...]) -> str:
    parts, start = [], 0
    for size in sizes:
        parts.append(digits[start:start + size])
        start += size
    return " ".join(parts)


def _generic(digits: str) -> str:
    """Pairs, the first group taking three digits when the count is odd."""
    if len(digits) <= 4:
        return digits
    first = 3 if len(digits) % 2 else 2
    rest = digits[first:]
    return " ".join([digits[:first], *(rest[i:i + 2] for i in range(0, len(rest), 2))])


def format_phone(number: str, home: str | None = "FR") -> str:
    """``number`` as people write it. ``home``: the reader's country
    ("FR": a French page), whose numbers are shown in national form;
    None shows every number in international form."""
    parts = split(number)
    if parts is None:
        return number
    country, national = parts
    if home == "FR" and country in _FRENCH_PLAN and len(national) == 9:
        return _grouped("0" + national, (2, 2, 2, 2, 2))
    sizes = _GROUPS.get((country, len(national)))
    grouped = _grouped(national, sizes) if sizes else _generic(national)
    return f"+{country} {grouped}"


def mask_phone(number: str) -> str:
    """Only the country code and the last two digits shown:
    ``+33612345678`` -> ``+33•••••••78``."""
    parts = split(number)
    country = parts[0] if parts else number[1:3]
    hidden = max(len(number) - len(country) - 3, 1)
    return f"+{country}{HIDDEN * hidden}{number[-2:]}"
