"""Teachers' resets of their own pupils' passwords: one row per pupil reset, for the per-teacher rate limit
(it must survive a restart of the web app, so it lives here, not in memory) and the review's list of them.

Never a password: who (the teacher, and the operator who acted for them), whom, when and from where.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from idlifecycle.store.base import StoreBase

CLASS_RESETS_SCHEMA = """CREATE TABLE IF NOT EXISTS class_resets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, teacher TEXT NOT NULL, pupil_id TEXT NOT NULL, username TEXT NOT NULL,
    at TEXT NOT NULL, from_address TEXT NOT NULL, operator TEXT NOT NULL, directories TEXT NOT NULL
)"""
"""One statement, so it can run inside a caller's transaction (executescript would commit it)."""


@dataclass(frozen=True)
class ClassReset:
    teacher: str
    """The teacher's staff id (person_id in the feed)."""
    pupil_id: str
    username: str
    at: datetime
    from_address: str
    operator: str
    """Who typed it in for the teacher (the IT desk's `reset-class`), "" when the teacher did it themselves."""
    directories: tuple[str, ...]
    """Where the new password was set; empty when no directory took it (the attempt still counts)."""


class ClassResets(StoreBase):
    def _class_reset_table(self) -> None:
        self.db.execute(CLASS_RESETS_SCHEMA)

    def count_class_resets(self, teacher: str, since: datetime) -> int:
        """Pupils the teacher has had reset since `since` (attempts count, set or not)."""
        self._class_reset_table()
        row = self.db.execute("SELECT COUNT(*) FROM class_resets WHERE teacher = ? AND at >= ?",
                              (teacher, since.isoformat())).fetchone()
        return int(row[0])

    def record_class_reset(self, reset: ClassReset) -> None:
        self._class_reset_table()
        self.db.execute(
            "INSERT INTO class_resets (teacher, pupil_id, username, at, from_address, operator, directories) "
            "VALUES (?,?,?,?,?,?,?)",
            (reset.teacher, reset.pupil_id, reset.username, reset.at.isoformat(), reset.from_address, reset.operator,
             ",".join(reset.directories)))

    def class_resets(self, since: datetime | None = None) -> list[ClassReset]:
        """Every reset since `since` (all when None), oldest first."""
        self._class_reset_table()
        rows = self.db.execute("SELECT * FROM class_resets WHERE at >= ? ORDER BY seq",
                               ("" if since is None else since.isoformat(),))
        return [ClassReset(str(r["teacher"]), str(r["pupil_id"]), str(r["username"]), datetime.fromisoformat(r["at"]),
                           str(r["from_address"]), str(r["operator"]),
                           tuple(d for d in str(r["directories"]).split(",") if d)) for r in rows]

    def class_resets_before_run(self, job: str, run_id: int) -> list[ClassReset]:
        """The resets since the job's run before `run_id` started (every one, before its first run): what the
        run summary of `run_id` lists."""
        row = self.db.execute("SELECT started_at FROM runs WHERE job = ? AND run_id < ? ORDER BY run_id DESC LIMIT 1",
                              (job, run_id)).fetchone()
        return self.class_resets(None if row is None else datetime.fromisoformat(row[0]))
