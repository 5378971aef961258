"""Reading many paged lists at once: each round sends the next page of every list still open in
one multipart batch, so a snapshot's round trips are its longest list's pages, not all its pages.

A snapshot reads the users (500 a page), the groups, and every managed group's members (200 a
page, the Directory API's most). Read one after another at 50 ms a round trip, 20,000 pupils in a
few dozen groups is some 370 calls and half a minute; the calls are what they are (a page token
comes only with the page before), but the lists are independent, so their pages can travel together.
Every part still counts against the per-minute quota (FACTS.md section 3), so each batch is paced
for all its parts, like the writes' batches.

Reads are safe to send again: a part Google asks to retry (rate limits, 5xx, quotaExceeded, its
limit on concurrent calls, which also shrinks later batches) goes in the next round after a back-off;
a batch whose answer was lost is sent again whole. A part refused for good ends the read, as a
single call would.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.auth.exceptions import RefreshError
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, HttpRequest

from idlifecycle.connectors.base import ConnectorError
from idlifecycle.connectors.google.session import MAX_ATTEMPTS, TRANSPORT_ERRORS, Session, Verdict, backoff, read_error


@dataclass
class Listing:
    """One paged list: `method(**params)` page after page, the items under `key` gathered in `items`.

    `then`, when given, is called with the finished listing and returns more listings to read in the
    same rounds (a group's members once the groups are known)."""

    name: str
    method: Callable[..., HttpRequest]
    key: str
    params: dict[str, Any]
    then: Callable[[Listing], Iterable[Listing]] | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    token: str | None = None
    attempts: int = 0

    def request(self) -> HttpRequest:
        return functools.partial(self.method, **self.params, **({"pageToken": self.token} if self.token else {}))()


def read_together(session: Session, listings: Iterable[Listing], *, batch_cap: int | None = None) -> None:
    """Read every listing (and those their `then` adds) to its last page, pages of different lists in one batch."""
    open_ = list(listings)
    cap = max(1, batch_cap or session.options.batch_size)
    attempt = 0
    while open_:
        if session.stopped or session.given_up():
            raise ConnectorError(str(session.stopped), retryable=True)
        again: list[Listing] = []
        refused_concurrent = 0
        chunk, open_ = open_[:cap], open_[cap:]
        answers = _send(session, chunk)
        if answers is None:  # lost on the way: every part is sent again
            again = chunk
            for listing in chunk:
                _count_attempt(listing, "cannot reach Google: the answer to a batch of reads was lost")
        for number, listing in enumerate(chunk if answers is not None else ()):
            assert answers is not None
            body, failure = answers.get(str(number), (None, None))
            if failure is not None:
                answer = read_error(failure.resp.status, failure.content)
                if answer.verdict is not Verdict.RETRY:
                    raise session.refused(answer)
                session.rate_limited += answer.status in (403, 429)
                refused_concurrent += answer.reason == "quotaExceeded"
                _count_attempt(listing, f"Google kept answering {answer.status} {answer.reason} to {listing.name}")
                again.append(listing)
                continue
            page = body if isinstance(body, dict) else {}
            listing.items.extend(page.get(listing.key, []) or [])
            listing.token = page.get("nextPageToken") or None
            listing.attempts = 0
            if listing.token:
                open_.append(listing)
            elif listing.then is not None:
                open_.extend(listing.then(listing))
        if refused_concurrent:
            # quotaExceeded: the parts Google took are what it takes at once (session.Pacer's note).
            cap = max(1, min(cap, len(chunk) - refused_concurrent or len(chunk) // 2))
        if again:
            time.sleep(backoff(attempt))
            attempt += 1
            open_ = again + open_
        else:
            attempt = 0


def _count_attempt(listing: Listing, why: str) -> None:
    listing.attempts += 1
    if listing.attempts >= MAX_ATTEMPTS:
        raise ConnectorError(f"{why}; tried {MAX_ATTEMPTS} times", retryable=True)


class WholeBatchRetry(Exception):
    """Google answered the batch itself with one to send again (a rate limit, a 5xx)."""


def send_parts(session: Session, requests: Sequence[HttpRequest]) -> dict[str, tuple[Any, HttpError | None]]:
    """One multipart batch of `requests`, paced and counted for all its parts; each part's answer by its number.

    Raises the sign-in's or Google's refusal, WholeBatchRetry when Google asks for the whole batch again,
    and a transport error (TRANSPORT_ERRORS) as it came: what a lost answer means is the caller's to say."""
    answers: dict[str, tuple[Any, HttpError | None]] = {}
    batch = BatchHttpRequest(callback=lambda rid, body, error: answers.__setitem__(rid, (body, error)),
                             batch_uri=session.batch_uri)
    for number, request in enumerate(requests):
        batch.add(request, request_id=str(number))
    session.pacer.acquire(len(requests))
    session.sending()
    try:
        batch.execute(http=session.http)
        session.answered()
    except RefreshError as error:
        raise session.sign_in_refused(error) from None
    except HttpError as error:
        session.answered()
        answer = read_error(error.resp.status, error.content)
        if answer.verdict is not Verdict.RETRY:
            raise session.refused(answer) from None
        raise WholeBatchRetry from None
    finally:
        session.calls_sent += len(requests)
        session.pacer.record(len(requests))
    return answers


def _send(session: Session, chunk: list[Listing]) -> dict[str, tuple[Any, HttpError | None]] | None:
    """One batch of page reads; its answers by part, or None when they must all be read again."""
    if len(chunk) == 1:
        # A batch of one is one call: sent plain, with the single call's own retries, as before batches.
        return {"0": (session.execute(chunk[0].request), None)}
    try:
        return send_parts(session, [listing.request() for listing in chunk])
    except (WholeBatchRetry, *TRANSPORT_ERRORS):
        return None  # reads are safe to send again
