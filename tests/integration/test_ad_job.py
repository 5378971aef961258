"""The nightly job (feed -> plan -> guards -> executor) against a real Samba DC through ADConnector.

One school, three nights: September starters and an adopted account, then leavers, then a re-joiner,
a marriage rename and a roll-over move. Each night runs `run_sync` on a job file written here.
"""
# ruff: noqa: F811 - pytest fixtures imported from tests.integration.samba are parameters here

from __future__ import annotations

import csv
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from idlifecycle.config import Secrets
from idlifecycle.job import RunReport, load_job, run_sync
from idlifecycle.model import Account, Action, Snapshot
from tests.integration.samba import DomainController, samba_dc, samba_template  # noqa: F401 - fixtures
from tests.jobfiles import LENIENT_GUARDS, write_connector, write_job

pytestmark = pytest.mark.samba

PUPIL_HEADER = ["Adno", "UPN", "Legal Forename", "Preferred Forename", "Legal Surname", "Gender", "Year",
                "Reg Group", "Admission Date", "Leaving Date", "Pupil Email"]
STAFF_HEADER = ["Staff Code", "Title", "Forename", "Surname", "Role", "Start Date", "End Date"]

MAPPING = """
[naming]
max_length = 20
reserved = ["admin", "administrator"]

[pupil]
username = "{intake_year}{first_initial}{surname}"
domain = "pupils.example.sch.uk"
container = "Pupils/{year}"
groups = ["All Pupils", "{year} Pupils", "Reg {registration_group}"]
attributes = { department = "{year}", employeeType = "pupil" }
grace_days = 0
retention_days = 270
leavers_container = "Leavers/Pupils"
rename_on_name_change = true
match = ["email"]

[staff]
username = "{first_initial}{surname}"
domain = "staff.example.sch.uk"
container = "Staff"
groups = ["All Staff"]
attributes = { jobTitle = "{role}", employeeType = "staff" }
leavers_container = "Leavers/Staff"
match = ["email"]

[role_groups]
"Teacher" = ["Teaching Staff"]
"""

AMY = ["000201", "", "Amy", "", "Pond", "F", "7", "7A", "01/09/2026", "", ""]
RORY = ["000202", "", "Rory", "", "Williams", "M", "7", "7B", "01/09/2026", "", ""]
SIOBHAN = ["000203", "", "Siobhán", "", "O'Brien-Ní Dhuibhir", "F", "8", "8A", "01/09/2025", "", ""]
CLARA = ["000205", "", "Clara", "", "Oswald", "F", "8", "8A", "01/09/2025", "", "coswald@pupils.example.sch.uk"]
DANNY = ["000206", "", "Danny", "", "Pink", "M", "7", "7A", "01/09/2026", "", ""]


def write_school(tmp: Path, dc: DomainController, pupils: list[list[str]]) -> Path:
    with (tmp / "pupils.csv").open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([PUPIL_HEADER, *pupils])
    with (tmp / "staff.csv").open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([STAFF_HEADER, ["JDO", "Mrs", "Jane", "Doe", "Teacher", "01/09/2019", ""]])
    (tmp / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    write_connector(tmp / "ad.toml", "ad", "ad", dc.connector_options())
    job = write_job(tmp / "job.toml", connectors=["ad.toml"], mappings=["mapping.toml"],
                    guards={"max_destructive": 20, **LENIENT_GUARDS})
    return job


def night(job_file: Path, dc: DomainController, today: date, *, apply: bool = True) -> tuple[RunReport, Snapshot]:
    job = load_job(job_file, today=today, secrets=Secrets())
    try:
        report = run_sync(job, apply=apply)
        with job.open_connectors() as connectors:
            snapshot = connectors["ad"].snapshot()
    finally:
        job.close()
    return report, snapshot


def by_anchor(snapshot: Snapshot) -> dict[str, Account]:
    return {a.anchor: a for a in snapshot.accounts if a.anchor}


def members(snapshot: Snapshot, group: str) -> set[str]:
    found = {g.name: g for g in snapshot.groups}.get(group)
    return set(found.members) if found else set()


def raw_entry(dc: DomainController, search_filter: str) -> tuple[str, dict[str, Any]]:
    conn = dc.connection()
    conn.search(dc.domain_dn, search_filter, attributes=["uSNChanged", "employeeID", "objectGUID"])
    [(dn, raw)] = [(e["dn"], e["raw_attributes"]) for e in conn.response if e["type"] == "searchResEntry"]
    conn.unbind()
    return dn, raw


def test_three_nights_of_a_school_term_through_the_nightly_job(samba_dc: DomainController, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    dc = samba_dc
    monkeypatch.setenv("IDLIFECYCLE_AD_BIND_PASSWORD", dc.admin_password)
    job_file = write_school(tmp_path, dc, [AMY, RORY, SIOBHAN, CLARA, DANNY])
    planned, _ = night(job_file, dc, date(2026, 9, 3), apply=False)
    amy_name = next(c.username for c in planned.plan.changes if c.action is Action.CREATE and c.person_id == "000201")
    # The office made an account years ago with the name Amy would get, outside the managed tree,
    # and Clara already has an account in the tree that nobody anchored.
    conn = dc.connection()
    assert conn.add(f"CN={amy_name},CN=Users,{dc.domain_dn}", ["top", "person", "organizationalPerson", "user"],
                    {"sAMAccountName": amy_name, "userAccountControl": 514})
    assert conn.add(f"CN=coswald,{dc.managed_dn}", ["top", "person", "organizationalPerson", "user"],
                    {"sAMAccountName": "coswald", "userPrincipalName": "coswald@pupils.example.sch.uk",
                     "givenName": "Clara", "sn": "Oswald", "userAccountControl": 512,
                     "unicodePwd": '"Old-Password-1"'.encode("utf-16-le")})
    conn.unbind()
    clash_dn, clash_before = raw_entry(dc, f"(sAMAccountName={amy_name})")
    clara_key = str(uuid.UUID(bytes_le=raw_entry(dc, "(sAMAccountName=coswald)")[1]["objectGUID"][0]))

    # Night 1: starters, the adopted account, staff.
    report, snap = night(job_file, dc, date(2026, 9, 3))
    assert report.status == "ok", report.failures
    people = by_anchor(snap)
    assert set(people) >= {"000201", "000202", "000203", "000205", "000206", "JDO"}
    assert people["000201"].username != amy_name
    assert amy_name in snap.names_outside_scope
    assert people["000205"].key == clara_key, "Clara's existing account was adopted, not duplicated"
    assert people["000201"].container == "Pupils/Year 7" and people["000203"].container == "Pupils/Year 8"
    assert people["JDO"].container == "Staff" and people["JDO"].attributes.get("jobTitle") == "Teacher"
    assert people["000203"].surname == "O'Brien-Ní Dhuibhir"
    assert members(snap, "Year 7 Pupils") == {people[p].key for p in ("000201", "000202", "000206")}
    assert members(snap, "Reg 8A") == {people[p].key for p in ("000203", "000205")}
    assert people["JDO"].key in members(snap, "Teaching Staff")
    assert raw_entry(dc, f"(sAMAccountName={amy_name})") == (clash_dn, clash_before)

    # Night 2: Rory left on 5 September; Danny is no longer in the feed.
    rory_leaving = [*RORY[:9], "05/09/2026", ""]
    write_school(tmp_path, dc, [AMY, rory_leaving, SIOBHAN, CLARA])
    report, snap = night(job_file, dc, date(2026, 9, 10))
    assert report.status == "ok", report.failures
    people = by_anchor(snap)
    for leaver in ("000202", "000206"):
        assert not people[leaver].enabled
        assert people[leaver].container == "Leavers/Pupils"
        assert people[leaver].key not in members(snap, "Year 7 Pupils")

    # Night 3: Danny is back, Amy married (Smith), Siobhán's year moved up.
    amy_married = [*AMY[:4], "Smith", *AMY[5:]]
    siobhan_up = [*SIOBHAN[:6], "9", "9A", *SIOBHAN[8:]]
    write_school(tmp_path, dc, [amy_married, rory_leaving, siobhan_up, CLARA, DANNY])
    key_before = {p: a.key for p, a in people.items()}
    report, snap = night(job_file, dc, date(2026, 9, 17))
    assert report.status == "ok", report.failures
    people = by_anchor(snap)
    assert {p: a.key for p, a in people.items()} == key_before
    assert people["000206"].enabled and people["000206"].container == "Pupils/Year 7"
    assert people["000206"].key in members(snap, "Year 7 Pupils")
    assert people["000201"].surname == "Smith" and "smith" in people["000201"].username
    assert people["000201"].login.startswith(people["000201"].username + "@")
    assert people["000203"].container == "Pupils/Year 9"
    assert people["000203"].key in members(snap, "Year 9 Pupils")
    assert people["000203"].key not in members(snap, "Year 8 Pupils") | members(snap, "Reg 8A")
    assert not people["000202"].enabled

    # Night 4: nothing changed in the feed, nothing to do; the anchors written are the MIS ids.
    report, _ = night(job_file, dc, date(2026, 9, 18))
    assert report.status == "nothing-to-do", [str(c.action) + " " + c.username for c in report.plan.changes]
    _, clara = raw_entry(dc, f"(sAMAccountName={people['000205'].username})")
    assert clara["employeeID"] == [b"000205"]
    assert str(uuid.UUID(bytes_le=clara["objectGUID"][0])) == clara_key
    assert raw_entry(dc, f"(sAMAccountName={amy_name})") == (clash_dn, clash_before)
