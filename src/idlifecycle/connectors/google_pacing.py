"""Keeping the Google connector under the Directory API's per-minute quota, and reading its errors.

Google counts every call, each part of a batch included, against a per-minute quota (2,400 by
default). Sending faster only earns `rateLimitExceeded`, so the connector paces itself: calls
are spread evenly at the quota's rate, and a sliding 60-second record of what was sent is kept
so that no minute can hold more than the quota. A call is recorded when its answer arrives,
which is never earlier than Google received it, so the record never undercounts Google's own.

Errors are read through one table, REASONS: every reason the Directory API's pages document, each
with what to do (retry, fail this change, stop the run) and the page that says so.
"""

from __future__ import annotations

import json
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

WINDOW_SECONDS = 60.0


class Pacer:
    """Spreads calls at `quota_per_minute` and never lets any 60 s window exceed it."""

    def __init__(self, quota_per_minute: int, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.quota_per_minute = quota_per_minute
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
            wait = self._next_send - now
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


def _by_status(status: int) -> Verdict:
    """For a reason the table does not know (or a body that is not Google's JSON, e.g. a proxy)."""
    if status == 429 or status >= 500:
        return Verdict.RETRY
    if status == 401:
        return Verdict.STOP
    if status == 409:
        return Verdict.CONFLICT
    if status == 404:
        return Verdict.NOT_FOUND
    return Verdict.REFUSED


def read_error(status: int, content: bytes | str) -> Answer:
    """Classify an error answer by Google's `error.errors[0].reason` (REASONS), else by its status."""
    reason, message = "", ""
    try:
        error = json.loads(content or b"{}").get("error", {})
        if isinstance(error, dict):
            message = str(error.get("message", ""))
            details = error.get("errors") or [{}]
            reason = str(details[0].get("reason", ""))
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
