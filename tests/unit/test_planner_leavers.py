"""A leaver's licence: kept for `licence_kept_days` after the disable so the mailbox survives, then removed."""

from dataclasses import replace
from datetime import date, timedelta

from idlifecycle.model import Action, Group, Kind, Snapshot
from idlifecycle.planner import PlanState, plan
from tests.factories import ENTRA_LIKE, account, school_rules, staff

LICENCE = "Licence - Microsoft 365 A3 Faculty"
DISABLED = date(2026, 1, 10)


def rules_keeping(days):
    rules = school_rules()
    return replace(rules, kinds={**rules.kinds, Kind.STAFF: replace(rules.kinds[Kind.STAFF], licence_kept_days=days)})


def night(rules, today, *, enabled=False, disabled_on=DISABLED):
    leaver = staff("S1", "Jane", "Doe", leave_date=DISABLED)
    acct = account("k1", "jdoe", anchor="S1", directory="entra", enabled=enabled, domain="staff.example.sch.uk")
    groups = (Group("entra", "g1", "All Staff", {"k1": "Jane Doe"}, managed=True),
              Group("entra", "g2", LICENCE, {"k1": "Jane Doe"}, managed=True))
    state = PlanState(disabled_on={("entra", "S1"): disabled_on} if disabled_on else {})
    snapshot = Snapshot("entra", (acct,), groups, frozenset())
    return plan([leaver], {"entra": snapshot}, {"entra": ENTRA_LIKE}, rules, state, today)


def removed(p):
    return sorted(c.group for c in p.changes if c.action is Action.REMOVE_MEMBER)


def test_by_default_the_licence_goes_with_the_other_groups_on_the_night_of_the_disable():
    p = night(school_rules(), DISABLED, enabled=True, disabled_on=None)
    assert removed(p) == ["All Staff", LICENCE]


def test_a_staff_leavers_licence_is_kept_until_the_configured_day_and_removed_then():
    rules = rules_keeping(90)
    first = night(rules, DISABLED, enabled=True, disabled_on=None)
    assert Action.DISABLE in [c.action for c in first.changes]
    assert removed(first) == ["All Staff"]
    assert removed(night(rules, DISABLED + timedelta(days=89))) == ["All Staff"]
    due = night(rules, DISABLED + timedelta(days=90))
    assert removed(due) == ["All Staff", LICENCE]
    assert not [c for c in due.changes if c.action is Action.DELETE]


def test_a_licence_kept_for_the_whole_retention_goes_with_the_delete_not_before():
    rules = rules_keeping(400)  # more than staff's 365-day retention: "until delete"
    assert removed(night(rules, DISABLED + timedelta(days=364))) == ["All Staff"]
    delete_night = night(rules, DISABLED + timedelta(days=365))
    assert [c.action for c in delete_night.changes if c.action is not Action.REMOVE_MEMBER] == [Action.DELETE]
    assert removed(delete_night) == ["All Staff"]


def test_an_account_disabled_before_the_tool_knew_counts_from_the_leave_date():
    rules = rules_keeping(30)
    assert removed(night(rules, DISABLED + timedelta(days=29), disabled_on=None)) == ["All Staff"]
    assert removed(night(rules, DISABLED + timedelta(days=30), disabled_on=None)) == ["All Staff", LICENCE]


def test_a_directory_without_group_based_licensing_keeps_nothing_back():
    rules = rules_keeping(90)
    leaver = staff("S1", "Jane", "Doe", leave_date=DISABLED)
    acct = account("k1", "jdoe", anchor="S1", domain="staff.example.sch.uk", container="Staff")
    groups = (Group("ad", "g2", LICENCE, {"k1": "Jane Doe"}, managed=True),)
    p = plan([leaver], {"ad": Snapshot("ad", (acct,), groups, frozenset())},
             {"ad": replace(ENTRA_LIKE, licence_groups=False, containers=True)}, rules, PlanState(), DISABLED)
    assert removed(p) == [LICENCE]


def test_a_directory_of_its_own_keeps_its_own_days_the_other_the_kinds():
    """licence_kept_days = 90 for staff, and 0 in the trust's second tenant: kept in one, gone at once there."""
    rules = rules_keeping(90)
    staff_rules = replace(rules.kinds[Kind.STAFF], licence_kept_days_in={"trust": 0})
    rules = replace(rules, kinds={**rules.kinds, Kind.STAFF: staff_rules})
    leaver = staff("S1", "Jane", "Doe", leave_date=DISABLED)
    snapshots = {}
    for directory in ("entra", "trust"):
        acct = account("k1", "jdoe", anchor="S1", directory=directory, domain="staff.example.sch.uk")
        groups = (Group(directory, "g1", "All Staff", {"k1": "Jane Doe"}, managed=True),
                  Group(directory, "g2", LICENCE, {"k1": "Jane Doe"}, managed=True))
        snapshots[directory] = Snapshot(directory, (acct,), groups, frozenset())
    p = plan([leaver], snapshots, {"entra": ENTRA_LIKE, "trust": ENTRA_LIKE}, rules, PlanState(), DISABLED)
    removed_in = sorted((c.directory, c.group) for c in p.changes if c.action is Action.REMOVE_MEMBER)
    assert removed_in == [("entra", "All Staff"), ("trust", "All Staff"), ("trust", LICENCE)]
