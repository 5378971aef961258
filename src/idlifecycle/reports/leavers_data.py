"""Leavers whose data goes soon: the delete, or the licence (and with it the mailbox), due within 30 days (pure).

Counted as the planner counts (`DirectoryPlanner.leave`): from the disable day the store records, with the
kind's `retention_days` and its `licence_kept_days` in that directory (`KindRules.licence_days`); a licence
is counted only in a directory that licenses by group, the only place the tool takes one away.

A delete that a directory precedes with a transfer of the leaver's files (Google with `transfer_to`) is still
listed, with what is transferred and to whom: the account and what the transfer does not carry (Gmail:
the Data Transfer API moves Drive and Calendar only) still go, and the SIRO signs off on both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from datetime import date, timedelta

from idlifecycle.mapping import MappingRules
from idlifecycle.model import Person, Snapshot

SOON_DAYS = 30


def _uk(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def data_going(people: Sequence[Person], snapshots: Mapping[str, Snapshot], rules: MappingRules,
               disabled_on: Mapping[tuple[str, str], date], today: date, *,
               licensed_by_group: Set[str] = frozenset(),
               kept_at_delete: Mapping[str, str] | None = None) -> dict[tuple[str, str], str]:
    """(directory, account key) -> what goes and when, for each disabled leaver whose delete or licence
    removal falls due within `SOON_DAYS` (an overdue delete, not yet applied, too).

    `licensed_by_group`: the directories whose licences the tool removes (Entra's licence groups);
    `kept_at_delete`: directory -> what of a leaver's data it keeps through the delete, in words
    (`Connector.data_kept_at_delete`)."""
    by_id = {p.person_id: p for p in people}
    soon = today + timedelta(days=SOON_DAYS)
    going: dict[tuple[str, str], str] = {}
    for directory, snapshot in snapshots.items():
        kept = (kept_at_delete or {}).get(directory, "")
        for account in snapshot.accounts:
            disabled = disabled_on.get((directory, account.anchor or ""))
            person = by_id.get(account.anchor or "")
            if account.enabled or disabled is None or person is None:
                continue
            try:
                kind_rules = rules.for_person(person)  # an extra person by their own kind's days
            except KeyError:  # a kind the mapping no longer has: nothing to count from
                continue
            delete = disabled + timedelta(days=kind_rules.retention_days)
            licence_days = kind_rules.licence_days(directory)
            licence = disabled + timedelta(days=licence_days)
            if delete <= soon:
                going[(directory, account.key)] = (f"disabled on {_uk(disabled)}; deleted on or after "
                                                   f"{_uk(delete)} ({kind_rules.retention_days}-day retention)"
                                                   + (f"; {kept}" if kept else ""))
            elif (directory in licensed_by_group and kind_rules.licences
                  and 0 < licence_days < kind_rules.retention_days and today <= licence <= soon):
                going[(directory, account.key)] = (f"disabled on {_uk(disabled)}; licence (mailbox, files) "
                                                   f"removed on {_uk(licence)}")
    return going
