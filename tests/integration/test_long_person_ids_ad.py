"""Person ids longer than AD's employeeID holds (16, MS-ADA1 "Employee-ID"), against the real Samba DC.

A GUID sourcedId is written as its short anchor (idlifecycle.anchors); the job reads it back as the
full id from the ids it knows, so the second night has nothing to do.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from idlifecycle.anchors import directory_anchor
from tests.integration.samba import DomainController, samba_dc, samba_template  # noqa: F401 - fixtures
from tests.integration.test_ad_job import AMY, CLARA, RORY, night, raw_entry, write_school

pytestmark = pytest.mark.samba

AMY_ID = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
CLARA_ID = "9c5b94b1-35ad-49bb-b118-8e8fc24abf80"


def test_guid_person_ids_are_written_as_short_anchors_and_the_next_night_has_nothing_to_do(
        samba_dc: DomainController, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    dc = samba_dc
    monkeypatch.setenv("IDLIFECYCLE_AD_BIND_PASSWORD", dc.admin_password)
    conn = dc.connection()
    assert conn.add(f"CN=coswald,{dc.managed_dn}", ["top", "person", "organizationalPerson", "user"],
                    {"sAMAccountName": "coswald", "userPrincipalName": "coswald@pupils.example.sch.uk",
                     "givenName": "Clara", "sn": "Oswald", "userAccountControl": 514})
    conn.unbind()
    clara_guid = raw_entry(dc, "(sAMAccountName=coswald)")[1]["objectGUID"]
    job_file = write_school(tmp_path, dc, [[AMY_ID, *AMY[1:]], RORY, [CLARA_ID, *CLARA[1:]]])

    report, _ = night(job_file, dc, date(2026, 9, 3))
    assert report.status == "ok", report.failures
    created = next(c.username for c in report.plan.changes if c.person_id == AMY_ID and c.action.value == "create")
    assert raw_entry(dc, f"(sAMAccountName={created})")[1]["employeeID"] == [directory_anchor(AMY_ID, 16).encode()]
    # Clara's old account was adopted (then renamed to the school's pattern), anchored by the short form.
    _, clara = raw_entry(dc, f"(employeeID={directory_anchor(CLARA_ID, 16)})")
    assert clara["objectGUID"] == clara_guid
    assert raw_entry(dc, "(employeeID=000202)")  # an id that fits is written as it is

    report, _ = night(job_file, dc, date(2026, 9, 4))
    assert report.status == "nothing-to-do", [f"{c.action} {c.username}" for c in report.plan.changes]
