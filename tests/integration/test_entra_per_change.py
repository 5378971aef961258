"""Faults and outcomes per change against the Graph emulator (real msal + msgraph-sdk over HTTPS).

Each change's outcome reaches the executor (journal, audit, usernames, disable dates) as soon as
Graph's answer decides it, not when the phase ends; a reset connection or a lost reply makes only
the changes it touches uncertain, and those are settled by reading the objects back; a Graph that
stops answering fails Entra's remaining changes within `give_up_after_seconds` while the other
directory in the job still applies.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.config import Secrets
from idlifecycle.connectors.entra import EntraConnector
from idlifecycle.executor import Executor
from idlifecycle.job import load_job, run_sync
from idlifecycle.model import Action, Change, Outcome, Result
from idlifecycle.sandbox.graph import Fault, GraphEmulator
from idlifecycle.store import Store
from tests.doubles import FileDirectory
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_SECRET, change, starter
from tests.integration.test_entra_job import AMY, CLARA, RORY, seed, write_school
from tests.jobfiles import LENIENT_GUARDS, write_connector, write_job

TODAY = date(2026, 9, 3)


def _writes(emulator: GraphEmulator, method: str, path: str) -> int:
    return sum(1 for _, m, p, _ in emulator.write_log if (m, p) == (method, path))


def _night(count: int, forms: int) -> list[Change]:
    """A September night in phase order: new form groups, new pupils, each into All Pupils and a form."""
    groups = [change(Action.CREATE_GROUP, None, group=f"Form 7{chr(65 + f)}", after={"name": f"Form 7{chr(65 + f)}"})
              for f in range(forms)]
    pupils = [starter(f"P9{i:03d}", f"26pupil{i}", "New", f"Pupil{i}") for i in range(count)]
    joins = [change(Action.ADD_MEMBER, None, group=group, person_id=p.person_id, username=p.username)
             for i, p in enumerate(pupils) for group in ("All Pupils", f"Form 7{chr(65 + i % forms)}")]
    return [*groups, *pupils, *joins]


def test_each_outcome_is_journalled_while_the_rest_of_the_phase_is_still_being_sent(
        emulator: GraphEmulator, make_connector: Callable[..., EntraConnector], store: Store) -> None:
    # Paced at 40 writes a second, sixty creates take about a second and a half: the first
    # batch's answers come back long before the last batch goes out.
    entra = make_connector(emulator, write_limit_per_second=40, max_batches_in_flight=1)
    entra.snapshot()
    creates = [starter(f"P7{i:03d}", f"26early{i}", "Early", f"Bird{i}") for i in range(60)]
    seen: list[tuple[int, str | None]] = []

    def heard(planned: Change, result: Result) -> None:
        if not seen:
            entry = store.journal_states("run-1").get(planned.change_id)
            seen.append((_writes(emulator, "POST", "/v1.0/users"), entry.state if entry else None))

    results = Executor(store, {"entra": entra}, today=TODAY, on_result=heard).run("run-1", creates)

    assert [r.outcome for r in results] == [Outcome.APPLIED] * 60
    [(creates_landed, journalled)] = seen
    # Recorded (journal committed) when at most a batch or two of the sixty had been created.
    assert journalled == str(Outcome.APPLIED)
    assert creates_landed < 60, "the first outcome was recorded only after the whole phase was sent"


def test_a_night_with_one_connection_in_five_reset_fails_nothing_and_applies_each_change_once(
        emulator: GraphEmulator, make_connector: Callable[..., EntraConnector], store: Store) -> None:
    entra = make_connector(emulator)
    amy = next(a for a in entra.snapshot().accounts if a.anchor == "P001")
    night = [*_night(40, 4), change(Action.DISABLE, amy.key, person_id="P001", username="23abrown")]
    # Seeded: the same requests fail on every run. A reset before the batch reached Graph, one
    # after Graph carried it out, and resets on the lookups that decide what a lost reply did.
    emulator.faults += [
        Fault("POST", r"^/v1\.0/\$batch$", mode="drop", times=10**6, chance=0.1, seed=1),
        Fault("POST", r"^/v1\.0/\$batch$", mode="drop_after", times=10**6, chance=0.1, seed=2),
        Fault("GET", r"^/v1\.0/(users|groups)$", mode="drop", times=10**6, chance=0.2, seed=3),
    ]

    results = Executor(store, {"entra": entra}, today=TODAY).run("run-1", night)

    assert emulator.faults[1].times < 10**6 and emulator.faults[2].times < 10**6  # the faults did fire
    failed = [(r.change_id, r.detail) for r in results if r.outcome is Outcome.FAILED]
    assert failed == []
    assert Counter(r.outcome for r in results) == {Outcome.APPLIED: len(night)}  # none "already so"
    # Exactly once in the directory's own log: forty accounts and four groups, no twin.
    assert _writes(emulator, "POST", "/v1.0/users") == 40
    assert _writes(emulator, "POST", "/v1.0/groups") == 4
    assert len({u.get("employeeId") for u in emulator.directory.state["users"].values()}) == \
        len(emulator.directory.state["users"])
    audited = Counter((e.event, e.data.get("change_id")) for e in store.audit_entries()
                      if e.event.startswith("change-") and e.event != "change-started")
    assert {event for event, _ in audited} == {"change-applied"}
    assert sorted(audited.values()) == [1] * len(night)


def test_a_lookup_reset_after_a_lost_reply_is_asked_again_and_fails_no_change(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    entra.snapshot()
    emulator.faults += [Fault("POST", r"^/v1\.0/\$batch$", mode="drop_after"),
                        Fault("GET", r"^/v1\.0/users$", mode="drop")]
    intake = [starter(f"P6{i:02d}", f"26look{i}", "Look", f"Again{i}") for i in range(5)]

    results = list(entra.apply(intake))

    assert [f.times for f in emulator.faults] == [0, 0]
    assert [(r.outcome, r.detail) for r in results] == [(Outcome.APPLIED, "")] * 5
    assert _writes(emulator, "POST", "/v1.0/users") == 5


def test_a_group_whose_create_reply_was_lost_is_applied_not_failed_even_when_its_lookup_is_reset(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    entra.snapshot()
    emulator.faults += [Fault("POST", r"^/v1\.0/\$batch$", mode="drop_after"),
                        Fault("GET", r"^/v1\.0/groups$", mode="drop", times=2)]
    create = change(Action.CREATE_GROUP, None, group="Form 8Z", after={"name": "Form 8Z"})

    [result] = list(entra.apply([create]))

    assert (result.outcome, emulator.faults[1].times) == (Outcome.APPLIED, 0)
    assert _writes(emulator, "POST", "/v1.0/groups") == 1


def test_a_member_add_whose_reply_was_lost_and_that_graph_then_calls_a_duplicate_is_applied(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    amy = next(a for a in entra.snapshot().accounts if a.anchor == "P001")
    emulator.faults.append(Fault("POST", r"^/v1\.0/\$batch$", mode="drop_after"))

    [result] = list(entra.apply([change(Action.ADD_MEMBER, amy.key, group="All Staff")]))

    # Sent again, Graph answers "already exist": that is this run's own first send landing.
    assert result.outcome is Outcome.APPLIED
    assert _writes(emulator, "PATCH", next(f"/v1.0/groups/{k}" for k, g in emulator.directory.state["groups"].items()
                                           if g["displayName"] == "All Staff")) == 1


def _two_directory_school(tmp: Path, emulator: GraphEmulator, give_up_after: float) -> Path:
    write_school(tmp, emulator, [AMY, RORY, CLARA], give_up_after_seconds=give_up_after, timeout_seconds=30)
    write_connector(tmp / "double.toml", "double", "tests.doubles:FileDirectory",
                    {"path": str(tmp / "directory.sqlite")})
    return write_job(tmp / "job.toml", connectors=["entra.toml", "double.toml"], mappings=["mapping.toml"],
                     guards={"max_destructive": 20, **LENIENT_GUARDS})


@pytest.mark.parametrize("mode", ["hang", "drop"], ids=["answers-nothing", "drops-every-connection"])
def test_a_graph_that_stops_answering_fails_entras_changes_within_give_up_after_and_the_other_directory_applies(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        mode: str) -> None:
    emulator = make_emulator(seed())
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    job_file = _two_directory_school(tmp_path, emulator, give_up_after=3)
    # The snapshot's delta reads are answered; every request after them Graph takes and never
    # answers (or closes unanswered, before doing anything).
    emulator.faults.append(Fault("*", r"^/v1\.0/(?!(users|groups)/delta)", mode=mode, times=10**6))
    job = load_job(job_file, today=TODAY, secrets=Secrets())

    started = time.monotonic()
    try:
        report = run_sync(job)
    finally:
        job.close()
    took = time.monotonic() - started

    directory_of = {c.change_id: c.directory for c in report.plan.changes}
    entra = [r for r in report.results if directory_of[r.change_id] == "entra"]
    double = [r for r in report.results if directory_of[r.change_id] == "double"]
    assert entra and {r.outcome for r in entra} == {Outcome.FAILED}
    # Each change Graph was asked about fails with the one reason; the new starters' memberships
    # were never sent, since their accounts were not made.
    assert all(r.detail.endswith("was not created, so this was not attempted")
               for r in entra if "answered nothing" not in r.detail), {r.detail for r in entra}
    assert sum("answered nothing" in r.detail and r.retryable for r in entra) >= 4
    assert double and {r.outcome for r in double} == {Outcome.APPLIED}
    assert {a.anchor for a in FileDirectory("double", tmp_path / "directory.sqlite").accounts()} >= \
        {"000201", "000202", "000205", "JDO"}
    assert emulator.write_log == []
    assert took < 3 + 15, f"the run took {took:.0f} s"
