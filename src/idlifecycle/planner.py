"""The planner: people + directory snapshots + remembered state -> an ordered Plan (pure, no I/O)."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cached_property
from operator import attrgetter

from idlifecycle.directory_plan import _PHASE, DirectoryPlanner, NoShareGroups, Roll, ShareGroupsLike, phase
from idlifecycle.dormant import DormantMark, disable_dormant
from idlifecycle.mapping import DesiredAccounts, MappingRules, Status
from idlifecycle.mapping import statuses as person_statuses
from idlifecycle.matching import base_usernames, expected_logins, match_accounts, privileged_notes
from idlifecycle.model import Account, Capabilities, Change, Person, Plan, Snapshot
from idlifecycle.naming import assign_usernames, reserved_clash

__all__ = [
    "_PHASE", "Held", "NoShareGroups", "PlanState", "ShareGroupsLike", "base_usernames", "choose_usernames",
    "expected_logins", "match_accounts", "normalise_id", "phase", "plan", "privileged_notes",
]
"""The planner's names as they were before it was split (the job, executor and tests import them from here)."""


@dataclass(frozen=True)
class PlanState:
    """What the store remembers that the directories cannot tell us."""

    person_usernames: Mapping[str, str] = field(default_factory=dict)
    """person_id -> the username the tool issued to them."""
    issued_usernames: Mapping[str, str] = field(default_factory=dict)
    """lower-cased username -> person_id, for every name ever issued (never reissued to someone else)."""
    disabled_on: Mapping[tuple[str, str], date] = field(default_factory=dict)
    """(directory, person_id) -> the day the tool disabled the account (starts the retention clock)."""
    dormant_marks: Mapping[tuple[str, str], DormantMark] = field(default_factory=dict)
    """(directory, person_id) -> the tool's last dormant disable of that account (a hand re-enable's grace)."""
    keep_active: Mapping[str, date] = field(default_factory=dict)
    """person_id -> the last day `people keep-active` keeps their accounts from a dormant disable."""


def normalise_id(person_id: str) -> str:
    """An MIS id as Excel and typists mangle it: leading zeros, case and spaces do not tell two people apart."""
    return person_id.strip().casefold().lstrip("0") or "0"


@dataclass(frozen=True)
class Held:
    """Feed rows that were refused this run: the people they describe are held, not left.

    A row we could not read says nothing reliable about its person, so their accounts are neither
    created, changed, disabled nor removed from a group until a later feed reads cleanly. A refused
    row without a readable id could be anyone, so while there is one, nobody is taken to have left
    merely by being absent from the feed (a leaving date in a valid row still counts).
    """

    rows: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """The id as written in the refused row -> its row errors (`file:line: field: message`)."""
    unidentified: tuple[str, ...] = ()
    """Row errors of refused rows that have no readable id."""
    listed: frozenset[str] = frozenset()
    """Ids the export still lists without a role the tool provisions (an SDS user without a roles.csv row):
    still named, so not a leaver; their accounts are left as they are rather than disabled."""

    @cached_property
    def listed_keys(self) -> frozenset[str]:
        return frozenset(normalise_id(person_id) for person_id in self.listed)

    @cached_property
    def keys(self) -> dict[str, str]:
        """normalise_id(id) -> the id as written."""
        return {normalise_id(person_id): person_id for person_id in self.rows}

    def holds(self, person_id: str | None) -> bool:
        # Asked for every account in every directory: most nights nobody is held, and then nothing is normalised.
        return person_id is not None and bool(self.keys) and normalise_id(person_id) in self.keys


_USERNAME = attrgetter("username")


def choose_usernames(
    people: Sequence[Person],
    active: Sequence[Person],
    matched: Mapping[str, Mapping[str, Account]],
    snapshots: Mapping[str, Snapshot],
    rules: MappingRules,
    state: PlanState,
    today: date,
    bases: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """One username per active person, the same in every directory; new names are never reissued ones.

    `bases` are `base_usernames`, when the caller has them already."""
    if bases is None:
        bases = base_usernames(active, rules, today)
    names: dict[str, str] = {}
    renaming: set[str] = set()
    needing: list[Person] = []
    found_in = list(matched.values())
    remembered = state.person_usernames
    renames_kinds = {kind for kind, kind_rules in rules.kinds.items() if kind_rules.rename_on_name_change}
    renames_extra = {kind for kind, kind_rules in rules.extra.items() if kind_rules.rename_on_name_change}
    for person in active:
        pid = person.person_id
        name: str | None = None
        if person.kind in renames_kinds if person.extra_kind is None else person.extra_kind in renames_extra:
            name = _kept_through_rename(pid, bases[pid], found_in, remembered, renaming)
        else:
            # The first directory that has the person's account names them (a loop, not a list a person: this
            # runs for everybody on roll, and nearly all of them keep the name they have).
            for accounts in found_in:
                account = accounts.get(pid)
                if account is not None:
                    name = account.username
                    break
            else:
                name = remembered.get(pid)
        if name is None:
            needing.append(person)  # in roll order, as they are named below
        else:
            names[pid] = name
            if pid in renaming:
                needing.append(person)
    taken = set(state.issued_usernames) | {n.lower() for n in names.values()}
    for snapshot in snapshots.values():
        taken.update(map(str.lower, map(_USERNAME, snapshot.accounts)))
        taken.update(map(str.lower, snapshot.names_outside_scope))
    wanted_too: list[Person] = []
    for person in needing:
        wanted = person.username if rules.use_feed_usernames else None
        if wanted and wanted.lower() not in taken and not reserved_clash(wanted, rules.naming.reserved):
            names[person.person_id] = wanted
            taken.add(wanted.lower())
        else:
            wanted_too.append(person)
    needing = wanted_too
    names.update(assign_usernames(needing, rules.naming, taken, today))
    return names


def _kept_through_rename(pid: str, base: str, found_in: Sequence[Mapping[str, Account]],
                         remembered: Mapping[str, str], renaming: set[str]) -> str | None:
    """The name a person of a kind renamed on a name change has now (None: no account anywhere and no name
    remembered); `pid` is added to `renaming` when no name they hold fits their name any more.

    A rename half made (one directory renamed, another not yet: a run given up on or killed) is finished with
    the name already issued to this person, not a third one.
    """
    held = [accounts[pid].username for accounts in found_in if pid in accounts]
    if pid in remembered:
        held.append(remembered[pid])
    if not held:
        return None
    stem = base.rstrip("0123456789")
    fitting = [n for n in held if n.rstrip("0123456789").startswith(stem)]
    if not fitting:
        renaming.add(pid)
    return (fitting or held)[0]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector held off while planning, and let run again after.

    The planner makes hundreds of thousands of acyclic values (indexes, desired accounts, changes) beside
    inputs of millions of objects; each time the allocations pass the collector's threshold it walks them all
    looking for cycles there are none of (measured: a third of a trust's planning time). Nothing is freed
    later than it would be anyway: refcounting frees what the planner drops, as always.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class _Night:
    """What one run knows of everybody before any directory is planned: read once, used by every directory."""

    rules: MappingRules
    state: PlanState
    today: date
    shares: ShareGroupsLike
    held: Held
    people: list[Person]
    statuses: dict[str, Status]
    by_id: dict[str, Person]
    active: list[Person]
    staying: set[str]
    desired_accounts: DesiredAccounts
    matched: dict[str, dict[str, Account]] = field(default_factory=dict)
    adopted: dict[str, set[str]] = field(default_factory=dict)
    blocked: dict[str, set[str]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    held_lines: dict[str, list[str]] = field(default_factory=dict)
    unidentified_waits: list[str] = field(default_factory=list)
    listed_waits: list[str] = field(default_factory=list)
    roll: list[Roll] = field(default_factory=list)
    """Each active person as every directory reads them: worked out once, not once a directory."""
    shape_count: int = 0


def _read_night(people: list[Person], snapshots: Mapping[str, Snapshot], rules: MappingRules, state: PlanState,
                today: date, shares: ShareGroupsLike, held: Held) -> _Night:
    """Statuses, each directory's matched accounts and privileged notes, and everybody's username."""
    statuses = person_statuses(people, rules, today)
    night = _Night(
        rules=rules, state=state, today=today, shares=shares, held=held, people=people, statuses=statuses,
        by_id={p.person_id: p for p in people},
        active=[p for p in people if statuses[p.person_id] is Status.ACTIVE],
        staying={pid for pid, found in statuses.items() if found is Status.ACTIVE or found is Status.FUTURE},
        held_lines={key: [] for key in held.rows}, desired_accounts=DesiredAccounts(rules),
    )
    bases = base_usernames(people, rules, today)
    logins = expected_logins(people, rules, today, bases)
    for directory, snapshot in snapshots.items():
        night.blocked[directory], found = privileged_notes(people, snapshot, rules, logins)
        night.notes.extend(found)
        night.matched[directory], night.adopted[directory], found = match_accounts(
            people, snapshot, rules, statuses, logins)
        night.notes.extend(found)
    night.names = names = choose_usernames(people, night.active, night.matched, snapshots, rules, state, today, bases)
    night.roll, night.shape_count = _roll(night.active, names, night.desired_accounts)
    return night


def _roll(active: Sequence[Person], names: Mapping[str, str],
          desired_accounts: DesiredAccounts) -> tuple[list[Roll], int]:
    """Each active person as every directory reads them, and how many shapes (kind, extra kind, year,
    registration group, roles: all `DesiredAccounts.shape` reads of a person) there are: hundreds of pupils
    share one, so each directory works out each shape's account once."""
    shape_ids: dict[tuple[object, ...], int] = {}
    domains: dict[tuple[object, ...], str] = {}  # a sign-in's domain per kind, as DesiredAccounts.login finds it
    for_person = desired_accounts.rules.for_person
    roll: list[Roll] = []
    for p in active:
        pid, name, extra_kind = p.person_id, names[p.person_id], p.extra_kind
        shape_id = shape_ids.setdefault((p.kind, extra_kind, p.year_group, p.registration_group, p.roles),
                                        len(shape_ids))
        domain = domains.get((p.kind, extra_kind))
        if domain is None:
            domain = domains[p.kind, extra_kind] = for_person(p).domain
        roll.append((p, pid, name, f"{name}@{domain}", p.first_name, p.last_name, p.display_name, shape_id))
    return roll, len(shape_ids)


@_collector_paused()  # a ContextDecorator: each call pauses the collector afresh
def plan(
    people: Sequence[Person],
    snapshots: Mapping[str, Snapshot],
    capabilities: Mapping[str, Capabilities],
    rules: MappingRules,
    state: PlanState,
    today: date,
    shares: ShareGroupsLike | None = None,
    held: Held | None = None,
) -> Plan:
    """Everything that must change so each directory matches the feed, each with its reason.

    People in `held` (their feed row was refused) are left exactly as they are in every directory.
    """
    shares = shares or NoShareGroups()
    held = held or Held()
    read_ids = {normalise_id(p.person_id) for p in people} if held.keys else set()
    people_count = len(people) + len(set(held.keys) - read_ids) + len(held.unidentified)
    readable = [p for p in people if not held.holds(p.person_id)] if held.keys else list(people)
    night = _read_night(readable, snapshots, rules, state, today, shares, held)
    changes: list[Change] = []
    for directory, snapshot in snapshots.items():
        changes.extend(_plan_directory(night, snapshot, capabilities[directory]))
    return Plan(
        changes=tuple(changes),
        fingerprints={d: s.fingerprint() for d, s in snapshots.items()},
        managed_counts={d: sum(1 for a in s.accounts if not a.privileged) for d, s in snapshots.items()},
        people_count=people_count,
        created_at=today.isoformat(),
        notes=tuple(night.notes),
        held=_held_report(held, night.held_lines, night.unidentified_waits, night.listed_waits),
    )


def _plan_directory(night: _Night, snapshot: Snapshot, caps: Capabilities) -> list[Change]:
    directory, held, matched_here = snapshot.directory, night.held, night.matched[snapshot.directory]
    planner = DirectoryPlanner(snapshot, caps, night.rules, night.shares, night.today)
    # Held accounts stay in the managed set (so restricted-group policing leaves them be) but get no changes.
    held_keys: set[str] = set()
    for person_id in [pid for pid in matched_here if held.holds(pid)] if held.keys else []:
        kept = matched_here.pop(person_id)
        held_keys.add(kept.key)
        night.held_lines[held.keys[normalise_id(person_id)]].append(f"{directory} {kept.username}")
    staying = night.staying
    leaving = [(pid, account) for pid, account in matched_here.items() if pid not in staying]
    _plan_active(night, planner, snapshot, caps, leaving)
    _plan_leavers(night, planner, directory, leaving)
    if planner.restricted:
        # Every matched account is managed, the held and the leavers left waiting too: the set is made only
        # where there is a restricted group to police (a school without restricted shares has none).
        planner.police_restricted({account.key for account in matched_here.values()} | held_keys)
    if not any(kind.dormant_days for kind in [*night.rules.kinds.values(), *night.rules.extra.values()]):
        return planner.finish()
    on_roll = {p.person_id for p in night.active} - night.blocked[directory]
    changes, found = disable_dormant(planner.finish(), snapshot, {
        pid: (account, night.rules.for_person(night.by_id[pid]))
        for pid, account in matched_here.items() if pid in on_roll}, night.today,
        {pid: mark for (d, pid), mark in night.state.dormant_marks.items() if d == directory}, night.state.keep_active)
    night.notes.extend(found)
    return changes


def _not_already_so(night: _Night, planner: DirectoryPlanner, directory: str,
                    caps: Capabilities) -> list[tuple[Person, Account | None]]:
    """The people on roll whose account here may need a change (or is missing), in roll order.

    A quick look first (`DirectoryPlanner.may_change`): on an ordinary night nearly every account is already as
    desired, and working out and comparing a whole desired account for each of them was most of the planning.
    """
    share_groups = night.shares.desired
    looked_at = night.adopted[directory] | {pid for pid, wanted in share_groups.items() if wanted.get(directory)}
    return planner.may_change(night.roll, night.matched[directory], night.blocked[directory], looked_at,
                              lambda person: night.desired_accounts.shape(person, caps), night.shape_count)


def _plan_active(night: _Night, planner: DirectoryPlanner, snapshot: Snapshot, caps: Capabilities,
                 leaving: Sequence[tuple[str, Account]]) -> None:
    """Each person on roll: their account created, or brought to what the mapping says."""
    directory = snapshot.directory
    needing = _not_already_so(night, planner, directory, caps)
    adopted_here = night.adopted[directory]
    # The memberships of just the accounts that may change: these, and the leavers' (planned next).
    planner.index_members({account.key for _, account in needing if account is not None}
                          | {account.key for _, account in leaving})
    account_for, share_groups, names, notes = night.desired_accounts.account, night.shares.desired, night.names, \
        night.notes
    for person, account in needing:
        pid = person.person_id
        desired = account_for(person, names[pid], directory, caps)
        extra = share_groups.get(pid, {}).get(directory, frozenset()) if share_groups else frozenset()
        if extra:
            desired = replace(desired, groups=desired.groups | extra)
        if account is None:
            planner.create(desired, person)
            continue
        if account.synced_from_on_premises and caps.hybrid:
            notes.append(f"{directory}: {account.login} is synced from on-premises AD: only cloud groups "
                         "and sessions are managed here")
        planner.update(desired, account, person, pid in adopted_here)


def _plan_leavers(night: _Night, planner: DirectoryPlanner, directory: str,
                  leaving: Sequence[tuple[str, Account]]) -> None:
    """Each matched account whose person is not staying: disabled, moved and deleted in time, unless they may
    still be on roll (named in the export without a role, or possibly one of the unreadable rows)."""
    held, by_id = night.held, night.by_id
    for person_id, account in leaving:
        if person_id not in by_id and normalise_id(person_id) in held.listed_keys:
            night.listed_waits.append(f"{directory} {account.username} ({person_id})")
            continue
        if person_id not in by_id and held.unidentified:
            night.unidentified_waits.append(f"{directory} {account.username} ({person_id})")
            continue
        planner.leave(account, by_id.get(person_id), night.state.disabled_on.get((directory, person_id)),
                      adopted=person_id in night.adopted[directory])


def _held_report(held: Held, accounts: Mapping[str, Sequence[str]], waiting: Sequence[str],
                 listed: Sequence[str]) -> tuple[str, ...]:
    """One line per held person (what was left alone, and the row error), then the absentees left waiting."""
    lines = []
    for key, errors in sorted(held.rows.items()):
        kept = ", ".join(accounts.get(key, ())) or "no account yet, none created"
        lines.append(f"{key}: left as they are ({kept}): {'; '.join(errors)}")
    if waiting:
        lines.append(
            f"not in the feed, but not disabled because {len(held.unidentified)} refused row(s) have no readable "
            f"id and could be them: {', '.join(waiting)}"
        )
    if listed:
        lines.append("listed in the export without a pupil or staff role, so not taken to have left; give them "
                     f"their role again in the MIS, or end it with a leaving date: {', '.join(listed)}")
    return tuple(lines)
