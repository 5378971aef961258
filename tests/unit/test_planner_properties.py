"""Properties of the pure core, over generated schools (hypothesis)."""

from collections import Counter
from datetime import date, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idlifecycle.executor import Executor
from idlifecycle.guards import GuardLimits, check_plan
from idlifecycle.model import Account, Action, Kind, Person
from idlifecycle.planner import PlanState, plan
from idlifecycle.store import Store
from tests.doubles import FileDirectory
from tests.factories import AD_LIKE, TODAY, school_rules

RULES = school_rules()
NAMES = st.sampled_from(["James", "Zoë", "Łukasz", "Nguyễn", "O'Brien", "Smith-Jones", "van der Berg", "Siân", "Jo",
                         "Smith", "Müller", "José", "A", "Ng"])
YEARS = st.sampled_from(["R", "1", "2", "6", "7", "11"])


@st.composite
def people(draw):
    count = draw(st.integers(min_value=1, max_value=25))
    result = []
    for i in range(count):
        kind = draw(st.sampled_from([Kind.PUPIL, Kind.STAFF]))
        left = draw(st.booleans()) and draw(st.booleans())
        result.append(Person(
            f"{i:05d}", kind, draw(NAMES), draw(NAMES),
            year_group=draw(YEARS) if kind is Kind.PUPIL else None,
            registration_group=draw(st.sampled_from([None, "A", "B"])) if kind is Kind.PUPIL else None,
            roles=("Teacher",) if kind is Kind.STAFF else (),
            leave_date=TODAY - timedelta(days=draw(st.integers(0, 400))) if left else None,
        ))
    return result


def outsiders():
    return st.lists(st.sampled_from(["19jsmith", "jsmith", "zmuller", "admin2", "jojo"]), unique=True, max_size=3)


def _directory(tmp: Path, outside: list[str]) -> FileDirectory:
    directory = FileDirectory("ad", tmp / "dir.sqlite")
    for n, name in enumerate(outside):
        directory.put(Account("ad", f"out{n}", name, f"{name}@elsewhere", "X", "Y", "X Y", None, True, "Elsewhere"),
                      in_scope=False)
    return directory


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(school=people(), outside=outsiders(), later=people())
def test_a_replan_after_applying_a_plan_is_empty_and_nothing_outside_scope_is_touched(tmp_path_factory, school,
                                                                                      outside, later):
    tmp = tmp_path_factory.mktemp("school")
    directory = _directory(tmp, outside)
    store = Store(tmp / "state.db")
    outside_before = directory.accounts(in_scope=False)

    def run(feed: list[Person], today: date) -> int:
        state = PlanState(person_usernames={}, issued_usernames=store.issued_usernames(),
                          disabled_on=store.disabled_on())
        p = plan(feed, {"ad": directory.snapshot()}, {"ad": AD_LIKE}, RULES, state, today)
        outside_keys = {a.key for a in outside_before}
        assert not [c for c in p.changes if c.target in outside_keys]
        Executor(store, {"ad": directory}, today=today).run(f"plan-{today}-{len(feed)}", p.changes)
        return len(p.changes)

    run(school, TODAY)
    replan = plan(school, {"ad": directory.snapshot()}, {"ad": AD_LIKE}, RULES,
                  PlanState(issued_usernames=store.issued_usernames(), disabled_on=store.disabled_on()), TODAY)
    assert replan.changes == ()
    # A later feed (different people, same ids) converges too, and never reissues a name.
    run(later, TODAY + timedelta(days=1))
    usernames = [a.username.lower() for a in directory.accounts()]
    assert len(usernames) == len(set(usernames))
    assert not set(usernames) & {a.username for a in outside_before}
    assert directory.accounts(in_scope=False) == outside_before
    store.close()


@given(st.integers(min_value=40, max_value=5000))
def test_a_feed_shrunk_by_half_trips_the_guard(previous):
    reasons = check_plan({}, {}, people_count=previous // 2, previous_people_count=previous, limits=GuardLimits())
    assert reasons and "fewer" in reasons[0]


@given(st.integers(min_value=100, max_value=3000))
def test_everyone_leaving_at_once_is_stopped(managed):
    destructive = Counter({"entra": managed})
    assert check_plan(destructive, {"entra": managed}, managed, managed, GuardLimits())
    assert not check_plan(destructive, {"entra": managed}, managed, managed, GuardLimits(), allow_destructive=managed)


def test_a_normal_night_with_a_few_leavers_is_not_stopped():
    assert check_plan({"ad": 3}, {"ad": 400}, 398, 400, GuardLimits()) == []
    assert check_plan({"ad": 30}, {"ad": 400}, 370, 400, GuardLimits()) == []  # 7.5 %: under both limits
    over_percent = check_plan({"ad": 45}, {"ad": 400}, 400, 400, GuardLimits())
    assert over_percent == ["ad: 45 destructive changes are 11% of 400 managed accounts, over the limit of 10%; "
                            "review the plan, then rerun with --allow-destructive 45"]


def test_plan_changes_are_in_a_safe_order_create_before_membership_and_disable_before_delete():
    order = [Action.CREATE_GROUP, Action.CREATE, Action.ADD_MEMBER, Action.REMOVE_MEMBER, Action.DISABLE]
    from idlifecycle.planner import _PHASE

    assert [_PHASE[a] for a in order] == sorted(_PHASE[a] for a in order)
    assert _PHASE[Action.DISABLE] < _PHASE[Action.DELETE]
