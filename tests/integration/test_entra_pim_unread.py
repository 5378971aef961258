"""When Graph will not list PIM eligibilities (the app lacks the permission, or the tenant has no Entra ID
P2), the nightly job still runs, still keeps its hands off active role holders, and tells the school in
the plan's notes and the run summary that its protection is partial (Graph emulator, real msgraph-sdk)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.config import Secrets
from idlifecycle.job import load_job, run_sync
from idlifecycle.reports.access_review import PRIVILEGED_NOT_MANAGED
from idlifecycle.reports.summary import run_summary
from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_ID, CLIENT_SECRET, STAFF
from tests.integration.test_entra_privileged import groups_of, seed, user, write_school

WITHOUT_PIM_PERMISSION = ("User.ReadWrite.All", "GroupMember.ReadWrite.All", "Group.Create", "Directory.Read.All",
                          "LicenseAssignment.ReadWrite.All", "AuditLog.Read.All")
"""Directory.Read.All lists active role assignments, but not PIM eligibilities."""


@pytest.mark.parametrize(("pim", "why"), [
    (True, "the app lacks the application permission RoleEligibilitySchedule.Read.Directory"),
    (False, "the tenant has no Entra ID P2 licence"),
], ids=["no-permission", "no-p2"])
def test_unreadable_pim_eligibilities_leave_active_admins_protected_and_are_noted(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        pim: bool, why: str) -> None:
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    emulator = make_emulator({**seed(), "pim": pim})
    if pim:
        emulator.register_application(CLIENT_ID, secret=CLIENT_SECRET, roles=WITHOUT_PIM_PERMISSION)
    job_file = write_school(tmp_path, emulator)
    gail = user(emulator, f"gadmin@{STAFF}")

    job = load_job(job_file, today=date(2026, 9, 3), secrets=Secrets())
    try:
        report = run_sync(job)
    finally:
        job.close()

    assert report.status in ("ok", "partial"), report.failures
    assert user(emulator, f"gadmin@{STAFF}") == gail and groups_of(emulator, gail["id"]) == []
    assert not [c for c in report.plan.changes if c.target == gail["id"]]
    assert any(PRIVILEGED_NOT_MANAGED in n and f"gadmin@{STAFF}" in n for n in report.plan.notes)
    [note] = [n for n in report.plan.notes if "eligible (PIM) directory roles could not be read" in n]
    assert why in note and "only accounts holding a role now are protected" in note
    _, text = run_summary("nightly", report)
    assert f"  - {note}\n" in text
