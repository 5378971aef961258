"""The field rules every feed shares: UPN check letters, year-group spellings, date forms."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idlifecycle.feeds._fields import UPN_CHECK_LETTERS, RowCheck, normalise_year_group, parse_date, upn_check_letter


def upn_errors(value: str) -> list[str]:
    check = RowCheck("pupils.csv", 2)
    check.upn("UPN", value)
    return [str(error) for error in check.errors]


def test_the_dfe_example_upn_is_valid():
    assert upn_check_letter("B801200005001") == "B"
    assert upn_errors("B801200005001") == []
    assert upn_errors("b801200005001") == []  # typed in lower case


@given(st.text("0123456789", min_size=11, max_size=11), st.sampled_from("0123456789" + UPN_CHECK_LETTERS))
def test_a_upn_with_its_own_check_letter_passes_and_any_other_letter_fails(digits, last):
    tail = digits + last
    good = upn_check_letter("?" + tail)
    assert upn_errors(good + tail) == []
    wrong = UPN_CHECK_LETTERS[(UPN_CHECK_LETTERS.index(good) + 1) % 23]
    assert upn_errors(wrong + tail) == [
        f"pupils.csv:2: UPN: '{wrong + tail}' has check letter {wrong} but its digits give {good}; the UPN is mistyped"
    ]


# The last two: Arabic-Indic and full-width digits, which `\\d` and int() take as 0-9 (the DfE's UPN is ASCII).
@pytest.mark.parametrize("value", ["B8012000050011", "I801200005001", "B80120000500O", "B8012000A5001",
                                   "B80120000500\u0661", "B8012000\uff10\uff15001"])
def test_upns_of_the_wrong_shape_are_refused(value):
    assert upn_errors(value) == [
        f"pupils.csv:2: UPN: '{value}' is not a UPN (13 characters: a check letter, 11 digits, a digit or letter)"
    ]


@pytest.mark.parametrize(
    ("written", "year"),
    [
        ("Year 7", "7"), ("Y7", "7"), ("7", "7"), ("07", "7"), ("Yr. 7", "7"), ("NC Year 7", "7"),
        ("year group 10", "10"),
        ("Year 14", "14"), ("R", "R"), ("Reception", "R"), ("YR", "R"), ("Year R", "R"), ("N1", "N1"), ("N2", "N2"),
        ("Nursery", "N2"), ("Nursery 1", "N1"), ("FS1", "N2"), ("FS2", "R"), ("L6", "12"), ("Upper Sixth", "13"),
    ],
)
def test_year_group_spellings_normalise(written, year):
    assert normalise_year_group(written) == year


@pytest.mark.parametrize("written", ["Year 15", "0", "X", "Sixth Form", "Year 7A", "N3", "-1", "Year \u0667", "\uff17"])
def test_unknown_year_groups_are_refused(written):
    with pytest.raises(ValueError):
        normalise_year_group(written)


@pytest.mark.parametrize(
    ("written", "when"),
    [
        ("22/07/2026", date(2026, 7, 22)), ("2/9/2025", date(2025, 9, 2)), ("2026-07-22", date(2026, 7, 22)),
        ("2026-07-22T00:00:00", date(2026, 7, 22)), ("2026-11-20T18:02:11.000Z", date(2026, 11, 20)),
        ("01/09/2026 00:00:00", date(2026, 9, 1)), ("20260901", date(2026, 9, 1)), ("1 Sep 2026", date(2026, 9, 1)),
        ("01-Sep-2026", date(2026, 9, 1)), ("22.07.2026", date(2026, 7, 22)),
    ],
)
def test_dates_in_the_forms_uk_exports_use(written, when):
    assert parse_date(written) == when


@pytest.mark.parametrize("written", ["31/02/2026", "22/07/26", "July 2026", "2026/07/22", "yesterday",
                                     # digits of other scripts, which \\d and int() would read as 0-9
                                     "\u0662\u0662/\u0660\u0667/\u0662\u0660\u0662\u0666",
                                     "22/07/\uff12\uff10\uff12\uff16",
                                     "\u0662\u0660\u0662\u0666-07-22", "2\u0660260901"])
def test_things_that_are_not_dates_are_refused(written):
    with pytest.raises(ValueError):
        parse_date(written)


def test_bidi_overrides_and_zero_width_characters_in_a_name_are_refused_but_joiners_are_kept():
    from idlifecycle.feeds._fields import RowCheck

    for hostile in ("Evil\u202enimdA", "Ad\u200bmin", "\ufeffJames", "Jo\u2066e"):
        check = RowCheck("pupils.csv", 7)
        check.name("Legal Forename", hostile)
        assert check.errors and "invisible formatting character" in check.errors[0].message, hostile
    persian = RowCheck("pupils.csv", 8)
    persian.name("Legal Forename", "می\u200cخواهم")
    assert persian.errors == []
