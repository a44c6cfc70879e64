"""Every action the audit trail records is listed in ``coffre.audit.actions``
and has a sentence and a category in the administration's audit view
(issue 16, defect 11): a new action without one fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import coffre
from coffre.audit.actions import ACTIONS
from coffre.http.web import audit_sentences
from coffre.http.web.i18n import use_language

SOURCE = Path(coffre.__file__).parent
#: Strings shaped like an action that are not one: the policy's actions
#: (``domain/policy.py`` is not scanned) and a prefix of two events.
NOT_ACTIONS = {"password.check"}
#: Actions made by formatting (``f"{event}.succeeded"``): every value.
FORMATTED = {f"{event}.{end}" for event in ("login", "reauth", "password.check")
             for end in ("succeeded", "failed")}


def recorded_actions() -> set[str]:
    """Every string of the code shaped like an action of an area the
    trail knows (``area.what``), outside the policy and the web pages."""
    areas = {a.split(".")[0] for a in ACTIONS}
    found = set()
    for path in SOURCE.rglob("*.py"):
        relative = path.relative_to(SOURCE).as_posix()
        if relative == "domain/policy.py" or relative.startswith(("http/web/", "cli/")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = re.fullmatch(r"([a-z]+)\.[a-z_]+", node.value)
                if match and match.group(1) in areas:
                    found.add(node.value)
    return (found - NOT_ACTIONS) | FORMATTED


def test_every_recorded_action_is_listed() -> None:
    missing = recorded_actions() - ACTIONS
    assert not missing, f"add to coffre.audit.actions: {sorted(missing)}"


def test_every_action_has_a_sentence_and_a_category() -> None:
    without = ACTIONS - set(audit_sentences.SENTENCES)
    assert not without, f"no sentence in http/web/audit_sentences.py: {sorted(without)}"
    assert set(audit_sentences.SENTENCES) <= ACTIONS
    assert {c for c, _s in audit_sentences.SENTENCES.values()} == set(
        audit_sentences.CATEGORIES)


def test_sentences_read_as_french_with_names_sizes_and_no_codes() -> None:
    use_language("fr")
    names = audit_sentences.Names(
        members={"u1": "Marie Martin"}, people={"r1": "patient@example.fr"},
        files={"f1": ("compte-rendu.pdf", 1_258_291)})
    download = {"action": "transfer.downloaded", "actor": None,
                "object": {"type": "recipient", "id": "r1"},
                "details": {"files": ["f1"], "counted": ["f1"]}}
    assert audit_sentences.describe(download, names) == (
        "patient@example.fr a téléchargé « compte-rendu.pdf » (1,2 Mo)")
    refused = {"action": "login.failed", "actor": None, "details": {"failures": 1}}
    assert audit_sentences.describe(refused, names) == (
        "Connexion refusée : mot de passe erroné")
    for action in sorted(ACTIONS):
        event = {"action": action, "actor": "u1", "object": {"type": "user", "id": "u1"},
                 "details": {"kind": "totp", "files": 2, "count": 3, "size": 10}}
        sentence = audit_sentences.describe(event, names)
        assert action not in sentence and "%(" not in sentence, (action, sentence)
