"""One directory's changes: create, update, leave, restricted-group policing, and their order (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import chain
from typing import Any, Protocol

from idlifecycle.mapping import KindRules, MappingRules
from idlifecycle.model import Account, Action, Capabilities, Change, DesiredAccount, Group, Kind, Person, Snapshot


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


def change_order(change: Change) -> tuple[int, str, str, str]:
    """A directory's changes in phase order, then by username, group and action (`phase`, written out here
    because a trust's night sorts 65,000 changes by it)."""
    action = change.action
    step = 9 if action is Action.MOVE and change.after.get("leaver") else _PHASE[action]
    return step, change.username.lower(), change.group or "", action


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



_NO_GROUPS: frozenset[str] = frozenset()

Shape = tuple[str, Mapping[str, str], frozenset[str]]
"""The OU, attributes and groups of an account of one shape of person (`DesiredAccounts.shape`)."""

Roll = tuple[Person, str, str, str, str, str, str, int]
"""An active person as every directory reads them, worked out once a run: the person, their id, username,
sign-in, first name, surname, display name, and the number of their shape (kind, year, registration group,
roles: what their OU, attributes and groups follow from)."""


class DirectoryPlanner:
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
        # Memberships are read from the owned groups as they are now: the names owned later (groups to be
        # created) have no members yet, so what is read here stays exact all run.
        self._owned_groups = [g for g in snapshot.groups if g.name in self.owned]
        self._owned_by_name = {g.name: g for g in self._owned_groups}
        self._membership_counts = Counter(chain.from_iterable(g.members for g in self._owned_groups))
        self._members_of_all: dict[frozenset[str], Set[str]] = {}
        self._member_of: dict[str, set[str]] = {}
        self._indexed: set[str] = set()
        self.changes: list[Change] = []
        self.groups_to_create: dict[str, str] = {}

    def index_members(self, keys: Set[str]) -> None:
        """Reads which owned groups each of these accounts is in, for `current_groups`.

        Only the accounts that may change are indexed: most nights nearly every account is already as
        desired (`already_so`), and reading every membership of every account was most of a trust's night.
        """
        keys = set(keys) - self._indexed
        if not keys:
            return
        member_of = self._member_of
        for group in self._owned_groups:
            for key in group.members.keys() & keys:
                member_of.setdefault(key, set()).add(group.name)
        self._indexed |= keys

    def current_groups(self, key: str) -> Set[str]:
        """The names of the owned groups the account is in now (read here if `index_members` was not told)."""
        if key not in self._indexed:
            self.index_members({key})
        return self._member_of.get(key, _NO_GROUPS)

    def members_of_all(self, groups: frozenset[str]) -> Set[str]:
        """The accounts in every one of these owned groups (a name two groups share: those in the last read)."""
        members = self._members_of_all.get(groups)
        if members is None:
            owned = self._owned_by_name
            held = sorted((owned[name].members.keys() if name in owned else _NO_GROUPS for name in groups), key=len)
            found: Set[str] = set(held[0]) if held else set()
            for more in held[1:]:
                found = more & found
            members = self._members_of_all[groups] = found
        return members

    def may_change(self, roll: Sequence[Roll], matched: Mapping[str, Account], blocked: Set[str],
                   looked_at: Set[str], shape_of: Callable[[Person], Shape],
                   shape_count: int) -> list[tuple[Person, Account | None]]:
        """The people on roll, less `blocked`, whose account here may need a change (or is missing), in roll order.

        A quick look, on a night when nearly every account is already as desired: an account is passed over
        only when `update` would plan nothing for it: enabled, not synced from on-premises AD, named, described,
        placed and grouped as desired (as many owned memberships as groups wanted, and a member of each:
        exactly those). The accounts of `looked_at` (adopted, given share groups) always go to `update`. One
        loop, the comparisons written out: it runs for everybody on roll in every directory.
        """
        matched_get, counts_get, containers = matched.get, self._membership_counts.get, self.caps.containers
        shapes: list[tuple[str, Mapping[str, str], int, Set[str]] | None] = [None] * shape_count
        needing: list[tuple[Person, Account | None]] = []
        for person, pid, username, login, first_name, last_name, display_name, shape_id in roll:
            if pid in blocked:
                continue
            account = matched_get(pid)
            if (account is not None and pid not in looked_at and account.enabled and account.username == username
                    and account.login == login and account.given_name == first_name
                    and account.surname == last_name and account.display_name == display_name
                    and not account.synced_from_on_premises):
                found = shapes[shape_id]
                if found is None:
                    container, attributes, groups = shape_of(person)
                    found = shapes[shape_id] = (container, attributes, len(groups), self.members_of_all(groups))
                container, attributes, wanted, in_all = found
                key = account.key
                if (account.attributes == attributes and (not containers or account.container == container)
                        and counts_get(key, 0) == wanted and (not wanted or key in in_all)):
                    continue
            needing.append((person, account))
        return needing

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
        current = self.current_groups(account.key)
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
        kind_rules = self.rules.for_person(person) if person else self.rules.kinds[kind]
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
        kept = self._licences_kept(account, person, disabled_on, kind_rules)
        for group in sorted(self.current_groups(account.key) - kept):
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

    def _licences_kept(self, account: Account, person: Person | None, disabled_on: date | None,
                       kind_rules: KindRules) -> frozenset[str]:
        """The licence groups a leaver stays in tonight: all of the kind's until `licence_kept_days` (this
        directory's own where the mapping sets one) after the disable (at most the retention period), so the
        mailbox and OneDrive survive until then.

        The disable day is the one the store recorded (the night the delete also counts from), or tonight for
        an account still enabled; failing both (disabled by hand before the tool knew) the leave date and
        grace, as `status` counts; with no leave date either there is nothing to count from and the licence
        goes now, as it always did. On the night of the delete the groups are left for the delete to take.
        """
        kept_days = kind_rules.licence_days(self.directory)
        if not (self.caps.licence_groups and kind_rules.licences and kept_days):
            return _NO_GROUPS
        recorded = disabled_on is not None and not account.enabled
        if disabled_on is None and account.enabled:
            disabled_on = self.today
        elif disabled_on is None and person is not None and person.leave_date is not None:
            disabled_on = person.leave_date + timedelta(days=kind_rules.grace_days)
        if disabled_on is None:
            return _NO_GROUPS
        deleted_tonight = recorded and self.today >= disabled_on + timedelta(days=kind_rules.retention_days)
        kept_until = disabled_on + timedelta(days=min(kept_days, kind_rules.retention_days))
        if self.today >= kept_until and not deleted_tonight:
            return _NO_GROUPS
        return frozenset(kind_rules.licences)

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
        return sorted(unique.values(), key=change_order)
