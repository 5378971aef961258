"""The MIS reader's fast path (`plain_reader`, `plain_names`, `plain_upn`, the UPN sum tables): it may only
accept what the full checks accept, read to the same Person, and must leave every hostile value to them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idlifecycle.feeds import mis_csv
from idlifecycle.feeds._csv import Row, read_table
from idlifecycle.feeds._fields import (
    UPN_CHECK_LETTERS,
    UPN_SHAPE,
    RowCheck,
    parse_years,
    plain_names,
    plain_upn,
    upn_check_letter,
)
from idlifecycle.model import Kind


def reference_check_letter(upn: str) -> str:
    """The DfE algorithm as the guidance states it: characters 2-13 weighted 2-13, letters by alphabet place."""
    total = 0
    for weight, char in enumerate(upn[1:13], start=2):
        total += weight * (int(char) if char.isdigit() else UPN_CHECK_LETTERS.index(char))
    return UPN_CHECK_LETTERS[total % 23]


@given(st.text("0123456789", min_size=11, max_size=11), st.sampled_from("0123456789" + UPN_CHECK_LETTERS))
def test_the_upn_sum_tables_give_the_dfe_check_letter(digits, last):
    assert upn_check_letter("?" + digits + last) == reference_check_letter("?" + digits + last)


@pytest.mark.parametrize("upn", [
    "?٨٠١٢٠٠٠٠٥٠٠١",  # Arabic-Indic digits, which \d matches: read by the general sum
    "?8012000A5001",  # a letter among the digits
    "?80120",  # too short for the tables
])
def test_upns_the_tables_do_not_hold_are_summed_the_general_way(upn):
    assert upn_check_letter(upn) == reference_check_letter(upn)


@given(st.text("0123456789", min_size=11, max_size=11), st.sampled_from("0123456789" + UPN_CHECK_LETTERS))
def test_a_plain_upn_is_exactly_a_well_shaped_upn_with_its_check_letter(digits, last):
    good = reference_check_letter("?" + digits + last) + digits + last
    assert plain_upn(good)
    wrong = UPN_CHECK_LETTERS[(UPN_CHECK_LETTERS.index(good[0]) + 1) % 23] + good[1:]
    assert not plain_upn(wrong)


@pytest.mark.parametrize("upn", [
    "B801200005001" + "1",  # 14 characters
    "B80120000500",  # 12
    "",
    "b801200005001",  # lower case: the reader upper-cases first
    "I801200005001", "O801200005001", "S801200005001",  # letters the check alphabet does not have
    "B80120000500O", "B80120000500I",
    "B8012000A5001",  # a letter among the digits
    "B٨٠١٢٠٠٠٠٥٠٠١",  # digits of another script: the full check refuses it
    "B801200005 01", "B+01200005001", "B-01200005001", "B8_1200005001",  # what int() would let through
])
def test_hostile_upns_are_not_plain(upn):
    assert not plain_upn(upn)


def test_the_dfe_example_is_plain():
    assert plain_upn("B801200005001")
    assert UPN_SHAPE.fullmatch("B801200005001")


@pytest.mark.parametrize(("first", "last", "preferred"), [
    ("", "Smith", ""),  # a required name empty
    ("Ada", "", ""),
    ("A" * 61, "Smith", ""),  # too long
    ("Ada", "S" * 61, ""),
    ("Ada", "Smith", "P" * 61),
    ("Ad\ufffd", "Smith", ""),  # lost in an earlier export
    ("Ada", "Smith", "\ufffd"),
    ("Evil\u202enimdA", "Smith", ""),  # a bidi override
    ("Ada", "Sm\u200bith", ""),  # a zero-width space
    ("Ada\t", "Smith", ""),  # a control character
    ("Ada", "Smith\n", ""),
    ("Ada", "Smith", "\x00"),
    ("\u0645\u200c\u0631", "Smith", ""),  # a joiner: allowed, but only the full check looks that close
    ("Ada\u00a0Mae", "Smith", ""),  # a no-break space: not printable, so the full check reads it
])
def test_hostile_names_are_not_plain(first, last, preferred):
    assert not plain_names(first, last, preferred)


def test_ordinary_names_are_plain():
    assert plain_names("Zoë", "O'Brien-Nguyễn", "")
    assert plain_names("A" * 60, "S" * 60, "P" * 60)
    assert plain_names("Łukasz", "Kowalski", "Luke")


HEADER = '"Adno","UPN","Legal Forename","Preferred Forename","Legal Surname","Year","Reg Group","Admission Date",' \
         '"Leaving Date","Kind","Role"'
GOOD = ["000001", "B801200005001", "Zoë", "", "O'Brien", "Year 7", "7K", "01/09/2025", "", "pupil", ""]

HOSTILE = {
    "no id": {0: ""},
    "bad upn check letter": {1: "C801200005001"},
    "upn of another script": {1: "B٨٠١٢٠٠٠٠٥٠٠١"},
    "upn too long": {1: "B8012000050011"},
    "empty forename": {2: ""},
    "bidi override": {2: "Evil\u202enimdA"},
    "control character": {4: "O'Brien\x07"},
    "lost character": {4: "O'Br\ufffden"},
    "name too long": {4: "X" * 61},
    "joiner": {2: "\u0645\u200c\u0631"},
    "no-break space": {2: "Zoë\u00a0Ann"},
    "preferred too long": {3: "P" * 61},
    "unknown year": {5: "Year 15"},
    "negative year": {5: "-1"},
    "two years": {5: "7/8"},
    "empty year": {5: ""},
    "outside the school's years": {5: "Year 12"},
    "impossible date": {7: "31/02/2025"},
    "month 13": {7: "01/13/2025"},
    "iso month 13": {7: "2025-13-01"},
    "date with a sign": {7: "+1/09/2025"},
    "date of another script": {7: "٠١/٠٩/٢٠٢٥"},
    "date with underscores": {7: "0_1/09/2025"},
    "not a date": {7: "next week"},
    "leaves before starting": {7: "01/09/2025", 8: "31/08/2025"},
    "unknown kind": {9: "governor"},
    "empty kind": {9: ""},
    "staff with a role list": {9: "staff", 10: "Teacher; SENCo"},
    "staff with an empty year": {9: "staff", 5: ""},
}


def csv_line(values: list[str]) -> str:
    return ",".join('"' + value.replace('"', '""') + '"' for value in values)


@pytest.fixture
def table_and_columns(tmp_path: Path):
    rows = [GOOD] + [[changes.get(n, value) for n, value in enumerate(GOOD)] for changes in HOSTILE.values()]
    path = tmp_path / "pupils.csv"
    path.write_text("\n".join([HEADER] + [csv_line(row) for row in rows]) + "\n", encoding="utf-8")
    table = read_table(path)
    spec = mis_csv.FeedSpec("mis-csv", path, {"years": "R-11"})
    columns = mis_csv._resolve(table, mis_csv.Options(spec, mis_csv.OPTIONS), {}, None)
    return table, columns


def full_checks(table, columns, line, cells):
    check = RowCheck(table.file, line, "dmy", person_id=cells[0], years=parse_years("R-11"))
    row_columns = tuple(columns[name] or "" for name in mis_csv._ROW_FIELDS)
    return mis_csv._person(check, Row(line, cells, table.positions), row_columns, None), check.errors


def test_the_plain_reader_reads_a_good_row_as_the_full_checks_do(table_and_columns):
    table, columns = table_and_columns
    plain = mis_csv.plain_reader(table, columns, None, "dmy", parse_years("R-11"))
    person = plain(table.lines[0], table.records[0])
    assert person is not None
    assert (person, []) == full_checks(table, columns, table.lines[0], table.records[0])
    assert (person.kind, person.upn, person.year_group, person.source) == (
        Kind.PUPIL, "B801200005001", "7", f"{table.file}:2")


def test_the_plain_reader_leaves_every_hostile_row_to_the_full_checks(table_and_columns):
    table, columns = table_and_columns
    plain = mis_csv.plain_reader(table, columns, None, "dmy", parse_years("R-11"))
    for name, line, cells in zip(HOSTILE, table.lines[1:], table.records[1:], strict=True):
        fast = plain(line, cells)
        person, errors = full_checks(table, columns, line, cells)
        if fast is None:
            # Left to the full checks: they refuse it with an error naming file, line and column, or
            # accept it (a joiner, a no-break space).
            assert errors or person is not None, name
            assert all(error.file == table.file and error.line == line and error.field for error in errors), name
        else:  # staff rows are plain: the same Person as the full checks make
            assert (fast, []) == (person, errors), name
    staff = plain(table.lines[-2], table.records[-2])
    assert staff is not None and staff.roles == ("Teacher", "SENCo")
    refused = [name for name, line, cells in zip(HOSTILE, table.lines[1:], table.records[1:], strict=True)
               if full_checks(table, columns, line, cells)[1]]
    assert set(refused) == set(HOSTILE) - {
        "joiner", "no-break space", "staff with a role list", "staff with an empty year",
    }  # a date or UPN in digits of another script is refused: the DfE's UPN and the exports' dates are ASCII
