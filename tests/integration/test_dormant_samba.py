"""Dormant accounts against a real Samba DC (issue 17): lastLogonTimestamp, written by an admin with ldap3
(Samba lets a Domain Admin set it), disables the dormant teacher and keeps the exempt one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from idlifecycle.connectors.ad import ADConnector
from idlifecycle.model import Action, Kind, Outcome, Plan
from idlifecycle.planner import PlanState, plan
from idlifecycle.store import Store
from tests.factories import AD_LIKE, school_rules, staff
from tests.integration.samba import DomainController, samba_dc, samba_template

pytestmark = pytest.mark.samba
__all__ = ["samba_dc", "samba_template"]
BASE = school_rules()
RULES = replace(BASE, kinds={**BASE.kinds, Kind.STAFF: replace(
    BASE.kinds[Kind.STAFF], dormant_days=90, dormant_exempt_groups=("Long-term absence",))})


def filetime(when: datetime) -> int:
    return int((when.timestamp() + 11_644_473_600) * 10_000_000)


@pytest.fixture
def ad(samba_dc: DomainController, tmp_path: Path) -> Iterator[ADConnector]:
    store = Store(tmp_path / "state.db")
    connector = ADConnector.from_config(samba_dc.connector_context(store))
    yield connector
    connector.close()
    store.close()


def test_lastlogontimestamp_disables_the_dormant_teacher_and_the_exempt_one_is_kept(
        ad: ADConnector, samba_dc: DomainController) -> None:
    conn = samba_dc.connection()
    last = filetime(datetime(2026, 6, 1, 8, tzinfo=UTC))
    for name, pid in (("dormjo", "D001"), ("dormmo", "D003")):
        assert conn.add(f"CN={name},{samba_dc.managed_dn}", ["top", "person", "organizationalPerson", "user"],
                        {"sAMAccountName": name, "employeeID": pid, "userAccountControl": 544,
                         "lastLogonTimestamp": str(last)}), conn.result
    groups = f"OU=Groups,{samba_dc.managed_dn}"
    conn.add(groups, ["top", "organizationalUnit"])
    assert conn.add(f"CN=Long-term absence,{groups}", ["top", "group"],
                    {"sAMAccountName": "Long-term absence", "member": [f"CN=dormmo,{samba_dc.managed_dn}"]}), \
        conn.result
    conn.unbind()
    people = [staff("D001", "Jo", "Dorm"), staff("D003", "Mo", "Dorm")]

    def night() -> Plan:
        return plan(people, {"ad": ad.snapshot()}, {"ad": AD_LIKE}, RULES, PlanState(), date(2026, 11, 23))

    disables = [c for c in night().changes if c.action is Action.DISABLE]
    assert [(c.username, c.reason) for c in disables] == [("dormjo", "no sign-in since 2026-06-01")]
    assert all(r.outcome is Outcome.APPLIED for r in ad.apply(disables))
    assert [c for c in night().changes if c.action in (Action.ENABLE, Action.DISABLE)] == []
