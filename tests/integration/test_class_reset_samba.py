"""A teacher resets their own pupils' passwords against a real Samba AD DC: the new password binds over LDAP
(ldap3) as the pupil; with change at next sign-in (the policy's band), the DC says so (data 773) for the right
password only; a pupil outside the teacher's groups keeps theirs."""
# ruff: noqa: F811 - pytest fixtures imported from tests.integration.samba are parameters here

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.config import Secrets
from idlifecycle.errors import UserError
from idlifecycle.job import load_job, run_sync
from idlifecycle.passwords.class_reset import reset_pupils
from tests.integration.samba import DomainController, samba_dc, samba_template  # noqa: F401 - fixtures
from tests.integration.test_ad_job import AMY, CLARA, DANNY, MAPPING, PUPIL_HEADER, RORY
from tests.jobfiles import LENIENT_GUARDS, write_connector, write_job

pytestmark = pytest.mark.samba

TODAY = date(2026, 9, 3)
PASSWORDS = {"school_name": "Oakfield Academy", "line_managers": {"fallback": "office@example.org"},
             "pupil": {"min_length": 10, "style": "memorable", "bands": {"7-7": {"change_at_sign_in": False}}}}


@dataclass(frozen=True)
class SignedIn:
    username: str
    name: str


def write_school(tmp: Path, dc: DomainController) -> Path:
    with (tmp / "pupils.csv").open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([PUPIL_HEADER, AMY, RORY, CLARA, DANNY])
    with (tmp / "staff.csv").open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([
            ["Staff Code", "Title", "Forename", "Surname", "Role", "Start Date", "End Date", "Tutor Group"],
            ["JDO", "Mrs", "Jane", "Doe", "Teacher", "01/09/2019", "", "7A; 8A"]])
    (tmp / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    write_connector(tmp / "ad.toml", "ad", "ad", dc.connector_options())
    return write_job(tmp / "job.toml", connectors=["ad.toml"], mappings=["mapping.toml"],
                     guards={"max_destructive": 20, **LENIENT_GUARDS}, sections={"passwords": PASSWORDS})


def test_a_teacher_resets_her_tutor_groups_and_the_new_passwords_bind(samba_dc: DomainController, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    dc = samba_dc
    monkeypatch.setenv("IDLIFECYCLE_AD_BIND_PASSWORD", dc.admin_password)
    job = load_job(write_school(tmp_path, dc), today=TODAY, secrets=Secrets())
    try:
        assert run_sync(job).status == "ok"
        with job.open_connectors() as connectors:
            logins = {a.anchor: a.login for a in connectors["ad"].snapshot().accounts}
            jane = SignedIn("jdoe", "Jane Doe")
            year7 = reset_pupils(job, connectors, jane, group="7A", from_address="192.0.2.7")
            year8 = reset_pupils(job, connectors, jane, pupils=["000205"], from_address="192.0.2.7")
            with pytest.raises(UserError, match=r"Rory Williams \(000202\) is not in a group Jane Doe teaches"):
                reset_pupils(job, connectors, jane, pupils=["000202"], from_address="192.0.2.7")
    finally:
        job.close()

    assert [(s.pupil.person_id, s.set_in) for s in year7.slips] == [("000201", ("ad",)), ("000206", ("ad",))]
    for slip in year7.slips:  # band 7: no change at sign-in, so the pupil signs straight in
        assert dc.bind_result(logins[slip.pupil.person_id], slip.password)["result"] == 0, slip.username
        assert dc.bind_result(logins[slip.pupil.person_id], slip.password + "x")["result"] == 49
    [clara] = year8.slips
    assert clara.change_at_sign_in
    right = dc.bind_result(logins["000205"], clara.password)
    wrong = dc.bind_result(logins["000205"], clara.password + "x")
    assert "data 773" in right["message"], "the right password, to be changed at this sign-in"
    assert "data 773" not in wrong["message"] and wrong["result"] == 49
