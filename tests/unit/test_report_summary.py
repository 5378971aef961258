"""The summary the technician reads each morning: what changed, what a guard stopped, incidents, failures."""

from __future__ import annotations

from idlifecycle.job import RunReport
from idlifecycle.model import Action, Change, Outcome, Plan, Result
from idlifecycle.reports.summary import run_summary


def change(action: Action, username: str) -> Change:
    return Change("entra", action, "P1", username, "because", target=f"k-{username}")


def test_a_good_night_lists_the_applied_changes_by_kind() -> None:
    changes = (change(Action.CREATE, "ann"), change(Action.CREATE, "bob"), change(Action.DISABLE, "cat"),
               change(Action.UPDATE, "dan"))
    results = (Result(changes[0].change_id, Outcome.APPLIED), Result(changes[1].change_id, Outcome.APPLIED),
               Result(changes[2].change_id, Outcome.APPLIED), Result(changes[3].change_id, Outcome.ALREADY))
    subject, text = run_summary("nightly", RunReport(7, "ok", Plan(changes, {}), results))
    assert subject == "[idlifecycle] nightly: done (3 changes)"
    assert "Run 7 of job 'nightly': done." in text
    assert "  create                   2\n  disable                  1\n" in text
    assert "update" not in text  # already so: nothing was changed


def test_a_guard_stop_says_why_and_what_would_have_happened() -> None:
    changes = tuple(change(Action.DISABLE, f"u{n}") for n in range(60))
    report = RunReport(8, "guard", Plan(changes, {}), guard_reasons=("entra: 60 disables is over the limit of 50",))
    subject, text = run_summary("nightly", report)
    assert subject == "[idlifecycle] nightly: STOPPED by a guard, nothing applied"
    assert "Planned changes by kind (none applied):\n  disable                  60" in text
    assert "  - entra: 60 disables is over the limit of 50" in text


def test_incidents_failures_and_skipped_feed_rows_are_each_listed() -> None:
    report = RunReport(9, "partial", Plan((), {}), incidents=("SECURITY INCIDENT: x added to SG-Safeguarding",),
                       failures=("entra: create ann: 503 try later",), feed_errors=("pupils.csv:4: UPN: bad",))
    subject, text = run_summary("nightly", report)
    assert subject == "[idlifecycle] nightly: done, but some changes FAILED"
    assert "Security incidents:\n  - SECURITY INCIDENT: x added to SG-Safeguarding" in text
    assert "Failures (the next run retries them):\n  - entra: create ann: 503 try later" in text
    assert "Rows of the feed that were refused (fix them in the MIS):\n  - pupils.csv:4: UPN: bad" in text


def test_people_still_waiting_for_a_password_are_listed() -> None:
    report = RunReport(10, "ok", Plan((), {}), owed_passwords=(
        "jdoe (ad): email to office@school.example.org failed: connection refused, waiting since 2026-11-23",))
    _, text = run_summary("nightly", report)
    assert ("Passwords not yet delivered (the next run sets a fresh one for each and delivers it):\n"
            "  - jdoe (ad): email to office@school.example.org failed: connection refused, waiting since 2026-11-23"
            ) in text


def test_dormant_disables_not_told_to_a_sponsor_have_their_own_section() -> None:
    report = RunReport(10, "ok", Plan((), {}), dormant_disabled=("ksmith, entra, no sign-in since 2026-06-01",))
    _, text = run_summary("nightly", report)
    assert "\nDisabled as dormant (no sign-in for the kind's dormant_days; `idlifecycle people keep-active` " \
           "exempts):\n  - ksmith, entra, no sign-in since 2026-06-01\n" in text
    assert "Disabled as dormant" not in run_summary("nightly", RunReport(11, "ok", Plan((), {})))[1]
