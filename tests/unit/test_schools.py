"""A trust's `[[schools]]` (schools.py): the job file's checks, and each school's people read with ids scoped by
its URN, so the same MIS id at two schools is two people, and one school's duplicate is that school's."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from idlifecycle.config import load_job_config
from idlifecycle.errors import ConfigError, FeedError
from idlifecycle.feeds import FeedResult, FeedSpec
from idlifecycle.naming import template_values
from idlifecycle.schools import read_schools
from tests.factories import ROOT
from tests.jobfiles import toml_table, write_connector, write_job


def job_with(tmp: Path, schools: str, *, feeds: bool = False) -> Path:
    write_connector(tmp / "ad.toml", "ad", "sandbox-ad", {})
    path = write_job(tmp / "job.toml", connectors=["ad.toml"], mappings=[ROOT / "mappings" / "school.toml"],
                     feeds=(("staff.csv", "staff"),) if feeds else ())
    path.write_text(path.read_text() + schools)
    return path


def school(code: str = "hillside", urn: str = "100001", **more: object) -> str:
    return ("\n[[schools]]\n" + toml_table({"code": code, "name": code.title(), "urn": urn, **more})
            + "\n[[schools.feeds]]\n" + toml_table({"format": "mis-csv", "path": f"{code}.csv", "kind": "staff"}))


def test_a_trusts_schools_are_read_with_their_feeds(tmp_path: Path) -> None:
    config = load_job_config(job_with(tmp_path, school() + school("brook", "1000002", ids="scoped")))
    assert [(s.code, s.urn, s.bare_ids) for s in config.schools] == [("hillside", "100001", False),
                                                                     ("brook", "1000002", False)]
    assert config.feeds == () and [f.path for f in config.schools[1].feeds] == ["brook.csv"]


@pytest.mark.parametrize(("schools", "feeds", "key", "says"), [
    ("", False, "job.feeds", "add [[job.feeds]] entries (one school) or [[schools]]"),
    (school(), True, "job.feeds", "gives each school's feeds in its [[schools.feeds]]"),
    (school(urn="12345"), False, "schools.0.urn", "String should match pattern"),
    (school() + school("Brook!", "100002"), False, "schools.1.code", "String should match pattern"),
    (school() + school("hillside", "100002"), False, "schools", "two schools have the code 'hillside'"),
    (school() + school("brook", "100001"), False, "schools", "two schools have the urn '100001'"),
    (school(ids="bare") + school("brook", "100002", ids="bare"), False, "schools", "only one school may keep bare"),
    (school(ids="plain"), False, "schools.0.ids", "Input should be 'scoped' or 'bare'"),
    ("\n[[schools]]\n" + toml_table({"code": "a", "name": "A", "urn": "100001"}), False, "schools.0.feeds",
     "Field required"),
], ids=["none", "both", "urn", "code", "same-code", "same-urn", "two-bare", "ids", "no-feeds"])
def test_a_wrong_schools_table_is_one_error_naming_the_key(tmp_path: Path, schools: str, feeds: bool, key: str,
                                                           says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_job_config(job_with(tmp_path, schools, feeds=feeds))
    assert f": {key}: " in str(raised.value) and says in str(raised.value), str(raised.value)


STAFF = "Staff Code,Forename,Surname,Role,Start Date,End Date\n"


def read(tmp: Path, files: dict[str, str], bare: str = "") -> FeedResult:
    config = load_job_config(job_with(tmp, "".join(school(code, urn, ids="bare" if code == bare else "scoped")
                                                    for code, urn in (("hillside", "100001"), ("brook", "100002")))))
    for code, text in files.items():
        (tmp / f"{code}.csv").write_text(STAFF + text, encoding="utf-8")
    specs = [[FeedSpec("mis-csv", tmp / f.path, {"kind": "staff", "date_order": "dmy"}) for f in s.feeds]
             for s in config.schools]
    return read_schools(config.schools, specs, max_bad_percent=50)


def test_a_school_with_too_many_bad_rows_stops_the_read_naming_the_school(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match=r"^school brook \(Brook\): 2 of 2 feed rows \(100.0 %\) have errors"):
        read(tmp_path, {"hillside": "AB,Al,Bee,Teacher,01/09/2015,\n",
                        "brook": "JDO,Jo,Dunn,Teacher,01/09/2019,\nJDO,Jim,Dale,Teacher,01/09/2019,\n"})


def test_the_same_staff_code_at_two_schools_is_two_people_scoped_by_urn(tmp_path: Path) -> None:
    result = read(tmp_path, {"hillside": "HCA,Helen,Carter,Head Teacher,01/09/2015,\n",
                             "brook": "HCA,Harriet,Cole,Head Teacher,01/09/2019,\n"}, bare="hillside")
    assert not result.errors
    people = {p.person_id: p for p in result.people}
    assert set(people) == {"HCA", "100002:HCA"}  # Hillside keeps its bare ids: its accounts are unchanged
    assert (people["HCA"].school, people["HCA"].mis_id) == ("hillside", None)
    assert (people["100002:HCA"].school, people["100002:HCA"].mis_id) == ("brook", "HCA")
    # A username template with {person_id} uses the MIS's id, not the scope.
    assert template_values(people["100002:HCA"], date(2026, 12, 4))["person_id"] == "hca"


def test_a_duplicate_within_one_school_is_refused_there_with_its_scoped_id(tmp_path: Path) -> None:
    result = read(tmp_path, {"hillside": "JDO,Jane,Doe,Teacher,01/09/2015,\nAB,Al,Bee,Teacher,01/09/2015,\n",
                             "brook": "JDO,Jo,Dunn,Teacher,01/09/2019,\nJDO,Jim,Dale,Teacher,01/09/2019,\n"
                                      "BB,Bo,Bell,Teacher,01/09/2019,\nBC,Cy,Bell,Teacher,01/09/2019,\n"})
    assert {p.person_id for p in result.people} == {"100001:JDO", "100001:AB", "100002:BB", "100002:BC"}
    assert {e.person_id for e in result.errors} == {"100002:JDO"}


def test_an_id_with_a_colon_is_refused_in_a_trusts_job(tmp_path: Path) -> None:
    """It could pass for another school's scoped id (a bare school's `100002:HCA` would be Brook's head)."""
    result = read(tmp_path, {"hillside": "100002:HCA,Eve,Il,Teacher,01/09/2015,\nAB,Al,Bee,Teacher,01/09/2015,\n",
                             "brook": "HCA,Harriet,Cole,Head Teacher,01/09/2019,\n"}, bare="hillside")
    assert {p.person_id for p in result.people} == {"AB", "100002:HCA"}
    [error] = result.errors
    assert error.person_id == "100002:HCA" and "holds a colon" in error.message and error.line == 2
