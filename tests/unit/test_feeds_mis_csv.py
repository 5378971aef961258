"""The generic MIS CSV reader against exports written the way SIMS, Arbor and Bromcom write them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from idlifecycle.errors import ConfigError, FeedError
from idlifecycle.feeds import FeedSpec, read_feed
from idlifecycle.model import Kind

DATA = Path(__file__).resolve().parents[1] / "data" / "feeds" / "mis"
SIMS_PUPILS = DATA / "sims_pupils.csv"


def read(path: Path, **options: object):
    return read_feed(FeedSpec("mis-csv", path, options, "jobs/nightly.toml"))


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_sims_pupil_report_with_bom_crlf_and_extra_columns_reads_every_good_pupil():
    result = read(SIMS_PUPILS)
    by_id = {person.person_id: person for person in result.people}
    assert sorted(by_id) == ["000412", "000413", "000987", "001234", "002001", "002002", "002003"]
    zoe = by_id["001234"]
    assert (zoe.kind, zoe.legal_first_name, zoe.last_name, zoe.year_group, zoe.registration_group) == (
        Kind.PUPIL, "Zoë", "O'Brien", "7", "7K")
    assert zoe.upn == "B801200005001"
    assert zoe.start_date == date(2026, 9, 1)
    assert zoe.preferred_first_name is None  # SIMS repeats the legal forename as preferred
    assert zoe.source == f"{SIMS_PUPILS}:2"
    assert by_id["000987"].year_group == "R"
    assert by_id["002001"].preferred_first_name == "An"
    assert by_id["002001"].last_name == "Nguyễn"
    assert by_id["002001"].start_date == date(2025, 9, 1)  # written d/m/yyyy
    assert by_id["002003"].first_name == "Jim"
    assert by_id["000412"].leave_date == date(2026, 7, 22)
    assert by_id["000413"].year_group == "N2"
    assert by_id["000413"].upn == "M80120000500A"  # a temporary UPN ends in a letter
    assert result.rows == 13  # the blank lines are not rows


def test_sims_pupil_report_names_every_bad_row_exactly():
    result = read(SIMS_PUPILS)
    assert [str(error) for error in result.errors] == [
        f"{SIMS_PUPILS}:8: UPN: 'A801400926001' has check letter A but its digits give W; the UPN is mistyped",
        f"{SIMS_PUPILS}:9: Leaving Date: leaving date 22/07/2026 is before the start date 01/09/2026 (Admission Date)",
        f"{SIMS_PUPILS}:10: Year: unknown year group 'Year 15'; "
        "expected N1, N2, R or 1 to 14 (e.g. 'Year 7', 'Y7', 'R')",
        f"{SIMS_PUPILS}:11: Adno: duplicate '002012', also on line 12",
        f"{SIMS_PUPILS}:12: Adno: duplicate '002012', also on line 11",
        f"{SIMS_PUPILS}:15: UPN: 'B80120000500' is not a UPN "
        "(13 characters: a check letter, 11 digits, a digit or letter)",
    ]


def test_sims_staff_report_gives_staff_with_roles_and_the_leaver_end_date():
    result = read(DATA / "sims_staff.csv")
    assert result.errors == ()
    by_id = {person.person_id: person for person in result.people}
    assert {person.kind for person in result.people} == {Kind.STAFF}
    assert by_id["JSI"].roles == ("Teacher", "SENCo")
    assert by_id["AMU"].last_name == "Müller"
    assert by_id["DPR"].leave_date == date(2026, 8, 31)
    assert by_id["JSM"].start_date == date(2019, 9, 1)
    assert by_id["JSM"].year_group is None


def test_arbor_export_with_lowercase_headers_iso_dates_and_leading_zero_ids():
    result = read(DATA / "arbor_students.csv", kind="pupil")
    by_id = {person.person_id: person for person in result.people}
    assert sorted(by_id) == ["0042", "0043", "0044"]
    assert by_id["0043"].preferred_first_name == "Joe"
    assert by_id["0043"].start_date == date(2022, 9, 5)  # ISO datetime
    assert by_id["0043"].leave_date == date(2026, 7, 22)
    assert by_id["0044"].last_name == "van der Berg"
    assert by_id["0042"].year_group == "10"
    assert by_id["0042"].registration_group == "10M"


def test_a_file_whose_id_column_does_not_say_pupils_or_staff_needs_the_kind_option():
    with pytest.raises(ConfigError) as caught:
        read(DATA / "arbor_students.csv")
    assert str(caught.value) == (
        f"jobs/nightly.toml: kind: cannot tell whether {DATA / 'arbor_students.csv'} lists pupils or staff; "
        'set kind = "pupil" or kind = "staff"'
    )


def test_bromcom_export_in_windows_1252_keeps_accents_and_curly_apostrophes():
    result = read(DATA / "bromcom_students.csv", date_order="dmy")  # every date in it could be either
    names = [(p.person_id, p.legal_first_name, p.last_name, p.year_group) for p in result.people]
    assert names == [
        ("00101", "Zoë", "Adams", "7"), ("00102", "Siân", "O’Brien", "R"), ("00103", "Renée", "Dupré", "N1")]
    assert result.people[1].start_date == date(2025, 9, 2)


def test_cp1252_file_with_plain_apostrophe_and_explicit_encoding_option(tmp_path):
    path = write(tmp_path / "pupils.csv", "Adno,Forename,Surname,Year\r\n007,Zoë,O'Brien,Y9\r\n", "cp1252")
    assert read(path).people[0].legal_first_name == "Zoë"
    assert read(path, encoding="cp1252").people[0].last_name == "O'Brien"


def test_header_variants_match_whatever_their_case_spacing_and_order(tmp_path):
    path = write(
        tmp_path / "pupils.csv",
        "REG,nc year,SURNAME,Preferred Forename,forename,ADMISSION NO.,Unique Pupil Number\n"
        "8B,Year 08,Kowalski,,Łukasz,000321,B801200005001\n",
    )
    person = read(path).people[0]
    assert (person.person_id, person.legal_first_name, person.last_name, person.year_group) == (
        "000321", "Łukasz", "Kowalski", "8")
    assert (person.registration_group, person.upn) == ("8B", "B801200005001")


def test_column_map_in_the_job_file_names_a_school_specific_header(tmp_path):
    path = write(tmp_path / "pupils.csv", "Pupil Ref,Forename,Surname,Current Year\nX12,Ann,Lee,Year 3\n")
    result = read(path, kind="pupil", columns={"person_id": "Pupil Ref", "year_group": "Current Year"})
    assert [(p.person_id, p.year_group) for p in result.people] == [("X12", "3")]


def test_a_mapped_column_the_file_lacks_is_a_feed_error_naming_the_job_option(tmp_path):
    path = write(tmp_path / "pupils.csv", "Adno,Forename,Surname,Year\n1,Ann,Lee,3\n")
    with pytest.raises(FeedError) as caught:
        read(path, columns={"year_group": "Current Year"})
    assert str(caught.value) == (
        f"{path}: no column 'Current Year' (set as columns.year_group in jobs/nightly.toml); "
        "found: 'Adno', 'Forename', 'Surname', 'Year'"
    )


def test_a_kind_column_lets_one_file_list_pupils_and_staff(tmp_path):
    path = write(
        tmp_path / "people.csv",
        "ID,Type,Forename,Surname,Year,Role\n1,Pupil,Ann,Lee,R,\n2,Staff,Bob,Ray,,Teacher\n3,Governor,Cy,Oak,,\n",
    )
    result = read(path)
    assert [(p.person_id, p.kind, p.roles) for p in result.people] == [
        ("1", Kind.PUPIL, ()), ("2", Kind.STAFF, ("Teacher",))]
    assert [str(e) for e in result.errors] == [f"{path}:4: Type: 'Governor' is neither pupil nor staff"]


def test_missing_surname_column_is_a_feed_error_listing_what_was_found(tmp_path):
    path = write(tmp_path / "pupils.csv", "Adno,Forename,Year\n1,Ann,3\n")
    with pytest.raises(FeedError) as caught:
        read(path)
    assert str(caught.value) == (
        f"{path}: no column for last_name (looked for 'Legal Surname', 'Legal Last Name', 'Surname', 'Last Name', "
        "'Lastname', 'Family Name'); found: 'Adno', 'Forename', 'Year'; name it with columns.last_name in the job file"
    )


def test_an_empty_export_is_a_feed_error_never_an_empty_school(tmp_path):
    empty = write(tmp_path / "empty.csv", "")
    with pytest.raises(FeedError) as caught:
        read(empty, kind="pupil")
    assert str(caught.value) == f"{empty}: the file is empty; expected a header line and data rows"
    header_only = write(tmp_path / "header.csv", "\ufeffAdno,Forename,Surname,Year\r\n\r\n")
    with pytest.raises(FeedError) as caught:
        read(header_only)
    assert str(caught.value) == f"{header_only}: has a header but no data rows; refusing to treat that as nobody"


@pytest.mark.parametrize(("start", "what"), [(b"PK\x03\x04\x14\x00\x06\x00", "an Excel workbook (.xlsx)"),
                                            (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel workbook (.xls)")])
def test_a_workbook_saved_in_place_of_the_csv_is_named_for_what_it_is(tmp_path, start, what):
    """Read as text a workbook looks like "a header but no data rows"; the office needs to hear it is Excel."""
    path = tmp_path / "pupils.csv"
    path.write_bytes(start + bytes(range(256)) * 4)
    with pytest.raises(FeedError) as caught:
        read(path, kind="pupil")
    assert str(caught.value).startswith(f"{path}: is {what}")
    assert "not a CSV file; in Excel use File > Save As > CSV UTF-8" in str(caught.value)


def test_a_missing_file_is_a_feed_error(tmp_path):
    with pytest.raises(FeedError) as caught:
        read(tmp_path / "pupils.csv", kind="pupil")
    assert str(caught.value) == f"{tmp_path / 'pupils.csv'}: file not found; check the feed path in the job file"


def test_an_unterminated_quote_is_one_feed_error_with_the_line_it_starts_on(tmp_path):
    path = write(tmp_path / "pupils.csv", 'Adno,Forename,Surname,Year\r\n1,Ann,Lee,3\r\n2,"Bob,Ray,4\r\n3,Cy,Oak,5\r\n')
    with pytest.raises(FeedError) as caught:
        read(path)
    assert str(caught.value) == f"{path}:3: the CSV is broken (unexpected end of data); is a quote left open?"


def test_a_row_with_more_values_than_the_header_is_refused(tmp_path):
    path = write(tmp_path / "pupils.csv", "Adno,Forename,Surname,Year\n1,Ann,Lee,3,\n2,Smith, Bob,Ray,4\n")
    result = read(path)
    assert [p.person_id for p in result.people] == ["1"]  # a trailing empty field is harmless
    assert [str(e) for e in result.errors] == [
        f"{path}:3: row: has 5 fields but the header has 4 (an unquoted comma in a value?)"]


def test_names_too_long_or_with_control_characters_and_missing_required_values(tmp_path):
    long_name = "A" * 61
    path = write(
        tmp_path / "pupils.csv",
        f"Adno,Forename,Surname,Year\n1,{long_name},Lee,3\n2,Bo\x07b,Ray,4\n,Cy,Oak,5\n4,Di,,6\n5,Ed,Fox,\n"
        "6,Al\ufffdn,Fox,2\n",
    )
    assert [str(e) for e in read(path).errors] == [
        f"{path}:2: Forename: is 61 characters long; a name may have at most 60",
        f"{path}:3: Forename: contains a control character (U+0007)",
        f"{path}:4: Adno: is required but empty",
        f"{path}:5: Surname: is required but empty",
        f"{path}:6: Year: is required but empty",
        f"{path}:7: Forename: 'Al\ufffdn' has a character lost in an earlier export (U+FFFD); correct it in the MIS",
    ]


def test_a_date_that_is_not_a_date_is_a_row_error_and_us_order_is_an_option(tmp_path):
    path = write(
        tmp_path / "staff.csv", "Staff Code,Forename,Surname,Start Date\nAB,Al,Bo,31/02/2026\nCD,Cy,Di,9/24/2021\n"
    )
    assert [str(e) for e in read(path).errors] == [
        f"{path}:2: Start Date: '31/02/2026' is not a date; expected dd/mm/yyyy or yyyy-mm-dd",
        f"{path}:3: Start Date: '9/24/2021' is not a date in dd/mm/yyyy order; the file looks like mm/dd "
        '(date_order = "mdy" in the job file, if the whole file is written that way)',
    ]
    us = read(path, date_order="mdy")
    assert [p.start_date for p in us.people] == [date(2021, 9, 24)]


def test_unknown_options_and_bad_kind_are_config_errors_naming_the_job_file(tmp_path):
    path = write(tmp_path / "pupils.csv", "Adno,Forename,Surname,Year\n1,Ann,Lee,3\n")
    with pytest.raises(ConfigError) as caught:
        read(path, knd="pupil")
    assert str(caught.value) == (
        "jobs/nightly.toml: knd: is not an option of the mis-csv feed; "
        "known: absent, columns, date_order, encoding, kind, years")
    with pytest.raises(ConfigError) as caught:
        read(path, kind="pupils and staff")
    assert str(caught.value) == "jobs/nightly.toml: kind: is 'pupils and staff'; expected \"pupil\" or \"staff\""


def test_a_type_column_in_a_staff_report_meaning_teaching_or_support_does_not_confuse_the_kind(tmp_path):
    path = write(tmp_path / "staff.csv", "Staff Code,Type,Forename,Surname,Role\nJSM,Teaching,Jon,Smith,Teacher\n")
    assert [(p.person_id, p.kind) for p in read(path).people] == [("JSM", Kind.STAFF)]


def test_excel_unicode_text_export_is_tab_separated_utf16(tmp_path):
    path = tmp_path / "pupils.txt"
    path.write_bytes("Adno\tForename\tSurname\tYear\r\n000123\tSiân\tO'Brien\tYear 4\r\n".encode("utf-16"))
    assert [(p.person_id, p.legal_first_name, p.year_group) for p in read(path).people] == [("000123", "Siân", "4")]


def test_excel_sep_hint_line_and_semicolons_keep_true_line_numbers(tmp_path):
    path = write(tmp_path / "pupils.csv", "sep=;\r\nAdno;Forename;Surname;Year\r\n1;Ann;Lee;7\r\n2;Bob;Ray;Year 0\r\n")
    result = read(path)
    assert [p.person_id for p in result.people] == ["1"]
    assert [str(e) for e in result.errors] == [
        f"{path}:4: Year: unknown year group 'Year 0'; expected N1, N2, R or 1 to 14 (e.g. 'Year 7', 'Y7', 'R')"]


def test_a_file_that_is_neither_utf8_nor_windows_1252_says_how_to_fix_it(tmp_path):
    path = tmp_path / "pupils.csv"
    path.write_bytes(b"Adno,Forename,Surname,Year\r\n1,Ann,Lee,7\r\n2,B\x81b,Ray,8\r\n")
    with pytest.raises(FeedError) as caught:
        read(path)
    assert str(caught.value) == (
        f"{path}:3: the file is not valid cp1252 (byte 0x81); save it again as UTF-8 (CSV UTF-8 in Excel)")
