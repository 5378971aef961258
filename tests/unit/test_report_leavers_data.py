"""The access review's Exceptions sheet lists leavers whose data goes within 30 days: the delete at the end of
retention, or the licence (mailbox, OneDrive) at `licence_kept_days` after the disable."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from idlifecycle.model import Kind, Snapshot
from idlifecycle.reports.access_review import EXCEPTIONS, ExceptionKind, ReportOptions, ReviewInput, build_review
from idlifecycle.reports.leavers_data import data_going
from tests.factories import account, pupil, school_rules, staff

TODAY = date(2026, 11, 23)


def rules():
    school = school_rules()
    return replace(school, kinds={**school.kinds,
                                  Kind.STAFF: replace(school.kinds[Kind.STAFF], licence_kept_days=90)})


def exception_rows(people, accounts, disabled_on):
    snapshots = {"entra": Snapshot("entra", tuple(accounts), (), frozenset())}
    going = data_going(people, snapshots, rules(), disabled_on, TODAY)
    data = ReviewInput(TODAY, people, snapshots, {}, [], [], ReportOptions(), data_going=going)
    sheet = next(s for s in build_review(data) if s.name == EXCEPTIONS)
    return [(row[0], row[2], row[6]) for row in sheet.tables[0].rows if row[0] == ExceptionKind.DATA_GOING]


def test_a_pupil_deleted_within_30_days_and_a_staff_licence_removed_within_30_days_are_listed():
    amy = pupil("P1", "Amy", "Brown", leave_date=date(2026, 2, 1))
    jane = staff("S1", "Jane", "Doe", leave_date=date(2026, 9, 1))
    rows = exception_rows([amy, jane], [
        account("k1", "16abrown", anchor="P1", directory="entra", enabled=False),
        account("k2", "jdoe", anchor="S1", directory="entra", enabled=False, domain="staff.example.sch.uk"),
    ], {("entra", "P1"): TODAY - timedelta(days=250), ("entra", "S1"): TODAY - timedelta(days=70)})
    assert rows == [
        (ExceptionKind.DATA_GOING, "16abrown", "disabled on 18/03/2026; deleted on or after 13/12/2026 "
                                               "(270-day retention)"),
        (ExceptionKind.DATA_GOING, "jdoe", "disabled on 14/09/2026; licence (mailbox, files) removed on 13/12/2026"),
    ]


def test_leavers_whose_data_stays_longer_or_still_enabled_are_not_listed():
    amy = pupil("P1", "Amy", "Brown", leave_date=date(2026, 2, 1))
    jane = staff("S1", "Jane", "Doe", leave_date=date(2026, 9, 1))
    bob = staff("S2", "Bob", "Ray", leave_date=date(2026, 9, 1))
    rows = exception_rows([amy, jane, bob], [
        account("k1", "16abrown", anchor="P1", directory="entra", enabled=False),
        account("k2", "jdoe", anchor="S1", directory="entra", enabled=False, domain="staff.example.sch.uk"),
        account("k3", "bray", anchor="S2", directory="entra", enabled=True, domain="staff.example.sch.uk"),
    ], {("entra", "P1"): TODAY - timedelta(days=200), ("entra", "S1"): TODAY - timedelta(days=95),
        ("entra", "S2"): TODAY - timedelta(days=340)})
    assert rows == []
