"""The state store (SQLite): usernames ever issued, accounts, runs, the change journal, the audit log.

Feature modules (passwords, access) keep their own tables in the same file through
`Store.ensure_schema`, so one backup holds everything the SIRO may ask about.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from idlifecycle.errors import UserError
from idlifecycle.handover import Handover

T = TypeVar("T")
P = ParamSpec("P")

SCHEMA = """
CREATE TABLE IF NOT EXISTS cursors (
    directory TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (directory, name)
);
CREATE TABLE IF NOT EXISTS usernames (
    username TEXT PRIMARY KEY COLLATE NOCASE,
    person_id TEXT NOT NULL,
    issued_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usernames_person ON usernames (person_id);
CREATE TABLE IF NOT EXISTS accounts (
    directory TEXT NOT NULL, person_id TEXT NOT NULL,
    key TEXT NOT NULL, username TEXT NOT NULL,
    disabled_on TEXT,
    PRIMARY KEY (directory, person_id)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
    status TEXT NOT NULL, people_count INTEGER, summary TEXT
);
CREATE TABLE IF NOT EXISTS journal (
    change_id TEXT NOT NULL, plan_id TEXT NOT NULL,
    directory TEXT NOT NULL, action TEXT NOT NULL, person_id TEXT, username TEXT,
    state TEXT NOT NULL, detail TEXT, key TEXT, at TEXT NOT NULL,
    PRIMARY KEY (plan_id, change_id)
);
CREATE TABLE IF NOT EXISTS feed_profiles (
    job TEXT PRIMARY KEY, run_id INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS passwords_owed (
    person_id TEXT NOT NULL, directory TEXT NOT NULL, username TEXT NOT NULL,
    reason TEXT NOT NULL, since TEXT NOT NULL,
    PRIMARY KEY (person_id, directory)
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL, event TEXT NOT NULL, actor TEXT NOT NULL, data TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

GENESIS = "0" * 64


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    event: str
    actor: str
    data: dict[str, Any]


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


@dataclass(frozen=True)
class OwedPassword:
    """Someone whose new password was set (or may have been) but never delivered to them."""

    person_id: str
    directory: str
    username: str
    reason: str
    since: str


class StorageError(UserError):
    """The state database cannot be written (disk full, read-only file or folder): one line, exit 1."""


_FULL = ("database or disk is full", "disk i/o error")
_READ_ONLY = ("readonly database", "read-only", "unable to open database file", "attempt to write")


def storage_problem(path: Path, error: BaseException) -> StorageError | None:
    """What to tell the school when the state database (or its folder) cannot be written; None if not that."""
    text = str(error).lower()
    number = getattr(error, "errno", None)
    if number == errno.ENOSPC or any(word in text for word in _FULL):
        what = "the disk is full"
        fix = "free some space on it"
    elif number in (errno.EROFS, errno.EACCES, errno.EPERM) or any(word in text for word in _READ_ONLY):
        what = "it is read-only"
        fix = "make the file and its folder writable by this user"
    else:
        return None
    return StorageError(f"cannot write the state database {path}: {what}; {fix}, then rerun "
                        f"(what was done is kept; the next run carries on from the directories as they are)")


class _Connection(sqlite3.Connection):
    """Turns a disk-full or read-only failure into StorageError naming the file (the CLI prints one line)."""

    store_path: Path = Path()

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.OperationalError as error:
            raise storage_problem(self.store_path, error) or error from None

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(sql_script)
        except sqlite3.OperationalError as error:
            raise storage_problem(self.store_path, error) or error from None


class Store:
    """One SQLite file. Not shared between threads: open one per thread.

    With `audit_key` (the secret `audit_key`, never stored here) each audit entry is chained to the one
    before by HMAC-SHA256, so nobody without the key can edit, forge or re-chain an entry unnoticed.
    Without it the store reads, and keeps writing an old unkeyed chain, but will not append to a keyed one.
    """

    def __init__(self, path: Path | str, audit_key: bytes | None = None) -> None:
        self.path = Path(path)
        self.audit_key = audit_key
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, factory=_Connection)
        except (OSError, sqlite3.OperationalError) as error:
            raise storage_problem(self.path, error) or error from None
        assert isinstance(db, _Connection)
        db.store_path = self.path
        self.db: sqlite3.Connection = db
        self._thread = threading.get_ident()
        self.handover: Handover | None = None
        """Set while directories are applied on threads of their own: how a connector's cursor read or
        write made on such a thread reaches this connection's thread (`idlifecycle.handover`)."""
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: a journal row written just before a kill -9 must still be there afterwards.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        # The run's date (its --today, or the clock), for the guard against a clock that went backwards
        # or jumped; added to stores made before it was recorded.
        if "day" not in self._columns("runs"):
            self.db.execute("ALTER TABLE runs ADD COLUMN day TEXT")
        # The change as sent, so the next run can tell from the directory whether a change an interrupted
        # run had started landed; and a leaver's disable date written before the disable is sent.
        if "change" not in self._columns("journal"):
            self.db.execute("ALTER TABLE journal ADD COLUMN change TEXT")
        if "disable_pending" not in self._columns("accounts"):
            self.db.execute("ALTER TABLE accounts ADD COLUMN disable_pending TEXT")
        # 1 for an entry chained with the audit key; stores made before the key have 0 throughout.
        if "keyed" not in self._columns("audit"):
            self.db.execute("ALTER TABLE audit ADD COLUMN keyed INTEGER NOT NULL DEFAULT 0")
        # Made once, with the database: a checkpoint names it, so a different file in its place is noticed.
        self.db.execute("INSERT INTO meta VALUES ('database_id', ?) ON CONFLICT DO NOTHING",
                        (secrets.token_hex(16),))

    def _columns(self, table: str) -> set[str]:
        return {str(r["name"]) for r in self.db.execute(f"PRAGMA table_info({table})")}

    def close(self) -> None:
        self.db.close()

    def ensure_schema(self, ddl: str) -> None:
        self.db.executescript(ddl)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write. Inside another transaction it is part of that one (they commit together)."""
        if self.db.in_transaction:
            yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # cursors (connectors' incremental-read state)
    def on_own_thread(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Runs `work` (which uses this connection) on the connection's own thread: here, or handed over
        to it while the directories are applied side by side (`handover`)."""
        if self.handover is not None and threading.get_ident() != self._thread:
            return self.handover.call(work, *args, **kwargs)
        return work(*args, **kwargs)

    def on_own_thread_later(self, work: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
        """`on_own_thread` without waiting for it: handed over pieces run in order, so what the same
        thread hands over later (a write-ahead it waits for) commits after it."""
        if self.handover is not None and threading.get_ident() != self._thread:
            self.handover.post(work, *args, **kwargs)
        else:
            work(*args, **kwargs)

    def get_cursor(self, directory: str, name: str) -> str | None:
        if self.handover is not None and threading.get_ident() != self._thread:
            return self.on_own_thread(self.get_cursor, directory, name)
        row = self.db.execute(
            "SELECT value FROM cursors WHERE directory=? AND name=?", (directory, name)
        ).fetchone()
        return None if row is None else str(row[0])

    def set_cursor(self, directory: str, name: str, value: str | None) -> None:
        if self.handover is not None and threading.get_ident() != self._thread:
            self.on_own_thread(self.set_cursor, directory, name, value)
            return
        if value is None:
            self.db.execute("DELETE FROM cursors WHERE directory=? AND name=?", (directory, name))
        else:
            self.db.execute(
                "INSERT INTO cursors VALUES (?,?,?) ON CONFLICT DO UPDATE SET value=excluded.value",
                (directory, name, value),
            )

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

    # runs
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

    def known_person_ids(self) -> set[str]:
        """Every person id the tool has issued a name to or linked an account with."""
        rows = self.db.execute("SELECT person_id FROM usernames UNION SELECT person_id FROM accounts")
        return {str(r[0]) for r in rows}

    # journal: exactly-once application across crashes
    def journal_states(self, plan_id: str) -> dict[str, JournalEntry]:
        return {
            str(r["change_id"]): JournalEntry(str(r["change_id"]), str(r["state"]), r["detail"] or "", r["key"])
            for r in self.db.execute("SELECT * FROM journal WHERE plan_id=?", (plan_id,))
        }

    def journal(self, plan_id: str, change_id: str, directory: str, action: str, person_id: str | None,
                username: str, state: str, detail: str = "", key: str | None = None,
                sent: Mapping[str, Any] | None = None) -> None:
        """Records a change's state; `sent` (the change as sent, no password) is kept from its `started` row."""
        self.db.execute(
            "INSERT INTO journal (change_id, plan_id, directory, action, person_id, username, state, detail, key, "
            "at, change) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET "
            "state=excluded.state, detail=excluded.detail, key=excluded.key, at=excluded.at, "
            "change=COALESCE(excluded.change, change)",
            (change_id, plan_id, directory, action, person_id, username, state, detail, key, utcnow().isoformat(),
             None if sent is None else json.dumps(sent, sort_keys=True, default=str)),
        )

    def started_changes(self) -> list[StartedChange]:
        """Every change still `started` in any journal, oldest first.

        Read holding the job lock, when no work that could own them is alive: each was sent, or about
        to be, by a run or apply that was killed before it recorded the outcome.
        """
        return [StartedChange(str(r["plan_id"]), str(r["change_id"]), dict(json.loads(r["change"])))
                for r in self.db.execute("SELECT plan_id, change_id, change FROM journal "
                                         "WHERE state='started' AND change IS NOT NULL ORDER BY at, rowid")]

    # passwords owed: set (or maybe set) in a directory and not yet delivered; never the password itself
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
        row = self.db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))

    def audit_mac(self, seq: int) -> str | None:
        row = self.db.execute("SELECT hash FROM audit WHERE seq=?", (seq,)).fetchone()
        return None if row is None else str(row[0])

    def is_empty(self) -> bool:
        """Nothing was ever recorded here: no run, no audit entry, no username."""
        row = self.db.execute("SELECT (SELECT COUNT(*) FROM runs) + (SELECT COUNT(*) FROM audit) "
                              "+ (SELECT COUNT(*) FROM usernames)").fetchone()
        return int(row[0]) == 0

    def key_the_chain(self) -> None:
        """The one-time upgrade of a store made before the audit key: the first keyed entry says so and
        follows the unkeyed chain's head, so the old entries stay verifiable and cannot be re-chained."""
        if self.audit_key is None:
            return
        row = self.db.execute("SELECT seq, hash, keyed FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if row is not None and not row["keyed"]:
            self.audit("audit-chain-keyed", {"unkeyed_entries": int(row["seq"]), "unkeyed_head": str(row["hash"])})

    # audit: append-only, each row chained to the one before by a keyed MAC (or, before the key, a hash)
    def audit(self, event: str, data: Mapping[str, Any], actor: str = "idlifecycle") -> None:
        """Appends one entry; inside a transaction it commits with what it describes, or not at all."""
        with self.transaction() as db:
            row = db.execute("SELECT seq, hash, keyed FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            if row is not None and row["keyed"] and self.audit_key is None:
                raise UserError(f"{self.path}: its audit log is keyed; open it with the secret 'audit_key'")
            prev = GENESIS if row is None else str(row["hash"])
            last = db.execute("SELECT seq FROM sqlite_sequence WHERE name='audit'").fetchone()
            # Numbers are never reused, even after rows at the end were deleted: the MAC covers the number.
            seq = max(0 if row is None else int(row["seq"]), 0 if last is None else int(last[0])) + 1
            at = utcnow().isoformat()
            body = json.dumps(data, sort_keys=True, default=str)
            if self.audit_key is None:
                digest = _chain_hash(prev, at, event, actor, body)
            else:
                digest = chain_mac(self.audit_key, prev, seq, at, event, actor, body)
            db.execute(
                "INSERT INTO audit (seq, at, event, actor, data, prev_hash, hash, keyed) VALUES (?,?,?,?,?,?,?,?)",
                (seq, at, event, actor, body, prev, digest, int(self.audit_key is not None)),
            )

    def audit_entries(self, since: str | None = None) -> list[AuditEntry]:
        rows = self.db.execute("SELECT * FROM audit WHERE at >= ? ORDER BY seq", (since or "",))
        return [AuditEntry(int(r["seq"]), str(r["at"]), str(r["event"]), str(r["actor"]), json.loads(r["data"]))
                for r in rows]

    def verify_audit(self) -> list[str]:
        """Problems found in the chain: an edited, inserted, forged or deleted row breaks it.

        With the audit key every entry after the unkeyed ones of a store made before the key must carry
        a valid MAC; without it a keyed entry cannot be checked, and says so.
        """
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

    # the SIRO's access-review decisions, one standing decision per share, directory and person, which the
    # nightly plan honours until a later review replaces it
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


def chain_mac(key: bytes, prev: str, seq: int, at: str, event: str, actor: str, body: str) -> str:
    """HMAC-SHA256 over the previous entry's MAC and this entry's number and fields."""
    message = "\x1f".join((prev, str(seq), at, event, actor, body)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _chain_hash(prev: str, at: str, event: str, actor: str, body: str) -> str:
    return hashlib.sha256("\x1f".join((prev, at, event, actor, body)).encode()).hexdigest()
