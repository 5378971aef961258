"""The SIRO's annual access review: who has which account, who holds restricted access and why,
who holds admin roles, what looks wrong, and what changed this year — built as plain sheets.

`build_review` is pure: it takes the people, the directory snapshots, the role holders, the
restricted-access memberships and the audit entries, and returns `Sheet` values that
`workbook.write_xlsx` / `workbook.write_csv` write out. Nothing here reads a clock or a server.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from idlifecycle import extra_people
from idlifecycle.model import Account, Kind, Person, RoleHolder, Snapshot
from idlifecycle.reports.changes_sheet import changes_sheet
from idlifecycle.reports.class_resets_sheet import class_resets_sheet
from idlifecycle.reports.privileged import (
    NO_SECOND_FACTOR_FINDING,
    all_role_holders,
    flag,
    second_factor_cell,
    without_second_factor,
)
from idlifecycle.reports.workbook import Column, ColumnKind, Sheet, Table, Value, score_band
from idlifecycle.store import AccessDecision, AuditEntry

SUMMARY = "Summary"
PEOPLE = "People and accounts"
RESTRICTED = "Restricted access"
PRIVILEGED = "Privileged roles"
PRIVILEGED_NOT_MANAGED = "privileged, not managed"
EXCEPTIONS = "Exceptions"

KEEP = "Keep"
REMOVE = "Remove"
CHANGE_EXPIRY = "Change expiry"
"""Keeps a grant with the new end date the SIRO wrote in its Expires cell."""
KEPT_OUT = "kept out by the SIRO's decision"
"""The basis of a row for someone a standing Remove keeps out of the group (they are not a member)."""

RESTRICTED_COLUMNS = (
    Column("Share", 24), Column("Classification", 14), Column("Owner", 20), Column("Directory", 11),
    Column("Group", 24), Column("Person ID", 12), Column("Name", 24), Column("Username", 18),
    Column("Account key", 14), Column("Basis", 22), Column("Approver", 20),
    Column("Approved at", 16, ColumnKind.DATETIME), Column("Expires", 12, ColumnKind.DATE),
    Column("Last reviewed", 13, ColumnKind.DATE), Column("Decision", 14, choices=(KEEP, REMOVE, CHANGE_EXPIRY)),
    Column("Note", 30), Column("Earlier decision", 40),
)
"""The Restricted access sheet; `decisions` reads the SIRO's choices back by these headers."""

MANY = 5
"""More findings of one kind than this make the likelihood 3 (likely)."""
REVIEW_INTERVAL_DAYS = 365


@dataclass(frozen=True)
class RestrictedAccessRow:
    """One member of one restricted share's access group in one directory, and why they are there."""

    share: str
    directory: str
    group: str
    """The access group's name in that directory."""
    member_key: str
    """The member's account key in that directory (the REMOVE_MEMBER target)."""
    username: str
    display_name: str
    person_id: str | None
    basis: str
    """Why they are a member: "baseline: <rule>" or "grant"; "not approved" for drift."""
    classification: str = "restricted"
    owner: str = ""
    """The Information Asset Owner."""
    approver: str = ""
    approved_at: datetime | None = None
    expires: date | None = None
    last_reviewed: date | None = None
    decision: AccessDecision | None = None
    """The SIRO's standing decision for this person, share and directory, from an earlier review."""


def earlier_decision(decision: AccessDecision | None) -> str | None:
    """The decision in words, dated, for the next review: "Remove on 02/12/2026 by … (review.xlsx): note"."""
    if decision is None:
        return None
    day = uk_date(datetime.fromisoformat(decision.decided_at).date())
    return (f"{decision.choice} on {day} by {decision.decided_by} ({decision.review})"
            + (f": {decision.note}" if decision.note else ""))


@dataclass(frozen=True)
class ReportOptions:
    """The job's `[report]` section."""

    school_name: str = ""
    siro_name: str = ""
    no_sign_in_days: int = 90
    password_max_age_days: Mapping[str, int] = field(default_factory=dict)
    """Kind ("staff" / "pupil") -> the longest a password may go unchanged; absent or 0: no limit."""
    year_starts: tuple[int, int] = (9, 1)
    """(month, day) the review year starts: the school year by default."""
    licence_groups: frozenset[str] = frozenset()
    """Groups that assign a licence (Entra group-based licensing), shown in the Licence column."""
    summary_to: tuple[str, ...] = ()
    """Who gets the summary after each nightly run."""


@dataclass(frozen=True)
class ReviewInput:
    today: date
    people: Sequence[Person]
    snapshots: Mapping[str, Snapshot]
    role_holders: Mapping[str, Sequence[RoleHolder]]
    restricted: Sequence[RestrictedAccessRow]
    audit: Sequence[AuditEntry]
    """Audit entries since the review year started."""
    options: ReportOptions
    password_limits: Mapping[str, int] = field(default_factory=dict)
    """person_id -> maximum password age in days from the password policy; wins over the options."""
    extra_max_days: Mapping[str, int] = field(default_factory=dict)  # [extra.<kind>] -> its max_days
    data_going: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """(directory, account key) -> a leaver's delete or licence removal due within 30 days (`leavers_data`)."""


class ExceptionKind(StrEnum):
    LEAVER_ENABLED = "Leaver still enabled"
    NOT_IN_FEED = "Matches nobody in the feed"
    NO_ANCHOR = "No person ID on the account"
    NO_SIGN_IN = "No sign-in for a long time"
    PASSWORD_OLD = "Password older than policy"  # noqa: S105 - a finding's name, not a secret
    PASSWORD_NEVER_EXPIRES = "Password never expires"  # noqa: S105 - a finding's name
    EXTRA_PAST_MAXIMUM = "Outside the MIS past its maximum"
    DATA_GOING = "Leaver's data goes within 30 days"


@dataclass(frozen=True)
class ExceptionRow:
    kind: ExceptionKind
    account: Account
    detail: str


@dataclass(frozen=True)
class Finding:
    """One line of the risk assessment: impact and likelihood 1–3 each, score out of 9."""

    title: str
    found: int
    impact: int
    action: str

    @property
    def likelihood(self) -> int:
        if self.found == 0:
            return 1
        return 2 if self.found <= MANY else 3

    @property
    def score(self) -> int:
        return self.impact * self.likelihood


def review_year_start(today: date, year_starts: tuple[int, int]) -> date:
    """The most recent start of the review year on or before `today` (1 September by default)."""
    month, day = year_starts
    start = date(today.year, month, day)
    return start if start <= today else date(today.year - 1, month, day)


def uk_date(value: date) -> str:
    return value.strftime("%d/%m/%Y")


def feed_status(person: Person, today: date) -> str:
    if person.leave_date is not None and person.leave_date < today:
        return f"Left {uk_date(person.leave_date)}"
    if person.start_date is not None and person.start_date > today:
        return f"Starts {uk_date(person.start_date)}"
    return "Current"


def is_leaver(person: Person, today: date) -> bool:
    return person.leave_date is not None and person.leave_date < today


def _days_since(moment: datetime | None, today: date) -> int | None:
    return None if moment is None else (today - moment.date()).days


def find_exceptions(data: ReviewInput) -> list[ExceptionRow]:
    """Every account that breaks a rule the school's policy states, with the reason in words."""
    people = {p.person_id: p for p in data.people}
    today = data.today
    options = data.options
    limits = [d for d in options.password_max_age_days.values() if d > 0] + list(data.password_limits.values())
    found: list[ExceptionRow] = []
    for snapshot in _in_order(data.snapshots):
        for account in sorted(snapshot.accounts, key=lambda a: a.username.lower()):
            person = people.get(account.anchor) if account.anchor else None
            if account.privileged:
                pass  # an admin account, on the Privileged roles sheet: not an unmatched person
            elif account.anchor is None:
                found.append(ExceptionRow(ExceptionKind.NO_ANCHOR, account,
                                          "no MIS id on the account, so nobody can say whose it is"))
            elif person is None:
                found.append(ExceptionRow(ExceptionKind.NOT_IN_FEED, account,
                                          f"person ID {account.anchor} is not in the MIS feed"))
            if person is not None and account.enabled and person.leave_date is not None and is_leaver(person, today):
                found.append(ExceptionRow(
                    ExceptionKind.LEAVER_ENABLED, account,
                    f"left on {uk_date(person.leave_date)} ({(today - person.leave_date).days} days ago)"))
            if person is not None and (past := extra_people.past_maximum(person, data.extra_max_days)):
                found.append(ExceptionRow(ExceptionKind.EXTRA_PAST_MAXIMUM, account, past))
            starter = person is not None and person.start_date is not None and person.start_date > today
            if account.enabled and not starter:
                idle = _days_since(account.last_sign_in, today)
                age = _days_since(account.created, today)
                if idle is not None and idle > options.no_sign_in_days and account.last_sign_in is not None:
                    found.append(ExceptionRow(ExceptionKind.NO_SIGN_IN, account,
                                              f"last signed in {uk_date(account.last_sign_in.date())} "
                                              f"({idle} days ago)"))
                elif idle is None and age is not None and age > options.no_sign_in_days and account.created:
                    found.append(ExceptionRow(ExceptionKind.NO_SIGN_IN, account,
                                              f"never signed in; created {uk_date(account.created.date())}"))
            if person is None:
                # Whose account it is is unknown: hold it to the strictest limit the school sets.
                limit = min(limits, default=0)
            else:
                limit = data.password_limits.get(person.person_id) or options.password_max_age_days.get(
                    str(person.kind), 0)
            password_age = _days_since(account.password_last_set, today)
            if account.enabled and limit > 0 and password_age is not None and password_age > limit:
                found.append(ExceptionRow(ExceptionKind.PASSWORD_OLD, account,
                                          f"password last set {password_age} days ago; policy is {limit} days"))
            if account.password_never_expires:
                found.append(ExceptionRow(ExceptionKind.PASSWORD_NEVER_EXPIRES, account,
                                          "the account is set so its password never expires"))
            going = data.data_going.get((snapshot.directory, account.key))
            if going:
                found.append(ExceptionRow(ExceptionKind.DATA_GOING, account, going))
    return found


def _in_order(snapshots: Mapping[str, Snapshot]) -> list[Snapshot]:
    return [snapshots[name] for name in sorted(snapshots)]


def _groups_by_member(snapshot: Snapshot) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for group in sorted(snapshot.groups, key=lambda g: g.name.lower()):
        for key in group.members:
            groups[key].append(group.name)
    return groups


def build_review(data: ReviewInput) -> list[Sheet]:
    """The seven sheets of the access-review workbook, in the order the SIRO reads them."""
    exceptions = find_exceptions(data)
    return [_summary(data, exceptions), _people_and_accounts(data), _restricted(data), _privileged(data),
            _exceptions(exceptions), changes_sheet(data.audit), class_resets_sheet(data.audit)]


def findings(data: ReviewInput, exceptions: Sequence[ExceptionRow]) -> list[Finding]:
    """The risk-assessment lines, scored impact × likelihood as on the school's own form."""
    counts = Counter(row.kind for row in exceptions)
    today = data.today
    expired = sum(1 for r in data.restricted if r.expires is not None and r.expires < today)
    unreviewed = sum(1 for r in data.restricted
                     if r.last_reviewed is None or (today - r.last_reviewed).days > REVIEW_INTERVAL_DAYS)
    people = {p.person_id: p for p in data.people}
    admin_not_staff = sum(
        1 for holders in data.role_holders.values() for h in holders
        if not _current_staff(people.get(h.anchor) if h.anchor else None, today)
    )
    days = data.options.no_sign_in_days
    return [
        Finding(ExceptionKind.LEAVER_ENABLED, counts[ExceptionKind.LEAVER_ENABLED], 3,
                "Check the leaving date with the office; disable the account if they have gone."),
        Finding("Accounts matching nobody in the MIS feed", counts[ExceptionKind.NOT_IN_FEED], 3,
                "Find out whose account it is; disable it if nobody can say."),
        Finding("Accounts without a person ID", counts[ExceptionKind.NO_ANCHOR], 2,
                "Link each to its person in the MIS, or record why it is a shared or service account."),
        Finding(f"Enabled accounts with no sign-in for over {days} days", counts[ExceptionKind.NO_SIGN_IN], 2,
                "Ask whether the account is still needed; disable it if not."),
        Finding("Passwords older than the policy allows", counts[ExceptionKind.PASSWORD_OLD], 2,
                "Require a password change at next sign-in."),
        Finding("Passwords set never to expire", counts[ExceptionKind.PASSWORD_NEVER_EXPIRES], 2,
                "Turn the setting off unless the account is a documented exception."),
        Finding("Restricted access past its expiry date", expired, 3,
                "Mark Remove on the Restricted access sheet, or renew the grant."),
        Finding(f"Restricted access not reviewed in the last {REVIEW_INTERVAL_DAYS} days", unreviewed, 2,
                "Decide Keep or Remove for each row on the Restricted access sheet."),
        Finding("Administrator roles held by someone not on the current staff list", admin_not_staff, 3,
                "Confirm each is a named member of staff or a documented break-glass account."),
        Finding(NO_SECOND_FACTOR_FINDING, without_second_factor(all_role_holders(data.role_holders, data.snapshots)), 3,
                "Register a second factor for each (and enforce it); see the Privileged roles sheet."),
    ]


def _current_staff(person: Person | None, today: date) -> bool:
    return person is not None and person.kind is Kind.STAFF and not is_leaver(person, today)


def _accounts_table(data: ReviewInput) -> Table:
    by_id = {p.person_id: p for p in data.people}
    account_rows: list[list[Value]] = []
    for snapshot in _in_order(data.snapshots):
        enabled = sum(1 for a in snapshot.accounts if a.enabled)
        leavers = sum(1 for a in snapshot.accounts
                      if a.anchor in by_id and is_leaver(by_id[a.anchor], data.today))
        unmatched = sum(1 for a in snapshot.accounts if a.anchor not in by_id)
        account_rows.append([snapshot.directory, enabled, len(snapshot.accounts) - enabled, leavers, unmatched,
                             len(snapshot.accounts)])
    number = ColumnKind.NUMBER
    return Table(
        (Column("Directory", 44), Column("Enabled", 13, number), Column("Disabled", 13, number),
         Column("Of leavers", 13, number), Column("Matching nobody in the feed", 13, number),
         Column("Total", 13, number)),
        account_rows, title="Accounts in each directory",
    )


def _summary(data: ReviewInput, exceptions: Sequence[ExceptionRow]) -> Sheet:
    today = data.today
    start = review_year_start(today, data.options.year_starts)
    school = data.options.school_name
    heading = (
        f"Access review {start.year}/{(start.year + 1) % 100:02d}" + (f": {school}" if school else ""),
        f"Produced on {uk_date(today)}; changes since {uk_date(start)}.",
    )
    people_rows: list[list[Value]] = []
    for kind in Kind:
        of_kind = [p for p in data.people if p.kind is kind]
        statuses = Counter(feed_status(p, today).split(" ")[0] for p in of_kind)
        people_rows.append([kind.value.capitalize(), statuses["Current"], statuses["Starts"], statuses["Left"],
                            len(of_kind)])
    people_table = Table(
        (Column("Kind", 44), Column("Current", 13, ColumnKind.NUMBER), Column("Starting later", 13, ColumnKind.NUMBER),
         Column("Left", 13, ColumnKind.NUMBER), Column("Total", 13, ColumnKind.NUMBER)),
        people_rows, title="People in the MIS feed",
    )
    accounts_table = _accounts_table(data)
    number = ColumnKind.NUMBER
    finding_rows: list[list[Value]] = [
        [f.title, f.found, f.impact, f.likelihood, f.score, score_band(f.score).capitalize(), f.action]
        for f in findings(data, exceptions)
    ]
    findings_table = Table(
        (Column("Finding", 44), Column("Found", 13, number), Column("Impact (1–3)", 13, number),
         Column("Likelihood (1–3)", 13, number), Column("Score (out of 9)", 13, ColumnKind.SCORE),
         Column("Rating", 13), Column("What to do", 60)),
        finding_rows, title="Findings",
    )
    sign_off = Table(
        (Column("", 44), Column("Senior Information Risk Owner (SIRO)", 13, span=4)),
        [["Name", data.options.siro_name or None], ["Date", None], ["Signature", None]],
        title="Sign-off", min_row_height=30,
    )
    return Sheet(
        SUMMARY, (people_table, accounts_table, findings_table, sign_off), heading=heading,
        notes=(
            "Impact and likelihood are scored 1 (low) to 3 (high); the score is impact × likelihood, out of 9:",
            "1–2 low (green), 3–4 medium (amber), 6–9 high (red). Likelihood: 1 none found, "
            f"2 one to {MANY} found, 3 more than {MANY}.",
        ),
    )


PEOPLE_COLUMNS = (
    Column("Person ID", 12), Column("Name", 24), Column("Kind", 8), Column("Year", 6), Column("Reg group", 10),
    Column("Feed status", 16), Column("Directory", 11), Column("Username", 18), Column("Sign-in name", 30),
    Column("Account status", 14), Column("Created", 12, ColumnKind.DATE),
    Column("Last sign-in", 17, ColumnKind.DATETIME),
    Column("Password last set", 17, ColumnKind.DATETIME), Column("OU / org unit", 24), Column("Licence", 20),
    Column("Groups", 50),
)


def _people_and_accounts(data: ReviewInput) -> Sheet:
    today = data.today
    snapshots = _in_order(data.snapshots)
    groups = {s.directory: _groups_by_member(s) for s in snapshots}
    by_anchor: dict[str, list[Account]] = defaultdict(list)
    unmatched: list[Account] = []
    known = {p.person_id for p in data.people}
    for snapshot in snapshots:
        for account in snapshot.accounts:
            if account.anchor in known:
                by_anchor[account.anchor].append(account)
            else:
                unmatched.append(account)
    licence_groups = data.options.licence_groups

    def account_cells(account: Account) -> list[Value]:
        member_of = groups[account.directory].get(account.key, [])
        licences = [g for g in member_of if g in licence_groups]
        if account.attributes.get("licence"):
            licences.append(account.attributes["licence"])
        return [
            account.directory, account.username, account.login, "Enabled" if account.enabled else "Disabled",
            account.created.date() if account.created else None, account.last_sign_in, account.password_last_set,
            account.container, ", ".join(licences), ", ".join(member_of),
        ]

    rows: list[list[Value]] = []
    for person in sorted(data.people, key=lambda p: (p.last_name.lower(), p.first_name.lower(), p.person_id)):
        person_cells: list[Value] = [
            person.person_id, person.display_name, person.extra_kind or person.kind.value, person.year_group,
            person.registration_group, feed_status(person, today) + extra_people.review_note(person),
        ]
        accounts = sorted(by_anchor.get(person.person_id, []), key=lambda a: a.directory)
        if not accounts:
            rows.append([*person_cells, None, None, None, "No account", None, None, None, None, None, None])
        rows.extend([*person_cells, *account_cells(a)] for a in accounts)
    for account in sorted(unmatched, key=lambda a: (a.directory, a.username.lower())):
        # An admin account is never matched to a person on purpose: say so, not "No person ID".
        status = (f"Privileged, not managed ({account.privileged})" if account.privileged
                  else "No person ID" if not account.anchor else "Not in feed")
        rows.append([account.anchor, account.display_name, None, None, None, status, *account_cells(account)])
    return Sheet(PEOPLE, (Table(PEOPLE_COLUMNS, rows),))


def _restricted(data: ReviewInput) -> Sheet:
    rows: list[list[Value]] = [
        [r.share, r.classification, r.owner, r.directory, r.group, r.person_id, r.display_name, r.username,
         r.member_key, r.basis, r.approver, r.approved_at, r.expires, r.last_reviewed, None, None,
         earlier_decision(r.decision)]
        for r in sorted(data.restricted, key=lambda r: (r.share.lower(), r.directory, r.display_name.lower()))
    ]
    return Sheet(RESTRICTED, (Table(RESTRICTED_COLUMNS, rows),))


def _privileged(data: ReviewInput) -> Sheet:
    people = {p.person_id: p for p in data.people}
    rows: list[list[Value]] = []
    role_holders = all_role_holders(data.role_holders, data.snapshots)
    for directory in sorted(role_holders):
        for holder in sorted(role_holders[directory], key=lambda h: (h.role.lower(), h.username.lower())):
            person = people.get(holder.anchor) if holder.anchor else None
            if holder.anchor is None:
                on_feed = "No person ID"
            elif person is None:
                on_feed = "Not in feed"
            else:
                on_feed = f"{person.kind.value.capitalize()}: {feed_status(person, data.today)}"
            # Whatever the feed says, the tool leaves every role holder alone (README "Safety").
            rows.append([directory, holder.role, holder.username, holder.display_name, holder.anchor, on_feed,
                         second_factor_cell(holder), flag(holder), PRIVILEGED_NOT_MANAGED])
    columns = (Column("Directory", 11), Column("Role", 32), Column("Username", 20), Column("Name", 26),
               Column("Person ID", 12), Column("In the MIS feed as", 24), Column("Second factor", 24),
               Column("Flag", 28), Column("Managed by idlifecycle", 24))
    return Sheet(PRIVILEGED, (Table(columns, rows),))


def _exceptions(exceptions: Sequence[ExceptionRow]) -> Sheet:
    rows: list[list[Value]] = [
        [str(e.kind), e.account.directory, e.account.username, e.account.display_name, e.account.anchor,
         "Enabled" if e.account.enabled else "Disabled", e.detail]
        for e in exceptions
    ]
    columns = (Column("Exception", 28), Column("Directory", 11), Column("Username", 18), Column("Name", 24),
               Column("Person ID", 12), Column("Account status", 14), Column("Detail", 50))
    return Sheet(EXCEPTIONS, (Table(columns, rows),))


def audit_since(today: date, options: ReportOptions) -> str:
    """The `since` value for `Store.audit_entries`: the start of the review year."""
    return review_year_start(today, options.year_starts).isoformat()

