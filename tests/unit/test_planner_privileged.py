"""Privileged accounts in the planner: never adopted, changed or grouped, whatever their anchor; noted."""

from datetime import date

from idlifecycle.model import Action, Group, Snapshot
from idlifecycle.planner import PlanState, plan
from tests.factories import AD_LIKE, TODAY, account, school_rules, staff

RULES = school_rules()
STAFF_DOMAIN = "staff.example.sch.uk"


def plan_for(people, accounts=(), groups=()):
    snapshot = Snapshot("ad", tuple(accounts), tuple(groups))
    return plan(people, {"ad": snapshot}, {"ad": AD_LIKE}, RULES, PlanState(), TODAY)


def test_a_staff_row_matching_an_unanchored_domain_admin_by_login_gets_its_own_account_not_the_admins():
    ian = staff("ITA", "Ian", "Tadmin")
    admin = account("k-admin", "itadmin", anchor=None, domain=STAFF_DOMAIN, container="IT",
                    given="Ian", surname="Tadmin", privileged="member of Domain Admins")
    p = plan_for([ian], [admin], [Group("ad", "g1", "All Staff", {})])
    assert not [c for c in p.changes if c.target == "k-admin"], "nothing is planned for the admin account"
    create = next(c for c in p.changes if c.action is Action.CREATE)
    assert create.person_id == "ITA" and create.username != "itadmin"
    note = next(n for n in p.notes if "itadmin" in n)
    assert "privileged, not managed" in note and "member of Domain Admins" in note and "Ian Tadmin" in note
    assert not any("unmanaged:" in n and "itadmin" in n for n in p.notes)
    assert p.managed_counts["ad"] == 0


def test_an_anchored_account_that_became_a_global_admin_is_left_alone_even_when_its_person_leaves():
    left = staff("JDO", "Jane", "Doe", leave_date=date(2026, 7, 22))
    admin = account("k1", "jdoe", anchor="JDO", domain=STAFF_DOMAIN, container="Staff",
                    privileged="Global Administrator")
    groups = [Group("ad", "g1", "All Staff", {"k1": "Jane Doe"})]
    assert plan_for([left], [admin], groups).changes == ()
    current = staff("JDO", "Jane", "Doe-Smith")
    p = plan_for([current], [admin], groups)
    assert p.changes == (), "no rename, no create of a second account, no group"
    assert any("privileged, not managed" in n and "Jane Doe" in n for n in p.notes)

