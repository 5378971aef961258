"""On the access review, admin accounts the tool leaves alone are recognised as such everywhere: through the
nightly job and the review's collection against the Graph emulator, a Global Admin and an account only
eligible (PIM) for the role, neither carrying a person ID, are "privileged, not managed" on the People
sheet, are no "No person ID" exception, and are both on the Privileged roles sheet; a reception desk
account without a person ID still is one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import openpyxl
import pytest

from idlifecycle.config import Secrets
from idlifecycle.job import load_job, run_sync
from idlifecycle.reports.access_review import (
    EXCEPTIONS,
    PEOPLE,
    PRIVILEGED,
    PRIVILEGED_NOT_MANAGED,
    SUMMARY,
    ExceptionKind,
    build_review,
)
from idlifecycle.reports.collect import collect_review
from idlifecycle.reports.workbook import write_xlsx
from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_SECRET, STAFF
from tests.integration.test_entra_privileged import seed, write_school


def test_admin_accounts_are_privileged_not_managed_on_every_sheet_not_unmatched_people(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    school = seed()
    school["users"].append({"userPrincipalName": f"reception@{STAFF}", "displayName": "Reception desk"})
    emulator = make_emulator(school)
    job = load_job(write_school(tmp_path, emulator), today=date(2026, 9, 3), secrets=Secrets())
    try:
        run_sync(job)
        with job.open_connectors() as connectors:
            review, _ = collect_review(job, connectors)
    finally:
        job.close()
    sheets = {s.name: s.tables[0].rows for s in build_review(review)}
    admins = {f"gadmin@{STAFF}": "Global Administrator", f"eligible@{STAFF}": "eligible for Global Administrator"}

    people = {row[8]: row for row in sheets[PEOPLE] if row[8] in admins}
    assert {login: row[5] for login, row in people.items()} == {
        login: f"Privileged, not managed ({role})" for login, role in admins.items()}
    assert all(row[0] is None for row in people.values()), "no person ID, and not listed as if one were missing"

    flagged = [row for row in sheets[EXCEPTIONS] if row[2] in ("gadmin", "eligible")]
    assert not [row for row in flagged if row[0] in (ExceptionKind.NO_ANCHOR, ExceptionKind.NOT_IN_FEED)], flagged

    privileged = {(row[1], row[2]): row for row in sheets[PRIVILEGED]}
    for login, role in admins.items():
        assert privileged[(role, login)][-1] == PRIVILEGED_NOT_MANAGED
    # The seed has no Entra ID P1: Graph refuses the registration report, the review still builds and says why.
    assert privileged[("Global Administrator", f"gadmin@{STAFF}")][6] == (
        "unknown — the tenant has no Entra ID P1 or P2 licence for the registration report")
    # An ordinary account without a person ID is still one (the check is not simply off).
    assert [row[5] for row in sheets[PEOPLE] if row[8] == f"reception@{STAFF}"] == ["No person ID"]
    assert [row[0] for row in sheets[EXCEPTIONS] if row[2] == "reception"] == [ExceptionKind.NO_ANCHOR]
    assert (f"reception@{STAFF}") not in {row[2] for row in sheets[PRIVILEGED]}


def test_entra_admins_with_and_without_a_second_factor_are_on_privileged_roles_and_summary(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With Entra ID P1 the registration report is read: Gail has an authenticator the policy allows, the
    break-glass account has nothing registered; read back from the written workbook with openpyxl."""
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    school = {**seed(), "premium": True}
    school["users"][0]["_registration"] = {"isMfaRegistered": True, "isMfaCapable": True,
                                           "methodsRegistered": ["microsoftAuthenticatorPush"]}
    emulator = make_emulator(school)
    job = load_job(write_school(tmp_path, emulator), today=date(2026, 9, 3), secrets=Secrets())
    try:
        run_sync(job)
        with job.open_connectors() as connectors:
            review, _ = collect_review(job, connectors)
    finally:
        job.close()
    path = tmp_path / "review.xlsx"
    write_xlsx(build_review(review), path)
    workbook = openpyxl.load_workbook(path)
    rows = list(workbook[PRIVILEGED].iter_rows(values_only=True))
    found = {(r["Role"], r["Username"]): (r["Second factor"], r["Flag"])
             for r in (dict(zip(rows[0], row, strict=True)) for row in rows[1:])}
    assert found[("Global Administrator", f"gadmin@{STAFF}")] == ("registered", None)
    assert found[("Global Administrator", "breakglass@example.sch.uk")] == ("none", "Admin without a second factor")
    lines = [[v for v in row if v is not None] for row in workbook[SUMMARY].iter_rows(values_only=True)]
    [finding] = [line for line in lines if line and line[0] == "Admin accounts without a second factor"]
    assert finding[1:5] == [1, 3, 2, 6]
