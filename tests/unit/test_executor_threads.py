"""Directories on threads of their own, one thread writing the store: the write-ahead `started` rows
are committed before each send (read back through a connection of the worker's own), passwords are
issued by the workers one at a time (the history's rows handed to the store's thread), and a
connector's cursor write from its worker reaches the store."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Any

from idlifecycle.connectors.base import CursorStore
from idlifecycle.executor import Executor, run_journal_id
from idlifecycle.model import Action, Change, Outcome, Result
from idlifecycle.passwords.history import PasswordHistory
from idlifecycle.store import Store
from tests.doubles import SendOnly

DAY = date(2026, 12, 2)


class Peeking(SendOnly):
    """Looks in the state database from its own thread, through its own connection, as each change arrives."""

    def __init__(self, name: str, state_db: Path, cursors: CursorStore) -> None:
        super().__init__(name)
        self.state_db = state_db
        self.cursors = cursors
        self.seen: list[dict[str, Any]] = []

    def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
        own = sqlite3.connect(self.state_db)  # committed rows only: this is not the writer's connection
        try:
            for change in changes:
                # By person and action: a join is sent with its new key filled in, under a new change_id.
                row = own.execute("SELECT state FROM journal WHERE directory=? AND person_id=? AND action=?",
                                  (self.name, change.person_id, str(change.action))).fetchone()
                self.seen.append({"thread": threading.get_ident(), "state": row and row[0],
                                  "password": change.password})
                yield Result(change.change_id, Outcome.APPLIED,
                             key=f"k-{change.person_id}" if change.action is Action.CREATE else None)
            self.cursors.set_cursor(self.name, "mark", f"{len(changes)} sent")
        finally:
            own.close()


def _create(directory: str, person_id: str) -> Change:
    return Change(directory, Action.CREATE, person_id, f"26p{person_id}", "new pupil on roll",
                  after={"username": f"26p{person_id}", "anchor": person_id, "enabled": True})


def test_each_send_waits_for_its_started_row_to_be_committed_by_the_one_writer(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    directories = {name: Peeking(name, tmp_path / "state.db", store) for name in ("entra", "google", "ad")}
    history = PasswordHistory(store, cost=2**4)
    history.load(["001", "002"])  # as the issuer does for a plan's people: their rows are written, not waited for
    issuing: list[tuple[float, float]] = []

    def password_for(change: Change) -> str:
        began = time.perf_counter()
        password = f"Pass-{change.person_id}-4242"
        # Written from a worker thread: through the store's thread, or sqlite3 refuses the connection.
        history.record(str(change.person_id), password, keep=3)
        time.sleep(0.01)
        issuing.append((began, time.perf_counter()))
        return password

    changes = [_create(name, pid) for name in directories for pid in ("001", "002", "003")]
    joins = [Change(name, Action.ADD_MEMBER, pid, f"26p{pid}", "pupil", group="All Pupils")
             for name in directories for pid in ("001", "002")]
    results = Executor(store, directories, today=DAY, password_for=password_for).run(
        run_journal_id(1), [*changes, *joins])

    assert [r.outcome for r in results] == [Outcome.APPLIED] * len(results)
    issuing.sort()
    assert len(issuing) == 9 and all(a[1] <= b[0] for a, b in pairwise(issuing)), "issued at once"
    assert history.count("001") == 3  # once per directory here (the real issuer reuses one per person)
    for name, directory in directories.items():
        assert [s["state"] for s in directory.seen] == ["started"] * 5, name
        assert {s["thread"] for s in directory.seen} != {threading.get_ident()}, "applied on the store's thread"
        assert [s["password"] for s in directory.seen[:3]] == ["Pass-001-4242", "Pass-002-4242", "Pass-003-4242"]
        assert store.get_cursor(name, "mark") == "2 sent"  # its last batch: the joins, after the creates
    assert {e.state for e in store.journal_states(run_journal_id(1)).values()} == {"applied"}
    events = [e.event for e in store.audit_entries()]
    assert events.count("change-started") == events.count("change-applied") == len(results)
    store.close()


class Timed(SendOnly):
    """Answers each change after `pause` seconds, noting when it was sent, on a clock both directories share."""

    def __init__(self, name: str, pause: float, sent: list[tuple[float, str, str]]) -> None:
        super().__init__(name)
        self.pause = pause
        self.sent = sent

    def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
        for change in changes:
            self.sent.append((time.perf_counter(), self.name, str(change.action)))
            time.sleep(self.pause)
            yield Result(change.change_id, Outcome.APPLIED,
                         key=f"k-{change.person_id}" if change.action is Action.CREATE else None)


def test_a_fresh_password_owed_after_a_kill_is_set_only_once_every_directory_has_done_its_own_changes(
        tmp_path: Path) -> None:
    """Owed passwords are added at the plan's end (`passwords.owed`) and delivered as the run ends: set
    while a slower directory was still busy, a kill before the end would leave them owed once more."""
    store = Store(tmp_path / "state.db")
    sent: list[tuple[float, str, str]] = []
    directories = {"entra": Timed("entra", 0.0, sent), "google": Timed("google", 0.02, sent)}
    owed = [Change(name, Action.SET_PASSWORD, "001", "26p001", "password never delivered: a fresh one",
                   target="k-001", after={"must_change_password": True}) for name in directories]
    plan = [*[_create("entra", pid) for pid in ("002", "003")],
            *[_create("google", pid) for pid in ("002", "003", "004", "005", "006")], *owed]
    results = Executor(store, directories, today=DAY, password_for=lambda c: "Fresh-Kettle-4242").run(
        run_journal_id(1), plan)

    assert [r.outcome for r in results] == [Outcome.APPLIED] * len(plan)
    last_create = max(at for at, _, action in sent if action == "create")
    passwords = [at for at, _, action in sent if action == "set-password"]
    assert len(passwords) == 2 and min(passwords) > last_create, "a fresh password set before the run's end"
    # And their results come last, as the plan has them.
    assert [c.change_id for c in owed] == [r.change_id for r in results[-2:]]
    store.close()


def test_an_owed_password_of_a_directory_with_nothing_else_to_do_still_waits_for_the_others(tmp_path: Path) -> None:
    """Entra done on an earlier night, Google not: the plan is Google's creates, then Entra's owed password."""
    store = Store(tmp_path / "state.db")
    sent: list[tuple[float, str, str]] = []
    directories = {"entra": Timed("entra", 0.0, sent), "google": Timed("google", 0.02, sent)}
    owed = Change("entra", Action.SET_PASSWORD, "001", "26p001", "password never delivered: a fresh one",
                  target="k-001", after={"must_change_password": True})
    plan = [*[_create("google", pid) for pid in ("002", "003", "004")], owed]
    Executor(store, directories, today=DAY, password_for=lambda c: "Fresh-Kettle-4242").run(run_journal_id(1), plan)
    last_create = max(at for at, _, action in sent if action == "create")
    assert next(at for at, _, action in sent if action == "set-password") > last_create
    store.close()


class Counting(SendOnly):
    """Notes each call's size and how many passwords had been issued when its first change went out."""

    def __init__(self, name: str, issued: list[str]) -> None:
        super().__init__(name)
        self.issued = issued
        self.calls: list[tuple[int, int]] = []

    def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
        self.calls.append((len(changes), len(self.issued)))
        for change in changes:
            if change.action is Action.CREATE:
                assert change.password == f"Pass-{change.person_id}-4242"
            yield Result(change.change_id, Outcome.APPLIED,
                         key=f"k-{change.person_id}" if change.action is Action.CREATE else None)


def test_new_accounts_go_out_in_growing_chunks_each_before_the_next_chunks_passwords_are_issued(
        tmp_path: Path) -> None:
    """One call for a whole phase would issue all its passwords before sending the first account."""
    store = Store(tmp_path / "state.db")
    issued: list[str] = []

    def password_for(change: Change) -> str:
        issued.append(str(change.person_id))
        return f"Pass-{change.person_id}-4242"

    directory = Counting("entra", issued)
    people = [f"{n:03d}" for n in range(120)]
    joins = [Change("entra", Action.ADD_MEMBER, pid, f"26p{pid}", "pupil", group="All Pupils") for pid in people]
    results = Executor(store, {"entra": directory}, today=DAY, password_for=password_for).run(
        run_journal_id(1), [*(_create("entra", pid) for pid in people), *joins])
    assert [r.outcome for r in results] == [Outcome.APPLIED] * 240
    assert directory.calls == [(25, 25), (50, 75), (45, 120), (120, 120)], "creates in chunks, joins in one call"
    assert issued == people
    states = store.journal_states(run_journal_id(1))
    assert len(states) == 240 and {e.state for e in states.values()} == {"applied"}
    store.close()
