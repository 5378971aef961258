"""The pure parts of the second-factor column: what Google's 2-Step Verification fields mean, what a cell
says when a directory did not report, and how many admin accounts (not role rows) lack a second factor."""

from __future__ import annotations

from dataclasses import replace

from idlifecycle.connectors.google.snapshot import second_factor
from idlifecycle.model import RoleHolder, Snapshot
from idlifecycle.reports.privileged import (
    NOT_REPORTED,
    all_role_holders,
    flag,
    second_factor_cell,
    without_second_factor,
)
from tests.unit.test_report_school import account


def test_google_2sv_fields_become_enforced_registered_or_none() -> None:
    assert second_factor({"isEnrolledIn2Sv": True, "isEnforcedIn2Sv": True}) == "enforced"
    assert second_factor({"isEnrolledIn2Sv": True, "isEnforcedIn2Sv": False}) == "registered"
    assert second_factor({"isEnrolledIn2Sv": False, "isEnforcedIn2Sv": False}) == "none"
    # Enforced but not yet enrolled (a new admin's enrolment period): no second factor yet.
    assert second_factor({"isEnrolledIn2Sv": False, "isEnforcedIn2Sv": True}) == "none"
    assert second_factor({}) == "none"


def test_a_holder_whose_directory_did_not_say_is_unknown_never_blank_and_not_flagged() -> None:
    holder = RoleHolder("entra", "Global Administrator", "gadmin", "G Admin")
    assert second_factor_cell(holder) == NOT_REPORTED == "unknown — the directory did not report it"
    assert flag(holder) is None
    assert flag(RoleHolder("google", "super admin", "g@x", "G", second_factor="none")) == \
        "Admin without a second factor"


def test_an_admin_with_two_roles_and_no_second_factor_counts_once() -> None:
    holders = {"entra": [RoleHolder("entra", "Global Administrator", "gadmin", "G", second_factor="none"),
                         RoleHolder("entra", "User Administrator", "GAdmin", "G", second_factor="none"),
                         RoleHolder("entra", "User Administrator", "ok", "O", second_factor="registered")],
               "google": [RoleHolder("google", "super admin", "gadmin", "G", second_factor="none")]}
    assert without_second_factor(holders) == 2  # one per directory and account


def test_an_account_only_the_snapshot_marks_privileged_is_listed_with_its_second_factor_unknown() -> None:
    admin = account("ad", "k1", "oldadmin", None)
    snapshot = Snapshot("ad", (replace(admin, privileged="adminCount=1"),), ())
    [listed] = all_role_holders({}, {"ad": snapshot})["ad"]
    assert (listed.username, listed.role, second_factor_cell(listed)) == (
        "oldadmin@school.example", "adminCount=1", NOT_REPORTED)
