"""The Google connector's outcomes per change (real google-api-python-client against the emulator):
each Result as soon as its batch is answered, a failed lookup after a lost answer touching only its
own change, and a Google that stops answering given up on within `give_up_after` + `timeout`."""

from __future__ import annotations

import time

from idlifecycle.model import Outcome
from idlifecycle.sandbox.google import Fault
from tests.integration.google_fixtures import Tenant, starter, tenant_fixture  # noqa: F401


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
    # Lost twice (httplib2 resends once by itself), so the connector looks each starter up; one
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
