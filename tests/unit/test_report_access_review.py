"""The access-review workbook, read back with openpyxl and checked against the directory state it was built from."""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from openpyxl.worksheet.worksheet import Worksheet

from idlifecycle.reports.access_review import (
    EXCEPTIONS,
    PEOPLE,
    PRIVILEGED,
    RESTRICTED,
    SUMMARY,
    build_review,
    review_year_start,
)
from idlifecycle.reports.changes_sheet import CHANGES
from idlifecycle.reports.class_resets_sheet import CLASS_RESETS
from idlifecycle.reports.workbook import csv_file_name, write_csv, write_xlsx
from tests.unit.test_report_school import INJECTION_NAMES, TODAY, review_input


@pytest.fixture(scope="module")
def workbook(tmp_path_factory: pytest.TempPathFactory) -> openpyxl.Workbook:
    tmp = tmp_path_factory.mktemp("review")
    path = tmp / "review.xlsx"
    write_xlsx(build_review(review_input(tmp)), path)
    return openpyxl.load_workbook(path)


def records(ws: Worksheet) -> list[dict[str, Any]]:
    rows = list(ws.iter_rows(values_only=True))
    header = rows[0]
    return [dict(zip(header, row, strict=True)) for row in rows[1:]]


def test_the_workbook_has_the_six_sheets_in_the_order_the_siro_reads_them(workbook: openpyxl.Workbook) -> None:
    assert workbook.sheetnames == [SUMMARY, PEOPLE, RESTRICTED, PRIVILEGED, EXCEPTIONS, CHANGES, CLASS_RESETS]


def test_every_account_in_every_directory_is_on_the_people_sheet_as_the_directory_holds_it(
        workbook: openpyxl.Workbook, tmp_path: Path) -> None:
    data = review_input(tmp_path)
    rows = {(r["Directory"], r["Username"]): r for r in records(workbook[PEOPLE]) if r["Directory"]}
    total = 0
    for snapshot in data.snapshots.values():
        for account in snapshot.accounts:
            total += 1
            row = rows[(snapshot.directory, account.username)]
            assert row["Account status"] == ("Enabled" if account.enabled else "Disabled")
            assert row["Sign-in name"] == account.login
            assert (row["OU / org unit"] or "") == account.container
            assert row["Created"] == datetime.combine(account.created.date(), datetime.min.time())  # type: ignore[union-attr]
    assert len(rows) == total


def test_a_teacher_shows_her_groups_licence_and_sign_in_in_uk_time(workbook: openpyxl.Workbook) -> None:
    ada = next(r for r in records(workbook[PEOPLE]) if r["Directory"] == "entra" and r["Username"] == "alovelace")
    assert ada["Person ID"] == "S001"
    assert ada["Feed status"] == "Current"
    assert ada["Groups"] == "Licence - A3 Staff, SG-Safeguarding"
    assert ada["Licence"] == "Licence - A3 Staff"
    # 08:30 UTC on 15 July is 09:30 in London (British Summer Time); stored as a real date-time.
    assert ada["Last sign-in"] == datetime(2026, 7, 15, 9, 30)
    cell = next(c for c in workbook[PEOPLE]["L"] if c.value == datetime(2026, 7, 15, 9, 30))
    assert cell.is_date and cell.number_format == "dd/mm/yyyy hh:mm"


def test_a_starter_and_a_leaver_are_labelled_and_a_person_without_accounts_still_appears(
        workbook: openpyxl.Workbook) -> None:
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in records(workbook[PEOPLE]):
        by_id.setdefault(row["Person ID"], []).append(row)
    assert len(by_id["S003"]) == 1
    assert by_id["S003"][0]["Feed status"] == "Starts 01/09/2026"
    assert by_id["S003"][0]["Account status"] == "No account"
    assert {r["Feed status"] for r in by_id["S002"]} == {"Left 03/04/2026"}
    assert {r["Directory"] for r in by_id["S002"]} == {"entra", "ad"}
    assert [r["Feed status"] for r in by_id["S999"]] == ["Not in feed"]
    assert [r["Feed status"] for r in by_id[None]] == ["No person ID"]


def test_names_that_look_like_formulas_are_stored_as_text_never_as_formulas(workbook: openpyxl.Workbook) -> None:
    texts = {c.value: c for ws in workbook for row in ws.iter_rows() for c in row if isinstance(c.value, str)}
    for name in INJECTION_NAMES:
        cell = texts[f"{name} Smith"]
        assert cell.data_type == "s" and cell.quotePrefix, name
    risky = [c for c in texts.values() if c.value.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert len(risky) >= len(INJECTION_NAMES)
    assert all(c.data_type == "s" and c.quotePrefix for c in risky)
    formulas = [c for ws in workbook for row in ws.iter_rows() for c in row if c.data_type == "f"]
    assert formulas == []


def test_a_formula_in_an_audit_reason_stays_text_on_the_changes_sheet(workbook: openpyxl.Workbook) -> None:
    reasons = [c for c in workbook[CHANGES]["I"] if c.value == '=HYPERLINK("http://x")']
    assert len(reasons) == 1 and reasons[0].data_type == "s" and reasons[0].quotePrefix


def test_every_list_sheet_has_frozen_headers_a_filter_and_sensible_widths(workbook: openpyxl.Workbook) -> None:
    for name in (PEOPLE, RESTRICTED, PRIVILEGED, EXCEPTIONS, CHANGES):
        ws = workbook[name]
        assert ws.freeze_panes == "A2", name
        assert ws.auto_filter.ref is not None and ws.auto_filter.ref.startswith("A1:"), name
        assert ws["A1"].font.bold and ws["A1"].fill.fgColor.rgb.endswith("1F4E78"), name
        widths = [ws.column_dimensions[c].width for c in "ABC"]
        assert all(6 <= w <= 60 for w in widths), (name, widths)
        assert ws.print_title_rows == "$1:$1"


def test_the_restricted_access_sheet_lists_each_member_with_why_and_a_keep_remove_drop_down(
        workbook: openpyxl.Workbook) -> None:
    ws = workbook[RESTRICTED]
    rows = records(ws)
    assert [(r["Share"], r["Directory"], r["Username"], r["Basis"]) for r in rows] == [
        ("Safeguarding", "ad", "alovelace", "baseline: DSL role"),
        ("Safeguarding", "entra", "alovelace", "baseline: DSL role"),
        ("Safeguarding", "entra", "bcox", "grant"),
    ]
    brian = rows[2]
    assert brian["Approver"] == "Dinah Craik"
    assert brian["Approved at"] == datetime(2025, 10, 1, 15, 5)
    assert brian["Expires"] == datetime(2026, 3, 31)
    assert brian["Decision"] is None
    [validation] = ws.data_validations.dataValidation
    assert validation.type == "list" and validation.formula1 == '"Keep,Remove,Change expiry"'
    assert str(validation.sqref) == "O2:O4"
    assert ws["O1"].value == "Decision"


def test_admin_roles_show_who_holds_them_whether_they_are_still_staff_and_their_second_factor(
        workbook: openpyxl.Workbook) -> None:
    rows = [(r["Directory"], r["Role"], r["Username"], r["In the MIS feed as"], r["Second factor"], r["Flag"],
             r["Managed by idlifecycle"])
            for r in records(workbook[PRIVILEGED])]
    assert rows == [
        ("ad", "Domain Admins", "bcox", "Staff: Left 03/04/2026", "unknown — AD does not record a second factor",
         None, "privileged, not managed"),
        ("entra", "Global Administrator", "alovelace", "Staff: Current", "registered", None,
         "privileged, not managed"),
        ("entra", "Global Administrator", "breakglass", "No person ID", "none", "Admin without a second factor",
         "privileged, not managed"),
    ]


def test_exceptions_name_each_account_that_breaks_the_policy(workbook: openpyxl.Workbook) -> None:
    found = {(r["Exception"], r["Directory"], r["Username"]) for r in records(workbook[EXCEPTIONS])}
    assert found == {
        ("Leaver still enabled", "entra", "bcox"),  # the AD account was disabled: not listed
        ("Matches nobody in the feed", "entra", "oldtemp"),
        ("No person ID on the account", "entra", "reception"),
        ("Password never expires", "entra", "reception"),
        ("Password older than policy", "entra", "dcraik"),  # staff: 365 days; set in January 2025
        ("No sign-in for a long time", "google", "luke.nowak"),
        ("No sign-in for a long time", "ad", "newstarter"),
    }
    details = {r["Username"]: r["Detail"] for r in records(workbook[EXCEPTIONS])}
    assert details["bcox"] == "left on 03/04/2026 (108 days ago)"
    assert details["newstarter"] == "never signed in; created 02/01/2026"


def test_the_summary_counts_people_and_accounts_and_scores_each_finding_out_of_nine(
        workbook: openpyxl.Workbook) -> None:
    ws = workbook[SUMMARY]
    lines = [[v for v in row if v is not None] for row in ws.iter_rows(values_only=True)]
    assert lines[0] == ["Access review 2025/26: Hilltop Academy"]
    assert ["Staff", 2, 1, 1, 4] in lines
    assert ["Pupil", 8, 0, 0, 8] in lines
    # directory, enabled, disabled, of leavers, matching nobody (no or unknown person ID), total
    assert ["entra", 12, 0, 1, 2, 12] in lines
    assert ["ad", 2, 1, 1, 0, 3] in lines
    findings = {row[0]: row[1:5] for row in lines if len(row) == 7}
    assert findings["Leaver still enabled"] == [1, 3, 2, 6]
    assert findings["Restricted access past its expiry date"] == [1, 3, 2, 6]
    assert findings["Administrator roles held by someone not on the current staff list"] == [2, 3, 2, 6]
    assert findings["Accounts without a person ID"] == [1, 2, 2, 4]
    assert findings["Passwords older than the policy allows"] == [1, 2, 2, 4]
    # breakglass has none; "unknown" (AD) is not counted as none, nor as fine: it says why on the sheet.
    assert findings["Admin accounts without a second factor"] == [1, 3, 2, 6]
    score = next(c for row in ws.iter_rows() for c in row if c.value == 6)
    assert score.fill.fgColor.rgb.endswith("FFC7CE")  # high: red
    assert ["Senior Information Risk Owner (SIRO)"] in lines
    assert ["Name", "Dinah Craik"] in lines and ["Date"] in lines and ["Signature"] in lines
    assert any(str(r).startswith("B") and str(r).endswith(f":E{r.max_row}") for r in ws.merged_cells.ranges)


def test_changes_this_year_come_from_the_audit_log(workbook: openpyxl.Workbook) -> None:
    rows = records(workbook[CHANGES])
    assert [(r["Event"], r["Action"], r["Username"]) for r in rows] == [
        ("change.applied", "disable", "bcox"), ("guard.tripped", None, None), ("change.applied", "update", "pupil1"),
    ]
    assert rows[1]["Detail"] == "reasons: ['12 disables is over the limit of 10']"
    assert isinstance(rows[0]["When"], datetime)


def test_the_review_year_starts_on_the_first_of_september() -> None:
    assert review_year_start(TODAY, (9, 1)) == date(2025, 9, 1)
    assert review_year_start(date(2026, 9, 1), (9, 1)) == date(2026, 9, 1)


def test_each_sheet_exports_to_csv_with_formula_looking_names_behind_an_apostrophe(tmp_path: Path) -> None:
    sheets = build_review(review_input(tmp_path))
    paths = write_csv(sheets, tmp_path / "csv")
    assert [p.name for p in paths] == [csv_file_name(s.name) for s in sheets]
    with (tmp_path / "csv" / "people-and-accounts.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = {r["Name"] for r in rows}
    assert "'=1+1 Smith" in names and "'@SUM(A1) Smith" in names and "'-2 Smith" in names
    usernames = {r["Username"]: r for r in rows}
    assert usernames["alovelace"]["Created"] == "2024-09-01"
    fields = [v for r in rows for v in r.values()]
    for value in fields:
        assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
    with (tmp_path / "csv" / "changes-this-year.csv").open(encoding="utf-8-sig", newline="") as handle:
        reasons = [r["Reason"] for r in csv.DictReader(handle)]
    assert "'=HYPERLINK(\"http://x\")" in reasons
