"""The nightly side of access: desired share-group membership for the planner, and after the run,
security incidents for unapproved members removed from restricted groups and the ending of expired grants."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from idlifecycle.access._job import AccessJob
from idlifecycle.access.records import Grant, utcnow
from idlifecycle.access.service import Access
from idlifecycle.model import Action, Change, Outcome, Person, Plan, Result


@dataclass(frozen=True)
class ShareGroups:
    """What the planner needs to manage the shares' access groups."""

    desired: Mapping[str, Mapping[str, frozenset[str]]]
    """person_id -> directory -> the share groups that person should be in (baseline ∪ unexpired grants)."""
    restricted: Mapping[str, frozenset[str]]
    """directory -> names of restricted shares' groups: anyone else found in them is removed (restricted=True)."""
    managed: Mapping[str, frozenset[str]]
    """directory -> names of every share group (created when missing; members kept to `desired`)."""
    kept_out: tuple[str, ...] = ()
    """For the plan's notes: each person a baseline rule would add whom the SIRO's standing Remove keeps out."""


def desired_share_groups(job: AccessJob, people: Sequence[Person], *, now: datetime | None = None) -> ShareGroups:
    """Baseline ∪ unexpired grants for every person in the feed, per directory.

    A person the SIRO removed at an access review (a standing Remove decision for that share and
    directory) is not in the baseline there, until a later review marks Keep; an unexpired grant
    still puts them in, for its term, since the SIRO approved it.
    """
    access = Access(job)
    now = now or utcnow()
    granted = {(g.person_id, g.share) for g in access.records.open_grants() if g.active(now)}
    removed = {(d.share, d.directory, d.person_id): d for d in job.store.access_decisions() if d.removes}
    kept_out: list[str] = []
    desired: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    restricted: dict[str, set[str]] = defaultdict(set)
    managed: dict[str, set[str]] = defaultdict(set)
    for share in access.registry.shares.values():
        for directory, group in share.groups.items():
            managed[directory].add(group)
            if share.restricted:
                restricted[directory].add(group)
        for person in people:
            has_grant = (person.person_id, share.name) in granted
            if not (has_grant or share.in_baseline(person)):
                continue
            for directory, group in share.groups.items():
                decision = None if has_grant else removed.get((share.name, directory, person.person_id))
                if decision is not None:
                    kept_out.append(f"{directory}: {person.display_name} ({person.person_id}) is kept out of {group} "
                                    f"({share.name}) by the SIRO's decision of {decision.decided_at[:10]} "
                                    f"({decision.review}), although the baseline would add them")
                    continue
                desired[person.person_id][directory].add(group)
    return ShareGroups(
        desired={pid: {d: frozenset(g) for d, g in dirs.items()} for pid, dirs in desired.items()},
        restricted={d: frozenset(g) for d, g in restricted.items()},
        managed={d: frozenset(g) for d, g in managed.items()},
        kept_out=tuple(sorted(kept_out)),
    )


class RunOutcome(Protocol):
    """What `after_run` reads from `idlifecycle.run_report.RunReport`."""

    @property
    def run_id(self) -> int: ...

    @property
    def status(self) -> str: ...

    @property
    def plan(self) -> Plan: ...

    @property
    def results(self) -> tuple[Result, ...]: ...


def after_run(job: AccessJob, report: RunOutcome, connectors: Mapping[str, Any] | None = None,
              *, now: datetime | None = None) -> list[str]:
    """Log each unapproved member of a restricted group as a security incident; end expired grants.

    Returns lines for the run summary. A removal is not an incident when the person held a grant
    for that share (it is the grant's expiry); an expired grant is ended only once the run has
    removed the membership, so a run stopped by a guard leaves it for the next night.
    """
    access = Access(job)
    now = now or utcnow()
    results = {r.change_id: r for r in report.results}
    open_grants = access.records.open_grants()
    held: dict[tuple[str | None, str], list[Grant]] = defaultdict(list)
    for grant in open_grants:
        held[(grant.person_id, grant.share)].append(grant)
    lines: list[str] = []
    unfinished: set[tuple[str | None, str]] = set()
    for change in report.plan.changes:
        if change.action is not Action.REMOVE_MEMBER or not change.restricted or change.group is None:
            continue
        share = access.registry.share_of_group(change.directory, change.group)
        share_name = share.name if share is not None else "?"
        result = results.get(change.change_id)
        removed = result is not None and result.outcome in (Outcome.APPLIED, Outcome.ALREADY)
        if not removed:
            unfinished.add((change.person_id, share_name))
        if held.get((change.person_id, share_name)):
            continue
        lines.append(_incident(job, report, change, share_name, result))
    for grant in open_grants:
        if grant.expires_at > now or (grant.person_id, grant.share) in unfinished or report.status == "guard":
            continue
        share = access.registry.get(grant.share)
        if not access.records.end_grant(grant.grant_id, "idlifecycle", "expired", now):
            continue
        job.store.audit("grant-expired", {"grant_id": grant.grant_id, "share": grant.share,
                                          "person_id": grant.person_id, "run_id": report.run_id,
                                          "expired": grant.expires_at.isoformat()})
        told = share is not None and access.tell_ended(grant, share, f"it expired on {grant.expires_at:%Y-%m-%d}")
        lines.append(f"grant #{grant.grant_id} ended: {grant.person_name} ({grant.person_id}) no longer has "
                     f"{grant.share} (expired {grant.expires_at:%Y-%m-%d})"
                     + (f"; {grant.requester} told" if told else ""))
    return lines


def _incident(job: AccessJob, report: RunOutcome, change: Change, share: str, result: Result | None) -> str:
    if result is None:
        state = "not yet removed (the run applied nothing)"
    elif result.outcome is Outcome.FAILED:
        state = f"removal failed: {result.detail}"
    else:
        state = "removed"
    who = change.person_id or "not in the feed"
    job.store.audit("security-incident", {
        "kind": "unapproved-member-of-restricted-group", "run_id": report.run_id, "directory": change.directory,
        "group": change.group, "share": share, "account": change.target, "username": change.username,
        "person_id": change.person_id, "state": state})
    return (f"SECURITY INCIDENT: {change.username} ({who}) was in restricted group {change.group} "
            f"({change.directory}, share {share}) without the SIRO's approval: {state}")
