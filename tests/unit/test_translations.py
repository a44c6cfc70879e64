"""Every user-visible string of the web pages is translated: French by
default, English selectable (message ids are English)."""

from __future__ import annotations

import ast
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from coffre.http.web import i18n

WEB = Path(i18n.__file__).parent
#: Words that are the same in every language (names, formats, standards).
UNTRANSLATED = {"Coffre", "SHA-256", "ZIP", "TOTP", "CSV", "vCard", "API", "OK",
                "Français", "English", "SMS", "E-mail", "PDF", "URL"}
#: Attributes read out or shown to people.
SHOWN_ATTRIBUTES = {"placeholder", "title", "aria-label", "alt", "data-confirm",
                    "aria-valuetext", "data-label"}
#: Elements whose text is code, commands or data, never prose.
_VERBATIM = {"script", "style", "code", "kbd", "pre", "samp"}
_JINJA = re.compile(r"\{%-?\s*trans\b.*?endtrans\s*-?%\}|\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}",
                    re.S)


def test_every_message_has_a_french_translation() -> None:
    gaps = i18n.missing("fr")
    assert not gaps, (
        "untranslated messages (run `python -m coffre.http.web.i18n missing`):\n"
        + "\n".join(f"  {msgid!r} at {', '.join(places)}" for msgid, places in gaps.items())
    )


def test_catalogues_have_no_fuzzy_or_empty_entry() -> None:
    from babel.messages.pofile import read_po

    for po in sorted((i18n.LOCALES / "fr").glob("*.po")):
        with po.open("rb") as handle:
            for message in read_po(handle, locale="fr"):
                if not message.id:
                    continue
                strings = message.string if isinstance(message.string, tuple) else (
                    message.string,)
                assert not message.fuzzy, f"{po.name}: fuzzy {message.id!r}"
                assert all(strings), f"{po.name}: empty translation of {message.id!r}"


class _Visible(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VERBATIM:
            self._skip += 1
        for name, value in attrs:
            shown = name in SHOWN_ATTRIBUTES or (
                name == "value" and ("type", "submit") in attrs)
            if shown and value:
                self._check(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in _VERBATIM:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._check(data)

    def _check(self, text: str) -> None:
        words = [w for w in re.findall(r"[^\W\d_][\w'\u2019-]*", text) if w not in UNTRANSLATED]
        if words:
            self.found.append(text.strip())


@pytest.mark.parametrize("template", sorted(p.name for p in (WEB / "templates").rglob("*.html")))
def test_templates_show_no_text_outside_gettext(template: str) -> None:
    path = next((WEB / "templates").rglob(template))
    source = _JINJA.sub(" ", path.read_text())
    parser = _Visible()
    parser.feed(source)
    assert not parser.found, f"{template}: text not passed through _(): {parser.found}"


def test_page_modules_hold_no_untranslated_french() -> None:
    """Messages in Python are English ids passed through ``_``/``N_``:
    a French literal is a string someone forgot to translate."""
    offenders = []
    for module in sorted(WEB.glob("*.py")):
        if module.name == "i18n.py":
            continue
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.search(
                    r"[àâçéèêëîïôûùüÿœ]", node.value, re.I):
                offenders.append(f"{module.name}:{node.lineno}: {node.value[:60]!r}")
    assert not offenders, "\n".join(offenders)


def test_english_is_the_message_ids_and_french_the_default() -> None:
    i18n.use_language("fr")
    assert i18n.gettext("Dashboard") == "Tableau de bord"
    i18n.use_language("en")
    assert i18n.gettext("Dashboard") == "Dashboard"
    i18n.use_language("xx")  # unknown: the default
    assert i18n.current() == "fr"
