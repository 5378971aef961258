"""Who teaches whom, from a folder feed's classes.csv and enrollments.csv (SDS v2.1 and OneRoster 1.1).

Both formats name the files and the columns the same way: classes.csv `sourcedId` and `title`,
enrollments.csv `classSourcedId`, `userSourcedId` and `role` (SDS v2.1 CSV file format,
https://learn.microsoft.com/en-us/schooldatasync/sds-v2.1-csv-file-format; OneRoster 1.1 CSV binding,
https://www.imsglobal.org/oneroster-v11-final-csv-tables). OneRoster also has `status`: a
`tobedeleted` enrolment is over. A pupil's enrolment as `student` puts the class in `Person.classes`;
a member of staff's enrolment as a teacher (or aide, or another staff role) puts it in `Person.teaches`.

Classes only decide whom a teacher may reset, so nothing here refuses a row or holds an account: a class
or user an enrolment names that the export does not have, a student enrolment of a member of staff, or
files that cannot be read are `FeedResult.notes`, and the enrolment is left out (the teacher may reset
fewer pupils, never more). A folder with neither file has no classes, and that is no note.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from idlifecycle.errors import FeedError
from idlifecycle.feeds._csv import Table, read_table
from idlifecycle.model import Kind, Person

FILES = ("classes.csv", "enrollments.csv")

TEACHING_ROLES = frozenset({"teacher", "aide", "teacherassistant", "instructor", "substitute", "lecturer",
                            "paraprofessional", "proctor"})
"""Enrolment roles that teach the class (SDS's and OneRoster's staff roles for a class's adults)."""

PUPIL_ROLE = "student"


@dataclass(frozen=True)
class Enrolments:
    """Each person's classes by name, as read: pupils' as students, staff's as teachers."""

    learns: Mapping[str, tuple[str, ...]]
    teaches: Mapping[str, tuple[str, ...]]
    notes: tuple[str, ...]


def read_enrolments(folder: Path, kinds: Mapping[str, Kind], other_users: Iterable[str] = (),
                    encoding: str | None = None) -> Enrolments:
    """The enrolments of `kinds` (person id -> kind of everyone read from the feed); an enrolment of a user
    the export has but this tool does not provision (`other_users`: guardians, refused rows) is skipped."""
    present = {child.name.lower(): child for child in folder.iterdir() if child.is_file()}
    found = [name for name in FILES if name in present]
    if not found:
        return Enrolments({}, {}, ())
    if len(found) == 1:
        missing = next(name for name in FILES if name not in found)
        return Enrolments({}, {}, (f"{folder}: {found[0]} without {missing}: no classes read, so teachers "
                                   "reset only the registration groups the job's [teaching] table gives them",))
    try:
        classes = read_table(present["classes.csv"], str(present["classes.csv"]), encoding)
        enrolments = read_table(present["enrollments.csv"], str(present["enrollments.csv"]), encoding)
    except FeedError as error:
        return Enrolments({}, {}, (f"{error}; no classes read",))
    missing_columns = _missing(classes, ("sourcedId", "title")) + _missing(
        enrolments, ("classSourcedId", "userSourcedId", "role"))
    if missing_columns:
        return Enrolments({}, {}, (f"{', '.join(missing_columns)}; no classes read",))
    return _enrolled(class_names(classes), enrolments, kinds, frozenset(other_users))


def _missing(table: Table, columns: tuple[str, ...]) -> list[str]:
    return [f"{table.file}: missing column '{column}'" for column in columns if column not in table.header]


def class_names(classes: Table) -> dict[str, str]:
    """classes.csv sourcedId -> the name a teacher knows the class by: its title, or the title and its id
    where two classes share a title (two "Year 7 Maths" sets must not become one group)."""
    titles = {row.get("sourcedId"): row.get("title") or row.get("sourcedId") for row in classes.rows
              if row.get("sourcedId")}
    counts: dict[str, int] = {}
    for title in titles.values():
        counts[title] = counts.get(title, 0) + 1
    return {class_id: title if counts[title] == 1 else f"{title} ({class_id})" for class_id, title in titles.items()}


def _enrolled(names: Mapping[str, str], table: Table, kinds: Mapping[str, Kind],
              others: frozenset[str]) -> Enrolments:
    learns: dict[str, list[str]] = {}
    teaches: dict[str, list[str]] = {}
    notes: list[str] = []
    for row in table.rows:
        if row.get("status").lower() == "tobedeleted":
            continue
        where = f"{table.file}:{row.line}"
        class_id, user_id, role = row.get("classSourcedId"), row.get("userSourcedId"), row.get("role").lower()
        kind = kinds.get(user_id)
        if class_id not in names:
            notes.append(f"{where}: classSourcedId '{class_id}' is not a class in classes.csv; enrolment left out")
        elif kind is None:
            if user_id not in others:
                notes.append(f"{where}: userSourcedId '{user_id}' is nobody the feed provisions; enrolment left out")
        elif role == PUPIL_ROLE and kind is Kind.PUPIL:
            learns.setdefault(user_id, []).append(names[class_id])
        elif role in TEACHING_ROLES and kind is Kind.STAFF:
            teaches.setdefault(user_id, []).append(names[class_id])
        elif role == PUPIL_ROLE or role in TEACHING_ROLES:
            notes.append(f"{where}: '{user_id}' is {kind.value} but enrolled as {role}; enrolment left out")
        else:
            notes.append(f"{where}: role '{role}' is neither student nor a teaching role; enrolment left out")
    return Enrolments({k: tuple(dict.fromkeys(v)) for k, v in learns.items()},
                      {k: tuple(dict.fromkeys(v)) for k, v in teaches.items()}, tuple(notes))


def with_classes(people: Iterable[Person], enrolments: Enrolments) -> tuple[Person, ...]:
    """The people with their classes set (a new Person only for those enrolled: most rows are unchanged)."""
    out: list[Person] = []
    for person in people:
        learns = enrolments.learns.get(person.person_id, ())
        teaches = enrolments.teaches.get(person.person_id, ())
        out.append(replace(person, classes=learns, teaches=teaches) if learns or teaches else person)
    return tuple(out)
