"""Invitations do not tell an organisation's administrator which addresses
have an account in another organisation (issue 15, finding 13): inviting
such an address answers, mails and audits exactly as for a new address;
the invitation is refused at acceptance, with a clear message, and the
refusal is recorded outside the inviting organisation."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import ADMIN_EMAIL, MailCatcher, Server, login
from tests.integration.flows import audit_events, sql
from tests.integration.support import (
    api_client,
    assert_error,
    me,
    module_server,
    new_address,
    other_organisation_admin,
)
from tests.integration.test_members import (
    ADMIN_SCOPES,
    MEMBER_PASSWORD,
    accept,
    invitation_link,
)

mail, server, token, client, admin = module_server("invitation-privacy")
OTHER_EMAIL, OTHER_PASSWORD = "admin@autre-cabinet.fr", "une autre phrase de passe"


def _shape(value: Any) -> Any:
    """A JSON value with its strings, numbers and booleans erased: what
    stays is its structure (keys, nesting)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def mailed(mail: MailCatcher, address: str) -> tuple[str, str]:
    """The invitation link mailed to ``address`` (the outbox sends it soon)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return invitation_link(mail, address)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _created(server: Server, invitation_id: str) -> dict[str, Any]:
    found = [e for e in audit_events(server.data_dir, "invitation.created")
             if e["object"]["id"] == invitation_id]
    assert len(found) == 1, found
    return found[0]


def test_inviting_an_address_of_another_organisation_answers_like_a_new_one(
        server: Server, mail: MailCatcher, admin: dict[str, Any]) -> None:
    other_organisation_admin(server, OTHER_EMAIL, OTHER_PASSWORD)
    outsider = api_client(server, login(server.url, OTHER_EMAIL, OTHER_PASSWORD,
                                        scopes=ADMIN_SCOPES))
    try:
        them = me(outsider)
        fresh, taken = new_address("nouveau"), ADMIN_EMAIL
        answers = [outsider.post("/api/v1/invitations", json={"email": email, "role": "member"})
                   for email in (fresh, taken)]
        # The same status, headers that matter and body for both.
        assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
        bodies = [a.json() for a in answers]
        assert _shape(bodies[0]) == _shape(bodies[1])
        assert [b["email"] for b in bodies] == [fresh, taken]
        for key in ("role", "invited_by"):
            assert bodies[0][key] == bodies[1][key]
        assert (answers[0].headers["content-type"], answers[0].headers.get("cache-control")) == (
            answers[1].headers["content-type"], answers[1].headers.get("cache-control"))
        # Both pending alike; both mailed the same invitation.
        pending = {i["email"]: i for i in outsider.get("/api/v1/invitations").json()}
        assert _shape(pending[fresh]) == _shape(pending[taken])
        fresh_link, fresh_token = mailed(mail, fresh)
        taken_link, taken_token = mailed(mail, taken)
        # Audited alike in the inviting organisation.
        events = [_created(server, b["id"]) for b in bodies]
        assert all(e["organisation"] == them["organisation_id"] for e in events)
        assert events[0]["details"] == events[1]["details"]
        assert _shape(events[0]) == _shape(events[1])

        # Acceptance is refused, clearly, and creates nothing.
        page = httpx.get(taken_link)
        assert page.status_code == 409
        assert "text/html" in page.headers["content-type"]
        assert "une adresse ne peut appartenir qu" in page.text.replace("&#39;", "'")
        refused = accept(server, taken_token)
        assert_error(refused, 409, "conflict", {"reason": "address_taken"})
        assert sql(server.data_dir, "SELECT organisation_id FROM users WHERE email = ?",
                   taken) == [(admin["organisation_id"],)]
        # Recorded, but not in the inviting organisation's trail.
        refusals = [e for e in audit_events(server.data_dir, "invitation.refused")
                    if e["object"] and e["object"]["id"] == bodies[1]["id"]]
        assert len(refusals) == 2, refusals  # the page, then the API
        assert {e["organisation"] for e in refusals} == {None}
        assert {e["details"]["reason"] for e in refusals} == {"address_taken"}
        assert not [e for e in audit_events(server.data_dir)
                    if e["organisation"] == them["organisation_id"]
                    and e["outcome"] == "failure"]
        # To the inviter, it is an invitation still pending, like any unused one.
        assert taken in {i["email"] for i in outsider.get("/api/v1/invitations").json()}

        # The fresh address joins as usual.
        assert fresh_link != taken_link
        joined = accept(server, fresh_token)
        assert joined.status_code == 201, joined.text
        assert joined.json()["organisation_id"] == them["organisation_id"]
        assert MEMBER_PASSWORD not in str(audit_events(server.data_dir))
    finally:
        outsider.close()


def test_a_member_of_ones_own_organisation_is_still_a_409(server: Server) -> None:
    """The inviter sees their own members anyway: nothing to hide there."""
    with api_client(server, login(server.url, scopes=ADMIN_SCOPES)) as own:
        assert_error(own.post("/api/v1/invitations", json={"email": ADMIN_EMAIL}),
                     409, "conflict", {"field": "email"})
