"""A Global Administrator role held by a role-assignable group makes each of its members an admin account,
through the nightly job against the Graph emulator: a member matching a feed row is not adopted, and the
access review lists her on the Privileged roles sheet with the group the role comes through."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.config import Secrets
from idlifecycle.job import load_job, run_sync
from idlifecycle.model import Action
from idlifecycle.reports.access_review import PRIVILEGED, PRIVILEGED_NOT_MANAGED, build_review
from idlifecycle.reports.collect import collect_review
from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_SECRET, STAFF
from tests.integration.test_entra_privileged import STAFF_HEADER, groups_of, seed, user, write_school

NIA = f"nnetwork@{STAFF}"


def test_a_member_of_a_role_assignable_group_holding_global_admin_is_not_adopted_and_is_reviewed(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    school = seed()
    school["users"].append({"userPrincipalName": NIA, "givenName": "Nia", "surname": "Network",
                            "displayName": "Nia Network"})
    school["groups"].append({"displayName": "IT Admins", "isAssignableToRole": True, "members": [NIA]})
    school["directoryRoles"][0]["members"].append("IT Admins")
    emulator = make_emulator(school)
    job_file = write_school(tmp_path, emulator)
    with (tmp_path / "staff.csv").open("w", newline="", encoding="utf-8-sig") as handle:
        # Her feed row matches her account by login (first initial + surname): only the role stops it.
        csv.writer(handle).writerows([STAFF_HEADER,
                                      ["NNW", "Ms", "Nia", "Network", "Network Manager", "01/09/2019", ""]])
    before = user(emulator, NIA)

    job = load_job(job_file, today=date(2026, 9, 3), secrets=Secrets())
    try:
        report = run_sync(job)
        with job.open_connectors() as connectors:
            review, _ = collect_review(job, connectors)
    finally:
        job.close()

    assert user(emulator, NIA) == before, "the admin account was changed"
    assert groups_of(emulator, before["id"]) == ["IT Admins"]
    assert not [c for c in report.plan.changes if c.target == before["id"]]
    [create] = [c for c in report.plan.changes if c.action is Action.CREATE and c.person_id == "NNW"]
    assert create.username != "nnetwork"
    assert any(PRIVILEGED_NOT_MANAGED in n and NIA in n and "Global Administrator" in n for n in report.plan.notes), \
        report.plan.notes

    [sheet] = [s for s in build_review(review) if s.name == PRIVILEGED]
    rows = {row[2]: row for row in sheet.tables[0].rows}
    assert rows[NIA][1] == "Global Administrator (through the group IT Admins)"
    assert rows[NIA][-1] == PRIVILEGED_NOT_MANAGED
    assert "IT Admins" not in rows, "the group is not a person: its members are listed"
