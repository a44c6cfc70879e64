"""The account pages against a real server (issue 16): a TOTP code typed
again by the browser that has just used it is told to wait, without a
security alert or a failure towards a lock, while the same code replayed
from another browser is reported; and an action stopped by step-up is
resumed, once, after the re-authentication."""

from __future__ import annotations

import re
from html import unescape

import httpx
import pytest

from coffre.domain.accounts import Role
from tests.conftest import (
    ADMIN_PASSWORD,
    MailCatcher,
    Server,
    enrol_totp,
    second_factor,
    totp_code,
)
from tests.integration.flows import audit_events, make_transfer, sql
from tests.integration.support import module_server, opened, page_session, send
from tests.integration.test_auth import COOKIE, PASSWORD, new_user

mail, server, token, client, admin = module_server("account-pages")
BROWSER = "__Host-coffre-browser"
CSRF = re.compile(r'data-csrf="([^"]+)"')


def _mails(server: Server) -> int:
    return int(sql(server.data_dir, "SELECT COUNT(*) FROM outgoing_mail")[0][0])


def _factor_failures(server: Server) -> list[int]:
    return [f for (f,) in sql(server.data_dir,
                              "SELECT failures FROM throttles WHERE kind = 'factor'")]


def _password_step(server: Server, email: str, mark: str | None) -> tuple[str, str]:
    """Sign in with the password: (pending session cookie, browser mark)."""
    headers = {"Origin": server.url}
    if mark:
        headers["Cookie"] = f"{BROWSER}={mark}"
    signed = httpx.post(f"{server.url}/login", headers=headers, timeout=30,
                        data={"email": email, "password": PASSWORD})
    assert signed.status_code == 303, signed.text
    return signed.cookies[COOKIE], mark or signed.cookies[BROWSER]


def _code_step(server: Server, pending: str, mark: str, code: str) -> httpx.Response:
    return httpx.post(f"{server.url}/login/second-factor", timeout=30,
                      headers={"Origin": server.url,
                               "Cookie": f"{COOKIE}={pending}; {BROWSER}={mark}"},
                      data={"method": "totp", "code": code, "next": "/transfers"})


def test_a_code_reused_by_its_browser_waits_and_one_replayed_elsewhere_is_reported(
        server: Server) -> None:
    email = new_user(server, Role.MEMBER)
    api = httpx.post(f"{server.url}/api/v1/auth/token", timeout=30, json={
        "email": email, "password": PASSWORD, "scopes": ["transfers:read"]})
    assert api.status_code == 201, api.text
    secret, _codes = enrol_totp(server.url, api.json()["token"])  # this step's code
    code = totp_code(secret, steps_ahead=1)  # unused yet

    pending, mine = _password_step(server, email, None)
    assert _code_step(server, pending, mine, code).status_code == 303  # signed in

    # Signed out and in again at once, the same browser types the same code.
    mails = _mails(server)
    pending, _same = _password_step(server, email, mine)
    again = _code_step(server, pending, mine, code)
    assert again.status_code == 401
    assert "Ce code vient d'être utilisé : attendez le suivant (30 s)." in unescape(again.text)
    assert _mails(server) == mails  # no security alert
    assert _factor_failures(server) == [0]  # not a failure towards a lock
    reused = audit_events(server.data_dir, "factor.code_reused")
    assert [e["actor"] for e in reused] == [reused[0]["actor"]] and reused[0]["actor"]
    assert not audit_events(server.data_dir, "factor.replay_rejected")

    # The same code from another browser (someone who saw it) is a replay.
    pending, theirs = _password_step(server, email, None)
    assert theirs != mine
    replayed = _code_step(server, pending, theirs, code)
    assert replayed.status_code == 401
    assert "attendez le suivant" not in replayed.text
    assert "Ce code n'a pas été accepté" in unescape(replayed.text)
    assert _mails(server) == mails + 1  # the owner is told
    assert _factor_failures(server) == [1]
    assert len(audit_events(server.data_dir, "factor.replay_rejected")) == 1


def _page_session(server: Server) -> tuple[httpx.Client, str]:
    """The administrator signed in through the pages: (client, CSRF token)."""
    browser = page_session(server)
    found = CSRF.search(browser.get("/account").text)
    assert found
    return browser, found.group(1)


def test_step_up_resumes_the_deletion_asked_for_once(server: Server,
                                                     client: httpx.Client) -> None:
    transfer = make_transfer(client, {"bilan.pdf": b"%PDF bilan"}, ["patient@exemple.fr"])["id"]
    browser, csrf = _page_session(server)
    try:
        sql(server.data_dir, "UPDATE user_sessions SET auth_time = '2000-01-01 00:00:00'")
        asked = browser.post(f"/transfers/{transfer}/delete", data={"csrf_token": csrf})
        assert asked.status_code == 303 and asked.headers["location"].startswith("/reauth?")
        assert client.get(f"/api/v1/transfers/{transfer}").status_code == 200  # not yet

        confirmed = browser.post("/reauth", data={
            "csrf_token": csrf, "next": f"/transfers/{transfer}", "password": ADMIN_PASSWORD,
            "code": second_factor(server.url)})
        assert confirmed.status_code == 303
        assert confirmed.headers["location"] == f"/reauth/continue?next=/transfers/{transfer}"
        page = browser.get(confirmed.headers["location"])
        assert page.status_code == 200, server.log()[-3000:]
        assert f'action="/transfers/{transfer}/delete"' in page.text
        assert "Supprimer le transfert" in page.text and ADMIN_PASSWORD not in page.text
        resumed = audit_events(server.data_dir, "reauth.resumed")
        assert [(e["details"]["resumed"], e["details"]["path"]) for e in resumed] == [
            ("transfer.delete", f"/transfers/{transfer}/delete")]
        # Taken once: a reload goes back to the page.
        again = browser.get(confirmed.headers["location"])
        assert again.status_code == 303
        assert again.headers["location"] == f"/transfers/{transfer}"

        done = browser.post(f"/transfers/{transfer}/delete", data={"csrf_token": csrf})
        assert done.status_code == 303 and "/reauth" not in done.headers["location"]
        assert [e["object"]["id"] for e in audit_events(server.data_dir,
                                                        "transfer.deleted")] == [transfer]
    finally:
        browser.close()


def test_a_lapsed_intent_is_not_resumed(server: Server, client: httpx.Client) -> None:
    transfer = make_transfer(client, {"note.txt": b"note"}, ["patient@exemple.fr"])["id"]
    browser, csrf = _page_session(server)
    try:
        sql(server.data_dir, "UPDATE user_sessions SET auth_time = '2000-01-01 00:00:00'")
        browser.post(f"/transfers/{transfer}/delete", data={"csrf_token": csrf})
        sql(server.data_dir, "UPDATE user_sessions SET intent_expires_at = "
                             "'2000-01-01 00:00:00' WHERE intent_sealed IS NOT NULL")
        browser.post("/reauth", data={"csrf_token": csrf, "password": ADMIN_PASSWORD,
                                      "code": second_factor(server.url),
                                      "next": f"/transfers/{transfer}"})
        later = browser.get(f"/reauth/continue?next=/transfers/{transfer}")
        assert later.status_code == 303 and later.headers["location"] == f"/transfers/{transfer}"
        assert client.get(f"/api/v1/transfers/{transfer}").status_code == 200
    finally:
        browser.close()


def test_the_audit_view_says_who_downloaded_which_file_in_french(
        server: Server, mail: MailCatcher, client: httpx.Client) -> None:
    """Issue 16, defect 11: the recipient by address, the file by its name
    and size (unsealed for the page), the codes behind "Détails"."""
    transfer, (token,) = send(client, {"compte-rendu.pdf": b"%PDF" + b"x" * 1_258_287})
    access = opened(server, mail, transfer, token)
    view = httpx.get(f"{server.url}/api/v1/links/{token}", headers=access, timeout=30).json()
    (file,) = view["files"]
    got = httpx.get(file["url"], headers=access, timeout=60)
    assert got.status_code == 200 and len(got.content) == 1_258_291
    (address,) = transfer["links"]
    browser, _csrf = _page_session(server)
    try:
        page = unescape(browser.get("/admin/audit?category=reads").text)
        assert f"{address} a téléchargé « compte-rendu.pdf » (1,2 Mo)" in page
        assert "a envoyé un transfert" not in page  # another category
        assert "<summary>Détails" in page and "transfer.downloaded" in page
        sent = unescape(browser.get("/admin/audit?category=sending").text)
        assert "a envoyé un transfert (1 fichier)" in sent
        assert "a téléchargé" not in sent
    finally:
        browser.close()


@pytest.mark.usefixtures("token")  # the administrator's second factor is enrolled
def test_new_recovery_codes_are_shown_once_and_a_reload_keeps_them(server: Server) -> None:
    """Defect 8: a reload after regenerating must not void the codes just
    written down: the POST answers a redirect, the codes page shows once."""
    browser, csrf = _page_session(server)
    try:
        generated = len(audit_events(server.data_dir, "factor.recovery_codes_generated"))
        made = browser.post("/account/recovery-codes", data={"csrf_token": csrf})
        if made.headers.get("location", "").startswith("/reauth"):  # step-up first
            browser.post("/reauth", data={"csrf_token": csrf, "password": ADMIN_PASSWORD,
                                          "code": second_factor(server.url),
                                          "next": "/account/recovery-codes"})
            made = browser.post("/account/recovery-codes", data={"csrf_token": csrf})
        assert made.status_code == 303 and made.headers["location"] == (
            "/account/recovery-codes/new")
        flash = made.cookies["__Host-coffre-flash"]
        cookies = f"{browser.headers['Cookie']}; __Host-coffre-flash={flash}"
        shown = browser.get("/account/recovery-codes/new", headers={"Cookie": cookies})
        assert shown.status_code == 200
        codes = re.findall(r"<code>([a-z2-9]{4}(?:-[a-z2-9]{4}){5})</code>", shown.text)
        assert len(codes) == 10
        reloaded = browser.get("/account/recovery-codes/new")  # the flash is spent
        assert reloaded.status_code == 303 and reloaded.headers["location"] == "/account"
        assert len(audit_events(server.data_dir, "factor.recovery_codes_generated")) == (
            generated + 1)
    finally:
        browser.close()
