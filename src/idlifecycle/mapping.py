"""Person -> the accounts they should have: lifecycle status, OU, groups, licences (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

from idlifecycle.model import Capabilities, DesiredAccount, Kind, Person
from idlifecycle.naming import NamingRules, ascii_display, year_label


class Status(StrEnum):
    ACTIVE = "active"
    FUTURE = "future"
    """A starter whose account is not due yet."""
    LEFT = "left"


@dataclass(frozen=True)
class KindRules:
    """How one kind of person (staff or pupil) becomes accounts."""

    domain: str
    container: str = ""
    """Template of the neutral OU path, e.g. "Pupils/{year}"; fields: year, year_group, registration_group, role."""
    groups: tuple[str, ...] = ()
    """Group name templates; a group whose template refers to an empty field is skipped."""
    licences: tuple[str, ...] = ()
    """Licence groups (Entra group-based licensing); only in directories that license by group."""
    attributes: Mapping[str, str] = field(default_factory=dict)
    create_days_before_start: int = 14
    grace_days: int = 0
    retention_days: int = 270
    licence_kept_days: int = 0
    """Days after the disable that a leaver stays in the licence groups (0: out at the disable). Exchange Online
    disconnects a mailbox when its licence goes and keeps it only 30 days, so a school that keeps staff mail for
    the retention period sets this to retention_days (or more): the licence then goes with the delete."""
    licence_kept_days_in: Mapping[str, int] = field(default_factory=dict)
    """Directory (connector name) -> its own licence_kept_days (`[<kind>.directories.<name>]`): one tenant may
    keep a leaver's mailbox for the retention period while another (a trust's second tenant) drops it at once."""
    leavers_container: str = "Leavers"
    rename_on_name_change: bool = False
    match: tuple[str, ...] = ("email",)
    """How a first run finds existing accounts with no anchor: "login" (the sign-in the naming convention
    gives), "email" (the MIS email), "username" (the feed's username), "employee_number"."""
    max_days: int | None = None
    """Extra kinds only: the longest an extra person's end date may be after their start."""
    dormant_days: int | None = None
    """Disable an active person's account nobody has signed in to for this many days (`dormant`); None: off."""
    dormant_exempt_groups: tuple[str, ...] = ()
    """Members of these groups are never disabled as dormant."""
    warn_days_before_end: int = 0
    """Extra kinds only: how many days before the end date the sponsor is told (0: not told)."""

    def licence_days(self, directory: str) -> int:
        """licence_kept_days in this directory: its own where the mapping sets one, else the kind's."""
        return self.licence_kept_days_in.get(directory, self.licence_kept_days)


@dataclass(frozen=True)
class MappingRules:
    kinds: Mapping[Kind, KindRules]
    naming: NamingRules
    role_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Staff role (case-insensitive) -> extra groups."""
    use_feed_usernames: bool = False
    extra: Mapping[str, KindRules] = field(default_factory=dict)
    """Kinds of people outside the MIS ([extra.supply], [extra.governor] …) -> their rules."""
    extra_base: Mapping[str, Kind] = field(default_factory=dict)
    """Each extra kind's feed kind (staff or pupil), which the rest of the model knows them by."""

    def for_person(self, person: Person) -> KindRules:
        """The rules for this person: their extra kind's when they have one, else their feed kind's."""
        if person.extra_kind is not None:
            return self.extra[person.extra_kind]
        return self.kinds[person.kind]


def statuses(people: Iterable[Person], rules: MappingRules, today: date) -> dict[str, Status]:
    """person_id -> `status` for everyone, with each kind's two cut-off days worked out once, not once a
    person (a trust's night asks for 100,000)."""
    def cutoffs(k: KindRules) -> tuple[date, date]:
        return today - timedelta(days=k.grace_days), today + timedelta(days=k.create_days_before_start)

    by_kind = {kind: cutoffs(k) for kind, k in rules.kinds.items()}
    by_extra = {extra: cutoffs(k) for extra, k in rules.extra.items()}
    found: dict[str, Status] = {}
    for person in people:
        left_by, starts_after = by_kind[person.kind] if person.extra_kind is None else by_extra[person.extra_kind]
        leave, start = person.leave_date, person.start_date
        # The same tests as `status`: today >= leave + grace, today < start - days before.
        found[person.person_id] = (Status.LEFT if leave is not None and leave <= left_by
                                   else Status.FUTURE if start is not None and start > starts_after
                                   else Status.ACTIVE)
    return found


def status(person: Person, rules: KindRules, today: date) -> Status:
    if person.leave_date is not None and today >= person.leave_date + timedelta(days=rules.grace_days):
        return Status.LEFT
    if person.start_date is not None and today < person.start_date - timedelta(days=rules.create_days_before_start):
        return Status.FUTURE
    return Status.ACTIVE


def template_values(person: Person) -> dict[str, str]:
    return {
        "year": year_label(person.year_group),
        "year_group": person.year_group or "",
        "registration_group": person.registration_group or "",
        "role": person.roles[0] if person.roles else "",
        "kind": str(person.kind),
    }


def expand_template(template: str, values: Mapping[str, str]) -> str | None:
    """The template filled in, or None when a field it uses is empty (so "Reg {registration_group}" is skipped)."""
    try:
        text = template.format(**values)
    except KeyError:
        return None
    used = [name for name in values if "{" + name + "}" in template]
    if any(not values[name] for name in used):
        return None
    return text.strip()


def desired_groups(person: Person, rules: MappingRules, capabilities: Capabilities) -> frozenset[str]:
    kind_rules = rules.for_person(person)
    values = template_values(person)
    names = {g for g in (expand_template(t, values) for t in kind_rules.groups) if g}
    for role in person.roles:
        for role_name, groups in rules.role_groups.items():
            if role_name.lower() == role.lower():
                names.update(groups)
    if capabilities.licence_groups:
        names.update(kind_rules.licences)
    return frozenset(names)


def desired_account(
    person: Person, username: str, directory: str, capabilities: Capabilities, rules: MappingRules
) -> DesiredAccount:
    return DesiredAccounts(rules).account(person, username, directory, capabilities)


class DesiredAccounts:
    """`desired_account` for a whole roll.

    A person's OU, attributes and groups follow from their kind, year, registration group and roles, which
    hundreds of pupils share; each combination's templates are expanded once per run, not per person and
    directory (100,000 people in three directories would otherwise expand three million templates).
    """

    def __init__(self, rules: MappingRules) -> None:
        self.rules = rules
        self._shapes: dict[tuple[object, ...], tuple[str, dict[str, str], frozenset[str]]] = {}

    def shape(self, person: Person, capabilities: Capabilities) -> tuple[str, dict[str, str], frozenset[str]]:
        """The OU, attributes and groups of the person's account in a directory with these capabilities."""
        # Everything template_values and desired_groups read from the person and the directory.
        key = (person.kind, person.extra_kind, person.year_group, person.registration_group, person.roles,
               capabilities.containers, capabilities.licence_groups)
        shape = self._shapes.get(key)
        if shape is None:
            kind_rules = self.rules.for_person(person)
            values = template_values(person)
            container = (expand_template(kind_rules.container, values) or "") if capabilities.containers else ""
            attributes = {k: v for k, v in ((k, expand_template(t, values)) for k, t in kind_rules.attributes.items())
                          if v}
            shape = self._shapes[key] = (container, attributes, desired_groups(person, self.rules, capabilities))
        return shape

    def login(self, person: Person, username: str) -> str:
        return f"{username}@{self.rules.for_person(person).domain}"

    def account(self, person: Person, username: str, directory: str, capabilities: Capabilities) -> DesiredAccount:
        container, attributes, groups = self.shape(person, capabilities)
        return DesiredAccount(
            directory=directory,
            person_id=person.person_id,
            kind=person.kind,
            username=username,
            login=self.login(person, username),
            given_name=person.first_name,
            surname=person.last_name,
            display_name=person.display_name,
            container=container,
            groups=groups,
            attributes=attributes,
        )


def leavers_container(person_kind: Kind | None, rules: MappingRules) -> str:
    if person_kind is None:
        return "Leavers"
    return rules.kinds[person_kind].leavers_container


__all__ = [
    "DesiredAccounts", "KindRules", "MappingRules", "Status", "ascii_display", "desired_account", "leavers_container",
    "status",
]
