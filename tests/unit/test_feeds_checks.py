"""What every reader reports beside the people: the id on each refused row, the columns it read,
the school's years, pupils without a year, and the options naming fields the export lacks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from idlifecycle.errors import ConfigError
from idlifecycle.feeds import FeedColumns, FeedSpec, read_feed, read_feeds
from idlifecycle.model import RowError

DATA = Path(__file__).resolve().parents[1] / "data" / "feeds"
SIMS_PUPILS = DATA / "mis" / "sims_pupils.csv"


def read(format: str, path: Path, **options: object):
    return read_feed(FeedSpec(format, path, options, "jobs/nightly.toml"))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


# A. The id on every refused row


def test_every_row_error_of_a_mis_report_carries_the_admission_number_as_written():
    result = read("mis-csv", SIMS_PUPILS)
    assert [(e.line, e.person_id) for e in result.errors] == [
        (8, "002004"), (9, "002005"), (10, "002006"), (11, "002012"), (12, "002012"), (15, "000414")]
    assert str(result.errors[0]).startswith(f"{SIMS_PUPILS}:8: UPN: ")  # the text is unchanged


def test_a_row_error_has_no_id_only_when_the_row_has_none(tmp_path):
    path = write(tmp_path / "pupils.csv", "Adno,Forename,Surname,Year\n,Ann,Lee,7\n 0042 ,Bob,,7\n")
    assert [(e.line, e.field, e.person_id) for e in read("mis-csv", path).errors] == [
        (2, "Adno", None), (3, "Surname", "0042")]


def test_an_unquoted_comma_row_still_names_its_id_and_a_shared_upn_names_each_pupil(tmp_path):
    path = write(
        tmp_path / "pupils.csv",
        "Adno,UPN,Forename,Surname,Year\n"
        "001,B801200005001,Ann,Lee,7\n"
        "002,B801200005001,Bob,Ray,7\n"
        "003,,Cy,Oak, Jr,7\n",
    )
    errors = read("mis-csv", path).errors
    assert [(e.line, e.field, e.person_id) for e in errors] == [
        (2, "UPN", "001"), (3, "UPN", "002"), (4, "row", "003")]


def test_an_id_in_two_feeds_names_it_on_both_lines(tmp_path):
    pupils = write(tmp_path / "pupils.csv", "Adno,Forename,Surname,Year\nAB1,Ann,Lee,7\n")
    staff = write(tmp_path / "staff.csv", "Staff Code,Forename,Surname\nAB1,Bob,Ray\n")
    result = read_feeds([FeedSpec("mis-csv", pupils), FeedSpec("mis-csv", staff)])
    assert [(e.file, e.person_id) for e in result.errors] == [(str(pupils), "AB1"), (str(staff), "AB1")]


def test_sds_role_errors_carry_the_user_sourced_id_and_user_errors_the_sourced_id(tmp_path):
    folder = copy(DATA / "sds_v2", tmp_path)
    users = folder / "users.csv"
    users.write_text(users.read_text().replace('"P000987","000987@riverside.sch.uk","Łukasz"',
                                               '"P000987","bad name@riverside.sch.uk","Łukasz"'))
    errors = read("sds-v2", folder).errors
    by_line = {(Path(e.file).name, e.line): e for e in errors}
    assert by_line[("roles.csv", 4)].person_id == "P000988"  # grade 15
    assert by_line[("roles.csv", 11)].person_id == "P777777"  # a user users.csv lacks
    assert by_line[("users.csv", 3)] == RowError(
        str(users), 3, "username",
        "'bad name@riverside.sch.uk' has a space before the @; a user name may have letters, digits and . _ - ' "
        "(not starting or ending with a dot)",
        "P000987",
    )


def test_sds_v1_and_oneroster_errors_carry_their_ids():
    v1 = read("sds-v1", DATA / "sds_v1").errors
    assert [e.person_id for e in v1] == ["000988", "000989"]
    roster = read("oneroster", DATA / "oneroster").errors
    assert roster and all(e.person_id for e in roster)


# B and C. The columns each file was read from, and the fields the school says are absent


def test_a_mis_report_says_which_header_each_field_came_from_and_which_it_ignored():
    result = read("mis-csv", SIMS_PUPILS, absent=["leave_date"])
    assert result.columns == (
        FeedColumns(
            file=str(SIMS_PUPILS), format="mis-csv", kind="pupil",
            mapping={
                "person_id": "Adno", "upn": "UPN", "legal_first_name": "Legal Forename",
                "preferred_first_name": "Preferred Forename", "last_name": "Legal Surname", "year_group": "Year",
                "registration_group": "Reg Group", "start_date": "Admission Date", "leave_date": "Leaving Date",
            },
            ignored=("Gender", "DOB", "Ethnicity"),
            absent=("leave_date",), feed=str(SIMS_PUPILS),
        ),
    )


def test_a_mis_report_with_a_kind_column_has_no_single_kind(tmp_path):
    path = write(tmp_path / "people.csv", "ID,Kind,Forename,Surname,Year\n1,Pupil,Ann,Lee,7\n2,Staff,Bob,Ray,\n")
    (columns,) = read("mis-csv", path).columns
    assert (columns.kind, columns.mapping["kind"], columns.mapping["person_id"]) == (None, "Kind", "ID")


def test_multi_file_formats_describe_each_file_that_lists_people():
    v2 = read("sds-v2", DATA / "sds_v2", absent=["registration_group"])
    assert [(Path(c.file).name, c.format, c.kind) for c in v2.columns] == [
        ("users.csv", "sds-v2", None), ("roles.csv", "sds-v2", None)]
    users, roles = v2.columns
    assert users.mapping == {"person_id": "sourcedId", "username": "username", "legal_first_name": "givenName",
                             "last_name": "familyName", "email": "email"}
    assert users.ignored == ("password", "activeDirectoryMatchId", "phone", "sms")
    assert roles.mapping["person_id"] == "userSourcedId" and roles.mapping["year_group"] == "grade"
    assert roles.ignored == ("sessionSourcedId",)
    assert users.absent == roles.absent == ("registration_group",)
    v1 = read("sds-v1", DATA / "sds_v1")
    assert [(Path(c.file).name, c.kind) for c in v1.columns] == [("Student.csv", "pupil"), ("Teacher.csv", "staff")]
    assert v1.columns[1].mapping["roles"] == "Title"
    (roster,) = read("oneroster", DATA / "oneroster").columns
    assert roster.mapping["year_group"] == "grades" and roster.mapping["upn"] == "userIds"
    assert "password" in roster.ignored


def test_read_feeds_keeps_the_columns_of_every_feed(tmp_path):
    pupils = write(tmp_path / "pupils.csv", "Adno,Forename,Surname,Year\n1,Ann,Lee,7\n")
    staff = write(tmp_path / "staff.csv", "Staff Code,Forename,Surname\nS1,Bob,Ray\n")
    result = read_feeds([FeedSpec("mis-csv", pupils), FeedSpec("mis-csv", staff)])
    assert [(c.file, c.kind) for c in result.columns] == [(str(pupils), "pupil"), (str(staff), "staff")]


def test_an_unknown_absent_field_is_a_config_error_naming_the_option(tmp_path):
    path = write(tmp_path / "pupils.csv", "Adno,Forename,Surname,Year\n1,Ann,Lee,7\n")
    with pytest.raises(ConfigError) as caught:
        read("mis-csv", path, absent=["leaving_date"])
    assert str(caught.value).startswith(
        "jobs/nightly.toml: absent: 'leaving_date' is not a field; known: kind, upn, legal_first_name")
    with pytest.raises(ConfigError) as caught:
        read("mis-csv", path, absent="leave_date")
    assert str(caught.value) == 'jobs/nightly.toml: absent: must be a list of field names, e.g. absent = ["leave_date"]'


# 1. The school's years


def test_a_pupil_outside_the_schools_years_is_a_row_error(tmp_path):
    path = write(tmp_path / "pupils.csv", "Adno,Forename,Surname,Year\n1,Ann,Lee,R\n2,Bob,Ray,Year 6\n3,Cy,Oak,Y12\n")
    result = read("mis-csv", path, years="R-6")
    assert [p.person_id for p in result.people] == ["1", "2"]
    assert [str(e) for e in result.errors] == [
        f"{path}:4: Year: Year 12 is outside this school's years R-6 (years in the job file)"]
    assert result.errors[0].person_id == "3"
    assert [p.person_id for p in read("mis-csv", path, years="7-13").people] == ["3"]
    nursery = read("mis-csv", path, years="N1-6")
    assert [p.person_id for p in nursery.people] == ["1", "2"]


def test_reception_outside_a_secondary_school_reads_as_reception(tmp_path):
    path = write(tmp_path / "pupils.csv", "Adno,Forename,Surname,Year\n1,Ann,Lee,Reception\n")
    assert [str(e) for e in read("mis-csv", path, years="7-13").errors] == [
        f"{path}:2: Year: Reception is outside this school's years 7-13 (years in the job file)"]


def test_every_format_checks_the_years():
    v2 = read("sds-v2", DATA / "sds_v2", years="R-6")
    assert "roles.csv:2: grade: Year 7 is outside this school's years R-6 (years in the job file)" in "\n".join(
        str(e) for e in v2.errors)
    v1 = read("sds-v1", DATA / "sds_v1", years="R-6")
    assert "Student.csv:2: Grade: Year 7 is outside this school's years R-6" in "\n".join(str(e) for e in v1.errors)
    roster = read("oneroster", DATA / "oneroster", years="R-6")
    assert "users.csv:2: grades: Year 7 is outside this school's years R-6" in "\n".join(
        str(e) for e in roster.errors)


@pytest.mark.parametrize("years", ["R-", "6-R", "Year 15", "7 to 11", "R-6-9"])
def test_a_bad_years_option_is_a_config_error(tmp_path, years):
    path = write(tmp_path / "pupils.csv", "Adno,Forename,Surname,Year\n1,Ann,Lee,7\n")
    with pytest.raises(ConfigError) as caught:
        read("mis-csv", path, years=years)
    assert str(caught.value).startswith(f"jobs/nightly.toml: years: is {years!r}")


# 2. A pupil with no year is a row error in every format


def test_a_student_role_without_a_grade_is_a_row_error_in_sds_v2(tmp_path):
    folder = copy(DATA / "sds_v2", tmp_path)
    roles = folder / "roles.csv"
    roles.write_text(roles.read_text().replace('"P001234","S801","student","SY2026","07"',
                                               '"P001234","S801","student","SY2026",""'))
    result = read("sds-v2", folder)
    assert "P001234" not in {p.person_id for p in result.people}
    assert f"{roles}:2: grade: is required but empty" in [str(e) for e in result.errors]


def test_a_student_without_a_grade_is_a_row_error_in_sds_v1_and_oneroster(tmp_path):
    v1 = copy(DATA / "sds_v1", tmp_path)
    students = v1 / "Student.csv"
    students.write_text(students.read_text().replace(",,001234,,7,Active", ",,001234,,,Active"))
    result = read("sds-v1", v1)
    assert "001234" not in {p.person_id for p in result.people}
    assert f"{students}:2: Grade: is required but empty" in [str(e) for e in result.errors]
    roster = copy(DATA / "oneroster", tmp_path)
    users = roster / "users.csv"
    users.write_text(users.read_text().replace(',001234,,,,,"07",', ",001234,,,,,,"))
    result = read("oneroster", roster)
    assert "u-001234" not in {p.person_id for p in result.people}
    assert f"{users}:2: grades: is required but empty" in [str(e) for e in result.errors]


def test_columns_a_file_of_one_kind_does_not_read_are_listed_as_ignored(tmp_path):
    path = write(tmp_path / "staff.csv",
                 "Staff Code,Type,Forename,Surname,Role,Year\nJSM,Teaching,Jon,Smith,Teacher,\n")
    (columns,) = read("mis-csv", path).columns
    assert columns.kind == "staff"
    assert columns.mapping == {"person_id": "Staff Code", "legal_first_name": "Forename", "last_name": "Surname",
                               "roles": "Role"}
    assert columns.ignored == ("Type", "Year")
