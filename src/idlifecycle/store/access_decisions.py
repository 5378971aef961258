"""The SIRO's access-review decisions: one standing decision per share, directory and person, which the
nightly plan honours until a later review replaces it."""

from __future__ import annotations

from dataclasses import dataclass

from idlifecycle.store.base import StoreBase

ACCESS_DECISIONS_SCHEMA = """CREATE TABLE IF NOT EXISTS access_decisions (
    share TEXT NOT NULL, directory TEXT NOT NULL, person TEXT NOT NULL,
    person_id TEXT, member_key TEXT NOT NULL, username TEXT NOT NULL, group_name TEXT NOT NULL,
    choice TEXT NOT NULL, note TEXT NOT NULL, decided_by TEXT NOT NULL, decided_at TEXT NOT NULL,
    review TEXT NOT NULL,
    PRIMARY KEY (share, directory, person)
)"""
"""One statement, so it can run inside a caller's transaction (executescript would commit it)."""


@dataclass(frozen=True)
class AccessDecision:
    """The SIRO's standing decision about one person's membership of one share's group in one directory."""

    share: str
    directory: str
    group: str
    person_id: str | None
    """None for an account matching nobody in the feed: then the account key names the person."""
    member_key: str
    username: str
    choice: str
    """"Keep", "Remove" or "Change expiry", as marked in the workbook."""
    note: str
    decided_by: str
    decided_at: str
    """ISO date and time the decision was applied."""
    review: str
    """The workbook it came from."""

    @property
    def person(self) -> str:
        return self.person_id or f"key:{self.member_key}"

    @property
    def removes(self) -> bool:
        """A Remove, or a Change expiry (access only until the grant's new end): either way no baseline
        rule puts the person back. The workbook's words (reports.access_review.REMOVE, CHANGE_EXPIRY)."""
        return self.choice in ("Remove", "Change expiry")


class AccessDecisions(StoreBase):
    """The standing access-review decisions."""

    def record_access_decision(self, decision: AccessDecision) -> None:
        """Keeps `decision` as the standing one for its share, directory and person (a later review replaces it)."""
        self.db.execute(ACCESS_DECISIONS_SCHEMA)
        self.db.execute(
            "INSERT INTO access_decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET "
            "person_id=excluded.person_id, member_key=excluded.member_key, username=excluded.username, "
            "group_name=excluded.group_name, choice=excluded.choice, note=excluded.note, "
            "decided_by=excluded.decided_by, decided_at=excluded.decided_at, review=excluded.review",
            (decision.share, decision.directory, decision.person, decision.person_id, decision.member_key,
             decision.username, decision.group, decision.choice, decision.note, decision.decided_by,
             decision.decided_at, decision.review),
        )

    def access_decisions(self) -> list[AccessDecision]:
        """Every standing decision, by share, directory and person."""
        self.db.execute(ACCESS_DECISIONS_SCHEMA)
        return [AccessDecision(str(r["share"]), str(r["directory"]), str(r["group_name"]), r["person_id"],
                               str(r["member_key"]), str(r["username"]), str(r["choice"]), str(r["note"]),
                               str(r["decided_by"]), str(r["decided_at"]), str(r["review"]))
                for r in self.db.execute("SELECT * FROM access_decisions ORDER BY share, directory, person")]
