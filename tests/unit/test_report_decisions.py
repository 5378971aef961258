"""The SIRO marks rows Remove in the workbook; the tool turns exactly those rows into guarded removals."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pytest

from idlifecycle.cli import main
from idlifecycle.errors import UserError
from idlifecycle.model import Action, Plan, plan_to_json
from idlifecycle.reports.access_review import RESTRICTED, build_review
from idlifecycle.reports.decisions import plan_removals, read_decisions, share_groups
from idlifecycle.reports.workbook import write_xlsx
from tests.unit.test_report_school import TODAY, restricted, review_input, snapshots


def returned_workbook(tmp_path: Path, decisions: dict[int, str], edits: dict[str, str] | None = None) -> Path:
    """The workbook as the SIRO sends it back: `decisions` maps sheet row -> Keep / Remove."""
    path = tmp_path / "review.xlsx"
    write_xlsx(build_review(review_input(tmp_path)), path)
    book = openpyxl.load_workbook(path)
    ws = book[RESTRICTED]
    for row, choice in decisions.items():
        ws[f"O{row}"] = choice
    for ref, value in (edits or {}).items():
        ws[ref] = value
    book.save(path)
    return path


def plan(path: Path):  # type: ignore[no-untyped-def]
    return plan_removals(path, read_decisions(path), snapshots=snapshots(), shares=share_groups(restricted()),
                         siro="Dinah Craik", on=TODAY)


def test_a_workbook_with_remove_decisions_becomes_a_plan_removing_exactly_those_memberships(tmp_path: Path) -> None:
    # Rows: 2 ad/alovelace, 3 entra/alovelace, 4 entra/bcox (sorted by share, directory, name).
    path = returned_workbook(tmp_path, {2: "Remove", 3: "Keep", 4: "remove "})
    removals = plan(path)
    assert removals.notes == []
    assert [(c.directory, c.action, c.group, c.target, c.username, c.person_id, c.restricted)
            for c in removals.changes] == [
        ("ad", Action.REMOVE_MEMBER, "SG-Safeguarding", "ad-ada", "alovelace", "S001", True),
        ("entra", Action.REMOVE_MEMBER, "SG-Safeguarding", "e-brian", "bcox", "S002", True),
    ]
    assert all(c.destructive for c in removals.changes)
    assert removals.changes[0].reason == "removed at the access review by Dinah Craik on 2026-07-20 (Safeguarding)"


def test_a_workbook_with_no_decisions_plans_nothing(tmp_path: Path) -> None:
    assert plan(returned_workbook(tmp_path, {})).changes == []


def test_rows_edited_to_name_something_else_are_refused_with_their_row_numbers(tmp_path: Path) -> None:
    path = returned_workbook(tmp_path, {2: "Remove", 3: "Remove", 4: "Delete"},
                             edits={"A2": "Finance", "D3": "moodle"})
    with pytest.raises(UserError) as caught:
        plan(path)
    # The bad Decision value is found while reading, before anything is matched against the job.
    assert "row 4: Decision 'Delete' is neither Keep, Remove nor Change expiry" in str(caught.value)

    path = returned_workbook(tmp_path, {2: "Remove", 3: "Remove", 4: "Remove"},
                             edits={"A2": "Finance", "D3": "moodle", "E4": "All Staff"})
    with pytest.raises(UserError) as caught:
        plan(path)
    message = str(caught.value)
    assert "3 problem(s)" in message
    assert "row 2: share 'Finance' is not a restricted share of this job (known: Safeguarding)" in message
    assert "row 3: directory 'moodle' is not one of this job's directories" in message
    assert "row 4: group 'All Staff' is not the access group of share 'Safeguarding' in entra" in message


def test_a_row_naming_an_account_that_does_not_exist_or_another_person_is_refused(tmp_path: Path) -> None:
    path = returned_workbook(tmp_path, {2: "Remove", 3: "Remove"}, edits={"I2": "no-such-key", "F3": "S004"})
    with pytest.raises(UserError) as caught:
        plan(path)
    message = str(caught.value)
    assert "row 2: ad has no account with key 'no-such-key' (username 'alovelace')" in message
    assert "row 3: person ID 'S004' does not match account 'alovelace' in entra (its person ID is 'S001')" in message


def test_someone_who_already_left_the_group_needs_no_change_and_is_said_so(tmp_path: Path) -> None:
    path = returned_workbook(tmp_path, {2: "Remove"}, edits={"E2": "SG-Safeguarding"})
    current = snapshots()
    ad = current["ad"]
    emptied = type(ad)(ad.directory, ad.accounts, tuple(type(g)(g.directory, g.key, g.name, {}) for g in ad.groups))
    removals = plan_removals(path, read_decisions(path), snapshots={**current, "ad": emptied},
                             shares=share_groups(restricted()), siro="Dinah Craik", on=TODAY)
    assert removals.changes == []
    assert removals.notes == ["row 2: Given alovelace (alovelace) is no longer in SG-Safeguarding in ad: "
                              "nothing to remove"]


def test_a_file_that_is_not_the_review_workbook_is_a_clear_error(tmp_path: Path) -> None:
    not_excel = tmp_path / "review.xlsx"
    not_excel.write_text("name,decision\n")
    with pytest.raises(UserError, match=r"not an Excel workbook \(\.xlsx\)"):
        read_decisions(not_excel)
    with pytest.raises(UserError, match="no such file"):
        read_decisions(tmp_path / "missing.xlsx")
    other = tmp_path / "other.xlsx"
    openpyxl.Workbook().save(other)
    with pytest.raises(UserError, match="no sheet named 'Restricted access'"):
        read_decisions(other)


def test_a_keep_row_edited_to_name_another_person_is_refused_since_a_keep_lifts_an_earlier_remove(
        tmp_path: Path) -> None:
    path = returned_workbook(tmp_path, {3: "Keep"}, edits={"F3": "S004"})
    with pytest.raises(UserError) as caught:
        plan(path)
    assert "row 3: person ID 'S004' does not match account 'alovelace' in entra (its person ID is 'S001')" \
        in str(caught.value)


def test_every_checked_decision_is_kept_with_the_siros_note_and_the_accounts_own_person_id(tmp_path: Path) -> None:
    path = returned_workbook(tmp_path, {2: "Remove", 3: "Keep"}, edits={"F2": None, "P3": "Needs it for EHCPs"})
    decided = plan(path).decided
    assert [(d.row, d.choice, d.person_id, d.note) for d in decided] == [
        (2, "Remove", "S001", ""), (3, "Keep", "S001", "Needs it for EHCPs")]


def test_a_saved_decisions_plan_whose_decisions_were_edited_is_refused_in_one_line_before_anything_is_applied(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = Plan((), {}, plan_id="review-plan", origin="access-review",
                 decisions={"siro": "Dinah Craik", "rows": [{"row": 2, "share": "Safeguarding"}]})
    path = tmp_path / "decisions.json"
    path.write_text(json.dumps(plan_to_json(saved)))
    # No job file is needed to see it: the plan is read first.
    assert main(["--config", str(tmp_path / "job.toml"), "apply", str(path)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"idlifecycle: {path}: its \"decisions\" are not as `report apply-decisions --out` "
                            "wrote them")
    assert "\n" not in error and "Traceback" not in error


def test_a_change_of_expiry_needs_a_date_after_today_and_a_grant_to_change(tmp_path: Path) -> None:
    path = returned_workbook(tmp_path, {2: "Change expiry", 3: "Change expiry"}, edits={"M2": "soon"})
    with pytest.raises(UserError) as caught:
        read_decisions(path)
    assert "row 2: Change expiry needs the new end date in Expires (dd/mm/yyyy), not 'soon'" in str(caught.value)

    path = returned_workbook(tmp_path, {2: "Change expiry", 3: "Change expiry"},
                             edits={"M2": "01/08/2026", "M3": "19/07/2026"})
    with pytest.raises(UserError) as caught:
        plan_removals(path, read_decisions(path), snapshots=snapshots(), shares=share_groups(restricted()),
                      siro="Dinah Craik", on=TODAY, grants={("Safeguarding", "S001"): 7})
    assert "row 3: the new expiry 2026-07-19 is not after today (2026-07-20)" in str(caught.value)
    grants = {("Safeguarding", "S001"): 7}
    path = returned_workbook(tmp_path, {2: "Change expiry", 4: "Change expiry"},
                             edits={"M2": "01/08/2026", "M4": "01/08/2026"})
    with pytest.raises(UserError) as caught:
        plan_removals(path, read_decisions(path), snapshots=snapshots(), shares=share_groups(restricted()),
                      siro="Dinah Craik", on=TODAY, grants=grants)
    assert "row 4: bcox holds no grant for 'Safeguarding' whose expiry could change" in str(caught.value)
    assert "row 2" not in str(caught.value)
