"""Dormant disables the tool made, and admins' exemptions from them (`people keep-active`): what the
directories cannot tell the planner (a hand re-enable looks like any enabled account)."""

from __future__ import annotations

from datetime import date

from idlifecycle.store.base import StoreBase, utcnow

DORMANT_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS dormant_disables (
    directory TEXT NOT NULL, person_id TEXT NOT NULL, key TEXT NOT NULL, username TEXT NOT NULL,
    reason TEXT NOT NULL, disabled_on TEXT NOT NULL, seen_enabled_on TEXT, told_at TEXT,
    pending INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (directory, person_id)
)""",
    """CREATE TABLE IF NOT EXISTS keep_active (
    person_id TEXT PRIMARY KEY, until TEXT NOT NULL, by TEXT NOT NULL, at TEXT NOT NULL, why TEXT NOT NULL
)""",
)
"""Single statements, so they can run inside a caller's transaction (executescript would commit it)."""


class Dormant(StoreBase):
    """The tool's dormant disables (one standing one per account) and the keep-active exemptions."""

    def _dormant_tables(self) -> None:
        for statement in DORMANT_SCHEMA:
            self.db.execute(statement)

    def mark_dormant_pending(self, directory: str, person_id: str, key: str, username: str, reason: str,
                             on: date) -> None:
        """Written before a dormant disable is sent (as `People.mark_disable_pending`); it counts once it is
        seen landed (`settle_dormant`), and replaces the account's earlier one and its grace."""
        self._dormant_tables()
        self.db.execute(
            "INSERT INTO dormant_disables VALUES (?,?,?,?,?,?,NULL,NULL,1) ON CONFLICT DO UPDATE SET key=excluded.key, "
            "username=excluded.username, reason=excluded.reason, disabled_on=excluded.disabled_on, "
            "seen_enabled_on=NULL, told_at=NULL, pending=1",
            (directory, person_id, key, username, reason, on.isoformat()))

    def settle_dormant(self, directory: str, person_id: str, landed: bool) -> None:
        """A pending dormant disable counts when it landed, and is dropped when it did not."""
        self._dormant_tables()
        if landed:
            self.db.execute("UPDATE dormant_disables SET pending=0 WHERE directory=? AND person_id=? AND pending=1",
                            (directory, person_id))
        else:
            self.db.execute("DELETE FROM dormant_disables WHERE directory=? AND person_id=? AND pending=1",
                            (directory, person_id))

    def dormant_marks(self) -> dict[tuple[str, str], tuple[date, date | None]]:
        """(directory, person_id) -> (the day the tool disabled it as dormant, the first night seen enabled again)."""
        self._dormant_tables()
        return {(str(r["directory"]), str(r["person_id"])): (
            date.fromisoformat(r["disabled_on"]),
            None if r["seen_enabled_on"] is None else date.fromisoformat(r["seen_enabled_on"]))
            for r in self.db.execute("SELECT * FROM dormant_disables WHERE pending=0")}

    def note_enabled_again(self, directory: str, keys: set[str], on: date) -> list[tuple[str, str]]:
        """Dormant-disabled accounts among `keys` (enabled in the directory tonight) first seen enabled `on`;
        returns their (person_id, username)."""
        self._dormant_tables()
        found = [(str(r[0]), str(r[1]), str(r[2])) for r in self.db.execute(
            "SELECT person_id, username, key FROM dormant_disables WHERE directory=? AND seen_enabled_on IS NULL "
            "AND pending=0",
            (directory,))]
        seen = [(pid, username) for pid, username, key in found if key in keys]
        for pid, _ in seen:
            self.db.execute("UPDATE dormant_disables SET seen_enabled_on=? WHERE directory=? AND person_id=?",
                            (on.isoformat(), directory, pid))
        return seen

    def dormant_untold(self) -> list[tuple[str, str, str, str]]:
        """(directory, person_id, username, reason) of each dormant disable nobody has been told of yet."""
        self._dormant_tables()
        return [(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in self.db.execute(
            "SELECT directory, person_id, username, reason FROM dormant_disables WHERE told_at IS NULL "
            "AND pending=0 ORDER BY person_id, directory")]

    def mark_dormant_told(self, person_id: str) -> None:
        self._dormant_tables()
        self.db.execute("UPDATE dormant_disables SET told_at=? WHERE person_id=? AND told_at IS NULL AND pending=0",
                        (utcnow().isoformat(), person_id))

    def keep_active_until(self, person_id: str, until: date, by: str, why: str) -> None:
        self._dormant_tables()
        self.db.execute("INSERT INTO keep_active VALUES (?,?,?,?,?) ON CONFLICT DO UPDATE SET until=excluded.until, "
                        "by=excluded.by, at=excluded.at, why=excluded.why",
                        (person_id, until.isoformat(), by, utcnow().isoformat(), why))

    def keep_active(self) -> dict[str, date]:
        """person_id -> the last day their accounts are kept from a dormant disable."""
        self._dormant_tables()
        rows = self.db.execute("SELECT person_id, until FROM keep_active")
        return {str(r[0]): date.fromisoformat(r[1]) for r in rows}
