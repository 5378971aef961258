"""The Graph emulator as an Entra v2.0 identity provider, held to the Microsoft identity platform's documents:

- the authorization code flow: https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow
- the ID token's claims: https://learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference
- the error codes: https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes
  (AADSTS54005 for a code redeemed twice, AADSTS70008 expired, AADSTS501481 a verifier that does not match,
  AADSTS50011 a redirect URI not registered, AADSTS7000215 a bad client secret)

Requests are sent as a browser and a web app would send them (httpx over HTTPS); the expected shapes are
written from those pages, not from the emulator.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_ID, CLIENT_SECRET, STAFF, school_seed

REDIRECT = "https://idl.school.example.org/signin/callback"
PASSWORD = "Staff-Sign-In-42"


@pytest.fixture
def idp(make_emulator: Any) -> GraphEmulator:
    seed = school_seed()
    seed["users"][0]["passwordProfile"] = {"password": PASSWORD}
    emulator: GraphEmulator = make_emulator(seed)
    emulator.register_application(CLIENT_ID, secret=CLIENT_SECRET, redirect_uris=(REDIRECT,))
    return emulator


def _trust(emulator: GraphEmulator) -> ssl.SSLContext:
    assert emulator.certificate is not None
    return ssl.create_default_context(cafile=str(emulator.certificate.cert))


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _authorize(emulator: GraphEmulator, challenge: str, **extra: str) -> dict[str, str]:
    return {"client_id": CLIENT_ID, "response_type": "code", "redirect_uri": REDIRECT, "response_mode": "query",
            "scope": "openid profile", "state": "st-123", "nonce": "no-456", "code_challenge": challenge,
            "code_challenge_method": "S256", **extra}


def _sign_in(emulator: GraphEmulator, params: dict[str, str], password: str = PASSWORD) -> httpx.Response:
    url = f"{emulator.authority}/oauth2/v2.0/authorize"
    with httpx.Client(verify=_trust(emulator)) as browser:
        form = browser.get(url, params=params)
        assert form.status_code == 200 and 'name="password"' in form.text, form.text
        return browser.post(url, params=params, data={"login": f"jsmith@{STAFF}", "password": password})


def _code(emulator: GraphEmulator, verifier_challenge: tuple[str, str]) -> str:
    answer = _sign_in(emulator, _authorize(emulator, verifier_challenge[1]))
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["st-123"]  # the state comes back as sent
    return query["code"][0]


def _redeem(emulator: GraphEmulator, code: str, verifier: str, **extra: str) -> httpx.Response:
    return httpx.post(f"{emulator.authority}/oauth2/v2.0/token", verify=_trust(emulator), data={
        "grant_type": "authorization_code", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "code": code,
        "redirect_uri": REDIRECT, "code_verifier": verifier, "scope": "openid profile", **extra})


def _error_code(response: httpx.Response) -> str:
    body = response.json()
    assert {"error", "error_description", "error_codes"} <= set(body)
    return f"{body['error']} {body['error_codes']}"


def test_the_code_redeems_for_an_rs256_id_token_with_the_documented_claims(idp: GraphEmulator) -> None:
    """ID token claims reference: aud (the app's client id), iss ({authority}/v2.0 with the tenant id), iat,
    nbf, exp, name, nonce (as sent), oid, preferred_username, sub, tid, ver "2.0"; signed RS256 by a key of
    the configuration's jwks_uri."""
    pkce = _pkce()
    answer = _redeem(idp, _code(idp, pkce), pkce[0])
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert tokens["token_type"] == "Bearer" and tokens["id_token"]
    configuration = httpx.get(f"{idp.authority}/v2.0/.well-known/openid-configuration", verify=_trust(idp)).json()
    keys = httpx.get(configuration["jwks_uri"], verify=_trust(idp)).json()
    header = jwt.get_unverified_header(tokens["id_token"])
    assert header["alg"] == "RS256"
    key = next(k for k in keys["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(tokens["id_token"], jwt.PyJWK(key).key, algorithms=["RS256"], audience=CLIENT_ID,
                        issuer=configuration["issuer"])
    assert configuration["issuer"] == f"{idp.url}/{idp.tenant_id}/v2.0"
    assert {"aud", "iss", "iat", "nbf", "exp", "name", "nonce", "oid", "preferred_username", "sub", "tid",
            "ver"} <= set(claims)
    assert claims["nonce"] == "no-456" and claims["ver"] == "2.0" and claims["tid"] == idp.tenant_id
    assert claims["preferred_username"] == f"jsmith@{STAFF}" and claims["name"] == "Jo Smith"
    assert claims["exp"] > claims["iat"] >= claims["nbf"] - 1
    assert claims["sub"] != claims["oid"]  # pairwise per app, oid is the same in every app


def test_a_code_works_once(idp: GraphEmulator) -> None:
    """A second redemption is invalid_grant AADSTS54005 ("OAuth2 Authorization code was already redeemed")."""
    pkce = _pkce()
    code = _code(idp, pkce)
    assert _redeem(idp, code, pkce[0]).status_code == 200
    again = _redeem(idp, code, pkce[0])
    assert again.status_code == 400 and _error_code(again) == "invalid_grant [54005]"


def test_an_expired_code_is_refused(idp: GraphEmulator) -> None:
    """Codes are short lived (about 10 minutes); an old one is invalid_grant AADSTS70008."""
    pkce = _pkce()
    code = _code(idp, pkce)
    idp.sign_in.codes[code].expires = 0
    answer = _redeem(idp, code, pkce[0])
    assert answer.status_code == 400 and _error_code(answer) == "invalid_grant [70008]"


def test_the_pkce_verifier_must_match_the_challenge(idp: GraphEmulator) -> None:
    """AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the authorization request."""
    pkce = _pkce()
    answer = _redeem(idp, _code(idp, pkce), _pkce()[0])
    assert answer.status_code == 400 and _error_code(answer) == "invalid_grant [501481]"


def test_the_code_is_bound_to_its_redirect_uri_and_the_secret_is_checked(idp: GraphEmulator) -> None:
    """The redirect_uri of the redemption must be the authorize request's; a wrong secret is invalid_client
    AADSTS7000215 (401)."""
    pkce = _pkce()
    wrong_uri = _redeem(idp, _code(idp, pkce), pkce[0], redirect_uri="https://elsewhere.example/cb")
    assert wrong_uri.status_code == 400 and wrong_uri.json()["error"] == "invalid_grant"
    bad_secret = _redeem(idp, _code(idp, pkce), pkce[0], client_secret="not-the-secret")
    assert bad_secret.status_code == 401 and _error_code(bad_secret) == "invalid_client [7000215]"


def test_an_unregistered_redirect_uri_is_shown_not_followed(idp: GraphEmulator) -> None:
    """AADSTS50011 (redirect URI mismatch) is shown by the identity provider itself: it never redirects to an
    address the app did not register."""
    answer = httpx.get(f"{idp.authority}/oauth2/v2.0/authorize", verify=_trust(idp),
                       params=_authorize(idp, _pkce()[1], redirect_uri="https://evil.example/cb"))
    assert answer.status_code == 400 and "location" not in answer.headers and "AADSTS50011" in answer.text


def test_a_request_without_the_openid_scope_goes_back_as_an_error_with_the_state(idp: GraphEmulator) -> None:
    """Errors after the redirect URI is known go back to it with error, error_description and state."""
    answer = httpx.get(f"{idp.authority}/oauth2/v2.0/authorize", verify=_trust(idp),
                       params=_authorize(idp, _pkce()[1], scope="profile"))
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["error"] == ["invalid_scope"] and query["state"] == ["st-123"]


def test_a_wrong_password_is_refused_on_the_form(idp: GraphEmulator) -> None:
    """AADSTS50126: Error validating credentials due to invalid username or password; no code is issued."""
    answer = _sign_in(idp, _authorize(idp, _pkce()[1]), password="wrong-password-1")
    assert answer.status_code == 400 and "AADSTS50126" in answer.text and "location" not in answer.headers


def test_form_post_answers_with_a_page_that_posts_the_code(idp: GraphEmulator) -> None:
    """response_mode=form_post: the code and state are posted to the redirect URI from the browser."""
    answer = _sign_in(idp, _authorize(idp, _pkce()[1], response_mode="form_post"))
    assert answer.status_code == 200
    assert re.search(rf'<form method="post" action="{re.escape(REDIRECT)}"', answer.text)
    assert 'name="code"' in answer.text and 'name="state" value="st-123"' in answer.text
