"""The contacts directory against a real server: personal contacts and the
organisation's directory, accent-insensitive prefix search ranked by use,
vCard and CSV import (all good entries in one transaction, each bad line
reported by number) and vCard export, the CLI, and sending to a contact.

SEC-7 (a member's contacts are theirs alone; the directory is written by
administrators), SEC-29 (one audit event per change, import and export),
SEC-30 (no card content in the trail) and personal data sealed at rest.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import vobject

from coffre.crypto import credentials
from coffre.db.tables import Organisation, User
from coffre.services.contacts import ContactService
from tests import backends
from tests.conftest import ADMIN_EMAIL, Server, login, second_factor
from tests.e2e.test_cli import Cli
from tests.integration.flows import audit_events, sql, upload_bytes
from tests.integration.support import (
    api_client,
    assert_error,
    in_process,
    module_server,
    new_address,
    one_event,
    other_organisation_admin,
)

mail, server, token, client, admin = module_server("contacts")
PASSWORD = "une phrase de passe assez longue"
CANARY_NAME = "Hélène Canaripassereau"
CANARY_PHONE = "+33699887766"


def _member(server: Server) -> tuple[str, str]:
    email = new_address("membre")
    app = in_process(server)
    try:
        with app.db.session() as session:
            org_id = session.query(Organisation.id).scalar()
            user = User(organisation_id=org_id, email=email, role="member",
                        password_hash=credentials.hash_password(PASSWORD))
            session.add(user)
            session.flush()
            user_id = user.id
    finally:
        app.close()
    return login(server.url, email, PASSWORD), user_id


@pytest.fixture(scope="module")
def member(server: Server) -> Iterator[httpx.Client]:
    token, _ = _member(server)
    with api_client(server, token) as c:
        yield c


@pytest.fixture(scope="module")
def administrator(server: Server) -> Iterator[httpx.Client]:
    """The administrator, with the admin scope the directory needs."""
    token = login(server.url, scopes=["transfers:read", "transfers:write", "admin"])
    with api_client(server, token) as c:
        yield c


@pytest.fixture(scope="module")
def colleague(server: Server) -> Iterator[httpx.Client]:
    token, _ = _member(server)
    with api_client(server, token) as c:
        yield c


def _add(c: httpx.Client, **body: Any) -> dict[str, Any]:
    response = c.post("/api/v1/contacts", json=body)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def _count(server: Server) -> int:
    return int(sql(server.data_dir, "SELECT count(*) FROM contacts")[0][0])


def test_personal_contacts_search_update_delete_and_audit(
    server: Server, member: httpx.Client, colleague: httpx.Client, admin: dict[str, Any],
) -> None:
    me = member.get("/api/v1/me").json()
    made = _add(member, email="Helene.Dupre@Exemple.FR", name="Dr Hélène Dupré",
                phone="06 12 34 56 78", profession="Radiologue", rpps="10001234567",
                organisation="Imagerie du Parc")
    assert made["email"] == "helene.dupre@exemple.fr"
    assert made["phone"] == "+33612345678"  # French number stored in E.164
    assert not made["shared"]
    _add(member, email="henri@exemple.fr", name="Henri Lévêque")
    _add(member, email="paul@hopital.fr", name="Paul Martin")

    def names(q: str, c: httpx.Client = member) -> list[str]:
        found = c.get("/api/v1/contacts", params={"q": q, "limit": 10})
        assert found.status_code == 200, found.text
        return [x["name"] for x in found.json()]

    assert names("helene") == ["Dr Hélène Dupré"]  # accents and case ignored
    assert names("HÉL") == ["Dr Hélène Dupré"]
    assert names("dupre") == ["Dr Hélène Dupré"]  # any word of the name
    assert sorted(names("he")) == ["Dr Hélène Dupré", "Henri Lévêque"]
    assert names("hopital") == ["Paul Martin"]  # the address's domain
    assert names("paul@") == ["Paul Martin"]
    assert names("elene") == []  # a prefix, not a substring
    assert names("dupre", colleague) == []  # a colleague sees none of them

    # A colleague's, another organisation's and a missing id look alike (SEC-7).
    outsider = api_client(server, other_organisation_admin(server))
    for c in (colleague, outsider):
        assert_error(c.get(f"/api/v1/contacts/{made['id']}"), 404, "not_found")
        assert_error(c.patch(f"/api/v1/contacts/{made['id']}", json={"name": "x"}), 404,
                     "not_found")
        assert_error(c.delete(f"/api/v1/contacts/{made['id']}"), 404, "not_found")
    # Not the administrator either: personal contacts are their owner's.
    with api_client(server, login(server.url)) as administrator:
        assert_error(administrator.get(f"/api/v1/contacts/{made['id']}"), 404, "not_found")

    assert_error(member.post("/api/v1/contacts", json={"email": "helene.dupre@exemple.fr"}),
                 409, "conflict")
    assert_error(member.post("/api/v1/contacts", json={"email": "pas une adresse"}), 400,
                 "invalid_input")
    assert_error(member.post("/api/v1/contacts", json={"email": "a@b.fr", "rpps": "123"}),
                 400, "invalid_input")

    changed = member.patch(f"/api/v1/contacts/{made['id']}",
                           json={"profession": "Radiologue interventionnelle"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["profession"] == "Radiologue interventionnelle"
    assert changed.json()["name"] == "Dr Hélène Dupré"

    org = me["organisation_id"]
    secrets = ("Hélène", "Dupré", "+33612345678", "10001234567", "Radiologue")
    created = one_event(server.data_dir, "contact.created", object_type="contact",
                        object_id=made["id"], organisation=org, actor=me["id"], secrets=secrets)
    assert created["details"] == {"shared": False}
    updated = one_event(server.data_dir, "contact.updated", object_type="contact",
                        object_id=made["id"], organisation=org, actor=me["id"], secrets=secrets)
    assert updated["details"]["fields"] == ["profession"]

    assert member.delete(f"/api/v1/contacts/{made['id']}").status_code == 204
    assert_error(member.get(f"/api/v1/contacts/{made['id']}"), 404, "not_found")
    one_event(server.data_dir, "contact.deleted", object_type="contact", object_id=made["id"],
              organisation=org, actor=me["id"], secrets=secrets)


def test_the_directory_is_read_by_members_and_written_by_administrators(
    server: Server, administrator: httpx.Client, member: httpx.Client,
) -> None:
    client = administrator
    shared = _add(client, email="secretariat@clinique.fr", name="Secrétariat Clinique Azur",
                  shared=True)
    assert shared["shared"]
    found = member.get("/api/v1/contacts", params={"q": "secretariat"}).json()
    assert [c["id"] for c in found] == [shared["id"]]
    assert member.get(f"/api/v1/contacts/{shared['id']}").status_code == 200
    # Seen, so not hidden: refused for the role.
    assert_error(member.patch(f"/api/v1/contacts/{shared['id']}", json={"name": "x"}), 403,
                 "permission_denied")
    assert_error(member.delete(f"/api/v1/contacts/{shared['id']}"), 403, "permission_denied")
    assert_error(member.post("/api/v1/contacts", json={"email": "x@clinique.fr",
                                                       "shared": True}),
                 403, "permission_denied")
    assert_error(member.post("/api/v1/contacts/import?shared=true", content=b"email\na@b.fr\n"),
                 403, "permission_denied")
    # The same address may be both in the directory and someone's own list.
    _add(member, email="secretariat@clinique.fr", name="Accueil clinique")
    only = member.get("/api/v1/contacts", params={"scope": "shared"}).json()
    assert all(c["shared"] for c in only)
    renamed = client.patch(f"/api/v1/contacts/{shared['id']}", json={"name": "Accueil Azur"})
    assert renamed.status_code == 200, renamed.text


def test_sending_to_contacts_ranks_them_first_and_resolves_names(
    server: Server, member: httpx.Client,
) -> None:
    a = _add(member, email="marie.curie@exemple.fr", name="Marie Curie", phone="+33611111111")
    b = _add(member, email="marie.lambert@exemple.fr", name="Marie Lambert")
    before = [c["id"] for c in member.get("/api/v1/contacts", params={"q": "marie"}).json()]
    assert before == [a["id"], b["id"]]  # by name while neither was used
    for _ in range(2):
        upload = upload_bytes(member, b"compte rendu", "cr.pdf")
        sent = member.post("/api/v1/transfers", json={"files": [upload],
                                                      "recipients": ["Marie.Lambert@exemple.fr"]})
        assert sent.status_code == 201, sent.text
    found = member.get("/api/v1/contacts", params={"q": "marie"}).json()
    assert [c["id"] for c in found] == [b["id"], a["id"]]
    assert found[0]["use_count"] == 2 and found[0]["last_used_at"]

    resolved = member.post("/api/v1/contacts/resolve",
                           json={"recipients": ["marie c", "Marie Lambert", "x@exemple.fr"]})
    assert resolved.status_code == 200, resolved.text
    assert [(r["email"], r["phone"]) for r in resolved.json()["recipients"]] == [
        ("marie.curie@exemple.fr", None),  # no SMS gateway here: no phone to fill in
        ("marie.lambert@exemple.fr", None),
        ("x@exemple.fr", None),
    ]
    ambiguous = member.post("/api/v1/contacts/resolve", json={"recipients": ["marie"]})
    error = assert_error(ambiguous, 400, "invalid_input")
    assert sorted(error["details"]["candidates"]) == ["marie.curie@exemple.fr",
                                                      "marie.lambert@exemple.fr"]
    assert_error(member.post("/api/v1/contacts/resolve", json={"recipients": ["zorro"]}), 400,
                 "invalid_input")
    # With an SMS gateway, the contact's mobile number comes along.
    app = in_process(server)
    try:
        with_sms = ContactService(app.db, app.keys, app.clock, sms_enabled=True)
        me = member.get("/api/v1/me").json()
        from coffre.domain.accounts import ALL_SCOPES, Actor, Role

        actor = Actor(me["id"], me["organisation_id"], Role.MEMBER, ALL_SCOPES, mfa=False)
        [curie] = with_sms.resolve(actor, ["marie cu"])
        assert (curie.email, curie.phone) == ("marie.curie@exemple.fr", "+33611111111")
    finally:
        app.close()


def _vcards(count: int) -> tuple[bytes, list[int]]:
    """``count`` good cards in assorted versions, and two broken ones; returns
    the file and the line numbers of the broken cards."""
    rng = random.Random(4)
    first = ["Hélène", "Zoé", "Maël", "Chloé", "François", "Anaïs", "Jérôme", "Noël"]
    last = ["Dupré", "Lefèvre", "Côté", "Müller", "O'Brien", "Nguyễn", "Garçon", "Brûlé"]
    lines: list[str] = []
    bad: list[int] = []
    for i in range(count):
        if i in (100, 700):
            bad.append(len(lines) + 1)
            lines += ["BEGIN:VCARD", "VERSION:3.0", f"FN:Sans adresse {i}", "END:VCARD"]
        given, family = rng.choice(first), rng.choice(last)
        lines += ["BEGIN:VCARD", "VERSION:3.0", f"FN:{given} {family}",
                  f"N:{family};{given};;;",
                  f"EMAIL;TYPE=INTERNET:contact{i:04d}@exemple.fr",
                  f"TEL;TYPE=CELL:+336{i:08d}", "ORG:Cabinet\\, Lyon", "TITLE:Médecin",
                  f"X-RPPS:1{i:010d}", "END:VCARD"]
    return ("\r\n".join(lines) + "\r\n").encode(), bad


def test_import_a_thousand_vcards_and_export_them(
    server: Server, colleague: httpx.Client,
) -> None:
    data, bad = _vcards(1000)
    assert len(data) < 1 << 20  # fits the server's 1 MiB body limit
    before = _count(server)
    checked = colleague.post("/api/v1/contacts/import?dry_run=true", content=data,
                             headers={"Content-Type": "text/vcard"})
    assert checked.status_code == 200, checked.text
    assert checked.json()["created"] == 1000
    assert _count(server) == before  # a dry run imports nothing

    report = colleague.post("/api/v1/contacts/import", content=data,
                            headers={"Content-Type": "text/vcard"})
    assert report.status_code == 200, report.text
    body = report.json()
    assert (body["format"], body["created"], body["updated"]) == ("vcard", 1000, 0)
    assert body["rejected"] == [{"line": n, "reason": "pas d'adresse e-mail"} for n in bad]
    assert _count(server) == before + 1000
    found = colleague.get("/api/v1/contacts", params={"q": "contact0999"}).json()
    assert found[0]["phone"] == "+33600000999"
    assert found[0]["organisation"] == "Cabinet, Lyon"
    assert found[0]["rpps"] == "10000000999"

    again = colleague.post("/api/v1/contacts/import", content=data,
                           headers={"Content-Type": "text/vcard"}).json()
    assert (again["created"], again["updated"]) == (0, 0)  # same addresses: nothing new

    exported = colleague.get("/api/v1/contacts/export.vcf", params={"scope": "personal"})
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/vcard")
    cards = list(vobject.readComponents(exported.text))
    assert len(cards) == 1000
    assert all(c.version.value == "3.0" for c in cards)
    one = next(c for c in cards if c.email.value == "contact0042@exemple.fr")
    assert one.tel.value == "+33600000042"
    assert one.contents["x-rpps"][0].value == "10000000042"

    me = colleague.get("/api/v1/me").json()
    imports = [e for e in audit_events(server.data_dir, "contacts.imported")
               if e["actor"] == me["id"]]
    assert [e["details"] for e in imports] == [
        {"format": "vcard", "shared": False, "created": 1000, "updated": 0, "rejected": 2},
        {"format": "vcard", "shared": False, "created": 0, "updated": 0, "rejected": 2},
    ]
    [export] = [e for e in audit_events(server.data_dir, "contacts.exported")
                if e["actor"] == me["id"]]
    assert export["details"] == {"scope": "personal", "count": 1000}
    assert "contact0042" not in str([*imports, export])


CSV = (
    "\ufeffNom;Prénom;E-mail;Téléphone;Spécialité;RPPS;Établissement\r\n"  # line 1
    'Lefèvre;Zoé;zoe.lefevre@exemple.fr;06 01 02 03 04;Cardiologue;;"Clinique ""Les Tilleuls"""\r\n'
    "Côté;Maël;mael@exemple.fr;;;;\r\n"  # 3
    "sans;adresse;;;;;\r\n"  # 4: no address
    "trop;de;champs;a@b.fr;;;;;\r\n"  # 5: wrong number of fields
    "\r\n"  # 6: blank, skipped
    'Brûlé;Noël;"noel@exemple.fr";;"Médecin; généraliste";12345;\r\n'  # 7: bad RPPS
    "Müller;Anaïs;pas-une-adresse;;;;\r\n"  # 8
    '"O\'Brien\r\nJr";Jérôme;jerome@exemple.fr;;;;\r\n'  # 9-10: a quoted line break
    "Doublon;Zoé;Zoe.Lefevre@exemple.fr;;;;\r\n"  # 11: twice in the file
)


def test_import_csv_with_accents_quotes_and_malformed_lines(
    server: Server, administrator: httpx.Client,
) -> None:
    client = administrator
    before = _count(server)
    report = client.post("/api/v1/contacts/import?shared=true", content=CSV.encode())
    assert report.status_code == 200, report.text
    body = report.json()
    assert (body["format"], body["created"], body["updated"]) == ("csv", 3, 0)
    assert [(r["line"], r["reason"]) for r in body["rejected"]] == [
        (4, "pas d'adresse e-mail"),
        (5, "9 champs au lieu de 7 (séparateur ou guillemets mal placés ?)"),
        (7, "numéro RPPS invalide (11 chiffres)"),
        (8, "adresse e-mail invalide"),
        (11, "adresse déjà présente ligne 2"),
    ]
    assert _count(server) == before + 3
    zoe = client.get("/api/v1/contacts", params={"q": "zoe", "scope": "shared"}).json()
    assert [(c["name"], c["phone"], c["organisation"], c["shared"]) for c in zoe] == [
        ("Zoé Lefèvre", "+33601020304", 'Clinique "Les Tilleuls"', True)]
    jerome = client.get("/api/v1/contacts", params={"q": "jerome"}).json()
    assert jerome[0]["name"] == "Jérôme O'Brien Jr"

    # Comma-separated, no BOM, English headers: an update of a known address.
    update = "name,email,phone\nZoé Lefèvre-Martin,zoe.lefevre@exemple.fr,\n"
    again = client.post("/api/v1/contacts/import?shared=true", content=update.encode()).json()
    assert (again["created"], again["updated"], again["rejected"]) == (0, 1, [])
    zoe = client.get("/api/v1/contacts", params={"q": "zoe", "scope": "shared"}).json()
    assert zoe[0]["name"] == "Zoé Lefèvre-Martin"
    assert zoe[0]["phone"] == "+33601020304"  # empty cells keep what was known


def test_a_file_that_does_not_parse_imports_nothing(server: Server,
                                                    member: httpx.Client) -> None:
    before = _count(server)
    good_then_binary = b"email;nom\r\nbon@exemple.fr;Bon\r\n" + b"\xff\xfe\x00garbage\r\n"
    assert_error(member.post("/api/v1/contacts/import", content=good_then_binary), 400,
                 "invalid_input")
    assert_error(member.post("/api/v1/contacts/import", content=b"nom;telephone\nA;B\n"),
                 400, "invalid_input")  # no address column
    assert_error(member.post("/api/v1/contacts/import?format=vcard",
                             content=b"bonjour\n"), 400, "invalid_input")
    too_big = b"email\n" + b"x@exemple.fr\n" * 90_000  # over the 1 MiB body limit
    assert_error(member.post("/api/v1/contacts/import", content=too_big), 413, "too_large")
    assert _count(server) == before
    assert member.get("/api/v1/contacts", params={"q": "bon@"}).json() == []


def test_canary_names_and_phones_are_sealed_at_rest(server: Server,
                                                   member: httpx.Client) -> None:
    _add(member, email="canari@exemple.fr", name=CANARY_NAME, phone=CANARY_PHONE,
         profession="Ornithologue", rpps="19876543210")
    member.post("/api/v1/contacts/import", content=(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Zéphyrin Canarivcard\r\n"
        "EMAIL:canari2@exemple.fr\r\nTEL:+33688776655\r\nEND:VCARD\r\n").encode())
    app = in_process(server)  # also folds the WAL into the database on close
    app.close()
    needles = [CANARY_NAME, "Canaripassereau", CANARY_PHONE, "19876543210", "Ornithologue",
               "Canarivcard", "+33688776655"]
    addresses_seen = False
    # The data directory (SQLite's files among them) and the database as a
    # dump (PostgreSQL's is elsewhere).
    stored = [(str(path), path.read_bytes())
              for path in server.data_dir.rglob("*") if path.is_file()]
    stored.append(("the database", backends.database_bytes(server.data_dir)))
    for where, raw in stored:
        addresses_seen |= b"canari@exemple.fr" in raw  # the scan does read the database
        for needle in needles:
            for encoded in (needle.encode(), needle.encode("utf-16-le")):
                assert encoded not in raw, f"{needle!r} in clear in {where}"
    assert addresses_seen


def test_cli_contacts_and_send_to_a_contact(server: Server, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery staple\n")
    cli = Cli(home, server.url)
    cli.run("login", "--url", server.url, "--email", ADMIN_EMAIL, "--password-file", str(pw),
            "--code", second_factor(server.url))
    added = cli.run("contacts", "add", "anais.cli@exemple.fr", "--name", "Anaïs Clément",
                    "--phone", "+33612121212", "--profession", "Dermatologue")
    assert "ajouté" in added.stdout
    csv_file = tmp_path / "carnet.csv"
    csv_file.write_text("courriel,nom\nbruno.cli@exemple.fr,Bruno Clavel\nmauvais,X\n",
                        encoding="utf-8")
    imported = cli.run("contacts", "import", str(csv_file), check=False)
    assert imported.returncode == 3, imported.stdout + imported.stderr  # a line was refused
    assert "1 contact(s) ont été créé(s)" in imported.stdout
    assert "adresse e-mail invalide" in imported.stdout
    found = cli.run("contacts", "search", "anais")
    assert "Anaïs Clément" in found.stdout and "Bruno" not in found.stdout
    listed = cli.run("contacts", "list", "--personal")
    assert "Bruno Clavel" in listed.stdout
    out = tmp_path / "export.vcf"
    cli.run("contacts", "export", "--personal", "-o", str(out))
    assert {c.email.value for c in vobject.readComponents(out.read_text("utf-8"))} == {
        "anais.cli@exemple.fr", "bruno.cli@exemple.fr"}

    document = tmp_path / "cr.txt"
    document.write_text("compte rendu")
    sent = cli.run("send", str(document), "--to", "anaïs", "--to", "bruno.cli@exemple.fr",
                   "--json")
    assert "anais.cli@exemple.fr" in sent.stdout and "bruno.cli@exemple.fr" in sent.stdout
    assert "Anaïs Clément <anais.cli@exemple.fr>" in sent.stderr
    assert cli.run("send", str(document), "--to", "zorglub", check=False).returncode != 0

    mine = json.loads(cli.run("contacts", "list", "--personal", "--json").stdout)
    contact_id = next(c["id"] for c in mine if c["name"] == "Bruno Clavel")
    cli.run("contacts", "delete", contact_id)
    assert "Bruno" not in cli.run("contacts", "list").stdout
