"""The SIRO's Keep and Remove decisions, read back from the access-review workbook and turned into Changes.

The workbook is a file someone may have edited by hand, so nothing in it is trusted: each decided
row must name a share, a directory, that share's access group in that directory and an account
that exists there. Every problem is reported with its sheet row number, all at once, and nothing
is planned until the sheet is clean.

Every decision (Keep with its note, Remove, or Change expiry of a grant) is then recorded as the
standing one for that share, directory and person (`record_decisions`): the nightly plan honours a
Remove although a baseline rule would add the person back, until a later review marks Keep (a
grant approved later puts them in for its term).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from idlifecycle.access.records import AccessRecords
from idlifecycle.errors import UserError
from idlifecycle.model import Account, Action, Change, Snapshot
from idlifecycle.reports.access_review import CHANGE_EXPIRY, KEEP, REMOVE, RESTRICTED, RestrictedAccessRow
from idlifecycle.store import AccessDecision, Store, utcnow

REQUIRED_HEADERS = ("Share", "Directory", "Group", "Person ID", "Username", "Account key", "Decision")
NOTE = "Note"
"""The SIRO's reason for a decision; optional, so a workbook made before it existed still reads."""
REVIEWED_EVENT = "access-reviewed"
"""Audit event written when the SIRO's decisions are applied; it dates each row's last review."""
DECIDED_EVENT = "access-decision"
"""Audit event for each decision applied, with who decided, the share, the person and the review."""


@dataclass(frozen=True)
class Decision:
    """One row of the Restricted access sheet the SIRO marked Keep, Remove or Change expiry."""

    row: int
    """The row number as the SIRO sees it in the sheet."""
    share: str
    directory: str
    group: str
    person_id: str | None
    username: str
    member_key: str
    choice: str
    """KEEP, REMOVE or CHANGE_EXPIRY."""
    note: str = ""
    expires: str = ""
    """Change expiry: the new last day of the grant (ISO), from the row's Expires cell."""
    grant_id: int | None = None
    """Change expiry: the grant it changes, filled in when the row is checked against the job."""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        # A spreadsheet that re-saved the file may have turned an id such as 1234 into a number.
        return str(int(value))
    return str(value).strip()


def read_decisions(path: Path) -> list[Decision]:
    """The decided rows of the workbook's Restricted access sheet; UserError on a sheet that is not clean."""
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; name the access-review workbook the SIRO returned") from None
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as error:
        raise UserError(f"{path}: not an Excel workbook (.xlsx) ({error}); save it as .xlsx and try again") from None
    try:
        if RESTRICTED not in book.sheetnames:
            raise UserError(f"{path}: no sheet named {RESTRICTED!r}; was this workbook made by "
                            "`idlifecycle report access-review`?")
        rows = book[RESTRICTED].iter_rows(values_only=True)
        header = next(rows, None) or ()
        columns = {_text(v): i for i, v in enumerate(header) if v is not None}
        missing = [h for h in REQUIRED_HEADERS if h not in columns]
        if missing:
            raise UserError(f"{path}: sheet {RESTRICTED!r} row 1: the column(s) {', '.join(missing)} are missing; "
                            "put the header row back as it was")
        decisions: list[Decision] = []
        problems: list[str] = []
        for number, values in enumerate(rows, start=2):
            def cell(name: str, values: Sequence[Any] = values) -> str:
                index = columns.get(name, len(values))
                return _text(values[index]) if index < len(values) else ""

            choice = cell("Decision")
            known = {KEEP.lower(): KEEP, REMOVE.lower(): REMOVE, CHANGE_EXPIRY.lower(): CHANGE_EXPIRY}
            if choice.lower() in known:
                expires = ""
                if known[choice.lower()] == CHANGE_EXPIRY:
                    index = columns.get("Expires", len(values))
                    expires = _day(values[index] if index < len(values) else None) or ""
                    if not expires:
                        problems.append(f"row {number}: {CHANGE_EXPIRY} needs the new end date in Expires "
                                        f"(dd/mm/yyyy), not {cell('Expires')!r}")
                        continue
                decisions.append(Decision(number, cell("Share"), cell("Directory"), cell("Group"),
                                          cell("Person ID") or None, cell("Username"), cell("Account key"),
                                          known[choice.lower()], cell(NOTE), expires))
            elif choice:
                problems.append(f"row {number}: Decision {choice!r} is neither {KEEP}, {REMOVE} nor {CHANGE_EXPIRY}")
    finally:
        book.close()
    _raise(path, problems)
    return decisions


def _day(value: Any) -> str | None:
    """An Expires cell as an ISO date: a date cell, or text as dd/mm/yyyy or yyyy-mm-dd; None if neither."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = _text(value)
    for pattern in ("%d/%m/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, pattern).date().isoformat()
        except ValueError:
            continue
    return None


def _raise(path: Path, problems: Sequence[str]) -> None:
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        raise UserError(f"{path}: sheet {RESTRICTED!r} has {len(problems)} problem(s); fix them and run again:\n"
                        f"{lines}")


def share_groups(rows: Sequence[RestrictedAccessRow]) -> dict[str, dict[str, str]]:
    """share -> directory -> access group name, from the current restricted-access memberships."""
    groups: dict[str, dict[str, str]] = {}
    for row in rows:
        groups.setdefault(row.share, {})[row.directory] = row.group
    return groups


@dataclass(frozen=True)
class Removals:
    changes: list[Change]
    notes: list[str]
    """Rows that need no change (the person already left the group), said in words."""
    decided: list[Decision]
    """Every decision checked against the directories, with the account's own person ID and username."""


def _checked_row(
    d: Decision, *, snapshots: Mapping[str, Snapshot], accounts: Mapping[str, Mapping[str, Account]],
    shares: Mapping[str, Mapping[str, str]], grants: Mapping[tuple[str, str], int], on: date,
) -> tuple[Decision, Account] | str:
    """The decided row with its account (a Change expiry row with its grant), or the row's problem."""
    where = f"row {d.row}"
    if d.share not in shares:
        return (f"{where}: share {d.share!r} is not a restricted share of this job "
                f"(known: {', '.join(sorted(shares)) or 'none'})")
    if d.directory not in snapshots:
        return (f"{where}: directory {d.directory!r} is not one of this job's directories "
                f"({', '.join(sorted(snapshots))})")
    expected = shares[d.share].get(d.directory)
    if expected is None or expected != d.group:
        return (f"{where}: group {d.group!r} is not the access group of share {d.share!r} in "
                f"{d.directory} (expected {expected!r})")
    account = accounts[d.directory].get(d.member_key)
    if account is None:
        return f"{where}: {d.directory} has no account with key {d.member_key!r} (username {d.username!r})"
    if d.person_id is not None and account.anchor != d.person_id:
        return (f"{where}: person ID {d.person_id!r} does not match account {account.username!r} "
                f"in {d.directory} (its person ID is {account.anchor!r})")
    if d.choice == CHANGE_EXPIRY:
        grant_id = grants.get((d.share, account.anchor or ""))
        if grant_id is None:
            return (f"{where}: {account.username} holds no grant for {d.share!r} whose expiry could "
                    f"change; mark {KEEP} or {REMOVE}")
        if date.fromisoformat(d.expires) <= on:
            return (f"{where}: the new expiry {d.expires} is not after today ({on.isoformat()}); "
                    f"mark {REMOVE} to end the access now")
        d = replace(d, grant_id=grant_id)
    return d, account


def plan_removals(
    path: Path, decisions: Sequence[Decision], *, snapshots: Mapping[str, Snapshot],
    shares: Mapping[str, Mapping[str, str]], siro: str, on: date,
    grants: Mapping[tuple[str, str], int] | None = None,
) -> Removals:
    """REMOVE_MEMBER changes (restricted, so the guards count them) for each valid Remove decision.

    `shares` maps share -> directory -> access group name as the job defines them now; a row
    naming anything else is an error, so an edited sheet can never remove other memberships. Keep
    rows are checked the same way, since recording one lifts an earlier Remove for that person.
    A Change expiry row must name a person holding a grant for the share (`grants`: (share,
    person_id) -> the latest open grant) and a date after `on`.
    """
    problems: list[str] = []
    changes: list[Change] = []
    notes: list[str] = []
    decided: list[Decision] = []
    seen: set[tuple[str, str, str]] = set()
    reason = f"removed at the access review by {siro} on {on.isoformat()}"
    accounts = {name: {a.key: a for a in s.accounts} for name, s in snapshots.items()}
    members = {name: {g.name: g.members for g in s.groups} for name, s in snapshots.items()}
    for row in decisions:
        checked = _checked_row(row, snapshots=snapshots, accounts=accounts, shares=shares, grants=grants or {},
                               on=on)
        if isinstance(checked, str):
            problems.append(checked)
            continue
        d, account = checked
        decided.append(replace(d, person_id=account.anchor, username=account.username))
        if d.choice != REMOVE:
            continue
        if account.key not in members[d.directory].get(d.group, {}):
            notes.append(f"row {d.row}: {account.display_name} ({account.username}) is no longer in "
                         f"{d.group} in {d.directory}: nothing to remove")
            continue
        if (d.directory, d.group, account.key) in seen:
            continue
        seen.add((d.directory, d.group, account.key))
        changes.append(Change(
            directory=d.directory, action=Action.REMOVE_MEMBER, person_id=account.anchor,
            username=account.username, reason=f"{reason} ({d.share})", target=account.key,
            group=d.group, restricted=True,
        ))
    _raise(path, problems)
    return Removals(changes, notes, decided)


def decisions_to_json(decisions: Sequence[Decision], *, siro: str, review: str) -> dict[str, Any]:
    """What a saved access-review plan carries so `idlifecycle apply` records the decisions it applies."""
    return {"siro": siro, "review": review, "rows": [asdict(d) for d in decisions]}


def decisions_from_json(data: Mapping[str, Any]) -> tuple[list[Decision], str, str]:
    """The decisions, the SIRO and the review workbook's name from `decisions_to_json`."""
    return [Decision(**row) for row in data.get("rows", [])], str(data["siro"]), str(data["review"])


def record_decisions(store: Store, decisions: Sequence[Decision], *, siro: str, review: str,
                     plan_id: str = "") -> None:
    """Keep each decision as the standing one for its share, directory and person, each audited.

    One transaction: the decisions, an audit entry per decision and the review's entry (which dates
    each row's last review) are all kept or none is. A saved plan (`plan_id`) records its decisions
    once: applying the same file again does not re-date them.
    """
    at = utcnow().isoformat()
    records = AccessRecords(store)
    with store.transaction():
        if plan_id and any(e.event == REVIEWED_EVENT and e.data.get("plan_id") == plan_id
                           for e in store.audit_entries()):
            return
        for d in decisions:
            store.record_access_decision(AccessDecision(
                share=d.share, directory=d.directory, group=d.group, person_id=d.person_id, member_key=d.member_key,
                username=d.username, choice=d.choice, note=d.note, decided_by=siro, decided_at=at, review=review))
            store.audit(DECIDED_EVENT, {"share": d.share, "directory": d.directory, "group": d.group,
                                        "person_id": d.person_id, "username": d.username, "decision": d.choice,
                                        "note": d.note, "review": review}, actor=siro)
            if d.choice == CHANGE_EXPIRY and d.grant_id is not None:
                # The grant lasts to the end of the day the SIRO wrote.
                until = datetime.combine(date.fromisoformat(d.expires) + timedelta(days=1), time(), UTC)
                if records.change_expiry(d.grant_id, until):
                    store.audit("grant-expiry-changed", {"grant_id": d.grant_id, "share": d.share,
                                                         "person_id": d.person_id, "expires": until.isoformat(),
                                                         "review": review}, actor=siro)
        store.audit(REVIEWED_EVENT, {
            "workbook": review, "siro": siro, "plan_id": plan_id,
            "rows": [[d.share, d.directory, d.member_key, d.choice] for d in decisions],
        }, actor=siro)

