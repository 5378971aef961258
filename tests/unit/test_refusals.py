"""Capped refusal audit (`access.refusals`) on a real store: a flood of refusals is a handful of rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from idlifecycle.access.refusals import CappedRefusals
from idlifecycle.store import Store

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def rows(store: Store) -> list[tuple[str, dict[str, object]]]:
    return [(e.event, e.data) for e in store.audit_entries()]


def test_the_first_of_a_kind_in_full_the_rest_of_its_window_as_one_counted_row(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    capped = CappedRefusals("sign-in-answer-refused", "sign-in-answers-refused", window_seconds=60, max_clients=2)
    written = [capped.record(store, "id token: InvalidSignatureError", f"10.0.0.{n}", {"n": n},
                             T0 + timedelta(seconds=n)) for n in range(5)]
    assert written == [True, False, False, False, False]
    assert rows(store) == [("sign-in-answer-refused",
                            {"reason": "id token: InvalidSignatureError", "n": 0, "client": "10.0.0.0"})]
    capped.flush(store, T0 + timedelta(seconds=59))  # the window has not passed: nothing more yet
    assert len(rows(store)) == 1
    capped.flush(store, T0 + timedelta(seconds=60))
    event, data = rows(store)[1]
    assert event == "sign-in-answers-refused" and data["count"] == 4
    assert data["clients"] == ["10.0.0.1", "10.0.0.2"]  # capped at max_clients
    assert data["first"] == T0.isoformat() and data["last"] == (T0 + timedelta(seconds=4)).isoformat()


def test_each_kind_has_its_own_window_and_a_new_window_is_written_in_full(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    capped = CappedRefusals("refused", "refused-counted", window_seconds=60, max_clients=20)
    assert capped.record(store, "state-mismatch", "a", {}, T0)
    assert capped.record(store, "id token: nonce", "a", {}, T0)  # another kind: in full too
    assert not capped.record(store, "state-mismatch", "b", {}, T0 + timedelta(seconds=30))
    # A refusal after the window: the last window's count is written first, then this one in full.
    assert capped.record(store, "state-mismatch", "c", {}, T0 + timedelta(seconds=90))
    assert [(e, d.get("reason"), d.get("count")) for e, d in rows(store)] == [
        ("refused", "state-mismatch", None), ("refused", "id token: nonce", None),
        ("refused-counted", "state-mismatch", 1), ("refused", "state-mismatch", None)]


def test_a_window_with_only_its_first_refusal_writes_no_count_and_stopping_writes_what_is_pending(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    capped = CappedRefusals("refused", "refused-counted", window_seconds=60, max_clients=20)
    capped.record(store, "a", "x", {}, T0)
    capped.flush(store, T0 + timedelta(hours=1))
    assert [e for e, _ in rows(store)] == ["refused"]
    capped.record(store, "b", "x", {}, T0 + timedelta(hours=2))
    capped.record(store, "b", "y", {}, T0 + timedelta(hours=2, seconds=1))
    capped.flush(store)  # the app stopping: everything pending, whatever the time
    assert rows(store)[-1] == ("refused-counted", {"reason": "b", "count": 1, "first": (T0 + timedelta(hours=2))
                               .isoformat(), "last": (T0 + timedelta(hours=2, seconds=1)).isoformat(),
                               "clients": ["y"]})
