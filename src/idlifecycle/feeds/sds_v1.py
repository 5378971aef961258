"""Microsoft School Data Sync v1 CSV: School.csv, Student.csv and Teacher.csv in one folder.

Reads the UK format (`DfE Number`; `ID`, `School DfE Number`) and, because exports are
often relabelled, the original SDS format (`SIS ID`; `SIS ID`, `School SIS ID`) as well, told
apart by School.csv's header. Section and roster files are not needed for accounts and are
ignored. A `Status` of `Inactive` means the record is not on roll: the person is left out,
as SDS does. `Grade` is the year group; a teacher's `Title`, when given, is their role.

Options: `school` (a DfE number / SIS ID: read only that school's rows), `grades = "uk" | "us"`,
`years`, `absent`, `encoding`, `date_order`.
"""

from __future__ import annotations

from idlifecycle.errors import FeedError
from idlifecycle.feeds._csv import Table, read_table, require_columns
from idlifecycle.feeds._fields import RowCheck, duplicates
from idlifecycle.feeds._spec import FeedColumns, FeedResult, FeedSpec, Options, folder_files
from idlifecycle.feeds.sds_v2 import RoleLine, build_person
from idlifecycle.model import Kind, Person, RowError

FILES = ("School.csv", "Student.csv", "Teacher.csv")

DIALECTS = {
    "DfE Number": ("ID", "School DfE Number"),
    "SIS ID": ("SIS ID", "School SIS ID"),
}
"""School.csv's id column -> (person id column, school reference column)."""


def read(spec: FeedSpec) -> FeedResult:
    options = Options(spec, frozenset({"school", "grades"}))
    school = options.text("school")
    grades = options.grades()
    files = folder_files(spec, FILES)
    schools = read_table(files["School.csv"], str(files["School.csv"]), options.encoding)
    school_column = next((column for column in DIALECTS if column in schools.header), "DfE Number")
    require_columns(schools, (school_column, "Name"))
    id_column, ref_column = DIALECTS[school_column]
    school_ids = {row.get(school_column) for row in schools.rows}
    if school is not None and school not in school_ids:
        raise options.fail("school", f"{school!r} is not a {school_column} in {schools.file}")
    errors: list[RowError] = list(schools.errors)
    people: list[Person] = []
    described: list[FeedColumns] = []
    rows = 0
    for name, kind in (("Student.csv", Kind.PUPIL), ("Teacher.csv", Kind.STAFF)):
        table = read_table(files[name], str(files[name]), options.encoding)
        require_columns(table, (id_column, ref_column, "First Name", "Last Name"))
        found, found_errors, read_rows = _people(
            table, kind, id_column, ref_column, school_ids, school, options, grades,
        )
        people += found
        errors += found_errors
        rows += read_rows
        fields = {"person_id": id_column, "legal_first_name": "First Name", "last_name": "Last Name",
                  "username": "Username", "email": "Secondary Email",
                  **({"year_group": "Grade"} if kind is Kind.PUPIL else {"roles": "Title"})}
        described.append(options.columns(
            table.file, kind.value, {field: column for field, column in fields.items() if column in table.header},
            table.header, used=(ref_column, "Status"),
        ))
    if school is not None and not rows:
        raise FeedError(f"{spec.path}: no student or teacher of school {school!r}; check the school option")
    return FeedResult(tuple(people), tuple(errors), rows, tuple(described))


def _people(
    table: Table, kind: Kind, id_column: str, ref_column: str, school_ids: set[str], school: str | None,
    options: Options, grades: str,
) -> tuple[list[Person], list[RowError], int]:
    errors = table.row_errors(id_column)
    dup_errors, dup_lines = duplicates(table.file, id_column, ((row.line, row.get(id_column)) for row in table.rows))
    errors += dup_errors
    people: list[Person] = []
    rows = len(table.errors)
    for row in table.rows:
        if school is not None and row.get(ref_column) != school:
            continue
        rows += 1
        if row.get("Status").lower() == "inactive":
            continue
        check = RowCheck(table.file, row.line, options.date_order, grades, person_id=row.get(id_column),
                         years=options.years)
        person_id = check.required(id_column, row.get(id_column))
        reference = check.required(ref_column, row.get(ref_column))
        if reference and reference not in school_ids:
            check.error(ref_column, f"'{reference}' is not a school in School.csv")
        first = check.name("First Name", row.get("First Name"))
        last = check.name("Last Name", row.get("Last Name"))
        # Required: a pupil without a year would silently become this year's intake.
        grade = check.year_group("Grade", row.get("Grade"), required=True) if kind is Kind.PUPIL else None
        role = "student" if kind is Kind.PUPIL else row.get("Title") or "teacher"
        username, domain = check.username("Username", row.get("Username"))
        person = build_person(
            check, person_id, first, last, None, [RoleLine(row.line, kind, role, grade, True, None, None)],
            row.get("Secondary Email") or None, username, domain,
        )
        errors += check.errors
        if person is not None and not check.errors and row.line not in dup_lines:
            people.append(person)
    return people, errors, rows
