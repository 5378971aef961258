"""Sending request groups to Graph in fully parallel JSON $batches of up to 20 items, several in flight, paced.

Each batch carries the next item of up to 20 groups; a group whose item succeeded goes back in the
queue for its next one. Items answered 429/5xx are sent again after Retry-After, or an exponential
backoff when there is none; a lost reply asks the group's `uncertain` hook first. A group that
never succeeds keeps its last failing response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from idlifecycle.connectors.base import ConnectorError
from idlifecycle.connectors.entra.graph import (
    BATCH_LIMIT,
    RETRYABLE_STATUSES,
    GraphResponse,
    RequestGroup,
    ResponseError,
    TransportFailure,
)
from idlifecycle.connectors.entra.session import GraphSession, backoff

Requeue = Callable[[RequestGroup, float], None]
"""Puts a group back in the queue after so many seconds."""
MAX_ATTEMPTS = 8


async def run_groups(session: GraphSession, groups: Sequence[RequestGroup], *,
                     max_attempts: int = MAX_ATTEMPTS) -> None:
    """Send every group's requests (see the module's docstring); returns when every group is finished."""
    queue: asyncio.Queue[RequestGroup] = asyncio.Queue()
    for group in groups:
        queue.put_nowait(group)
    outstanding = len(groups)
    done = asyncio.Event()
    if outstanding == 0:
        return
    in_flight = asyncio.Semaphore(session.max_in_flight)
    failures: list[BaseException] = []

    def requeue_later(group: RequestGroup, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, queue.put_nowait, group)

    async def send_batch(batch: list[RequestGroup]) -> None:
        nonlocal outstanding
        try:
            finished = await _send_batch(session, batch, requeue_later, max_attempts)
            # Counted after the await, not `outstanding -= await …`: that reads `outstanding` before
            # awaiting, and batches in flight side by side would each write back a stale count.
            outstanding -= finished
            if outstanding == 0:
                done.set()
        except Exception as error:  # surfaced after the pump stops; a hung run would hide it
            failures.append(error)
            done.set()
        finally:
            in_flight.release()

    tasks: set[asyncio.Task[None]] = set()
    try:
        while (batch := await _next_batch(queue, done)) is not None:
            await in_flight.acquire()
            await session.pacer.acquire(len(batch))
            task = asyncio.ensure_future(send_batch(batch))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        # Cancelled (the connector gave up on a silent Graph): no batch goes on being sent.
        for task in list(tasks):
            task.cancel()
    if failures:
        raise failures[0]


async def _next_batch(queue: asyncio.Queue[RequestGroup], done: asyncio.Event) -> list[RequestGroup] | None:
    """Up to 20 groups waiting for their next item, or None once every group is finished."""
    if done.is_set():
        return None
    getter = asyncio.ensure_future(queue.get())
    waiter = asyncio.ensure_future(done.wait())
    try:
        await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        getter.cancel()
        waiter.cancel()
        raise
    waiter.cancel()
    if not getter.done():
        getter.cancel()
        return None
    batch = [getter.result()]
    while not queue.empty() and len(batch) < BATCH_LIMIT:
        batch.append(queue.get_nowait())
    return batch


async def _send_batch(session: GraphSession, batch: list[RequestGroup], requeue_later: Requeue,
                      max_attempts: int) -> int:
    """One $batch round trip of each group's next item; returns how many groups are finished.

    No item carries `dependsOn`, so the batch is fully parallel as Graph requires.
    """
    items = _items(batch)
    for group in batch:
        if group.sending is not None and group.requests[len(group.responses)].method != "GET":
            group.sending(len(group.responses))
    answers = await _answers(session, batch, items)
    if answers is None:
        return len(batch)
    # The lookups after lost replies run side by side: each may wait out replication for seconds.
    doubtful = [(g, a) for g, a in zip(batch, answers, strict=True)
                if a.status in RETRYABLE_STATUSES and a.status != 429 and g.uncertain is not None]
    decided = await asyncio.gather(*(_decide(g) for g, _ in doubtful))
    stand_ins = {id(g): d for (g, _), d in zip(doubtful, decided, strict=True)}
    return sum(_settle(session, group, response, stand_ins.get(id(group)), requeue_later, max_attempts)
               for group, response in zip(batch, answers, strict=True))


def _items(batch: list[RequestGroup]) -> list[dict[str, Any]]:
    """The $batch items: each group's next request, numbered in the batch's order (one attempt more)."""
    items: list[dict[str, Any]] = []
    for group in batch:
        group.attempts += 1
        request = group.requests[len(group.responses)]
        item: dict[str, Any] = {"id": str(len(items) + 1), "method": request.method, "url": request.url}
        if request.body is not None:
            item["body"] = request.body
            item["headers"] = {"Content-Type": "application/json"}
        items.append(item)
    return items


async def _answers(session: GraphSession, batch: list[RequestGroup],
                   items: list[dict[str, Any]]) -> list[GraphResponse] | None:
    """Each item's answer, in the batch's order; None when Graph refused the batch itself (each group
    then finished with that answer). A lost reply or a 5xx to the batch is every item's answer."""
    try:
        reply = await session.send("POST", "/$batch", {"requests": items}, retry=False)
        if not reply.ok:
            raise ResponseError(reply, "POST /$batch")
        by_id = {str(r.get("id")): r for r in reply.body.get("responses", [])}
    except (TransportFailure, ResponseError) as failure:
        status = failure.response.status if isinstance(failure, ResponseError) else 0
        if isinstance(failure, ResponseError) and not failure.response.transient:
            # Graph refused the batch itself (e.g. 400, 401): the changes in it fail with its
            # answer; the other batches go on.
            for group in batch:
                group.responses.extend(failure.response for _ in range(len(group.responses), len(group.requests)))
                group.finished.set()
            return None
        if status not in RETRYABLE_STATUSES:
            status = 503 if status else 504  # a proxy's page or no reply: not known to have reached Graph
        headers = dict(failure.response.headers) if isinstance(failure, ResponseError) else {}
        body = {"error": {"code": "transport", "message": str(failure)}}
        by_id = {item["id"]: {"status": status, "headers": headers, "body": body} for item in items}
    missing = {"status": 504, "headers": {}, "body": None}
    return [GraphResponse(int(raw.get("status", 504)), dict(raw.get("headers") or {}), raw.get("body"))
            for raw in (by_id.get(item["id"], missing) for item in items)]


def _settle(session: GraphSession, group: RequestGroup, response: GraphResponse, stand_in: GraphResponse | None,
            requeue_later: Requeue, max_attempts: int) -> int:
    """Take one item's answer into its group: 1 when the group is finished, 0 when it goes back in the queue."""
    index = len(group.responses)
    if response.status in RETRYABLE_STATUSES:
        if stand_in is not None:
            response = stand_in
        elif group.attempts >= max_attempts:
            group.responses.extend(response for _ in range(index, len(group.requests)))
            group.finished.set()
            return 1
        else:
            wait = response.retry_after()
            if wait is None:
                wait = backoff(group.attempts, 1.0)
            if response.status == 429:
                session.pacer.pause(wait)
            requeue_later(group, wait)
            return 0
    request = group.requests[index]
    if response.status == 404 and group.attempts < max_attempts and session.replicating(request, response):
        # Made by this run a moment ago: not yet on the replica that answered (see REPLICATION_PATIENCE).
        session.replication_retries += 1
        requeue_later(group, backoff(group.attempts))
        return 0
    if response.ok and request.method == "POST" and (
            request.url in ("/users", "/groups") or request.url.endswith("/restore")):
        session.note_created(response.body)
    group.responses.append(response)
    if response.ok and len(group.responses) < len(group.requests):
        group.attempts = 0  # the next item has its own tries
        requeue_later(group, 0.0)
        return 0
    # Done, or stopped by a failure: the items after a failed one are answered with it.
    group.responses.extend(response for _ in range(len(group.responses), len(group.requests)))
    group.finished.set()
    return 1


async def _decide(group: RequestGroup) -> GraphResponse | None:
    """A group's `uncertain` hook, contained: a hook that cannot reach Graph leaves the item to be sent again."""
    assert group.uncertain is not None
    try:
        return await group.uncertain(len(group.responses))
    except ConnectorError:
        return None
