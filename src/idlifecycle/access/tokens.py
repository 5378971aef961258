"""Signed approval links and CSRF tokens (HMAC-SHA256 with the secret `approval_signing_key`).

A link token is `v1.<payload>.<signature>`, the payload naming the request, the approver's email
address, a random nonce and the expiry. The signature proves this server minted it; the nonce's row
in the store (see `access.records`) makes it work once and lets a token be tied to the approver it
was minted for. Separate keys are derived for links and for CSRF so one can never stand in for the other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime

from idlifecycle.errors import UserError

MIN_KEY_LENGTH = 32


@dataclass(frozen=True)
class LinkClaims:
    request_id: int
    approver: str
    nonce: str
    expires: datetime


@dataclass(frozen=True)
class ExtendClaims:
    """An extend link: the extra person, the sponsor it was sent to and the end date it was sent about."""

    person_id: str
    sponsor: str
    end: date
    nonce: str
    expires: datetime


class LinkRefused(Exception):
    """A link or form that must not be honoured; `reason` goes to the audit log, `message` to the page."""

    def __init__(self, reason: str, status: int, message: str, request_id: int | None = None) -> None:
        self.reason = reason
        self.status = status
        self.message = message
        self.request_id = request_id
        super().__init__(reason)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, key: str) -> None:
        if len(key) < MIN_KEY_LENGTH:
            raise UserError(f"the secret approval_signing_key must be at least {MIN_KEY_LENGTH} characters: "
                            "generate one with `python -c \"import secrets; print(secrets.token_urlsafe(48))\"`")
        root = key.encode()
        self._link_key = hmac.new(root, b"idlifecycle approval link v1", hashlib.sha256).digest()
        self._csrf_key = hmac.new(root, b"idlifecycle csrf v1", hashlib.sha256).digest()
        # Its own key and prefix: an approval link can never extend someone's end date, nor the reverse.
        self._extend_key = hmac.new(root, b"idlifecycle extend link v1", hashlib.sha256).digest()

    def mint(self, request_id: int, approver: str, expires: datetime) -> tuple[str, LinkClaims]:
        claims = LinkClaims(request_id, approver.lower(), secrets.token_hex(16), expires)
        body = json.dumps(
            {"r": request_id, "a": claims.approver, "n": claims.nonce, "e": int(expires.timestamp())},
            separators=(",", ":"), sort_keys=True,
        ).encode()
        payload = _b64(body)
        return f"v1.{payload}.{self._sign(payload)}", claims

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._link_key, payload.encode(), hashlib.sha256).digest())

    def verify(self, token: str) -> LinkClaims:
        """The claims of a token this server signed; LinkRefused("forged") for anything else.

        Expiry and single use are checked by the caller against the store, so that each refusal
        can name its own reason.
        """
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != "v1":
            raise LinkRefused("forged", 400, "This is not an approval link from this service.")
        _, payload, signature = parts
        if not hmac.compare_digest(self._sign(payload), signature):
            raise LinkRefused("forged-or-altered", 403,
                              "This approval link was not issued by this service, or it has been changed.")
        try:
            body = json.loads(_unb64(payload))
            return LinkClaims(int(body["r"]), str(body["a"]), str(body["n"]),
                              datetime.fromtimestamp(int(body["e"]), UTC))
        except (ValueError, KeyError, TypeError):
            raise LinkRefused("forged", 400, "This is not an approval link from this service.") from None

    def mint_extend(self, person_id: str, sponsor: str, end: date, expires: datetime) -> tuple[str, ExtendClaims]:
        claims = ExtendClaims(person_id, sponsor, end, secrets.token_hex(16), expires)
        body = json.dumps({"p": person_id, "s": sponsor, "d": end.isoformat(), "n": claims.nonce,
                           "e": int(expires.timestamp())}, separators=(",", ":"), sort_keys=True).encode()
        payload = _b64(body)
        return f"x1.{payload}.{_b64(hmac.new(self._extend_key, payload.encode(), hashlib.sha256).digest())}", claims

    def verify_extend(self, token: str) -> ExtendClaims:
        """The claims of an extend link this server signed; LinkRefused("forged…") for anything else,
        an approval link included."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != "x1":
            raise LinkRefused("extend-forged", 400, "This is not an extend link from this service.")
        _, payload, signature = parts
        expected = _b64(hmac.new(self._extend_key, payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature):
            raise LinkRefused("extend-forged-or-altered", 403,
                              "This extend link was not issued by this service, or it has been changed.")
        try:
            body = json.loads(_unb64(payload))
            return ExtendClaims(str(body["p"]), str(body["s"]), date.fromisoformat(body["d"]), str(body["n"]),
                                datetime.fromtimestamp(int(body["e"]), UTC))
        except (ValueError, KeyError, TypeError):
            raise LinkRefused("extend-forged", 400, "This is not an extend link from this service.") from None

    def csrf_token(self, cookie: str, nonce: str) -> str:
        """The form field that must accompany the browser's CSRF cookie for the link with `nonce`."""
        return _b64(hmac.new(self._csrf_key, f"{cookie}|{nonce}".encode(), hashlib.sha256).digest())

    def csrf_ok(self, cookie: str | None, nonce: str, field: str | None) -> bool:
        if not cookie or not field:
            return False
        return hmac.compare_digest(self.csrf_token(cookie, nonce), field)


def new_cookie_value() -> str:
    return secrets.token_urlsafe(32)
