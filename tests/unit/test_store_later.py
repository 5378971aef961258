"""Journal rows and audit entries written in a transaction go in as a few many-row statements at its commit
(`StoreBase.later`): fewer SQLite calls on the store's thread, the same rows, order and atomicity.

Real SQLite in a file; what is committed is read back through a second connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from idlifecycle.store import Store

KEY = b"k" * 32


def _committed(path: Path, sql: str) -> list[tuple[object, ...]]:
    other = sqlite3.connect(path)
    try:
        return list(other.execute(sql))
    finally:
        other.close()


def _inserts(store: Store) -> list[str]:
    seen: list[str] = []
    store.db.set_trace_callback(lambda sql: seen.append(sql) if sql.startswith("INSERT") else None)
    return seen


def test_a_group_of_entries_is_a_few_statements_and_commits_whole(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db", audit_key=KEY)
    seen = _inserts(store)
    with store.transaction():
        for n in range(250):
            store.journal("plan", f"c{n}", "entra", "create", f"p{n}", f"user{n}", "started", sent={"n": n})
            store.audit("change-started", {"n": n})
        # Nothing is on disk before the commit, but this connection's own readers see every row.
        assert _committed(tmp_path / "state.db", "SELECT COUNT(*) FROM journal") == [(0,)]
        assert len(store.journal_states("plan")) == 250
        assert store.audit_head()[0] == 250
        for n in range(250):
            store.journal("plan", f"c{n}", "entra", "create", f"p{n}", f"user{n}", "applied", key=f"k{n}")
            store.audit("change-applied", {"n": n})
    # 500 journal rows and 500 entries in 13 statements, not 1,000: 100 rows a statement, a statement more each
    # time a reader asked (the first entry reads the chain's head, so the one journal row before it goes in).
    assert len(seen) == 13, [s[:40] for s in seen]
    rows = _committed(tmp_path / "state.db", "SELECT state, key, change FROM journal ORDER BY rowid")
    assert len(rows) == 250
    # The outcome upserted over its `started` row in the order given; the change as sent kept from it.
    assert rows[7] == ("applied", "k7", '{"n": 7}')
    assert store.verify_audit() == []
    assert [e.event for e in store.audit_entries()][249:251] == ["change-started", "change-applied"]


def test_a_rolled_back_transaction_leaves_none_of_its_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db", audit_key=KEY)
    store.audit("before", {})
    with pytest.raises(RuntimeError), store.transaction():
        store.journal("plan", "c1", "entra", "create", "p1", "user1", "started")
        store.audit("change-started", {"n": 1})
        raise RuntimeError("the store failed")
    store.audit("after", {})  # chained on "before": the rolled-back entry never existed
    assert [e.event for e in store.audit_entries()] == ["before", "after"]
    assert store.journal_states("plan") == {}
    assert store.verify_audit() == []


def test_outside_a_transaction_a_row_is_written_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.journal("plan", "c1", "entra", "create", "p1", "user1", "started")
    assert _committed(tmp_path / "state.db", "SELECT change_id, state FROM journal") == [("c1", "started")]
