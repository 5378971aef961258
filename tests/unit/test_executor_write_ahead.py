"""Write-ahead: what the directory cannot tell a later run is in the store before a change is sent,
and a run killed after sending is settled by the next one from the directory's snapshot."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

import pytest

from idlifecycle.executor import Executor, reconcile_started, run_journal_id
from idlifecycle.model import Action, Change, Group, Outcome, Result, Snapshot
from idlifecycle.store import Store
from tests.doubles import SendOnly
from tests.factories import account

DAY = date(2026, 11, 24)
NEW = {"username": "26zbrown", "login": "26zbrown@pupils.example.sch.uk", "given_name": "Zoe", "surname": "Brown",
       "display_name": "Zoe Brown", "anchor": "000231", "enabled": True, "container": "Pupils/Year 7",
       "attributes": {}, "must_change_password": True}


class Watching(SendOnly):
    """A directory that, as each change arrives, writes down what the store already holds about it."""

    def __init__(self, store: Store) -> None:
        super().__init__("ad")
        self.store = store
        self.seen: list[dict[str, Any]] = []

    def apply_one(self, change: Change) -> Result:
        # Sent from the directory's worker thread: the store is read on its own thread (`handover`).
        self.seen.append(self.store.on_own_thread(self.look))
        return Result(change.change_id, Outcome.APPLIED, key="k-new" if change.action is Action.CREATE else None)

    def look(self) -> dict[str, Any]:
        db = self.store.db
        return {
            "issued": self.store.issued_usernames(),
            "pending": dict(db.execute("SELECT person_id, disable_pending FROM accounts "
                                       "WHERE disable_pending IS NOT NULL").fetchall()),
            "owed": [(o.person_id, o.reason) for o in self.store.owed_passwords()],
            "last_audit": [(e.event, e.data["action"]) for e in self.store.audit_entries()][-1],
        }

    def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
        for change in changes:
            yield self.apply_one(change)


def test_the_username_a_password_owed_a_disable_date_and_the_intent_are_stored_before_sending(tmp_path):
    store = Store(tmp_path / "state.db")
    directory = Watching(store)
    create = Change("ad", Action.CREATE, "000231", "26zbrown", "new pupil on roll", after=NEW)
    disable = Change("ad", Action.DISABLE, "000100", "16abrown", "left on 22/07/2026", target="k-old",
                     before={"enabled": True}, after={"enabled": False})
    executor = Executor(store, {"ad": directory}, today=DAY, password_for=lambda change: "Secret-Pass-1234")
    results = executor.run(run_journal_id(1), [create, disable])
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.APPLIED]
    at_create, at_disable = directory.seen
    assert at_create["issued"] == {"26zbrown": "000231"}
    assert at_create["owed"] == [("000231", "new account")]
    assert at_create["last_audit"] == ("change-started", "create")
    assert at_disable["pending"] == {"000100": "2026-11-24"}
    assert at_disable["last_audit"] == ("change-started", "disable")
    # Afterwards: the disable date is the one written ahead; the password is owed until it is delivered.
    assert store.disabled_on() == {("ad", "000100"): DAY}
    assert [o.person_id for o in store.owed_passwords()] == ["000231"]
    events = [e.event for e in store.audit_entries()]
    assert events == ["change-started", "change-applied", "change-started", "change-applied"]
    assert all("Secret-Pass-1234" not in str(e.data) for e in store.audit_entries())


def test_the_next_run_settles_what_an_interrupted_run_started_from_the_snapshot(tmp_path):
    store = Store(tmp_path / "state.db")
    create = Change("ad", Action.CREATE, "000231", "26zbrown", "new pupil on roll", after=NEW)
    disable = Change("ad", Action.DISABLE, "000100", "16abrown", "left", target="k-old",
                     before={"enabled": True}, after={"enabled": False})
    join = Change("ad", Action.ADD_MEMBER, "000300", "19cgreen", "should be in Reg 7A", target="k-c", group="Reg 7A")
    reset = Change("ad", Action.SET_PASSWORD, "000300", "19cgreen", "reset", target="k-c")

    class Killed(Watching):
        """Nothing is answered; the run dies at the last phase (the disable), after its write-ahead."""

        def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
            if any(c.action is Action.DISABLE for c in changes):
                raise SystemExit("killed")
            return iter(())

    with pytest.raises(SystemExit):
        Executor(store, {"ad": Killed(store)}, today=DAY, password_for=lambda c: "Secret-Pass-1234").run(
            run_journal_id(1), [create, join, reset, disable])
    # What the directory shows the next night: the create and the disable landed, the group add did not.
    snapshot = Snapshot("ad", (account("k-new", "26zbrown", anchor="000231"),
                               account("k-old", "16abrown", anchor="000100", enabled=False),
                               account("k-c", "19cgreen", anchor="000300")),
                        (Group("ad", "g-7a", "Reg 7A", {}),))
    assert reconcile_started(store, {"ad": snapshot}, found_by="run-2", actor="nightly job") == 4
    outcomes = {(e.data["action"], e.event) for e in store.audit_entries() if e.event != "change-started"}
    assert outcomes == {("create", "change-applied"), ("disable", "change-applied"),
                        ("add-member", "change-not-applied"), ("set-password", "change-outcome-unknown")}
    applied = [e.data for e in store.audit_entries() if e.event == "change-applied"]
    assert all(d["journal"] == "run-1" and "found done by run-2" in d["detail"] for d in applied)
    assert store.disabled_on() == {("ad", "000100"): DAY}
    assert store.db.execute("SELECT key FROM accounts WHERE person_id='000231'").fetchone()[0] == "k-new"
    assert sorted(o.person_id for o in store.owed_passwords()) == ["000231", "000300"]
    # Settled once: a further run finds nothing left to settle.
    assert reconcile_started(store, {"ad": snapshot}, found_by="run-3", actor="nightly job") == 0


def test_a_disable_whose_answer_was_lost_gets_its_date_when_the_next_run_sees_it_landed(tmp_path):
    store = Store(tmp_path / "state.db")
    disable = Change("ad", Action.DISABLE, "000100", "16abrown", "left", target="k-old",
                     before={"enabled": True}, after={"enabled": False})

    class LostReply(Watching):
        def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
            for change in changes:  # the directory took it; the answer never came back
                yield Result(change.change_id, Outcome.FAILED, "connection reset", retryable=True)

    Executor(store, {"ad": LostReply(store)}, today=DAY).run(run_journal_id(1), [disable])
    assert store.disabled_on() == {}
    later = Snapshot("ad", (account("k-old", "16abrown", anchor="000100", enabled=False),), ())
    reconcile_started(store, {"ad": later}, found_by="run-2", actor="nightly job")
    assert store.disabled_on() == {("ad", "000100"): DAY}, "the retention clock starts on the day it was sent"


def test_a_change_sent_to_a_directory_given_up_on_is_left_for_the_next_run_to_settle(tmp_path):
    store = Store(tmp_path / "state.db")
    sent = Change("ad", Action.CREATE, "000231", "26zbrown", "new pupil on roll", after=NEW)
    unsent = Change("ad", Action.CREATE, "000232", "26ygreen", "new pupil on roll",
                    after={**NEW, "username": "26ygreen", "login": "26ygreen@pupils.example.sch.uk",
                           "anchor": "000232"})
    silence = "the directory answered nothing for 120 s, so ad was given up on for this run"

    class GivenUp(Watching):
        """The first create went out and its answer never came; the second was never sent."""

        def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
            yield Result(changes[0].change_id, Outcome.FAILED, silence, retryable=True, unconfirmed=True)
            yield Result(changes[1].change_id, Outcome.FAILED, silence, retryable=True)

    results = Executor(store, {"ad": GivenUp(store)}, today=DAY, password_for=lambda c: "Secret-Pass-1234").run(
        run_journal_id(1), [sent, unsent])
    # The run still says both failed (the directory did); only the unsent one is recorded so.
    assert [(r.outcome, r.unconfirmed) for r in results] == [(Outcome.FAILED, True), (Outcome.FAILED, False)]
    states = store.journal_states(run_journal_id(1))
    assert (states[sent.change_id].state, states[unsent.change_id].state) == ("started", "failed")
    events = [(e.event, e.data["person_id"]) for e in store.audit_entries()]
    assert events == [("change-started", "000231"), ("change-started", "000232"),
                      ("change-unconfirmed", "000231"), ("change-failed", "000232")]
    unconfirmed = next(e.data for e in store.audit_entries() if e.event == "change-unconfirmed")
    assert "the next run looks and settles it" in unconfirmed["detail"]
    assert [o.person_id for o in store.owed_passwords()] == ["000231"], "a password that may be set stays owed"
    assert store.issued_usernames() == {"26zbrown": "000231", "26ygreen": "000232"}

    # The next run's look finds the create landed: applied once, by the run that sent it; its key kept.
    landed = Snapshot("ad", (account("k-new", "26zbrown", anchor="000231"),), ())
    assert reconcile_started(store, {"ad": landed}, found_by="run-2", actor="nightly job") == 1
    applied = [e.data for e in store.audit_entries() if e.event == "change-applied"]
    assert [(d["person_id"], d["journal"]) for d in applied] == [("000231", "run-1")]
    assert store.db.execute("SELECT key FROM accounts WHERE person_id='000231'").fetchone()[0] == "k-new"
    assert [o.person_id for o in store.owed_passwords()] == ["000231"], "delivered by the next run, afresh"
    assert store.verify_audit() == []


def test_a_dormant_disable_an_interrupted_run_sent_is_remembered_as_dormant_once_seen_landed(tmp_path):
    store = Store(tmp_path / "state.db")
    dormant = Change("ad", Action.DISABLE, "000100", "16abrown", "no sign-in since 2026-06-01", target="k-old",
                     before={"enabled": True}, after={"enabled": False})
    leaver = Change("ad", Action.DISABLE, "000101", "16cbrown", "left on 22/07/2026", target="k-left",
                    before={"enabled": True}, after={"enabled": False})

    class Killed(Watching):
        def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
            raise SystemExit("killed")

    with pytest.raises(SystemExit):
        Executor(store, {"ad": Killed(store)}, today=DAY).run(run_journal_id(1), [dormant, leaver])
    assert store.dormant_marks() == {}  # not before the directory shows it landed
    snapshot = Snapshot("ad", (account("k-old", "16abrown", anchor="000100", enabled=False),
                               account("k-left", "16cbrown", anchor="000101", enabled=False)), ())
    reconcile_started(store, {"ad": snapshot}, found_by="run-2", actor="nightly job")
    assert store.dormant_marks() == {("ad", "000100"): (DAY, None)}
    assert [(d, p, u) for d, p, u, _ in store.dormant_untold()] == [("ad", "000100", "16abrown")]


@pytest.mark.parametrize("landed", [True, False])
def test_a_dormant_disable_whose_answer_was_lost_counts_only_once_seen_landed(tmp_path, landed):
    store = Store(tmp_path / "state.db")
    dormant = Change("ad", Action.DISABLE, "000100", "16abrown", "no sign-in since 2026-06-01", target="k-old",
                     before={"enabled": True}, after={"enabled": False})

    class LostReply(Watching):
        def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
            for change in changes:
                yield Result(change.change_id, Outcome.FAILED, "connection reset", retryable=True)

    Executor(store, {"ad": LostReply(store)}, today=DAY).run(run_journal_id(1), [dormant])
    # Pending: not yet a dormant disable the planner would give a grace to, nor one to tell anybody of.
    assert store.dormant_marks() == {} and store.dormant_untold() == []
    later = Snapshot("ad", (account("k-old", "16abrown", anchor="000100", enabled=not landed),), ())
    reconcile_started(store, {"ad": later}, found_by="run-2", actor="nightly job")
    assert store.dormant_marks() == ({("ad", "000100"): (DAY, None)} if landed else {})
    assert store.db.execute("SELECT COUNT(*) FROM dormant_disables").fetchone()[0] == int(landed)


def test_a_privileged_account_given_the_anchor_since_is_not_taken_for_a_create_that_landed(tmp_path):
    """A colleague gave a Global Admin the starter's anchor while our create's answer was lost: the next
    run's look must not take the admin for the create landing (nor record it as the starter's account)."""
    store = Store(tmp_path / "state.db")
    create = Change("ad", Action.CREATE, "000231", "26zbrown", "new pupil on roll", after=NEW)

    class Lost(Watching):
        def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
            yield Result(changes[0].change_id, Outcome.FAILED, "503", retryable=True, unconfirmed=True)

    Executor(store, {"ad": Lost(store)}, today=DAY, password_for=lambda c: "Secret-Pass-1234").run(
        run_journal_id(1), [create])
    admin = account("k-admin", "gadmin", anchor="000231", privileged="Global Administrator")
    assert reconcile_started(store, {"ad": Snapshot("ad", (admin,), ())}, found_by="run-2", actor="nightly job") == 1
    assert [e.event for e in store.audit_entries()][-1] == "change-not-applied"
    assert store.db.execute("SELECT key FROM accounts WHERE person_id='000231'").fetchone() is None
