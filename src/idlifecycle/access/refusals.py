"""Refusals audited with a cap: the first of a kind in a window in full, the rest as one counted row.

Anyone on the internet can send forged approval links or tampered sign-in answers, and one audit
row per attempt would let them flood the audit log (and bury the refusals that matter). So each
kind is written in full once per window (`[web.limits] refused_audit_window_seconds`, a minute by
default), and the others of that window as one row with their count, first and last time, and up
to `refused_audit_clients` client addresses. Use from the one thread that holds the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol


class Audits(Protocol):
    def audit(self, event: str, data: Mapping[str, Any], actor: str = ...) -> None: ...


@dataclass
class RefusalTally:
    """Refusals of one kind counted after the first of its window, not yet written."""

    first: datetime
    last: datetime
    count: int = 0
    clients: set[str] = field(default_factory=set)


class CappedRefusals:
    """`record` each refusal; `flush` writes the counts of windows that have passed."""

    def __init__(self, event: str, counted_event: str, window_seconds: int, max_clients: int) -> None:
        self.event = event
        self.counted_event = counted_event
        self.window = timedelta(seconds=window_seconds)
        self.max_clients = max_clients
        self._tallies: dict[str, RefusalTally] = {}

    def record(self, store: Audits, reason: str, client: str, details: Mapping[str, Any],
               now: datetime) -> bool:
        """Count one refusal of `reason`; True when it was written in full (the first of its window)."""
        self.flush(store, now)
        tally = self._tallies.get(reason)
        if tally is not None:
            tally.count += 1
            tally.last = now
            if len(tally.clients) < self.max_clients:
                tally.clients.add(client)
            return False
        self._tallies[reason] = RefusalTally(now, now)
        store.audit(self.event, {"reason": reason, **details, "client": client}, actor="web")
        return True

    def flush(self, store: Audits, now: datetime | None = None) -> None:
        """Write the count of each kind whose window has passed (all of them when `now` is None)."""
        for reason, tally in list(self._tallies.items()):
            if now is not None and now - tally.first < self.window:
                continue
            del self._tallies[reason]
            if tally.count:
                store.audit(self.counted_event, {
                    "reason": reason, "count": tally.count, "first": tally.first.isoformat(),
                    "last": tally.last.isoformat(), "clients": sorted(tally.clients)}, actor="web")
