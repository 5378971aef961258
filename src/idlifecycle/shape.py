"""Guards on the shape of the feed and of the plan (pure): what a bad export looks like before it does harm.

The destructive guard counts disables and deletes. A bad export does harm in quieter ways too, and
each rule here stops the run (or, for the feed's columns, fails it) naming what looks wrong:

- **Columns are a contract.** A column that was read on the last good run and is missing now (a report
  edited in the MIS, "Reg" renamed "Registration") would empty that field for everybody; a column the
  mapping needs (registration group, leaving date, year group, role) must be there unless the job file
  says the export has none (`absent = [...]`).
- **Leading zeros lost.** Excel turns 000231 into 231 when a CSV is opened and saved: every pupil would
  look like a leaver and a starter at once.
- **A lost group.** A year group, registration group or staff role that had people on the last good run
  and has none now (or lost most of them) is a missing part of the export far more often than a real
  event; when it is real (the July leavers) a person confirms it with `--allow-destructive`.
- **Removals and attribute changes.** Removals from ordinary groups and changes of one attribute for a
  large part of a directory are counted per group and per directory, except around the roll-over day
  when every pupil moves up.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

from idlifecycle.guards import GuardLimits
from idlifecycle.mapping import MappingRules, Status, expand_template, status, template_values
from idlifecycle.model import Action, Change, Kind, Person, RowError
from idlifecycle.naming import year_label

DIMENSIONS = {"year_group": "year group", "registration_group": "registration group", "role": "staff role"}


class ColumnsLike(Protocol):
    """What a feed reports about one file's columns (feeds.FeedColumns)."""

    @property
    def file(self) -> str: ...

    @property
    def kind(self) -> str | None: ...

    @property
    def mapping(self) -> Mapping[str, str]: ...

    @property
    def absent(self) -> tuple[str, ...]: ...

    @property
    def feed(self) -> str: ...


def _uses(rules: MappingRules, kind: Kind, name: str) -> bool:
    kind_rules = rules.kinds.get(kind)
    if kind_rules is None:
        return False
    templates = [kind_rules.container, *kind_rules.groups, *kind_rules.attributes.values()]
    return any("{" + name + "}" in template for template in templates)


def names_groups(rules: MappingRules, name: str) -> bool:
    """Whether a feed field ({role}, {registration_group}) names a group or an OU for some kind."""
    return any(
        "{" + name + "}" in template
        for kind_rules in rules.kinds.values()
        for template in (kind_rules.container, *kind_rules.groups)
    )


def needed_fields(rules: MappingRules, kind: Kind) -> tuple[str, ...]:
    """The fields a file of this kind must have for the mapping to work as the school set it up.

    The leaving date is always needed: without it a leaver is only noticed once dropped from the export.
    """
    fields = ["leave_date"]
    if kind is Kind.PUPIL:
        fields.append("year_group")
        if _uses(rules, kind, "registration_group"):
            fields.append("registration_group")
    elif rules.role_groups or _uses(rules, kind, "role"):
        fields.append("roles")
    return tuple(fields)


def column_problems(
    columns: Sequence[ColumnsLike], rules: MappingRules, previous: Mapping[str, Sequence[str]] | None,
) -> list[str]:
    """Why the feed's columns cannot be trusted: a column lost since the last good run, or one the mapping needs."""
    problems: list[str] = []
    feeds: dict[str, list[ColumnsLike]] = {}
    for file in columns:
        feeds.setdefault(file.feed or file.file, []).append(file)
    for files in feeds.values():
        problems += _needed_missing(files, rules)
    for file in columns:
        declared = set(file.absent)
        before = previous.get(file.file, ()) if previous else ()
        for name in sorted(set(before) - set(file.mapping) - declared):
            problems.append(
                f"{file.file}: the column for {name} was read on the last good run and is missing now "
                f"(columns now: {', '.join(sorted(file.mapping.values()))}); was the report changed in the MIS? "
                f"Restore it, or name the new header with columns.{name} in the job file"
            )
    return list(dict.fromkeys(problems))


def _needed_missing(files: Sequence[ColumnsLike], rules: MappingRules) -> list[str]:
    """The fields the mapping needs that none of one feed's files has (for the kinds those files list).

    A field is the feed's when any file of it that lists the kind has it: SDS v2.1 keeps the year
    group, role and leaving date in roles.csv, beside the names in users.csv.
    """
    problems: list[str] = []
    kinds = [kind for kind in rules.kinds
             if any(file.kind is None or Kind(file.kind) is kind for file in files)]
    for kind in kinds:
        listing = [file for file in files if file.kind is None or Kind(file.kind) is kind]
        present = {name for file in listing for name in file.mapping}
        declared = {name for file in listing for name in file.absent}
        where = listing[0].file if len(listing) == 1 else (
            f"{listing[0].feed} ({', '.join(Path(file.file).name for file in listing)})")
        for name in needed_fields(rules, kind):
            if name not in present and name not in declared:
                problems.append(
                    f"{where}: no column for {name}, which the mapping needs for {kind} accounts; "
                    f"add it to the export, name its header with columns.{name}, or, if the export really "
                    f"has none, say so with absent = [\"{name}\"] in the feed's entry in the job file"
                )
    return problems


def columns_profile(columns: Iterable[ColumnsLike]) -> dict[str, list[str]]:
    """file -> the fields read from it, as kept for the next run's column check."""
    return {file.file: sorted(file.mapping) for file in columns}


PRIVILEGED_GROUP_NAMES = frozenset({
    "domain admins", "enterprise admins", "schema admins", "administrators", "account operators",
    "server operators", "backup operators", "print operators", "group policy creator owners", "key admins",
    "enterprise key admins", "dnsadmins", "cert publishers", "domain controllers", "read-only domain controllers",
    "protected users", "remote desktop users", "remote management users", "global administrators",
})
"""Groups that confer administrative rights (AD's protected groups, and the like elsewhere), by English name."""

FEED_FIELDS = ("registration_group", "role", "year", "year_group")
"""Template fields filled from the feed: a group named from them is named, in part, by whoever typed the MIS."""


def group_key(name: str) -> str:
    """A group name as compared for collisions: "Share-SEN-Restricted", "share sen restricted" and the
    full-width "Ｓｈａｒｅ-SEN-Restricted" agree (NFKC first: directories compare some names width-blind)."""
    return "".join(char for char in unicodedata.normalize("NFKC", name).casefold() if char.isalnum())


def protected_group_rows(
    people: Sequence[Person], rules: MappingRules, share_groups: Iterable[str],
) -> list[RowError]:
    """Rows whose feed values would name a share's access group or a privileged group: refused, so held.

    A mapping such as groups = ["{registration_group}"] lets the MIS name a group; a Reg Group typed as a
    restricted share's group name would otherwise give a whole class the SIRO's restricted access.
    """
    protected = {group_key(name): name for name in (*PRIVILEGED_GROUP_NAMES, *share_groups)}
    errors: list[RowError] = []
    for person in people:
        kind_rules = rules.kinds.get(person.kind)
        if kind_rules is None:
            continue
        values = template_values(person)
        for template in kind_rules.groups:
            fields = [name for name in FEED_FIELDS if "{" + name + "}" in template]
            name = expand_template(template, values) if fields else None
            clash = protected.get(group_key(name)) if name else None
            if clash is None:
                continue
            file, _, line = person.source.rpartition(":")
            errors.append(RowError(
                file or person.source, int(line) if line.isdigit() else 0, fields[0],
                f"'{values[fields[0]]}' would make the group name '{name}', which is the protected group "
                f"'{clash}' (a share's access group or an administrative group); refused",
                person.person_id,
            ))
    return errors


def lost_leading_zeros(feed_ids: Iterable[str], known_ids: Iterable[str]) -> list[tuple[str, str]]:
    """(id we know, id in the feed) pairs where the feed's id is ours without its leading zeros.

    Only ids the feed does not also carry in full count: a school may have both 231 and 000231.
    """
    feed = set(feed_ids)
    known = set(known_ids)
    by_stripped: dict[str, str] = {}
    for person_id in known:
        stripped = person_id.lstrip("0")
        if stripped != person_id and stripped and person_id not in feed:
            by_stripped[stripped] = person_id
    return sorted((by_stripped[pid], pid) for pid in feed if pid in by_stripped and pid not in known)


def leading_zero_problem(pairs: Sequence[tuple[str, str]]) -> str:
    examples = ", ".join(f"{known} in the store, {found} in the feed" for known, found in pairs[:3])
    more = f" and {len(pairs) - 3} more" if len(pairs) > 3 else ""
    return (
        f"the export seems to have lost leading zeros: {examples}{more}; a spreadsheet drops them when a CSV is "
        "opened and saved. Export it again from the MIS (or format the id column as text) and rerun; nothing "
        "was changed"
    )


@dataclass(frozen=True)
class FeedShape:
    """How many people of the feed, not yet left, are in each year group, registration group and role."""

    counts: Mapping[str, Mapping[str, int]]
    """dimension -> value -> people."""
    leaving: Mapping[str, Mapping[str, int]]
    """dimension -> value -> people in the feed whose leaving date has been reached."""

    def to_json(self) -> dict[str, dict[str, int]]:
        return {dim: dict(values) for dim, values in self.counts.items()}


def feed_shape(people: Sequence[Person], rules: MappingRules, today: date) -> FeedShape:
    counts: dict[str, Counter[str]] = {dim: Counter() for dim in DIMENSIONS}
    leaving: dict[str, Counter[str]] = {dim: Counter() for dim in DIMENSIONS}
    for person in people:
        kind_rules = rules.kinds.get(person.kind)
        if kind_rules is None:
            continue
        values = {
            "year_group": [person.year_group] if person.year_group else [],
            "registration_group": [person.registration_group] if person.registration_group else [],
            "role": list(dict.fromkeys(person.roles)),
        }
        target = leaving if status(person, kind_rules, today) is Status.LEFT else counts
        for dim, found in values.items():
            for value in found:
                target[dim][value] += 1
    return FeedShape({d: dict(c) for d, c in counts.items()}, {d: dict(c) for d, c in leaving.items()})


def in_rollover(today: date, limits: GuardLimits) -> bool:
    """Whether today is within the roll-over window, when every pupil moves up a year."""
    if not limits.rollover_day:
        return False
    month, day = (int(part) for part in limits.rollover_day.split("-"))
    window = timedelta(days=limits.rollover_window_days)
    for year in (today.year - 1, today.year, today.year + 1):
        try:
            day_in_year = date(year, month, day)
        except ValueError:  # 02-29 in a year without one
            continue
        if abs(day_in_year - today) <= window:
            return True
    return False


def _label(dim: str, value: str) -> str:
    return year_label(value) if dim == "year_group" else value


def shape_reasons(
    previous: Mapping[str, Mapping[str, int]] | None, shape: FeedShape, limits: GuardLimits, today: date,
    allowed: int = 0,
) -> list[str]:
    """Groups of the feed (year, registration group, staff role) that emptied or lost most of their people."""
    if not previous:
        return []
    rollover = in_rollover(today, limits)
    reasons: list[str] = []
    for dim, noun in DIMENSIONS.items():
        # Registration groups are renamed at the roll-over (7A becomes 8A): only year groups are checked then.
        if rollover and dim == "registration_group":
            continue
        now_counts = shape.counts.get(dim, {})
        for value, before in sorted(previous.get(dim, {}).items()):
            now = now_counts.get(value, 0)
            lost = before - now
            if lost <= allowed or lost <= 0:
                continue
            emptied = now == 0 and before >= limits.group_floor
            shrank = lost > limits.percent_floor and 100.0 * lost / before > limits.max_group_drop_percent
            if not (emptied or shrank):
                continue
            left = min(shape.leaving.get(dim, {}).get(value, 0), lost)
            why = f"{left} reached their leaving date, {lost - left} are missing from the feed"
            what = "none now" if now == 0 else f"{now} now ({100.0 * lost / before:.0f}% fewer)"
            reasons.append(
                f"{noun} {_label(dim, value)}: {before} on the last good run, {what} ({why}); if that is right "
                f"(e.g. the July leavers), rerun with --allow-destructive {lost}, else check the MIS export"
            )
    return reasons


def change_reasons(
    changes: Sequence[Change], group_sizes: Mapping[tuple[str, str], int], managed_counts: Mapping[str, int],
    limits: GuardLimits, today: date, *, first_run: bool, allowed: int = 0,
) -> list[str]:
    """Removals from ordinary groups and changes of one attribute that are too many for one night.

    Restricted groups are not counted here: removal from them is destructive and guarded as such.
    Around the roll-over day every pupil changes year, OU and groups, so only the destructive guard holds then.
    """
    if in_rollover(today, limits) or first_run:
        # The first run adopts a directory nobody kept in step with the MIS: its groups and attributes are
        # expected to change wholesale, and only the destructive guard holds then.
        return []
    reasons: list[str] = []
    leaving = {(c.directory, c.target) for c in changes
               if c.action is Action.DISABLE or (c.action is Action.MOVE and c.after.get("leaver"))}
    removals: Counter[tuple[str, str]] = Counter()
    staying_removals: Counter[str] = Counter()
    for change in changes:
        if change.action is Action.REMOVE_MEMBER and not change.restricted and change.group:
            removals[(change.directory, change.group)] += 1
            if (change.directory, change.target) not in leaving:
                staying_removals[change.directory] += 1
    for (directory, group), count in sorted(removals.items()):
        size = group_sizes.get((directory, group), 0)
        if count <= allowed or count <= limits.percent_floor or not size:
            continue
        if 100.0 * count / size > limits.max_group_removal_percent:
            reasons.append(
                f"{directory}: {count} of the {size} members of {group} would be removed "
                f"({100.0 * count / size:.0f}%, over the limit of {limits.max_group_removal_percent:g}%); "
                f"review the plan, then rerun with --allow-destructive {count}"
            )
    for directory, count in sorted(staying_removals.items()):
        if count > allowed and count > limits.max_destructive:
            reasons.append(
                f"{directory}: {count} group memberships of people who are not leaving would be removed, over the "
                f"limit of {limits.max_destructive}; review the plan, then rerun with --allow-destructive {count}"
            )
    changed: dict[str, Counter[str]] = defaultdict(Counter)
    for change in changes:
        for name in _changed_attributes(change):
            changed[change.directory][name] += 1
    for directory, by_name in sorted(changed.items()):
        managed = managed_counts.get(directory, 0)
        for name, count in sorted(by_name.items()):
            if not managed or count <= allowed or count <= limits.percent_floor:
                continue
            percent = 100.0 * count / managed
            if percent > limits.max_attribute_change_percent:
                reasons.append(
                    f"{directory}: {name} would change for {count} of {managed} accounts ({percent:.0f}%, over the "
                    f"limit of {limits.max_attribute_change_percent:g}% outside the roll-over); review the plan, "
                    f"then rerun with --allow-destructive {count}"
                )
    return reasons


def _changed_attributes(change: Change) -> list[str]:
    """The attributes a change replaces (not ones it fills in for the first time)."""
    if change.action is Action.MOVE and not change.after.get("leaver") and change.before.get("container"):
        return ["OU"]
    if change.action is not Action.UPDATE:
        return []
    names = [name for name in ("given_name", "surname", "display_name") if change.before.get(name)]
    before_attrs: Mapping[str, Any] = change.before.get("attributes") or {}
    names += [name for name in (change.after.get("attributes") or {}) if before_attrs.get(name)]
    return names
