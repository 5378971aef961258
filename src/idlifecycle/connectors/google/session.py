"""The Google connector's session: sign-in, pacing under the quota, retries, and what Google's errors mean.

Signs in as a service account with domain-wide delegation, impersonating an admin, with only the
scopes it uses (SCOPES), over a transport that sends each request once (transport.OneSendHttp).

Google counts every call, each part of a batch included, against a per-minute quota (2,400 by
default). Sending faster only earns `rateLimitExceeded`, so the connector paces itself: calls
are spread evenly at the quota's rate, and a sliding 60-second record of what was sent is kept
so that no minute can hold more than the quota. A call is recorded when its answer arrives,
which is never earlier than Google received it, so the record never undercounts Google's own.

Errors are read through two tables: REASONS, every reason the Directory API's pages document, each
with what to do (retry, fail this change, stop the run) and the page that says so; and REFUSALS,
the one table of what reaches the caller for a refusal (ConnectorError or AuthError, retryable or
not, and the message naming the fix), for the API's answers and the sign-in's alike.
"""

from __future__ import annotations

import functools
import http.client
import json
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import httplib2
from google.auth.exceptions import RefreshError, TransportError
from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import BatchError, HttpError
from googleapiclient.http import HttpRequest

from idlifecycle.connectors.base import AuthError, ConnectorContext, ConnectorError
from idlifecycle.connectors.google.requests import Request
from idlifecycle.connectors.google.settings import GoogleOptions
from idlifecycle.connectors.google.transport import OneSendHttp
from idlifecycle.errors import UserError

SCOPES = (
    "https://www.googleapis.com/auth/admin.directory.user",
    # users.signOut needs this one; DISABLE and REVOKE_SESSIONS sign the user out everywhere.
    "https://www.googleapis.com/auth/admin.directory.user.security",
    # Groups are created (CREATE_GROUP), so the read-only and member-only scopes are not enough.
    "https://www.googleapis.com/auth/admin.directory.group",
    # Missing org units under org_unit_root are created.
    "https://www.googleapis.com/auth/admin.directory.orgunit",
)
"""The scopes to authorise for the client ID under domain-wide delegation, and no more."""

DATATRANSFER_SCOPE = "https://www.googleapis.com/auth/admin.datatransfer"
"""Asked for only when `transfer_to` is set: a token request naming a scope the school has not
authorised for the client ID is refused (unauthorized_client), so it cannot be asked for always."""


def scopes_for(options: GoogleOptions) -> tuple[str, ...]:
    """The scopes this connector's options need (SCOPES, and the Data Transfer API's when it transfers)."""
    return SCOPES + ((DATATRANSFER_SCOPE,) if options.transfer_to else ())

MAX_ATTEMPTS = 7

TRANSPORT_ERRORS = (httplib2.HttpLib2Error, OSError, socket.timeout, http.client.HTTPException, BatchError,
                    TransportError)
"""An answer lost on the way. http.client's own (a torn status line, a body cut short) reach us too:
the transport sends once and hands them up (transport.OneSendHttp) instead of trying again."""

WINDOW_SECONDS = 60.0


class Pacer:
    """Spreads calls at `quota_per_minute`, `burst` of them allowed ahead of the spread, and never lets any
    60 s window exceed the quota."""

    def __init__(self, quota_per_minute: int, *, burst: int = 0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.quota_per_minute = quota_per_minute
        self.burst = max(0, min(burst, quota_per_minute))
        """Calls that may go at once, ahead of the even spread (never more than the quota in a 60 s window)."""
        self._clock = clock
        self._sleep = sleep
        self._next_send = clock()
        self._sent: deque[tuple[float, int]] = deque()
        self._in_window = 0
        self.waited = 0.0
        """Seconds spent waiting, for the bench and logs."""

    def acquire(self, calls: int) -> None:
        """Block until `calls` more calls may be sent now."""
        calls = min(calls, self.quota_per_minute)
        while True:
            now = self._clock()
            while self._sent and self._sent[0][0] <= now - WINDOW_SECONDS:
                self._in_window -= self._sent.popleft()[1]
            wait = self._next_send - self.burst * WINDOW_SECONDS / self.quota_per_minute - now
            if self._in_window + calls > self.quota_per_minute and self._sent:
                wait = max(wait, self._sent[0][0] + WINDOW_SECONDS - now)
            if wait <= 0:
                break
            self.waited += wait
            self._sleep(wait)
        self._next_send = max(self._next_send, now) + calls * WINDOW_SECONDS / self.quota_per_minute

    def record(self, calls: int) -> None:
        """Note calls whose answers (or failures) have just come back."""
        self._sent.append((self._clock(), calls))
        self._in_window += calls


class Verdict(Enum):
    """What to do about one answer from the Directory API."""

    OK = "ok"
    RETRY = "retry"
    """Transient (rate and concurrency limits, 429, 5xx): back off and send the call again."""
    NOT_YET = "not-yet"
    """The object was created moments ago and Google has not finished propagating it: wait and send
    again, for a bounded time. A 404 is read this way only for objects this run created."""
    CONFLICT = "conflict"
    NOT_FOUND = "not-found"
    REFUSED = "refused"
    """Google refused this one change (bad value, precondition): it fails; the rest go on."""
    STOP = "stop"
    """The run cannot go on (sign-in, scopes, admin rights, API disabled, daily limit): stop cleanly."""


@dataclass(frozen=True)
class Rule:
    verdict: Verdict
    source: str
    """The page that documents the reason (or the report that shows how Google sends it)."""


LIMITS = "https://developers.google.com/admin-sdk/directory/v1/limits"
LIMITS_2015 = "https://developers.google.com/admin-sdk/directory/v1/limits (2015 edition: dailyLimitExceeded)"
TROUBLESHOOT = "https://developers.google.com/workspace/admin/directory/v1/guides/troubleshoot-error-codes"
DIRECTORY_ERRORS = "https://developers.google.com/admin-sdk/reseller/v1/support/directory_api_common_errors"
USERS_INSERT = "https://developers.google.com/admin-sdk/directory/reference/rest/v1/users/insert"
CORE_ERRORS = "https://cloud.google.com/resource-manager/docs/core_errors"

REASONS: dict[str, Rule] = {
    # Directory API, Limits and quotas: all three are "retry using exponential back-off".
    "userRateLimitExceeded": Rule(Verdict.RETRY, LIMITS),
    "quotaExceeded": Rule(Verdict.RETRY, LIMITS),
    "rateLimitExceeded": Rule(Verdict.RETRY, LIMITS),
    # "Do not retry without fixing the problem. You have used up your daily quota."
    "dailyLimitExceeded": Rule(Verdict.STOP, LIMITS_2015),
    # Troubleshoot error codes: 503 backendError, "Service unavailable. Please try again".
    "backendError": Rule(Verdict.RETRY, TROUBLESHOOT),
    # Troubleshoot Directory API issues (the reseller guide's list for the Directory API).
    "badRequest": Rule(Verdict.REFUSED, DIRECTORY_ERRORS),
    "domainCannotUseApis": Rule(Verdict.STOP, DIRECTORY_ERRORS),
    "forbidden": Rule(Verdict.STOP, DIRECTORY_ERRORS),
    "accessNotConfigured": Rule(Verdict.STOP, DIRECTORY_ERRORS),
    "duplicate": Rule(Verdict.CONFLICT, DIRECTORY_ERRORS),
    # 412 "User creation is not complete." right after a create (users.insert: "Retrying the calls
    # after some time can help"); any other conditionNotMet fails the change (we send no If-Match).
    "conditionNotMet": Rule(Verdict.REFUSED, USERS_INSERT),
    # Google's global error domain, as the Directory API sends it.
    "invalid": Rule(Verdict.REFUSED, CORE_ERRORS),
    "invalidParameter": Rule(Verdict.REFUSED, CORE_ERRORS),
    "required": Rule(Verdict.REFUSED, CORE_ERRORS),
    "parseError": Rule(Verdict.REFUSED, CORE_ERRORS),
    "notFound": Rule(Verdict.NOT_FOUND, CORE_ERRORS),
    "deleted": Rule(Verdict.NOT_FOUND, CORE_ERRORS),
    "conflict": Rule(Verdict.CONFLICT, CORE_ERRORS),
    "authError": Rule(Verdict.STOP, CORE_ERRORS),
    "expired": Rule(Verdict.STOP, CORE_ERRORS),
    "unauthorized": Rule(Verdict.STOP, CORE_ERRORS),
    "insufficientPermissions": Rule(Verdict.STOP, CORE_ERRORS),
    "accountDeleted": Rule(Verdict.STOP, CORE_ERRORS),
    "accountDisabled": Rule(Verdict.STOP, CORE_ERRORS),
    "sslRequired": Rule(Verdict.STOP, CORE_ERRORS),
    "concurrentLimitExceeded": Rule(Verdict.RETRY, CORE_ERRORS),
    "limitExceeded": Rule(Verdict.RETRY, CORE_ERRORS),
    "batchSizeTooLarge": Rule(Verdict.REFUSED, CORE_ERRORS),
    "backendRequestTooLarge": Rule(Verdict.REFUSED, CORE_ERRORS),
    "internalError": Rule(Verdict.RETRY, CORE_ERRORS),
    "notReady": Rule(Verdict.RETRY, CORE_ERRORS),
    "backendNotConnected": Rule(Verdict.RETRY, CORE_ERRORS),
}
"""Every error reason the Directory API's pages document, with what the connector does about it
and where it is documented. A reason not listed falls back on its status (STATUS_FALLBACK)."""

USER_CREATION_NOT_COMPLETE = "User creation is not complete"


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    message: str
    verdict: Verdict


STATUS_FALLBACK = {429: Verdict.RETRY, 401: Verdict.STOP, 409: Verdict.CONFLICT, 404: Verdict.NOT_FOUND}
"""For a reason REASONS does not know (or a body that is not Google's JSON, e.g. a proxy): by status;
any 5xx is RETRY, any other status REFUSED."""


def _by_status(status: int) -> Verdict:
    return Verdict.RETRY if status >= 500 else STATUS_FALLBACK.get(status, Verdict.REFUSED)


def read_error(status: int, content: bytes | str) -> Answer:
    """Classify an error answer by Google's `error.errors[0].reason` (REASONS), else by its status."""
    reason, message = "", ""
    try:
        body = json.loads(content or b"{}")
        error = body.get("error", {})
        if isinstance(error, dict):
            message = str(error.get("message", ""))
            details = error.get("errors") or [{}]
            reason = str(details[0].get("reason", ""))
        elif isinstance(error, str):
            # OAuth's shape ({"error": "invalid_grant", "error_description": "..."}) or a bare text: said, not
            # an empty message.
            message = f"{error}: {body['error_description']}" if body.get("error_description") else error
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        # Not Google's shape (a proxy's page, `errors` as an object or a number): read by status, never
        # raise here, where an escaping KeyError would end the run with a traceback instead of one line.
        message = content.decode(errors="replace")[:200] if isinstance(content, bytes) else str(content)[:200]
    if status < 300:
        verdict = Verdict.OK
    elif USER_CREATION_NOT_COMPLETE.lower() in message.lower():
        verdict = Verdict.NOT_YET
    elif reason in REASONS:
        verdict = REASONS[reason].verdict
        # A 5xx is transient whatever its reason says (e.g. a 503 that names no known reason).
        if status >= 500 and verdict is not Verdict.RETRY:
            verdict = Verdict.RETRY
    else:
        verdict = _by_status(status)
    return Answer(status, reason, message or reason, verdict)


def backoff(attempt: int, *, base: float = 0.5, ceiling: float = 32.0) -> float:
    """Exponential back-off with 'full jitter' so that retries from many items do not align."""
    return float(random.uniform(0, min(ceiling, base * 2 ** attempt)))  # noqa: S311 - jitter, not security


def settle_delay(attempt: int, *, base: float = 0.25, ceiling: float = 8.0) -> float:
    """The wait before asking again about an object Google is still propagating: at least half of
    an exponentially growing step, so that a few calls span the delay whatever the jitter draws."""
    step = min(ceiling, base * 2 ** attempt)
    return float(step / 2 + random.uniform(0, step / 2))  # noqa: S311 - jitter, not security


# -- what reaches the caller --

@dataclass(frozen=True)
class Refusal:
    """What one kind of refusal becomes: the error raised, whether trying later may work, the message.

    The message is filled in with Google's `status`, `reason` and `message`, and the connector's
    `source`, `admin`, `secret`, `client_email`, `client_id`, `scopes` and `scope_list`."""

    error: type[ConnectorError]
    message: str
    retryable: bool | None = False
    """None: retryable when Google's status is 5xx."""


SIGNED_IN_AS = "{source}: Google refused to sign in the service account {client_email}"
QUOTA_USED_UP = Refusal(ConnectorError, retryable=True, message=(
    "Google's daily limit for this project is used up ({message}); the run stopped and the remaining changes "
    "were not sent. Run again after the limit resets (daily limits reset at midnight Pacific time) or ask for "
    "more quota in the Cloud console (Admin SDK API > Quotas)"))
API_DISABLED = Refusal(AuthError, (
    "{source}: Google will not take Admin SDK calls from this project ({message}). Fix: enable the Admin SDK "
    "API for the service account's Cloud project (APIs & Services > Library), and check API access is allowed "
    "in the Admin console"))
TOKEN_REFUSED = Refusal(AuthError, (
    "{source}: Google did not accept the access token ({message}); check that the service account "
    "{client_email} still exists and its key is current"))

REFUSALS: tuple[tuple[str, int | None, str, str, Refusal], ...] = (
    # (where, status, reason, words in Google's message) -> Refusal; the first row that matches wins,
    # and an empty cell matches anything. "api": the Directory API's answers (reason: error.errors[0]
    # .reason); "sign-in": the token endpoint's (reason: the OAuth error code).
    ("api", None, "dailyLimitExceeded", "", QUOTA_USED_UP),
    ("api", None, "accessNotConfigured", "", API_DISABLED),
    ("api", None, "domainCannotUseApis", "", API_DISABLED),
    ("api", 401, "", "", TOKEN_REFUSED),
    ("api", None, "authError", "", TOKEN_REFUSED),
    ("api", None, "insufficientPermissions", "", Refusal(AuthError, (
        "{source}: the access token lacks a scope this call needs ({message}); authorise client ID "
        "{client_id} for: {scope_list}"))),
    ("api", 403, "forbidden", "", Refusal(AuthError, (
        "{source}: admin: {admin} may not manage users and groups ({message}); set `admin` to a super admin, "
        "or give them the User and Groups management admin roles"))),
    ("api", None, "", "", Refusal(ConnectorError, "Google answered {status} {reason}: {message}", retryable=None)),
    ("sign-in", None, "unauthorized_client", "", Refusal(AuthError, SIGNED_IN_AS + (
        ": domain-wide delegation is not set up for client ID {client_id} with every scope the connector "
        "needs. Fix: Admin console > Security > Access and data control > API controls > Domain-wide "
        "delegation: add client ID {client_id} with the scopes {scopes}"))),
    ("sign-in", None, "invalid_grant", "email", Refusal(AuthError, SIGNED_IN_AS + (
        ": admin: {admin} is not a user of this Google Workspace. Fix: set `admin` to the primary email of "
        "a super admin"))),
    ("sign-in", None, "invalid_grant", "signature", Refusal(AuthError, SIGNED_IN_AS + (
        ": its key was refused (deleted or not this account's key). Fix: create a new JSON key for "
        "{client_email} and store it in the secret {secret}"))),
    ("sign-in", None, "", "", Refusal(AuthError, SIGNED_IN_AS + (
        ": {reason}: {message}. Check the key in the secret {secret} and `admin` ({admin})"))),
)


def refusal_for(where: str, status: int, reason: str, message: str) -> Refusal:
    """The first row of REFUSALS that matches (the table ends with a catch-all for each `where`)."""
    return next(row[4] for row in REFUSALS if row[0] == where and row[1] in (None, status)
                and row[2] in ("", reason) and row[3] in message.lower())


def read_key(context: ConnectorContext, secret: str) -> dict[str, str]:
    """The service-account key from the secret: its JSON text, or the path of the JSON file."""
    text = context.secret(secret, "the service-account key").strip()
    if not text.startswith("{"):
        try:
            text = Path(text).expanduser().read_text()
        except OSError as error:
            raise UserError(f"{context.source}: secret {secret}: cannot read the key file {text!r} "
                            f"({error.strerror}); give the JSON key itself or a readable path") from None
    try:
        info = json.loads(text)
    except ValueError:
        raise UserError(f"{context.source}: secret {secret}: is not JSON; give the service account's JSON key "
                        "as downloaded from the Cloud console") from None
    if not isinstance(info, dict) or info.get("type") != "service_account" or "private_key" not in info:
        raise UserError(f"{context.source}: secret {secret}: is not a service-account key (no type "
                        "\"service_account\" or no private_key)")
    return {str(k): str(v) for k, v in info.items()}


class Session:
    """One signed-in Directory API client: paced single calls with retries, and the run's shared state
    (whether Google has gone silent, which objects this run created moments ago)."""

    def __init__(self, name: str, options: GoogleOptions, key_info: Mapping[str, str], *, source: str,
                 token_uri: str | None = None) -> None:
        self.name, self.options, self.source = name, options, source
        self.client_email = str(key_info.get("client_email", "?"))
        self.client_id = str(key_info.get("client_id", "?"))
        self.scopes = scopes_for(options)
        info = dict(key_info) | ({"token_uri": token_uri} if token_uri else {})
        try:
            credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=list(self.scopes))
        except (ValueError, KeyError) as error:
            raise UserError(f"{source}: secret {options.secret}: not a service-account key ({error}); "
                            "download a JSON key for the service account from the Cloud console") from None
        self.http = AuthorizedHttp(credentials.with_subject(options.admin), http=OneSendHttp(timeout=options.timeout))
        # static_discovery: the Directory API's description ships in the package; no network at build.
        service = build("admin", "directory_v1", http=self.http, static_discovery=True,
                        client_options={"api_endpoint": options.api_endpoint})
        # Building a resource walks the discovery document (~3 ms): build each once.
        self.users, self.groups, self.members = service.users(), service.groups(), service.members()
        self.orgunits = service.orgunits()
        self._methods: dict[str, Callable[..., HttpRequest]] = {
            "users.insert": self.users.insert, "users.patch": self.users.patch, "users.delete": self.users.delete,
            "users.signOut": self.users.signOut, "groups.insert": self.groups.insert,
            "members.insert": self.members.insert, "members.delete": self.members.delete}
        """Every method the request builders name (requests.Request.method)."""
        # Batches ignore api_endpoint (FACTS.md section 3), so the batch URL is built here.
        self.batch_uri = options.api_endpoint + "batch/admin/directory_v1"
        # The quota is per minute (FACTS.md section 3): a snapshot's few hundred reads may go at once, as long
        # as no 60 s window holds more than the quota; a September night's writes are spread as before.
        self.pacer = Pacer(options.quota_per_minute,
                           burst=int(options.quota_per_minute * options.burst_seconds / WINDOW_SECONDS))
        self.calls_sent = 0
        self.rate_limited = 0
        self.settling_retries = 0
        """Calls sent again because Google was still propagating an object this run created."""
        self.stopped: str | None = None
        """Why the run sends nothing more to Google (None: it goes on)."""
        self._silent_since: float | None = None
        """When the first call sent since Google last answered anything went out (None: it just answered)."""
        self.born: dict[str, float] = {}
        """lower-cased key (id or address) of each user and group this run created -> when."""

    def close(self) -> None:
        for connection in self.http.http.connections.values():
            connection.close()

    def prepare(self, request: Request) -> HttpRequest:
        """The client's HttpRequest for a built request (made anew for each send)."""
        return self._methods[request.method](**request.params)

    def execute(self, request: Callable[[], HttpRequest], *, missing_ok: bool = False,
                attempts: int = MAX_ATTEMPTS) -> Any:
        """One paced call with retries; returns the parsed answer (None for 404 when missing_ok).
        attempts=1 for a write that must not be sent twice blind (the caller looks before sending again)."""
        for attempt in range(attempts):
            if self.stopped or self.given_up():
                raise ConnectorError(str(self.stopped), retryable=True)
            self.pacer.acquire(1)
            self.sending()
            try:
                answered = request().execute(num_retries=0)
                self._silent_since = None
                return answered
            except HttpError as error:
                self._silent_since = None
                answer = read_error(error.resp.status, error.content)
                if answer.verdict is Verdict.NOT_FOUND and missing_ok:
                    return None
                if answer.verdict not in (Verdict.RETRY, Verdict.NOT_YET) or attempt == attempts - 1:
                    raise self.refused(answer) from None
                self.rate_limited += answer.status in (403, 429)
            except RefreshError as error:
                raise self.sign_in_refused(error) from None
            except TRANSPORT_ERRORS as error:
                if attempt == attempts - 1:
                    raise ConnectorError(f"cannot reach Google: {error}", retryable=True) from None
            finally:
                self.calls_sent += 1
                self.pacer.record(1)
            time.sleep(backoff(attempt))
        raise AssertionError("unreachable")

    def pages(self, method: Callable[..., HttpRequest], key: str, **params: Any) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            page = self.execute(functools.partial(method, **params, **({"pageToken": token} if token else {})))
            yield from page.get(key, [])
            token = page.get("nextPageToken")
            if not token:
                return

    def sending(self) -> None:
        if self._silent_since is None:
            self._silent_since = time.monotonic()

    def answered(self) -> None:
        self._silent_since = None

    def given_up(self) -> bool:
        """Whether Google has answered nothing for `give_up_after` seconds; if so the run stops sending to it."""
        since = self._silent_since
        if self.stopped is None and since is not None and time.monotonic() - since > self.options.give_up_after:
            self.stopped = (f"Google answered nothing for {time.monotonic() - since:.0f} s (give_up_after = "
                            f"{self.options.give_up_after:g}), so {self.name} was given up on for this run: this "
                            "change was not made, or not confirmed; the next run looks again")
        return self.stopped is not None

    def refused(self, answer: Answer) -> ConnectorError:
        """The error for an API answer that ends the call, from REFUSALS."""
        return self._error_for(refusal_for("api", answer.status, answer.reason, answer.message),
                              answer.status, answer.reason, answer.message)

    def sign_in_refused(self, error: RefreshError) -> ConnectorError:
        """The error for a refused sign-in, from REFUSALS (the token endpoint's OAuth error code)."""
        data = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], Mapping) else {}
        code = str(data.get("error", "")) or str(error).split(":")[0]
        description = str(data.get("error_description", "")) or str(error)
        return self._error_for(refusal_for("sign-in", 0, code, description), 0, code, description)

    def _error_for(self, refusal: Refusal, status: int, reason: str, message: str) -> ConnectorError:
        text = refusal.message.format(
            status=status, reason=reason, message=message, source=self.source, admin=self.options.admin,
            secret=self.options.secret, client_email=self.client_email, client_id=self.client_id,
            scopes=",".join(self.scopes), scope_list=", ".join(self.scopes))
        retryable = status >= 500 if refusal.retryable is None else refusal.retryable
        return refusal.error(text, retryable=retryable)

    # -- objects this run created, which Google may still be propagating --

    def note_created(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            if key:
                self.born[key.lower()] = now

    def propagating(self, refs: tuple[str, ...]) -> bool:
        """True when one of `refs` names a user or group this run created within replication_wait."""
        now = time.monotonic()
        return any(now - self.born[ref] < self.options.replication_wait for ref in refs if ref in self.born)

    def get_user(self, key: str, fields: str) -> dict[str, Any] | None:
        """users.get; a 404 about a user this run created moments ago is Google still propagating
        it (reads trail the create: terraform-provider-googleworkspace#286), so it is asked again."""
        attempt = 0
        while True:
            user: dict[str, Any] | None = self.execute(lambda: self.users.get(userKey=key, fields=fields),
                                                       missing_ok=True)
            born = self.born.get(key.lower())
            if user is not None or born is None or time.monotonic() - born >= self.options.replication_wait:
                return user
            self.settling_retries += 1
            time.sleep(settle_delay(attempt))
            attempt += 1
