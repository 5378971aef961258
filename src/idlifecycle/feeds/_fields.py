"""Field checks shared by every feed format: names, dates, year groups, UPNs and duplicate ids.

A check that fails records a RowError (`file:line: field: message`) and the row is skipped;
the messages say what was found and what is expected, because a school office reads them.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

from idlifecycle.errors import FeedError
from idlifecycle.model import RowError

MAX_USERNAME_LENGTH = 64
USERNAME = re.compile(r"[A-Za-z0-9_'-](?:[A-Za-z0-9._'-]*[A-Za-z0-9_'-])?")
"""A user name's local part that AD, Entra and Google all accept."""

JOINERS = frozenset({"\u200c", "\u200d"})
"""Zero-width non-joiner and joiner: part of correct spelling in Persian, Hindi, Malayalam and other scripts."""

MAX_NAME_LENGTH = 60
"""The DfE common basic data set allows 35; MIS exports allow up to 60 (FACTS §4)."""

UPN_CHECK_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"
"""The DfE check-letter alphabet: 23 letters, without I, O and S."""

_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}

_YEAR_WORDS = {
    "r": "R", "rec": "R", "reception": "R", "yr": "R", "yearr": "R", "fs2": "R", "f2": "R", "kg": "R",
    "n": "N2", "nur": "N2", "nursery": "N2", "fs1": "N2", "f1": "N2", "pk": "N2",
    "n1": "N1", "nursery1": "N1", "pr": "N1", "n2": "N2", "nursery2": "N2",
    "l6": "12", "lowersixth": "12", "u6": "13", "uppersixth": "13",
}
"""Spellings MIS exports use; a lone "Nursery" is the pre-school year (N2, age 3 to 4)."""

_US_GRADES = {"kg": "1", "tk": "R", "pk": "R", "pr": "N2", "it": "N1"}
"""CEDS grade codes, when a feed counts US-style: kindergarten is a UK Year 1."""

YEAR_PREFIX = re.compile(r"^(?:nationalcurriculumyear|ncyear|yeargroup|year|yr|y)(?=[0-9])")

YEAR_ORDER = ("N1", "N2", "R", *(str(n) for n in range(1, 15)))
"""Normalised year groups in school order, so `years = "R-6"` means R and 1 to 6."""

GRADE_SCHEMES = ("uk", "us")
"""How numeric grades in SDS and OneRoster files count: UK years, or US grades (year = grade + 1)."""


_UPN_VALUES = {**{str(digit): digit for digit in range(10)}, **{char: n for n, char in enumerate(UPN_CHECK_LETTERS)}}
"""Each UPN character's value in the check-letter sum, looked up rather than worked out for every pupil."""

UPN_SHAPE = re.compile(rf"[{UPN_CHECK_LETTERS}][0-9]{{11}}[0-9{UPN_CHECK_LETTERS}]")
"""ASCII digits only: `\\d` would take a digit of any script ("١"), which int() reads as its value."""


def upn_check_letter(upn: str) -> str:
    """The check letter the DfE algorithm gives for characters 2 to 13 of a UPN."""
    try:
        first, second, third, fourth = _upn_chunk_sums()
        total = first[upn[1:4]] + second[upn[4:7]] + third[upn[7:10]] + fourth[upn[10:13]]
    except KeyError:  # a letter among the digits or a digit of another script: not a UPN (UPN_SHAPE refuses it)
        total = sum((int(char) if char.isdigit() else UPN_CHECK_LETTERS.index(char)) * position
                    for position, char in enumerate(upn[1:13], start=2))
    return UPN_CHECK_LETTERS[total % 23]


@cache
def _upn_chunk_sums() -> tuple[dict[str, int], ...]:
    """The check-letter sum of each three characters of a UPN, for its four runs (characters 2-4, 5-7,
    8-10, 11-13; the 13th may be a letter): four look-ups per pupil instead of twelve products.

    Made on first use (6,300 entries, a few milliseconds), not when the package is imported.
    """
    digits = "0123456789"
    tables = []
    for weight, last in ((2, digits), (5, digits), (8, digits), (11, digits + UPN_CHECK_LETTERS)):
        tables.append({
            a + b + c: weight * _UPN_VALUES[a] + (weight + 1) * _UPN_VALUES[b] + (weight + 2) * _UPN_VALUES[c]
            for a in digits for b in digits for c in last
        })
    return tuple(tables)


def plain_upn(upn: str) -> bool:
    """Whether an upper-cased UPN is one `RowCheck.upn` accepts as it is: 13 characters, a check letter,
    11 ASCII digits, a digit or letter, and the check letter right.

    The sums' look-ups check the characters: any other (a digit of another script) is not plain, and the
    full check refuses it.
    """
    first, second, third, fourth = _upn_chunk_sums()
    try:
        total = first[upn[1:4]] + second[upn[4:7]] + third[upn[7:10]] + fourth[upn[10:13]]
    except KeyError:
        return False
    return len(upn) == 13 and upn[0] == UPN_CHECK_LETTERS[total % 23]


def plain_names(first: str, last: str, preferred: str) -> bool:
    """Whether `RowCheck.name` accepts these names (the first two required, the preferred one optional)
    without looking at their characters one by one.

    Not empty, not too long, nothing lost (U+FFFD) and printable: a printable string has no control
    or formatting character, so the search for them can be skipped. A name with a joiner (Persian,
    Hindi) is not printable and goes through the full check, which allows it.
    """
    names = first + last + preferred
    return (0 < len(first) <= MAX_NAME_LENGTH and 0 < len(last) <= MAX_NAME_LENGTH
            and len(preferred) <= MAX_NAME_LENGTH and names.isprintable() and "\ufffd" not in names)


NUMERIC_DATE = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?", re.ASCII)
"""dd/mm/yyyy or mm/dd/yyyy, with an optional time: the only shape whose order can be in doubt."""


@lru_cache(maxsize=2**12)  # an export's dates repeat: a year's intake shares a handful of admission dates
def parse_date(text: str, date_order: str = "dmy") -> dt.date:
    """A date as UK exports write it: dd/mm/yyyy (or mm/dd/yyyy), ISO date or datetime."""
    value = text.strip()
    numeric = NUMERIC_DATE.fullmatch(value)
    if numeric:
        first, second, year = (int(part) for part in numeric.groups())
        day, month = (second, first) if date_order == "mdy" else (first, second)
        return dt.date(year, month, day)
    if re.fullmatch(r"\d{8}", value, re.ASCII):
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    named = re.fullmatch(r"(\d{1,2})[ -]([A-Za-z]{3})[A-Za-z]*[ -](\d{4})", value, re.ASCII)
    if named and named.group(2).lower() in _MONTHS:
        return dt.date(int(named.group(3)), _MONTHS[named.group(2).lower()], int(named.group(1)))
    if re.match(r"\d{4}-\d{2}-\d{2}", value, re.ASCII) and value.isascii():
        return dt.datetime.fromisoformat(value).date()
    raise ValueError(value)


@lru_cache(maxsize=2**10)  # a school writes its year groups a few dozen ways, on every row
def normalise_year_group(text: str, grades: str = "uk") -> str:
    """ "Year 7", "Y7", "07", "NC Year 7" -> "7"; "Reception", "YR" -> "R"; "Nursery" -> "N2".

    With grades="us", bare grade numbers and CEDS codes count US-style ("06" -> "7", "KG" -> "1").

    Raises ValueError for anything else, so an unknown year group is a row error, not a guess.
    """
    # Spaces and dots go ("Yr. 7"); any other sign ("-1", "7/8") leaves the value unknown.
    key = re.sub(r"[\s.]+", "", text.lower())
    if grades == "us" and key in _US_GRADES:
        return _US_GRADES[key]
    if key in _YEAR_WORDS:
        return _YEAR_WORDS[key]
    # Only a bare grade number counts US-style; "Year 8" is a UK year whatever the scheme.
    # ASCII digits only: str.isdigit and int() also take other scripts' digits ("٧" is 7).
    shift = 1 if grades == "us" and key.isascii() and key.isdigit() else 0
    key = YEAR_PREFIX.sub("", key)
    if key.isascii() and key.isdigit() and 1 <= int(key) + shift <= 14:
        return str(int(key) + shift)
    raise ValueError(text)


@dataclass(frozen=True)
class YearRange:
    """The year groups a school teaches (the `years` option), e.g. R-6 for a primary."""

    first: str
    last: str

    def __contains__(self, year_group: object) -> bool:
        return year_group in YEAR_ORDER and (
            YEAR_ORDER.index(self.first) <= YEAR_ORDER.index(str(year_group)) <= YEAR_ORDER.index(self.last)
        )

    def __str__(self) -> str:
        return self.first if self.first == self.last else f"{self.first}-{self.last}"


def parse_years(text: str) -> YearRange:
    """ "R-6", "7-13", "N1-6", "Y7-Y11" or one year ("R"); ValueError with what is expected."""
    expected = 'a range of year groups such as "R-6", "7-13" or "N1-6"'
    parts = [part.strip() for part in text.split("-")]
    if len(parts) not in (1, 2) or not all(parts):
        raise ValueError(f"is {text!r}; expected {expected}")
    try:
        ends = [normalise_year_group(part) for part in parts]
    except ValueError:
        raise ValueError(f"is {text!r}; expected {expected} (year groups are N1, N2, R, 1 to 14)") from None
    first, last = ends[0], ends[-1]
    if YEAR_ORDER.index(first) > YEAR_ORDER.index(last):
        raise ValueError(f"is {text!r}, which runs backwards; expected {expected}")
    return YearRange(first, last)


def _year_words(year_group: str) -> str:
    if year_group == "R":
        return "Reception"
    return f"Nursery {year_group[1:]}" if year_group.startswith("N") else f"Year {year_group}"


def settle_date_order(file: str, values: Iterable[str], date_order: str, configured: bool) -> str:
    """The day/month order of one file's dates: the job file's, or what the dates themselves show.

    01/09/2026 reads as 1 September or 9 January; guessing wrong moves a start date by months,
    so a file whose every date could be either is refused unless the job file says the order.
    A date with a day above 12 settles it (for the file; a date the settled order cannot read
    is then a row error saying so). ISO dates are never in doubt.
    """
    ambiguous: str | None = None
    day_first = month_first = False
    for value in dict.fromkeys(values):  # each date once, in the order first seen
        numeric = NUMERIC_DATE.fullmatch(value.strip())
        if not numeric:
            continue
        first, second = int(numeric.group(1)), int(numeric.group(2))
        day_first |= 12 < first <= 31 and 1 <= second <= 12
        month_first |= 12 < second <= 31 and 1 <= first <= 12
        if ambiguous is None and first != second and first <= 12 and second <= 12:
            ambiguous = value.strip()
    if configured or day_first == month_first:
        # Configured: the job file wins and contradicting dates become row errors. Both shapes
        # present: the file is inconsistent; the default order reads what it can, the rest are
        # row errors naming the other order.
        if not configured and not day_first and ambiguous is not None:
            raise FeedError(
                f"{file}: every date could be dd/mm or mm/dd (e.g. {ambiguous}); "
                'set date_order = "dmy" or "mdy" in the job file'
            )
        return date_order
    return "dmy" if day_first else "mdy"


class RowCheck:
    """Collects the problems of one row; the row becomes a Person only if there are none."""

    def __init__(
        self, file: str, line: int, date_order: str = "dmy", grades: str = "uk", *,
        person_id: str | None = None, years: YearRange | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.date_order = date_order
        self.grades = grades
        self.person_id = person_id or None
        """The row's id as written, carried on every error so the planner can spare that person."""
        self.years = years
        self.errors: list[RowError] = []

    @property
    def source(self) -> str:
        return f"{self.file}:{self.line}"

    def error(self, field: str, message: str) -> None:
        self.errors.append(RowError(self.file, self.line, field, message, self.person_id))

    def required(self, field: str, value: str) -> str:
        if not value:
            self.error(field, "is required but empty")
        return value

    def name(self, field: str, value: str, required: bool = True) -> str | None:
        """A name keeps its Unicode; length and invisible characters are what break accounts."""
        if not value:
            if required:
                self.error(field, "is required but empty")
            return None
        if len(value) > MAX_NAME_LENGTH:
            self.error(field, f"is {len(value)} characters long; a name may have at most {MAX_NAME_LENGTH}")
        elif "\ufffd" in value:
            self.error(field, f"'{value}' has a character lost in an earlier export (U+FFFD); correct it in the MIS")
        elif not value.isprintable():  # a printable name has no control or formatting character: no need to look
            control = next((char for char in value if unicodedata.category(char) == "Cc"), None)
            hidden = next((char for char in value if unicodedata.category(char) == "Cf" and char not in JOINERS), None)
            if control is not None:
                self.error(field, f"contains a control character (U+{ord(control):04X})")
            elif hidden is not None:
                # A bidi override or zero-width character makes a name display as something else
                # ("Evil\u202enimdA" shows as "EvilAdmin"): refused, so the office retypes it.
                self.error(field, f"contains an invisible formatting character (U+{ord(hidden):04X} "
                                  f"{unicodedata.name(hidden, 'format character')}); retype the name in the MIS")
        return value

    def date(self, field: str, value: str) -> dt.date | None:
        if not value:
            return None
        try:
            return parse_date(value, self.date_order)
        except ValueError:
            shape = "mm/dd/yyyy" if self.date_order == "mdy" else "dd/mm/yyyy"
            other = "dmy" if self.date_order == "mdy" else "mdy"
            try:
                parse_date(value, other)
            except ValueError:
                self.error(field, f"'{value}' is not a date; expected {shape} or yyyy-mm-dd")
            else:
                looks = "dd/mm" if other == "dmy" else "mm/dd"
                self.error(
                    field, f"'{value}' is not a date in {shape} order; the file looks like {looks} "
                    f'(date_order = "{other}" in the job file, if the whole file is written that way)',
                )
            return None

    def year_group(self, field: str, value: str, required: bool) -> str | None:
        if not value:
            if required:
                self.error(field, "is required but empty")
            return None
        try:
            year = normalise_year_group(value, self.grades)
        except ValueError:
            self.error(field, f"unknown year group '{value}'; expected N1, N2, R or 1 to 14 (e.g. 'Year 7', 'Y7', 'R')")
            return None
        if self.years is not None and year not in self.years:
            self.error(
                field, f"{_year_words(year)} is outside this school's years {self.years} (years in the job file)",
            )
            return None
        return year

    def username(self, field: str, value: str) -> tuple[str | None, str | None]:
        """A feed username as (local part, domain): SDS writes UPNs (jcraig@contoso.org).

        The local part becomes sAMAccountName, mailNickname and a Google username, so it must be
        something all three accept. Google's rule is the narrowest (Admin Help, "Guidelines for
        user names", support.google.com/a/answer/9193374): letters, digits, - _ ' and ., no doubled
        dot, not starting or ending with a dot, at most 64 characters; none of those characters is
        one sAMAccountName forbids. The 20-character AD limit is checked per directory by
        `feeds.limits`.
        """
        if not value:
            return None, None
        local, at, domain = value.rpartition("@") if "@" in value else (value, "", "")
        if at and (not domain or "." not in domain or not re.fullmatch(r"[A-Za-z0-9.-]+", domain)):
            self.error(field, f"'{value}' is not a user name or a UPN (name@domain)")
            return None, None
        if len(local) > MAX_USERNAME_LENGTH:
            self.error(field, f"'{local}' is {len(local)} characters long; a user name may have at most "
                              f"{MAX_USERNAME_LENGTH}")
            return None, None
        if not USERNAME.fullmatch(local) or ".." in local:
            bad = next((char for char in local if not USERNAME.fullmatch(char)), ".")
            what = "a space" if bad == " " else f"'{bad}'" if local else "nothing"
            self.error(field, f"'{value}' has {what} before the @; a user name may have letters, digits and . _ - ' "
                              "(not starting or ending with a dot)")
            return None, None
        return local, domain.lower() or None

    def upn(self, field: str, value: str) -> str | None:
        """A permanent UPN ends in a digit, a temporary one in a letter; both carry a check letter."""
        if not value:
            return None
        upn = value.upper()
        if not UPN_SHAPE.fullmatch(upn):
            self.error(field, f"'{value}' is not a UPN (13 characters: a check letter, 11 digits, a digit or letter)")
            return None
        expected = upn_check_letter(upn)
        if upn[0] != expected:
            self.error(
                field, f"'{value}' has check letter {upn[0]} but its digits give {expected}; the UPN is mistyped"
            )
            return None
        return upn

    def period(self, start_field: str, start: dt.date | None, leave_field: str, leave: dt.date | None) -> None:
        if start and leave and leave < start:
            self.error(
                leave_field,
                f"leaving date {leave:%d/%m/%Y} is before the start date {start:%d/%m/%Y} ({start_field})",
            )


def repeated(values: Sequence[str]) -> bool:
    """Whether some non-empty value occurs more than once."""
    distinct = set(values)
    distinct.discard("")
    return len(distinct) < len(values) - values.count("")


def duplicates(
    file: str, field: str, entries: Iterable[tuple[int, str]], ids: Mapping[int, str] | None = None,
) -> tuple[list[RowError], set[int]]:
    """Row errors for every line whose id also appears on another line, and those lines.

    The value is the row's person id unless `ids` (line -> person id) says otherwise (a UPN check).

    Neither line is trusted: which of two rows with one admission number is the real pupil is a
    question for the office, not a guess for the tool.
    """
    entries = list(entries)
    if not repeated([value for _, value in entries]):
        return [], set()  # the usual export: every value once, told without a list of lines per value
    lines_by_id: dict[str, list[int]] = defaultdict(list)
    for line, value in entries:
        if value:
            lines_by_id[value].append(line)
    errors: list[RowError] = []
    bad: set[int] = set()
    for value, lines in lines_by_id.items():
        if len(lines) < 2:
            continue
        for line in lines:
            others = ", ".join(str(other) for other in lines if other != line)
            errors.append(RowError(file, line, field, f"duplicate '{value}', also on line {others}",
                                   (ids.get(line) or None) if ids is not None else value))
            bad.add(line)
    return errors, bad
