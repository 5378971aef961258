"""Passwords owed: set (or maybe set) in a directory and not yet delivered; never the password itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from idlifecycle.store.base import StoreBase, utcnow


@dataclass(frozen=True)
class OwedPassword:
    """Someone whose new password was set (or may have been) but never delivered to them."""

    person_id: str
    directory: str
    username: str
    reason: str
    since: str


class Owed(StoreBase):
    """Who is still owed a new password, where, and why."""

    def owe_password(self, person_id: str, directory: str, username: str, reason: str) -> bool:
        """Records the obligation (kept with its first reason and date if already owed); True if new."""
        cur = self.db.execute("INSERT INTO passwords_owed VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                              (person_id, directory, username, reason, utcnow().isoformat()))
        return cur.rowcount > 0

    def note_password_owed(self, person_id: str, reason: str) -> None:
        """Why a password is still not delivered (a mail failure), for the run summary."""
        self.db.execute("UPDATE passwords_owed SET reason=? WHERE person_id=?", (reason, person_id))

    def settle_password(self, person_id: str, directories: Sequence[str] | None = None) -> None:
        """The obligation ends: delivered, or (for one directory) nothing was set there after all."""
        if directories is None:
            self.db.execute("DELETE FROM passwords_owed WHERE person_id=?", (person_id,))
            return
        for directory in directories:
            self.db.execute("DELETE FROM passwords_owed WHERE person_id=? AND directory=?", (person_id, directory))

    def owed_passwords(self) -> list[OwedPassword]:
        return [OwedPassword(str(r["person_id"]), str(r["directory"]), str(r["username"]), str(r["reason"]),
                             str(r["since"]))
                for r in self.db.execute("SELECT * FROM passwords_owed ORDER BY since, person_id, directory")]
