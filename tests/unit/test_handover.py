"""The store's writer thread: posted outcomes share commits, a call is on disk before its worker goes on,
and a failed commit loses only what it had not yet committed.

Real SQLite in a file, read back through a second connection (which sees committed rows only)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from idlifecycle.handover import GROUP, WINDOW, Writer, beside_the_store
from idlifecycle.store import Store


class Counted(Store):
    """The real store, counting the writer's transactions as they commit."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.commits = 0
        self.db.execute("CREATE TABLE IF NOT EXISTS heard (n INTEGER)")

    @contextmanager
    def count_commits(self) -> Iterator[None]:
        with self.transaction():
            yield
        self.commits += 1

    def hear(self, n: int) -> None:
        self.db.execute("INSERT INTO heard VALUES (?)", (n,))


def _committed(path: Path) -> list[int]:
    other = sqlite3.connect(path)
    try:
        return [n for (n,) in other.execute("SELECT n FROM heard ORDER BY rowid")]
    finally:
        other.close()


def _serve(store: Counted, work: dict[str, Callable[[Writer], None]]) -> Writer:
    writer = Writer(store.count_commits)
    beside_the_store(store, writer, {key: (lambda piece=piece: piece(writer)) for key, piece in work.items()}, "t")
    return writer


def test_outcomes_posted_one_by_one_share_commits_instead_of_one_each(tmp_path: Path) -> None:
    store = Counted(tmp_path / "state.db")

    def trickle(writer: Writer) -> None:
        for n in range(200):  # 200 outcomes over about 0.4 s: a directory's answers coming in
            writer.post(store.hear, n)
            time.sleep(0.002)

    _serve(store, {"entra": trickle})
    assert _committed(tmp_path / "state.db") == list(range(200))
    # Without the open transaction each outcome would be its own commit (about 200).
    assert store.commits <= 2 + (0.4 * 3) / WINDOW, store.commits


def test_a_call_is_committed_before_its_worker_goes_on_with_the_outcomes_before_it(tmp_path: Path) -> None:
    store = Counted(tmp_path / "state.db")
    seen: list[list[int]] = []

    def worker(writer: Writer) -> None:
        writer.post(store.hear, 1)
        writer.post(store.hear, 2)
        writer.call(store.hear, 3)  # a write-ahead row: on disk before the send
        seen.append(_committed(tmp_path / "state.db"))

    _serve(store, {"entra": worker})
    assert seen == [[1, 2, 3]]


def test_an_outcome_posted_while_the_worker_waits_on_the_network_is_committed_within_the_window(
        tmp_path: Path) -> None:
    store = Counted(tmp_path / "state.db")
    on_disk: list[list[int]] = []
    done = threading.Event()

    def worker(writer: Writer) -> None:
        writer.post(store.hear, 7)
        time.sleep(WINDOW * 3)  # a slow answer: the outcome heard before it must not wait for it
        on_disk.append(_committed(tmp_path / "state.db"))
        done.set()

    _serve(store, {"entra": worker})
    assert done.is_set() and on_disk == [[7]]


def test_a_transaction_takes_at_most_a_group_of_pieces(tmp_path: Path) -> None:
    store = Counted(tmp_path / "state.db")

    def burst(writer: Writer) -> None:
        for n in range(GROUP * 3):
            writer.post(store.hear, n)

    _serve(store, {"entra": burst})
    assert _committed(tmp_path / "state.db") == list(range(GROUP * 3))
    assert store.commits >= 3


def test_a_failing_piece_rolls_back_only_its_own_transaction_and_stops_the_workers(tmp_path: Path) -> None:
    store = Counted(tmp_path / "state.db")
    stopped: list[str] = []

    def broken() -> None:
        raise sqlite3.OperationalError("disk I/O error")

    def worker(writer: Writer) -> None:
        writer.call(store.hear, 1)  # committed
        writer.post(store.hear, 2)  # same transaction as the failure: rolled back
        writer.post(broken)
        try:
            time.sleep(WINDOW * 2)
            writer.call(store.hear, 3)
        except Exception as error:  # Stopped: nothing more may be sent
            stopped.append(type(error).__name__)

    with pytest.raises(sqlite3.OperationalError):
        _serve(store, {"entra": worker})
    assert _committed(tmp_path / "state.db") == [1]
    assert stopped == ["Stopped"]


def test_two_workers_pieces_keep_each_workers_order_in_shared_transactions(tmp_path: Path) -> None:
    store = Counted(tmp_path / "state.db")

    def directory(base: int) -> Callable[[Writer], None]:
        def work(writer: Writer) -> None:
            for n in range(300):
                (writer.call if n % 50 == 0 else writer.post)(store.hear, base + n)
                if n % 7 == 0:
                    time.sleep(0.001)
        return work

    _serve(store, {"entra": directory(0), "google": directory(1000)})
    rows = _committed(tmp_path / "state.db")
    assert [n for n in rows if n < 1000] == list(range(300))
    assert [n for n in rows if n >= 1000] == list(range(1000, 1300))
    assert store.commits < 600 / 2, store.commits
