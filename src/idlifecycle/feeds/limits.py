"""The lengths and characters each directory accepts, checked on the feed before anything is planned.

A name the directory refuses fails the night's create or update half-way, for one person, with an
error from a Graph or LDAP call the office cannot map back to the MIS. Checked here instead, the
person is left out of the run with a row error naming the field, its length, the limit and the
directory, and (having `person_id`) is protected from being read as a leaver.

Sources, per directory (checked December 2026):

- AD: the attribute's rangeUpper in the AD schema (MS-ADA1/MS-ADA3 and learn.microsoft.com
  /windows/win32/adschema): givenName 64, sn 64 (MS-ADA3 2.275), displayName 256, cn 64 (MS-ADLS
  "Common-Name", rangeUpper 64; the connector names the object after the username), department 64,
  title 64 (a-title, Range-Upper 64). sAMAccountName
  has rangeUpper 256 but "must be 20 characters or fewer to support earlier clients" (a-samaccountname),
  and Windows logons refuse longer ones, so 20.
- Entra (Microsoft Graph user resource): givenName 64, surname 64, displayName 256, mailNickname 64,
  department 64, jobTitle 128.

employeeID (AD) and employeeId (Entra) hold at most 16 characters, but a longer person id (a GUID
sourcedId) is not refused: the connectors write its short anchor (idlifecycle.anchors).
- Google (Admin SDK Directory API, User.name): givenName and familyName at most 60 characters,
  displayName 256; usernames at most 64 (Admin Help, support.google.com/a/answer/9193374). The
  Groups Settings API allows a group name of 75 characters, more than the 64 every registration
  group gets anyway. No length is documented for externalIds values or org unit names (only a
  depth of 35), so none is checked.

Registration groups and staff roles also name groups (`Reg 7K`), OUs and password-slip files, so
whatever the directories, they must be at most 64 characters (AD's cn and department) and free of
control characters and of the characters sAMAccountName forbids, `"/\\[]:;|=,+*?<>` (a-samaccountname;
AD groups are security principals with a sAMAccountName), which also covers the ones a DN must escape
and the `/` that would split an OU path or a file name.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace

from idlifecycle.feeds._spec import FeedResult
from idlifecycle.model import Person, RowError


@dataclass(frozen=True)
class Limit:
    """One directory attribute's maximum length, and the feed field whose value it holds."""

    field: str
    """The feed field: first_name, last_name, display_name, username, person_id, registration_group, roles."""
    attribute: str
    maximum: int


DIRECTORY_NAMES = {"ad": "Active Directory", "entra": "Entra ID", "google": "Google Workspace"}

LIMITS: dict[str, tuple[Limit, ...]] = {
    "ad": (
        Limit("first_name", "givenName", 64),
        Limit("last_name", "sn", 64),
        Limit("display_name", "displayName", 256),
        Limit("username", "sAMAccountName", 20),
        Limit("registration_group", "department", 64),
        Limit("roles", "title", 64),
    ),
    "entra": (
        Limit("first_name", "givenName", 64),
        Limit("last_name", "surname", 64),
        Limit("display_name", "displayName", 256),
        Limit("username", "mailNickname", 64),
        Limit("registration_group", "department", 64),
        Limit("roles", "jobTitle", 128),
    ),
    "google": (
        Limit("first_name", "givenName", 60),
        Limit("last_name", "familyName", 60),
        Limit("display_name", "displayName", 256),
        Limit("username", "username", 64),
    ),
}

MAX_GROUP_NAME_PART = 64
GROUP_NAME_FORBIDDEN = '"/\\[]:;|=,+*?<>'

_VALUES: dict[str, Callable[[Person], tuple[str, ...]]] = {
    "first_name": lambda person: (person.first_name,),
    "last_name": lambda person: (person.last_name,),
    "display_name": lambda person: (person.display_name,),
    "username": lambda person: (person.username,) if person.username else (),
    "person_id": lambda person: (person.person_id,),
    "registration_group": lambda person: (person.registration_group,) if person.registration_group else (),
    "roles": lambda person: person.roles,
}

_SOURCE_FIELDS = {
    "first_name": ("preferred_first_name", "legal_first_name"),
    "last_name": ("last_name",),
    "username": ("username",),
    "person_id": ("person_id",),
    "registration_group": ("registration_group",),
    "roles": ("roles",),
}
"""The feed fields a value comes from, to name the file's own header in the message."""


def check_lengths(
    result: FeedResult, directory_types: Collection[str], *, roles_name_groups: bool = True,
) -> FeedResult:
    """The feed without the people a configured directory would refuse, each with a row error.

    `directory_types` are the connector types of the job ("ad", "entra", "google"); others have no
    known limits and are ignored. Registration groups are checked as group names whatever the directories
    (they name groups and slip files); roles only when `roles_name_groups` (a group or OU template uses
    {role}): a role that only fills jobTitle may be "Head of Year/Pastoral".
    """
    limits = [(directory, limit) for directory in dict.fromkeys(directory_types) for limit in LIMITS.get(directory, ())]
    kept: list[Person] = []
    errors: list[RowError] = []
    for person in result.people:
        found = _group_name_errors(result, person, roles_name_groups) + _length_errors(result, person, limits)
        if found:
            errors += found
        else:
            kept.append(person)
    if not errors:
        return result
    return replace(result, people=tuple(kept), errors=result.errors + tuple(errors))


def _length_errors(result: FeedResult, person: Person, limits: list[tuple[str, Limit]]) -> list[RowError]:
    """One error per field: the strictest limit it breaks, naming that directory and attribute."""
    worst: dict[str, tuple[str, Limit, str]] = {}
    for directory, limit in limits:
        for value in _VALUES[limit.field](person):
            if len(value) > limit.maximum and (
                limit.field not in worst or limit.maximum < worst[limit.field][1].maximum
            ):
                worst[limit.field] = (directory, limit, value)
    errors = []
    for field_name, (directory, limit, value) in worst.items():
        what = "'" + value + "' " if len(value) <= 80 else ""
        errors.append(_error(
            result, person, field_name,
            f"{what}is {len(value)} characters long; {DIRECTORY_NAMES[directory]} allows at most "
            f"{limit.maximum} in {limit.attribute}",
        ))
    return errors


def _group_name_errors(result: FeedResult, person: Person, roles_name_groups: bool) -> list[RowError]:
    errors = []
    for field_name, values in (("registration_group", _VALUES["registration_group"](person)),
                               ("roles", person.roles if roles_name_groups else ())):
        what = "a registration group" if field_name == "registration_group" else "a role"
        for value in values:
            shown = "'" + value + "' " if len(value) <= 80 else ""
            control = next((char for char in value if unicodedata.category(char) == "Cc"), None)
            forbidden = sorted({char for char in value if char in GROUP_NAME_FORBIDDEN})
            if len(value) > MAX_GROUP_NAME_PART:
                message = (f"{shown}is {len(value)} characters long; {what} may have at most {MAX_GROUP_NAME_PART} "
                           "(it names groups, OUs and password-slip files)")
            elif control is not None:
                message = f"contains a control character (U+{ord(control):04X}); {what} names groups and files"
            elif forbidden:
                message = (f"{shown}contains {' '.join(forbidden)}, which group and file names cannot hold; "
                           f"rename {what[2:]} in the MIS")
            else:
                continue
            errors.append(_error(result, person, field_name, message))
    return errors


def _error(result: FeedResult, person: Person, field_name: str, message: str) -> RowError:
    file, _, line = person.source.rpartition(":")
    return RowError(file, int(line) if line.isdigit() else 0, _header(result, file, person, field_name), message,
                    person.person_id)


def _header(result: FeedResult, file: str, person: Person, field_name: str) -> str:
    """The file's own header for the field, as every other row error names it."""
    if field_name == "display_name":
        return "display_name"
    mapping = next((columns.mapping for columns in result.columns if columns.file == file), {})
    for source in _SOURCE_FIELDS[field_name]:
        if source == "preferred_first_name" and not person.preferred_first_name:
            continue
        if source in mapping:
            return mapping[source]
    return field_name
