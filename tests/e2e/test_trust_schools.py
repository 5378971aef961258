"""Issue 19, first slice: a trust's schools in one job (`[[schools]]`), people identified per school.

Through the CLI against the test-double directory: a single school's job turned into a trust's plans no
change; a second school whose staff code (and an admission number) the first already uses gets its own
people and never touches the first school's; each school's feeds are checked on their own.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests import jobfiles
from tests.doubles import FileDirectory
from tests.e2e.school import write_job, write_pupils, write_staff
from tests.e2e.test_cli import STAFF, idl
from tests.factories import ROOT
from tests.jobfiles import toml_table

HILLSIDE, BROOK = "100001", "100002"


def single_school(tmp: Path) -> None:
    write_pupils(tmp / "pupils.csv", 40)
    write_staff(tmp / "staff.csv", STAFF)
    write_job(tmp)


def as_trust(tmp: Path, *, brook: bool) -> None:
    """The same job with its feeds moved under [[schools]]: Hillside (the school it was, ids kept bare) and,
    with `brook`, Brook Primary, whose exports are in brook/."""
    job = jobfiles.write_job(tmp / "job.toml", connectors=["connectors/double.toml"],
                             mappings=[ROOT / "mappings" / "school.toml"], guards={}, feeds=())
    text = job.read_text() + school_table("hillside", "Hillside Academy", HILLSIDE, "", ids="bare")
    if brook:
        text += school_table("brook", "Brook Primary", BROOK, "brook/")
    job.write_text(text)


def school_table(code: str, name: str, urn: str, folder: str, **more: str) -> str:
    text = "\n[[schools]]\n" + toml_table({"code": code, "name": name, "urn": urn, **more})
    for file, kind in (("pupils.csv", "pupil"), ("staff.csv", "staff")):
        text += "\n[[schools.feeds]]\n" + toml_table({"format": "mis-csv", "path": folder + file, "kind": kind,
                                                       "date_order": "dmy"})
    return text


def brook_exports(tmp: Path, staff: list[tuple[str, str, str, str]], pupils: int = 5) -> None:
    (tmp / "brook").mkdir(exist_ok=True)
    write_pupils(tmp / "brook" / "pupils.csv", pupils, first=1)  # admission numbers from 000001, as Hillside's
    write_staff(tmp / "brook" / "staff.csv", staff)


def accounts(tmp: Path) -> dict[str, tuple[str, bool]]:
    """username -> (anchor, enabled) in the directory."""
    return {a.username: (a.anchor, a.enabled) for a in FileDirectory("ad", tmp / "directory.sqlite").accounts()}


def test_a_single_schools_job_listed_as_a_trusts_school_plans_no_change(tmp_path: Path) -> None:
    single_school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    before = accounts(tmp_path)
    as_trust(tmp_path, brook=False)
    again = idl(tmp_path, "sync")
    assert again.returncode == 0, again.stderr
    assert "No changes. The directories match the feed." in again.stdout
    assert accounts(tmp_path) == before


def test_a_staff_code_and_admission_numbers_shared_with_another_school_are_other_people(tmp_path: Path) -> None:
    """Brook's head has Hillside's head's staff code (HCA) and its pupils Hillside's first admission numbers: on
    today's one-feed reading both HCA rows were refused as one duplicate id. Now they are two people."""
    single_school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    hillside = accounts(tmp_path)
    brook_exports(tmp_path, [("HCA", "Harriet", "Cole", "Head Teacher")])
    as_trust(tmp_path, brook=True)
    plan = idl(tmp_path, "plan", "--out", "plan.json")
    assert plan.returncode == 0, plan.stderr
    changes = json.loads((tmp_path / "plan.json").read_text())["changes"]
    # Only Brook's people are created (and put in their groups); nothing of Hillside's changes.
    assert {c["action"] for c in changes} == {"create", "add-member"}
    assert {c["person_id"] for c in changes} == {f"{BROOK}:HCA"} | {f"{BROOK}:{n:06d}" for n in range(1, 6)}
    synced = idl(tmp_path, "apply", "plan.json")
    assert synced.returncode == 0, synced.stderr
    now = accounts(tmp_path)
    assert {u: now[u] for u in hillside} == hillside  # every Hillside account as it was, the head enabled
    assert now["hcole"] == (f"{BROOK}:HCA", True)
    assert len(now) == len(hillside) + 6
    assert "No changes" in idl(tmp_path, "sync").stdout


def test_a_schools_own_duplicate_is_refused_there_and_holds_only_its_people(tmp_path: Path) -> None:
    """The same code twice in Brook's export is Brook's duplicate: both Brook rows are refused (held), and
    Hillside's JDO, the same code, is not touched."""
    single_school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    # 120 pupils: two bad rows are within Brook's own 2 % of bad rows.
    brook_exports(tmp_path, [("JDO", "Jo", "Dunn", "Teacher"), ("JDO", "Jim", "Dale", "Teacher")], pupils=120)
    as_trust(tmp_path, brook=True)
    plan = idl(tmp_path, "plan", "--out", "plan.json")
    assert plan.returncode == 3, plan.stderr  # done, but rows were refused and their people held
    changes = json.loads((tmp_path / "plan.json").read_text())["changes"]
    assert {c["person_id"] for c in changes} == {f"{BROOK}:{n:06d}" for n in range(1, 121)}  # no JDO of either school
    report = idl(tmp_path, "feed", "check")
    assert report.stdout.count("duplicate 'JDO'") == 2 and "brook/staff.csv" in report.stdout


def test_one_schools_broken_export_stops_the_run_naming_the_school(tmp_path: Path) -> None:
    single_school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    first_night = len(FileDirectory("ad", tmp_path / "directory.sqlite").writes())
    brook_exports(tmp_path, [("BRO", "Ben", "Row", "Teacher")])
    (tmp_path / "brook" / "pupils.csv").write_text(
        "Adno,UPN,Legal Forename,Preferred Forename,Legal Surname,Year,Reg Group,Admission Date,Leaving Date\n"
        + "".join(f"B{n},,Pupil,,Row{n},7,7A,not a date,\n" for n in range(5)), encoding="utf-8")
    as_trust(tmp_path, brook=True)
    run = idl(tmp_path, "sync")
    assert run.returncode != 0
    assert "school brook (Brook Primary)" in run.stderr and "have errors" in run.stderr
    assert len(FileDirectory("ad", tmp_path / "directory.sqlite").writes()) == first_night  # nothing more sent
