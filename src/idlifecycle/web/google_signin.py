"""Staff sign-in through Google (Workspace for Education): Authlib's OAuth2Session runs the code flow with
PKCE (S256), `state` and `nonce`; the ID token is checked here with PyJWT against the provider's `jwks_uri`
(signature, issuer, audience, expiry, nonce) and its `hd` must be the school's Workspace domain with the
email verified, as https://developers.google.com/identity/openid-connect/openid-connect asks.

Blocking network calls: run from a thread, never on the event loop.
"""

from __future__ import annotations

import hmac
import secrets
import ssl
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
from authlib.common.errors import AuthlibBaseError
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

from idlifecycle.access.shares import GoogleSignInSettings
from idlifecycle.web.entra_signin import LEEWAY_SECONDS, SignInRefused

GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
"""Google's ID tokens carry either (the OpenID Connect page, "iss")."""


class GoogleSignIn:
    """The school's OAuth client of type "Web application"."""

    provider = "google"

    def __init__(self, settings: GoogleSignInSettings, client_secret: str) -> None:
        self.settings = settings
        self._secret = client_secret
        self._lock = threading.Lock()
        self._document: dict[str, Any] | None = None
        self._jwks: jwt.PyJWKClient | None = None

    def _configuration(self) -> dict[str, Any]:
        with self._lock:
            if self._document is None:
                answer = requests.get(f"{self.settings.issuer}/.well-known/openid-configuration", timeout=30)
                answer.raise_for_status()
                self._document = dict(answer.json())
                context = ssl.create_default_context()
                self._jwks = jwt.PyJWKClient(str(self._document["jwks_uri"]), ssl_context=context, timeout=30)
            return self._document

    def _session(self, **kwargs: Any) -> OAuth2Session:
        return OAuth2Session(self.settings.client_id, self._secret, scope="openid email profile",
                             redirect_uri=self.settings.redirect_uri, code_challenge_method="S256",
                             token_endpoint_auth_method="client_secret_post", **kwargs)  # noqa: S106 - a method name

    def begin(self) -> dict[str, Any]:
        """The flow to keep server-side: the authorize address, state, nonce and the PKCE verifier."""
        try:
            endpoint = str(self._configuration()["authorization_endpoint"])
        except (requests.RequestException, ValueError, KeyError) as error:
            raise SignInRefused(f"unreachable: {type(error).__name__}",
                                "The school's sign-in service cannot be reached now; try again later.") from None
        verifier = generate_token(48)
        nonce = secrets.token_urlsafe(16)
        with self._session() as session:
            url, state = session.create_authorization_url(endpoint, code_verifier=verifier, nonce=nonce,
                                                          hd=self.settings.hosted_domain)
        return {"auth_uri": url, "state": state, "nonce": nonce, "code_verifier": verifier}

    def finish(self, flow: dict[str, Any], answer: Mapping[str, str]) -> dict[str, Any]:
        if not hmac.compare_digest(str(answer.get("state", "")), str(flow["state"])):
            raise SignInRefused("state-mismatch", "This sign-in answer does not belong to this browser's "
                                "sign-in. Sign in again.")
        if "error" in answer or "code" not in answer:
            raise SignInRefused(f"identity provider: {answer.get('error', 'no code')}",
                                "The school's sign-in service did not sign you in. Sign in again.")
        try:
            with self._session(state=flow["state"]) as session:
                token = session.fetch_token(
                    str(self._configuration()["token_endpoint"]), code_verifier=flow["code_verifier"],
                    authorization_response=f"{self.settings.redirect_uri}?{urlencode(dict(answer))}")
        except (AuthlibBaseError, requests.RequestException, ValueError) as error:
            raise SignInRefused(f"token endpoint: {type(error).__name__}",
                                "The school's sign-in service did not sign you in. Sign in again.") from None
        if not token.get("id_token"):
            raise SignInRefused("no id_token", "The school's sign-in service did not say who you are.")
        return self.verify(str(token["id_token"]), str(flow["nonce"]))

    def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        issuer = str(self._configuration()["issuer"])
        assert self._jwks is not None
        try:
            key = self._jwks.get_signing_key_from_jwt(id_token)
            claims: dict[str, Any] = jwt.decode(
                id_token, key.key, algorithms=["RS256"], audience=self.settings.client_id, leeway=LEEWAY_SECONDS,
                issuer=[issuer] if issuer not in GOOGLE_ISSUERS else list(GOOGLE_ISSUERS),
                options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]})
        except jwt.PyJWTError as error:
            raise SignInRefused(f"id token: {type(error).__name__}", "Sign-in did not work: the answer from the "
                                "sign-in service could not be verified. Sign in again.") from None
        if not nonce or not hmac.compare_digest(str(claims["nonce"]), nonce):
            raise SignInRefused("id token: nonce", "Sign-in did not work: the answer from the sign-in service "
                                "was not for this sign-in. Sign in again.")
        if claims.get("hd") != self.settings.hosted_domain or claims.get("email_verified") is not True:
            raise SignInRefused("id token: not the school's Workspace", "Sign in with your school Google account.")
        # One shape for the rest of the app, as Entra's claims name them.
        return {**claims, "oid": claims["sub"], "preferred_username": str(claims.get("email", ""))}
