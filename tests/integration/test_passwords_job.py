"""Passwords through the nightly job, on a real Samba DC and the Entra emulator: no issued password
anywhere but the slips, `passwords reset` from the command line, and the termly change."""
# ruff: noqa: F811 - pytest fixtures imported from tests.integration.samba are parameters here

from __future__ import annotations

import csv
import json
import logging
import re
import shutil
import sqlite3
import subprocess
from datetime import date
from pathlib import Path

import ldap3
import pytest

from idlifecycle.cli import main
from idlifecycle.config import Secrets
from idlifecycle.job import RunReport, load_job, run_sync
from idlifecycle.model import Action, Outcome, Snapshot, plan_to_json
from tests.integration.samba import DomainController, samba_dc, samba_template  # noqa: F401 - fixtures
from tests.jobfiles import write_connector, write_job

pytestmark = [pytest.mark.samba, pytest.mark.slow]

PUPIL_HEADER = ["Adno", "UPN", "Legal Forename", "Preferred Forename", "Legal Surname", "Gender", "Year",
                "Reg Group", "Admission Date", "Leaving Date", "Pupil Email"]
STAFF_HEADER = ["Staff Code", "Title", "Forename", "Surname", "Role", "Start Date", "End Date"]
PUPILS = [
    ["000301", "", "Poppy", "", "Hart", "F", "R", "RW", "01/09/2026", "", ""],
    ["000302", "", "Ravi", "", "Shah", "M", "3", "3B", "01/09/2023", "", ""],
    ["000303", "", "Zofia", "", "Nowak", "F", "3", "3B", "01/09/2023", "", ""],
    ["000304", "", "Tom", "", "Brook", "M", "7", "7K", "01/09/2026", "", ""],
]
STAFF = [["HAR", "Mrs", "Helen", "Archer", "Teacher", "01/09/2019", ""],
         ["BEL", "Mr", "Ben", "Ellis", "Teaching Assistant", "01/09/2021", ""]]
MAPPING = """
[naming]
max_length = 20

[pupil]
username = "{intake_year}{first_initial}{surname}"
domain = "pupils.example.sch.uk"
container = "Pupils/{year}"
groups = ["All Pupils"]

[staff]
username = "{first_initial}{surname}"
domain = "staff.example.sch.uk"
container = "Staff"
groups = ["All Staff"]
"""
POLICY = """
school_name = "Oakfield Primary School"
[[terms]]
name = "Autumn"
starts = 2026-09-03
[[terms]]
name = "Spring"
starts = 2027-01-05
[slips]
folder = "state/slips"
days = 14
[line_managers]
fallback = "office@oakfield.example.sch.uk"
[staff]
min_length = 12
termly_change = true
delivery = "email"
[pupil]
min_length = 10
style = "memorable"
[pupil.bands."7-13"]
termly_change = true
"""
SEED = {"tenant_id": "5c3d1a2e-0000-4000-8000-5c4001000009",
        "domains": ["staff.example.sch.uk", "pupils.example.sch.uk"], "users": [], "groups": []}


def write_school(tmp: Path, dc: DomainController) -> Path:
    with (tmp / "pupils.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([PUPIL_HEADER, *PUPILS])
    with (tmp / "staff.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([STAFF_HEADER, *STAFF])
    (tmp / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    (tmp / "passwords.toml").write_text(POLICY, encoding="utf-8")
    (tmp / "seed.json").write_text(json.dumps(SEED), encoding="utf-8")
    write_connector(tmp / "ad.toml", "ad", "ad", dc.connector_options())
    write_connector(tmp / "entra.toml", "entra", "entra", {
        "sandbox": True, "seed": "seed.json",
        "domains": {"staff": "staff.example.sch.uk", "pupil": "pupils.example.sch.uk"}})
    job = write_job(tmp / "job.toml", connectors=["ad.toml", "entra.toml"], mappings=["mapping.toml"],
                    sections={"passwords": {"file": "passwords.toml"}})
    return job


def night(job_file: Path, today: date, *, allow_date: date | None = None) -> RunReport:
    job = load_job(job_file, today=today, secrets=Secrets())
    try:
        return run_sync(job, allow_date=allow_date)
    finally:
        job.close()


def snapshots(job_file: Path, today: date) -> dict[str, Snapshot]:
    job = load_job(job_file, today=today, secrets=Secrets())
    try:
        with job.open_connectors() as connectors:
            return job.snapshots(connectors)
    finally:
        job.close()


def state_db(job_file: Path) -> Path:
    job = load_job(job_file, secrets=Secrets())
    job.close()
    return Path(job.config.state_db)


def slip_passwords(folder: Path) -> dict[str, str]:
    """username -> password, read back from the slip PDFs as a class teacher would."""
    found: dict[str, str] = {}
    for pdf in sorted(folder.glob("*.pdf")):
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True,
                              text=True).stdout
        usernames = re.findall(r"Username:\s+(\S+)", text)
        passwords = re.findall(r"Password:\s+(\S+)", text)
        assert len(usernames) == len(passwords)
        found.update(zip(usernames, passwords, strict=True))
    return found


def database_text(path: Path) -> str:
    db = sqlite3.connect(path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    text = "\n".join(repr(row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"'))
    db.close()
    return text


@pytest.fixture
def school(samba_dc: DomainController, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils (pdftotext) is not installed")
    monkeypatch.setenv("IDLIFECYCLE_AD_BIND_PASSWORD", samba_dc.admin_password)
    return write_school(tmp_path, samba_dc)


def test_no_issued_password_appears_anywhere_but_the_slips(school: Path, samba_dc: DomainController,
                                                           caplog: pytest.LogCaptureFixture,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    report = night(school, date(2026, 9, 1))
    assert report.status == "ok", report.failures
    creates = [c for c in report.plan.changes if c.action is Action.CREATE]
    assert {c.directory for c in creates} == {"ad", "entra"} and len(creates) == 12
    assert main(["--config", str(school), "--today", "2026-09-02", "passwords", "reset", "000302"]) == 0
    printed = capsys.readouterr()
    assert "New password set for Ravi Shah" in printed.out and "ad, entra" in printed.out

    slips = school.parent / "state" / "slips"
    issued = slip_passwords(slips)
    # Six people on night one, Ravi again on day two: his newest slip wins in `issued`.
    assert len(issued) == 6 and len(list(slips.glob("2026-09-01_*.pdf"))) == 4
    ravi = next(u for u in issued if u.endswith("rshah"))
    ravi_passwords = [p for p in re.findall(r"Password:\s+(\S+)", "".join(
        subprocess.run(["pdftotext", str(p), "-"], capture_output=True, text=True, check=True).stdout
        for p in slips.glob("*3B*.pdf")))]
    assert len(set(ravi_passwords)) == 3, "two 3B pupils on night one, Ravi's reset on day two"
    assert "data 773" in str(samba_dc.bind_result(f"{ravi}@pupils.example.sch.uk", issued[ravi])["message"]), \
        "the slip's password is the one the DC holds, and must be changed at first sign-in"

    secrets = set(ravi_passwords) | set(issued.values())
    places = {
        "log records": caplog.text + "\n".join(str(r.args) for r in caplog.records),
        "command output": printed.out + printed.err,
        "plan JSON": json.dumps(plan_to_json(report.plan)),
        "state database": database_text(state_db(school)),
        "slip file names": " ".join(str(p) for p in slips.rglob("*")),
        "state files": "".join(p.read_bytes().decode("latin-1") for p in (school.parent / "state").rglob("*")
                               if p.is_file() and p.suffix != ".pdf"),
    }
    for place, text in places.items():
        leaked = [s for s in secrets if s in text]
        assert leaked == [], f"password found in {place}"
    # The scan saw the real things: the audit trail of the deliveries and the history hashes.
    assert "password-delivered" in places["state database"] and "scrypt$" in places["state database"]
    assert "require-password-change" not in places["plan JSON"] and "create" in places["plan JSON"]


def test_first_night_of_spring_term_flags_exactly_the_configured_accounts(school: Path,
                                                                          samba_dc: DomainController) -> None:
    assert night(school, date(2026, 9, 1)).status == "ok"
    # By January everyone has chosen their own password: clear AD's "must change" flag, and set
    # "password never expires" on one pupil's account by hand, as a technician might have.
    conn = samba_dc.connection()
    conn.search(samba_dc.managed_dn, "(objectClass=user)", attributes=["sAMAccountName"])
    dns = {e["raw_attributes"]["sAMAccountName"][0].decode(): e["dn"] for e in conn.response
           if e["type"] == "searchResEntry"}
    for dn in dns.values():
        conn.modify(dn, {"pwdLastSet": [(ldap3.MODIFY_REPLACE, ["-1"])]})
    poppy = next(u for u in dns if u.endswith("phart"))
    conn.modify(dns[poppy], {"userAccountControl": [(ldap3.MODIFY_REPLACE, ["66048"])]})
    conn.unbind()

    # The first two nights of term were missed (server off over the holiday): the change still happens.
    # Four months without a run is more than max_days_between_runs: the date is allowed explicitly.
    report = night(school, date(2027, 1, 7), allow_date=date(2027, 1, 7))
    assert report.status == "ok", report.failures
    flagged = sorted((c.directory, c.username) for c in report.plan.changes
                     if c.action is Action.REQUIRE_PASSWORD_CHANGE)
    staff_and_year_7 = sorted(u for u in dns if u.endswith(("harcher", "bellis", "tbrook")))
    assert flagged == sorted((d, u) for d in ("ad", "entra") for u in staff_and_year_7)
    reasons = {c.reason for c in report.plan.changes if c.action is Action.REQUIRE_PASSWORD_CHANGE}
    assert reasons == {"termly password change (Spring term starts 05/01/2027)"}
    cleared = [(c.directory, c.username) for c in report.plan.changes if c.action is Action.UPDATE]
    assert cleared == [("ad", poppy)]
    assert all(r.outcome is Outcome.APPLIED for r in report.results)

    after = {a.username: a for a in snapshots(school, date(2027, 1, 7))["ad"].accounts}
    assert {u for u, a in after.items() if a.must_change_password} == set(staff_and_year_7)
    assert not after[poppy].password_never_expires

    # The next night, and the next term's nights before it starts, change nothing more.
    quiet = night(school, date(2027, 1, 8))
    assert not [c for c in quiet.plan.changes if c.action is Action.REQUIRE_PASSWORD_CHANGE]


def test_reset_of_someone_not_in_the_feed_is_one_clear_line(school: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(school), "passwords", "reset", "999999"]) == 1
    assert capsys.readouterr().err.strip() == ("idlifecycle: 999999 is not in the feed; passwords are reset only "
                                               "for current staff and pupils")


def test_password_audit_lists_never_signed_in_accounts(school: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert night(school, date(2026, 9, 1)).status == "ok"
    assert main(["--config", str(school), "--today", "2026-09-02", "passwords", "audit"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["DIRECTORY", "USERNAME", "NAME", "FINDING"]
    assert "never signed in" in out
    assert out.strip().endswith("findings.")

