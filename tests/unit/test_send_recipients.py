"""The new transfer form's recipient field, read without JavaScript (issue
16, defect 11): commas, semicolons and new lines separate recipients;
spaces separate addresses only, never the words of a contact's name."""

from __future__ import annotations

import pytest

from coffre.http.web.send_pages import addresses


@pytest.mark.parametrize(("typed", "found"), [
    (["Jean Dupont"], ["Jean Dupont"]),
    (["  Jean   Dupont ; Bernard"], ["Jean Dupont", "Bernard"]),
    (["a@exemple.fr b@exemple.fr, Jean Dupont\nc@exemple.fr"],
     ["a@exemple.fr", "b@exemple.fr", "Jean Dupont", "c@exemple.fr"]),
    (["Jean Dupont <jean@exemple.fr>"], ["jean@exemple.fr"]),
    (["Jean Dupont jean@exemple.fr"], ["jean@exemple.fr"]),
    (["a@exemple.fr", "", "b@exemple.fr;"], ["a@exemple.fr", "b@exemple.fr"]),
])
def test_recipients_as_typed(typed: list[str], found: list[str]) -> None:
    assert addresses(typed) == found
