"""The Google emulator as Google's OpenID Connect provider, held to Google's documents:

- https://developers.google.com/identity/openid-connect/openid-connect (authentication request, code exchange,
  the ID token's claims: iss, azp, aud, sub, email, email_verified, hd, nonce, iat, exp; keys at jwks_uri)
- https://developers.google.com/identity/protocols/oauth2/web-server (PKCE; `redirect_uri_mismatch` shown by
  Google, not redirected; `invalid_grant` for a used code or a wrong verifier; `invalid_client`)
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from idlifecycle.sandbox.google import GoogleEmulator

CLIENT_ID = "1234-web.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-test-secret"  # a throw-away emulator's client secret
REDIRECT = "https://idl.school.example.org/signin/callback"
USER, PASSWORD = "j.smith@school.example", "Staff-Sign-In-42"


@pytest.fixture
def google() -> Iterator[GoogleEmulator]:
    with GoogleEmulator(domains=["school.example"]) as emulator:
        emulator.directory.add_user(USER, "Jo", "Smith", PASSWORD)
        emulator.sign_in.register_client(CLIENT_ID, CLIENT_SECRET, (REDIRECT,))
        yield emulator


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _code(google: GoogleEmulator, challenge: str) -> str:
    params = {"client_id": CLIENT_ID, "response_type": "code", "redirect_uri": REDIRECT, "scope": "openid email",
              "state": "st-1", "nonce": "n-1", "code_challenge": challenge, "code_challenge_method": "S256"}
    url = f"{google.url}o/oauth2/v2/auth"
    assert httpx.get(url, params=params).status_code == 200
    answer = httpx.post(url, params=params, data={"login": USER, "password": PASSWORD})
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["state"] == ["st-1"]
    return query["code"][0]


def _redeem(google: GoogleEmulator, code: str, verifier: str, **extra: str) -> httpx.Response:
    return httpx.post(f"{google.url}token", data={
        "grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "redirect_uri": REDIRECT, "code_verifier": verifier, **extra})


def test_the_id_token_carries_googles_documented_claims_signed_by_a_published_key(google: GoogleEmulator) -> None:
    verifier, challenge = _pkce()
    answer = _redeem(google, _code(google, challenge), verifier)
    assert answer.status_code == 200, answer.text
    configuration = httpx.get(f"{google.url}.well-known/openid-configuration").json()
    keys = httpx.get(configuration["jwks_uri"]).json()["keys"]
    token = answer.json()["id_token"]
    key = next(k for k in keys if k["kid"] == jwt.get_unverified_header(token)["kid"])
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["RS256"], audience=CLIENT_ID,
                        issuer=configuration["issuer"])
    assert {"iss", "azp", "aud", "sub", "email", "email_verified", "hd", "nonce", "iat", "exp"} <= set(claims)
    assert claims["email"] == USER and claims["email_verified"] is True and claims["hd"] == "school.example"
    assert claims["nonce"] == "n-1" and claims["azp"] == CLIENT_ID


def test_a_code_works_once_and_only_with_its_verifier(google: GoogleEmulator) -> None:
    verifier, challenge = _pkce()
    wrong = _redeem(google, _code(google, challenge), _pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    code = _code(google, challenge)
    assert _redeem(google, code, verifier).status_code == 200
    again = _redeem(google, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_a_wrong_secret_is_invalid_client(google: GoogleEmulator) -> None:
    verifier, challenge = _pkce()
    answer = _redeem(google, _code(google, challenge), verifier, client_secret="not-it")
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def test_an_unregistered_redirect_uri_is_shown_not_followed(google: GoogleEmulator) -> None:
    answer = httpx.get(f"{google.url}o/oauth2/v2/auth", params={
        "client_id": CLIENT_ID, "response_type": "code", "redirect_uri": "https://evil.example/cb", "scope": "openid"})
    assert answer.status_code == 400 and "redirect_uri_mismatch" in answer.text and "location" not in answer.headers
