"""The access review from a live job on a real Samba DC: the workbook matches the directory, the SIRO's
Remove decision really removes the membership (guarded, audited), and the run summary arrives by SMTP."""

from __future__ import annotations

import time
from pathlib import Path

import openpyxl
import pytest

from idlifecycle.cli import main
from idlifecycle.job import run_sync
from idlifecycle.reports.access_review import KEPT_OUT, PEOPLE, RESTRICTED
from tests.integration.access_support import School, mailbox, members_of, school
from tests.integration.samba import samba_dc, samba_template

pytestmark = pytest.mark.samba
__all__ = ["mailbox", "samba_dc", "samba_template", "school"]

HEAD = "head@school.example.org"


@pytest.fixture(scope="module")
def reviewed_school(school: School) -> School:
    with school.job_path.open("a") as handle:
        handle.write(f'\n[report]\nschool_name = "Hilltop Academy"\nsummary_to = ["{HEAD}"]\n')
    job = school.job()
    try:
        run_sync(job)  # baseline memberships: SEV in the SEN group, all staff in the staff area
    finally:
        job.close()
    return school


def rows(path: Path, sheet: str) -> list[dict[str, object]]:
    values = list(openpyxl.load_workbook(path)[sheet].iter_rows(values_only=True))
    return [dict(zip(values[0], row, strict=True)) for row in values[1:]]


def test_the_review_of_a_live_school_matches_the_directory_and_a_remove_decision_is_carried_out(
        reviewed_school: School, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(reviewed_school.job_path)
    review = tmp_path / "review.xlsx"
    assert main(["--config", config, "report", "access-review", "--out", str(review), "--csv",
                 str(tmp_path / "csv")]) == 0
    assert (tmp_path / "csv" / "restricted-access.csv").exists()

    job = reviewed_school.job()
    try:
        with job.open_connectors() as connectors:
            snapshot = connectors["ad"].snapshot()
    finally:
        job.close()
    people = {(r["Username"], r["Person ID"], r["Account status"]) for r in rows(review, PEOPLE) if r["Directory"]}
    assert people == {(a.username, a.anchor, "Enabled" if a.enabled else "Disabled") for a in snapshot.accounts}

    access = rows(review, RESTRICTED)
    assert {(r["Share"], r["Person ID"], r["Basis"]) for r in access} == {
        ("sen-records", "SEV", "baseline (nobody)"),
        ("staff-shared", "HCA", "baseline (all-staff)"),
        ("staff-shared", "SEV", "baseline (all-staff)"),
        ("staff-shared", "TBR", "baseline (all-staff)"),
    }

    book = openpyxl.load_workbook(review)
    sheet = book[RESTRICTED]
    for number in range(2, sheet.max_row + 1):
        tom = sheet[f"F{number}"].value == "TBR"
        sheet[f"O{number}"] = "Remove" if tom else "Keep"
    book.save(review)

    plan_file = tmp_path / "plan.json"
    assert main(["--config", config, "report", "apply-decisions", str(review), "--out", str(plan_file)]) == 0
    assert '"remove-member"' in plan_file.read_text() and members_of(reviewed_school.job(), "Share-Staff") == {
        "HCA", "SEV", "TBR"}

    assert main(["--config", config, "report", "apply-decisions", str(review), "--apply"]) == 0
    assert "1 membership(s) to remove, 3 kept." in capsys.readouterr().out
    assert members_of(reviewed_school.job(), "Share-Staff") == {"HCA", "SEV"}
    [applied] = [e for e in reviewed_school.audit("change-applied") if e["action"] == "remove-member"
                 and e["person_id"] == "TBR"]
    assert applied["restricted"] and applied["reason"].startswith(
        "removed at the access review by Dr Ada Okafor on ")
    reviewed = reviewed_school.audit("access-reviewed")
    assert len(reviewed[-1]["rows"]) == len(access)

    again = tmp_path / "again.xlsx"
    assert main(["--config", config, "report", "access-review", "--out", str(again)]) == 0
    assert all(r["Last reviewed"] is not None for r in rows(again, RESTRICTED))
    # Tom is no longer a member: he is shown as kept out, with the SIRO's decision and its date.
    tom = [r for r in rows(again, RESTRICTED) if r["Share"] == "staff-shared" and r["Person ID"] == "TBR"]
    assert [(r["Basis"], str(r["Earlier decision"]).split(" on ")[0]) for r in tom] == [(KEPT_OUT, "Remove")]


def test_the_nightly_run_summary_is_mailed_to_the_configured_address(reviewed_school: School) -> None:
    job = reviewed_school.job()
    try:
        report = run_sync(job)  # the nightly run mails its own summary
    finally:
        job.close()
    # Earlier runs in this module mailed their summaries too: find this run's.
    headline = f"Run {report.run_id} of job 'access-test'"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        mine = [m for m in reviewed_school.mailbox.messages if HEAD in m.recipients and headline in m.text]
        if mine:
            break
        time.sleep(0.05)
    [received] = mine
    assert str(received.message["Subject"]).startswith("[idlifecycle] access-test:")
    assert "Exit codes: 0 done or nothing to do, 1 error, 2 stopped by a guard, 3 done but feed rows were refused." \
        in received.text
