"""Existing accounts to people: by anchor, else by each kind's match rules; privileged accounts noted (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date
from operator import attrgetter

from idlifecycle.mapping import MappingRules, Status
from idlifecycle.model import Account, Person, Snapshot
from idlifecycle.naming import base_username


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


_BY_KEY = attrgetter("key")


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
    unanchored: list[Account] = []
    for account in sorted(snapshot.accounts, key=_BY_KEY):
        if account.privileged:
            continue
        anchor = account.anchor
        if anchor is None:
            unanchored.append(account)
        elif anchor in matched:
            notes.append(
                f"{snapshot.directory}: {account.login} carries the anchor {anchor} which "
                f"{matched[anchor].login} carries too; left unchanged"
            )
        else:
            matched[anchor] = account
    index = _Unanchored(unanchored)
    adopted: set[str] = set()
    claimed: set[str] = set()
    # Leavers the feed still names are matched too, so their old accounts get disabled. Only the people no
    # anchor matched are tried, and none when every account carries an anchor (nothing left to adopt).
    for person in [p for p in people if p.person_id not in matched] if unanchored else []:
        if person.person_id in matched or statuses[person.person_id] is Status.FUTURE:
            continue  # (in matched: named twice in the feed, and adopted for the first)
        for rule in rules.for_person(person).match:
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
    privileged = sorted((a for a in snapshot.accounts if a.privileged), key=lambda a: a.login.lower())
    blocked: set[str] = set()
    notes: list[str] = []
    # Looked up by id only when the directory shows a privileged account in scope (most show none).
    people_by_id = {p.person_id: p for p in people} if privileged else {}
    for account in privileged:
        person = people_by_id.get(account.anchor) if account.anchor else None
        if person is not None:
            blocked.add(person.person_id)
            whose = (f"; it carries the anchor of {person.display_name} ({person.person_id}), who gets no account "
                     "changes here until it holds no privileged role")
        else:
            would = next((p for p in people if any(
                _match_rule(rule, p, account, logins.get(p.person_id)) for rule in rules.for_person(p).match)), None)
            whose = (f"; not adopted for {would.display_name} ({would.person_id}), who gets an account of their own"
                     if would is not None and account.anchor is None else "")
        notes.append(f"{snapshot.directory}: privileged, not managed: {account.login or account.username} "
                     f"({account.privileged}){whose}")
    return blocked, notes
