"""Dormant accounts: a managed account nobody has signed in to for `dormant_days` is disabled (pure).

Called by the planner once per directory, after that directory's changes are planned. The rule:

- an active person's account (matched, not privileged, not held) is dormant when its last sign-in is
  more than `dormant_days` before today, or it has never been signed in to and was created more than
  `dormant_days` before today; one with neither date is left alone (nothing to tell by);
- a member of one of the kind's `dormant_exempt_groups` is kept;
- a dormant account is disabled, and an ENABLE the planner would plan for it (an active person's disabled
  account is normally enabled) is dropped: it stays disabled while the directory's own sign-in record
  says it is dormant. It comes back when it is signed in to again (an admin enables it and the person
  signs in that day), or when it is put in an exempt group;
- an account the tool disabled as dormant (`DormantMark`) that an admin has enabled again by hand is left
  enabled for `dormant_days` from the first night the tool saw it enabled, so its person has time to sign
  in; disabled again after that if they have not;
- a person an admin has exempted (`people keep-active`, `keep_until`) is left alone until that day;
- where the directory cannot tell (`Snapshot.sign_ins_unknown`), nothing is disabled and one note says so.

The disables are ordinary DISABLE changes, so `guards.counted_by_destructive_guard` counts them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from idlifecycle.directory_plan import change_order
from idlifecycle.mapping import KindRules
from idlifecycle.model import Account, Action, Change, Snapshot

MIN_DORMANT_DAYS = 30
"""AD's lastLogonTimestamp is written only when the stored value is older than
ms-DS-Logon-Time-Sync-Interval (default 14 days, less a random 0-5 days), so it can lag a real sign-in
by up to 14 days; 30 leaves a margin over that and over a fortnight's school holiday."""


NO_SIGN_IN, NEVER_SIGNED_IN = "no sign-in since ", "never signed in, created "
"""How a dormant disable's reason begins: the recorder and the run's notices tell a dormant disable by it."""


def is_dormant_disable(change: Change) -> bool:
    return change.action is Action.DISABLE and change.reason.startswith((NO_SIGN_IN, NEVER_SIGNED_IN))


@dataclass(frozen=True)
class DormantMark:
    """The store's record that the tool disabled an account as dormant."""

    disabled_on: date
    seen_enabled_on: date | None = None
    """The first night the tool found it enabled again (an admin's hand): its grace counts from then."""


def spared_until(account: Account, rules: KindRules, mark: DormantMark | None, keep_until: date | None,
                 today: date) -> date | None:
    """The last day a dormant account is left alone: an admin's exemption, or the grace after a hand re-enable."""
    if keep_until is not None and today <= keep_until:
        return keep_until
    if mark is None or not account.enabled or rules.dormant_days is None:
        return None
    grace_ends = (mark.seen_enabled_on or today) + timedelta(days=rules.dormant_days)
    return grace_ends - timedelta(days=1) if today < grace_ends else None


def dormant_reason(account: Account, rules: KindRules, today: date) -> str | None:
    """Why the account is dormant ("no sign-in since …"), or None when it is not (or cannot be told)."""
    if rules.dormant_days is None:
        return None
    cutoff = today - timedelta(days=rules.dormant_days)
    if account.last_sign_in is not None:
        last = account.last_sign_in.date()
        return f"{NO_SIGN_IN}{last.isoformat()}" if last < cutoff else None
    if account.created is not None and account.created.date() < cutoff:
        return f"{NEVER_SIGNED_IN}{account.created.date().isoformat()}"
    return None


def _exempt_keys(snapshot: Snapshot, names: Sequence[str]) -> set[str]:
    wanted = {n.lower() for n in names}
    return {key for g in snapshot.groups if g.name.lower() in wanted for key in g.members}


def _dormant_disables(snapshot: Snapshot, active_accounts: Mapping[str, tuple[Account, KindRules]], today: date,
                      marks: Mapping[str, DormantMark], keep_until: Mapping[str, date]) -> tuple[dict[str, Change],
                                                                                                list[str]]:
    """account key -> the disable of each dormant account not spared or exempt; and a note for each spared one."""
    directory = snapshot.directory
    exempt_by_groups: dict[tuple[str, ...], set[str]] = {}
    disabled: dict[str, Change] = {}
    notes: list[str] = []
    for pid, (account, rules) in sorted(active_accounts.items()):
        if account.privileged:
            continue
        reason = dormant_reason(account, rules, today)
        if reason is None:
            continue
        spared = spared_until(account, rules, marks.get(pid), keep_until.get(pid), today)
        if spared is not None:
            why = "people keep-active" if pid in keep_until else "enabled again by hand after a dormant disable"
            notes.append(f"{directory}: {account.username} is dormant ({reason}) but left enabled until "
                         f"{spared.isoformat()} ({why})")
            continue
        groups = rules.dormant_exempt_groups
        exempt = exempt_by_groups.setdefault(groups, _exempt_keys(snapshot, groups))
        if account.key in exempt:
            continue
        disabled[account.key] = Change(directory, Action.DISABLE, pid, account.username, reason,
                                       target=account.key, before={"enabled": True}, after={"enabled": False})
    return disabled, notes


def disable_dormant(
    changes: Sequence[Change],
    snapshot: Snapshot,
    active_accounts: Mapping[str, tuple[Account, KindRules]],
    today: date,
    marks: Mapping[str, DormantMark] | None = None,
    keep_until: Mapping[str, date] | None = None,
) -> tuple[list[Change], list[str]]:
    """The directory's changes with dormant accounts disabled (and not re-enabled), and the notes to show.

    `active_accounts` maps a person id on roll (Status ACTIVE) to their account here and their kind's rules;
    `marks` (by person id) are this directory's dormant disables, `keep_until` the admins' exemptions.
    """
    checking = [rules for _, rules in active_accounts.values() if rules.dormant_days is not None]
    if not checking:
        return list(changes), []
    directory = snapshot.directory
    if snapshot.sign_ins_unknown:
        return list(changes), [f"dormant accounts not checked in {directory}: {snapshot.sign_ins_unknown}"]
    disabled, notes_spared = _dormant_disables(snapshot, active_accounts, today, marks or {}, keep_until or {})
    kept = [c for c in changes if not (c.target in disabled and c.action in (Action.ENABLE, Action.DISABLE))]
    was_enabled = {a.key for a, _ in active_accounts.values() if a.enabled}
    new = [c for key, c in disabled.items() if key in was_enabled]
    notes = notes_spared + [f"{directory}: {c.username} disabled as dormant ({c.reason})" for c in new]
    if not new:
        return kept, notes
    # Where DirectoryPlanner.finish puts a disable: after the account's other changes.
    return sorted(kept + new, key=change_order), notes
