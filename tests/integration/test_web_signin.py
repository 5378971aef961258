"""Staff sign-in's security, through the running app (uvicorn) and the Graph emulator as the school's Entra
tenant: msal's real authorization code flow over HTTP, the ID token checked again with PyJWT.

Each refusal is shown as the browser sees it (the answer and whether a session cookie came with it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from idlifecycle.access.service import Access
from idlifecycle.job import load_job
from idlifecycle.sandbox.graph import GraphEmulator
from idlifecycle.web.app import create_app
from idlifecycle.web.entra_signin import EntraSignIn, SignInRefused, nonce_hash
from idlifecycle.web.sessions import Sessions
from idlifecycle.web.signin import PENDING_COOKIE, SESSION_COOKIE
from tests.integration.access_support import (
    CSRF_FIELD,
    REQUESTER,
    Mailbox,
    free_port,
    link_in,
    mailbox,
    serve,
    stop,
    write_school,
)
from tests.integration.signin_support import (
    CLIENT_ID,
    DEPUTY,
    DOMAIN,
    LEAVER,
    PUPIL,
    SIRO,
    TEACHER,
    TENANT,
    IdentityProvider,
    SignInSchool,
    at_identity_provider,
    audit,
    idp,
    running_sign_in_school,
    sign_in,
    sign_in_secrets,
    to_identity_provider,
)

__all__ = ["idp", "mailbox"]


@pytest.fixture(scope="module")
def school(idp: IdentityProvider, mailbox: Mailbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignInSchool]:
    yield from running_sign_in_school(idp, mailbox, tmp_path_factory.mktemp("signin"))


@pytest.fixture(autouse=True)
def honest_idp(idp: IdentityProvider) -> Iterator[None]:
    idp.sign_in.tamper = {}
    yield
    idp.sign_in.tamper = {}


def request_link(school: SignInSchool) -> str:
    job = load_job(school.job_path)
    try:
        request_id = Access(job).request("sen-records", "TBR", "Covering the SEN reviews", 5, REQUESTER).request_id
    finally:
        job.close()
    # The mailbox serves both providers' schools, whose request numbers both start at 1.
    return link_in(school.mailbox.wait_for(SIRO, f"Access request #{request_id}:", text_contains=school.base_url))


def test_staff_sign_in_gives_a_new_session_id_with_safe_cookie_flags(school: SignInSchool) -> None:
    """Session fixation: a session id planted in the browser before sign-in is never the signed-in one."""
    with school.browser() as browser:
        browser.cookies.set(SESSION_COOKIE, "planted-by-an-attacker", domain="127.0.0.1")
        answer = sign_in(browser, school.base_url, TEACHER, "/request")
        assert answer.status_code == 303 and answer.headers["location"] == "/request"
        cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith(f"{SESSION_COOKIE}="))
        session_id = cookie.split(";")[0].split("=", 1)[1]
        assert session_id != "planted-by-an-attacker" and len(session_id) >= 40
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
        assert school.app.server.servers  # the app that answered is the one running
    assert audit(school, "signed-in")[-1]["username"] == TEACHER


@pytest.mark.parametrize("elsewhere", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_after_sign_in_the_browser_stays_on_this_service(school: SignInSchool, elsewhere: str) -> None:
    """`next` is a path of this app only: a sign-in link cannot be made to end on another site."""
    with school.browser() as browser:
        assert sign_in(browser, school.base_url, TEACHER, elsewhere).headers["location"] == "/request"


def test_a_replayed_state_signs_nobody_in(school: SignInSchool) -> None:
    """The identity provider's answer works once: the same callback again finds no sign-in under way."""
    with school.browser() as browser:
        callback = at_identity_provider(browser, to_identity_provider(browser, school.base_url), TEACHER)
        assert browser.get(callback).status_code == 303
    with school.browser() as other:  # the answer copied into another browser
        again = other.get(callback)
        assert again.status_code == 400 and SESSION_COOKIE not in again.cookies
    assert any(r["reason"] == "no-sign-in-under-way" and r["client"] == "127.0.0.1"
               for r in audit(school, "sign-in-answer-refused"))


def test_a_flood_of_refused_answers_is_not_a_flood_of_audit_rows(school: SignInSchool) -> None:
    """Refused sign-in answers need no account to send: the first of a kind in a minute is audited in full, the
    rest counted into one row (written when the minute has passed), so they cannot flood the audit log."""
    def in_full() -> int:
        return sum(r["reason"] == "no-sign-in-under-way" for r in audit(school, "sign-in-answer-refused"))

    before = in_full()
    with school.browser() as browser:
        for n in range(20):
            assert browser.get(f"{school.base_url}/signin/callback", params={"code": n, "state": n}).status_code == 400
    assert in_full() - before <= 1  # at most a new minute's first


def test_an_answer_with_another_sign_ins_state_is_refused(school: SignInSchool) -> None:
    """msal's state check: the callback's state must be this browser's sign-in's."""
    with school.browser() as browser:
        authorize = to_identity_provider(browser, school.base_url)
        callback = at_identity_provider(browser, authorize, TEACHER)
        answer = browser.get(callback.replace("state=", "state=x"))
        assert answer.status_code == 403 and "Sign-in did not work" in answer.text
        assert SESSION_COOKIE not in answer.cookies


@pytest.mark.parametrize("tamper", [
    {"signature": "other-key"},
    {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200, "nbf": int(time.time()) - 7200},
    {"aud": "another-app"},
    {"iss": "https://login.microsoftonline.com/another-tenant/v2.0"},
    {"nonce": None},
], ids=["tampered-signature", "expired", "wrong-audience", "wrong-issuer", "missing-nonce"])
def test_an_id_token_that_fails_its_checks_signs_nobody_in(school: SignInSchool, idp: IdentityProvider,
                                                           tamper: dict[str, Any]) -> None:
    idp.sign_in.tamper = tamper
    with school.browser() as browser:
        answer = sign_in(browser, school.base_url, TEACHER)
        assert answer.status_code == 403 and "Sign-in did not work" in answer.text
        assert SESSION_COOKIE not in answer.cookies
        assert browser.get(f"{school.base_url}/approve", params={"t": "v1.x.y"}).status_code == 303  # still signed out
    # Audited (the first of its kind in a minute in full; a kind already seen this minute is counted).
    assert any(r["reason"].startswith(("id token", "refused by msal", "identity provider", "token endpoint"))
               for r in audit(school, "sign-in-answer-refused"))


def _verifier(school: SignInSchool, idp: IdentityProvider) -> EntraSignIn:
    if not isinstance(idp, GraphEmulator):
        pytest.skip("msal's own checks are Entra's; Google's client is checked through the app above")
    job = load_job(school.job_path)
    try:
        from idlifecycle.access.shares import web_settings
        settings = web_settings(job).entra
        assert settings is not None and idp.certificate is not None
        return EntraSignIn(settings, "unused", str(idp.certificate.cert))
    finally:
        job.close()


@pytest.mark.parametrize("change", [
    {"aud": "another-app"}, {"iss": "https://elsewhere.example/v2.0"}, {"exp": 1_000_000}, {"nonce": "other"},
    {"nonce": None},
], ids=["audience", "issuer", "expired", "other-nonce", "no-nonce"])
def test_the_apps_own_check_refuses_what_msal_might_not(school: SignInSchool, idp: IdentityProvider,
                                                        change: dict[str, Any]) -> None:
    """The PyJWT check on its own (msal not in the way): a token the tenant signed, each claim wrong in turn."""
    verifier = _verifier(school, idp)
    now = int(time.time())
    claims = {"aud": CLIENT_ID, "iss": f"{idp.url}/{idp.tenant_id}/v2.0", "iat": now, "nbf": now, "exp": now + 600,
              "sub": "s", "oid": "o", "preferred_username": TEACHER, "nonce": nonce_hash("flow-nonce")}
    good = jwt.encode(claims, idp.sign_in.key, algorithm="RS256", headers={"kid": idp.sign_in.kid})
    assert verifier.verify(good, "flow-nonce")["preferred_username"] == TEACHER
    bad = {k: v for k, v in {**claims, **change}.items() if v is not None}
    with pytest.raises(SignInRefused):
        verifier.verify(jwt.encode(bad, idp.sign_in.key, algorithm="RS256", headers={"kid": idp.sign_in.kid}),
                        "flow-nonce")


@pytest.mark.parametrize("login", [PUPIL, LEAVER], ids=["pupil", "staff-leaver"])
def test_an_account_outside_the_managed_staff_is_refused_and_audited(school: SignInSchool, login: str) -> None:
    """A pupil of the tenant, and a teacher whose end date in the feed has passed (their account not yet
    disabled): the identity provider signs them in, the app does not."""
    with school.browser() as browser:
        answer = sign_in(browser, school.base_url, login)
        assert answer.status_code == 403 and "Only staff of the school" in answer.text
        assert SESSION_COOKIE not in answer.cookies
    assert audit(school, "sign-in-refused")[-1]["username"] == login


def test_behind_tls_the_sign_in_cookies_are_secure(school: SignInSchool) -> None:
    """An app whose cookies are Secure (a https public_base_url, `app_for_job`): the sign-in's cookie says so."""
    port = free_port()
    served = serve(school.job_path, port, create_app(lambda: load_job(school.job_path), secure_cookies=True))
    try:
        with school.browser() as browser:
            start = browser.get(f"http://127.0.0.1:{port}/signin")
            assert start.status_code == 303
            cookie = next(h for h in start.headers.get_list("set-cookie") if h.startswith(f"{PENDING_COOKIE}="))
            assert "secure" in cookie.lower() and "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    finally:
        stop(served)


def test_sign_out_ends_the_session_on_the_server_and_needs_its_csrf_token(school: SignInSchool) -> None:
    link = request_link(school)
    with school.browser() as browser:
        sign_in(browser, school.base_url, SIRO, "/approve")
        session_id = browser.cookies[SESSION_COOKIE]
        decide_page = browser.get(link)
        assert decide_page.status_code == 200 and "Sign out" in decide_page.text
        forged = browser.post(f"{school.base_url}/signout", data={"csrf": "not-the-token"})
        assert forged.status_code == 403
        assert browser.get(link).status_code == 200  # still signed in
        csrf = decide_page.text.split('action="/signout"', 1)[1]
        token = CSRF_FIELD.search(csrf)
        assert token is not None
        assert browser.post(f"{school.base_url}/signout", data={"csrf": token.group(1)}).status_code == 200
    with school.browser() as stolen:  # the old session id, replayed from a copy of the cookie
        stolen.cookies.set(SESSION_COOKIE, session_id, domain="127.0.0.1")
        assert stolen.get(link).status_code == 303
    assert audit(school, "signed-out")[-1]["username"] == SIRO


def test_approving_needs_the_pages_csrf_token_and_the_siro_or_a_deputy(school: SignInSchool) -> None:
    """CSRF on the decision POST; a forwarded link opened by another signed-in member of staff is refused
    (GET and POST) and audited naming them; the request stays pending."""
    link = request_link(school)
    base, token = link.split("/approve?t=", 1)
    with school.browser() as browser:
        assert sign_in(browser, base, TEACHER, f"/approve?t={token}").headers["location"].startswith("/approve?t=")
        refused = browser.get(link)
        assert refused.status_code == 403 and "Only the SIRO or a deputy" in refused.text
        posted = browser.post(f"{base}/approve", data={"t": token, "csrf": "x", "decision": "approve"})
        assert posted.status_code == 403
    assert audit(school, "approval-refused-signed-in")[-1]["signed_in_as"] == TEACHER
    with school.browser() as browser:
        sign_in(browser, base, SIRO, "/approve")
        page = browser.get(link)
        assert page.status_code == 200
        without = browser.post(f"{base}/approve", data={"t": token, "decision": "approve"})
        assert without.status_code == 403 and "did not come from the approval page" in without.text


def test_without_a_session_the_link_leads_to_sign_in_and_a_post_is_refused(school: SignInSchool) -> None:
    link = request_link(school)
    base, token = link.split("/approve?t=", 1)
    with school.browser() as browser:
        answer = browser.get(link)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin?next=%2Fapprove")
        posted = browser.post(f"{base}/approve", data={"t": token, "csrf": "x", "decision": "approve"})
        assert posted.status_code == 403 and "Sign in first" in posted.text
        assert DEPUTY not in posted.text


def test_a_session_ends_when_idle_and_at_its_lifetime() -> None:
    now = [0.0]
    sessions: Sessions[str] = Sessions(lifetime=3600, idle=900, clock=lambda: now[0])
    first = sessions.start("someone")
    now[0] = 800
    assert sessions.get(first.session_id) is not None  # seen: the idle clock starts again
    now[0] = 1600
    assert sessions.get(first.session_id) is not None
    now[0] = 2600
    assert sessions.get(first.session_id) is None  # idle for 1000 s
    second = sessions.start("someone")
    for step in range(1, 8):
        now[0] = 2600 + step * 500
        alive = sessions.get(second.session_id) is not None
        assert alive == (step * 500 < 3600)
    assert PENDING_COOKIE != SESSION_COOKIE


def test_the_link_only_mode_is_unchanged(tmp_path: Path) -> None:
    """No `sign_in`: the web settings say "link-only" and nothing needs the client secret."""
    from idlifecycle.access.shares import WebSettings
    assert WebSettings.model_validate({"public_base_url": "https://idl.example.org"}).sign_in == "link-only"
    with pytest.raises(ValueError, match=r"\[web.entra\]"):
        WebSettings.model_validate({"public_base_url": "https://idl.example.org", "sign_in": "entra"})


def test_the_request_form_takes_the_requester_from_the_sign_in(school: SignInSchool) -> None:
    """With sign-in on, the form is for signed-in staff only, and the requester is who signed in: a
    requester field sent anyway is ignored (nobody asks in a colleague's name)."""
    with school.browser() as browser:
        assert browser.get(f"{school.base_url}/request").headers["location"] == "/signin?next=%2Frequest"
        posted = browser.post(f"{school.base_url}/request", data={"share": "sen-records", "person": "TBR"})
        assert posted.status_code == 403 and "Sign in first" in posted.text
        sign_in(browser, school.base_url, TEACHER, "/request")
        form = browser.get(f"{school.base_url}/request")
        assert form.status_code == 200 and f"Requested by Tom Brown ({TEACHER})" in form.text
        assert 'name="requester"' not in form.text
        csrf = CSRF_FIELD.search(form.text.split('action="/request"', 1)[1])  # not the sign-out form's
        assert csrf is not None
        without = browser.post(f"{school.base_url}/request", data={
            "share": "sen-records", "person": "SEV", "reason": "Cover", "days": "3"})
        assert without.status_code == 403  # CSRF on this POST too
        found = re.search(r'name="person" value="([^"]+)"', browser.get(f"{school.base_url}/request",
                                                                        params={"q": "Siân"}).text)
        assert found is not None  # the person is chosen from a search (test_request_search.py)
        sent = browser.post(f"{school.base_url}/request", data={
            "csrf": csrf.group(1), "requester": "head@school.example.org", "share": "sen-records",
            "person": found.group(1),
            "reason": f"Covering Siân's SEN reviews, ref {school.app.server.config.port}", "days": "3"})
        assert sent.status_code == 200, sent.text
    mail = school.mailbox.wait_for(SIRO, "Access request #",
                                   text_contains=f"Covering Siân's SEN reviews, ref {school.app.server.config.port}")
    assert TEACHER in mail.text and "head@school.example.org" not in mail.text
    school.mailbox.wait_for(TEACHER, "Access request #")  # the requester's own confirmation


def test_an_unreachable_identity_provider_is_a_clear_page(tmp_path: Path, mailbox: Mailbox) -> None:
    """A provider that does not answer: the sign-in page says so (503), not an internal error."""
    port = free_port()
    job_path = write_school(tmp_path, {"servers": ["ldaps://127.0.0.1:1"], "bind_dn": "CN=x", "base_dn": "OU=M",
                                       "groups_container": "Groups", "upn_suffix": DOMAIN},
                            mailbox, f"http://127.0.0.1:{port}")
    job_path.write_text(job_path.read_text() + f"""sign_in = "entra"

[web.entra]
client_id = "{CLIENT_ID}"
tenant = "{TENANT}"
redirect_uri = "http://127.0.0.1:{port}/signin/callback"
authority_host = "127.0.0.1:{free_port()}"
""")
    with pytest.MonkeyPatch.context() as env:
        for name, value in sign_in_secrets().items():
            env.setenv(name, value)
        served = serve(job_path, port)
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/signin")
            assert answer.status_code == 503 and "cannot be reached" in answer.text
        finally:
            stop(served)
