"""One change's requests as a step of its account's chain, and sending chains as request groups.

Each change is a `Step`: the requests it sends and how to read their replies. One account's steps
go in order as one request group (`batches.run_groups`), and each step's Result is handed on the
moment its group is answered (`run_steps`), not when the phase ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from idlifecycle.connectors.base import ConnectorError, failed_result
from idlifecycle.connectors.entra import requests
from idlifecycle.connectors.entra.batches import run_groups
from idlifecycle.connectors.entra.cache import Cache
from idlifecycle.connectors.entra.graph import BatchRequest, GraphResponse, RequestGroup
from idlifecycle.connectors.entra.session import GraphSession
from idlifecycle.connectors.entra.settings import EntraSettings
from idlifecycle.connectors.entra.snapshot import Reader
from idlifecycle.model import Change, Outcome, Result

Interpret = Callable[[list[GraphResponse]], Awaitable[Result]]
Uncertain = Callable[[int], Awaitable[GraphResponse | None]]
Emit = Callable[[Result], None]
"""Hands one change's Result to `apply`'s caller as soon as it is decided (called on the session's loop)."""


@dataclass
class Step:
    """What one Change sends (a slice of its account's request chain) and how to read the replies."""

    change: Change
    requests: list[BatchRequest]
    interpret: Interpret
    result: Result | None = None
    uncertain: Uncertain | None = None
    """Asked after a lost reply or a 5xx: a stand-in reply when the write did happen (see RequestGroup)."""
    extra: dict[str, Result] = field(default_factory=dict)
    """Results of further changes this step's requests carried (20 member adds in one PATCH)."""
    lost: set[int] = field(default_factory=set)
    """Indexes of this step's requests whose reply was lost (or a 5xx) before they were sent again: an
    "already so" answer to the resend is this run's own write landing (APPLIED, not ALREADY)."""
    carries: tuple[str, ...] = ()
    """Ids of the further changes this step's requests carry (those `extra` answers)."""


@dataclass
class Writes:
    """What the writers of one `apply` share: the session, the settings, the directory as read, this run's marks."""

    session: GraphSession
    settings: EntraSettings
    reader: Reader
    cache: Cache
    password: Callable[[], str]
    """A throw-away password for a create planned without one (the passwords package's generator)."""
    sent: set[str] = field(default_factory=set)
    """Ids of the changes whose write has gone out (they may land unanswered)."""


def done(change: Change, outcome: Outcome, detail: str = "", key: str | None = None) -> Step:
    """A step decided without sending anything."""
    async def never(_: list[GraphResponse]) -> Result:
        raise AssertionError("a finished step is never sent")
    return Step(change, [], never, Result(change.change_id, outcome, detail, key=key))


def planned(writes: Writes, change: Change, plan: requests.Plan) -> Step:
    """The step for a pure plan (requests.py): decided now, or its requests, read by `read_replies`."""
    if isinstance(plan, requests.Decided):
        return done(change, plan.outcome, plan.detail, plan.key)

    async def interpret(replies: list[GraphResponse]) -> Result:
        return requests.read_replies(change, plan, replies, lost=bool(step.lost))

    step = Step(change, list(plan.requests), interpret, uncertain=_read_back(writes.session, plan.requests[0]))
    return step


def _read_back(session: GraphSession, request: BatchRequest) -> Uncertain | None:
    """For a PATCH whose reply was lost: did it land? Read the object back before sending it again.

    When every property the PATCH set already reads as sent, a stand-in 204 settles it; otherwise
    (or when the read fails too) it is sent again as before.
    """
    url = requests.read_back_url(request)
    if url is None:
        return None

    async def uncertain(index: int) -> GraphResponse | None:
        if index != 0:
            return None
        found = await session.lookup(url)
        return GraphResponse(204, {}, None) if requests.landed(request, found) else None

    return uncertain


async def run_steps(writes: Writes, chains: Sequence[Sequence[Step]], emit: Emit) -> None:
    """Send each chain (one account's steps, in order) as one request group; emit each step's Result
    as soon as its group is answered."""
    groups: list[tuple[list[Step], RequestGroup]] = []
    for chain in chains:
        for step in chain:
            if step.result is not None:
                emit(step.result)  # decided without sending anything
        pending = [s for s in chain if s.result is None]
        sent = [r for s in pending for r in s.requests]
        if sent:
            groups.append((pending, RequestGroup(sent, _uncertain_hook(pending),
                                                 sending=_sending_hook(pending, writes.sent))))
    settling = [asyncio.ensure_future(_settle(pending, group, emit)) for pending, group in groups]
    try:
        await run_groups(writes.session, [g for _, g in groups])
        await asyncio.gather(*settling)
    finally:
        for task in settling:
            task.cancel()


async def _settle(pending: list[Step], group: RequestGroup, emit: Emit) -> None:
    """Each step's Result once its group is answered; the steps after a failed one are not attempted."""
    await group.finished.wait()
    position = 0
    failed_before = False
    for step in pending:
        replies = group.responses[position:position + len(step.requests)]
        position += len(step.requests)
        if failed_before:
            step.result = Result(step.change.change_id, Outcome.FAILED,
                                 "not attempted: an earlier change to this account failed", retryable=True)
        else:
            try:
                step.result = await step.interpret(replies)
            except ConnectorError as error:  # a read while interpreting failed: this change only
                step.result = failed_result(step.change, error)
            failed_before = step.result.outcome is Outcome.FAILED
        for extra in step.extra.values():
            emit(_doubtful_if_lost(step, extra))
        emit(_doubtful_if_lost(step, step.result))


def _doubtful_if_lost(step: Step, result: Result) -> Result:
    """A change that failed after one of its sends went unanswered (a lost reply or a 5xx, then the tries
    ran out) may have landed all the same: unconfirmed, so the executor leaves it `started` and the next
    run's fresh look settles it (and audits it applied, once, if it did). Recorded failed instead, a
    removal that landed was in no audit entry: the next plan no longer had it to do (seen on CI)."""
    if result.outcome is Outcome.FAILED and step.lost and not result.unconfirmed:
        return replace(result, unconfirmed=True)
    return result


def _spans(pending: list[Step]) -> list[tuple[int, Step]]:
    """Each step with the index of its first request in the group's requests."""
    spans: list[tuple[int, Step]] = []
    start = 0
    for step in pending:
        spans.append((start, step))
        start += len(step.requests)
    return spans


def _sending_hook(pending: list[Step], sent: set[str]) -> Callable[[int], None]:
    """A request group's `sending` hook: notes the changes whose write went out (they may land unanswered)."""
    spans = _spans(pending)

    def sending(index: int) -> None:
        step = next(s for f, s in reversed(spans) if index >= f)
        sent.update((step.change.change_id, *step.carries))

    return sending


def _uncertain_hook(pending: list[Step]) -> Uncertain:
    """A request group's `uncertain` hook: notes which step's request was in doubt and asks that step's own hook.

    The group's index runs over all its steps' requests; each step sees its own (0 = its first).
    """
    spans = _spans(pending)

    async def uncertain(index: int) -> GraphResponse | None:
        first, step = next((f, s) for f, s in reversed(spans) if index >= f)
        step.lost.add(index - first)
        return None if step.uncertain is None else await step.uncertain(index - first)

    return uncertain
