"""Staff sign-in through Microsoft Entra ID: msal's authorization code flow (state, nonce, PKCE), then the
ID token checked again here.

msal checks the state, the nonce, the audience, the issuer and the expiry of the ID token it is handed, but
not its signature (it trusts the TLS connection to the token endpoint). The token is checked here as well,
with PyJWT against the keys at the tenant's `jwks_uri` (RS256 only): signature, issuer, audience, expiry,
not-before and the nonce, so a token that did not come from the school's tenant signs nobody in, whatever
msal's checks become. Blocking network calls: run from a thread, never on the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import threading
from collections.abc import Mapping
from typing import Any

import jwt
import msal
import requests

from idlifecycle.access.shares import EntraSignInSettings

SCOPES: list[str] = []
"""msal always asks for openid, profile and offline_access; the app needs nothing more to know who signed in."""
LEEWAY_SECONDS = 120
"""Clock skew allowed between this server and the identity provider."""


class SignInRefused(Exception):
    """A sign-in that must not count; `reason` for the log, `message` for the page (no token, no secret)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


def nonce_hash(nonce: str) -> str:
    """What msal sends as the nonce for the flow's own (`msal.oauth2cli.oidc._nonce_hash`): the ID token
    carries this, not the flow's value."""
    return hashlib.sha256(nonce.encode("ascii")).hexdigest()


class EntraSignIn:
    """The school's app registration, as a confidential web client."""

    provider = "entra"

    def __init__(self, settings: EntraSignInSettings, client_secret: str, ca_file: str | None) -> None:
        self.settings = settings
        self._secret = client_secret
        self._ca_file = ca_file
        self._lock = threading.Lock()
        self._app: msal.ConfidentialClientApplication | None = None
        self._jwks: jwt.PyJWKClient | None = None
        self._issuer = ""

    @property
    def authority(self) -> str:
        return f"https://{self.settings.authority_host}/{self.settings.tenant}"

    def _client(self) -> msal.ConfidentialClientApplication:
        with self._lock:
            if self._app is None:
                http = requests.Session()
                if self._ca_file:
                    http.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise win over `verify`
                    http.verify = self._ca_file
                self._app = msal.ConfidentialClientApplication(
                    self.settings.client_id, client_credential=self._secret, authority=self.authority,
                    http_client=http, timeout=30,
                    instance_discovery=self.settings.authority_host == "login.microsoftonline.com")
                configuration = http.get(f"{self.authority}/v2.0/.well-known/openid-configuration", timeout=30)
                configuration.raise_for_status()
                document = configuration.json()
                self._issuer = str(document["issuer"])
                context = ssl.create_default_context(cafile=self._ca_file) if self._ca_file else None
                self._jwks = jwt.PyJWKClient(str(document["jwks_uri"]), ssl_context=context, timeout=30)
            return self._app

    def begin(self) -> dict[str, Any]:
        """msal's flow: the authorize address to send the browser to, with the state, nonce and verifier."""
        try:
            return dict(self._client().initiate_auth_code_flow(SCOPES, redirect_uri=self.settings.redirect_uri))
        except (requests.RequestException, ValueError, KeyError) as error:
            raise SignInRefused(f"unreachable: {type(error).__name__}",
                                "The school's sign-in service cannot be reached now; try again later.") from None

    def finish(self, flow: dict[str, Any], answer: Mapping[str, str]) -> dict[str, Any]:
        """The checked ID token's claims for the identity provider's answer to `flow`; SignInRefused otherwise."""
        try:
            result = self._client().acquire_token_by_auth_code_flow(flow, dict(answer))
        except ValueError:  # msal: the state does not match the flow's
            raise SignInRefused("state-mismatch", "This sign-in answer does not belong to this browser's "
                                "sign-in. Sign in again.") from None
        except (RuntimeError, requests.RequestException) as error:  # msal: the nonce; or the network
            raise SignInRefused(f"refused by msal: {type(error).__name__}", "Sign-in did not work. Sign in "
                                "again.") from None
        if "error" in result or not result.get("id_token"):
            raise SignInRefused(f"identity provider: {result.get('error', 'no id_token')}",
                                "The school's sign-in service did not sign you in. Sign in again.")
        return self.verify(str(result["id_token"]), str(flow.get("nonce", "")))

    def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims, once its signature, issuer, audience, times and nonce are right."""
        self._client()
        assert self._jwks is not None
        try:
            key = self._jwks.get_signing_key_from_jwt(id_token)
            claims: dict[str, Any] = jwt.decode(
                id_token, key.key, algorithms=["RS256"], audience=self.settings.client_id, issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "nonce"]})
        except jwt.PyJWTError as error:
            raise SignInRefused(f"id token: {type(error).__name__}", "Sign-in did not work: the answer from the "
                                "sign-in service could not be verified. Sign in again.") from None
        if not nonce or not hmac.compare_digest(str(claims["nonce"]), nonce_hash(nonce)):
            raise SignInRefused("id token: nonce", "Sign-in did not work: the answer from the sign-in service "
                                "was not for this sign-in. Sign in again.")
        if not claims.get("preferred_username") or not claims.get("oid"):
            raise SignInRefused("id token: no preferred_username or oid", "Sign-in did not work: the sign-in "
                                "service did not say who you are.")
        return claims
