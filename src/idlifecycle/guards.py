"""Safety guards: rules that stop a Plan before anything is applied (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

from idlifecycle.model import Account, Action, Change, Snapshot


@dataclass(frozen=True)
class GuardLimits:
    """Thresholds; the defaults are argued for in the README ("Why these guard limits")."""

    max_destructive: int = 50
    """Destructive changes (disable, delete, removal from a restricted group) and enables allowed per
    directory (see `counted_by_destructive_guard`)."""
    max_destructive_percent: float = 10.0
    """… and as a share of the directory's managed accounts."""
    percent_floor: int = 5
    """The percentage rule only applies above this many, so a small directory can lose a leaver or two."""
    max_feed_drop_percent: float = 10.0
    """How much smaller than the last successful run's feed the feed may be."""
    max_bad_rows_percent: float = 2.0
    group_floor: int = 3
    """A year group, registration group or staff role this big on the last good run may not vanish in one run."""
    max_group_drop_percent: float = 50.0
    """… nor lose more than this share of its people (once more than `percent_floor` of them)."""
    max_group_removal_percent: float = 25.0
    """Removals from one ordinary group in one run, as a share of its members (once more than `percent_floor`)."""
    max_attribute_change_percent: float = 25.0
    """Accounts of one directory whose value of one attribute (department, OU, name …) is replaced in one run."""
    rollover_day: str = "09-01"
    """MM-DD of the September roll-over; within `rollover_window_days` of it, moves and group changes are expected."""
    rollover_window_days: int = 14
    max_days_between_runs: int = 60
    """How many days after the last applying run a run's date may be. The nightly job runs through the
    holidays, so a normal gap is one day; the longest a school's server is plausibly off is the summer
    holiday (about six weeks, late July to early September), and 60 leaves a fortnight on top. A clock
    years out (a dead CMOS battery, a typo in --today) is far beyond it."""


def counted_by_destructive_guard(change: Change) -> bool:
    """Disable, delete, removal from a restricted group, and enable.

    Enabling a disabled account gives a leaver their access back: a wrong clock or a wrong feed
    re-enables leavers wholesale (and puts them back in their groups) just as a truncated feed
    disables pupils wholesale, so both are stopped at the same limits. A re-joiner or two a night
    stays far below them.
    """
    return change.destructive or change.action is Action.ENABLE


def check_plan(
    destructive: Mapping[str, int],
    managed_counts: Mapping[str, int],
    people_count: int,
    previous_people_count: int | None,
    limits: GuardLimits,
    allow_destructive: int | None = None,
) -> list[str]:
    """Reasons to stop; empty when the plan may go ahead.

    `allow_destructive` is a person's explicit override for one run: it allows up to that many
    destructive changes in each directory, and a feed that shrank by up to that many people.
    """
    reasons: list[str] = []
    allowed = allow_destructive or 0
    for directory, count in sorted(destructive.items()):
        if count == 0 or count <= allowed:
            continue
        managed = managed_counts.get(directory, 0)
        percent = 100.0 * count / managed if managed else 100.0
        if count > limits.max_destructive:
            reasons.append(
                f"{directory}: {count} destructive changes exceed the limit of {limits.max_destructive}; "
                f"review the plan, then rerun with --allow-destructive {count}"
            )
        elif count > limits.percent_floor and percent > limits.max_destructive_percent:
            reasons.append(
                f"{directory}: {count} destructive changes are {percent:.0f}% of {managed} managed accounts, "
                f"over the limit of {limits.max_destructive_percent:g}%; review the plan, then rerun with "
                f"--allow-destructive {count}"
            )
    if previous_people_count:
        drop = previous_people_count - people_count
        percent = 100.0 * drop / previous_people_count
        if percent > limits.max_feed_drop_percent and drop > allowed:
            reasons.append(
                f"the feed has {people_count} people, {drop} fewer ({percent:.0f}%) than the last successful run's "
                f"{previous_people_count}, over the limit of {limits.max_feed_drop_percent:g}%; check the MIS export, "
                f"then rerun with --allow-destructive {drop} if the leavers are real"
            )
    return reasons


def stale_directories(planned: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """Reasons a saved plan no longer fits the directories it was computed from."""
    return [
        f"{directory}: the directory changed since the plan was made; make a new plan"
        for directory, fingerprint in sorted(planned.items())
        if current.get(directory) != fingerprint
    ]


def _account(snapshot: Snapshot, key: str | None) -> Account | None:
    return next((a for a in snapshot.accounts if a.key == key), None) if key else None


def resolve_targets(changes: Sequence[Change], snapshots: Mapping[str, Snapshot]) -> list[Change]:
    """Fills in the key of an account the plan was to create (its groups), from the directory as it is now.

    A fresh plan names that account by its key, so only the resolved change has the same change_id.
    """
    resolved: list[Change] = []
    for change in changes:
        snapshot = snapshots.get(change.directory)
        if change.target is None and change.person_id and snapshot is not None \
                and change.action not in (Action.CREATE, Action.CREATE_GROUP):
            account = next((a for a in snapshot.accounts if a.anchor == change.person_id), None)
            if account is not None:
                change = replace(change, target=account.key)
        resolved.append(change)
    return resolved


def in_effect(change: Change, snapshot: Snapshot | None) -> bool | None:
    """Whether the directory already shows the change done; None where it cannot show it (passwords, sessions)."""
    if change.action in (Action.SET_PASSWORD, Action.REVOKE_SESSIONS):
        return None
    if snapshot is None:
        return False
    if change.action is Action.CREATE:
        return any(a.anchor == change.person_id for a in snapshot.accounts)
    if change.action is Action.CREATE_GROUP:
        return any(g.name.lower() == (change.group or "").lower() for g in snapshot.groups)
    if change.action in (Action.ADD_MEMBER, Action.REMOVE_MEMBER):
        group = next((g for g in snapshot.groups if g.name.lower() == (change.group or "").lower()), None)
        member = group is not None and change.target is not None and change.target in group.members
        return member if change.action is Action.ADD_MEMBER else not member
    account = _account(snapshot, change.target)
    if change.action is Action.DELETE:
        return account is None
    if account is None:
        return False
    after = change.after
    if change.action is Action.ADOPT:
        return account.anchor == after.get("anchor")
    if change.action in (Action.ENABLE, Action.DISABLE):
        return account.enabled is (change.action is Action.ENABLE)
    if change.action is Action.RENAME:
        return account.username == after.get("username") and \
            account.login.lower() == str(after.get("login", "")).lower()
    if change.action is Action.MOVE:
        return account.container == after.get("container")
    if change.action is Action.REQUIRE_PASSWORD_CHANGE:
        return account.must_change_password
    if change.action is Action.UPDATE:
        names = all(getattr(account, k) == v for k, v in after.items() if k != "attributes")
        attributes = dict(after.get("attributes") or {})
        return names and all(account.attributes.get(k) == v for k, v in attributes.items())
    return False


def _object(change: Change) -> tuple[str, str]:
    """The directory object a change is about: a person's account, an unanchored account, or a group."""
    if change.person_id:
        return change.directory, f"person {change.person_id}"
    if change.target:
        return change.directory, f"account {change.target}"
    return change.directory, f"group {(change.group or change.username).lower()}"


def saved_plan_drift(remaining: Sequence[Change], fresh: Sequence[Change], snapshots: Mapping[str, Snapshot]) \
        -> list[str]:
    """Reasons the not-yet-done changes of a saved plan made from the feed are no longer called for.

    `remaining` are the plan's changes its journal does not record as done; `fresh` is the plan
    computed now from the current feed and directories (the nightly plan, nothing applied). A
    remaining change may go ahead when

    - the fresh plan has it too (same change_id, once an account the plan created is named by its
      key): the feed and the directories still call for exactly that; or
    - the directory already shows it done (or cannot show it: sessions, passwords) and the fresh
      plan wants nothing else for that object: it landed before the run was killed, and re-sending
      it is answered "already so".

    Anything else refuses the whole plan: a change the feed or the directories no longer call for
    (a leaver back on roll, an account changed by hand), or an object the fresh plan now wants
    something else done to (the leaver's disable landed, but the MIS put them back on roll). So a
    killed apply resumes when nothing but its own changes moved, and is refused otherwise; a new
    plan is then the way forward, and it is reviewed again.
    """
    resolved = resolve_targets(remaining, snapshots)
    remaining_ids = {c.change_id for c in resolved}
    fresh_ids = {c.change_id for c in fresh}
    wanted_instead: dict[tuple[str, str], set[str]] = defaultdict(set)
    for change in fresh:
        if change.change_id not in remaining_ids:
            wanted_instead[_object(change)].add(str(change.action))
    reasons: list[str] = []
    for change in resolved:
        if change.change_id in fresh_ids:
            continue
        what = f"{change.directory}: {change.action} {change.username}"
        if in_effect(change, snapshots.get(change.directory)) is False:
            reasons.append(f"{what} ({change.reason}) is no longer called for by the feed and the directories; "
                           f"make a new plan")
        elif wanted_instead.get(_object(change)):
            instead = ", ".join(sorted(wanted_instead[_object(change)]))
            reasons.append(f"{what}: the feed and the directories now call for {instead} instead; make a new plan")
    return list(dict.fromkeys(reasons))


def saved_targets_drift(remaining: Sequence[Change], snapshots: Mapping[str, Snapshot]) -> list[str]:
    """Reasons the not-yet-done changes of a plan not made from the feed (the access review) no longer apply.

    Such a plan records, per change, the object it was decided for: the account's key and the person
    whose account it was. The change may still go ahead while that account exists and still belongs
    to that person; done already (the member left the group) is fine, and is answered "already so".
    """
    reasons: list[str] = []
    for change in remaining:
        snapshot = snapshots.get(change.directory)
        if change.target is None or change.action in (Action.CREATE, Action.CREATE_GROUP, Action.DELETE):
            continue
        account = None if snapshot is None else _account(snapshot, change.target)
        if account is None:
            reasons.append(f"{change.directory}: {change.action} {change.username}: the account it was decided for "
                           f"({change.target}) is no longer in the directory; make a new plan")
        elif change.person_id is not None and account.anchor != change.person_id:
            reasons.append(f"{change.directory}: {change.action} {change.username}: the account now belongs to "
                           f"{account.anchor or 'nobody in the feed'}, not {change.person_id}; make a new plan")
    return reasons


def check_run_date(today: date, last_run: date | None, limits: GuardLimits, allow_date: date | None = None) \
        -> list[str]:
    """Reasons to stop an applying run whose date does not follow the last run's; empty to go ahead.

    A date before the last run's, or more than `max_days_between_runs` after it, is most likely a
    wrong clock or a mistyped `--today`, and dates decide who has left, who starts and when a leaver
    is deleted. `allow_date` is a person's explicit override for one run: it must name the run's
    own date, so an override left in a cron line stops working the next day.
    """
    if last_run is None or allow_date == today:
        return []
    fix = f"check the clock and --today; if {today.isoformat()} is right, rerun with --allow-date {today.isoformat()}"
    if today < last_run:
        return [f"the run's date {today.isoformat()} is before the last run's ({last_run.isoformat()}); {fix}"]
    gap = (today - last_run).days
    if gap > limits.max_days_between_runs:
        return [f"the run's date {today.isoformat()} is {gap} days after the last run's ({last_run.isoformat()}), "
                f"more than max_days_between_runs ({limits.max_days_between_runs}); {fix}"]
    return []
