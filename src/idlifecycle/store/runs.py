"""Runs (their status, date and counts) and the feed's profile on the last good run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from idlifecycle.store.base import StoreBase, utcnow


class Runs(StoreBase):
    """Each run of a job, and what the feed looked like, for the guards."""

    def start_run(self, job: str) -> int:
        cur = self.db.execute(
            "INSERT INTO runs (job, started_at, status) VALUES (?,?,?)", (job, utcnow().isoformat(), "running")
        )
        return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, status: str, people_count: int | None, summary: Mapping[str, Any]) -> None:
        self.db.execute(
            "UPDATE runs SET finished_at=?, status=?, people_count=?, summary=? WHERE run_id=?",
            (utcnow().isoformat(), status, people_count, json.dumps(summary, default=str), run_id),
        )

    def mark_interrupted(self, job: str) -> list[tuple[int, str]]:
        """Marks `job`'s runs still recorded as running as `interrupted`; returns (run_id, started_at).

        Call it holding the job lock: then no such run can be alive (it was killed, or the machine
        stopped), and nothing it journalled is taken as done by the next run, which plans afresh.
        """
        rows = [(int(r["run_id"]), str(r["started_at"])) for r in self.db.execute(
            "SELECT run_id, started_at FROM runs WHERE job=? AND status='running' ORDER BY run_id", (job,))]
        for run_id, _ in rows:
            self.db.execute("UPDATE runs SET status='interrupted', finished_at=? WHERE run_id=? AND status='running'",
                            (utcnow().isoformat(), run_id))
        return rows

    def set_run_day(self, run_id: int, day: date) -> None:
        """Records the date an applying run ran as, once the date guard accepted it."""
        self.db.execute("UPDATE runs SET day=? WHERE run_id=?", (day.isoformat(), run_id))

    def last_run_day(self, job: str, before_run: int | None = None) -> date | None:
        """The date of `job`'s latest applying run before `before_run` that was not stopped by a guard.

        Rehearsals (`plan`) and guard-stopped runs applied nothing, so their dates do not count; an
        interrupted run may have applied changes as of its date, so it does.
        """
        row = self.db.execute(
            "SELECT day FROM runs WHERE job=? AND run_id<? AND day IS NOT NULL AND status != 'guard' "
            "ORDER BY run_id DESC LIMIT 1", (job, before_run if before_run is not None else 2**62)).fetchone()
        return None if row is None else date.fromisoformat(str(row[0]))

    def run_status(self, run_id: int) -> str | None:
        row = self.db.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return None if row is None else str(row[0])

    def last_good_people_count(self, job: str) -> int | None:
        row = self.db.execute(
            "SELECT people_count FROM runs WHERE job=? AND status IN ('ok','nothing-to-do','partial') "
            "AND people_count IS NOT NULL "
            "ORDER BY run_id DESC LIMIT 1",
            (job,),
        ).fetchone()
        return None if row is None else int(row[0])

    # what the feed looked like on the last good run: its columns and groups, for the shape guards
    def feed_profile(self, job: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT data FROM feed_profiles WHERE job=?", (job,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def record_feed_profile(self, job: str, run_id: int, profile: Mapping[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO feed_profiles VALUES (?,?,?) ON CONFLICT DO UPDATE SET run_id=excluded.run_id, "
            "data=excluded.data",
            (job, run_id, json.dumps(profile, sort_keys=True)),
        )
