"""Sheets as plain tables, written to an .xlsx workbook or to CSV files, safe from formula injection.

A report is built as `Sheet` values (pure data); this module is the only place that knows
openpyxl or the csv module. Every text value is written as text, in two steps and in this order:
first `cell_text` normalises it (control and Unicode format characters removed, so
`"\x01=HYPERLINK(…)"` cannot hide its `=` behind a character that is stripped later), then a value
that a spreadsheet would run as a formula (`=HYPERLINK("http://x")`, `+44 7700`, a full-width `＝1+1`)
is stored as a string with Excel's quote-prefix flag, and in CSV behind a leading apostrophe.
"""

from __future__ import annotations

import csv
import math
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import Cell, WriteOnlyCell
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.filters import AutoFilter

Value = str | int | date | datetime | None
"""What a report cell may hold. Aware datetimes are shown in UK time."""

UK = ZoneInfo("Europe/London")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20", "\u2212",
                  "\ufe62", "\ufe63", "\ufe66")
"""First characters that make Excel, LibreOffice or Sheets treat typed or imported text as a formula.

OWASP's CSV-injection list, plus the full-width and small forms (＝ ＋ － ＠, ﹢ ﹣ ﹦) and the minus
sign, which East Asian input methods type and which spreadsheets or an NFKC step can turn into
the ASCII character.
"""
EXCEL_ERROR_CODES = frozenset({"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"})
JOINERS = frozenset({"\u200c", "\u200d"})
"""Zero-width non-joiner and joiner: part of correct spelling in some scripts (kept inside a word,
as the feed check keeps them)."""
MAX_CELL_TEXT = 32767
"""Excel refuses longer cell text."""


class ColumnKind(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    DATETIME = "datetime"
    SCORE = "score"
    """A risk score out of 9, coloured green / amber / red like a school's risk-assessment form."""


@dataclass(frozen=True)
class Column:
    header: str
    width: float = 16
    kind: ColumnKind = ColumnKind.TEXT
    choices: tuple[str, ...] = ()
    """Values offered in a drop-down (data validation) on every data row of this column."""
    span: int = 1
    """Sheet columns this column's cells are merged across (a wide box for a signature)."""


@dataclass(frozen=True)
class Table:
    """A header row and its data rows; `title` is a bold line above it (used on the Summary)."""

    columns: tuple[Column, ...]
    rows: Sequence[Sequence[Value]]
    title: str = ""
    min_row_height: float | None = None
    """Points; room to write by hand (the sign-off block)."""


@dataclass(frozen=True)
class Sheet:
    """One worksheet: optional heading lines, then one or more tables separated by a blank row.

    A sheet with a single table and no heading gets frozen headers and a filter.
    """

    name: str
    tables: tuple[Table, ...]
    heading: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    """Lines written below the tables (how to read the sheet)."""

    @property
    def is_list(self) -> bool:
        return len(self.tables) == 1 and not self.heading and not self.tables[0].title


def needs_quoting(text: str) -> bool:
    """True when a spreadsheet would read `text` (already normalised by `cell_text`) as a formula or an
    error value. Leading white space and joiners are looked past: some imports trim them first."""
    start = 0
    while start < len(text) and text[start] not in "\t\r\n" and (text[start].isspace() or text[start] in JOINERS):
        start += 1
    return text[start:].startswith(FORMULA_STARTS) or text.strip() in EXCEL_ERROR_CODES


def cell_text(text: str, *, multiline: bool = False) -> str:
    """What a text cell holds: control (Cc) and format (Cf) characters removed, line and paragraph
    separators and surrogates too, at most Excel's length.

    A data cell (`multiline`) keeps tab, CR and LF (a reason typed in a form has line breaks); a
    heading, title or note is one line, so there they become spaces. Joiners are kept between two
    characters and dropped at the ends, where they join nothing and could hide what follows.
    """
    kept: list[str] = []
    for char in text:
        if char in "\t\r\n":
            kept.append(char if multiline else " ")
        elif char in JOINERS or unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            kept.append(char)
    joiners = "".join(JOINERS)
    text = "".join(kept).strip(joiners)
    if len(text) > MAX_CELL_TEXT:
        text = text[: MAX_CELL_TEXT - 1] + "…"
    return text


def uk_time(value: datetime) -> datetime:
    """Excel has no time zones: show an aware time as the wall-clock time in the UK."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UK).replace(tzinfo=None)


# -- xlsx ---------------------------------------------------------------------------------------

HEADER_FONT = Font(bold=True, color="FFFFFF")
HEADER_FILL = PatternFill("solid", fgColor="1F4E78")
TITLE_FONT = Font(bold=True, size=14)
TABLE_TITLE_FONT = Font(bold=True, size=12, color="1F4E78")
SCORE_FILLS = {
    "low": PatternFill("solid", fgColor="C6EFCE"),
    "medium": PatternFill("solid", fgColor="FFEB9C"),
    "high": PatternFill("solid", fgColor="FFC7CE"),
}
THIN = Side(style="thin", color="808080")
BOX = Border(left=THIN, right=THIN, top=THIN, bottom=THIN)
DATE_FORMAT = "dd/mm/yyyy"
DATETIME_FORMAT = "dd/mm/yyyy hh:mm"


def score_band(score: int) -> str:
    """The band of a 1–9 impact × likelihood score: 1–2 low, 3–4 medium, 6–9 high."""
    if score >= 6:
        return "high"
    if score >= 3:
        return "medium"
    return "low"


def write_xlsx(sheets: Sequence[Sheet], path: Path) -> None:
    """Write the sheets to `path` in openpyxl's streaming mode (50,000 people fit in little memory)."""
    book = Workbook(write_only=True)
    for sheet in sheets:
        _write_sheet(book, sheet)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)


def _column_widths(sheet: Sheet) -> dict[int, float]:
    """Each sheet column's width: the widest of the tables' unspanned columns there."""
    widths: dict[int, float] = {}
    for table in sheet.tables:
        for index, column in _positions(table.columns):
            if column.span == 1:
                widths[index] = max(widths.get(index, 0), column.width)
    if sheet.heading:
        widths[1] = max(widths.get(1, 0), 28)
    return widths


def _set_up_page(ws: Any, sheet: Sheet, widths: dict[int, float]) -> None:
    for index, width in widths.items():
        ws.column_dimensions[get_column_letter(index)].width = width
    # Landscape, one page wide, header row repeated: what a SIRO prints for the governors.
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = "9"  # A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    if sheet.is_list:
        # The streaming writer emits the sheet view with the first row: set it before any row.
        ws.freeze_panes = "A2"
        ws.print_title_rows = "1:1"


def _add_choices(ws: Any, columns: Sequence[Column], first_row: int, last_row: int) -> None:
    """A drop-down on rows `first_row`..`last_row` of each column that offers choices."""
    for index, column in _positions(columns):
        if column.choices:
            letter = get_column_letter(index)
            validation = DataValidation(
                type="list", formula1='"' + ",".join(column.choices) + '"', allow_blank=True,
                showErrorMessage=True, errorTitle=column.header,
                error="Choose " + " or ".join(column.choices) + " from the list.",
            )
            validation.add(f"{letter}{first_row}:{letter}{last_row}")
            ws.data_validations.append(validation)


def _write_sheet(book: Workbook, sheet: Sheet) -> None:
    ws = book.create_sheet(title=sheet.name)
    widths = _column_widths(sheet)
    _set_up_page(ws, sheet, widths)
    row_number = 0

    def append(cells: Sequence[Any]) -> None:
        nonlocal row_number
        ws.append(cells)
        row_number += 1

    for index, line in enumerate(sheet.heading):
        append([_styled(ws, line, font=TITLE_FONT if index == 0 else None)])
    if sheet.heading:
        append([])

    for table_index, table in enumerate(sheet.tables):
        if table_index:
            append([])
        if table.title:
            append([_styled(ws, table.title, font=TABLE_TITLE_FONT)])
        header_row = row_number + 1
        boxed = not sheet.is_list
        headers: list[Value] = [c.header for c in table.columns]
        _set_height(ws, header_row, table.columns, headers, widths, None)
        append(_spread(table.columns, [_styled(ws, c.header, font=HEADER_FONT, fill=HEADER_FILL, wrap=True)
                                       for c in table.columns], ws, header_row, fill=HEADER_FILL))
        for values in table.rows:
            if boxed:
                _set_height(ws, row_number + 1, table.columns, values, widths, table.min_row_height)
            cells = list(_data_cells(ws, table.columns, values, boxed=boxed))
            append(_spread(table.columns, cells, ws, row_number + 1) if boxed else cells)
        last_row = max(row_number, header_row + 1)
        _add_choices(ws, table.columns, header_row + 1, last_row)
        if sheet.is_list:
            ws.auto_filter = AutoFilter(ref=f"A{header_row}:{get_column_letter(len(table.columns))}{last_row}")

    if sheet.notes:
        append([])
        for line in sheet.notes:
            append([_styled(ws, line, wrap=False)])


def _positions(columns: Sequence[Column]) -> Iterator[tuple[int, Column]]:
    """(1-based sheet column, column) for each column, counting the sheet columns a span takes."""
    index = 1
    for column in columns:
        yield index, column
        index += column.span


def _spread(columns: Sequence[Column], cells: Sequence[Any], ws: Any, row: int,
            fill: PatternFill | None = None) -> list[Any]:
    """Place cells at their sheet columns, merging a spanning column's cells into one box."""
    placed: list[Any] = []
    for (index, column), cell in zip(_positions(columns), cells, strict=True):
        placed.append(cell)
        if column.span > 1:
            for _ in range(column.span - 1):
                # The covered cells carry the border and fill so the merged box is drawn whole.
                filler = WriteOnlyCell(ws, None)
                if isinstance(cell, Cell) and cell.has_style:
                    filler.border = BOX
                    if fill is not None:
                        filler.fill = fill
                placed.append(filler)
            ws.merged_cells.add(f"{get_column_letter(index)}{row}:{get_column_letter(index + column.span - 1)}{row}")
    return placed


def _set_height(ws: Any, row: int, columns: Sequence[Column], values: Sequence[Value], widths: dict[int, float],
                minimum: float | None) -> None:
    """Spreadsheets do not grow a row for wrapped text they did not lay out themselves: size it here."""
    lines = 1
    for (index, column), value in zip(_positions(columns), values, strict=True):
        if isinstance(value, str) and value:
            width = sum(widths.get(i, column.width) for i in range(index, index + column.span))
            lines = max(lines, math.ceil(len(value) / max(width, 1)))
    height = max(15.0 * lines if lines > 1 else 0.0, minimum or 0.0)
    if height:
        ws.row_dimensions[row].height = height


def _styled(ws: Any, value: Value, *, font: Font | None = None, fill: PatternFill | None = None,
            wrap: bool = False) -> WriteOnlyCell:
    cell = _cell(ws, value, multiline=False)
    if font is not None:
        cell.font = font
    if fill is not None:
        cell.fill = fill
    if wrap:
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    return cell


def _cell(ws: Any, value: Value, *, multiline: bool = True) -> WriteOnlyCell:
    if isinstance(value, str):
        text = cell_text(value, multiline=multiline)
        cell = WriteOnlyCell(ws, text)
        if needs_quoting(text):
            # Stored as a string (never a formula), flagged so Excel keeps it text when edited.
            cell.data_type = "s"
            cell.quotePrefix = True
        return cell
    if isinstance(value, datetime):
        cell = WriteOnlyCell(ws, uk_time(value))
        cell.number_format = DATETIME_FORMAT
        return cell
    cell = WriteOnlyCell(ws, value)
    if isinstance(value, date):
        cell.number_format = DATE_FORMAT
    return cell


def _data_cells(ws: Any, columns: Sequence[Column], values: Sequence[Value], *, boxed: bool) -> Iterator[Any]:
    for column, value in zip(columns, values, strict=True):
        plain = not boxed and column.kind is not ColumnKind.SCORE
        if isinstance(value, str):
            # Normalised before the formula check, never after: that order is the whole defence.
            value = cell_text(value, multiline=True)
        if plain and (value is None or isinstance(value, int) or (isinstance(value, str) and not needs_quoting(value))):
            # The common case goes through openpyxl's fast path: no per-cell object.
            yield value
            continue
        cell = _cell(ws, value)
        if column.kind is ColumnKind.SCORE and isinstance(value, int):
            cell.fill = SCORE_FILLS[score_band(value)]
            cell.font = Font(bold=True)
            cell.alignment = Alignment(horizontal="center")
        if boxed:
            cell.border = BOX
            cell.alignment = Alignment(wrap_text=True, vertical="top",
                                       horizontal="center" if column.kind is ColumnKind.SCORE else None)
        yield cell


# -- csv ----------------------------------------------------------------------------------------


def csv_text(value: Value, *, multiline: bool = True) -> str:
    """One CSV field: dates as ISO dates, UK time for times, text normalised and, when risky, behind an
    apostrophe."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return uk_time(value).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    text = cell_text(value, multiline=multiline)
    # OWASP's advice for CSV: a leading apostrophe makes every spreadsheet show the text as typed.
    return "'" + text if needs_quoting(text) else text


def csv_file_name(sheet_name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", sheet_name.lower()).strip("-") + ".csv"


def write_csv(sheets: Sequence[Sheet], directory: Path) -> list[Path]:
    """One UTF-8 CSV file per sheet (with a BOM, so Excel reads names such as Łukasz correctly)."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for sheet in sheets:
        path = directory / csv_file_name(sheet.name)
        with path.open("w", newline="", encoding="utf-8-sig") as handle:
            writer = csv.writer(handle)
            for line in sheet.heading:
                writer.writerow([csv_text(line, multiline=False)])
            if sheet.heading:
                writer.writerow([])
            for index, table in enumerate(sheet.tables):
                if index:
                    writer.writerow([])
                if table.title:
                    writer.writerow([csv_text(table.title, multiline=False)])
                writer.writerow([csv_text(c.header, multiline=False) for c in table.columns])
                writer.writerows([csv_text(v) for v in row] for row in table.rows)
            for line in sheet.notes:
                writer.writerow([csv_text(line, multiline=False)])
        written.append(path)
    return written

