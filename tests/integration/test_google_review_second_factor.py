"""Google admins and their 2-Step Verification on the access review, through the real client against the
emulator: a super admin enrolled and enforced, a delegated admin enrolled only, and a super admin outside the
managed org units with no second factor are all on *Privileged roles* with their state, the last flagged, and
*Summary* counts one admin without a second factor — read back from the written workbook with openpyxl."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import openpyxl

from idlifecycle.reports.access_review import PRIVILEGED, SUMMARY, ReportOptions, ReviewInput, build_review
from idlifecycle.reports.workbook import write_xlsx
from tests.integration.google_fixtures import ADMIN, DOMAINS, ROOT, Tenant, tenant_fixture

__all__ = ["tenant_fixture"]


def test_google_admins_are_on_the_review_with_their_2sv_state_and_one_without_is_a_finding(
        tenant: Tenant, tmp_path: Path) -> None:
    directory = tenant.emulator.directory
    tenant.user(ADMIN).update(isEnrolledIn2Sv=True, isEnforcedIn2Sv=True)  # the admin the connector acts as
    directory.add_orgunit_path(f"{ROOT}/Staff")
    domain = DOMAINS["staff"]
    careful = directory.add_user(f"careful@{domain}", "Cara", "Ful", "correct-horse-battery",
                                 org_unit=f"{ROOT}/Staff", admin=True)
    careful.update(isEnrolledIn2Sv=True, isEnforcedIn2Sv=True)
    helper = directory.add_user(f"helper@{domain}", "Hal", "Per", "correct-horse-battery", org_unit=f"{ROOT}/Staff")
    helper.update(isDelegatedAdmin=True, isEnrolledIn2Sv=True)
    # Outside the managed org units (never in a snapshot): still an admin of the domain, and none of 2SV.
    directory.add_user(f"oldboss@{domain}", "Old", "Boss", "correct-horse-battery", admin=True)
    directory.add_user(f"teacher@{domain}", "Tea", "Cher", "correct-horse-battery", org_unit=f"{ROOT}/Staff")

    connector = tenant.connector()
    try:
        snapshot = connector.snapshot()
        holders = list(connector.privileged_roles())
    finally:
        connector.close()
    review = ReviewInput(date(2026, 9, 3), [], {"google": snapshot}, {"google": holders}, [], [], ReportOptions())
    path = tmp_path / "review.xlsx"
    write_xlsx(build_review(review), path)
    workbook = openpyxl.load_workbook(path)

    rows = list(workbook[PRIVILEGED].iter_rows(values_only=True))
    header = rows[0]
    found = {r["Username"]: (r["Role"], r["Second factor"], r["Flag"])
             for r in (dict(zip(header, row, strict=True)) for row in rows[1:])}
    assert found == {
        ADMIN: ("super admin", "enforced", None),
        f"careful@{domain}": ("super admin", "enforced", None),
        f"helper@{domain}": ("delegated admin", "registered", None),
        f"oldboss@{domain}": ("super admin", "none", "Admin without a second factor"),
    }
    lines = [[v for v in row if v is not None] for row in workbook[SUMMARY].iter_rows(values_only=True)]
    [finding] = [line for line in lines if line and line[0] == "Admin accounts without a second factor"]
    assert finding[1:6] == [1, 3, 2, 6, "High"]
