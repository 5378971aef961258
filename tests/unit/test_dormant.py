"""Dormant accounts (issue 17): disabled after a kind's dormant_days, kept when exempt or when the
directory cannot tell, not re-enabled while still dormant, and counted by the destructive guard."""

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from idlifecycle.config import load_mapping
from idlifecycle.dormant import DormantMark, dormant_reason, is_dormant_disable
from idlifecycle.errors import ConfigError
from idlifecycle.guards import GuardLimits, check_plan, counted_by_destructive_guard
from idlifecycle.model import Action, Group, Kind, Snapshot
from idlifecycle.planner import PlanState, plan
from tests.factories import AD_LIKE, TODAY, account, school_rules, staff

BASE = school_rules()
STAFF = replace(BASE.kinds[Kind.STAFF], dormant_days=90, dormant_exempt_groups=("Long-term absence",))
RULES = replace(BASE, kinds={**BASE.kinds, Kind.STAFF: STAFF})


def ago(days):
    return datetime.combine(TODAY - timedelta(days=days), datetime.min.time(), UTC)


def teacher_account(key, pid, **kw):
    return account(key, f"t{pid}", anchor=pid, container="Staff", domain="staff.example.sch.uk",
                   created=ago(400), **kw)


def plan_for(people, accounts, groups=(), rules=RULES, state=None, today=TODAY, **snapshot):
    snap = Snapshot("ad", tuple(accounts), tuple(groups), **snapshot)
    return plan(people, {"ad": snap}, {"ad": AD_LIKE}, rules, state or PlanState(), today)


def status_changes(p):
    return [(c.action, c.username, c.reason) for c in p.changes if c.action in (Action.DISABLE, Action.ENABLE)]


def test_the_rule_reads_the_last_sign_in_then_the_creation_date_and_never_guesses():
    def reason(**kw):
        return dormant_reason(teacher_account("k", "1", **kw), STAFF, TODAY)
    assert reason(last_sign_in=ago(91)) == f"no sign-in since {(TODAY - timedelta(days=91)).isoformat()}"
    assert reason(last_sign_in=ago(89)) is None
    assert reason() == f"never signed in, created {(TODAY - timedelta(days=400)).isoformat()}"
    assert dormant_reason(account("k", "x", anchor="1", created=ago(30)), STAFF, TODAY) is None
    assert dormant_reason(account("k", "x", anchor="1"), STAFF, TODAY) is None  # no dates: cannot tell
    assert dormant_reason(teacher_account("k", "1", last_sign_in=ago(900)), BASE.kinds[Kind.STAFF], TODAY) is None


def test_a_dormant_account_is_disabled_and_an_exempt_one_kept():
    people = [staff("1", "Ann", "Dormant"), staff("2", "Bob", "Absent"), staff("3", "Cy", "Active")]
    accounts = [teacher_account("k1", "1", last_sign_in=ago(120)), teacher_account("k2", "2", last_sign_in=ago(120)),
                teacher_account("k3", "3", last_sign_in=ago(2))]
    p = plan_for(people, accounts, [Group("ad", "g", "Long-term absence", {"k2": "Bob Absent"})])
    since = (TODAY - timedelta(days=120)).isoformat()
    assert status_changes(p) == [(Action.DISABLE, "t1", f"no sign-in since {since}")]
    assert f"ad: t1 disabled as dormant (no sign-in since {since})" in p.notes


def test_a_dormant_disabled_account_is_not_re_enabled_until_it_is_signed_in_to():
    person = [staff("1", "Ann", "Dormant")]
    still = plan_for(person, [teacher_account("k1", "1", enabled=False, last_sign_in=ago(120))])
    assert status_changes(still) == []
    back = plan_for(person, [teacher_account("k1", "1", enabled=False, last_sign_in=ago(0))])
    assert [c[0] for c in status_changes(back)] == [Action.ENABLE]


def test_where_the_directory_cannot_tell_nobody_is_disabled_and_it_says_so_once():
    people = [staff(str(i), "A", f"Person{i}") for i in range(3)]
    p = plan_for(people, [teacher_account(f"k{i}", str(i)) for i in range(3)], sign_ins_unknown="no P1 licence")
    assert status_changes(p) == []
    assert [n for n in p.notes if "dormant" in n] == ["dormant accounts not checked in ad: no P1 licence"]


def test_a_privileged_account_is_never_disabled_as_dormant():
    p = plan_for([staff("1", "Ann", "Admin")],
                 [teacher_account("k1", "1", last_sign_in=ago(500), privileged="member of Domain Admins")])
    assert status_changes(p) == []


def test_a_dormant_days_that_would_disable_half_the_staff_trips_the_destructive_guard():
    people = [staff(str(i), "A", f"Person{i}") for i in range(40)]
    accounts = [teacher_account(f"k{i}", str(i), last_sign_in=ago(120 if i % 2 else 10)) for i in range(40)]
    p = plan_for(people, accounts)
    counts = Counter(c.directory for c in p.changes if counted_by_destructive_guard(c))
    assert counts == {"ad": 20}
    [reason] = check_plan(counts, p.managed_counts, p.people_count, p.people_count, GuardLimits())
    assert reason.startswith("ad: 20 destructive changes are 50% of 40 managed accounts")


def test_a_dormant_days_under_30_is_refused_with_why(tmp_path):
    mapping = tmp_path / "school.toml"
    mapping.write_text('[staff]\nusername = "{first_initial}{surname}"\ndomain = "s.example"\ndormant_days = 14\n')
    with pytest.raises(ConfigError) as raised:
        load_mapping([mapping])
    assert str(raised.value).startswith(f"{mapping}: staff.dormant_days: must be at least 30: AD updates "
                                        "lastLogonTimestamp only every 9-14 days")


def test_the_mapping_carries_dormant_days_and_exempt_groups(tmp_path):
    mapping = tmp_path / "school.toml"
    mapping.write_text('[staff]\nusername = "{first_initial}{surname}"\ndomain = "s.example"\n'
                       'dormant_days = 120\ndormant_exempt_groups = ["Maternity"]\n')
    rules = load_mapping([mapping]).kinds[Kind.STAFF]
    assert (rules.dormant_days, rules.dormant_exempt_groups) == (120, ("Maternity",))


def test_an_account_enabled_by_hand_after_a_dormant_disable_has_dormant_days_to_sign_in_then_goes_again():
    person = [staff("1", "Ann", "Dormant")]
    back = [teacher_account("k1", "1", last_sign_in=ago(120))]  # an admin enabled it; still no sign-in
    disabled_on = TODAY - timedelta(days=5)
    # The first night it is seen enabled (not yet recorded): the grace counts from tonight.
    first = plan_for(person, back, state=PlanState(dormant_marks={("ad", "1"): DormantMark(disabled_on)}))
    assert status_changes(first) == []
    last_day = (TODAY + timedelta(days=89)).isoformat()
    assert f"ad: t1 is dormant (no sign-in since {(TODAY - timedelta(days=120)).isoformat()}) but left enabled " \
           f"until {last_day} (enabled again by hand after a dormant disable)" in first.notes
    seen = PlanState(dormant_marks={("ad", "1"): DormantMark(disabled_on, seen_enabled_on=TODAY)})
    assert status_changes(plan_for(person, back, state=seen, today=TODAY + timedelta(days=89))) == []
    later = plan_for(person, back, state=seen, today=TODAY + timedelta(days=90))
    assert [(c.action, c.reason) for c in later.changes if c.action is Action.DISABLE] == [
        (Action.DISABLE, f"no sign-in since {(TODAY - timedelta(days=120)).isoformat()}")]
    # A mark on another directory's account, or on a still-disabled one, spares nothing.
    other = PlanState(dormant_marks={("entra", "1"): DormantMark(disabled_on)})
    assert [c[0] for c in status_changes(plan_for(person, back, state=other))] == [Action.DISABLE]
    still = [teacher_account("k1", "1", enabled=False, last_sign_in=ago(120))]
    assert status_changes(plan_for(person, still, state=seen)) == []


def test_keep_active_spares_the_account_until_its_day_and_lets_a_dormant_disabled_one_be_enabled():
    person = [staff("1", "Ann", "Dormant")]
    kept = PlanState(keep_active={"1": TODAY + timedelta(days=10)})
    assert status_changes(plan_for(person, [teacher_account("k1", "1", last_sign_in=ago(120))], state=kept)) == []
    off = [teacher_account("k1", "1", enabled=False, last_sign_in=ago(120))]
    assert [c[0] for c in status_changes(plan_for(person, off, state=kept))] == [Action.ENABLE]
    after = plan_for(person, [teacher_account("k1", "1", last_sign_in=ago(120))], state=kept,
                     today=TODAY + timedelta(days=11))
    assert [c[0] for c in status_changes(after)] == [Action.DISABLE]


def test_a_dormant_disable_is_told_apart_from_a_leavers_by_its_reason():
    p = plan_for([staff("1", "Ann", "Dormant"), staff("2", "Ned", "Never")],
                 [teacher_account("k1", "1", last_sign_in=ago(120)), teacher_account("k2", "2"),
                  teacher_account("k3", "3")])
    assert sorted((c.username, is_dormant_disable(c)) for c in p.changes if c.action is Action.DISABLE) == [
        ("t1", True), ("t2", True), ("t3", False)]
