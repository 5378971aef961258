"""A staff leaver's licence kept in one directory and removed at once in another: a trust's two Entra tenants
in one job, the kind's `licence_kept_days = 30` and `[staff.directories.trust] licence_kept_days = 0`, through
the job and two Graph emulators with the real msgraph-sdk."""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.config import Secrets
from idlifecycle.job import RunReport, load_job, run_sync
from idlifecycle.model import Action, Snapshot
from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_ID, CLIENT_SECRET, MARKER, STAFF
from tests.integration.test_entra_job import STAFF_HEADER, by_anchor, members
from tests.jobfiles import LENIENT_GUARDS, write_connector, write_job

LICENCE = "Licence - Microsoft 365 A3 Faculty"
MAPPING = f"""
[staff]
username = "{{first_initial}}{{surname}}"
domain = "{STAFF}"
groups = ["All Staff"]
licences = ["{LICENCE}"]
retention_days = 365
licence_kept_days = 30
match = ["email"]

[staff.directories.trust]
licence_kept_days = 0
"""


def _seed(tenant: str) -> dict[str, object]:
    return {"tenant_id": f"c0c0c0c0-0000-4000-8000-00000000000{tenant}", "domains": [STAFF],
            "users": [], "groups": [{"displayName": LICENCE, "description": MARKER, "members": []}]}


def _school(tmp: Path, emulators: dict[str, GraphEmulator], end_date: str) -> Path:
    with (tmp / "staff.csv").open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([STAFF_HEADER, ["JDO", "Mrs", "Jane", "Doe", "Teacher", "01/09/2019", end_date],
                                      ["BRA", "Mr", "Bob", "Ray", "Teacher", "01/09/2019", ""]])
    (tmp / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    for name, emulator in emulators.items():
        assert emulator.certificate is not None
        write_connector(tmp / f"{name}.toml", name, "entra", {
            "tenant_id": emulator.tenant_id, "client_id": CLIENT_ID, "authority_host": f"127.0.0.1:{emulator.port}",
            "graph_url": emulator.graph_url, "ca_file": str(emulator.certificate.cert), "group_marker": MARKER,
            "timeout_seconds": 5, "domains": {"staff": STAFF}})
    return write_job(tmp / "job.toml", connectors=[f"{n}.toml" for n in emulators], mappings=["mapping.toml"],
                     feeds=(("staff.csv", "staff"),), guards={"max_destructive": 20, **LENIENT_GUARDS})


def _night(job_file: Path, today: date) -> tuple[RunReport, dict[str, Snapshot]]:
    job = load_job(job_file, today=today, secrets=Secrets())
    try:
        report = run_sync(job)
        with job.open_connectors() as connectors:
            snapshots = {name: connector.snapshot() for name, connector in connectors.items()}
    finally:
        job.close()
    return report, snapshots


def test_a_staff_leavers_licence_is_kept_in_one_directory_and_removed_at_once_in_the_other(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulators = {"entra": make_emulator(_seed("1")), "trust": make_emulator(_seed("2"))}
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("IDLIFECYCLE_TRUST_CLIENT_SECRET", CLIENT_SECRET)
    job_file = _school(tmp_path, emulators, "")
    report, snaps = _night(job_file, date(2026, 9, 3))
    assert report.status == "ok", report.failures
    jane = {name: by_anchor(snap)["JDO"].key for name, snap in snaps.items()}
    assert all(jane[name] in members(snap, LICENCE) for name, snap in snaps.items())

    # Jane leaves on 30/09: disabled in both that night; the trust's tenant takes her licence at once.
    _school(tmp_path, emulators, "30/09/2026")
    report, snaps = _night(job_file, date(2026, 9, 30))
    assert report.status == "ok", report.failures
    assert not by_anchor(snaps["entra"])["JDO"].enabled and not by_anchor(snaps["trust"])["JDO"].enabled
    assert jane["entra"] in members(snaps["entra"], LICENCE)
    assert jane["trust"] not in members(snaps["trust"], LICENCE)
    assert jane["trust"] not in members(snaps["trust"], "All Staff")

    report, snaps = _night(job_file, date(2026, 10, 29))  # day 29 after the disable: still licensed in entra
    assert report.status == "nothing-to-do", [f"{c.directory} {c.action} {c.group}" for c in report.plan.changes]
    assert jane["entra"] in members(snaps["entra"], LICENCE)

    report, snaps = _night(job_file, date(2026, 10, 30))  # day 30: gone there too, the account kept
    assert report.status == "ok", report.failures
    assert [(c.directory, c.action, c.group) for c in report.plan.changes] == [
        ("entra", Action.REMOVE_MEMBER, LICENCE)]
    assert jane["entra"] not in members(snaps["entra"], LICENCE)
    assert by_anchor(snaps["entra"])["JDO"].key == jane["entra"]
