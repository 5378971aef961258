"""Exports as the systems really write them: Microsoft's SDS v2.1 layout with guardians, UPN
usernames, folders told apart by their headers, UTF-16 without a BOM, and dates whose order is
in doubt."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from idlifecycle.errors import FeedError
from idlifecycle.feeds import guess_format
from idlifecycle.model import Kind
from tests.unit.test_feeds_sds import copy, read

DATA = Path(__file__).resolve().parents[1] / "data" / "feeds"
MICROSOFT = DATA / "sds_v2_microsoft_sample"
HEADER = "Staff Code,Forename,Surname,Start Date\n"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# 3. SDS v2.1 guardians


def test_microsofts_sds_layout_with_guardians_reads_with_no_bad_rows():
    result = read("sds-v2", MICROSOFT)
    assert result.errors == ()
    assert result.rows == 7
    by_id = {p.person_id: p for p in result.people}
    assert sorted(by_id) == ["221001", "221003", "221005", "221006", "221008", "221010", "221011"]
    assert {p.kind for p in result.people if p.person_id in {"221010", "221011"}} == {Kind.STAFF}
    # Guardians are in users.csv with no roles.csv row; relationships.csv says who they are.
    assert result.skipped == {"guardian": 3, "relative": 1}
    assert result.skipped_ids == {"221002", "221004", "221007", "221009"}
    # Microsoft writes US dates (7/22/2027): the day above 12 settles the order for roles.csv.
    assert (by_id["221001"].start_date, by_id["221001"].leave_date) == (date(2026, 9, 1), date(2027, 7, 22))


def test_a_user_with_no_role_and_no_relationship_is_counted_as_no_role_not_a_bad_row(tmp_path):
    folder = copy(MICROSOFT, tmp_path)
    with (folder / "users.csv").open("a", newline="") as users:
        users.write("221012,visitor@northfield.sch.uk,Vic,Tor,,,,,\n")
    result = read("sds-v2", folder)
    assert result.errors == ()
    assert result.skipped == {"guardian": 3, "relative": 1, "no role": 1}
    (folder / "relationships.csv").unlink()  # optional in SDS: the labels go, nothing else changes
    unlabelled = read("sds-v2", folder)
    assert unlabelled.skipped == {"no role": 5}
    assert unlabelled.people == result.people


# 4. SDS usernames are UPNs


def test_an_sds_username_is_the_local_part_of_the_upn_and_the_domain_is_kept():
    person = next(p for p in read("sds-v2", MICROSOFT).people if p.person_id == "221001")
    assert (person.username, person.username_domain) == ("awhite", "northfield.sch.uk")


@pytest.mark.parametrize(("username", "message"), [
    ("a white@northfield.sch.uk", "'a white@northfield.sch.uk' has a space before the @"),
    ("a/white@northfield.sch.uk", "'a/white@northfield.sch.uk' has '/' before the @"),
    (".awhite@northfield.sch.uk", "'.awhite@northfield.sch.uk' has '.' before the @"),
    ("awhite@", "'awhite@' is not a user name or a UPN (name@domain)"),
    ("a" * 65 + "@northfield.sch.uk", f"'{'a' * 65}' is 65 characters long; a user name may have at most 64"),
])
def test_a_username_no_directory_would_take_is_a_row_error_naming_the_person(tmp_path, username, message):
    folder = copy(MICROSOFT, tmp_path)
    users = folder / "users.csv"
    users.write_text(users.read_text().replace("awhite@northfield.sch.uk,Amara", f"{username},Amara"))
    result = read("sds-v2", folder)
    assert "221001" not in {p.person_id for p in result.people}
    (error,) = result.errors
    assert (error.line, error.field, error.person_id) == (2, "username", "221001")
    assert error.message.startswith(message)


# 5. Telling SDS v2.1 from OneRoster


def test_guess_format_tells_sds_from_oneroster_by_the_users_header(tmp_path):
    assert guess_format(DATA / "oneroster") == "oneroster"
    assert guess_format(DATA / "sds_v2") == "sds-v2"
    assert guess_format(DATA / "sds_v1") == "sds-v1"
    assert guess_format(DATA / "mis" / "sims_pupils.csv") == "mis-csv"
    folder = copy(MICROSOFT, tmp_path)
    (folder / "roles.csv").unlink()
    assert guess_format(folder) == "sds-v2"
    with pytest.raises(FeedError) as caught:
        read(guess_format(folder) or "", folder)
    assert str(caught.value).startswith(f"{folder}: missing roles.csv (found academicSessions.csv, classes.csv")


# 6. UTF-16 without a BOM


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_read_with_true_line_numbers_and_no_nul_bytes(tmp_path, encoding):
    path = write(tmp_path / "pupils.csv",
                 "Adno,Forename,Surname,Year\r\n000123,Siân,O'Brien,Year 4\r\n000124,Bob,Ray,Year 44\r\n", encoding)
    result = read("mis-csv", path)
    assert [(p.person_id, p.legal_first_name, p.year_group) for p in result.people] == [("000123", "Siân", "4")]
    assert [str(e) for e in result.errors] == [
        f"{path}:3: Year: unknown year group 'Year 44'; expected N1, N2, R or 1 to 14 (e.g. 'Year 7', 'Y7', 'R')"]
    assert "\x00" not in str(result.errors[0])


# 7. Dates whose order is in doubt


def test_a_file_whose_every_date_could_be_either_order_needs_date_order(tmp_path):
    path = write(tmp_path / "staff.csv", HEADER + "AB,Al,Bo,09/04/2024\nCD,Cy,Di,01/01/2020\n")
    with pytest.raises(FeedError) as caught:
        read("mis-csv", path)
    assert str(caught.value) == (
        f"{path}: every date could be dd/mm or mm/dd (e.g. 09/04/2024); "
        'set date_order = "dmy" or "mdy" in the job file'
    )
    assert read("mis-csv", path, date_order="dmy").people[0].start_date == date(2024, 4, 9)
    assert read("mis-csv", path, date_order="mdy").people[0].start_date == date(2024, 9, 4)


def test_a_day_above_12_settles_the_order_for_the_file(tmp_path):
    uk = write(tmp_path / "uk.csv", HEADER + "AB,Al,Bo,09/04/2024\nCD,Cy,Di,30/09/2024\n")
    assert [p.start_date for p in read("mis-csv", uk).people] == [date(2024, 4, 9), date(2024, 9, 30)]
    us = write(tmp_path / "us.csv", HEADER + "AB,Al,Bo,09/04/2024\nCD,Cy,Di,09/30/2024\n")
    assert [p.start_date for p in read("mis-csv", us).people] == [date(2024, 9, 4), date(2024, 9, 30)]


def test_a_date_the_configured_order_cannot_read_says_the_file_looks_like_mm_dd(tmp_path):
    path = write(tmp_path / "staff.csv", HEADER + "AB,Al,Bo,09/04/2024\nCD,Cy,Di,09/30/2024\n")
    result = read("mis-csv", path, date_order="dmy")
    assert [p.person_id for p in result.people] == ["AB"]
    assert [str(e) for e in result.errors] == [
        f"{path}:3: Start Date: '09/30/2024' is not a date in dd/mm/yyyy order; the file looks like mm/dd "
        '(date_order = "mdy" in the job file, if the whole file is written that way)']
    assert result.errors[0].person_id == "CD"


def test_iso_dates_are_never_in_doubt_and_each_file_is_settled_on_its_own(tmp_path):
    iso = write(tmp_path / "iso.csv", HEADER + "AB,Al,Bo,2024-04-09\nCD,Cy,Di,2024-09-04\n")
    assert [p.start_date for p in read("mis-csv", iso).people] == [date(2024, 4, 9), date(2024, 9, 4)]
    # A date of birth in dd/mm is not a column the reader uses: it settles nothing.
    dob = write(tmp_path / "dob.csv", "Staff Code,Forename,Surname,DOB,Start Date\nAB,Al,Bo,30/01/1990,09/04/2024\n")
    with pytest.raises(FeedError):
        read("mis-csv", dob)


def test_sds_roles_dates_in_doubt_stop_the_feed_until_the_job_file_says(tmp_path):
    folder = copy(MICROSOFT, tmp_path)
    roles = folder / "roles.csv"
    roles.write_text(roles.read_text().replace("7/22/2027", ""))
    with pytest.raises(FeedError) as caught:
        read("sds-v2", folder)
    assert str(caught.value).startswith(f"{roles}: every date could be dd/mm or mm/dd (e.g. 9/1/2026)")
    assert read("sds-v2", folder, date_order="mdy").people[0].start_date == date(2026, 9, 1)


def test_microsofts_sds_layout_meets_the_schools_mapping_once_the_missing_tutor_group_is_declared():
    """SDS v2.1 has the year group, role and leaving date in roles.csv, not users.csv: the school's own
    mapping (mappings/school.toml) is met by the feed as a whole. Only the registration group, which
    SDS v2.1 has no column for, must be declared absent."""
    from idlifecycle.shape import column_problems
    from tests.factories import school_rules

    rules = school_rules()
    [problem] = column_problems(read("sds-v2", MICROSOFT).columns, rules, None)
    assert f"{MICROSOFT} (users.csv, roles.csv): no column for registration_group" in problem
    assert column_problems(read("sds-v2", MICROSOFT, absent=["registration_group"]).columns, rules, None) == []
