"""Dormant accounts against the Google emulator (issue 17): the real google-api-python-client reads
lastLoginTime (the 1970 epoch meaning never), the dormant teacher is suspended through the API, the one in
the exempt group is kept, and the next night plans no re-enable."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

from idlifecycle.connectors.base import Capabilities
from idlifecycle.connectors.google.requests import ANCHOR_TYPE
from idlifecycle.model import Action, Kind, Outcome
from idlifecycle.planner import PlanState, plan
from tests.factories import school_rules, staff
from tests.integration.google_fixtures import DOMAINS, ROOT, Tenant, tenant_fixture

__all__ = ["tenant_fixture"]
GOOGLE = Capabilities(containers=True, revoke_sessions=True, password_rules="google")
BASE = school_rules()
RULES = replace(BASE, kinds={**BASE.kinds, Kind.STAFF: replace(
    BASE.kinds[Kind.STAFF], dormant_days=90, dormant_exempt_groups=("long-term-absence",))})
PEOPLE = [staff("S001", "Jo", "Smith"), staff("S003", "Mo", "Leave"), staff("S004", "Ned", "Never")]


def teacher(tenant: Tenant, pid: str, name: str, created: str, last_login: str) -> dict[str, Any]:
    user = tenant.emulator.directory.add_user(f"{name}@{DOMAINS['staff']}", "A", "B", "correct-horse-battery",
                                              org_unit=f"{ROOT}/Staff")
    user.update(externalIds=[{"type": ANCHOR_TYPE, "value": pid}], creationTime=created, lastLoginTime=last_login)
    return user


def test_a_dormant_teacher_is_suspended_the_exempt_one_kept_and_not_re_enabled(tenant: Tenant) -> None:
    directory = tenant.emulator.directory
    directory.add_orgunit_path(f"{ROOT}/Staff")
    jo = teacher(tenant, "S001", "jsmith", "2024-09-01T08:00:00.000Z", "2026-06-01T08:00:00.000Z")
    teacher(tenant, "S003", "mleave", "2024-09-01T08:00:00.000Z", "2026-01-10T08:00:00.000Z")
    ned = teacher(tenant, "S004", "nnever", "2025-01-06T08:00:00.000Z", "1970-01-01T00:00:00.000Z")
    absence = f"long-term-absence@{DOMAINS['staff']}"
    status, _ = directory.insert_group({"email": absence, "name": "long-term-absence",
                                        "description": "[managed by idlifecycle]"})
    assert status == 200
    directory.born.clear()  # seeded long ago: settled
    assert directory.insert_member(absence, {"email": f"mleave@{DOMAINS['staff']}"})[0] == 200
    connector = tenant.connector()

    def night() -> Any:
        return plan(PEOPLE, {"google": connector.snapshot()}, {"google": GOOGLE}, RULES, PlanState(),
                    date(2026, 11, 23))

    disables = [c for c in night().changes if c.action is Action.DISABLE]
    assert sorted((c.target, c.reason) for c in disables) == sorted([
        (jo["id"], "no sign-in since 2026-06-01"), (ned["id"], "never signed in, created 2025-01-06")])
    assert all(r.outcome is Outcome.APPLIED for r in connector.apply(disables))
    assert tenant.user(f"jsmith@{DOMAINS['staff']}")["suspended"] is True

    again = night()
    assert [c for c in again.changes if c.action in (Action.ENABLE, Action.DISABLE)] == []
