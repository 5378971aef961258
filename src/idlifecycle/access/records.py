"""Requests, approval links and grants, kept in the job's state store next to the audit log."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from idlifecycle.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS access_requests (
    request_id INTEGER PRIMARY KEY AUTOINCREMENT,
    share TEXT NOT NULL, person_id TEXT NOT NULL, person_name TEXT NOT NULL,
    reason TEXT NOT NULL, days INTEGER NOT NULL, requester TEXT NOT NULL,
    requested_at TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    decided_by TEXT, decided_at TEXT
);
CREATE TABLE IF NOT EXISTS approval_links (
    nonce TEXT PRIMARY KEY, request_id INTEGER NOT NULL, approver TEXT NOT NULL,
    issued_at TEXT NOT NULL, expires_at TEXT NOT NULL, used_at TEXT
);
CREATE TABLE IF NOT EXISTS access_grants (
    grant_id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id INTEGER, share TEXT NOT NULL, person_id TEXT NOT NULL, person_name TEXT NOT NULL,
    reason TEXT NOT NULL, requester TEXT NOT NULL, approver TEXT NOT NULL,
    granted_at TEXT NOT NULL, expires_at TEXT NOT NULL,
    ended_at TEXT, ended_by TEXT, end_reason TEXT
);
CREATE INDEX IF NOT EXISTS access_grants_open ON access_grants (ended_at, expires_at);
"""


@dataclass(frozen=True)
class AccessRequest:
    request_id: int
    share: str
    person_id: str
    person_name: str
    reason: str
    days: int
    requester: str
    requested_at: datetime
    status: str
    """pending, approved or denied."""
    decided_by: str | None
    decided_at: datetime | None


@dataclass(frozen=True)
class ApprovalLink:
    nonce: str
    request_id: int
    approver: str
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True)
class Grant:
    grant_id: int
    request_id: int | None
    share: str
    person_id: str
    person_name: str
    reason: str
    requester: str
    approver: str
    granted_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    ended_by: str | None
    end_reason: str | None

    def active(self, now: datetime) -> bool:
        return self.ended_at is None and self.expires_at > now


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _request(row: sqlite3.Row) -> AccessRequest:
    return AccessRequest(
        int(row["request_id"]), row["share"], row["person_id"], row["person_name"], row["reason"],
        int(row["days"]), row["requester"], datetime.fromisoformat(row["requested_at"]), row["status"],
        row["decided_by"], _when(row["decided_at"]),
    )


def _grant(row: sqlite3.Row) -> Grant:
    return Grant(
        int(row["grant_id"]), row["request_id"], row["share"], row["person_id"], row["person_name"],
        row["reason"], row["requester"], row["approver"], datetime.fromisoformat(row["granted_at"]),
        datetime.fromisoformat(row["expires_at"]), _when(row["ended_at"]), row["ended_by"], row["end_reason"],
    )


class _AlreadyDone(Exception):
    """Rolls back a decision that lost a race with another click."""


class AccessRecords:
    """The access tables of one Store (one thread)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.ensure_schema(SCHEMA)
        self.db = store.db

    def add_request(self, share: str, person_id: str, person_name: str, reason: str, days: int,
                    requester: str, now: datetime) -> AccessRequest:
        cur = self.db.execute(
            "INSERT INTO access_requests (share, person_id, person_name, reason, days, requester, requested_at) "
            "VALUES (?,?,?,?,?,?,?)",
            (share, person_id, person_name, reason, days, requester, now.isoformat()),
        )
        request = self.request(int(cur.lastrowid or 0))
        assert request is not None
        return request

    def request(self, request_id: int) -> AccessRequest | None:
        row = self.db.execute("SELECT * FROM access_requests WHERE request_id=?", (request_id,)).fetchone()
        return None if row is None else _request(row)

    def add_link(self, nonce: str, request_id: int, approver: str, issued: datetime, expires: datetime) -> None:
        self.db.execute("INSERT INTO approval_links VALUES (?,?,?,?,?,NULL)",
                        (nonce, request_id, approver, issued.isoformat(), expires.isoformat()))

    def link(self, nonce: str) -> ApprovalLink | None:
        row = self.db.execute("SELECT * FROM approval_links WHERE nonce=?", (nonce,)).fetchone()
        if row is None:
            return None
        return ApprovalLink(row["nonce"], int(row["request_id"]), row["approver"],
                            datetime.fromisoformat(row["expires_at"]), _when(row["used_at"]))

    def use_link(self, nonce: str, request_id: int, decision: str, approver: str, now: datetime) -> bool:
        """Spend the link and decide the request in one transaction; False if either was already done."""
        try:
            with self.store.transaction() as db:
                spent = db.execute("UPDATE approval_links SET used_at=? WHERE nonce=? AND used_at IS NULL",
                                   (now.isoformat(), nonce)).rowcount
                decided = db.execute(
                    "UPDATE access_requests SET status=?, decided_by=?, decided_at=? "
                    "WHERE request_id=? AND status='pending'",
                    (decision, approver, now.isoformat(), request_id),
                ).rowcount
                if spent != 1 or decided != 1:
                    raise _AlreadyDone
        except _AlreadyDone:
            return False
        return True

    def add_grant(self, request: AccessRequest, approver: str, granted: datetime, expires: datetime) -> Grant:
        cur = self.db.execute(
            "INSERT INTO access_grants (request_id, share, person_id, person_name, reason, requester, approver, "
            "granted_at, expires_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (request.request_id, request.share, request.person_id, request.person_name, request.reason,
             request.requester, approver, granted.isoformat(), expires.isoformat()),
        )
        grant = self.grant(int(cur.lastrowid or 0))
        assert grant is not None
        return grant

    def grant(self, grant_id: int) -> Grant | None:
        row = self.db.execute("SELECT * FROM access_grants WHERE grant_id=?", (grant_id,)).fetchone()
        return None if row is None else _grant(row)

    def open_grants(self) -> list[Grant]:
        """Grants not yet ended (including ones past their expiry that the nightly run has not ended)."""
        return [_grant(r) for r in self.db.execute(
            "SELECT * FROM access_grants WHERE ended_at IS NULL ORDER BY grant_id")]

    def change_expiry(self, grant_id: int, expires: datetime) -> bool:
        """The SIRO's Change expiry at an access review; False when the grant has ended meanwhile."""
        return self.db.execute("UPDATE access_grants SET expires_at=? WHERE grant_id=? AND ended_at IS NULL",
                               (expires.isoformat(), grant_id)).rowcount == 1

    def end_grant(self, grant_id: int, by: str, reason: str, now: datetime) -> bool:
        return self.db.execute(
            "UPDATE access_grants SET ended_at=?, ended_by=?, end_reason=? WHERE grant_id=? AND ended_at IS NULL",
            (now.isoformat(), by, reason, grant_id),
        ).rowcount == 1


def utcnow() -> datetime:
    return datetime.now(UTC)
