"""Dormant accounts against the Graph emulator (issue 17): the real msgraph-sdk reads signInActivity from a
premium tenant, the planner disables the dormant teacher, keeps the exempt one, and the next night does not
re-enable; a tenant without Entra ID P1 gets no disable and one note."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from typing import Any

from idlifecycle.connectors.entra import EntraConnector
from idlifecycle.model import Action, Kind, Outcome
from idlifecycle.planner import PlanState, plan
from idlifecycle.sandbox.graph import GraphEmulator
from tests.factories import school_rules, staff
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import MARKER, STAFF, in_order, school_seed

TODAY = date(2026, 11, 23)
BASE = school_rules()
RULES = replace(BASE, kinds={**BASE.kinds, Kind.STAFF: replace(
    BASE.kinds[Kind.STAFF], dormant_days=90, dormant_exempt_groups=("Long-term absence",))})
PEOPLE = [staff("S001", "Jo", "Smith"), staff("S003", "Mo", "Leave")]


def seed(premium: bool) -> dict[str, Any]:
    base = school_seed()
    mo = {"userPrincipalName": f"mleave@{STAFF}", "givenName": "Mo", "surname": "Leave", "displayName": "Mo Leave",
          "employeeId": "S003", "jobTitle": "Teacher", "employeeType": "staff", "usageLocation": "GB"}
    exempt = {"displayName": "Long-term absence", "description": MARKER, "members": [f"mleave@{STAFF}"]}
    return {**base, "premium": premium, "users": [*base["users"], mo], "groups": [*base["groups"], exempt]}


def night(entra: EntraConnector) -> Any:
    return plan(PEOPLE, {"entra": entra.snapshot()}, {"entra": entra.capabilities}, RULES, PlanState(), TODAY)


def signed_in(emulator: GraphEmulator, upn: str, when: str) -> str:
    user = emulator.directory.user(upn)
    emulator.directory.state["users"][user["id"]]["signInActivity"] = {"lastSignInDateTime": when}
    return str(user["id"])


def test_a_dormant_teacher_is_disabled_the_exempt_one_kept_and_not_re_enabled_the_next_night(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector]) -> None:
    emulator = make_emulator(seed(premium=True))
    jo = signed_in(emulator, f"jsmith@{STAFF}", "2026-06-01T08:00:00Z")
    signed_in(emulator, f"mleave@{STAFF}", "2026-01-10T08:00:00Z")
    entra = make_connector(emulator, sign_in_activity=True)

    first = night(entra)
    # Amy and Hal are not on this feed, so their disables are leavers'; only the two teachers are asked about.
    disables = [c for c in first.changes if c.action is Action.DISABLE and c.person_id in ("S001", "S003")]
    assert [(c.username, c.reason) for c in disables] == [("jsmith", "no sign-in since 2026-06-01")]
    assert all(r.outcome is Outcome.APPLIED for r in in_order(entra, disables))
    assert emulator.directory.state["users"][jo]["accountEnabled"] is False

    second = night(entra)
    assert [c for c in second.changes if c.target == jo and c.action in (Action.ENABLE, Action.DISABLE)] == []


def test_without_entra_id_p1_nobody_is_disabled_and_the_plan_says_why_once(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector]) -> None:
    emulator = make_emulator(seed(premium=False))
    planned = night(make_connector(emulator, sign_in_activity=True))
    assert [c for c in planned.changes if c.action is Action.DISABLE and c.person_id in ("S001", "S003")] == []
    assert [n for n in planned.notes if n.startswith("dormant")] == [
        "dormant accounts not checked in entra: the tenant has no Entra ID P1 licence, so Graph gives no "
        "sign-in dates"]
