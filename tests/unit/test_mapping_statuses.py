"""`statuses` works out every person's status at once for the planner: it must say what `status` says."""

from dataclasses import replace
from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from idlifecycle.mapping import Status, status, statuses
from idlifecycle.model import Kind
from tests.factories import pupil, school_rules, staff

TODAY = date(2026, 11, 23)
NEAR = st.none() | st.integers(-40, 40).map(lambda days: TODAY + timedelta(days=days))


@given(st.lists(st.tuples(st.booleans(), NEAR, NEAR), max_size=30), st.integers(0, 30), st.integers(0, 30))
def test_statuses_are_each_persons_status(rows, grace, ahead):
    rules = school_rules()
    kinds = {kind: replace(k, grace_days=grace, create_days_before_start=ahead) for kind, k in rules.kinds.items()}
    # Supply staff (an extra kind) keep the mapping's own days: each person by their own kind's rules.
    rules = replace(rules, kinds=kinds)
    people = [(staff if is_staff else pupil)(f"{n:04d}", "Ann", "Lee", start_date=start, leave_date=leave)
              for n, (is_staff, start, leave) in enumerate(rows)]
    people += [replace(p, person_id=f"X-{p.person_id}", extra_kind="supply") for p in people if p.kind is Kind.STAFF]
    assert statuses(people, rules, TODAY) == {p.person_id: status(p, rules.for_person(p), TODAY) for p in people}


def test_the_cut_off_days_themselves():
    rules = school_rules()  # pupils: grace 0, accounts 14 days before the start
    people = [pupil("1", "Ann", "Lee", leave_date=TODAY), pupil("2", "Bo", "Ng", start_date=TODAY + timedelta(14)),
              pupil("3", "Cy", "Od", start_date=TODAY + timedelta(15))]
    assert statuses(people, rules, TODAY) == {
        "1": Status.LEFT, "2": Status.ACTIVE, "3": Status.FUTURE}
