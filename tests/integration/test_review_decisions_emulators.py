"""The night after the access review in the cloud: the SEN share has an access group in Entra (the Graph
emulator, through msgraph-sdk) and in Google Workspace (the Directory API emulator, through
google-api-python-client). Two SENCos the SIRO marked Remove stay out of both, the plan says why, an
approval through the access flow puts one back, and the next review shows the decision with its date."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from idlifecycle.access.service import Access
from idlifecycle.cli import main
from idlifecycle.job import Job, load_job, run_sync
from idlifecycle.model import Action
from idlifecycle.reports.access_review import KEPT_OUT, RESTRICTED
from idlifecycle.reports.collect import last_reviewed
from tests.integration.access_support import (
    SIGNING_KEY,
    SIRO,
    SMTP_PASSWORD,
    SMTP_USER,
    Mailbox,
    ServedApp,
    approve_by_link,
    decide_in_workbook,
    free_port,
    link_in,
    mailbox,
    review_rows,
    serve,
    stop,
)
from tests.jobfiles import LENIENT_GUARDS, write_connector, write_job

__all__ = ["mailbox"]

REPO = Path(__file__).resolve().parents[2]
GOOGLE = REPO / "connectors/google-sandbox.toml"
GROUPS = {"entra": "SG-SEN-Restricted", "google": "sen-restricted"}
STAFF = """"Staff Code","Title","Forename","Surname","Role","Start Date","End Date"
"HCA","Mrs","Helen","Carter","Head Teacher","01/09/2015",""
"SEV","Ms","Siân","Evans","SENCo","01/09/2018",""
"TBR","Mr","Tom","Brown","SENCo","01/09/2020",""
"""
SHARES = f"""
[shares.sen-records]
title = "SEN records"
classification = "restricted"
owner = "SENCo"
groups = {{ entra = "{GROUPS['entra']}", google = "{GROUPS['google']}" }}
baseline = "nobody"
baseline_roles = ["SENCo"]
max_grant_days = 30
"""


@pytest.fixture
def cloud_school(tmp_path: Path, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, ServedApp]]:
    (tmp_path / "staff.csv").write_text(STAFF, encoding="utf-8")
    (tmp_path / "shares.toml").write_text(SHARES, encoding="utf-8")
    entra = write_connector(tmp_path / "entra-sandbox.toml", "entra", "entra", {
        "sandbox": True, "seed": str(REPO / "src/idlifecycle/sandbox/graph_seed_example.json"),
        "domains": {"staff": "staff.example.sch.uk", "pupil": "pupils.example.sch.uk"},
        "group_marker": "Managed by idlifecycle"})
    port = free_port()
    job_path = write_job(
        tmp_path / "nightly.toml", connectors=[GOOGLE, entra], mappings=[REPO / "mappings/school.toml"],
        feeds=[(tmp_path / "staff.csv", "staff")], state_dir=tmp_path / "state",
        guards={**LENIENT_GUARDS, "max_destructive": 5},
        sections={
            "access": {"shares": "shares.toml", "siro_email": SIRO, "siro_name": "Dr Ada Okafor"},
            "mail": {"transport": "smtp", "from_address": SMTP_USER, "smtp_host": "127.0.0.1",
                     "smtp_port": mailbox.port, "security": "starttls", "smtp_username": SMTP_USER,
                     "ca_file": str(mailbox.ca_file)},
            "web": {"public_base_url": f"http://127.0.0.1:{port}"},
        })
    monkeypatch.setenv("IDLIFECYCLE_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("IDLIFECYCLE_APPROVAL_SIGNING_KEY", SIGNING_KEY)
    app = serve(job_path, port)
    try:
        yield job_path, app
    finally:
        stop(app)


def sen_members(job: Job) -> dict[str, set[str]]:
    """directory -> person ids in the SEN share's group there."""
    try:
        with job.open_connectors() as connectors:
            snapshots = job.snapshots(connectors)
    finally:
        job.close()
    found: dict[str, set[str]] = {}
    for directory, group_name in GROUPS.items():
        snapshot = snapshots[directory]
        anchors = {a.key: a.anchor for a in snapshot.accounts}
        group = next((g for g in snapshot.groups if g.name == group_name), None)
        found[directory] = {anchors.get(k) or k for k in (group.members if group else {})}
    return found


def test_sencos_the_siro_removed_stay_out_of_entra_and_google_the_night_after_the_review(
        cloud_school: tuple[Path, ServedApp], mailbox: Mailbox, tmp_path: Path) -> None:
    job_path, _ = cloud_school
    config = str(job_path)
    first = run_sync(load_job(job_path))
    assert first.status == "ok", first.failures
    assert sen_members(load_job(job_path)) == {"entra": {"SEV", "TBR"}, "google": {"SEV", "TBR"}}

    review = tmp_path / "review.xlsx"
    assert main(["--config", config, "report", "access-review", "--out", str(review)]) == 0
    decide_in_workbook(review, {("sen-records", d, p): ("Remove", "Not SEN staff this year")
                                for d in GROUPS for p in ("SEV", "TBR")})
    assert main(["--config", config, "report", "apply-decisions", str(review), "--apply"]) == 0
    assert sen_members(load_job(job_path)) == {"entra": set(), "google": set()}

    night = run_sync(load_job(job_path))
    assert night.status in ("ok", "nothing-to-do"), night.failures
    assert sen_members(load_job(job_path)) == {"entra": set(), "google": set()}
    assert not [c for c in night.plan.changes if c.group in GROUPS.values()]
    kept_out = sorted(n for n in night.plan.notes if "by the SIRO's decision of" in n)
    assert [n.split(":")[0] for n in kept_out] == ["entra", "entra", "google", "google"]
    assert all(f"({review.name})" in n for n in kept_out)

    # The SIRO approves Tom again through the access flow: the grant puts him back in both directories.
    job = load_job(job_path)
    try:
        request_id = Access(job).request("sen-records", "TBR", "Covering annual reviews", 14,
                                         "office@school.example.org").request_id
    finally:
        job.close()
    approve_by_link(link_in(mailbox.wait_for(SIRO, f"Access request #{request_id}:")))
    night = run_sync(load_job(job_path))
    assert sen_members(load_job(job_path)) == {"entra": {"TBR"}, "google": {"TBR"}}
    assert not [c for c in night.plan.changes if c.action is Action.ADD_MEMBER and c.person_id == "SEV"]

    later = tmp_path / "review-later.xlsx"
    assert main(["--config", config, "report", "access-review", "--out", str(later)]) == 0
    sen = {(r["Directory"], r["Person ID"]): r for r in review_rows(later, RESTRICTED)}
    job = load_job(job_path)
    try:
        reviewed = last_reviewed(job)
    finally:
        job.close()
    for directory in GROUPS:
        assert sen[(directory, "SEV")]["Basis"] == KEPT_OUT
        assert str(sen[(directory, "SEV")]["Earlier decision"]).startswith("Remove on ")
        assert str(sen[(directory, "SEV")]["Earlier decision"]).endswith("(review.xlsx): Not SEN staff this year")
        assert str(sen[(directory, "TBR")]["Basis"]).startswith("grant #")
        assert sen[(directory, "SEV")]["Last reviewed"] is not None
    assert len(reviewed) == 4

    # A later review says otherwise: the SIRO marks Siân Keep on her kept-out rows, and the baseline adds her back.
    decide_in_workbook(later, {("sen-records", d, "SEV"): ("Keep", "Back in the SEN team") for d in GROUPS})
    assert main(["--config", config, "report", "apply-decisions", str(later), "--apply"]) == 0
    night = run_sync(load_job(job_path))
    assert sen_members(load_job(job_path)) == {"entra": {"SEV", "TBR"}, "google": {"SEV", "TBR"}}
    assert not [n for n in night.plan.notes if "by the SIRO's decision of" in n]
