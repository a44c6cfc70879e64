"""Phone numbers as people write them (``coffre.domain.phones``)."""

from __future__ import annotations

import pytest

from coffre.domain.contacts import normalise_phone
from coffre.domain.phones import format_phone, mask_phone, split


@pytest.mark.parametrize(("number", "french", "international"), [
    ("+33612345678", "06 12 34 56 78", "+33 6 12 34 56 78"),
    ("+33145678912", "01 45 67 89 12", "+33 1 45 67 89 12"),
    ("+262692123456", "06 92 12 34 56", "+262 692 12 34 56"),  # La Réunion: French plan
    ("+32470123456", "+32 470 12 34 56", "+32 470 12 34 56"),
    ("+41791234567", "+41 79 123 45 67", "+41 79 123 45 67"),
    ("+447911123456", "+44 7911 123456", "+44 7911 123456"),
    ("+14155552671", "+1 415 555 2671", "+1 415 555 2671"),
    ("+4915123456789", "+49 151 23 45 67 89", "+49 151 23 45 67 89"),
    ("+352621123456", "+352 621 12 34 56", "+352 621 12 34 56"),
    ("+33•••••••78", "0• •• •• •• 78", "+33 • •• •• •• 78"),  # masked
])
def test_numbers_are_grouped_as_their_readers_write_them(
        number: str, french: str, international: str) -> None:
    assert format_phone(number, "FR") == french
    assert format_phone(number, None) == international
    # Never a digit added, dropped or moved (the French form only trades +33 for 0).
    assert international.replace(" ", "") == number


@pytest.mark.parametrize("text", ["", "0612345678", "12345", "+33 6 12", "pas un numéro",
                                  "+1234567890123456"])
def test_what_is_not_an_e164_number_is_shown_as_it_came(text: str) -> None:
    assert format_phone(text) == text


def test_inputs_people_type_still_become_e164_then_read_back() -> None:
    for typed in ("06 12 34 56 78", "+33 6 12 34 56 78", "06.12.34.56.78", "0033 6 12 34 56 78"):
        assert format_phone(normalise_phone(typed)) == "06 12 34 56 78"


def test_country_codes_and_masks() -> None:
    assert split("+33612345678") == ("33", "612345678")
    assert split("+14155552671") == ("1", "4155552671")
    assert split("+352621123456") == ("352", "621123456")
    assert split("0612345678") is None
    assert mask_phone("+33612345678") == "+33•••••••78"
    assert mask_phone("+352621123456") == "+352•••••••56"
    assert mask_phone("+14155552671") == "+1••••••••71"
