"""The Google emulator as Google's OpenID Connect provider: the authorization code flow with PKCE.

What it follows (each checked in `tests/conformance/test_google_signin.py`):
https://developers.google.com/identity/openid-connect/openid-connect (the authentication request, the
code exchange, the ID token's claims: iss, azp, aud, sub, email, email_verified, hd, name, nonce, iat, exp)
and https://developers.google.com/identity/protocols/oauth2/web-server (PKCE, `redirect_uri_mismatch`
shown by Google itself, `invalid_grant` for a used, expired or mis-verified code, `invalid_client`).

- `GET /.well-known/openid-configuration`, `GET /oauth2/v3/certs` (the RS256 key made at start).
- `GET|POST /o/oauth2/v2/auth`: client and redirect URI checked first (a mismatch is an error page, never
  a redirect), then a sign-in form for a user of the tenant (their password as the directory keeps it).
- `POST /token` with `grant_type=authorization_code`: once, ten minutes, same client and redirect URI,
  the PKCE verifier, the client secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from idlifecycle.sandbox.graph_signin import IssuedCode, _b64, _form, _page, _redirect

Answer = tuple[int, dict[str, str], Any]
CODE_SECONDS = 600
ID_TOKEN_SECONDS = 3600


class Tenant(Protocol):
    """What the sign-in needs of the Google emulator (google.py imports this module)."""

    directory: Any

    @property
    def url(self) -> str: ...


@dataclass
class OAuthClient:
    secret_sha256: str
    redirect_uris: tuple[str, ...]


@dataclass
class GoogleSignIn:
    emulator: Tenant
    clients: dict[str, OAuthClient] = field(default_factory=dict)
    codes: dict[str, IssuedCode] = field(default_factory=dict)
    tamper: dict[str, Any] = field(default_factory=dict)
    """For the client's security tests, as the Graph emulator's: claims overridden (None: left out), and
    "signature": "other-key"."""

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = _b64(hashlib.sha256(str(self.key.public_key().public_numbers().n).encode()).digest()[:16])
        self._lock = threading.Lock()

    @property
    def issuer(self) -> str:
        return self.emulator.url.rstrip("/")

    def register_client(self, client_id: str, secret: str, redirect_uris: tuple[str, ...]) -> None:
        """An OAuth client of type "Web application" (Google Cloud console > Credentials)."""
        self.clients[client_id] = OAuthClient(hashlib.sha256(secret.encode()).hexdigest(), redirect_uris)

    def configuration(self) -> Answer:
        base = self.issuer
        return 200, {}, {
            "issuer": base, "authorization_endpoint": f"{base}/o/oauth2/v2/auth", "token_endpoint": f"{base}/token",
            "jwks_uri": f"{base}/oauth2/v3/certs", "response_types_supported": ["code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"], "code_challenge_methods_supported": ["plain", "S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        }

    def keys(self) -> Answer:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return 200, {}, {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def authorize(self, method: str, params: Mapping[str, str]) -> Answer:
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            return _page(401, "Sign in", "Error 401: invalid_client. The OAuth client was not found.")
        redirect = params.get("redirect_uri", "")
        if redirect not in client.redirect_uris:
            return _page(400, "Sign in", "Error 400: redirect_uri_mismatch. You can't sign in to this app because "
                         "it doesn't comply with Google's OAuth 2.0 policy.")
        if params.get("response_type") != "code" or "openid" not in params.get("scope", "").split():
            return _redirect(redirect, params, {"error": "invalid_request"})
        if method == "GET":
            return _form(params)
        user = self.directory_user(params.get("login", ""), params.get("password", ""))
        if user is None:
            return _form(params, "Wrong password. Try again or click Forgot password to reset it.")
        code = "4/" + secrets.token_urlsafe(48)
        with self._lock:
            self.codes[code] = IssuedCode(params["client_id"], redirect, str(user["id"]), params.get("scope", ""),
                                          params.get("nonce"),
                                          params.get("code_challenge") or None,
                                          params.get("code_challenge_method") or "plain", time.time() + CODE_SECONDS)
        return _redirect(redirect, params, {"code": code, "scope": params.get("scope", "")})

    def directory_user(self, login: str, password: str) -> dict[str, Any] | None:
        directory = self.emulator.directory
        user: dict[str, Any] | None = directory.find_user(login.strip().lower())
        if user is None or user.get("suspended") or not directory.check_password(login.strip().lower(), password):
            return None
        return user

    def redeem(self, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        client = self.clients.get(form.get("client_id", ""))
        if client is None or not hmac.compare_digest(
                hashlib.sha256(form.get("client_secret", "").encode()).hexdigest(), client.secret_sha256):
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        with self._lock:
            issued = self.codes.get(form.get("code", ""))
            problem = _code_problem(issued, form)
            if issued is not None:
                issued.redeemed = True
        if problem is not None:
            return 400, {"error": "invalid_grant", "error_description": problem}
        assert issued is not None
        return 200, self._tokens(issued)

    def _tokens(self, issued: IssuedCode) -> dict[str, Any]:
        user = self.emulator.directory.find_user(issued.user_id)
        email = str(user["primaryEmail"])
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "azp": issued.client_id, "aud": issued.client_id, "sub": str(user["id"]),
            "email": email, "email_verified": True, "hd": email.rsplit("@", 1)[1],
            "name": str(user.get("name", {}).get("fullName") or email), "iat": now, "exp": now + ID_TOKEN_SECONDS,
        }
        if issued.nonce is not None:
            claims["nonce"] = issued.nonce
        tamper = dict(self.tamper)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) \
            if tamper.pop("signature", None) == "other-key" else self.key
        claims = {k: v for k, v in {**claims, **tamper}.items() if v is not None}
        id_token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})
        return {"access_token": "ya29." + secrets.token_urlsafe(32), "expires_in": 3599, "token_type": "Bearer",
                "scope": "openid email profile", "id_token": id_token}


def _code_problem(issued: IssuedCode | None, form: Mapping[str, str]) -> str | None:
    if form.get("grant_type") != "authorization_code":
        return "Invalid grant_type."
    if issued is None or issued.redeemed or time.time() >= issued.expires:
        return "Bad Request"  # Google says no more for a used, expired or unknown code
    if form.get("client_id") != issued.client_id or form.get("redirect_uri") != issued.redirect_uri:
        return "Bad Request"
    if issued.challenge is not None:
        verifier = form.get("code_verifier", "")
        if not verifier:
            return "Missing code verifier."
        expected = _b64(hashlib.sha256(verifier.encode()).digest()) if issued.method == "S256" else verifier
        if not hmac.compare_digest(expected, issued.challenge):
            return "Invalid code verifier."
    return None
