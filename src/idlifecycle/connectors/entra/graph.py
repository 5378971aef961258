"""Graph's answers and requests as the Entra connector sends and reads them: plain data, no I/O.

`GraphResponse` is one answer (a $batch item's or a whole request's), `BatchRequest` one item to
send, `RequestGroup` the items of one account that must go in order; `ResponseError` and
`TransportFailure` are how a read that Graph refused, or that no reply reached, leaves the session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from idlifecycle.connectors.base import ConnectorError

BATCH_LIMIT = 20
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class GraphResponse:
    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def from_graph(self) -> bool:
        """Whether an error answer carries Graph's JSON error body (a proxy's or gateway's page does not)."""
        return isinstance(self.body, dict) and isinstance(self.body.get("error"), dict)

    @property
    def transient(self) -> bool:
        """Worth sending again: throttling and 5xx, and a 403/5xx not from Graph itself (a proxy in the way).

        Graph's own error-handling guidance says some answers come from proxies and gateways
        without Graph's body and must be handled on the status alone
        (https://learn.microsoft.com/en-us/previous-versions/azure/ad/graph/howto/azure-ad-graph-api-error-codes-and-error-handling).
        """
        return self.status in RETRYABLE_STATUSES or ((self.status == 403 or self.status >= 500) and not self.from_graph)

    @property
    def error_code(self) -> str:
        error = (self.body or {}).get("error") if isinstance(self.body, dict) else None
        return str(error.get("code", "")) if isinstance(error, dict) else ""

    @property
    def error_message(self) -> str:
        error = (self.body or {}).get("error") if isinstance(self.body, dict) else None
        return str(error.get("message", "")) if isinstance(error, dict) else ""

    def retry_after(self) -> float | None:
        for name, value in self.headers.items():
            if name.lower() == "retry-after":
                try:
                    return max(0.0, float(value))
                except ValueError:
                    return None
        return None


class TransportFailure(ConnectorError):
    """No reply arrived (timeout, dropped connection): a write may or may not have happened."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


@dataclass
class BatchRequest:
    """One batch item; within its RequestGroup it is sent only after the one before it succeeded."""

    method: str
    url: str
    """Relative to the Graph version root, e.g. "/users/{id}"."""
    body: Any = None


@dataclass
class RequestGroup:
    """Items that must run in order (a chain); `uncertain` decides after a lost reply.

    A chain is sent one item per round trip, each in a fully parallel batch beside other groups'
    items: Graph refuses a whole batch that mixes `dependsOn` chains with independent items
    (https://learn.microsoft.com/en-us/graph/json-batching; microsoft-graph-docs#16280), and a
    chain's next item going out in the next batch costs no more writes than `dependsOn` would,
    while it keeps every batch full. It also gives a just-created object a little time to
    replicate before the next item refers to it.

    `uncertain(index)` is awaited when item `index` may or may not have been applied (timeout,
    dropped connection, 5xx); it returns a stand-in response when the write turns out to have
    happened (e.g. a create found by its anchor), or None to send the rest again.
    """

    requests: list[BatchRequest]
    uncertain: Callable[[int], Awaitable[GraphResponse | None]] | None = None
    responses: list[GraphResponse] = field(default_factory=list)
    attempts: int = 0
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once every item is answered: the connector reads this group's results at once, not at the phase's end."""
    sending: Callable[[int], None] | None = None
    """Called with item `index` as a write item goes on the wire: from then on it may land unanswered."""


class ResponseError(ConnectorError):
    """Graph answered with an error status; the message has Graph's code and message, never a body."""

    def __init__(self, response: GraphResponse, what: str) -> None:
        self.response = response
        detail = (f"{response.error_code}: {response.error_message}" if response.error_code
                  else f"HTTP {response.status}")
        if not response.from_graph and not response.ok and response.transient:
            detail += " (not Graph's answer: a proxy or gateway on the way)"
        super().__init__(f"{what}: {detail}", retryable=response.transient)
