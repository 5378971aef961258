"""Google Workspace admins and restricted groups, through the real client against the emulator: a super
or delegated admin in the managed org units is never adopted, and a restricted group loses a group
nested in it."""

from __future__ import annotations

from datetime import date

from idlifecycle.connectors.base import Capabilities
from idlifecycle.model import Action, Change, Kind, Outcome, Person
from idlifecycle.planner import NoShareGroups, PlanState, plan
from tests.factories import school_rules
from tests.integration.google_fixtures import DOMAINS, ROOT, Tenant, tenant_fixture

__all__ = ["tenant_fixture"]
MARKER = "[managed by idlifecycle]"
GOOGLE = Capabilities(containers=True, revoke_sessions=True, password_rules="google")


def test_google_admins_are_not_adopted_and_a_nested_group_leaves_a_restricted_group(tenant: Tenant) -> None:
    directory = tenant.emulator.directory
    directory.add_orgunit_path(f"{ROOT}/Staff")
    staff_domain = DOMAINS["staff"]
    gail = directory.add_user(f"gadmin@{staff_domain}", "Gail", "Admin", "correct-horse-battery",
                              org_unit=f"{ROOT}/Staff", admin=True)
    dan = directory.add_user(f"dhelper@{staff_domain}", "Dan", "Helper", "correct-horse-battery",
                             org_unit=f"{ROOT}/Staff")
    dan["isDelegatedAdmin"] = True
    for email, description in ((f"share-sen@{staff_domain}", MARKER), (f"office@{staff_domain}", "the office")):
        status, _ = directory.insert_group({"email": email, "name": email.split("@")[0], "description": description})
        assert status == 200
    directory.born.clear()  # seeded long ago: settled
    status, _ = directory.insert_member(f"share-sen@{staff_domain}", {"email": f"office@{staff_domain}"})
    assert status == 200

    connector = tenant.connector()
    try:
        snapshot = connector.snapshot()
        accounts = {a.login: a for a in snapshot.accounts}
        assert accounts[f"gadmin@{staff_domain}"].privileged == "super admin"
        assert accounts[f"dhelper@{staff_domain}"].privileged == "delegated admin"
        [sen] = [g for g in snapshot.groups if g.name == "share-sen"]
        assert len(sen.members) == 1, "the nested group is seen as a member"

        # The MIS gives both their addresses: the "email" match rule would adopt them.
        people = [Person("GAD", Kind.STAFF, "Gail", "Admin", roles=("Network Manager",),
                         email=f"gadmin@{staff_domain}"),
                  Person("DHE", Kind.STAFF, "Dan", "Helper", roles=("Teacher",), email=f"dhelper@{staff_domain}")]
        shares = NoShareGroups(restricted={"google": frozenset({"share-sen"})},
                               managed={"google": frozenset({"share-sen"})})
        planned = plan(people, {"google": snapshot}, {"google": GOOGLE}, school_rules(), PlanState(),
                       date(2026, 9, 3), shares=shares)
        assert not [c for c in planned.changes if c.target in (gail["id"], dan["id"])]
        for login, role in ((f"gadmin@{staff_domain}", "super admin"), (f"dhelper@{staff_domain}", "delegated admin")):
            assert any("privileged, not managed" in n and login in n and role in n for n in planned.notes), \
                planned.notes
        [removal] = [c for c in planned.changes if c.action is Action.REMOVE_MEMBER]
        assert removal.group == "share-sen" and removal.restricted and removal.target == next(iter(sen.members))
        [result] = list(connector.apply([removal]))
        assert result.outcome is Outcome.APPLIED, result
        assert directory.members[sen.key] == {}
        assert connector.privileged_reason(gail["id"]) == "super admin"
    finally:
        connector.close()


def test_a_create_that_meets_a_super_admin_with_its_address_and_anchor_is_a_conflict(tenant: Tenant) -> None:
    directory = tenant.emulator.directory
    directory.add_orgunit_path(f"{ROOT}/Staff")
    admin = directory.add_user(f"cadmin@{DOMAINS['staff']}", "Cal", "Admin", "correct-horse-battery",
                               org_unit=f"{ROOT}/Staff", admin=True)
    admin["externalIds"] = [{"type": "organization", "value": "CAD"}]
    create = Change("google", Action.CREATE, "CAD", "cadmin", "new staff", after={
        "username": "cadmin", "login": f"cadmin@{DOMAINS['staff']}", "given_name": "Cal", "surname": "Admin",
        "display_name": "Cal Admin", "container": "Staff", "attributes": {}, "enabled": True, "anchor": "CAD"},
        password="Correct-Horse-42")
    connector = tenant.connector()
    try:
        [result] = list(connector.apply([create]))
    finally:
        connector.close()
    assert result.outcome is Outcome.FAILED and result.key is None
    assert "conflict" in result.detail and "super admin" in result.detail
