"""The audit log, append-only, each entry chained to the one before by a keyed MAC; and the store's
identity and counters, which the checkpoint kept outside the file records (checkpoint.py)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from idlifecycle.errors import UserError
from idlifecycle.store.base import StoreBase, utcnow

GENESIS = "0" * 64
_BODY = json.JSONEncoder(sort_keys=True, default=str).encode
"""An entry's data as it is chained and kept; one encoder for every entry (a night writes hundreds of thousands)."""


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    event: str
    actor: str
    data: dict[str, Any]


class Audit(StoreBase):
    """The audit chain and what a checkpoint records of the store."""

    # identity and counters, for the checkpoint kept outside this file (checkpoint.py)
    @property
    def database_id(self) -> str:
        row = self.db.execute("SELECT value FROM meta WHERE name='database_id'").fetchone()
        return str(row[0])

    def run_counter(self) -> int:
        """The highest run number this database has given out (0 before the first run)."""
        row = self.db.execute("SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name='runs'), 0), "
                              "COALESCE((SELECT MAX(run_id) FROM runs), 0))").fetchone()
        return int(row[0])

    def audit_head(self) -> tuple[int, str]:
        """(sequence number, MAC) of the newest audit entry; (0, GENESIS) when there is none."""
        self.write_later_rows()
        row = self.db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))

    def audit_mac(self, seq: int) -> str | None:
        self.write_later_rows()
        row = self.db.execute("SELECT hash FROM audit WHERE seq=?", (seq,)).fetchone()
        return None if row is None else str(row[0])

    def is_empty(self) -> bool:
        """Nothing was ever recorded here: no run, no audit entry, no username."""
        self.write_later_rows()
        row = self.db.execute("SELECT (SELECT COUNT(*) FROM runs) + (SELECT COUNT(*) FROM audit) "
                              "+ (SELECT COUNT(*) FROM usernames)").fetchone()
        return int(row[0]) == 0

    def key_the_chain(self) -> None:
        """The one-time upgrade of a store made before the audit key: the first keyed entry says so and
        follows the unkeyed chain's head, so the old entries stay verifiable and cannot be re-chained."""
        if self.audit_key is None:
            return
        self.write_later_rows()
        row = self.db.execute("SELECT seq, hash, keyed FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if row is not None and not row["keyed"]:
            self.audit("audit-chain-keyed", {"unkeyed_entries": int(row["seq"]), "unkeyed_head": str(row["hash"])})

    # audit: append-only, each row chained to the one before by a keyed MAC (or, before the key, a hash)
    def audit(self, event: str, data: Mapping[str, Any], actor: str = "idlifecycle") -> None:
        """Appends one entry; inside a transaction it commits with what it describes, or not at all."""
        with self.transaction() as db:
            head = self.newest_audit
            if head is not None and head[0] == self.transactions:
                # This transaction wrote the newest entry, and no other writer can come between (IMMEDIATE):
                # a night's many entries in one group commit skip the two reads below.
                seq, prev = head[1] + 1, head[2]
            else:
                self.write_later_rows()
                row = db.execute("SELECT seq, hash, keyed FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                if row is not None and row["keyed"] and self.audit_key is None:
                    raise UserError(f"{self.path}: its audit log is keyed; open it with the secret 'audit_key'")
                prev = GENESIS if row is None else str(row["hash"])
                last = db.execute("SELECT seq FROM sqlite_sequence WHERE name='audit'").fetchone()
                # Numbers are never reused, even after rows at the end were deleted: the MAC covers the number.
                seq = max(0 if row is None else int(row["seq"]), 0 if last is None else int(last[0])) + 1
            at = utcnow().isoformat()
            body = _BODY(data)
            if self.audit_key is None:
                digest = _chain_hash(prev, at, event, actor, body)
            else:
                digest = chain_mac(self.audit_key, prev, seq, at, event, actor, body)
            self.later("INSERT INTO audit (seq, at, event, actor, data, prev_hash, hash, keyed)", "",
                       (seq, at, event, actor, body, prev, digest, int(self.audit_key is not None)))
            self.newest_audit = (self.transactions, seq, digest)

    def audit_entries(self, since: str | None = None) -> list[AuditEntry]:
        self.write_later_rows()
        rows = self.db.execute("SELECT * FROM audit WHERE at >= ? ORDER BY seq", (since or "",))
        return [AuditEntry(int(r["seq"]), str(r["at"]), str(r["event"]), str(r["actor"]), json.loads(r["data"]))
                for r in rows]

    def verify_audit(self) -> list[str]:
        """Problems found in the chain: an edited, inserted, forged or deleted row breaks it.

        With the audit key every entry after the unkeyed ones of a store made before the key must carry
        a valid MAC; without it a keyed entry cannot be checked, and says so.
        """
        self.write_later_rows()
        problems: list[str] = []
        prev = GENESIS
        expected_seq = None
        keyed_seen = False
        for r in self.db.execute("SELECT * FROM audit ORDER BY seq"):
            seq = int(r["seq"])
            if expected_seq is not None and seq != expected_seq:
                problems.append(f"audit row {expected_seq}" + (f"–{seq - 1}" if seq - 1 > expected_seq else "")
                                + " is missing (deleted)")
            if r["prev_hash"] != prev:
                problems.append(f"audit row {seq}: does not follow the row before it (a row was removed or edited)")
            fields = (str(r["prev_hash"]), str(r["at"]), str(r["event"]), str(r["actor"]), str(r["data"]))
            if r["keyed"]:
                keyed_seen = True
                if self.audit_key is None:
                    problems.append(f"audit row {seq}: is keyed; verify it with the secret 'audit_key'")
                elif not hmac.compare_digest(chain_mac(self.audit_key, fields[0], seq, *fields[1:]),
                                             str(r["hash"])):
                    problems.append(f"audit row {seq}: its MAC does not match (changed, or written without "
                                    f"the audit key)")
            elif keyed_seen:
                problems.append(f"audit row {seq}: is not keyed, after keyed rows (written without the audit key)")
            elif _chain_hash(*fields) != r["hash"]:
                problems.append(f"audit row {seq}: its content was changed after it was written")
            prev = str(r["hash"])
            expected_seq = seq + 1
        last = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name='audit'").fetchone()
        if last is not None and expected_seq is not None and int(last[0]) >= expected_seq:
            problems.append(f"audit rows {expected_seq}–{int(last[0])} at the end are missing (deleted)")
        elif last is not None and expected_seq is None and int(last[0]) > 0:
            problems.append("every audit row was deleted")
        return problems


def chain_mac(key: bytes, prev: str, seq: int, at: str, event: str, actor: str, body: str) -> str:
    """HMAC-SHA256 over the previous entry's MAC and this entry's number and fields."""
    message = "\x1f".join((prev, str(seq), at, event, actor, body)).encode()
    mac = _keyed(key).copy()  # the key's padding is hashed once per key, not once per entry
    mac.update(message)
    return mac.hexdigest()


@functools.lru_cache(maxsize=4)
def _keyed(key: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 with `key` and nothing yet hashed, to be copied for each message."""
    return hmac.new(key, digestmod=hashlib.sha256)


def _chain_hash(prev: str, at: str, event: str, actor: str, body: str) -> str:
    return hashlib.sha256("\x1f".join((prev, at, event, actor, body)).encode()).hexdigest()
