"""The second-factor part of the access review's Privileged roles sheet: what each admin's cell says, which
admins have none (a finding on Summary), pure like the rest of the review."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from idlifecycle.model import SECOND_FACTOR_NONE, RoleHolder, Snapshot, second_factor_unknown

NOT_REPORTED = second_factor_unknown("the directory did not report it")
NO_SECOND_FACTOR = "Admin without a second factor"
"""The flag on the sheet's row."""
NO_SECOND_FACTOR_FINDING = "Admin accounts without a second factor"
"""The finding's title on Summary."""


def all_role_holders(role_holders: Mapping[str, Sequence[RoleHolder]],
                     snapshots: Mapping[str, Snapshot]) -> dict[str, list[RoleHolder]]:
    """The directories' role holders, plus every account a snapshot marks privileged that they do not list
    (e.g. eligible for a role through PIM, or privileged by adminCount=1 alone)."""
    holders = {d: list(h) for d, h in role_holders.items()}
    for snapshot in (snapshots[name] for name in sorted(snapshots)):
        listed = {h.username.lower() for h in holders.get(snapshot.directory, [])}
        for account in snapshot.accounts:
            if account.privileged and not {account.username.lower(), account.login.lower()} & listed:
                holders.setdefault(snapshot.directory, []).append(RoleHolder(
                    snapshot.directory, account.privileged, account.login or account.username,
                    account.display_name, account.anchor))
    return holders


def second_factor_cell(holder: RoleHolder) -> str:
    """"enforced", "registered", "none" or "unknown — <why>": never blank, so an unread state is not read as fine."""
    return holder.second_factor or NOT_REPORTED


def flag(holder: RoleHolder) -> str | None:
    return NO_SECOND_FACTOR if holder.second_factor == SECOND_FACTOR_NONE else None


def without_second_factor(role_holders: Mapping[str, Sequence[RoleHolder]]) -> int:
    """Admin accounts (one per directory and username, whatever roles they hold) with no second factor."""
    return len(_accounts(h for holders in role_holders.values() for h in holders
                         if h.second_factor == SECOND_FACTOR_NONE))


def _accounts(holders: Iterable[RoleHolder]) -> set[tuple[str, str]]:
    return {(h.directory, h.username.lower()) for h in holders}
