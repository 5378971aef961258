"""Keeping the Google connector under the Directory API's per-minute quota, and reading its errors.

Google counts every call, each part of a batch included, against a per-minute quota (2,400 by
default). Sending faster only earns `rateLimitExceeded`, so the connector paces itself: calls
are spread evenly at the quota's rate, and a sliding 60-second record of what was sent is kept
so that no minute can hold more than the quota. A call is recorded when its answer arrives,
which is never earlier than Google received it, so the record never undercounts Google's own.
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
    """Rate limits, 429 and 5xx: transient; back off and send again."""
    QUOTA = "quota"
    """`quotaExceeded` / `dailyLimitExceeded`: not transient; stop cleanly."""
    AUTH = "auth"
    CONFLICT = "conflict"
    NOT_FOUND = "not-found"
    REFUSED = "refused"


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    message: str
    verdict: Verdict


_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_QUOTA_REASONS = frozenset({"quotaExceeded", "dailyLimitExceeded"})
_AUTH_REASONS = frozenset({"authError", "insufficientPermissions", "forbidden"})


def read_error(status: int, content: bytes | str) -> Answer:
    """Classify an error answer by its status and Google's `error.errors[0].reason`."""
    reason, message = "", ""
    try:
        error = json.loads(content or b"{}").get("error", {})
        if isinstance(error, dict):
            message = str(error.get("message", ""))
            details = error.get("errors") or [{}]
            reason = str(details[0].get("reason", ""))
    except (ValueError, AttributeError, IndexError):
        message = content.decode(errors="replace")[:200] if isinstance(content, bytes) else str(content)[:200]
    if status < 300:
        verdict = Verdict.OK
    elif status == 429 or status >= 500 or reason in _RATE_REASONS:
        verdict = Verdict.RETRY
    elif reason in _QUOTA_REASONS:
        verdict = Verdict.QUOTA
    elif status == 401 or (status == 403 and reason in _AUTH_REASONS):
        verdict = Verdict.AUTH
    elif status == 409:
        verdict = Verdict.CONFLICT
    elif status == 404:
        verdict = Verdict.NOT_FOUND
    else:
        verdict = Verdict.REFUSED
    return Answer(status, reason, message or reason, verdict)


def backoff(attempt: int, *, base: float = 0.5, ceiling: float = 32.0) -> float:
    """Exponential back-off with 'full jitter' so that retries from many items do not align."""
    return float(random.uniform(0, min(ceiling, base * 2 ** attempt)))  # noqa: S311 - jitter, not security
