"""A Google leaver's delete waiting for their Drive and Calendar transfer, through the nightly job and the
Google emulator (google-sandbox, the real google-api-python-client): reported as waiting, not as a failed
change of a partial run, night after night while the transfer is new or in progress; never deleted before
it has completed; deleted, audited once, the night it has."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import date
from pathlib import Path

from idlifecycle.executor import run_journal_id
from idlifecycle.job import RunReport, load_job, run_sync
from idlifecycle.model import Action, Outcome
from idlifecycle.reports.summary import run_summary
from tests.integration.test_entra_job import STAFF_HEADER
from tests.jobfiles import LENIENT_GUARDS, write_connector, write_job

STAFF = "staff.example.sch.uk"
ARCHIVE = f"archive@{STAFF}"
MAPPING = f"""
[staff]
username = "{{first_initial}}{{surname}}"
domain = "{STAFF}"
container = "Staff"
groups = ["All Staff"]
retention_days = 1
leavers_container = "Leavers"
"""


def _school(tmp: Path, end_date: str) -> Path:
    with (tmp / "staff.csv").open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([STAFF_HEADER, ["JDO", "Mrs", "Jane", "Doe", "Teacher", "01/09/2019", end_date],
                                      ["BRA", "Mr", "Bob", "Ray", "Teacher", "01/09/2019", ""]])
    (tmp / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    write_connector(tmp / "google.toml", "google", "google-sandbox", {
        "admin": f"it.admin@{STAFF}", "domains": {"staff": STAFF}, "org_unit_root": "/School",
        "transfer_to": ARCHIVE})
    return write_job(tmp / "job.toml", connectors=["google.toml"], mappings=["mapping.toml"],
                     feeds=(("staff.csv", "staff"),), guards={"max_destructive": 20, **LENIENT_GUARDS})


def _night(job_file: Path, today: date) -> tuple[RunReport, list[tuple[str, str]], set[str]]:
    """The night's report, the audit events of its DELETEs, and the tenant's users after it."""
    job = load_job(job_file, today=today)
    try:
        report = run_sync(job)
        deletes = {c.change_id for c in report.plan.changes if c.action is Action.DELETE}
        audited = [(e.event, e.data.get("change_id", "")) for e in job.store.audit_entries()
                   if e.event.startswith("change-") and e.data.get("change_id") in deletes
                   and e.data.get("journal") == run_journal_id(report.run_id)]
        # Nothing left `started` for the next run's reconcile to settle: a wait is this run's outcome.
        assert [j.state for j in job.store.journal_states(run_journal_id(report.run_id)).values()] == [
            str(r.outcome) for r in report.results]
        assert job.store.started_changes() == []
    finally:
        job.close()
    tenant = json.loads((job_file.parent / "state/sandbox/google-sandbox/directory.json").read_text())
    return report, audited, {u["primaryEmail"] for u in tenant["directory"]["users"].values()}


def test_a_delete_waiting_for_its_transfer_is_reported_waiting_not_failed_and_deleted_once_it_completed(
        tmp_path: Path) -> None:
    job_file = _school(tmp_path, "")
    assert _night(job_file, date(2026, 9, 1))[0].status == "ok"
    state = tmp_path / "state/sandbox/google-sandbox/directory.json"
    tenant = json.loads(state.read_text())
    tenant["data_transfers"]["polls_to_complete"] = 2  # Google takes two more nights to finish it
    state.write_text(json.dumps(tenant))

    _school(tmp_path, "05/09/2026")
    report, _, users = _night(job_file, date(2026, 9, 10))
    assert report.status == "ok" and f"jdoe@{STAFF}" in users  # disabled tonight, deleted after retention

    for today in (date(2026, 9, 11), date(2026, 9, 12)):  # the transfer is new, then in progress
        report, audited, users = _night(job_file, today)
        assert report.status == "ok", report.failures
        assert report.failures == ()
        [waiting] = report.waiting
        assert waiting.startswith("google: delete jdoe: the delete waits for Data Transfer ") and ARCHIVE in waiting
        assert [r.outcome for r in report.results] == [Outcome.WAITING]
        assert f"jdoe@{STAFF}" in users, "never deleted before the transfer has completed"
        assert [event for event, _ in audited] == ["change-started", "change-waiting"]
        subject, text = run_summary("nightly", report)
        assert "FAILED" not in subject and "Failures" not in text
        assert "Waiting, not failed" in text and waiting in text

    report, audited, users = _night(job_file, date(2026, 9, 13))  # completed: the delete goes
    assert report.status == "ok", report.failures
    assert [r.outcome for r in report.results] == [Outcome.APPLIED] and report.waiting == ()
    assert f"jdoe@{STAFF}" not in users and f"bray@{STAFF}" in users
    assert Counter(event for event, _ in audited) == {"change-started": 1, "change-applied": 1}
    tenant = json.loads(state.read_text())
    assert tenant["data_transfers"]["inserted"] == 1
    assert _night(job_file, date(2026, 9, 14))[0].status == "nothing-to-do"
