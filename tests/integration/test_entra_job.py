"""The nightly job (feed -> plan -> guards -> executor) against the Graph emulator through EntraConnector.

One school's autumn: September starters, an account the office made that is adopted, a licence
group; then a leaver and a change made in the portal behind the tool's back; then a re-joiner and
a marriage; then a quiet night with nothing to do.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.config import Secrets
from idlifecycle.job import RunReport, load_job, run_sync
from idlifecycle.model import Account, Snapshot
from idlifecycle.sandbox.graph import Fault, GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_ID, CLIENT_SECRET, MARKER, PUPILS, STAFF
from tests.jobfiles import LENIENT_GUARDS, write_connector, write_job

PUPIL_HEADER = ["Adno", "UPN", "Legal Forename", "Preferred Forename", "Legal Surname", "Gender", "Year",
                "Reg Group", "Admission Date", "Leaving Date", "Pupil Email"]
STAFF_HEADER = ["Staff Code", "Title", "Forename", "Surname", "Role", "Start Date", "End Date"]
AMY = ["000201", "", "Amy", "", "Pond", "F", "7", "7A", "01/09/2026", "", ""]
RORY = ["000202", "", "Rory", "", "Williams", "M", "7", "7B", "01/09/2026", "", ""]
CLARA = ["000205", "", "Clara", "", "Oswald", "F", "8", "8A", "01/09/2025", "", f"coswald@{PUPILS}"]

MAPPING = f"""
[naming]
max_length = 20
reserved = ["admin"]

[pupil]
username = "{{intake_year}}{{first_initial}}{{surname}}"
domain = "{PUPILS}"
groups = ["All Pupils", "{{year}} Pupils"]
licences = ["Licence - Microsoft 365 A1 Students"]
attributes = {{ department = "{{year}}", employeeType = "pupil" }}
grace_days = 0
retention_days = 270
rename_on_name_change = true
match = ["email"]

[staff]
username = "{{first_initial}}{{surname}}"
domain = "{STAFF}"
groups = ["All Staff"]
attributes = {{ jobTitle = "{{role}}", employeeType = "staff" }}
match = ["email"]
"""


def seed() -> dict[str, object]:
    return {
        "tenant_id": "b0b0b0b0-0000-4000-8000-000000000002",
        "domains": [STAFF, PUPILS, "example.sch.uk"],
        "users": [
            {"userPrincipalName": f"coswald@{PUPILS}", "givenName": "Clara", "surname": "Oswald",
             "displayName": "Clara Oswald"},
            {"userPrincipalName": "it.admin@example.sch.uk", "displayName": "IT Admin"},
        ],
        "groups": [{"displayName": "Licence - Microsoft 365 A1 Students", "description": MARKER, "members": []}],
    }


def write_school(tmp: Path, emulator: GraphEmulator, pupils: list[list[str]], **extra: object) -> Path:
    with (tmp / "pupils.csv").open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([PUPIL_HEADER, *pupils])
    with (tmp / "staff.csv").open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([STAFF_HEADER, ["JDO", "Mrs", "Jane", "Doe", "Teacher", "01/09/2019", ""]])
    (tmp / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    assert emulator.certificate is not None
    options = {"tenant_id": emulator.tenant_id, "client_id": CLIENT_ID,
               "authority_host": f"127.0.0.1:{emulator.port}", "graph_url": emulator.graph_url,
               "ca_file": str(emulator.certificate.cert), "group_marker": MARKER, "timeout_seconds": 5}
    write_connector(tmp / "entra.toml", "entra", "entra",
                    {**options, "domains": {"staff": STAFF, "pupil": PUPILS}, **extra})
    job = write_job(tmp / "job.toml", connectors=["entra.toml"], mappings=["mapping.toml"],
                    guards={"max_destructive": 20, **LENIENT_GUARDS})
    return job


def night(job_file: Path, today: date) -> tuple[RunReport, Snapshot]:
    job = load_job(job_file, today=today, secrets=Secrets())
    try:
        report = run_sync(job)
        with job.open_connectors() as connectors:
            snapshot = connectors["entra"].snapshot()
    finally:
        job.close()
    return report, snapshot


def by_anchor(snapshot: Snapshot) -> dict[str, Account]:
    return {a.anchor: a for a in snapshot.accounts if a.anchor}


def members(snapshot: Snapshot, group: str) -> set[str]:
    found = {g.name: g for g in snapshot.groups}.get(group)
    return set(found.members) if found else set()


def test_an_autumn_term_of_nightly_syncs_against_entra(make_emulator: Callable[..., GraphEmulator], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = make_emulator(seed())
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    job_file = write_school(tmp_path, emulator, [AMY, RORY, CLARA])
    clara_key = emulator.directory.user(f"coswald@{PUPILS}")["id"]

    # Night 1: starters get accounts, groups and the licence group; Clara's old account is adopted.
    report, snap = night(job_file, date(2026, 9, 3))
    assert report.status == "ok", report.failures
    people = by_anchor(snap)
    assert set(people) == {"000201", "000202", "000205", "JDO"}
    assert people["000205"].key == clara_key
    assert people["000201"].attributes.get("department") == "Year 7"
    assert members(snap, "Year 7 Pupils") == {people["000201"].key, people["000202"].key}
    assert members(snap, "Licence - Microsoft 365 A1 Students") == {people[p].key for p in ("000201", "000202",
                                                                                         "000205")}
    assert emulator.directory.user(people["000201"].key)["usageLocation"] == "GB"

    # Night 2: Rory left; someone changed Amy's department in the portal.
    emulator.directory.update_user(people["000201"].key, {"department": "Drama"})
    rory_left = [*RORY[:9], "05/09/2026", ""]
    write_school(tmp_path, emulator, [AMY, rory_left, CLARA])
    report, snap = night(job_file, date(2026, 9, 10))
    assert report.status == "ok", report.failures
    people = by_anchor(snap)
    assert not people["000202"].enabled
    assert people["000202"].key not in members(snap, "Year 7 Pupils")
    assert people["000201"].attributes.get("department") == "Year 7"

    # Night 3: Rory is back; Amy married (Smith).
    amy_married = [*AMY[:4], "Smith", *AMY[5:]]
    write_school(tmp_path, emulator, [amy_married, RORY, CLARA])
    keys_before = {p: a.key for p, a in people.items()}
    report, snap = night(job_file, date(2026, 9, 17))
    assert report.status == "ok", report.failures
    people = by_anchor(snap)
    assert {p: a.key for p, a in people.items()} == keys_before
    assert people["000202"].enabled and people["000202"].key in members(snap, "Year 7 Pupils")
    assert people["000201"].surname == "Smith" and "smith" in people["000201"].username

    # Night 4: nothing changed, nothing to do.
    report, _ = night(job_file, date(2026, 9, 18))
    assert report.status == "nothing-to-do", [f"{c.action} {c.username}" for c in report.plan.changes]


def test_new_teacher_is_not_given_the_address_a_renamed_leaver_still_holds(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Her predecessor Jean Doe left and was renamed into the alumni domain; Exchange kept her old
    # address as an alias, so Graph refuses jdoe@ for anyone else (proxyAddresses are unique).
    tenant = seed()
    tenant["users"] = [*tenant["users"], {  # type: ignore[list-item]
        "userPrincipalName": "jdoe.left@example.sch.uk", "displayName": "Jean Doe", "mail": "jdoe.left@example.sch.uk",
        "proxyAddresses": ["SMTP:jdoe.left@example.sch.uk", f"smtp:jdoe@{STAFF}"]}]
    emulator = make_emulator(tenant)
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    job_file = write_school(tmp_path, emulator, [AMY])

    report, snap = night(job_file, date(2026, 9, 3))

    assert report.status == "ok", report.failures
    jane = by_anchor(snap)["JDO"]
    assert jane.username != "jdoe" and jane.username.startswith("jdoe")


def test_a_licence_that_could_not_be_assigned_fails_the_night_and_the_next_night_plans_it_again(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sku = "94763226-9b3c-4e75-a931-5c89701abe66"
    emulator = make_emulator({**seed(), "subscribedSkus": [{"skuId": sku, "skuPartNumber": "M365EDU_A3_FACULTY"}]})
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    job_file = write_school(tmp_path, emulator, [AMY], assign_licences={"staff": [sku]})
    emulator.faults.append(Fault("POST", r"/assignLicense$", mode="status", status=400))

    report, _ = night(job_file, date(2026, 9, 3))

    assert report.status == "partial"
    assert any("licence could not be assigned" in f for f in report.failures), report.failures
    jane = emulator.directory.find_user(f"jdoe@{STAFF}")
    assert jane is not None and jane["assignedLicenses"] == []
    time.sleep(0.3)  # the day between: replication of her account has long finished

    report, snap = night(job_file, date(2026, 9, 4))

    assert report.status == "ok", report.failures
    assert "create" in {str(c.action) for c in report.plan.changes if c.person_id == "JDO"}
    assert by_anchor(snap)["JDO"].key == jane["id"]
    assert [lic["skuId"] for lic in emulator.directory.user(jane["id"])["assignedLicenses"]] == [sku]
