"""The Graph emulator as an Entra v2.0 identity provider: the authorization code flow with PKCE.

What it follows (each checked in `tests/conformance/test_graph_signin.py`):
https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow (the authorize request,
its redirect, the code's redemption and its errors) and
https://learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference (the ID token's claims).

- `GET /{tenant}/oauth2/v2.0/authorize`: client_id and redirect_uri are checked against the app
  registration first, and a mismatch is shown on the sign-in page itself (AADSTS700016, AADSTS50011),
  never redirected; other problems (response_type, no `openid` scope, a bad code_challenge_method) go
  back to the redirect URI as `error`/`error_description` with the `state`. A good request gets a small
  sign-in form; a user of the tenant signs in with their password (the seed's `passwordProfile`).
- The form's POST answers with a code in the query (or `response_mode=form_post`, a page that posts it).
- The token endpoint's `authorization_code` grant: the code works once (AADSTS54005 when redeemed again),
  for ten minutes (AADSTS70008), for the client and redirect URI it was issued to, with the PKCE
  verifier (AADSTS501481), and the client secret (AADSTS7000215).
- ID tokens are RS256 with a key generated at start, served at `/{tenant}/discovery/v2.0/keys`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html import escape
from typing import Any, Protocol
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

Reply = tuple[int, dict[str, str], Any]
CODE_SECONDS = 600
"""Authorization codes are short lived, about 10 minutes (the auth code flow page)."""
ID_TOKEN_SECONDS = 3600
FORM_FIELDS = ("client_id", "redirect_uri", "response_type", "response_mode", "scope", "state", "nonce",
               "code_challenge", "code_challenge_method", "prompt", "login_hint", "client_info")
PAGE_STYLE = ("body{font-family:sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}"
              "label,input,button{display:block;width:100%;font-size:1.1rem;margin:.4rem 0}"
              "input,button{padding:.7rem;box-sizing:border-box}.error{color:#a00}")


class Tenant(Protocol):
    """What the sign-in needs of the Graph emulator (stated here: graph.py imports this module)."""

    url: str
    directory: Any
    signing_key: bytes

    @property
    def tenant_id(self) -> str: ...


@dataclass
class IssuedCode:
    client_id: str
    redirect_uri: str
    user_id: str
    scope: str
    nonce: str | None
    challenge: str | None
    method: str
    expires: float
    redeemed: bool = False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class EntraSignIn:
    """The identity-provider side of one Graph emulator (its tenant's users, its app registrations)."""

    def __init__(self, emulator: Tenant, aad_error: Callable[[int, str, str], Reply]) -> None:
        self.emulator = emulator
        self.aad_error = aad_error
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = _b64(hashlib.sha256(str(self.key.public_key().public_numbers().n).encode()).digest()[:16])
        self.codes: dict[str, IssuedCode] = {}
        self.code_seconds = CODE_SECONDS
        self.tamper: dict[str, Any] = {}
        """For the client's security tests: ID token claims overridden (None: left out), and the key
        "signature": "other-key" signs with a key the jwks_uri does not serve."""
        self._lock = threading.Lock()

    @property
    def directory(self) -> Any:
        return self.emulator.directory

    def issuer(self, tenant: str) -> str:
        return f"{self.emulator.url}/{tenant}/v2.0"

    def keys(self) -> Reply:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return 200, {}, {"keys": [{**jwk, "kid": self.kid, "use": "sig", "kty": "RSA", "alg": "RS256",
                                   "issuer": self.issuer(self.emulator.tenant_id)}]}

    # authorize --------------------------------------------------------------------------------
    def authorize(self, tenant: str, method: str, params: Mapping[str, str]) -> Reply:
        app = self.directory.state["applications"].get(params.get("client_id", ""))
        if app is None:
            return _page(400, "Sign in", f"AADSTS700016: Application with identifier '{params.get('client_id', '')}' "
                         f"was not found in the directory '{tenant}'.")
        redirect = params.get("redirect_uri", "")
        if redirect not in app.get("redirect_uris", []):
            return _page(400, "Sign in", f"AADSTS50011: The redirect URI '{redirect}' specified in the request does "
                         "not match the redirect URIs configured for the application "
                         f"'{params.get('client_id', '')}'.")
        problem = _request_problem(params)
        if problem is not None:
            return _redirect(redirect, params, {"error": problem[0], "error_description": problem[1]})
        if method == "GET":
            return _form(params)
        user = self._signed_in_user(params)
        if user is None:
            return _form(params, "AADSTS50126: Error validating credentials due to invalid username or password.")
        code = secrets.token_urlsafe(48)
        with self._lock:
            self.codes[code] = IssuedCode(params["client_id"], redirect, str(user["id"]), params.get("scope", ""),
                                          params.get("nonce"), params.get("code_challenge") or None,
                                          params.get("code_challenge_method") or "plain",
                                          time.time() + self.code_seconds)
        return _redirect(redirect, params, {"code": code, "session_state": str(uuid.uuid4())})

    def _signed_in_user(self, params: Mapping[str, str]) -> dict[str, Any] | None:
        login = params.get("login", "").strip().lower()
        digest = hashlib.sha256(params.get("password", "").encode()).hexdigest()
        for user in self.directory.state["users"].values():
            if str(user.get("userPrincipalName", "")).lower() == login and user.get("accountEnabled") \
                    and hmac.compare_digest(str(user.get("_passwordSha256", "")), digest):
                return dict(user)
        return None

    # token ------------------------------------------------------------------------------------
    def redeem(self, tenant: str, form: Mapping[str, str]) -> Reply:
        """The `authorization_code` grant."""
        client_id = form.get("client_id", "")
        app = self.directory.state["applications"].get(client_id)
        if app is None:
            return self.aad_error(400, "unauthorized_client", f"AADSTS700016: Application with identifier "
                                  f"'{client_id}' was not found in the directory '{tenant}'.")
        digest = hashlib.sha256(form.get("client_secret", "").encode()).hexdigest()
        if "client_secret" not in form or digest not in app["secrets"]:
            return self.aad_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure "
                                  "the secret being sent in the request is the client secret value, not the client "
                                  f"secret ID, for a secret added to app '{client_id}'.")
        with self._lock:
            issued = self.codes.get(form.get("code", ""))
            problem = _code_problem(issued, form)
            if issued is not None:
                issued.redeemed = True  # one try: a code presented wrongly is spent too
        if problem is not None:
            return self.aad_error(400, "invalid_grant", problem)
        assert issued is not None
        return 200, {}, self._tokens(tenant, issued, form)

    def _tokens(self, tenant: str, issued: IssuedCode, form: Mapping[str, str]) -> dict[str, Any]:
        user = self.directory.user(issued.user_id)
        now = int(time.time())
        oid = str(user["id"])
        claims: dict[str, Any] = {
            "aud": issued.client_id, "iss": self.issuer(tenant), "iat": now, "nbf": now,
            "exp": now + ID_TOKEN_SECONDS, "name": user.get("displayName") or "", "oid": oid,
            "preferred_username": user["userPrincipalName"], "tid": tenant, "ver": "2.0",
            # sub is pairwise: the same user has a different sub in each app (the claims reference).
            "sub": _b64(hashlib.sha256(f"{oid}|{issued.client_id}".encode()).digest()),
            "uti": _b64(secrets.token_bytes(16)),
        }
        if issued.nonce is not None:
            claims["nonce"] = issued.nonce
        tamper = dict(self.tamper)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) \
            if tamper.pop("signature", None) == "other-key" else self.key
        claims.update(tamper)
        claims = {k: v for k, v in claims.items() if v is not None}
        id_token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})
        access = jwt.encode({"aud": "00000003-0000-0000-c000-000000000000", "iss": f"{self.emulator.url}/{tenant}/",
                             "tid": tenant, "oid": oid, "scp": "openid profile User.Read", "iat": now, "nbf": now,
                             "exp": now + ID_TOKEN_SECONDS}, self.emulator.signing_key, algorithm="HS256")
        reply: dict[str, Any] = {"token_type": "Bearer", "scope": issued.scope, "expires_in": ID_TOKEN_SECONDS,
                                 "ext_expires_in": ID_TOKEN_SECONDS, "access_token": access, "id_token": id_token}
        if form.get("client_info") == "1":
            reply["client_info"] = _b64(json.dumps({"uid": oid, "utid": tenant}).encode())
        return reply


def _request_problem(params: Mapping[str, str]) -> tuple[str, str] | None:
    if params.get("response_type") != "code":
        return ("unsupported_response_type", "AADSTS700054: response_type 'id_token' is not enabled for the "
                "application." if "id_token" in params.get("response_type", "") else
                "AADSTS900144: The request body must contain the following parameter: 'response_type'.")
    if "openid" not in params.get("scope", "").split():
        return "invalid_scope", "AADSTS90014: The required field 'scope' with the value 'openid' is missing."
    if params.get("response_mode", "query") not in ("query", "form_post"):
        return "invalid_request", "AADSTS900146: The response_mode is not supported."
    if params.get("code_challenge") and params.get("code_challenge_method", "plain") not in ("S256", "plain"):
        return "invalid_request", "AADSTS50149: Invalid Code_Challenge_method parameter."
    return None


def _code_problem(issued: IssuedCode | None, form: Mapping[str, str]) -> str | None:
    if form.get("grant_type") != "authorization_code":
        return "AADSTS70003: The app requested an unsupported grant type."
    if issued is None:
        return "AADSTS70000: The provided value for the 'code' parameter is not valid."
    if issued.redeemed:
        return ("AADSTS54005: OAuth2 Authorization code was already redeemed, please retry with a new valid code "
                "or use an existing refresh token.")
    if time.time() >= issued.expires:
        return "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity."
    if form.get("client_id") != issued.client_id:
        return "AADSTS70000: The provided value for the 'code' parameter is not valid: it was issued to another client."
    if form.get("redirect_uri") != issued.redirect_uri:
        return ("AADSTS50011: The redirect URI specified in the request does not match the redirect URI the "
                "authorization code was issued for.")
    if issued.challenge is not None:
        verifier = form.get("code_verifier", "")
        expected = _b64(hashlib.sha256(verifier.encode()).digest()) if issued.method == "S256" else verifier
        if not verifier or not hmac.compare_digest(expected, issued.challenge):
            return ("AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the authorization "
                    "request.")
    return None


def _redirect(redirect_uri: str, params: Mapping[str, str], answer: dict[str, str]) -> Reply:
    if params.get("state"):
        answer["state"] = params["state"]
    if params.get("response_mode") == "form_post":
        fields = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in answer.items())
        body = (f'<form method="post" action="{escape(redirect_uri)}" id="f">{fields}<noscript><button>Continue'
                '</button></noscript></form><script>document.getElementById("f").submit()</script>')
        return 200, {}, _html("Signing you in", body)
    separator = "&" if "?" in redirect_uri else "?"
    return 302, {"Location": f"{redirect_uri}{separator}{urlencode(answer)}"}, b""


def _form(params: Mapping[str, str], error: str = "") -> Reply:
    hidden = "".join(f'<input type="hidden" name="{k}" value="{escape(params[k], quote=True)}">'
                     for k in FORM_FIELDS if k in params)
    login = escape(params.get("login", params.get("login_hint", "")), quote=True)
    body = ((f'<p class="error" role="alert">{escape(error)}</p>' if error else "")
            + f'<form method="post">{hidden}<label>Email, phone or Skype<input name="login" type="email" '
            f'autocomplete="username" value="{login}" required></label><label>Password<input name="password" '
            'type="password" autocomplete="current-password" required></label><button type="submit">Sign in</button>'
            "</form>")
    return 200 if not error else 400, {}, _html("Sign in", body)


def _page(status: int, title: str, message: str) -> Reply:
    return status, {}, _html(title, f'<p class="error" role="alert">{escape(message)}</p>')


def _html(title: str, body: str) -> bytes:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{escape(title)}</title><style>{PAGE_STYLE}'
            f"</style></head><body><h1>{escape(title)}</h1>{body}</body></html>").encode()
