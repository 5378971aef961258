"""The access review's Exceptions sheet lists leavers whose data goes within 30 days: the delete at the end of
retention, or the licence (mailbox, OneDrive) at `licence_kept_days` after the disable (that directory's own
where the mapping sets one, and only where the tool licenses by group); a delete preceded by a transfer
says what is transferred, and to whom."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from idlifecycle.model import Kind, Snapshot
from idlifecycle.reports.access_review import EXCEPTIONS, ExceptionKind, ReportOptions, ReviewInput, build_review
from idlifecycle.reports.leavers_data import data_going
from tests.factories import account, pupil, school_rules, staff

TODAY = date(2026, 11, 23)


def rules(**in_directories):
    school = school_rules()
    return replace(school, kinds={**school.kinds, Kind.STAFF: replace(
        school.kinds[Kind.STAFF], licence_kept_days=90, licence_kept_days_in=in_directories)})


def exception_rows(people, accounts, disabled_on, *, mapping=None, kept_at_delete=None):
    snapshots = {}
    for directory in sorted({a.directory for a in accounts}):
        snapshots[directory] = Snapshot(directory, tuple(a for a in accounts if a.directory == directory), (),
                                        frozenset())
    going = data_going(people, snapshots, mapping or rules(), disabled_on, TODAY,
                       licensed_by_group={"entra", "trust"}, kept_at_delete=kept_at_delete)
    data = ReviewInput(TODAY, people, snapshots, {}, [], [], ReportOptions(), data_going=going)
    sheet = next(s for s in build_review(data) if s.name == EXCEPTIONS)
    return [(row[0], row[1], row[2], row[6]) for row in sheet.tables[0].rows
            if row[0] == ExceptionKind.DATA_GOING]


def test_a_pupil_deleted_within_30_days_and_a_staff_licence_removed_within_30_days_are_listed():
    amy = pupil("P1", "Amy", "Brown", leave_date=date(2026, 2, 1))
    jane = staff("S1", "Jane", "Doe", leave_date=date(2026, 9, 1))
    rows = exception_rows([amy, jane], [
        account("k1", "16abrown", anchor="P1", directory="entra", enabled=False),
        account("k2", "jdoe", anchor="S1", directory="entra", enabled=False, domain="staff.example.sch.uk"),
    ], {("entra", "P1"): TODAY - timedelta(days=250), ("entra", "S1"): TODAY - timedelta(days=70)})
    assert rows == [
        (ExceptionKind.DATA_GOING, "entra", "16abrown", "disabled on 18/03/2026; deleted on or after 13/12/2026 "
                                                        "(270-day retention)"),
        (ExceptionKind.DATA_GOING, "entra", "jdoe",
         "disabled on 14/09/2026; licence (mailbox, files) removed on 13/12/2026"),
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


def _jane_in(*directories):
    return [account(f"k-{d}", "jdoe", anchor="S1", directory=d, enabled=False, domain="staff.example.sch.uk")
            for d in directories]


def test_a_directory_keeping_the_licence_its_own_number_of_days_is_counted_by_them():
    jane = staff("S1", "Jane", "Doe", leave_date=date(2026, 9, 1))
    disabled = {(d, "S1"): TODAY - timedelta(days=70) for d in ("entra", "trust")}
    # entra keeps the kind's 90 days (removed in 20 days); the trust's tenant keeps 200 (not yet due).
    rows = exception_rows([jane], _jane_in("entra", "trust"), disabled, mapping=rules(trust=200))
    assert rows == [(ExceptionKind.DATA_GOING, "entra", "jdoe",
                     "disabled on 14/09/2026; licence (mailbox, files) removed on 13/12/2026")]


def test_no_licence_removal_is_listed_where_the_directory_does_not_license_by_group():
    jane = staff("S1", "Jane", "Doe", leave_date=date(2026, 9, 1))
    rows = exception_rows([jane], _jane_in("google"), {("google", "S1"): TODAY - timedelta(days=70)})
    assert rows == []


def test_a_delete_preceded_by_a_transfer_is_still_listed_saying_what_is_transferred_and_to_whom():
    """The account and its Gmail still go at the delete: the SIRO sees it, with where Drive and Calendar went."""
    amy = pupil("P1", "Amy", "Brown", leave_date=date(2026, 2, 1))
    accounts = [account(f"k-{d}", "16abrown", anchor="P1", directory=d, enabled=False) for d in ("entra", "google")]
    kept = {"google": "Drive and Calendar transferred to archive@school.example before the delete (Gmail is not)"}
    rows = exception_rows([amy], accounts, {(d, "P1"): TODAY - timedelta(days=250) for d in ("entra", "google")},
                          kept_at_delete=kept)
    assert rows == [
        (ExceptionKind.DATA_GOING, "entra", "16abrown",
         "disabled on 18/03/2026; deleted on or after 13/12/2026 (270-day retention)"),
        (ExceptionKind.DATA_GOING, "google", "16abrown",
         "disabled on 18/03/2026; deleted on or after 13/12/2026 (270-day retention); Drive and Calendar "
         "transferred to archive@school.example before the delete (Gmail is not)"),
    ]
