"""Approvals and revocations on the SQLite directory double: each acts afresh, and none interleaves with a run."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from idlifecycle.access.records import Grant, utcnow
from idlifecycle.access.service import Access, Client
from idlifecycle.access.tokens import new_cookie_value
from idlifecycle.job import load_job
from tests import jobfiles
from tests.doubles import FileDirectory
from tests.e2e.school import write_job
from tests.e2e.test_cli import idl, school
from tests.factories import ROOT

SIGNING_KEY = "test-signing-key-0123456789-abcdefghijklmnopqrstuvwxyz"
SIRO = "siro@school.example.org"
GROUP = "Share-SEN-Restricted"
SHARES = f"""
[shares.sen-records]
title = "SEN records"
classification = "restricted"
owner = "Helen Carter, Head Teacher"
groups = {{ ad = "{GROUP}" }}
baseline = "nobody"
max_grant_days = 30
"""


@pytest.fixture
def job_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The e2e school with a restricted share; its first night has run."""
    school(tmp_path)
    write_job(tmp_path)
    (tmp_path / "shares.toml").write_text(SHARES, encoding="utf-8")
    jobfiles.write_job(tmp_path / "job.toml", connectors=["connectors/double.toml"],
                       mappings=[ROOT / "mappings" / "school.toml"], guards={},
                       sections={"access": {"shares": "shares.toml", "siro_email": SIRO, "siro_name": "Dr Ada Okafor"},
                                 "web": {"public_base_url": "https://idl.example.org"}})
    monkeypatch.setenv("IDLIFECYCLE_APPROVAL_SIGNING_KEY", SIGNING_KEY)
    night = idl(tmp_path, "sync")
    assert night.returncode == 0, night.stderr
    return tmp_path / "job.toml"


def members(tmp: Path) -> set[str]:
    directory = FileDirectory("ad", tmp / "directory.sqlite")
    usernames = {a.key: a.username for a in directory.accounts()}
    return {usernames.get(k, k) for k in directory.members(GROUP)}


def approve(job_file: Path, person_id: str) -> tuple[Grant, list[str]]:
    """The SIRO approves a request through its link, as the web app's POST does."""
    job = load_job(job_file)
    try:
        access = Access(job)
        now = utcnow()
        request = access.records.add_request("sen-records", person_id, "Jane Doe", "covering SEN reviews", 7,
                                             "office@school.example.org", now)
        token, claims = access.signer.mint(request.request_id, SIRO, now + timedelta(hours=1))
        access.records.add_link(claims.nonce, request.request_id, SIRO, now, claims.expires)
        cookie = new_cookie_value()
        decision = access.decide(token, "approve", cookie, access.signer.csrf_token(cookie, claims.nonce), Client())
        assert decision.grant is not None
        return decision.grant, decision.notes
    finally:
        job.close()


def revoke(job_file: Path, grant: Grant) -> list[str]:
    job = load_job(job_file)
    try:
        return Access(job).revoke(grant.grant_id, "cli:test")[1]
    finally:
        job.close()


def test_approve_revoke_approve_revoke_leaves_the_person_out_of_the_restricted_group(job_file: Path):
    tmp = job_file.parent
    for _ in range(2):
        grant, notes = approve(job_file, "JDO")
        assert members(tmp) == {"jdoe"}, notes
        notes = revoke(job_file, grant)
        assert members(tmp) == set(), f"the revocation must reach the directory: {notes}"
        assert notes == [f"ad: jdoe removed from {GROUP}"]


def test_an_approval_while_the_nightly_run_holds_the_lock_is_left_to_the_nightly_run(job_file: Path):
    tmp = job_file.parent
    running = load_job(job_file)
    try:
        with running.lock():
            _, notes = approve(job_file, "JDO")
            assert members(tmp) == set(), "nothing is written to the directories while a run holds the lock"
    finally:
        running.close()
    assert len(notes) == 1 and "job 'nightly' is already running" in notes[0] and notes[0].endswith(
        "the nightly run will")
    night = idl(tmp, "sync")
    assert night.returncode == 0, night.stderr
    assert members(tmp) == {"jdoe"}
