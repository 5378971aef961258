"""Passwords owed: set (or perhaps set) in a directory but never delivered to their owner.

The executor records the obligation before a password is sent (store `passwords_owed`: person,
directory, reason, since; never the password) and delivery clears it. Whatever broke in between (a
kill, a mail failure, a reply lost), nobody has that password, so the next run sets a fresh one
through the ordinary SET_PASSWORD path and delivers it; the old one is never needed again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from idlifecycle.model import Account, Action, Change, Person, Snapshot
from idlifecycle.store import OwedPassword, Store


def privileged_accounts(person_id: str, snapshots: Mapping[str, Snapshot]) -> list[Account]:
    """The person's accounts with an administrative role that a password set would give the new password: those it
    sets, and their hybrid Entra accounts, to which Entra Connect copies the AD password it sets."""
    return [a for _, snap in sorted(snapshots.items()) for a in snap.accounts
            if a.anchor == person_id and a.privileged and (a.enabled or a.synced_from_on_premises)]


def owed_changes(store: Store, snapshots: Mapping[str, Snapshot], people: Mapping[str, Person],
                 planned: Sequence[Change], *, holds: Callable[[str], bool] = lambda _: False,
                 absence_counts: bool = True, actor: str = "idlifecycle") -> list[Change]:
    """A fresh SET_PASSWORD for each password still owed on an enabled account of someone in the feed.

    Not for those the plan already gives a password (created again, reset), nor for held people
    (their obligation waits). Someone no longer in the feed is owed nothing: audited and cleared,
    unless a refused row without an id could be them (`absence_counts` False).
    """
    given = {(c.directory, c.person_id) for c in planned if c.action in (Action.CREATE, Action.SET_PASSWORD)}
    changes: list[Change] = []
    for owed in store.owed_passwords():
        if (owed.directory, owed.person_id) in given or holds(owed.person_id):
            continue
        snapshot = snapshots.get(owed.directory)
        if snapshot is None:
            continue
        if owed.person_id not in people:
            if not absence_counts:
                continue
            with store.transaction():
                store.settle_password(owed.person_id, [owed.directory])
                store.audit("password-no-longer-owed", {"person_id": owed.person_id, "directory": owed.directory,
                                                        "username": owed.username, "reason": "not in the feed"},
                            actor=actor)
            continue
        account = next((a for a in snapshot.accounts if a.anchor == owed.person_id), None)
        if account is None or not account.enabled or account.synced_from_on_premises:
            continue  # no account to set it on (the plan creates it again, or it is disabled): it waits
        held_by_admin = privileged_accounts(owed.person_id, snapshots)  # as cautious as a reset
        if held_by_admin:
            # An admin role came between the set and the delivery (or a synced Entra account holds one):
            # a fresh password would reach it through the slip or the mail. Never: set it by hand.
            which = ", ".join(f"{a.directory} {a.username} ({a.privileged})" for a in held_by_admin)
            with store.transaction():
                store.settle_password(owed.person_id, [owed.directory])
                store.audit("password-not-set", {"person_id": owed.person_id, "directory": owed.directory,
                                                 "username": owed.username,
                                                 "reason": f"privileged account: {which}; set it by hand"},
                            actor=actor)
            continue
        changes.append(Change(owed.directory, Action.SET_PASSWORD, owed.person_id, account.username,
                              f"password never delivered ({owed.reason}, owed since {owed.since[:10]}): a fresh one",
                              target=account.key, after={"must_change_password": True}))
    return changes


def describe(owed: OwedPassword) -> str:
    return f"{owed.username} ({owed.directory}): {owed.reason}, waiting since {owed.since[:10]}"


def still_owed(store: Store) -> tuple[str, ...]:
    """Everyone still waiting for a password, one line each, for the run summary and the CLI."""
    return tuple(describe(owed) for owed in store.owed_passwords())
