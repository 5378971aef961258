"""Generic MIS CSV: a SIMS, Arbor or Bromcom report of pupils or staff, one person per row.

Headers match case-insensitively and ignoring spaces and punctuation, and each field accepts
the names those systems use ("Adno", "Admission No", "Legal Forename", "NC Year", "Reg" …).
Options (job file):

- A staff file's registration group column ("Tutor Group", "Form", "Class"; "7A; 7B" for two) is the
  groups that member of staff teaches (`Person.teaches`), whose pupils they may reset the passwords of.
- `kind = "pupil" | "staff"`: what the file lists. Without it, a kind column ("Kind", "Type",
  "Person Type") decides per row, else the id column's name does ("Adno" → pupils,
  "Staff Code" → staff).
- `columns = { field = "Header", … }`: override the header for any field: person_id, kind,
  upn, legal_first_name, preferred_first_name, last_name, year_group, registration_group,
  roles, start_date, leave_date, email, username.
- `years = "R-6"`: the year groups the school has; a pupil outside them is a row error.
- `absent = ["leave_date", …]`: fields the export does not have (recorded for the run's checks).
- `encoding` (default: detected), `date_order = "dmy" | "mdy"` (default: told from the dates; a
  file whose every date could be either is refused until it is set).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from itertools import chain
from operator import itemgetter

from idlifecycle.errors import ConfigError, FeedError
from idlifecycle.feeds._csv import Row, Table, find_column, read_table
from idlifecycle.feeds._fields import (
    RowCheck,
    YearRange,
    duplicates,
    normalise_year_group,
    parse_date,
    plain_names,
    plain_upn,
    repeated,
    settle_date_order,
)
from idlifecycle.feeds._spec import FeedResult, FeedSpec, Options
from idlifecycle.model import Kind, Person, RowError

PUPIL_IDS = (
    "Admission Number", "Adno", "Admission No", "Adm No", "Pupil ID", "Student ID", "Pupil Number", "Student Number",
)
STAFF_IDS = (
    "Staff Code", "Staff ID", "Staff Number", "Staff No", "Employee Number", "Employee No", "Employee ID",
    "Payroll Number", "Payroll No",
)
GENERIC_IDS = ("MIS ID", "Person ID", "ID")

ALIASES: dict[str, tuple[str, ...]] = {
    "kind": ("Kind", "Person Type", "Type"),
    "upn": ("UPN", "Unique Pupil Number"),
    "legal_first_name": (
        "Legal Forename", "Legal Forenames", "Legal First Name", "Forename", "Forenames", "First Name",
        "First Names", "Firstname", "Given Name",
    ),
    "preferred_first_name": (
        "Preferred Forename", "Preferred First Name", "Preferred Name", "Known As", "Chosen Name",
    ),
    "last_name": ("Legal Surname", "Legal Last Name", "Surname", "Last Name", "Lastname", "Family Name"),
    "year_group": (
        "Year", "Year Group", "NC Year", "NC Year Group", "NC Year Actual", "National Curriculum Year",
        "Curriculum Year", "Current Year Group", "Year Taught In", "Yr", "Yr Group",
    ),
    "registration_group": (
        "Reg Group", "Reg", "Registration Group", "Reg Grp", "Reg Form", "Registration Form", "Registration Class",
        "Form", "Form Group", "Tutor Group", "Class",
    ),
    "start_date": (
        "Admission Date", "Date of Admission", "Adm Date", "Start Date", "Entry Date", "Date of Entry",
        "Enrolment Date", "Enrolment Start Date", "Employment Start Date", "Contract Start Date", "Date of Arrival",
        "Arrival Date", "Date Joined",
    ),
    "leave_date": (
        "Leaving Date", "Date of Leaving", "Leave Date", "Date Left", "End Date", "Enrolment End Date",
        "Employment End Date", "Contract End Date", "Date of Departure", "Departure Date",
    ),
    "roles": ("Role", "Roles", "Staff Role", "Staff Roles", "Job Title", "Job Role", "Post", "Post Title"),
    "email": (
        "School Email", "School Email Address", "Work Email", "Work Email Address", "Email Work", "Staff Email",
        "Pupil Email", "Student Email",
    ),
    "username": ("Username", "User Name", "Login", "Network Username"),
}
"""Header names per field, most specific first. A bare "Email" is left out on purpose: in a
pupil report it is usually a parent's address."""

FIELDS = ("person_id", *ALIASES)

KIND_WORDS = {
    "pupil": Kind.PUPIL, "pupils": Kind.PUPIL, "student": Kind.PUPIL, "students": Kind.PUPIL,
    "learner": Kind.PUPIL, "staff": Kind.STAFF, "teacher": Kind.STAFF, "employee": Kind.STAFF,
    "support staff": Kind.STAFF, "teaching staff": Kind.STAFF,
}

OPTIONS = frozenset({"kind", "columns"})

ROLE_SEPARATORS = re.compile(r"\s*[;|,]\s*")


def read(spec: FeedSpec) -> FeedResult:
    options = Options(spec, OPTIONS)
    fixed_kind = _kind_option(options)
    overrides = options.table("columns")
    for name in overrides:
        if name not in FIELDS:
            raise options.fail(f"columns.{name}", f"is not a field; known: {', '.join(FIELDS)}")
    table = read_table(spec.path, str(spec.path), options.encoding)
    columns = _resolve(table, options, overrides, fixed_kind)
    if fixed_kind is None:
        fixed_kind = _kind_of_file(table, options, overrides, columns["kind"])
    _require(table, columns, fixed_kind)

    id_column = columns["person_id"] or ""
    ids = table.column(id_column)
    errors = table.row_errors(id_column)
    duplicate_errors, bad_lines = _duplicates(table, columns, ids)
    errors += duplicate_errors
    date_order = settle_date_order(table.file, _dates(table, columns), options.date_order, options.date_order_set)
    people, row_errors = _read_rows(table, columns, fixed_kind, date_order, options.years, ids, bad_lines)
    errors += row_errors
    # Only the columns this file's rows are read from: a kind column is unused once the kind is
    # known for the whole file, a role column in a pupil report, a year column in a staff one.
    unused: dict[Kind | None, set[str]] = {
        Kind.PUPIL: {"kind", "roles"}, Kind.STAFF: {"kind", "upn", "year_group"}, None: set(),
    }
    used = {name: column for name, column in columns.items() if name not in unused[fixed_kind]}
    described = options.columns(table.file, fixed_kind.value if fixed_kind else None, used, table.header)
    return FeedResult(
        tuple(people), tuple(sorted(errors, key=lambda e: e.line)), len(table.records) + len(table.errors),
        (described,),
    )


def _duplicates(table: Table, columns: dict[str, str | None], ids: list[str]) -> tuple[list[RowError], set[int]]:
    """Errors for every row whose id or UPN another row also has, and those rows' lines.

    Most exports have neither: one set each tells so, before any list of lines is made.
    """
    upn_column = columns["upn"]
    upns = list(map(str.upper, table.column(upn_column))) if upn_column else []
    errors: list[RowError] = []
    bad_lines: set[int] = set()
    ids_repeat, upns_repeat = repeated(ids), repeated(upns)
    lines = table.lines
    if ids_repeat:
        errors, bad_lines = duplicates(table.file, columns["person_id"] or "", zip(lines, ids, strict=True))
    if upn_column and upns_repeat:
        upn_errors, upn_lines = duplicates(
            table.file, upn_column, zip(lines, upns, strict=True), ids=dict(zip(lines, ids, strict=True)),
        )
        errors += upn_errors
        bad_lines |= upn_lines
    return errors, bad_lines


def _dates(table: Table, columns: dict[str, str | None]) -> Iterable[str]:
    """Every start and leaving date as written, row by row (the order `settle_date_order` quotes from)."""
    positions = [table.position(columns[name]) for name in ("start_date", "leave_date") if columns[name]]
    if len(positions) == 1:
        return map(itemgetter(positions[0]), table.records)
    return chain.from_iterable(map(itemgetter(*positions), table.records)) if positions else ()


def _read_rows(
    table: Table, columns: dict[str, str | None], fixed_kind: Kind | None, date_order: str,
    years: YearRange | None, ids: list[str], bad_lines: set[int],
) -> tuple[list[Person], list[RowError]]:
    """The people of the file's rows, and the errors of the rows that are refused.

    Most rows are plainly good and are read by `plain_reader`; a row it doubts goes through the
    full checks (`RowCheck`), which name what is wrong with it, if anything is.
    """
    plain = plain_reader(table, columns, fixed_kind, date_order, years)
    row_columns = tuple(columns[name] or "" for name in _ROW_FIELDS)
    people: list[Person] = []
    errors: list[RowError] = []
    for line, cells, person_id in zip(table.lines, table.records, ids, strict=True):
        person = plain(line, cells)
        if person is None:
            check = RowCheck(table.file, line, date_order, person_id=person_id, years=years)
            person = _person(check, Row(line, cells, table.positions), row_columns, fixed_kind)
            errors += check.errors
        if person is not None and line not in bad_lines:
            people.append(person)
    return people, errors


_ROW_FIELDS = ("kind", "person_id", "legal_first_name", "preferred_first_name", "last_name", "year_group", "upn",
               "start_date", "leave_date", "roles", "registration_group", "email", "username")
"""The fields a row is read for, in the order `_person` and `plain_reader` unpack them."""


def plain_reader(
    table: Table, columns: Mapping[str, str | None], fixed_kind: Kind | None, date_order: str,
    years: YearRange | None,
) -> Callable[[int, tuple[str, ...]], Person | None]:
    """One file's fast row reader: the row's Person when every value is plainly good, else None.

    Made once per file, with the file's columns resolved to cell positions; each distinct year group
    and date is parsed once. It accepts only rows the full checks (`_person`) accept, reading them to
    the same Person; anything else (an empty required value, a name with a control character, a bad
    UPN, a date it cannot read) it leaves to those checks, which say what is wrong.
    """
    cells_of = itemgetter(*(table.position(columns[name]) for name in _ROW_FIELDS))
    file = table.file
    year_groups: dict[str, str] = {}
    dates: dict[str, dt.date] = {}

    def year_group(text: str) -> str | None:
        try:
            year = normalise_year_group(text)
        except ValueError:
            return None
        if years is not None and year not in years:
            return None
        year_groups[text] = year
        return year

    def date(text: str) -> dt.date | None:
        try:
            dates[text] = parse_date(text, date_order)
        except ValueError:
            return None
        return dates[text]

    def read(line: int, cells: tuple[str, ...]) -> Person | None:
        (kind_text, person_id, legal, preferred, last, year_text, upn_text, start_text, leave_text, roles_text,
         registration_group, email, username) = cells_of(cells)
        kind = fixed_kind or KIND_WORDS.get(kind_text.lower())
        if kind is None or not person_id or not plain_names(legal, last, preferred):
            return None
        pupil = kind is Kind.PUPIL
        year = upn = None
        if pupil:
            year = year_groups.get(year_text) or year_group(year_text)
            upn = upn_text.upper() or None
            if year is None or (upn is not None and not plain_upn(upn)):
                return None
        start = (dates.get(start_text) or date(start_text)) if start_text else None
        leave = (dates.get(leave_text) or date(leave_text)) if leave_text else None
        if (start_text and start is None) or (leave_text and leave is None) or (start and leave and leave < start):
            return None
        return Person(
            person_id=person_id, kind=kind, legal_first_name=legal, last_name=last,
            preferred_first_name=preferred if preferred and preferred != legal else None,
            year_group=year, registration_group=(registration_group or None) if pupil else None,
            roles=() if pupil else tuple(part for part in ROLE_SEPARATORS.split(roles_text) if part),
            start_date=start, leave_date=leave, upn=upn, email=email or None, username=username or None,
            source=f"{file}:{line}", teaches=() if pupil else tutor_groups(registration_group),
        )

    return read


def _person(check: RowCheck, row: Row, columns: tuple[str, ...], fixed_kind: Kind | None) -> Person | None:
    """One row as a Person, or None when a check refused it (the reasons are in `check.errors`).

    `columns` are the file's headers for `_ROW_FIELDS` ("" where it has none), looked up once per file.
    """
    (kind_column, id_column, legal_column, preferred_column, last_column, year_column, upn_column, start_column,
     leave_column, roles_column, reg_column, email_column, username_column) = columns
    get = row.get
    kind = fixed_kind or _row_kind(check, kind_column, get(kind_column))
    person_id = check.required(id_column, get(id_column))
    legal = check.name(legal_column, get(legal_column))
    preferred = check.name(preferred_column, get(preferred_column), required=False)
    last = check.name(last_column, get(last_column))
    pupil = kind is Kind.PUPIL
    year = check.year_group(year_column or "year_group", get(year_column), required=True) if pupil else None
    upn = check.upn(upn_column, get(upn_column)) if pupil and upn_column else None
    start = check.date(start_column, get(start_column))
    leave = check.date(leave_column, get(leave_column))
    check.period(start_column, start, leave_column, leave)
    if check.errors or kind is None or not legal or not last:
        return None
    roles = () if pupil or not roles_column else tuple(part for part in ROLE_SEPARATORS.split(get(roles_column))
                                                       if part)
    return Person(
        person_id=person_id,
        kind=kind,
        legal_first_name=legal,
        last_name=last,
        preferred_first_name=preferred if preferred and preferred != legal else None,
        year_group=year,
        registration_group=(get(reg_column) or None) if pupil else None,
        roles=roles,
        start_date=start,
        leave_date=leave,
        upn=upn,
        email=get(email_column) or None,
        username=get(username_column) or None,
        source=check.source,
        teaches=() if pupil else tutor_groups(get(reg_column)),
    )


def tutor_groups(text: str) -> tuple[str, ...]:
    """A staff row's registration group column ("Tutor Group", "Form", "Class"): the groups they teach,
    "7A; 7B" for two, which a teacher may reset the pupils of (passwords/class_reset.py)."""
    return tuple(part for part in ROLE_SEPARATORS.split(text) if part) if text else ()


def _kind_option(options: Options) -> Kind | None:
    value = options.text("kind")
    if value is None:
        return None
    kind = KIND_WORDS.get(value.lower())
    if kind is None:
        raise options.fail("kind", f'is {value!r}; expected "pupil" or "staff"')
    return kind


def _ids(kind: Kind | None) -> tuple[str, ...]:
    return {Kind.PUPIL: PUPIL_IDS, Kind.STAFF: STAFF_IDS, None: PUPIL_IDS + STAFF_IDS}[kind] + GENERIC_IDS


def _resolve(table: Table, options: Options, overrides: dict[str, str], kind: Kind | None) -> dict[str, str | None]:
    """The file's column for each field (None where the file has none)."""
    ids = _ids(kind)
    columns: dict[str, str | None] = {}
    for name in FIELDS:
        if name in overrides:
            found = find_column(table, (overrides[name],))
            if found is None:
                raise FeedError(
                    f"{table.file}: no column '{overrides[name]}' (set as columns.{name} in "
                    f"{options.spec.source or 'the job file'}); found: {_listing(table)}"
                )
        else:
            found = find_column(table, ids if name == "person_id" else ALIASES[name])
        columns[name] = found
    return columns


def _require(table: Table, columns: dict[str, str | None], kind: Kind | None) -> None:
    """A column every row needs and the file lacks is a FeedError, before any row is read."""
    must = ["person_id", "legal_first_name", "last_name"] + (["year_group"] if kind is Kind.PUPIL else [])
    for name in must:
        if columns[name] is None:
            tried = _ids(kind) if name == "person_id" else ALIASES[name]
            raise FeedError(
                f"{table.file}: no column for {name} (looked for {', '.join(repr(t) for t in tried)}); "
                f"found: {_listing(table)}; name it with columns.{name} in the job file"
            )


def _kind_of_file(table: Table, options: Options, overrides: dict[str, str], column: str | None) -> Kind | None:
    """Whose file this is without a kind option; None when a kind column says it row by row.

    A column merely called "Type" in a staff report may hold "Teaching" / "Support": it
    decides only when its values are all pupil or staff words, or nothing else can.
    """
    inferred = None
    if "person_id" not in overrides:
        pupil = find_column(table, PUPIL_IDS)
        staff = find_column(table, STAFF_IDS)
        inferred = Kind.PUPIL if pupil and not staff else Kind.STAFF if staff and not pupil else None
    if column is not None:
        values = {row.get(column).lower() for row in table.rows} - {""}
        if "kind" in overrides or inferred is None or values <= KIND_WORDS.keys():
            return None
    if inferred is not None:
        return inferred
    raise ConfigError(
        options.spec.source or str(options.spec.path), "kind",
        f'cannot tell whether {table.file} lists pupils or staff; set kind = "pupil" or kind = "staff"',
    )


def _row_kind(check: RowCheck, column: str, value: str) -> Kind | None:
    kind = KIND_WORDS.get(value.lower())
    if kind is None:
        check.error(column, f"'{value}' is neither pupil nor staff" if value else "is required but empty")
    return kind


def _listing(table: Table) -> str:
    return ", ".join(repr(column) for column in table.header if column)

