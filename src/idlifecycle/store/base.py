"""The store's connection: opening the file (with its migrations), transactions, the owning thread, and
the one-line error for a database that cannot be written."""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from idlifecycle.errors import UserError
from idlifecycle.handover import Handover
from idlifecycle.store.schema import migrate

T = TypeVar("T")
P = ParamSpec("P")


def utcnow() -> datetime:
    return datetime.now(UTC)


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


_ROWS_PER_STATEMENT = 100
"""Rows a deferred insert writes per statement (`StoreBase.later`): at most 100 x 11 parameters, well inside
SQLite's limit, and few distinct statement texts for its statement cache."""


class StoreBase:
    """The connection every part of `Store` works through; the parts are mixins of this (store/__init__)."""

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
        self.transactions = 0
        """Outer transactions begun on this connection: what a value read inside one is valid for."""
        self.newest_audit: tuple[int, int, str] | None = None
        """(transaction, seq, MAC) of the newest audit entry as this transaction wrote it (store/audit.py)."""
        self._later: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        """Rows waiting to be inserted before this transaction commits (`later`), by statement."""
        self.handover: Handover | None = None
        """Set while directories are applied on threads of their own: how a connector's cursor read or
        write made on such a thread reaches this connection's thread (`idlifecycle.handover`)."""
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: a journal row written just before a kill -9 must still be there afterwards.
        self.db.execute("PRAGMA synchronous=FULL")
        migrate(self.db)

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
        self.transactions += 1
        try:
            yield self.db
            self.write_later_rows()
        except BaseException:
            self._later.clear()
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def later(self, head: str, tail: str, row: tuple[Any, ...]) -> None:
        """Inserts `row` (`head` VALUES (row) `tail`) when this transaction commits, or now outside one.

        A night's group commit writes hundreds of journal rows and audit entries at once: many rows to one
        statement instead of one each, because each SQLite call lets another thread take the GIL, and the
        store's thread, which every directory's worker waits on, then waits for it back (on a busy machine
        most of its time). Rows of one statement go in in the order given (a journal row's `started` and
        its outcome in one group commit upsert in turn). Whatever reads those tables calls
        `write_later_rows` first."""
        if not self.db.in_transaction:
            self.db.execute(f"{head} VALUES ({','.join('?' * len(row))}) {tail}", row)
            return
        self._later.setdefault((head, tail), []).append(row)

    def write_later_rows(self) -> None:
        """Inserts the rows `later` kept for this transaction."""
        for (head, tail), rows in self._later.items():
            one = f"({','.join('?' * len(rows[0]))})"
            for start in range(0, len(rows), _ROWS_PER_STATEMENT):
                chunk = rows[start:start + _ROWS_PER_STATEMENT]
                self.db.execute(f"{head} VALUES {','.join([one] * len(chunk))} {tail}",
                                [value for row in chunk for value in row])
        self._later.clear()

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
