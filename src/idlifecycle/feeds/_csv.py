"""Reading MIS and roster CSV files: encoding detection, RFC 4180 parsing, header checks.

Every value comes back as text (admission numbers keep their leading zeros), trimmed, with
the physical line each row starts on, so every later message can say `file:line`.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from operator import itemgetter
from pathlib import Path

from idlifecycle.errors import FeedError
from idlifecycle.model import RowError

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class Row:
    """One data row: the line it starts on and its cells (`Table.records`), read by header name."""

    __slots__ = ("cells", "line", "positions")

    def __init__(self, line: int, cells: tuple[str, ...], positions: Mapping[str, int]) -> None:
        self.line = line
        self.cells = cells
        self.positions = positions
        """The table's header name -> cell index (shared by all its rows)."""

    def get(self, column: str | None) -> str:
        return self.cells[self.positions.get(column, -1)] if column else ""


@dataclass
class Table:
    """A whole CSV file: its header as written, its data rows, and rows that did not fit."""

    file: str
    header: tuple[str, ...]
    lines: list[int]
    """The line each data row starts on."""
    records: list[tuple[str, ...]]
    """Each data row's cells in header order, and one more, always "": the cell a column the file does
    not have reads (`position` gives -1 for it). A reader resolves its columns once per file and reads
    a row with one itemgetter; tuples of strings, which the garbage collector stops walking."""
    errors: list[RowError] = field(default_factory=list)
    encoding: str = "utf-8"
    refused: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """The values of rows refused while parsing (too many fields), by line, to find their id."""
    positions: dict[str, int] = field(default_factory=dict)
    """Each header name's cell index; a repeated name reads its first column, as find_column does."""

    @cached_property
    def rows(self) -> list[Row]:
        """The data rows as Row values, for readers that look values up by header name."""
        return [Row(line, cells, self.positions) for line, cells in zip(self.lines, self.records, strict=True)]

    def position(self, column: str | None) -> int:
        """The cell index of `column`; -1 (the empty last cell of every row) when the file has none."""
        return self.positions.get(column, -1) if column else -1

    def column(self, name: str | None) -> list[str]:
        """The cells of one column, row by row ("" for each row when the file has no such column)."""
        return list(map(itemgetter(self.position(name)), self.records))

    def row_errors(self, id_column: str | None) -> list[RowError]:
        """The parse errors, each with the person id its row carries in `id_column` (if readable)."""
        if not id_column or id_column not in self.header:
            return list(self.errors)
        position = self.header.index(id_column)
        found: list[RowError] = []
        for error in self.errors:
            values = self.refused.get(error.line, ())
            person_id = values[position] if position < len(values) else ""
            found.append(replace(error, person_id=person_id or None))
        return found


_WORKBOOKS = ((b"PK\x03\x04", "an Excel workbook (.xlsx) or another zip file"),
              (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel workbook (.xls)"))
"""The first bytes of files an office saves by mistake in place of the CSV export."""


def decode(path: Path, display: str, encoding: str | None = None) -> tuple[str, str]:
    """The file's text and the encoding used: a BOM wins, then UTF-8, then Windows-1252.

    SIMS and Excel write Windows-1252 unless told otherwise; bytes that are valid UTF-8 are
    almost never meant as Windows-1252, so trying UTF-8 first is safe.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FeedError(f"{display}: file not found; check the feed path in the job file") from None
    except IsADirectoryError:
        raise FeedError(f"{display}: is a folder, but this feed format reads one CSV file") from None
    except OSError as error:
        raise FeedError(f"{display}: cannot read the file ({error.strerror})") from None
    for signature, what in _WORKBOOKS:
        if data.startswith(signature):
            # Read as text it looks like "a header but no data rows": say what it is and how to export it.
            raise FeedError(f"{display}: is {what}, not a CSV file; in Excel use File > Save As > "
                            "CSV UTF-8 (Comma delimited), or export the MIS report as CSV")
    candidates: list[str]
    if encoding:
        candidates = [encoding]
    else:
        candidates = [name for bom, name in _BOMS if data.startswith(bom)][:1] or _utf16_without_bom(data) or [
            "utf-8", "cp1252"]
    for name in candidates:
        try:
            text = data.decode(name)
        except LookupError:
            raise FeedError(f"{display}: unknown encoding {encoding!r}; use utf-8 or cp1252") from None
        except UnicodeDecodeError as error:
            if name != candidates[-1]:
                continue
            line = data[: error.start].count(b"\n") + 1
            raise FeedError(
                f"{display}:{line}: the file is not valid {name} (byte 0x{data[error.start]:02x}); "
                "save it again as UTF-8 (CSV UTF-8 in Excel)"
            ) from None
        return text.removeprefix("\ufeff"), name
    raise AssertionError("unreachable: the last candidate either decodes or raises")


def _utf16_without_bom(data: bytes) -> list[str]:
    """UTF-16 that lost its BOM, told by its NUL bytes: CSV text is mostly ASCII, whose UTF-16 has a
    NUL in every other byte (the second of each pair in little-endian, the first in big-endian).

    Read as UTF-8 it would decode "fine", with a NUL between letters, broken headers and line
    numbers; no real UTF-8 or Windows-1252 export has NULs at all.
    """
    sample = data[:4096]
    pairs = len(sample) // 2
    if pairs < 2:
        return []
    high, low = sample[0 : pairs * 2 : 2].count(0), sample[1 : pairs * 2 : 2].count(0)
    if low >= pairs * 0.3 and high <= pairs * 0.05:
        return ["utf-16-le"]
    if high >= pairs * 0.3 and low <= pairs * 0.05:
        return ["utf-16-be"]
    return []


def read_table(path: Path, display: str | None = None, encoding: str | None = None) -> Table:
    """Parse one CSV file; a broken file, an empty one or one without data rows is a FeedError."""
    file = display or str(path)
    text, used = decode(path, file, encoding)
    skipped = 0
    # Excel writes a "sep=;" hint line when asked to; it is not the header.
    first_line = text.split("\n", 1)[0].strip()
    if re.fullmatch(r"sep=.", first_line):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        skipped = 1
    start = skipped + 1
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first_line), strict=True)
    lines: list[int] = []
    records: list[tuple[str, ...]] = []
    errors: list[RowError] = []
    refused: dict[int, tuple[str, ...]] = {}
    strip = str.strip
    try:
        header: list[str] | None = None
        for record in reader:  # blank lines before the header are skipped
            start = skipped + reader.line_num + 1
            header = list(map(strip, record))
            if any(header):
                break
            header = None
        if header is None:
            raise FeedError(f"{file}: the file is empty; expected a header line and data rows")
        width = len(header)
        positions: dict[str, int] = {}
        for position, column in enumerate(header):
            if column:
                positions.setdefault(column, position)
        for record in reader:
            line, start = start, skipped + reader.line_num + 1
            record.append("")  # the cell an absent column reads
            # A tuple of strings: the collector stops looking at it, however many rows stay in memory.
            cells = tuple(map(strip, record))
            if not any(cells):
                continue
            count = len(cells) - 1
            if count != width:
                if count > width and any(cells[width:]):
                    errors.append(
                        RowError(
                            file, line, "row",
                            f"has {count} fields but the header has {width} (an unquoted comma in a value?)",
                        )
                    )
                    refused[line] = cells[:-1]
                    continue
                cells = (cells[:width] + ("",) * (width - count)) if count < width else cells[: width + 1]
            lines.append(line)
            records.append(cells)
    except csv.Error as error:
        raise FeedError(f"{file}:{start}: the CSV is broken ({error}); is a quote left open?") from None
    if not records and not errors:
        raise FeedError(f"{file}: has a header but no data rows; refusing to treat that as nobody")
    return Table(file, tuple(header), lines, records, errors, used, refused, positions)


def _delimiter(first_line: str) -> str:
    """A comma, unless the first line says otherwise ("sep=;") or has no comma but tabs or semicolons.

    Excel's "Unicode text" export is tab-separated; European Excel writes semicolons.
    """
    hinted = re.fullmatch(r"sep=(.)", first_line)
    if hinted:
        return hinted.group(1)
    if "," in first_line:
        return ","
    return max("\t;|", key=first_line.count) if any(char in first_line for char in "\t;|") else ","


def require_columns(table: Table, columns: Iterable[str]) -> None:
    """Check case-sensitive headers (SDS, OneRoster) and name what is missing and what is there."""
    missing = [column for column in columns if column not in table.header]
    if not missing:
        return
    hints = []
    for column in missing:
        near = [found for found in table.header if found.lower() == column.lower()]
        if near:
            hints.append(f"'{near[0]}' should be '{column}' (headers are case-sensitive)")
    raise FeedError(
        f"{table.file}: missing column{'s' if len(missing) > 1 else ''} "
        + ", ".join(f"'{column}'" for column in missing)
        + (f"; {'; '.join(hints)}" if hints else "")
        + f"; found: {', '.join(repr(found) for found in table.header if found)}"
    )


def header_key(name: str) -> str:
    """A header as compared case-insensitively: "Reg. Group", "reg_group", "RegGroup" agree."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def find_column(table: Table, names: Sequence[str]) -> str | None:
    """The first of `names` (in order of preference) that the header has, case-insensitively."""
    by_key: dict[str, str] = {}
    for column in table.header:
        by_key.setdefault(header_key(column), column)
    for name in names:
        found = by_key.get(header_key(name))
        if found is not None:
            return found
    return None
