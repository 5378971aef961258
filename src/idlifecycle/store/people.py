"""Usernames ever issued (never reissued to someone else) and the accounts this tool manages."""

from __future__ import annotations

from datetime import date

from idlifecycle.store.base import StoreBase, utcnow


class People(StoreBase):
    """Who was given which name, and which account in which directory is whose."""

    # usernames: every name ever issued, never reissued to someone else
    def issued_usernames(self) -> dict[str, str]:
        """lower-cased username -> person_id, for every name ever issued."""
        return {
            str(r["username"]).lower(): str(r["person_id"])
            for r in self.db.execute("SELECT username, person_id FROM usernames")
        }

    def person_usernames(self) -> dict[str, str]:
        """person_id -> the username most recently issued to them."""
        return {
            str(r["person_id"]): str(r["username"])
            for r in self.db.execute("SELECT username, person_id FROM usernames ORDER BY issued_at")
        }

    def record_username(self, username: str, person_id: str) -> None:
        self.db.execute(
            "INSERT INTO usernames VALUES (?,?,?) ON CONFLICT DO NOTHING",
            (username, person_id, utcnow().isoformat()),
        )

    # accounts this tool manages: the anchor link and when a leaver was disabled
    def record_account(self, directory: str, person_id: str, key: str, username: str) -> None:
        self.db.execute(
            "INSERT INTO accounts (directory, person_id, key, username) VALUES (?,?,?,?) "
            "ON CONFLICT DO UPDATE SET key=excluded.key, username=excluded.username",
            (directory, person_id, key, username),
        )

    def mark_disabled(self, directory: str, person_id: str, on: date | None) -> None:
        self.db.execute(
            "UPDATE accounts SET disabled_on=?, disable_pending=NULL WHERE directory=? AND person_id=?",
            (None if on is None else on.isoformat(), directory, person_id),
        )

    def mark_disable_pending(self, directory: str, person_id: str, key: str, username: str, on: date) -> None:
        """Written before a disable is sent: if the run dies after the directory took it, the next run
        finds the account disabled and makes this its disable date (`settle_disable`), so the
        retention clock starts and the account is deleted in time."""
        self.record_account(directory, person_id, key, username)
        self.db.execute("UPDATE accounts SET disable_pending=? WHERE directory=? AND person_id=?",
                        (on.isoformat(), directory, person_id))

    def pending_disables(self) -> list[tuple[str, str, str]]:
        """(directory, person_id, key) of every disable written ahead and not yet seen landed or not."""
        return [(str(r[0]), str(r[1]), str(r[2])) for r in self.db.execute(
            "SELECT directory, person_id, key FROM accounts WHERE disable_pending IS NOT NULL")]

    def settle_disable(self, directory: str, person_id: str, landed: bool) -> date | None:
        """A pending disable date becomes the disable date when the disable landed; dropped when not."""
        row = self.db.execute("SELECT disable_pending FROM accounts WHERE directory=? AND person_id=?",
                              (directory, person_id)).fetchone()
        if row is None or row[0] is None:
            return None
        on = date.fromisoformat(str(row[0]))
        if landed:
            self.mark_disabled(directory, person_id, on)
        else:
            self.db.execute("UPDATE accounts SET disable_pending=NULL WHERE directory=? AND person_id=?",
                            (directory, person_id))
        return on if landed else None

    def forget_account(self, directory: str, person_id: str) -> None:
        self.db.execute("DELETE FROM accounts WHERE directory=? AND person_id=?", (directory, person_id))

    def disabled_on(self) -> dict[tuple[str, str], date]:
        """(directory, person_id) -> the day the tool disabled that account."""
        return {
            (str(r["directory"]), str(r["person_id"])): date.fromisoformat(r["disabled_on"])
            for r in self.db.execute("SELECT * FROM accounts WHERE disabled_on IS NOT NULL")
        }

    def known_person_ids(self) -> set[str]:
        """Every person id the tool has issued a name to or linked an account with."""
        rows = self.db.execute("SELECT person_id FROM usernames UNION SELECT person_id FROM accounts")
        return {str(r[0]) for r in rows}
