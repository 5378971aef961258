"""The planner: people + directory snapshots + remembered state -> an ordered Plan (pure, no I/O)."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import cached_property
from typing import Any, Protocol

from idlifecycle.mapping import DesiredAccounts, MappingRules, Status, status
from idlifecycle.model import Account, Action, Capabilities, Change, DesiredAccount, Group, Kind, Person, Plan, Snapshot
from idlifecycle.naming import assign_usernames, base_username, reserved_clash


@dataclass(frozen=True)
class PlanState:
    """What the store remembers that the directories cannot tell us."""

    person_usernames: Mapping[str, str] = field(default_factory=dict)
    """person_id -> the username the tool issued to them."""
    issued_usernames: Mapping[str, str] = field(default_factory=dict)
    """lower-cased username -> person_id, for every name ever issued (never reissued to someone else)."""
    disabled_on: Mapping[tuple[str, str], date] = field(default_factory=dict)
    """(directory, person_id) -> the day the tool disabled the account (starts the retention clock)."""


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


class ShareGroupsLike(Protocol):
    """Share access groups from the access module: extra desired memberships and restricted groups."""

    @property
    def desired(self) -> Mapping[str, Mapping[str, frozenset[str]]]: ...

    @property
    def restricted(self) -> Mapping[str, frozenset[str]]: ...

    @property
    def managed(self) -> Mapping[str, frozenset[str]]: ...


@dataclass(frozen=True)
class NoShareGroups:
    desired: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)
    restricted: Mapping[str, frozenset[str]] = field(default_factory=dict)
    managed: Mapping[str, frozenset[str]] = field(default_factory=dict)


_PHASE = {
    Action.CREATE_GROUP: 0, Action.CREATE: 1, Action.ADOPT: 1, Action.ENABLE: 2, Action.RENAME: 3,
    Action.UPDATE: 3, Action.MOVE: 4, Action.ADD_MEMBER: 5, Action.REMOVE_MEMBER: 6, Action.SET_PASSWORD: 7,
    Action.REQUIRE_PASSWORD_CHANGE: 7, Action.REVOKE_SESSIONS: 7, Action.DISABLE: 8, Action.DELETE: 10,
}


def phase(change: Change) -> int:
    # A leaver is disabled before being moved out of sight into the leavers OU.
    if change.action is Action.MOVE and change.after.get("leaver"):
        return 9
    return _PHASE[change.action]


def _d(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def _update_reason(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """"name changed in the MIS", or what changed: "department: Year 10 -> Year 11"."""
    if {"given_name", "surname", "display_name"} & set(after):
        return "name changed in the MIS"
    changed = after.get("attributes", {})
    was = before.get("attributes", {})
    return "; ".join(f"{k}: {was.get(k) or '(none)'} -> {v}" for k, v in sorted(changed.items())) or \
        "details changed in the MIS"


def _match_rule(rule: str, person: Person, account: Account, expected_login: str | None) -> bool:
    if rule == "login":
        return expected_login is not None and account.login.lower() == expected_login
    if rule == "email":
        return bool(person.email) and account.login.lower() == (person.email or "").lower()
    if rule == "username":
        return bool(person.username) and account.username.lower() == (person.username or "").lower()
    if rule == "employee_number":
        return account.attributes.get("employeeNumber") in {person.person_id, person.upn}
    return False


class _Unanchored:
    """Accounts with no anchor, by what each match rule compares, so a first run does not compare every
    person with every account. `candidates` may return more than match; `_match_rule` still decides."""

    def __init__(self, accounts: Sequence[Account]) -> None:
        self.by_login: dict[str, list[Account]] = {}
        self.by_username: dict[str, list[Account]] = {}
        self.by_employee_number: dict[str | None, list[Account]] = {}
        for account in accounts:
            self.by_login.setdefault(account.login.lower(), []).append(account)
            self.by_username.setdefault(account.username.lower(), []).append(account)
            self.by_employee_number.setdefault(account.attributes.get("employeeNumber"), []).append(account)

    def candidates(self, rule: str, person: Person, expected_login: str | None) -> list[Account]:
        """In the accounts' order (by key), as the rules are tried."""
        if rule == "login":
            return self.by_login.get(expected_login or "", [])
        if rule == "email":
            return self.by_login.get((person.email or "").lower(), [])
        if rule == "username":
            return self.by_username.get((person.username or "").lower(), [])
        if rule == "employee_number":
            numbers = {person.person_id, person.upn}
            return sorted((a for n in numbers for a in self.by_employee_number.get(n, [])), key=lambda a: a.key)
        return []


def base_usernames(people: Sequence[Person], rules: MappingRules, today: date) -> dict[str, str]:
    """person_id -> the username the naming convention gives them before any collision suffix."""
    naming = rules.naming
    return {person.person_id: base_username(person, naming, today) for person in people}


def expected_logins(people: Sequence[Person], rules: MappingRules, today: date,
                    bases: Mapping[str, str] | None = None) -> dict[str, str]:
    """person_id -> the sign-in the naming convention gives them, for the "login" match rule.

    People who share a base name (two James Smiths in one intake) get none: which of them owns an
    existing "19jsmith" cannot be told from the name, so neither is adopted by it. `bases` are
    `base_usernames`, when the caller has them already.
    """
    if bases is None:
        bases = base_usernames(people, rules, today)
    domains = {kind: kind_rules.domain for kind, kind_rules in rules.kinds.items()}
    logins: dict[str, str] = {}
    for person in people:
        logins[person.person_id] = f"{bases[person.person_id]}@{domains[person.kind]}".lower()
    counts = Counter(logins.values())
    return {pid: login for pid, login in logins.items() if counts[login] == 1}


def match_accounts(
    people: Sequence[Person], snapshot: Snapshot, rules: MappingRules, statuses: Mapping[str, Status],
    logins: Mapping[str, str] | None = None,
) -> tuple[dict[str, Account], set[str], list[str]]:
    """person_id -> account (by anchor, else by the kind's match rules), the adopted ids, and notes.

    A privileged account is never matched, by its anchor or otherwise: it is noted and left alone
    (see `privileged_notes`), and the person it is anchored to gets no account planned here.
    """
    logins = logins or {}
    notes: list[str] = []
    matched: dict[str, Account] = {}
    for account in sorted(snapshot.accounts, key=lambda a: a.key):
        if account.anchor is None or account.privileged:
            continue
        if account.anchor in matched:
            notes.append(
                f"{snapshot.directory}: {account.login} carries the anchor {account.anchor} which "
                f"{matched[account.anchor].login} carries too; left unchanged"
            )
            continue
        matched[account.anchor] = account
    unanchored = sorted((a for a in snapshot.accounts if a.anchor is None and not a.privileged),
                        key=lambda a: a.key)
    index = _Unanchored(unanchored)
    adopted: set[str] = set()
    claimed: set[str] = set()
    for person in people:
        # Leavers the feed still names are matched too, so their old accounts get disabled.
        if person.person_id in matched or statuses[person.person_id] is Status.FUTURE:
            continue
        for rule in rules.kinds[person.kind].match:
            found = [a for a in index.candidates(rule, person, logins.get(person.person_id))
                     if a.key not in claimed and _match_rule(rule, person, a, logins.get(person.person_id))]
            if len(found) == 1:
                matched[person.person_id] = found[0]
                claimed.add(found[0].key)
                adopted.add(person.person_id)
                break
            if len(found) > 1:
                notes.append(f"{snapshot.directory}: {person.person_id} matches {len(found)} accounts by {rule}; "
                             "none adopted")
                break
    for account in unanchored:
        if account.key not in claimed:
            notes.append(f"{snapshot.directory}: unmanaged: {account.login} is in the managed scope but matches "
                         "nobody in the feed; left unchanged")
    return matched, adopted, notes


def privileged_notes(people: Sequence[Person], snapshot: Snapshot, rules: MappingRules,
                     logins: Mapping[str, str]) -> tuple[set[str], list[str]]:
    """The people whose anchor a privileged account carries (planned nothing here), and one note per
    privileged account: "privileged, not managed", with whom it would otherwise have been matched to."""
    people_by_id = {p.person_id: p for p in people}
    blocked: set[str] = set()
    notes: list[str] = []
    for account in sorted((a for a in snapshot.accounts if a.privileged), key=lambda a: a.login.lower()):
        person = people_by_id.get(account.anchor) if account.anchor else None
        if person is not None:
            blocked.add(person.person_id)
            whose = (f"; it carries the anchor of {person.display_name} ({person.person_id}), who gets no account "
                     "changes here until it holds no privileged role")
        else:
            would = next((p for p in people if any(
                _match_rule(rule, p, account, logins.get(p.person_id)) for rule in rules.kinds[p.kind].match)), None)
            whose = (f"; not adopted for {would.display_name} ({would.person_id}), who gets an account of their own"
                     if would is not None and account.anchor is None else "")
        notes.append(f"{snapshot.directory}: privileged, not managed: {account.login or account.username} "
                     f"({account.privileged}){whose}")
    return blocked, notes


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
    found_in = list(matched.values())
    for person in active:
        pid = person.person_id
        held = [accounts[pid].username for accounts in found_in if pid in accounts]
        if pid in state.person_usernames:
            held.append(state.person_usernames[pid])
        if not held:
            continue
        if rules.kinds[person.kind].rename_on_name_change:
            # A rename half made (one directory renamed, another not yet: a run given up on or
            # killed) is finished with the name already issued to this person, not a third one.
            base = bases[pid].rstrip("0123456789")
            fitting = [n for n in held if n.rstrip("0123456789").startswith(base)]
            if not fitting:
                renaming.add(pid)
            held = fitting or held
        names[pid] = held[0]  # the first directory that has the person's account names them
    taken = set(state.issued_usernames) | {n.lower() for n in names.values()}
    for snapshot in snapshots.values():
        taken.update(a.username.lower() for a in snapshot.accounts)
        taken.update(n.lower() for n in snapshot.names_outside_scope)
    needing: list[Person] = []
    for person in active:
        current = names.get(person.person_id)
        if current is None or person.person_id in renaming:
            wanted = person.username if rules.use_feed_usernames else None
            if wanted and wanted.lower() not in taken and not reserved_clash(wanted, rules.naming.reserved):
                names[person.person_id] = wanted
                taken.add(wanted.lower())
            else:
                needing.append(person)
    names.update(assign_usernames(needing, rules.naming, taken, today))
    return names


def _groups_by_member(snapshot: Snapshot, owned: set[str]) -> dict[str, set[str]]:
    """Account key -> the names of the owned groups it is in.

    Only owned groups are indexed: the planner reads nothing else of an account's membership, and the
    names it owns later (groups it will create) have no members yet, so the index stays exact all run.
    """
    member_of: dict[str, set[str]] = {}
    for group in snapshot.groups:
        name = group.name
        if name not in owned:
            continue
        for key in group.members:
            held = member_of.get(key)
            if held is None:
                member_of[key] = {name}
            else:
                held.add(name)
    return member_of


_NO_GROUPS: frozenset[str] = frozenset()


class _DirectoryPlanner:
    """Plans one directory; keeps the per-directory indexes in one place."""

    def __init__(self, snapshot: Snapshot, capabilities: Capabilities, rules: MappingRules,
                 shares: ShareGroupsLike, today: date) -> None:
        self.snapshot = snapshot
        self.directory = snapshot.directory
        self.caps = capabilities
        self.rules = rules
        self.today = today
        self.groups: dict[str, Group] = {g.name: g for g in snapshot.groups}
        self.restricted = shares.restricted.get(self.directory, frozenset())
        self.owned = ({g.name for g in snapshot.groups if g.managed}
                      | set(shares.managed.get(self.directory, frozenset())) | set(self.restricted))
        self.member_of = _groups_by_member(snapshot, self.owned)
        self.changes: list[Change] = []
        self.groups_to_create: dict[str, str] = {}

    def add(self, action: Action, person_id: str | None, username: str, reason: str, **kw: Any) -> None:
        self.changes.append(Change(self.directory, action, person_id, username, reason, **kw))

    def want_group(self, name: str, reason: str) -> None:
        if name not in self.groups and name not in self.groups_to_create:
            self.groups_to_create[name] = reason
            self.owned.add(name)

    def create(self, desired: DesiredAccount, person: Person) -> None:
        reason = f"starts on {_d(person.start_date)}" if person.start_date and person.start_date > self.today \
            else f"new {person.kind} on roll"
        self.add(Action.CREATE, desired.person_id, desired.username, reason, after={
            "username": desired.username, "login": desired.login, "given_name": desired.given_name,
            "surname": desired.surname, "display_name": desired.display_name, "container": desired.container,
            "attributes": dict(desired.attributes), "enabled": True, "anchor": desired.person_id,
            "must_change_password": True,
        })
        for name in sorted(desired.groups):
            self.want_group(name, f"needed by {desired.username}")
            self.add(Action.ADD_MEMBER, desired.person_id, desired.username, f"new account: member of {name}",
                     group=name, restricted=name in self.restricted)

    def update(self, desired: DesiredAccount, account: Account, person: Person, adopted: bool) -> None:
        pid, name = desired.person_id, account.username
        if adopted:
            self.add(Action.ADOPT, pid, name, f"existing account matched to {person.display_name} ({pid})",
                     target=account.key, before={"anchor": None}, after={"anchor": pid})
        if not (account.synced_from_on_premises and self.caps.hybrid):
            self._align(desired, account, pid, name)
        current = self.member_of.get(account.key, _NO_GROUPS)
        if current == desired.groups:  # as nearly every account is, most nights
            return
        for group in sorted(desired.groups - current):
            self.want_group(group, f"needed by {name}")
            self.add(Action.ADD_MEMBER, pid, name, f"should be in {group}", target=account.key, group=group,
                     restricted=group in self.restricted)
        for group in sorted(current - desired.groups):
            self.add(Action.REMOVE_MEMBER, pid, name, f"no longer belongs in {group}", target=account.key,
                     group=group, restricted=group in self.restricted,
                     before={"member": True}, after={"member": False})

    def _align(self, desired: DesiredAccount, account: Account, pid: str, name: str) -> None:
        """Enable, rename, update and move a cloud-owned account, in that order, where it differs.

        Each comparison is tried whole first (an equal login needs no case-folding, equal attribute maps no
        per-attribute look): on most nights nearly every account is already as desired.
        """
        if not account.enabled:
            self.add(Action.ENABLE, pid, name, "back on roll (re-joined)", target=account.key)
        if desired.username != account.username or (
                desired.login != account.login and desired.login.lower() != account.login.lower()):
            self.add(Action.RENAME, pid, name, "name changed in the MIS" if desired.username != account.username
                     else f"sign-in domain is now {desired.login.split('@')[1]}", target=account.key,
                     before={"username": account.username, "login": account.login},
                     after={"username": desired.username, "login": desired.login})
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        if (account.given_name != desired.given_name or account.surname != desired.surname
                or account.display_name != desired.display_name):
            for attr in ("given_name", "surname", "display_name"):
                if getattr(account, attr) != getattr(desired, attr):
                    before[attr], after[attr] = getattr(account, attr), getattr(desired, attr)
        if desired.attributes != account.attributes:
            attr_changes = {k: v for k, v in desired.attributes.items() if account.attributes.get(k) != v}
            if attr_changes:
                before["attributes"] = {k: account.attributes.get(k) for k in attr_changes}
                after["attributes"] = attr_changes
        if after:
            self.add(Action.UPDATE, pid, name, _update_reason(before, after), target=account.key,
                     before=before, after=after)
        if self.caps.containers and account.container != desired.container:
            where = desired.container.rsplit("/", 1)[-1] or desired.container
            self.add(Action.MOVE, pid, name, f"moved to {where}", target=account.key,
                     before={"container": account.container}, after={"container": desired.container})

    def leave(self, account: Account, person: Person | None, disabled_on: date | None,
              adopted: bool = False) -> None:
        pid = account.anchor or (person.person_id if person else None)
        name = account.username
        reason = f"left on {_d(person.leave_date)}" if person and person.leave_date else "no longer in the feed"
        kind = person.kind if person else self._kind_of(account)
        kind_rules = self.rules.kinds[kind]
        if adopted and person is not None:
            self.add(Action.ADOPT, pid, name, f"existing account matched to {person.display_name} ({pid})",
                     target=account.key, before={"anchor": None}, after={"anchor": pid})
        hybrid = account.synced_from_on_premises and self.caps.hybrid
        if hybrid:
            if account.enabled and self.caps.revoke_sessions:
                self.add(Action.REVOKE_SESSIONS, pid, name, f"{reason}; account is owned by on-premises AD",
                         target=account.key)
        elif account.enabled:
            self.add(Action.DISABLE, pid, name, reason, target=account.key,
                     before={"enabled": True}, after={"enabled": False})
        for group in sorted(self.member_of.get(account.key, _NO_GROUPS)):
            self.add(Action.REMOVE_MEMBER, pid, name, f"{reason}: removed from {group}", target=account.key,
                     group=group, restricted=group in self.restricted,
                     before={"member": True}, after={"member": False})
        if hybrid:
            return
        if self.caps.containers and account.container != kind_rules.leavers_container:
            self.add(Action.MOVE, pid, name, f"{reason}: moved to leavers", target=account.key,
                     before={"container": account.container},
                     after={"container": kind_rules.leavers_container, "leaver": True})
        if not account.enabled and disabled_on is not None:
            due = disabled_on + timedelta(days=kind_rules.retention_days)
            if self.today >= due:
                self.add(Action.DELETE, pid, name,
                         f"disabled on {_d(disabled_on)}; {kind_rules.retention_days}-day retention ended",
                         target=account.key)

    def _kind_of(self, account: Account) -> Kind:
        domain = account.login.rsplit("@", 1)[-1].lower()
        for kind, kind_rules in self.rules.kinds.items():
            if kind_rules.domain.lower() == domain:
                return kind
        return next(iter(self.rules.kinds))

    def police_restricted(self, managed_keys: set[str]) -> None:
        """Anyone else in a restricted group is removed, whether or not their account is in scope.

        Managed accounts were already brought to their desired groups by update() and leave().
        """
        for group_name in sorted(self.restricted):
            group = self.groups.get(group_name)
            if group is None:
                continue
            for key, display in sorted(group.members.items()):
                if key in managed_keys:
                    continue
                self.add(Action.REMOVE_MEMBER, None, display, f"not approved by the SIRO for {group_name}",
                         target=key, group=group_name, restricted=True,
                         before={"member": True}, after={"member": False})

    def finish(self) -> list[Change]:
        for name, reason in sorted(self.groups_to_create.items()):
            self.add(Action.CREATE_GROUP, None, name, reason, group=name, after={"name": name})
        unique: dict[str, Change] = {}
        for change in self.changes:
            unique.setdefault(change.change_id, change)
        return sorted(unique.values(), key=lambda c: (phase(c), c.username.lower(), c.group or "", c.action))


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
    people = [p for p in people if not held.holds(p.person_id)] if held.keys else list(people)
    held_lines: dict[str, list[str]] = {key: [] for key in held.rows}
    statuses = {p.person_id: status(p, rules.kinds[p.kind], today) for p in people}
    by_id = {p.person_id: p for p in people}
    active = [p for p in people if statuses[p.person_id] is Status.ACTIVE]
    staying = {pid for pid, found in statuses.items() if found is Status.ACTIVE or found is Status.FUTURE}
    matched: dict[str, dict[str, Account]] = {}
    adopted: dict[str, set[str]] = {}
    notes: list[str] = []
    bases = base_usernames(people, rules, today)
    logins = expected_logins(people, rules, today, bases)
    blocked: dict[str, set[str]] = {}
    for directory, snapshot in snapshots.items():
        blocked[directory], found = privileged_notes(people, snapshot, rules, logins)
        notes.extend(found)
        matched[directory], adopted[directory], found = match_accounts(people, snapshot, rules, statuses, logins)
        notes.extend(found)
    names = choose_usernames(people, active, matched, snapshots, rules, state, today, bases)
    desired_accounts = DesiredAccounts(rules)

    changes: list[Change] = []
    unidentified_waits: list[str] = []
    listed_waits: list[str] = []
    for directory, snapshot in snapshots.items():
        caps = capabilities[directory]
        planner = _DirectoryPlanner(snapshot, caps, rules, shares, today)
        # Held accounts stay in the managed set (so restricted-group policing leaves them be) but get no changes.
        managed_keys = {a.key for a in matched[directory].values()}
        for person_id in [pid for pid in matched[directory] if held.holds(pid)] if held.keys else []:
            kept = matched[directory].pop(person_id)
            managed_keys.add(kept.key)
            held_lines[held.keys[normalise_id(person_id)]].append(f"{directory} {kept.username}")
        # Looked up once a directory rather than once a person: this loop runs for every person in every directory.
        blocked_here, matched_here, adopted_here = blocked[directory], matched[directory], adopted[directory]
        account_for, share_groups = desired_accounts.account, shares.desired
        for person in active:
            pid = person.person_id
            if pid in blocked_here:
                continue
            desired = account_for(person, names[pid], directory, caps)
            extra = share_groups.get(pid, {}).get(directory, frozenset()) if share_groups else frozenset()
            if extra:
                desired = replace(desired, groups=desired.groups | extra)
            account = matched_here.get(pid)
            if account is None:
                planner.create(desired, person)
                continue
            if account.synced_from_on_premises and caps.hybrid:
                notes.append(f"{directory}: {account.login} is synced from on-premises AD: only cloud groups "
                             "and sessions are managed here")
            planner.update(desired, account, person, pid in adopted_here)
        for person_id, account in matched_here.items():
            if person_id in staying:
                continue
            if person_id not in by_id and normalise_id(person_id) in held.listed_keys:
                managed_keys.add(account.key)
                listed_waits.append(f"{directory} {account.username} ({person_id})")
                continue
            if person_id not in by_id and held.unidentified:
                managed_keys.add(account.key)
                unidentified_waits.append(f"{directory} {account.username} ({person_id})")
                continue
            planner.leave(account, by_id.get(person_id), state.disabled_on.get((directory, person_id)),
                          adopted=person_id in adopted[directory])
        planner.police_restricted(managed_keys)
        changes.extend(planner.finish())

    return Plan(
        changes=tuple(changes),
        fingerprints={d: s.fingerprint() for d, s in snapshots.items()},
        managed_counts={d: sum(1 for a in s.accounts if not a.privileged) for d, s in snapshots.items()},
        people_count=people_count,
        created_at=today.isoformat(),
        notes=tuple(notes),
        held=_held_report(held, held_lines, unidentified_waits, listed_waits),
    )


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
