"""Contacts without a server: cards, search, ranking, vCard and CSV files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import vobject

from coffre.domain.contacts import Card, check_card, fold, matches, normalise_phone, rank
from coffre.errors import InvalidInput
from coffre.services import contact_files

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_fold_ignores_case_and_accents() -> None:
    assert fold("Hélène ÇÔTÉ Œuvre") == "helene cote œuvre"
    assert fold("Nguyễn") == "nguyen"


@pytest.mark.parametrize(("query", "hit"), [
    ("helene", True), ("HÉLÈ", True), ("dupre", True), ("jean-", False), ("pierre", True),
    ("h.dupre@", True), ("cabinet", True), ("elene", False), ("upre", False), ("", True),
])
def test_prefix_match_on_name_words_address_and_domain(query: str, hit: bool) -> None:
    card = Card(name="Hélène Dupré-Pierre")
    assert matches(query, "h.dupre@cabinet.fr", card) is hit


def test_ranking_counts_uses_and_discounts_old_ones() -> None:
    assert rank(0, None, NOW) == 0
    assert rank(3, NOW, NOW) > rank(2, NOW, NOW)
    assert rank(3, NOW - timedelta(days=90), NOW) < rank(1, NOW, NOW)


def test_cards_are_checked() -> None:
    card = check_card(Card(name="  Zoé   Lefèvre ", phone="06 12 34 56 78", rpps="10001234567"))
    assert (card.name, card.phone) == ("Zoé Lefèvre", "+33612345678")
    assert normalise_phone("0033 6 12 34 56 78") == "+33612345678"
    for bad in (Card(rpps="123"), Card(phone="appelez-moi"), Card(name="x" * 201),
                Card(name="a\u202eb")):
        with pytest.raises(InvalidInput):
            check_card(bad)


def test_vcard_round_trip_keeps_every_field() -> None:
    cards = [("zoe@exemple.fr", Card("Zoé Lefèvre", "+33601020304", "Cardiologue",
                                     "10001234567", 'Clinique "Les Tilleuls"; Lyon, 3e')),
             ("x@exemple.fr", Card())]
    text = contact_files.to_vcard(cards)
    assert [c.version.value for c in vobject.readComponents(text)] == ["3.0", "3.0"]
    parsed = contact_files.parse(text.encode())
    assert parsed.rejected == []
    assert [(e.email, e.card) for e in parsed.entries] == cards


def test_vcard_problems_are_reported_by_line() -> None:
    text = (
        "stray line\r\n"  # 1
        "BEGIN:VCARD\r\nVERSION:2.1\r\nN:Curie;Marie\r\nEMAIL:marie@exemple.fr\r\n"
        "END:VCARD\r\n"  # 2-6: version 2.1, name from N
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Sans fin\r\n"  # 7: never ended
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Pierre\r\nEMAIL:pierre@\r\nEND:VCARD\r\n"  # 10
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Paul\r\n  plié\r\n"  # 15: a folded line
        "EMAIL:paul@exemple.fr\r\nEND:VCARD\r\n"
    )
    parsed = contact_files.parse(text.encode("utf-8"))
    assert [(e.line, e.email, e.card.name) for e in parsed.entries] == [
        (2, "marie@exemple.fr", "Marie Curie"), (15, "paul@exemple.fr", "Paul plié")]
    assert [(r.line, r.reason) for r in parsed.rejected] == [
        (1, "ligne hors d'une fiche vCard"),
        (7, "fiche non terminée (END:VCARD manquant)"),
        (10, "adresse e-mail invalide"),
    ]


@pytest.mark.parametrize("data", [
    b"\xff\xfenot utf-8", b"", b"nom,telephone\nA,B\n", b"BEGIN:VCARD\nFN:x\n".replace(
        b"BEGIN:VCARD", b"BEGIN:VCALENDAR"), b"email\na@b.fr\x00\n",
])
def test_files_that_do_not_parse_are_refused_whole(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        contact_files.parse(data)


def test_csv_separators_bom_quotes_and_names() -> None:
    semicolon = "\ufeffPrénom;Nom;Courriel\r\nZoé;Lefèvre;zoe@exemple.fr\r\n"
    comma = 'full name,email,mobile\r\n"Côté, Maël",mael@exemple.fr,+33611111111\r\n'
    tab = "email\tnom\r\nnoel@exemple.fr\tNoël\r\n"
    got = [contact_files.parse(t.encode()).entries[0] for t in (semicolon, comma, tab)]
    assert [(e.email, e.card.name, e.card.phone) for e in got] == [
        ("zoe@exemple.fr", "Zoé Lefèvre", ""),
        ("mael@exemple.fr", "Côté, Maël", "+33611111111"),
        ("noel@exemple.fr", "Noël", ""),
    ]
