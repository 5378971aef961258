"""Gathers the access review's input from a live job: the `[report]` options, the feed, the
directories, their admin roles, share memberships with why each person holds them, password
ages from the password policy, and this year's audit log."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from idlifecycle.access.records import Grant
from idlifecycle.access.service import Access
from idlifecycle.connectors.base import Connector, ConnectorError
from idlifecycle.errors import UserError
from idlifecycle.model import Account, Person, RoleHolder, Snapshot
from idlifecycle.notify import valid_email
from idlifecycle.passwords.settings import load_settings
from idlifecycle.reports._job import JobSections, ReviewJob
from idlifecycle.reports.access_review import (
    KEPT_OUT,
    ReportOptions,
    RestrictedAccessRow,
    ReviewInput,
    audit_since,
)
from idlifecycle.reports.decisions import REVIEWED_EVENT
from idlifecycle.reports.leavers_data import data_going
from idlifecycle.store import AccessDecision


class ReportSection(BaseModel):
    """The job's `[report]` table."""

    model_config = ConfigDict(extra="forbid")

    school_name: str = ""
    siro_name: str = ""
    """Defaults to `[access] siro_name`."""
    no_sign_in_days: int = Field(90, ge=1, le=3650)
    password_max_age_days: dict[str, int] = {}
    """Kind -> days, used when the job has no `[passwords]` policy with `max_age_days`."""
    year_starts: str = "09-01"
    licence_groups: list[str] = []
    summary_to: list[str] = []

    @field_validator("year_starts")
    @classmethod
    def _month_day(cls, value: str) -> str:
        try:
            date.fromisoformat(f"2000-{value}")
        except ValueError:
            raise ValueError('must be a month and day such as "09-01" (1 September)') from None
        return value

    @field_validator("password_max_age_days")
    @classmethod
    def _kinds(cls, value: dict[str, int]) -> dict[str, int]:
        wrong = sorted(set(value) - {"staff", "pupil"})
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: the kinds are staff and pupil")
        if any(days < 0 for days in value.values()):
            raise ValueError("days cannot be negative (0 means no limit)")
        return value

    @field_validator("summary_to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        wrong = [a for a in value if not valid_email(a)]
        if wrong:
            raise ValueError(f"{wrong[0]!r} is not an email address")
        return value


def report_options(job: JobSections) -> ReportOptions:
    """The `[report]` section, checked; a mistake names the job file and `report.<key>`."""
    try:
        section = ReportSection.model_validate(dict(job.section("report")))
    except ValidationError as error:
        first = error.errors()[0]
        raise job.config_error(".".join(str(p) for p in ("report", *first["loc"])), first["msg"]) from None
    month, day = (int(part) for part in section.year_starts.split("-"))
    return ReportOptions(
        school_name=section.school_name,
        siro_name=section.siro_name or str(job.section("access").get("siro_name", "")),
        no_sign_in_days=section.no_sign_in_days,
        password_max_age_days=section.password_max_age_days,
        year_starts=(month, day),
        licence_groups=frozenset(section.licence_groups),
        summary_to=tuple(section.summary_to),
    )


def password_limits(job: ReviewJob, people: Sequence[Person]) -> dict[str, int]:
    """person_id -> the policy's maximum password age for that person, where the policy sets one."""
    section = job.section("passwords")
    if not section:
        return {}
    settings = load_settings(section, job_file=job.config.path)
    limits: dict[str, int] = {}
    for person in people:
        days = settings.for_person(person).max_age_days
        if days:
            limits[person.person_id] = days
    return limits


def role_holders(connectors: Mapping[str, Connector]) -> dict[str, list[RoleHolder]]:
    holders: dict[str, list[RoleHolder]] = {}
    for name, connector in connectors.items():
        try:
            holders[name] = list(connector.privileged_roles())
        except ConnectorError as error:
            raise UserError(f"{name}: could not read who holds admin roles: {error}") from None
    return holders


def last_reviewed(job: ReviewJob) -> dict[tuple[str, str, str], date]:
    """(share, directory, account key) -> the day the SIRO last decided Keep or Remove for it."""
    reviewed: dict[tuple[str, str, str], date] = {}
    for entry in job.store.audit_entries():
        if entry.event != REVIEWED_EVENT:
            continue
        day = datetime.fromisoformat(entry.at).date()
        for share, directory, key, _decision in entry.data.get("rows", []):
            reviewed[(share, directory, key)] = day
    return reviewed


def share_memberships(job: ReviewJob, people: Sequence[Person], snapshots: Mapping[str, Snapshot]) -> tuple[
        list[RestrictedAccessRow], dict[str, dict[str, str]]]:
    """Every member of every restricted or protected share's group, with the basis the access area
    knows for them (baseline rule or grant) — "not approved" when it knows none — and the share ->
    directory -> group map the decisions are checked against. Empty when the job has no `[access]`.

    Each row carries the SIRO's standing decision for it; someone a standing Remove keeps out of the
    group gets a row too (basis "kept out by the SIRO's decision"), so the next review shows the
    decision and its date, and marking it Keep lifts it."""
    if not job.section("access"):
        return [], {}
    access = Access(job)
    now = datetime.now(UTC)
    grants: dict[tuple[str, str], list[Grant]] = defaultdict(list)
    for grant in access.records.open_grants():
        if grant.active(now):
            grants[(grant.share, grant.person_id)].append(grant)
    by_id = {p.person_id: p for p in people}
    reviewed = last_reviewed(job)
    standing = {(d.share, d.directory, d.person): d for d in job.store.access_decisions()}
    rows: list[RestrictedAccessRow] = []
    groups: dict[str, dict[str, str]] = {}
    for share in sorted(access.registry.shares.values(), key=lambda s: s.name):
        if share.classification == "public":
            continue
        groups[share.name] = dict(share.groups)
        for directory, group_name in sorted(share.groups.items()):
            snapshot = snapshots.get(directory)
            if snapshot is None:
                continue
            accounts = {a.key: a for a in snapshot.accounts}
            group = next((g for g in snapshot.groups if g.name.lower() == group_name.lower()), None)
            members = group.members if group else {}
            for key, member_name in sorted(members.items(), key=lambda m: m[1].lower()):
                account = accounts.get(key)
                person_id = account.anchor if account else None
                person = by_id.get(person_id or "")
                held = grants.get((share.name, person_id or ""), [])
                decision = standing.get((share.name, directory, person_id or f"key:{key}"))
                # A standing Remove takes the person out of the baseline (the nightly plan honours it too).
                baseline = person is not None and share.in_baseline(person) and not (decision and decision.removes)
                basis = ([f"baseline ({share.baseline})"] if baseline else []) + [
                    f"grant #{g.grant_id}" for g in held]
                latest = max(held, key=lambda g: g.expires_at, default=None)
                rows.append(RestrictedAccessRow(
                    share=share.name, directory=directory, group=group.name if group else group_name,
                    member_key=key, username=account.username if account else "",
                    display_name=account.display_name if account else member_name, person_id=person_id,
                    basis=", ".join(basis) or "not approved", classification=share.classification,
                    owner=share.owner, approver=latest.approver if latest else "",
                    approved_at=latest.granted_at if latest else None,
                    expires=latest.expires_at.date() if latest else None,
                    last_reviewed=reviewed.get((share.name, directory, key)),
                    decision=decision,
                ))
            rows.extend(_kept_out(share.name, directory, group.name if group else group_name, members, standing,
                                  {a.anchor: a for a in snapshot.accounts if a.anchor}, share.classification,
                                  share.owner))
    return rows, groups


def _kept_out(share: str, directory: str, group: str, members: Mapping[str, str],
              standing: Mapping[tuple[str, str, str], AccessDecision], accounts: Mapping[str, Account],
              classification: str, owner: str) -> list[RestrictedAccessRow]:
    """Rows for people a standing Remove (or an ended Change expiry) keeps out of the group, while their
    account is still there."""
    rows: list[RestrictedAccessRow] = []
    for (of_share, of_directory, _), decision in sorted(standing.items()):
        account = accounts.get(decision.person_id or "")
        if (of_share, of_directory) != (share, directory) or not decision.removes or account is None \
                or account.key in members:
            continue
        rows.append(RestrictedAccessRow(
            share=share, directory=directory, group=group, member_key=account.key, username=account.username,
            display_name=account.display_name, person_id=account.anchor, basis=KEPT_OUT,
            classification=classification, owner=owner,
            last_reviewed=datetime.fromisoformat(decision.decided_at).date(), decision=decision))
    return rows


def open_grants(job: ReviewJob) -> dict[tuple[str, str], int]:
    """(share, person_id) -> the latest unexpired grant: what a Change expiry decision changes."""
    if not job.section("access"):
        return {}
    now = datetime.now(UTC)
    return {(g.share, g.person_id): g.grant_id
            for g in sorted(Access(job).records.open_grants(), key=lambda g: g.expires_at) if g.active(now)}


def collect_review(job: ReviewJob,
                   connectors: Mapping[str, Connector]) -> tuple[ReviewInput, dict[str, dict[str, str]]]:
    """Everything the workbook shows, read from the live job; plus the share -> directory -> group map."""
    options = report_options(job)
    people = job.read_people().people
    snapshots = job.snapshots(connectors)
    restricted, groups = share_memberships(job, people, snapshots)
    review = ReviewInput(
        today=job.today, people=people, snapshots=snapshots, role_holders=role_holders(connectors),
        restricted=restricted, audit=job.store.audit_entries(since=audit_since(job.today, options)),
        options=options, password_limits=password_limits(job, people),
        extra_max_days={kind: rules.max_days for kind, rules in job.config.mapping.extra.items()
                        if rules.max_days is not None},
        data_going=data_going(
            people, snapshots, job.config.mapping, job.store.disabled_on(), job.today,
            licensed_by_group={name for name, c in connectors.items() if c.capabilities.licence_groups},
            kept_at_delete={name: c.data_kept_at_delete() for name, c in connectors.items()}),
    )
    return review, groups
