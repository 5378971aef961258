"""Microsoft School Data Sync v2.1 CSV: orgs.csv, users.csv and roles.csv in one folder.

A user's kind, year group and dates come from their rows in roles.csv: role `student` makes a
pupil, the staff roles of SDS's list (teacher, administrator, staff, aide, principal …) make
staff, other roles (guardian, relative …) are not people this tool provisions. `grade` is the
year group, `roleStartDate` / `roleEndDate` the start and leaving dates (a person with several
roles leaves when the last one ends). Headers are case-sensitive, as SDS requires.

Users with no roles.csv row, or only roles of other kinds, are not provisioned and not errors:
they are counted in FeedResult.skipped ("guardian", "no role"). `username` is a UPN in SDS;
Person.username is its local part and Person.username_domain its domain.

Classes: the optional classes.csv and enrollments.csv give pupils their classes and teachers theirs
(feeds/teaching.py); a bad enrolment is a note, never a refused row.

Options: `school` (an orgSourcedId: read only roles in that org), `grades = "uk" | "us"`
(numeric grades are UK years, or US grades one below the UK year), `years`, `absent`, `encoding`,
`date_order = "dmy" | "mdy"`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

from idlifecycle.errors import FeedError
from idlifecycle.feeds._csv import Row, Table, read_table, require_columns
from idlifecycle.feeds._fields import RowCheck, duplicates, settle_date_order
from idlifecycle.feeds._spec import FeedColumns, FeedResult, FeedSpec, Options, folder_files
from idlifecycle.feeds.teaching import read_enrolments, with_classes
from idlifecycle.model import Kind, Person, RowError

FILES = ("orgs.csv", "users.csv", "roles.csv")

STAFF_ROLES = frozenset({
    "principal", "chair", "professor", "researcher", "adjunct", "affiliate", "occupationaltherapist",
    "physicaltherapist", "speechtherapist", "visiontherapist", "paraprofessional", "specialservices",
    "advisor", "proctor", "nurse", "officestaff", "lecturer", "itadmin", "administrator", "teacher",
    "faculty", "staff", "teacherassistant", "aide", "instructor", "substitute", "coach", "counselor",
})
"""SDS's default staff role group (enum values match case-insensitively)."""

PUPIL_ROLES = frozenset({"student"})
OTHER_ROLES = frozenset({"guardian", "parent", "relative", "alumni", "other"})
"""Roles that are not pupils or staff: not provisioned, and not an error either."""


@dataclass(frozen=True)
class RoleLine:
    """One usable row of roles.csv (or of a v1 Student/Teacher file) for one person."""

    line: int
    kind: Kind
    role: str
    grade: str | None
    primary: bool
    start: date | None
    end: date | None


USER_COLUMNS = {
    "person_id": "sourcedId", "username": "username", "legal_first_name": "givenName",
    "preferred_first_name": "preferredGivenName", "last_name": "familyName", "email": "email",
}
ROLE_COLUMNS = {
    "person_id": "userSourcedId", "roles": "role", "year_group": "grade", "start_date": "roleStartDate",
    "leave_date": "roleEndDate",
}
"""The headers each field is read from (SDS headers are fixed and case-sensitive)."""

NO_ROLE = "no role"


def read(spec: FeedSpec) -> FeedResult:
    options = Options(spec, frozenset({"school", "grades"}))
    school = options.text("school")
    grades = options.grades()
    files = folder_files(spec, FILES)
    orgs = read_table(files["orgs.csv"], str(files["orgs.csv"]), options.encoding)
    users = read_table(files["users.csv"], str(files["users.csv"]), options.encoding)
    roles = read_table(files["roles.csv"], str(files["roles.csv"]), options.encoding)
    require_columns(orgs, ("sourcedId", "name", "type"))
    require_columns(users, ("sourcedId", "username", "givenName", "familyName"))
    require_columns(roles, ("userSourcedId", "orgSourcedId", "role"))

    errors = orgs.errors + users.row_errors("sourcedId") + roles.row_errors("userSourcedId")
    org_errors, _ = duplicates(orgs.file, "sourcedId", ((row.line, row.get("sourcedId")) for row in orgs.rows))
    errors += [replace(error, person_id=None) for error in org_errors]  # an org's id is not a person's
    org_ids = {row.get("sourcedId") for row in orgs.rows}
    if school is not None and school not in org_ids:
        raise options.fail("school", f"{school!r} is not a sourcedId in {orgs.file}")

    user_ids = {row.get("sourcedId") for row in users.rows}
    contacts = _contacts(spec, options)
    date_order = settle_date_order(
        roles.file, (row.get(column) for row in roles.rows for column in ("roleStartDate", "roleEndDate")),
        options.date_order, options.date_order_set,
    )
    role_lines, role_errors, bad_users, other_roles = _roles(roles, org_ids, user_ids, school, date_order, grades,
                                                              options)
    errors += role_errors
    dup_errors, dup_lines = duplicates(users.file, "sourcedId", ((r.line, r.get("sourcedId")) for r in users.rows))
    errors += dup_errors

    people: list[Person] = []
    skipped: dict[str, int] = {}
    skipped_ids: set[str] = set()
    in_scope = len(users.errors)
    for row in users.rows:
        user_id = row.get("sourcedId")
        if school is not None and user_id not in role_lines and user_id not in bad_users:
            continue  # a user of another school in a trust-wide export
        mine = role_lines.get(user_id, [])
        why = _not_provisioned(user_id, mine, user_id in bad_users or row.line in dup_lines, other_roles, contacts)
        if why is not None:
            skipped[why] = skipped.get(why, 0) + 1
            skipped_ids.add(user_id)
            continue
        in_scope += 1
        check = RowCheck(users.file, row.line, date_order, grades, person_id=user_id)
        person = _user(check, row, user_id, mine, user_id not in bad_users and row.line not in dup_lines)
        errors += check.errors
        if person is not None and not check.errors:
            people.append(person)
    if school is not None and not in_scope:
        raise FeedError(f"{roles.file}: no user has a role in school {school!r}; check the school option")
    enrolments = read_enrolments(spec.path, {person.person_id: person.kind for person in people}, user_ids,
                                 options.encoding)
    return FeedResult(with_classes(people, enrolments), tuple(errors), in_scope, _described(options, users, roles),
                      skipped, frozenset(skipped_ids), enrolments.notes)


def _described(options: Options, users: Table, roles: Table) -> tuple[FeedColumns, ...]:
    return (
        options.columns(users.file, None, _present(USER_COLUMNS, users), users.header),
        options.columns(roles.file, None, _present(ROLE_COLUMNS, roles), roles.header,
                        used=("orgSourcedId", "isPrimary")),
    )




def _not_provisioned(user_id: str, mine: list[RoleLine], refused: bool, other_roles: dict[str, str],
                     contacts: dict[str, str]) -> str | None:
    """Why a user is not someone this tool provisions, or None when they are (or their row was refused).

    A guardian or relative (Microsoft's own sample lists them in users.csv, linked to pupils by
    relationships.csv, with no roles.csv row at all), or a user with no role. Neither is a bad row: nothing
    in it is wrong, and refusing it would count every parent of the school against max_bad_rows_percent.
    Counted and reported instead. A pupil who lost their role row by mistake is then missing from the feed:
    many at once trip the feed-drop guard, and `skipped_ids` names each of them so the run can leave their
    accounts alone rather than treat them as leavers."""
    if not user_id or mine or refused:
        return None
    return other_roles.get(user_id) or contacts.get(user_id, NO_ROLE)

def _user(check: RowCheck, row: Row, user_id: str, mine: list[RoleLine], sound: bool) -> Person | None:
    """One users.csv row checked into `check`: the person, or None when the user's roles or id were refused
    (`sound` false) and the row's own fields are checked only to report them."""
    check.required("sourcedId", user_id)
    given = check.name("givenName", row.get("givenName"))
    family = check.name("familyName", row.get("familyName"))
    preferred = check.name("preferredGivenName", row.get("preferredGivenName"), required=False)
    username, domain = check.username("username", row.get("username"))
    if not sound:
        return None
    return build_person(check, user_id, given, family, preferred, mine, row.get("email") or None, username, domain)

def _contacts(spec: FeedSpec, options: Options) -> dict[str, str]:
    """Guardians and relatives by sourcedId -> their relationshipRole, from the optional relationships.csv.

    Only labels the users counted as not provisioned ("3 guardians" rather than "3 with no role"),
    so a relationships.csv that cannot be read changes no account and does not stop the run.
    """
    found = next((child for child in spec.path.iterdir() if child.name.lower() == "relationships.csv"), None)
    if found is None:
        return {}
    try:
        table = read_table(found, str(found), options.encoding)
    except FeedError:
        return {}
    return {
        row.get("relationshipUserSourcedId"): row.get("relationshipRole").lower() or "contact"
        for row in table.rows if row.get("relationshipUserSourcedId")
    }


def _present(columns: dict[str, str], table: Table) -> dict[str, str]:
    return {name: column for name, column in columns.items() if column in table.header}


def _roles(
    roles: Table, org_ids: set[str], user_ids: set[str], school: str | None, date_order: str, grades: str,
    options: Options,
) -> tuple[dict[str, list[RoleLine]], list[RowError], set[str], dict[str, str]]:
    """Each user's usable roles, the errors in roles.csv, the users a bad role row spoils, and the
    role of users who hold only roles this tool does not provision (guardian, relative …)."""
    by_user: dict[str, list[RoleLine]] = {}
    errors: list[RowError] = []
    spoiled: set[str] = set()
    others: dict[str, str] = {}
    for row in roles.rows:
        check = RowCheck(roles.file, row.line, date_order, grades, person_id=row.get("userSourcedId"),
                         years=options.years)
        user_id = check.required("userSourcedId", row.get("userSourcedId"))
        org_id = check.required("orgSourcedId", row.get("orgSourcedId"))
        role = check.required("role", row.get("role"))
        if user_id and user_id not in user_ids:
            check.error("userSourcedId", f"'{user_id}' is not a sourcedId in users.csv")
        if org_id and org_id not in org_ids:
            check.error("orgSourcedId", f"'{org_id}' is not a sourcedId in orgs.csv")
        if school is not None and org_id != school:
            continue
        kind = Kind.PUPIL if role.lower() in PUPIL_ROLES else Kind.STAFF if role.lower() in STAFF_ROLES else None
        if role and kind is None and role.lower() not in OTHER_ROLES:
            # Dropping an unknown role silently would make a member of staff look like a leaver.
            check.error("role", f"unknown role '{role}'; expected student or a staff role such as teacher or staff")
        start = check.date("roleStartDate", row.get("roleStartDate"))
        end = check.date("roleEndDate", row.get("roleEndDate"))
        check.period("roleStartDate", start, "roleEndDate", end)
        # A pupil without a year would silently become this year's intake (a wrong username, OU
        # and groups), so a student role must say the grade.
        grade = check.year_group("grade", row.get("grade"), required=True) if kind is Kind.PUPIL else None
        errors += check.errors
        if check.errors:
            spoiled.add(user_id)
            continue
        if kind is not None:
            primary = row.get("isPrimary").lower() in {"true", "1", "yes", "y"}
            by_user.setdefault(user_id, []).append(RoleLine(row.line, kind, role, grade, primary, start, end))
        else:
            by_user.setdefault(user_id, [])
            others.setdefault(user_id, role.lower())
    return by_user, errors, spoiled, others


def build_person(
    check: RowCheck, person_id: str, given: str | None, family: str | None, preferred: str | None,
    roles: list[RoleLine], email: str | None, username: str | None, username_domain: str | None = None,
) -> Person | None:
    """One Person from a user row and that user's roles; None when the roles disagree."""
    if not roles or not given or not family:
        return None
    kinds = {role.kind for role in roles}
    if len(kinds) > 1:
        lines = ", ".join(str(role.line) for role in roles)
        check.error("sourcedId", f"'{person_id}' is both a student and staff in roles.csv (lines {lines})")
        return None
    kind = kinds.pop()
    main = next((role for role in roles if role.primary), roles[0])
    starts = [role.start for role in roles if role.start]
    ends = [role.end for role in roles]
    return Person(
        person_id=person_id,
        kind=kind,
        legal_first_name=given,
        last_name=family,
        preferred_first_name=preferred if preferred and preferred != given else None,
        year_group=(main.grade or next((role.grade for role in roles if role.grade), None)) if kind is Kind.PUPIL
        else None,
        roles=() if kind is Kind.PUPIL else tuple(dict.fromkeys(role.role for role in roles)),
        start_date=min(starts) if starts else None,
        leave_date=max(end for end in ends if end) if ends and all(ends) else None,
        email=email,
        username=username,
        username_domain=username_domain,
        source=check.source,
    )
