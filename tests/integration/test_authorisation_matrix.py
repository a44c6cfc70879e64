"""The generated authorisation matrix (SEC-7): every API route x every kind
of caller x the objects it names (its own, a colleague's, another
organisation's, a guessed id).

Each route declares what it does (``deps.acting(Action.X)`` or
``deps.public(...)``); a route declaring nothing fails
``test_every_api_route_declares_its_policy``. The expected answer for each
cell comes from the domain policy (``coffre.domain.policy.allowed``), whose
own rules are pinned down by ``tests/unit/test_policy.py``; here the server
must agree with it: a refusal is 401/403/404 with the error shape and never
data, an allowed read answers 2xx, an allowed change (made on fresh objects
of the same kind) is not refused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from coffre.crypto import credentials
from coffre.db.tables import Organisation, User
from coffre.domain.accounts import ALL_SCOPES, Actor, Role, Scope
from coffre.domain.policy import Action, Target, allowed
from coffre.http import deps
from tests.conftest import Server, enrol_totp, login
from tests.integration.flows import TUS, upload_bytes
from tests.integration.support import (
    api_client,
    in_process,
    module_server,
    new_address,
    other_organisation_admin,
)
from tests.routes import declared_routes

mail, server, token, client, admin = module_server("matrix")
PASSWORD = "une phrase de passe assez longue"
SAFE = {"GET", "HEAD"}


def api_routes() -> list[tuple[str, str, str | None]]:
    """(method, path, declared policy) of every route under /api/v1."""
    return [route for route in declared_routes() if route[1].startswith("/api/v1")]


ROUTES = api_routes()
ACTION_ROUTES = [(m, p, a) for m, p, a in ROUTES if a and not a.startswith("public:")]
PUBLIC_ROUTES = [(m, p, a) for m, p, a in ROUTES if a and a.startswith("public:")]


def test_every_api_route_declares_its_policy() -> None:
    undeclared = [f"{m} {p}" for m, p, a in ROUTES if a is None]
    assert not undeclared, f"routes without a policy declaration: {undeclared}"
    assert len(ACTION_ROUTES) > 30


def test_every_declared_action_has_a_rule() -> None:
    actor = Actor("u", "o", Role.ADMIN, ALL_SCOPES, mfa=True, stepped_up=True)
    for _, path, action in ACTION_ROUTES:
        assert action is not None
        # A rule exists: the most powerful caller is allowed something.
        assert allowed(actor, Action(action), Target("o", "u")), path


# -- the world: one organisation's objects, and who asks ---------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    token: str | None
    model: Actor | None  # what the policy knows of them (None: anonymous)


@dataclass
class World:
    callers: list[Caller]
    objects: dict[str, str]  # path parameter -> an id of the owner's (or colleague's)
    targets: dict[str, Target]
    #: (path parameter, route) -> a fresh object of the same kind, for
    #: allowed changes (so that they do not alter the shared ones).
    fresh: Any = None


def _member(server: Server, role: Role = Role.MEMBER,
            org_id: str | None = None) -> tuple[str, str]:
    email = new_address("membre")
    app = in_process(server)
    try:
        with app.db.session() as session:
            org_id = org_id or session.query(Organisation.id).scalar()
            user = User(organisation_id=org_id, email=email, role=role.value,
                        password_hash=credentials.hash_password(PASSWORD))
            session.add(user)
            session.flush()
            return email, user.id
    finally:
        app.close()


@pytest.fixture(scope="module")
def world(server: Server, client: httpx.Client, admin: dict[str, Any]) -> World:
    org = admin["organisation_id"]
    admin_token = login(server.url, scopes=["transfers:read", "transfers:write", "admin"])
    owner_email, owner_id = _member(server)
    colleague_email, colleague_id = _member(server)
    bare_admin_email, bare_admin_id = _member(server, Role.ADMIN)
    # The owner has a second factor (so factors and sessions of theirs exist):
    # enrolling it ends their password-only token; they sign in again with it.
    first = httpx.post(f"{server.url}/api/v1/auth/token",
                       json={"email": owner_email, "password": PASSWORD}).json()["token"]
    _, recovery = enrol_totp(server.url, first)
    owner = httpx.post(f"{server.url}/api/v1/auth/token", json={
        "email": owner_email, "password": PASSWORD, "code": recovery.pop()}).json()["token"]
    with api_client(server, owner) as c:
        read_only = c.post("/api/v1/tokens", json={
            "name": "lecture", "scopes": ["transfers:read"]}).json()["token"]
    colleague = login(server.url, colleague_email, PASSWORD)
    bare = httpx.post(f"{server.url}/api/v1/auth/token",
                      json={"email": bare_admin_email, "password": PASSWORD,
                            "scopes": ["transfers:read", "transfers:write", "admin"]})
    assert bare.status_code == 201, bare.text
    outsider = other_organisation_admin(server)
    outsider_me = httpx.get(f"{server.url}/api/v1/me",
                            headers={"Authorization": f"Bearer {outsider}"}).json()

    with api_client(server, owner) as c:
        upload = upload_bytes(c, b"compte rendu", "cr.txt")
        transfer = c.post("/api/v1/transfers", json={
            "files": [upload], "recipients": [new_address()]}).json()["id"]
        pending = c.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "10"})
        pending_id = pending.headers["location"].rstrip("/").rsplit("/", 1)[-1]
        token_id = c.get("/api/v1/tokens").json()[0]["id"]
        shown = c.get(f"/api/v1/transfers/{transfer}").json()
        file_id = shown["files"][0]["id"]
        recipient_id = shown["recipients"][0]["id"]
        upload_request = c.post("/api/v1/requests", json={
            "depositors": [new_address("depose")]}).json()["id"]
        factor_id = c.get("/api/v1/account/factors").json()["factors"][0]["id"]
        contact_id = c.post("/api/v1/contacts", json={"email": new_address("contact")}).json()["id"]
        device_id = c.post("/api/v1/backup/devices",
                           json={"name": "Poste accueil"}).json()["device"]["id"]
    with api_client(server, admin_token) as c:
        invitation = c.post("/api/v1/invitations", json={"email": new_address("invite")})
        assert invitation.status_code == 201, invitation.text
    session_id = _owner_session(server, owner_email, recovery[0])

    def model(user_id: str, organisation: str, role: Role, scopes: frozenset[Scope],
              mfa: bool) -> Actor:
        return Actor(user_id, organisation, role, scopes, mfa=mfa,
                     mfa_required=role is Role.ADMIN, stepped_up=True)

    rw = frozenset({Scope.TRANSFERS_READ, Scope.TRANSFERS_WRITE})
    callers = [
        Caller("anonymous", None, None),
        Caller("admin", admin_token, model(admin["id"], org, Role.ADMIN, ALL_SCOPES, True)),
        Caller("owner", owner, model(owner_id, org, Role.MEMBER, rw, True)),
        Caller("colleague", colleague, model(colleague_id, org, Role.MEMBER, rw, False)),
        Caller("owner-read-only", read_only,
               model(owner_id, org, Role.MEMBER, frozenset({Scope.TRANSFERS_READ}), True)),
        Caller("admin-without-2fa", bare.json()["token"],
               model(bare_admin_id, org, Role.ADMIN, ALL_SCOPES, False)),
        Caller("other-organisation-admin", outsider,
               model(outsider_me["id"], outsider_me["organisation_id"], Role.ADMIN, rw, True)),
    ]
    mine = Target(org, owner_id)
    last_transfer: dict[str, Any] = {}

    def fresh(param: str, path: str) -> str:
        with api_client(server, owner) as c:
            if param == "transfer_id":
                upload = upload_bytes(c, b"compte rendu", "cr.txt")
                made = c.post("/api/v1/transfers", json={"files": [upload],
                                                          "recipients": [new_address()]})
                last_transfer.update(made.json())
                return str(made.json()["id"])
            if param == "recipient_id":  # of the fresh transfer just made
                return str(last_transfer["recipients"][0]["id"])
            if param == "request_id":
                made = c.post("/api/v1/requests", json={"depositors": [new_address("depose")]})
                return str(made.json()["id"])
            if param == "upload_id":
                made = c.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": "10"})
                return str(made.headers["location"].rstrip("/").rsplit("/", 1)[-1])
            if param == "token_id":
                c.post("/api/v1/tokens", json={"name": "jetable", "scopes": ["transfers:read"]})
                return str(c.get("/api/v1/tokens").json()[-1]["id"])
            if param == "factor_id" and path.endswith("/confirm"):
                return str(c.post("/api/v1/account/factors/totp", json={}).json()["id"])
            if param == "factor_id":
                enrol_totp(server.url, owner)
                return str(c.get("/api/v1/account/factors").json()["factors"][-1]["id"])
            if param == "session_id":
                return _owner_session(server, owner_email, _recovery_code(server, owner_id))
            if param == "contact_id":
                made = c.post("/api/v1/contacts", json={"email": new_address("contact")})
                return str(made.json()["id"])
            if param == "device_id":
                made = c.post("/api/v1/backup/devices", json={"name": "Poste jetable"})
                return str(made.json()["device"]["id"])
        if param == "member_id":
            return _member(server, org_id=org)[1]
        if param == "invitation_id":
            with api_client(server, admin_token) as c:
                made = c.post("/api/v1/invitations", json={"email": new_address("invite")})
                return str(made.json()["id"])
        raise AssertionError(f"no factory for {param}")

    return World(
        fresh=fresh,
        callers=callers,
        objects={"transfer_id": transfer, "upload_id": pending_id, "token_id": token_id,
                 "factor_id": factor_id, "session_id": session_id,
                 "member_id": colleague_id, "invitation_id": invitation.json()["id"],
                 "contact_id": contact_id, "request_id": upload_request, "file_id": file_id,
                 "device_id": device_id, "recipient_id": recipient_id},
        targets={"transfer_id": mine, "upload_id": mine, "token_id": mine, "factor_id": mine,
                 "session_id": mine, "member_id": Target(org, colleague_id),
                 "invitation_id": Target(org, None), "contact_id": mine,
                 "request_id": mine, "file_id": mine, "device_id": mine,
                 "recipient_id": mine},
    )


def _owner_session(server: Server, email: str, recovery_code: str) -> str:
    """A browser session of the owner's (signed in with a recovery code)."""
    signed = httpx.post(f"{server.url}/api/v1/auth/login",
                        json={"email": email, "password": PASSWORD})
    assert signed.json()["stage"] == "password"
    cookie = signed.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    done = httpx.post(f"{server.url}/api/v1/auth/login/recovery", json={"code": recovery_code},
                      headers={"Cookie": f"{deps.SESSION_COOKIE}={cookie}",
                               "Origin": server.url})
    assert done.status_code == 200, done.text
    cookie = done.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    listed = httpx.get(f"{server.url}/api/v1/account/sessions",
                       headers={"Cookie": f"{deps.SESSION_COOKIE}={cookie}"})
    session_id: str = listed.json()[0]["id"]
    return session_id


def _recovery_code(server: Server, user_id: str) -> str:
    """A fresh recovery code for the owner (the world's setup used theirs)."""
    code = "matr-ixco-de" + uuid.uuid4().hex[:2]
    app = in_process(server)
    try:
        from coffre.db.tables import RecoveryCode

        with app.db.session() as session:
            normal = "".join(ch for ch in code if ch.isalnum())
            session.add(RecoveryCode(user_id=user_id, code_hash=credentials.hash_token(normal)))
    finally:
        app.close()
    return code


def _params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def test_every_object_route_has_a_known_object(world: World) -> None:
    unknown = {p for _, path, _ in ACTION_ROUTES for p in _params(path)} - set(world.objects)
    assert not unknown, f"add these path parameters to the matrix: {unknown}"


#: A well-formed body for routes that take one, so that refusals come from
#: the policy and not from validation (POST/PATCH routes not listed get {}).
BODIES: dict[str, Any] = {
    "/api/v1/account/factors/totp/{factor_id}/confirm": {"code": "123456"},
    "/api/v1/transfers/{transfer_id}/extend": {"expires_in": "7d"},
    "/api/v1/transfers/{transfer_id}/hold": {"reason": "réquisition judiciaire"},
    "/api/v1/members/{member_id}": {"role": "member"},
    "/api/v1/invitations": {"email": "invite@exemple.fr"},
    "/api/v1/tokens": {"name": "x", "scopes": ["transfers:read"]},
    "/api/v1/auth/reauth": {"password": "une phrase de passe assez longue"},
    "/api/v1/account/factors/webauthn": {"credential": {}},
    "/api/v1/links/{token}/verify": {"code": "12345678"},
    "/api/v1/links/{token}/unlock": {"password": "un mot de passe"},
    "/api/v1/deposit/{token}/verify": {"code": "12345678"},
    "/api/v1/deposit/open/{open_token}/join": {"email": "depose@exemple.fr"},
    "/api/v1/transfers/{transfer_id}/forward": {"recipients": ["suivi@exemple.fr"]},
    "/api/v1/contacts": {"email": "contact@exemple.fr", "name": "Contact"},
    "/api/v1/contacts/resolve": {"recipients": ["contact@exemple.fr"]},
    "/api/v1/contacts/{contact_id}": {"name": "Contact renommé"},
    "/api/v1/backup/devices": {"name": "Poste accueil"},
}
STEP_UP_ROUTES = {"/api/v1/auth/reauth"}
TUS_PATCH = {"Tus-Resumable": "1.0.0", "Upload-Offset": "0",
             "Content-Type": "application/offset+octet-stream"}


def _call(caller: Caller, method: str, path: str, url: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {caller.token}"} if caller.token else {}
    kwargs: dict[str, Any] = {}
    if path.startswith("/api/v1/uploads"):
        headers.update(TUS_PATCH if method == "PATCH" else {"Tus-Resumable": "1.0.0"})
        if method == "POST":
            headers["Upload-Length"] = "10"
        kwargs["content"] = b""
    elif method in {"POST", "PATCH", "PUT"}:
        kwargs["json"] = BODIES.get(path, {})
    with httpx.Client(timeout=30) as c, c.stream(method, url, headers=headers,
                                                  **kwargs) as response:
        if response.headers.get("content-type", "").startswith("application/json"):
            response.read()
        return response


def _is_refusal(response: httpx.Response, method: str) -> bool:
    if response.status_code not in {401, 403, 404}:
        return False
    if method == "HEAD":
        return True  # no body to carry data
    body = response.json()
    return set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}


CELLS = [(m, p, a, c) for m, p, a in ACTION_ROUTES
         for c in ["anonymous", "admin", "owner", "colleague", "owner-read-only",
                   "admin-without-2fa", "other-organisation-admin"]]


@pytest.mark.parametrize(("method", "path", "action", "caller_name"), CELLS,
                         ids=[f"{m} {p} as {c}" for m, p, _, c in CELLS])
def test_matrix(server: Server, world: World, method: str, path: str, action: str,
                caller_name: str) -> None:
    caller = next(c for c in world.callers if c.name == caller_name)
    params = _params(path)
    target = world.targets[params[0]] if params else None
    url = server.url + path.format(**{p: world.objects[p] for p in params})
    expected = caller.model is not None and allowed(caller.model, Action(action), target)
    if expected and method not in SAFE:
        if path in STEP_UP_ROUTES:
            pytest.skip("re-authentication answers by credentials: tested in test_auth")
        # An allowed change acts on fresh objects of the same kind, and may
        # still be refused for what it asks (400, 409...) but not by policy.
        url = server.url + path.format(**{p: world.fresh(p, path) for p in params})
        response = _call(caller, method, path, url)
        assert not _is_refusal(response, method), (response.status_code, response.text)
        assert response.status_code < 500, response.text
        return
    response = _call(caller, method, path, url)
    if expected:
        assert 200 <= response.status_code < 300, (response.status_code, response.text)
        return
    assert _is_refusal(response, method), (response.status_code, response.text)
    if caller.model is None:
        assert response.status_code == 401


OBJECT_ROUTES = [(m, p, a) for m, p, a in ACTION_ROUTES if _params(p)]


@pytest.mark.parametrize(("method", "path", "action"), OBJECT_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in OBJECT_ROUTES])
def test_guessed_ids_are_not_found(server: Server, world: World, method: str, path: str,
                                   action: str) -> None:
    """IDOR: the administrator, who may see the whole organisation, asks for
    ids that exist nowhere (or in another table)."""
    admin_caller = next(c for c in world.callers if c.name == "admin")
    for guess in (uuid.uuid4().hex, world.objects["transfer_id"], "../../etc/passwd"):
        params = _params(path)
        values = {p: guess if p != "transfer_id" or guess != world.objects["transfer_id"]
                  else uuid.uuid4().hex for p in params}
        response = _call(admin_caller, method, path, server.url + path.format(**values))
        assert response.status_code in {400, 404, 405}, (path, guess, response.text)


@pytest.mark.parametrize(("method", "path", "reason"), PUBLIC_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in PUBLIC_ROUTES])
def test_public_routes_with_guessed_capabilities_give_nothing(
    server: Server, method: str, path: str, reason: str,
) -> None:
    params = _params(path)
    if not params or method == "OPTIONS":
        pytest.skip("no capability in the path (sign-in, setup, tus discovery)")
    url = server.url + path.format(**{p: credentials.new_token() for p in params})
    response = _call(Caller("anonymous", None, None), method, path, url)
    assert response.status_code in {401, 404, 410}, response.text
    if method != "HEAD":
        assert set(response.json()) == {"error"}


@pytest.mark.parametrize(("method", "path", "action"), OBJECT_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in OBJECT_ROUTES])
def test_hidden_objects_answer_like_missing_ones(server: Server, world: World, method: str,
                                                 path: str, action: str) -> None:
    """Another organisation's object and an id that exists nowhere get the
    same answer, byte for byte (no existence oracle)."""
    outsider = next(c for c in world.callers if c.name == "other-organisation-admin")
    params = _params(path)
    real = _call(outsider, method, path, server.url + path.format(
        **{p: world.objects[p] for p in params}))
    ghost = _call(outsider, method, path, server.url + path.format(
        **{p: uuid.uuid4().hex for p in params}))
    assert real.status_code == ghost.status_code
    if method != "HEAD" and real.headers.get("content-type", "").startswith("application/json"):
        assert real.json() == ghost.json()
