"""The state store: the audit log notices any edited or deleted row; usernames are remembered forever."""

import sqlite3

from idlifecycle.store import Store


def _store_with_entries(tmp_path, n=5):
    store = Store(tmp_path / "state.db")
    for i in range(n):
        store.audit("change-applied", {"n": i, "username": f"user{i}"})
    return store


def test_an_untouched_audit_log_verifies(tmp_path):
    assert _store_with_entries(tmp_path).verify_audit() == []


def test_an_edited_audit_row_is_detected(tmp_path):
    store = _store_with_entries(tmp_path)
    raw = sqlite3.connect(tmp_path / "state.db")
    raw.execute("UPDATE audit SET data = '{\"n\": 2, \"username\": \"someone-else\"}' WHERE seq = 3")
    raw.commit()
    assert store.verify_audit() == ["audit row 3: its content was changed after it was written"]


def test_a_deleted_audit_row_in_the_middle_is_detected(tmp_path):
    store = _store_with_entries(tmp_path)
    raw = sqlite3.connect(tmp_path / "state.db")
    raw.execute("DELETE FROM audit WHERE seq = 2")
    raw.commit()
    assert store.verify_audit() == ["audit row 2 is missing (deleted)",
                                    "audit row 3: does not follow the row before it (a row was removed or edited)"]


def test_deleting_the_newest_audit_rows_is_detected(tmp_path):
    store = _store_with_entries(tmp_path)
    raw = sqlite3.connect(tmp_path / "state.db")
    raw.execute("DELETE FROM audit WHERE seq >= 4")
    raw.commit()
    assert store.verify_audit() == ["audit rows 4–5 at the end are missing (deleted)"]


def test_a_username_once_issued_stays_reserved_to_that_person(tmp_path):
    store = Store(tmp_path / "state.db")
    store.record_username("jsmith", "T01")
    store.record_username("JSmith", "T99")
    assert store.issued_usernames() == {"jsmith": "T01"}
