"""The nightly job with the sandbox Google tenant beside Entra: the same people, in step, run after run."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from idlifecycle.job import load_job, run_sync
from idlifecycle.model import Action
from tests.jobfiles import write_connector, write_job

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "src/idlifecycle/sandbox/sample_school"
GOOGLE = REPO / "connectors/google-sandbox.toml"


def _job(tmp_path: Path, pupils: list[str]) -> tuple[Path, set[str]]:
    feed = tmp_path / "pupils.csv"
    header, *rows = (SAMPLE / "pupils.csv").read_text(encoding="utf-8-sig").splitlines()
    feed.write_text("\n".join([header, *[r for r in rows if r.split(",")[0].strip('"') in pupils]]) + "\n")
    staff = tmp_path / "staff.csv"
    staff_lines = (SAMPLE / "staff.csv").read_text(encoding="utf-8-sig").splitlines()[:4]
    staff.write_text("\n".join(staff_lines) + "\n")
    # The demo's Entra tenant is seeded with the whole sample school; this small school gets a
    # tenant of its own, started from the emulator's example seed.
    entra = write_connector(tmp_path / "entra-sandbox.toml", "entra", "entra", {
        "sandbox": True, "seed": str(REPO / "src/idlifecycle/sandbox/graph_seed_example.json"),
        "domains": {"staff": "staff.example.sch.uk", "pupil": "pupils.example.sch.uk"},
        "group_marker": "Managed by idlifecycle"})
    job = write_job(tmp_path / "nightly.toml", connectors=[GOOGLE, entra], mappings=[REPO / "mappings/school.toml"],
                    feeds=[(feed, "pupil"), (staff, "staff")], state_dir=tmp_path / "state",
                    guards={"max_destructive": 5, "max_feed_drop_percent": 50})
    return job, {line.split(",")[0].strip('"') for line in staff_lines[1:]}


def test_nightly_job_keeps_google_in_step_with_the_school_and_with_entra(tmp_path: Path) -> None:
    first_day = date(2026, 9, 1)
    pupils = ["000101", "000102", "000103", "000104", "000105", "000106"]
    job_file, staff_codes = _job(tmp_path, pupils)

    report = run_sync(load_job(job_file, today=first_day))
    assert report.status == "ok", report.failures
    created = [c for c in report.plan.changes if c.action is Action.CREATE]
    assert len(created) == (len(pupils) + 3) * 2

    again = run_sync(load_job(job_file, today=first_day))
    assert again.status == "nothing-to-do", [c.to_json() for c in again.plan.changes]

    job = load_job(job_file, today=first_day)
    with job.open_connectors() as connectors:
        snapshots = job.snapshots(connectors)
    google = snapshots["google"]
    anchors = {a.anchor for a in google.accounts}
    assert anchors == {*pupils, *staff_codes}
    assert all(a.container.startswith(("Pupils/", "Staff")) for a in google.accounts)
    assert {g.name for g in google.groups} >= {"All Pupils", "All Staff"}
    all_pupils = next(g for g in google.groups if g.name == "All Pupils")
    assert len(all_pupils.members) == len(pupils)
    entra = [a for a in snapshots["entra"].accounts if a.anchor]  # the tenant's office mailbox has none
    assert {a.anchor for a in entra} == anchors
    assert {a.anchor: a.username for a in entra} == {a.anchor: a.username for a in google.accounts}
