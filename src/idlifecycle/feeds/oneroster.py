"""OneRoster 1.1 CSV bulk export: users.csv and orgs.csv in one folder (other files ignored).

Roles: `student` makes a pupil; `teacher`, `administrator`, `aide`, `proctor` (and 1.2's
administrator roles) make staff; `guardian`, `parent`, `relative` are not provisioned.
`grades` (the first of the list) is the year group; a `{UPN:…}` entry in `userIds` is the UPN.

Leavers: a user with `status = tobedeleted` or `enabledUser = false` is a leaver whose leaving
date is the date of `dateLastModified` (when the SIS marked them). Without that date there is
nothing to date the leaving by, so the user is left out of the feed, which the planner also
reads as "no longer on roll" (subject to the grace period and guards).

A student without `grades` is a row error (it would otherwise become this year's intake).
Guardians, parents and relatives are counted in FeedResult.skipped, not provisioned.

Classes: the optional classes.csv and enrollments.csv (role student / teacher, `status`) give pupils
their classes and teachers theirs (feeds/teaching.py); a bad enrolment is a note, never a refused row.

Options: `school` (an org sourcedId: read only users of that org), `grades = "uk" | "us"`,
`years`, `absent`, `encoding`, `date_order`.
"""

from __future__ import annotations

import re

from idlifecycle.errors import FeedError
from idlifecycle.feeds._csv import Row, read_table, require_columns
from idlifecycle.feeds._fields import RowCheck, duplicates
from idlifecycle.feeds._spec import FeedResult, FeedSpec, Options, folder_files
from idlifecycle.feeds.teaching import read_enrolments, with_classes
from idlifecycle.model import Kind, Person, RowError

FILES = ("users.csv", "orgs.csv")

PUPIL_ROLES = frozenset({"student"})
STAFF_ROLES = frozenset({
    "teacher", "administrator", "aide", "proctor", "districtadministrator", "siteadministrator",
    "systemadministrator", "principal", "counselor",
})
OTHER_ROLES = frozenset({"guardian", "parent", "relative"})

COLUMNS = {
    "person_id": "sourcedId", "kind": "role", "username": "username", "upn": "userIds",
    "legal_first_name": "givenName", "preferred_first_name": "preferredFirstName", "last_name": "familyName",
    "year_group": "grades", "email": "email",
}
"""The headers each field is read from; roles come from `role` too, leavers from status/enabledUser."""

USER_ID = re.compile(r"\{\s*([^:{}]+?)\s*:\s*([^{}]*?)\s*\}")


def read(spec: FeedSpec) -> FeedResult:
    options = Options(spec, frozenset({"school", "grades"}))
    school = options.text("school")
    files = folder_files(spec, FILES)
    orgs = read_table(files["orgs.csv"], str(files["orgs.csv"]), options.encoding)
    users = read_table(files["users.csv"], str(files["users.csv"]), options.encoding)
    require_columns(orgs, ("sourcedId", "name", "type"))
    require_columns(users, ("sourcedId", "orgSourcedIds", "role", "givenName", "familyName"))
    org_ids = {row.get("sourcedId") for row in orgs.rows}
    if school is not None and school not in org_ids:
        raise options.fail("school", f"{school!r} is not a sourcedId in {orgs.file}")

    errors = orgs.errors + users.row_errors("sourcedId")
    dup_errors, dup_lines = duplicates(
        users.file, "sourcedId", ((row.line, row.get("sourcedId")) for row in users.rows),
    )
    errors += dup_errors
    people: list[Person] = []
    skipped: dict[str, int] = {}
    skipped_ids: set[str] = set()
    rows = len(users.errors)
    for row in users.rows:
        user_orgs = [org.strip() for org in row.get("orgSourcedIds").split(",") if org.strip()]
        if school is not None and school not in user_orgs:
            continue
        if row.get("role").lower() in OTHER_ROLES and row.get("sourcedId") and row.line not in dup_lines:
            # A parent is not someone this tool provisions, and nothing in the row is wrong.
            skipped[row.get("role").lower()] = skipped.get(row.get("role").lower(), 0) + 1
            skipped_ids.add(row.get("sourcedId"))
            continue
        rows += 1
        person, row_errors = _person(row, users.file, options, user_orgs, org_ids, row.line in dup_lines)
        errors += row_errors
        if person is not None:
            people.append(person)
    if school is not None and not rows:
        raise FeedError(f"{users.file}: no user belongs to org {school!r}; check the school option")
    mapping = {name: column for name, column in COLUMNS.items() if column in users.header}
    described = options.columns(users.file, None, mapping, users.header,
                                used=("orgSourcedIds", "status", "enabledUser", "dateLastModified"))
    enrolments = read_enrolments(spec.path, {person.person_id: person.kind for person in people},
                                 (row.get("sourcedId") for row in users.rows), options.encoding)
    return FeedResult(with_classes(people, enrolments), tuple(errors), rows, (described,), skipped,
                      frozenset(skipped_ids), enrolments.notes)


def _person(row: Row, file: str, options: Options, user_orgs: list[str], org_ids: set[str],
            duplicate: bool) -> tuple[Person | None, list[RowError]]:
    """One user row read and checked: the person, or None when the row is refused (or a leaver without
    a date), with the row's errors."""
    check = RowCheck(file, row.line, options.date_order, options.grades(), person_id=row.get("sourcedId"),
                     years=options.years)
    person_id = check.required("sourcedId", row.get("sourcedId"))
    role = check.required("role", row.get("role"))
    kind = Kind.PUPIL if role.lower() in PUPIL_ROLES else Kind.STAFF if role.lower() in STAFF_ROLES else None
    if role and kind is None and role.lower() not in OTHER_ROLES:
        check.error("role", f"unknown role '{role}'; expected student, teacher, administrator, aide or proctor")
    check.required("orgSourcedIds", row.get("orgSourcedIds"))
    unknown = [org for org in user_orgs if org not in org_ids]
    if unknown:
        check.error("orgSourcedIds", f"{', '.join(repr(org) for org in unknown)} not in orgs.csv")
    given = check.name("givenName", row.get("givenName"))
    family = check.name("familyName", row.get("familyName"))
    preferred = check.name("preferredFirstName", row.get("preferredFirstName"), required=False)
    first_grade = next((grade.strip() for grade in row.get("grades").split(",") if grade.strip()), "")
    year = check.year_group("grades", first_grade, required=True) if kind is Kind.PUPIL else None
    upns = [value for label, value in USER_ID.findall(row.get("userIds")) if label.lower() == "upn"]
    upn = check.upn("userIds", upns[0]) if upns and kind is Kind.PUPIL else None
    leaving = row.get("status").lower() == "tobedeleted" or row.get("enabledUser").lower() == "false"
    marked = check.date("dateLastModified", row.get("dateLastModified")) if leaving else None
    username, domain = check.username("username", row.get("username"))
    if check.errors or kind is None or not given or not family or duplicate or (leaving and marked is None):
        return None, list(check.errors)
    return Person(
        person_id=person_id, kind=kind, legal_first_name=given, last_name=family,
        preferred_first_name=preferred if preferred and preferred != given else None, year_group=year,
        roles=() if kind is Kind.PUPIL else (role,), leave_date=marked, upn=upn, email=row.get("email") or None,
        username=username, username_domain=domain, source=check.source,
    ), list(check.errors)
