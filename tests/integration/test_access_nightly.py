"""The nightly run keeps restricted groups to what the SIRO approved: unapproved members are removed and
logged as security incidents, expired grants are removed and their requesters told (Samba DC, real SMTP)."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from idlifecycle.access.records import AccessRecords, utcnow
from idlifecycle.cli import main
from idlifecycle.job import Job, RunReport, run_sync
from idlifecycle.model import Action, Change, Outcome
from tests.integration.access_support import REQUESTER, SIRO, School, free_port, mailbox, members_of, school
from tests.integration.samba import samba_dc, samba_template

pytestmark = pytest.mark.samba
__all__ = ["mailbox", "samba_dc", "samba_template", "school"]

SEN_GROUP = "Share-SEN-Restricted"


def nightly(job: Job) -> tuple[RunReport, list[str]]:
    """The nightly sync (which hands the shares' groups to the planner and calls `after_run`)."""
    report = run_sync(job)
    return report, list(report.incidents)


def add_to_group_behind_our_back(job: Job, person_id: str) -> None:
    """What a technician does in ADUC: put someone straight into the restricted group."""
    with job.open_connectors() as connectors:
        ad = connectors["ad"]
        snapshot = ad.snapshot()
        account = next(a for a in snapshot.accounts if a.anchor == person_id)
        changes = []
        if not any(g.name == SEN_GROUP for g in snapshot.groups):
            changes.append(Change("ad", Action.CREATE_GROUP, None, "", "set-up", group=SEN_GROUP))
        changes.append(Change("ad", Action.ADD_MEMBER, person_id, account.username, "set-up", target=account.key,
                              group=SEN_GROUP))
        assert all(r.outcome is not Outcome.FAILED for r in ad.apply(changes))


def test_nightly_run_removes_unapproved_member_logs_incident_and_ends_expired_grant(school: School) -> None:
    job = school.job()
    try:
        add_to_group_behind_our_back(job, "HCA")  # never approved
        add_to_group_behind_our_back(job, "TBR")  # approved once, for a grant that ended yesterday
        records = AccessRecords(job.store)
        now = utcnow()
        asked = records.add_request("sen-records", "TBR", "Tom Brown", "Cover for exams", 20, REQUESTER,
                                    now - timedelta(days=21))
        expired = records.add_grant(asked, "siro@school.example.org", now - timedelta(days=21),
                                    now - timedelta(days=1))
        assert members_of(job, SEN_GROUP) == {"HCA", "TBR"}

        report, lines = nightly(job)

        removals = [c for c in report.plan.changes if c.action is Action.REMOVE_MEMBER and c.group == SEN_GROUP]
        assert {c.person_id for c in removals} == {"HCA", "TBR"} and all(c.restricted for c in removals)
        assert members_of(job, SEN_GROUP) == {"SEV"}  # the SENCo's role is the share's baseline
        assert members_of(job, "Share-Staff") == {"HCA", "SEV", "TBR"}

        incidents = [e.data for e in job.store.audit_entries() if e.event == "security-incident"]
        assert [(i["person_id"], i["group"], i["state"]) for i in incidents] == [("HCA", SEN_GROUP, "removed")]
        assert any(line.startswith("SECURITY INCIDENT: ") and "(HCA)" in line for line in lines), lines
        assert not any("(TBR)" in line and "INCIDENT" in line for line in lines)

        ended = records.grant(expired.grant_id)
        assert ended is not None and ended.end_reason == "expired"
        assert [e.data["grant_id"] for e in job.store.audit_entries() if e.event == "grant-expired"] == [
            expired.grant_id]
        assert any(f"grant #{expired.grant_id} ended" in line for line in lines), lines
        told = school.mailbox.wait_for(REQUESTER, "Access to SEN records for Tom Brown has ended")
        assert "expired" in told.text

        _, again = nightly(job)
        assert again == []
        assert len([e for e in job.store.audit_entries() if e.event == "security-incident"]) == 1
        assert job.store.verify_audit() == []
    finally:
        job.close()


def test_the_command_line_requests_lists_and_refuses_with_one_clear_line(
        school: School, capsys: pytest.CaptureFixture[str]) -> None:
    config = ["--config", str(school.job_path)]
    assert main([*config, "access", "request", "--share", "sen-records", "--person", "TBR", "--reason",
                 "Exam access arrangements", "--days", "5", "--requester", REQUESTER]) == 0
    out = capsys.readouterr().out
    assert "sent to Dr Ada Okafor <siro@school.example.org> for approval" in out
    assert "approve?t=" not in out  # the requester never sees the SIRO's link
    school.mailbox.wait_for(SIRO, "Tom Brown to SEN records")

    assert main([*config, "access", "request", "--share", "sen-records", "--person", "TBR", "--reason", "x",
                 "--days", "31"]) == 1
    assert "--days must be between 1 and 30 for sen-records" in capsys.readouterr().err
    assert main([*config, "access", "revoke", "999"]) == 1
    assert capsys.readouterr().err.strip() == (
        "idlifecycle: there is no grant #999; `idlifecycle access list` shows them")

    assert main([*config, "access", "list", "--share", "sen-records"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["share", "person", "name", "basis", "approved", "by", "until", "reason"]
    assert any(line.split()[:2] == ["sen-records", "SEV"] and "baseline" in line for line in listing)


def test_serve_runs_behind_a_reverse_proxy_with_a_health_check(school: School) -> None:
    port = free_port()
    command = [str(Path(sys.executable).parent / "idlifecycle"), "--config", str(school.job_path), "serve",
               "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.ConnectError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout and server.stdout.read()
                time.sleep(0.1)
        assert health.json() == {"status": "ok"}
        assert "server" not in health.headers
        proxied = httpx.get(f"http://127.0.0.1:{port}/approve?t=v1.forged.link",
                            headers={"X-Forwarded-For": "203.0.113.9", "User-Agent": "SafeLinks scanner"})
        assert proxied.status_code == 403
    finally:
        server.terminate()
        server.wait(10)
    output = server.stdout.read().decode() if server.stdout else ""
    assert "v1.forged.link" not in output  # link tokens never reach the server's log
    job = school.job()
    try:
        refusals = [e.data for e in job.store.audit_entries() if e.event == "approval-link-refused"]
    finally:
        job.close()
    assert refusals[-1]["client"] == "203.0.113.9" and refusals[-1]["user_agent"] == "SafeLinks scanner"
