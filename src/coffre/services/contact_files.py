"""Contact files: vCard (2.1, 3.0, 4.0 read through ``vobject``) and CSV in,
vCard 3.0 out.

Parsing never stops at a bad entry: each one is reported with the line it
starts on and why, so the caller can import the good ones in one
transaction. A file that is not text, or not a contact file at all, is an
``InvalidInput`` as a whole. Never logs card contents.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

import vobject

from coffre.domain.accounts import normalise_email
from coffre.domain.contacts import Card, check_card, fold
from coffre.errors import InvalidInput

_BEGIN = re.compile(r"^begin:vcard\s*$", re.IGNORECASE)
_END = re.compile(r"^end:vcard\s*$", re.IGNORECASE)
_REASONS = {
    "email": "adresse e-mail invalide",
    "phone": "numéro de téléphone invalide",
    "rpps": "numéro RPPS invalide (11 chiffres)",
}


@dataclass(frozen=True)
class Entry:
    line: int
    email: str
    card: Card


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


@dataclass
class Parsed:
    format: str
    entries: list[Entry] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    _seen: dict[str, int] = field(default_factory=dict)

    def add(self, line: int, email: str, card: Card) -> None:
        """Check one entry; keep it or record why not."""
        if not email.strip():
            self.rejected.append(Rejected(line, "pas d'adresse e-mail"))
            return
        try:
            address = normalise_email(email)
            clean = check_card(card)
        except InvalidInput as exc:
            name = str(exc.details.get("field", ""))
            reason = _REASONS.get(name, f"champ « {name} » trop long ou invalide")
            self.rejected.append(Rejected(line, reason))
            return
        if address in self._seen:
            self.rejected.append(
                Rejected(line, f"adresse déjà présente ligne {self._seen[address]}")
            )
            return
        self._seen[address] = line
        self.entries.append(Entry(line, address, clean))


def decode(data: bytes) -> str:
    """UTF-8 text, with or without a byte order mark."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            "the file is not UTF-8 text (save it as UTF-8 and try again)", field="file"
        ) from exc


def parse(data: bytes, format: str | None = None) -> Parsed:
    """``format``: "vcard", "csv", or None to tell from the content."""
    text = decode(data)
    if "\x00" in text:
        raise InvalidInput("the file holds NUL bytes: not a text file", field="file")
    if format is None:
        vcard = re.search(r"^\s*begin:vcard\s*$", text, re.IGNORECASE | re.MULTILINE)
        format = "vcard" if vcard else "csv"
    if format == "vcard":
        return parse_vcard(text)
    if format == "csv":
        return parse_csv(text)
    raise InvalidInput("format must be vcard or csv", field="format")


# -- vCard ----------------------------------------------------------------------


def parse_vcard(text: str) -> Parsed:
    parsed = Parsed("vcard")
    lines = text.splitlines()
    start: int | None = None
    body: list[str] = []
    cards = 0
    for number, line in enumerate(lines, start=1):
        if start is None:
            if _BEGIN.match(line.strip()):
                start, body = number, [line]
            elif line.strip():
                parsed.rejected.append(Rejected(number, "ligne hors d'une fiche vCard"))
            continue
        if _BEGIN.match(line.strip()):
            parsed.rejected.append(Rejected(start, "fiche non terminée (END:VCARD manquant)"))
            start, body = number, [line]
            continue
        body.append(line)
        if _END.match(line.strip()):
            cards += 1
            _vcard_entry(parsed, start, "\r\n".join(body) + "\r\n")
            start = None
    if start is not None:
        parsed.rejected.append(Rejected(start, "fiche non terminée (END:VCARD manquant)"))
    if not cards and not parsed.entries:
        raise InvalidInput("no vCard (BEGIN:VCARD ... END:VCARD) in this file", field="file")
    return parsed


def _vcard_entry(parsed: Parsed, line: int, text: str) -> None:
    try:
        card = vobject.readOne(text)
        email = _value(card, "email")
        name = _value(card, "fn") or _name(card)
        if name.casefold() == email.casefold():  # our export's FN for a contact without a name
            name = ""
        entry = Card(
            name=name,
            phone=_value(card, "tel"),
            profession=_value(card, "title") or _value(card, "role"),
            rpps=_value(card, "x-rpps"),
            organisation=_value(card, "org"),
        )
    # vobject raises assorted errors (ParseError, ValueError, AttributeError...)
    # on malformed cards; any of them makes this one card unreadable.
    except Exception:  # noqa: BLE001
        parsed.rejected.append(Rejected(line, "fiche vCard illisible"))
        return
    parsed.add(line, email, entry)


def _value(card: Any, name: str) -> str:
    items = card.contents.get(name)
    if not items:
        return ""
    value = items[0].value
    if isinstance(value, list):  # ORG: organisation and units
        return " ".join(str(v) for v in value if v)
    return str(value).strip()


def _name(card: Any) -> str:
    items = card.contents.get("n")
    if not items:
        return ""
    n = items[0].value
    parts = [getattr(n, "prefix", ""), getattr(n, "given", ""), getattr(n, "additional", ""),
             getattr(n, "family", "")]
    return " ".join(" ".join(p) if isinstance(p, list) else str(p) for p in parts if p).strip()


def to_vcard(contacts: list[tuple[str, Card]]) -> str:
    """vCard 3.0 (RFC 2426), one card per contact; RPPS as ``X-RPPS``."""
    out = []
    for email, card in contacts:
        v = vobject.vCard()
        v.add("version").value = "3.0"
        v.add("fn").value = card.name or email
        given, _, family = card.name.rpartition(" ")
        v.add("n").value = vobject.vcard.Name(family=family, given=given)
        mail = v.add("email")
        mail.value = email
        mail.type_param = "INTERNET"
        if card.phone:
            v.add("tel").value = card.phone
        if card.organisation:
            v.add("org").value = [card.organisation]
        if card.profession:
            v.add("title").value = card.profession
        if card.rpps:
            v.add("x-rpps").value = card.rpps
        out.append(v.serialize())
    return "".join(out)


# -- CSV ------------------------------------------------------------------------

_COLUMNS = {
    "email": ("email", "mail", "courriel", "adressemail", "adresseemail", "adressecourriel",
              "emailaddress", "adresseelectronique"),
    "name": ("nom", "name", "nomcomplet", "fullname", "displayname", "nomaffiche", "contact"),
    "first": ("prenom", "firstname", "givenname"),
    "last": ("nomdefamille", "lastname", "familyname", "surname"),
    "phone": ("telephone", "tel", "phone", "mobile", "portable", "telephonemobile",
              "mobilephone", "numerodetelephone"),
    "profession": ("profession", "specialite", "metier", "title", "fonction", "jobtitle",
                   "role"),
    "rpps": ("rpps", "numerorpps", "nrpps", "idrpps"),
    "organisation": ("organisation", "organization", "structure", "etablissement", "societe",
                     "company", "cabinet", "entreprise"),
}


def _column(header: str) -> str | None:
    key = re.sub(r"[^a-z0-9]", "", fold(header))
    for column, names in _COLUMNS.items():
        if key in names:
            return column
    return None


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (";", ",", "\t")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def parse_csv(text: str) -> Parsed:
    parsed = Parsed("csv")
    first = next((line for line in text.splitlines() if line.strip()), "")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first),
                        quotechar='"', doublequote=True)
    header: list[str | None] | None = None
    end = 0  # last physical line read
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [_column(cell) for cell in row]
                if "email" not in header:
                    raise InvalidInput(
                        "no e-mail column in the CSV header (email, e-mail, mail, courriel)",
                        field="file",
                    )
                continue
            if len(row) != len(header):
                parsed.rejected.append(Rejected(
                    start, f"{len(row)} champs au lieu de {len(header)} "
                           "(séparateur ou guillemets mal placés ?)"))
                continue
            parsed.add(start, *_csv_entry(header, row))
    except csv.Error as exc:
        raise InvalidInput(f"unreadable CSV near line {end + 1}", field="file") from exc
    if header is None:
        raise InvalidInput("the file is empty", field="file")
    return parsed


def _csv_entry(header: list[str | None], row: list[str]) -> tuple[str, Card]:
    values: dict[str, str] = {}
    for column, cell in zip(header, row, strict=True):
        if column and cell.strip() and column not in values:
            values[column] = cell.strip()
    name = values.get("name", "")
    if "first" in values or "last" in values:
        # "Prénom" + "Nom": then "Nom" is the family name.
        family = values.get("last") or name
        name = f"{values.get('first', '')} {family}".strip()
    return values.get("email", ""), Card(
        name=name,
        phone=values.get("phone", ""),
        profession=values.get("profession", ""),
        rpps=values.get("rpps", ""),
        organisation=values.get("organisation", ""),
    )
