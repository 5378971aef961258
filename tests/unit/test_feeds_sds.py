"""School Data Sync exports: v2.1 (orgs, users, roles) and v1 UK format (School, Student, Teacher)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.errors import ConfigError, FeedError
from idlifecycle.feeds import FeedSpec, read_feed
from idlifecycle.model import Kind

DATA = Path(__file__).resolve().parents[1] / "data" / "feeds"
V2 = DATA / "sds_v2"
V1 = DATA / "sds_v1"


def read(format: str, path: Path, **options: object):
    return read_feed(FeedSpec(format, path, options, "jobs/nightly.toml"))


def copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def test_sds_v2_users_take_kind_year_and_dates_from_their_roles():
    result = read("sds-v2", V2)
    by_id = {person.person_id: person for person in result.people}
    assert sorted(by_id) == ["P000987", "P001234", "S0042", "S0043"]
    assert (by_id["P001234"].kind, by_id["P001234"].year_group, by_id["P001234"].start_date) == (
        Kind.PUPIL, "7", date(2026, 9, 1))
    assert by_id["P000987"].year_group == "8"
    assert by_id["P000987"].leave_date == date(2026, 7, 22)
    # A teacher whose role at one school ended but continues at the other has not left.
    assert by_id["S0042"].kind is Kind.STAFF
    assert by_id["S0042"].leave_date is None
    assert by_id["S0042"].email == "jsmith@riverside.sch.uk"
    assert by_id["S0043"].roles == ("itAdmin",)
    # SDS usernames are UPNs: the local part is the username, the domain is kept beside it.
    assert (by_id["P001234"].username, by_id["P001234"].username_domain) == ("001234", "riverside.sch.uk")
    assert by_id["P001234"].last_name == "O'Brien"


def test_sds_v2_refuses_rows_that_do_not_add_up_and_says_where():
    result = read("sds-v2", V2)
    assert [str(error) for error in result.errors] == [
        f"{V2}/roles.csv:4: grade: unknown year group '15'; expected N1, N2, R or 1 to 14 (e.g. 'Year 7', 'Y7', 'R')",
        f"{V2}/roles.csv:9: orgSourcedId: 'S999' is not a sourcedId in orgs.csv",
        f"{V2}/roles.csv:10: roleEndDate: leaving date 01/07/2026 is before the start date 01/09/2026 (roleStartDate)",
        f"{V2}/roles.csv:11: userSourcedId: 'P777777' is not a sourcedId in users.csv",
    ]
    assert [error.person_id for error in result.errors] == ["P000988", "P000989", "P000990", "P777777"]
    # G9001 is a guardian and P000991 has no roles.csv row: not provisioned, and not bad rows either.
    assert result.skipped == {"guardian": 1, "no role": 1}
    assert "P000991" in result.skipped_ids
    assert result.rows == 7


def test_sds_v2_school_option_reads_one_school_of_a_trust_export():
    result = read("sds-v2", V2, school="S802")
    assert [(p.person_id, p.leave_date) for p in result.people] == [("S0042", date(2026, 7, 22))]
    assert result.errors == ()
    assert result.rows == 1
    with pytest.raises(ConfigError) as caught:
        read("sds-v2", V2, school="S803")
    assert str(caught.value) == f"jobs/nightly.toml: school: 'S803' is not a sourcedId in {V2}/orgs.csv"


def test_sds_v2_without_roles_csv_is_a_feed_error_not_everyone_inactive(tmp_path):
    folder = copy(V2, tmp_path)
    (folder / "roles.csv").unlink()
    with pytest.raises(FeedError) as caught:
        read("sds-v2", folder)
    assert str(caught.value) == (
        f"{folder}: missing roles.csv (found orgs.csv, users.csv); refusing to read a partial sds-v2 export "
        "as if those records had gone"
    )


def test_sds_v2_headers_are_case_sensitive_and_the_error_says_so(tmp_path):
    folder = copy(V2, tmp_path)
    users = folder / "users.csv"
    users.write_text(users.read_text().replace("sourcedId,username", "SourcedId,username", 1))
    with pytest.raises(FeedError) as caught:
        read("sds-v2", folder)
    assert str(caught.value) == (
        f"{users}: missing column 'sourcedId'; 'SourcedId' should be 'sourcedId' (headers are case-sensitive); "
        "found: 'SourcedId', 'username', 'givenName', 'familyName', 'password', 'activeDirectoryMatchId', 'email', "
        "'phone', 'sms'"
    )


def test_sds_v2_empty_users_file_is_a_feed_error(tmp_path):
    folder = copy(V2, tmp_path)
    (folder / "users.csv").write_text("sourcedId,username,givenName,familyName\r\n")
    with pytest.raises(FeedError) as caught:
        read("sds-v2", folder)
    assert str(caught.value) == f"{folder}/users.csv: has a header but no data rows; refusing to treat that as nobody"


def test_sds_v2_a_user_who_is_both_student_and_teacher_is_refused(tmp_path):
    folder = copy(V2, tmp_path)
    with (folder / "roles.csv").open("a", newline="") as roles:
        roles.write('"P001234","S802","teacher","SY2026","","FALSE","2026-09-01",""\r\n')
    result = read("sds-v2", folder)
    assert "P001234" not in {p.person_id for p in result.people}
    assert f"{folder}/users.csv:2: sourcedId: 'P001234' is both a student and staff in roles.csv (lines 2, 12)" in [
        str(e) for e in result.errors]


def test_sds_v2_us_grades_count_one_below_uk_years_but_a_named_year_stays_put():
    result = read("sds-v2", V2, grades="us")
    # roles.csv has grade "07" for P001234 and "Year 8" for P000987.
    assert {p.person_id: p.year_group for p in result.people if p.kind is Kind.PUPIL} == {
        "P001234": "8", "P000987": "8"}


def test_sds_v1_uk_format_reads_students_and_teachers_and_skips_inactive_records():
    result = read("sds-v1", V1)
    people = [(p.person_id, p.kind, p.legal_first_name, p.year_group, p.roles) for p in result.people]
    assert people == [
        ("001234", Kind.PUPIL, "Zoë", "7", ()),
        ("JSM", Kind.STAFF, "Jon", None, ("Head of Science",)),
        ("JSI", Kind.STAFF, "John", None, ("teacher",)),
    ]
    assert [str(error) for error in result.errors] == [
        f"{V1}/Student.csv:4: Grade: unknown year group 'X'; expected N1, N2, R or 1 to 14 (e.g. 'Year 7', 'Y7', 'R')",
        f"{V1}/Student.csv:5: School DfE Number: '8019999' is not a school in School.csv",
    ]
    assert result.rows == 6


def test_sds_v1_missing_teacher_file_is_a_feed_error(tmp_path):
    folder = copy(V1, tmp_path)
    (folder / "Teacher.csv").unlink()
    with pytest.raises(FeedError) as caught:
        read("sds-v1", folder)
    assert str(caught.value) == (
        f"{folder}: missing Teacher.csv (found School.csv, Section.csv, Student.csv); refusing to read a partial "
        "sds-v1 export as if those records had gone"
    )


def test_sds_v1_same_id_for_a_student_and_a_teacher_is_refused_on_both_lines(tmp_path):
    folder = copy(V1, tmp_path)
    with (folder / "Teacher.csv").open("a", newline="") as teachers:
        teachers.write("001234,8014012,Ann,Lee,alee,,,103,Active,,,,\r\n")
    result = read("sds-v1", folder)
    assert "001234" not in {p.person_id for p in result.people}
    assert [str(e) for e in result.errors if e.field == "person_id"] == [
        f"{folder}/Student.csv:2: person_id: duplicate id '001234', also at {folder}/Teacher.csv:4",
        f"{folder}/Teacher.csv:4: person_id: duplicate id '001234', also at {folder}/Student.csv:2",
    ]


def test_sds_v1_original_sds_headers_are_read_too(tmp_path):
    (tmp_path / "School.csv").write_text("SIS ID,Name\n1,Riverside\n")
    (tmp_path / "Student.csv").write_text(
        "SIS ID,School SIS ID,Username,First Name,Last Name,Grade\n9,1,u9,Ann,Lee,R\n"
    )
    (tmp_path / "Teacher.csv").write_text("SIS ID,School SIS ID,Username,First Name,Last Name\nT1,1,t1,Bob,Ray\n")
    result = read("sds-v1", tmp_path)
    assert [(p.person_id, p.year_group) for p in result.people] == [("9", "R"), ("T1", None)]


def test_sds_v2_an_unknown_role_is_a_row_error_so_nobody_silently_drops_out(tmp_path):
    folder = copy(V2, tmp_path)
    roles = folder / "roles.csv"
    roles.write_text(roles.read_text().replace('"S0043","S801","itAdmin"', '"S0043","S801","librarian"'))
    result = read("sds-v2", folder)
    assert "S0043" not in {p.person_id for p in result.people}
    assert f"{folder}/roles.csv:7: role: unknown role 'librarian'; expected student or a staff role such as " \
        "teacher or staff" in [str(e) for e in result.errors]


def test_sds_v2_a_school_with_no_users_is_a_feed_error(tmp_path):
    folder = copy(V2, tmp_path)
    with (folder / "orgs.csv").open("a", newline="") as orgs:
        orgs.write('"S803","Empty Infants","school","T100"\r\n')
    with pytest.raises(FeedError) as caught:
        read("sds-v2", folder, school="S803")
    assert str(caught.value) == f"{folder}/roles.csv: no user has a role in school 'S803'; check the school option"
