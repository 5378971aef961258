"""Admin accounts in Entra ID, through the nightly job against the Graph emulator: a Global Admin in the
managed domain is never adopted, a break-glass admin elsewhere carrying a starter's employeeId never
becomes the starter's account, and the access review shows every role holder as not managed."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from idlifecycle.config import Secrets
from idlifecycle.connectors.entra import EntraConnector
from idlifecycle.job import load_job, run_sync
from idlifecycle.model import Action, Outcome
from idlifecycle.reports.access_review import PRIVILEGED, build_review
from idlifecycle.reports.collect import collect_review
from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_ID, CLIENT_SECRET, MARKER, PUPILS, STAFF, starter
from tests.jobfiles import LENIENT_GUARDS, write_connector, write_job

GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
STAFF_HEADER = ["Staff Code", "Title", "Forename", "Surname", "Role", "Start Date", "End Date"]
MAPPING = f"""
[staff]
username = "{{first_initial}}{{surname}}"
domain = "{STAFF}"
groups = ["All Staff", "Share-SEN-Restricted"]
attributes = {{ jobTitle = "{{role}}", employeeType = "staff" }}
match = ["login"]

[pupil]
username = "{{intake_year}}{{first_initial}}{{surname}}"
domain = "{PUPILS}"
groups = ["All Pupils"]
"""


def seed() -> dict[str, Any]:
    return {
        "tenant_id": "c0c0c0c0-0000-4000-8000-000000000003",
        "domains": [STAFF, PUPILS, "example.sch.uk"],
        "pim": True,  # Entra ID P2: eligible assignments can be read
        "users": [
            {"userPrincipalName": f"gadmin@{STAFF}", "givenName": "Gail", "surname": "Admin",
             "displayName": "Gail Admin (IT)"},
            {"userPrincipalName": f"eligible@{STAFF}", "givenName": "Eve", "surname": "Ligible",
             "displayName": "Eve Ligible"},
            {"userPrincipalName": "breakglass@example.sch.uk", "displayName": "Break Glass", "employeeId": "JNE"},
        ],
        "groups": [{"displayName": "All Staff", "description": MARKER, "members": []}],
        "directoryRoles": [{"displayName": "Global Administrator", "roleTemplateId": GLOBAL_ADMIN,
                            "members": [f"gadmin@{STAFF}", "breakglass@example.sch.uk"],
                            "eligible": [f"eligible@{STAFF}"]}],
    }


def write_school(tmp: Path, emulator: GraphEmulator) -> Path:
    with (tmp / "staff.csv").open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([
            STAFF_HEADER, ["GAD", "Ms", "Gail", "Admin", "Network Manager", "01/09/2019", ""],
            ["ELI", "Ms", "Eve", "Ligible", "Teacher", "01/09/2019", ""],
            ["JNE", "Mr", "Jo", "New", "Teacher", "01/09/2026", ""]])
    (tmp / "pupils.csv").write_text("Adno,UPN,Legal Forename,Preferred Forename,Legal Surname,Gender,Year,Reg Group,"
                                    "Admission Date,Leaving Date,Pupil Email\n"
                                    "000201,,Amy,,Pond,F,7,7A,01/09/2026,,\n", encoding="utf-8")
    (tmp / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    assert emulator.certificate is not None
    write_connector(tmp / "entra.toml", "entra", "entra", {
        "tenant_id": emulator.tenant_id, "client_id": CLIENT_ID, "authority_host": f"127.0.0.1:{emulator.port}",
        "graph_url": emulator.graph_url, "ca_file": str(emulator.certificate.cert), "group_marker": MARKER,
        "timeout_seconds": 5, "domains": {"staff": STAFF, "pupil": PUPILS}})
    return write_job(tmp / "job.toml", connectors=["entra.toml"], mappings=["mapping.toml"],
                     guards={"max_destructive": 20, **LENIENT_GUARDS})


def user(emulator: GraphEmulator, upn: str) -> dict[str, Any]:
    with emulator.directory.lock:
        return dict(next(u for u in emulator.directory.state["users"].values() if u["userPrincipalName"] == upn))


def groups_of(emulator: GraphEmulator, key: str) -> list[str]:
    with emulator.directory.lock:
        return [g["displayName"] for g in emulator.directory.state["groups"].values() if key in g["members"]]


def test_global_admins_are_never_adopted_or_taken_for_a_starter_and_are_reviewed_as_not_managed(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    emulator = make_emulator(seed())
    job_file = write_school(tmp_path, emulator)
    gail_before, eve_before = user(emulator, f"gadmin@{STAFF}"), user(emulator, f"eligible@{STAFF}")
    glass = user(emulator, "breakglass@example.sch.uk")

    job = load_job(job_file, today=date(2026, 9, 3), secrets=Secrets())
    try:
        report = run_sync(job)
        failed_audit = [e.data for e in job.store.audit_entries() if e.event == "change-failed"]
        with job.open_connectors() as connectors:
            review, _ = collect_review(job, connectors)
    finally:
        job.close()

    # The Global Admin and the eligible one in the managed domain: noted, untouched, and their people get
    # accounts of their own.
    for upn, before, role in ((f"gadmin@{STAFF}", gail_before, "Global Administrator"),
                              (f"eligible@{STAFF}", eve_before, "eligible for Global Administrator")):
        assert user(emulator, upn) == before, f"{upn} was changed"
        assert groups_of(emulator, before["id"]) == []
        assert any("privileged, not managed" in n and upn in n and role in n for n in report.plan.notes), \
            report.plan.notes
    creates = {c.person_id: c for c in report.plan.changes if c.action is Action.CREATE}
    assert creates["GAD"].username != "gadmin" and creates["ELI"].username != "eligible"
    assert not [c for c in report.plan.changes if c.target in (gail_before["id"], eve_before["id"])]

    # The break-glass admin carries Jo New's employeeId: his create fails naming it, and no group goes to it.
    results = {r.change_id: r for r in report.results}
    jo = results[creates["JNE"].change_id]
    assert jo.outcome is Outcome.FAILED and jo.key is None
    assert "breakglass@example.sch.uk is outside the managed domains" in jo.detail and "JNE" in jo.detail
    assert user(emulator, "breakglass@example.sch.uk") == glass
    assert groups_of(emulator, glass["id"]) == []
    assert any(a["person_id"] == "JNE" and a["action"] == "create" and "conflict" in a["detail"]
               for a in failed_audit), failed_audit

    [sheet] = [s for s in build_review(review) if s.name == PRIVILEGED]
    rows = {(row[1], row[2]): row for row in sheet.tables[0].rows}
    assert rows[("Global Administrator", f"gadmin@{STAFF}")][-1] == "privileged, not managed"
    assert rows[("Global Administrator", "breakglass@example.sch.uk")][-1] == "privileged, not managed"
    assert rows[("Global Administrator", f"gadmin@{STAFF}")][5] == "No person ID"


def test_a_deleted_account_outside_the_domains_with_a_starters_anchor_is_not_restored_for_them(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector]) -> None:
    emulator = make_emulator(seed())
    with emulator.directory.lock:
        old = next(u for u in emulator.directory.state["users"].values()
                   if u["userPrincipalName"] == "breakglass@example.sch.uk")
    emulator.directory.delete_user(old["id"])
    entra = make_connector(emulator)
    entra.snapshot()
    [result] = list(entra.apply([starter("JNE", "jnew", "Jo", "New", domain=STAFF)]))
    assert result.outcome is Outcome.FAILED and result.key is None
    assert "deleted account" in result.detail and "outside the managed domains" in result.detail
    with emulator.directory.lock:
        assert old["id"] in emulator.directory.state["deleted"], "left in the recycle bin"
