"""Safety guards: rules that stop a Plan before anything is applied (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class GuardLimits:
    """Thresholds; the defaults are argued for in the README ("Why these guard limits")."""

    max_destructive: int = 50
    """Destructive changes (disable, delete, removal from a restricted group) allowed per directory."""
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
