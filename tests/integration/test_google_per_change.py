"""The Google connector's outcomes per change (real google-api-python-client against the emulator):
each Result as soon as its batch is answered, a failed lookup after a lost answer touching only its
own change, and a Google that stops answering given up on within `give_up_after` + `timeout`."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from datetime import date
from pathlib import Path

from idlifecycle.executor import Executor
from idlifecycle.model import Action, Outcome
from idlifecycle.sandbox.faults import FaultInjector, FaultSpec
from idlifecycle.sandbox.google import Fault
from idlifecycle.store import Store
from tests.integration.google_fixtures import ROOT, Tenant, change, starter, tenant_fixture  # noqa: F401


def _created(tenant: Tenant) -> int:
    return sum(1 for u in tenant.emulator.directory.users.values() if "pupils" in u["primaryEmail"])


def test_each_starter_is_reported_as_soon_as_its_batch_is_answered(tenant: Tenant) -> None:
    with tenant.connector(batch_size=10) as google:
        results = google.apply([starter(f"E{n:02d}", f"early.n{n:02d}") for n in range(60)])
        first = next(results)
        made_by_then = _created(tenant)
        rest = list(results)
    assert [r.outcome for r in [first, *rest]] == [Outcome.APPLIED] * 60
    assert made_by_then < 60, "the first outcome came only after the whole wave was sent"


def test_a_lookup_refused_after_a_lost_answer_leaves_only_its_own_starter_to_send_again(tenant: Tenant) -> None:
    # Lost twice (the first send, and the connector's own resend), so the connector looks each starter up; one
    # of those lookups is refused. Only that starter is sent again, and Google's duplicate answer
    # shows this run's own create landed.
    tenant.emulator.inject(Fault(action="lose_response", method="POST", path="/admin/directory/v1/users", times=2))
    tenant.emulator.inject(Fault(status=400, reason="badRequest", message="Bad Request", method="GET",
                                 path="/admin/directory/v1/users/", times=1))
    with tenant.connector() as google:
        results = list(google.apply([starter(f"K{n}", f"look.n{n}") for n in range(5)]))
    assert tenant.emulator.stats.faults_fired == 3
    assert [(r.outcome, r.detail) for r in results] == [(Outcome.APPLIED, "")] * 5
    assert sorted(u["primaryEmail"] for u in tenant.emulator.directory.users.values()
                  if u["primaryEmail"].startswith("look.")) == [f"look.n{n}@pupils.school.example" for n in range(5)]


def test_a_google_that_answers_nothing_fails_the_rest_within_give_up_after_and_timeout(tenant: Tenant) -> None:
    with tenant.connector(timeout=2, give_up_after=3) as google:
        google.snapshot()
        tenant.emulator.inject(Fault(action="hang", times=10**6))  # every request from now on
        started = time.monotonic()
        results = list(google.apply([starter(f"H{n}", f"hang.n{n}") for n in range(5)]))
        took = time.monotonic() - started
        later = list(google.apply([starter("H9", "hang.n9")]))
    assert {r.outcome for r in results + later} == {Outcome.FAILED}
    assert all(r.retryable and "answered nothing" in r.detail for r in results + later), {r.detail for r in results}
    # One request may block for `timeout` before the silence is noticed; nothing is sent after.
    assert took < 3 + 2 * 2 + 2, f"gave up after {took:.1f} s"


def test_a_night_with_one_connection_in_five_reset_fails_nothing_and_makes_each_object_once(
        tenant: Tenant, tmp_path: Path) -> None:
    groups = [change(Action.CREATE_GROUP, "", group=f"Form 7{letter}") for letter in "ABC"]
    pupils = [starter(f"F{n:02d}", f"reset.n{n:02d}") for n in range(30)]
    joins = [change(Action.ADD_MEMBER, "", group=f"Form 7{'ABC'[n % 3]}", person_id=p.person_id,
                    username=p.username) for n, p in enumerate(pupils)]
    night = [*groups, *pupils, *joins]
    for seed, action in ((1, "drop"), (2, "lose_response")):
        tenant.emulator.inject(Fault(action=action, method="POST", path="/batch", times=10**6, chance=0.1, seed=seed))
    store = Store(tmp_path / "state.db")
    try:
        with tenant.connector(batch_size=10) as google:
            started = time.monotonic()
            results = Executor(store, {"google": google}, today=date(2026, 9, 3)).run("run-1", [
                replace(c, target=None) if c.action is Action.ADD_MEMBER else c for c in night])
        outcomes = Counter(r.outcome for r in results)
        print(f"\nGoogle, 20 % resets: {outcomes[Outcome.FAILED]} of {len(night)} failed, "
              f"{outcomes[Outcome.ALREADY]} 'already so', {time.monotonic() - started:.1f} s")
        audited = Counter(e.event for e in store.audit_entries() if e.event.startswith("change-"))
    finally:
        store.close()
    assert tenant.emulator.stats.faults_fired > 0
    assert outcomes[Outcome.FAILED] == 0, [r.detail for r in results if r.outcome is Outcome.FAILED]
    assert outcomes == {Outcome.APPLIED: len(night)}  # this run's own writes, none "already so"
    assert audited["change-failed"] == 0
    made = Counter(u["primaryEmail"] for u in tenant.emulator.directory.users.values())
    assert all(n == 1 for n in made.values()) and len([m for m in made if m.startswith("reset.")]) == 30
    assert len([g for g in tenant.emulator.directory.groups.values() if g["name"].startswith("Form 7")]) == 3


def test_a_create_whose_answer_is_lost_is_sent_once_and_audited_applied(tenant: Tenant, tmp_path: Path) -> None:
    # Google applies the create, then the connection drops before the answer (the fault harness's
    # "reset after the write", on the first write only). httplib2 must not send it again by itself:
    # its resend would meet "already exists" and a create of this run's would be audited "already so".
    tenant.emulator.directory.add_orgunit_path(ROOT + "/Pupils/Year 7")  # so the create is the first write
    tenant.emulator.injector = FaultInjector(FaultSpec(rate=1.0, kinds=("reset_after",), writes_only=True,
                                                       limit=1))
    store = Store(tmp_path / "state.db")
    try:
        with tenant.connector() as google:
            results = Executor(store, {"google": google}, today=date(2026, 9, 3)).run(
                "run-1", [starter("L1", "lost.answer")])
        audited = [e.event for e in store.audit_entries() if e.event.startswith("change-")]
    finally:
        store.close()
    assert tenant.emulator.injector.fired == {"reset_after": 1}
    assert [(r.outcome, r.detail) for r in results] == [(Outcome.APPLIED, "")]
    assert audited == ["change-started", "change-applied"]
    sent = [(e["method"], e["path"]) for e in tenant.emulator.write_log.since()]
    assert sent == [("POST", "/admin/directory/v1/users")], sent
    # (The connector's own look-up may still meet Google's propagation delay and send the create
    # again; that send's "already exists" then reads as this run's create landing: one write.)


def test_a_create_sent_to_a_google_given_up_on_is_unconfirmed_and_one_never_sent_is_not(tenant: Tenant) -> None:
    # Google applies every request from now on and then holds its answer past the caller's timeout
    # (the fault harness's "hang"): the first batch's two creates land unanswered, the second
    # batch is never sent. Only the two that may have landed are left for the next run's look.
    tenant.emulator.directory.add_orgunit_path(ROOT + "/Pupils/Year 7")
    with tenant.connector(timeout=2, give_up_after=3, batch_size=2) as google:
        google.snapshot()
        tenant.emulator.injector = FaultInjector(FaultSpec(rate=1.0, kinds=("hang",), hang=8))
        results = list(google.apply([starter(f"U{n}", f"unsure.n{n}") for n in range(4)]))
    assert [(r.outcome, r.retryable) for r in results] == [(Outcome.FAILED, True)] * 4, [r.detail for r in results]
    assert [r.unconfirmed for r in results] == [True, True, False, False], [r.detail for r in results]
    assert sorted(u["primaryEmail"] for u in tenant.emulator.directory.users.values()
                  if u["primaryEmail"].startswith("unsure.")) == [f"unsure.n{n}@pupils.school.example" for n in (0, 1)]
