"""The change journal: exactly-once application across crashes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from idlifecycle.store.base import StoreBase, utcnow

_SENT = json.JSONEncoder(sort_keys=True, default=str).encode


@dataclass(frozen=True)
class JournalEntry:
    change_id: str
    state: str
    detail: str
    key: str | None


@dataclass(frozen=True)
class StartedChange:
    """A journal row still `started`: sent (or about to be) by work that never recorded its outcome."""

    journal_id: str
    change_id: str
    change: dict[str, Any]
    """The change as it was sent (an account created earlier in that run filled in), no password."""


class Journal(StoreBase):
    """Each change's state under a plan's (or run's) journal id, and the change as sent."""

    def journal_states(self, plan_id: str) -> dict[str, JournalEntry]:
        self.write_later_rows()
        return {
            str(r["change_id"]): JournalEntry(str(r["change_id"]), str(r["state"]), r["detail"] or "", r["key"])
            for r in self.db.execute("SELECT * FROM journal WHERE plan_id=?", (plan_id,))
        }

    def journal(self, plan_id: str, change_id: str, directory: str, action: str, person_id: str | None,
                username: str, state: str, detail: str = "", key: str | None = None,
                sent: Mapping[str, Any] | None = None) -> None:
        """Records a change's state; `sent` (the change as sent, no password) is kept from its `started` row."""
        self.later(
            "INSERT INTO journal (change_id, plan_id, directory, action, person_id, username, state, detail, key, "
            "at, change)", "ON CONFLICT DO UPDATE SET "
            "state=excluded.state, detail=excluded.detail, key=excluded.key, at=excluded.at, "
            "change=COALESCE(excluded.change, change)",
            (change_id, plan_id, directory, action, person_id, username, state, detail, key, utcnow().isoformat(),
             None if sent is None else _SENT(sent)),
        )

    def started_changes(self) -> list[StartedChange]:
        """Every change still `started` in any journal, oldest first.

        Read holding the job lock, when no work that could own them is alive: each was sent, or about
        to be, by a run or apply that was killed before it recorded the outcome.
        """
        self.write_later_rows()
        return [StartedChange(str(r["plan_id"]), str(r["change_id"]), dict(json.loads(r["change"])))
                for r in self.db.execute("SELECT plan_id, change_id, change FROM journal "
                                         "WHERE state='started' AND change IS NOT NULL ORDER BY at, rowid")]
