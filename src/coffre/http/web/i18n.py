"""The web pages' languages: French by default, English selectable.

Message ids are English (code is in English); every one has a French
translation in ``locales/fr/*.po`` (one catalogue per area of the pages, so
that they can be edited independently; they are merged when loaded). The
catalogues are compiled in memory at start-up with Babel, so no binary
``.mo`` file is kept in the repository. A test extracts every message from
the templates and the page modules and fails on one without a translation.

The language is a per-request context variable, set by ``use_language``
from the ``coffre-lang`` cookie before a page is rendered; ``gettext`` reads
it, in Python code and in templates alike.

``python -m coffre.http.web.i18n missing`` prints, in ``.po`` form, the
messages that still need a French translation.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from functools import cache
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LANGUAGES = {"fr": "Français", "en": "English"}
DEFAULT = "fr"
COOKIE = "coffre-lang"
WEB = Path(__file__).parent
LOCALES = WEB / "locales"
#: Where messages are extracted from, and how (Babel's method map).
METHODS = [("templates/**.html", "jinja2"), ("*.py", "python")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}

_language: ContextVar[str] = ContextVar("coffre_language", default=DEFAULT)


def choose(cookie: str | None) -> str:
    return cookie if cookie in LANGUAGES else DEFAULT


def use_language(language: str | None) -> None:
    """The language of what is rendered next in this context."""
    _language.set(choose(language))


def current() -> str:
    return _language.get()


@cache
def _translations(language: str) -> NullTranslations:
    if language == "en":
        return NullTranslations()
    catalog = Catalog(locale=language)
    for po in sorted((LOCALES / language).glob("*.po")):
        with po.open("rb") as handle:
            for message in read_po(handle, locale=language):
                if message.id:
                    catalog[message.id] = message
    buffer = io.BytesIO()
    write_mo(buffer, catalog)  # fuzzy entries are left out
    buffer.seek(0)
    return Translations(buffer)


def gettext(message: str, **variables: object) -> str:
    """``message`` in the current language, with ``%(name)s`` filled in."""
    text = _translations(current()).gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: object) -> str:
    text = _translations(current()).ngettext(singular, plural, n)
    return text % {"num": n, **variables}


_ = gettext


def N_(message: str) -> str:
    """Marks a message for extraction; translate it where it is shown."""
    return message


def pick(messages: Mapping[str, str], key: str) -> str | None:
    """The message (marked with ``N_``) that ``key`` names, translated; None
    for a key ``messages`` does not hold: a notice or error code from a
    query string is never shown as it came."""
    return gettext(messages[key]) if key in messages else None


def extracted() -> Iterator[tuple[str, str, int]]:
    """Every message in the pages: (message id, file, line)."""
    for filename, line, message, _comments, _context in extract_from_dir(
        WEB, METHODS, keywords=KEYWORDS,
        options_map={"templates/**.html": {"extensions": "jinja2.ext.i18n"}},
    ):
        ids = message if isinstance(message, tuple) else (message,)
        for msgid in ids:
            if msgid:
                yield msgid, filename, line


def translated(language: str = "fr") -> dict[str, str]:
    """The non-fuzzy translations of ``language``'s catalogues."""
    found: dict[str, str] = {}
    for po in sorted((LOCALES / language).glob("*.po")):
        with po.open("rb") as handle:
            for message in read_po(handle, locale=language):
                if not message.id or message.fuzzy:
                    continue
                strings = [str(s) for s in _each(message.string) if s]
                if strings and len(strings) == len(_each(message.string)):
                    for msgid in _each(message.id):
                        found[str(msgid)] = strings[0]
    return found


def _each(value: object) -> tuple[object, ...]:
    """A catalogue entry's id or string: one, or a tuple of plural forms."""
    if isinstance(value, tuple | list):
        return tuple(value)
    return (value,)


def missing(language: str = "fr") -> dict[str, list[str]]:
    """Messages without a translation: message id -> where it appears."""
    done = translated(language)
    gaps: dict[str, list[str]] = {}
    for msgid, filename, line in extracted():
        if msgid not in done:
            gaps.setdefault(msgid, []).append(f"{filename}:{line}")
    return gaps


def _po_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


if __name__ == "__main__":  # pragma: no cover - a developer's helper
    if sys.argv[1:] != ["missing"]:
        sys.exit("usage: python -m coffre.http.web.i18n missing")
    for msgid, places in missing().items():
        print(f"#: {' '.join(places)}\nmsgid {_po_string(msgid)}\nmsgstr \"\"\n")
