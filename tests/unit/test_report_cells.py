"""No text that reaches a report cell, however it is dressed up, is ever a live formula in the workbook
or in the CSV files (issue 14, item 6: `"\\x01=HYPERLINK(…)"` once became one in four sheets)."""

from __future__ import annotations

import csv
import unicodedata
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from idlifecycle.reports.workbook import Column, Sheet, Table, cell_text, write_csv, write_xlsx

# The oracle is written out here, not imported: a test that asks the code under test what a formula
# is cannot fail.
LIVE_STARTS = "=+-@\uff1d\uff0b\uff0d\uff20\u2212\ufe62\ufe63\ufe66"
HIDING = ["\x01", "\x00", "\x1b", "\x7f", "\x85", "\u200b", "\u200d", "\u200c", "\u202e", "\u2066", "\ufeff",
          "\u00ad", "\u2028", " ", "\u00a0", "\u3000", "\t", "\r", "\n"]

hostile = st.builds(
    lambda hide, start, rest: hide + start + rest,
    st.text(st.sampled_from(HIDING), max_size=4),
    st.sampled_from([*LIVE_STARTS, "", "a", "'"]),
    st.text(max_size=30),
) | st.text(max_size=40)


def shown(text: str) -> str:
    """What a spreadsheet decides on: the text without invisible characters and leading white space."""
    visible = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp") or c in "\t\r\n")
    return visible.lstrip(" \u00a0\u3000\n\r")


def is_live(text: str, quote_prefixed: bool) -> bool:
    return not quote_prefixed and (shown(text).startswith(tuple(LIVE_STARTS)) or text.startswith(("\t", "\r")))


def sheets(value: str) -> list[Sheet]:
    columns = (Column("Name"), Column("Reason"))
    # A plain list (openpyxl's fast path), a boxed table with a title (styled cells), heading and notes.
    return [Sheet("People", (Table(columns, [[value, value]]),)),
            Sheet("Summary", (Table(columns, [[value, "x"]], title=value),), heading=(value,), notes=(value,))]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=hostile)
def test_no_generated_string_becomes_a_formula_in_the_workbook(value: str, tmp_path: Path) -> None:
    path = tmp_path / "review.xlsx"
    write_xlsx(sheets(value), path)
    with zipfile.ZipFile(path) as book:
        xml = "".join(book.read(n).decode() for n in book.namelist() if n.startswith("xl/worksheets/"))
    assert "<f>" not in xml and "<f " not in xml, repr(value)
    workbook = load_workbook(path)
    for ws in workbook:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (repr(value), cell.coordinate)
                if isinstance(cell.value, str):
                    assert not is_live(cell.value, bool(cell.quotePrefix)), (repr(value), repr(cell.value))
                    assert not any(unicodedata.category(c) in ("Cc", "Cf") and c not in "\t\r\n\u200c\u200d"
                                   for c in cell.value), repr(cell.value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=hostile)
def test_no_generated_string_becomes_a_formula_in_the_csv_files(value: str, tmp_path: Path) -> None:
    for path in write_csv(sheets(value), tmp_path / "csv"):
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for field in (f for row in csv.reader(handle) for f in row):
                assert not is_live(field, field.startswith("'")), (repr(value), repr(field))


def test_a_control_character_before_an_equals_sign_no_longer_hides_a_hyperlink(tmp_path: Path) -> None:
    path = tmp_path / "review.xlsx"
    write_xlsx(sheets('\x01=HYPERLINK("http://x","Click")'), path)
    cell = load_workbook(path)["People"]["A2"]
    assert (cell.value, cell.data_type, cell.quotePrefix) == ('=HYPERLINK("http://x","Click")', "s", True)


def test_a_reason_keeps_its_line_breaks_and_a_joiner_inside_a_word_but_a_heading_is_one_line() -> None:
    assert cell_text("Needs it\r\nfor EHCP", multiline=True) == "Needs it\r\nfor EHCP"
    assert cell_text("Needs it\nfor EHCP") == "Needs it for EHCP"
    assert cell_text("\u200dमि\u200dत्र\u200d") == "मि\u200dत्र"
