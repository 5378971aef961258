"""On the access review, admin accounts the tool leaves alone are recognised as such everywhere: through the
nightly job and the review's collection against the Graph emulator, a Global Admin and an account only
eligible (PIM) for the role, neither carrying a person ID, are "privileged, not managed" on the People
sheet, are no "No person ID" exception, and are both on the Privileged roles sheet; a reception desk
account without a person ID still is one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.config import Secrets
from idlifecycle.job import load_job, run_sync
from idlifecycle.reports.access_review import (
    EXCEPTIONS,
    PEOPLE,
    PRIVILEGED,
    PRIVILEGED_NOT_MANAGED,
    ExceptionKind,
    build_review,
)
from idlifecycle.reports.collect import collect_review
from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_SECRET, STAFF
from tests.integration.test_entra_privileged import seed, write_school


def test_admin_accounts_are_privileged_not_managed_on_every_sheet_not_unmatched_people(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    school = seed()
    school["users"].append({"userPrincipalName": f"reception@{STAFF}", "displayName": "Reception desk"})
    emulator = make_emulator(school)
    job = load_job(write_school(tmp_path, emulator), today=date(2026, 9, 3), secrets=Secrets())
    try:
        run_sync(job)
        with job.open_connectors() as connectors:
            review, _ = collect_review(job, connectors)
    finally:
        job.close()
    sheets = {s.name: s.tables[0].rows for s in build_review(review)}
    admins = {f"gadmin@{STAFF}": "Global Administrator", f"eligible@{STAFF}": "eligible for Global Administrator"}

    people = {row[8]: row for row in sheets[PEOPLE] if row[8] in admins}
    assert {login: row[5] for login, row in people.items()} == {
        login: f"Privileged, not managed ({role})" for login, role in admins.items()}
    assert all(row[0] is None for row in people.values()), "no person ID, and not listed as if one were missing"

    flagged = [row for row in sheets[EXCEPTIONS] if row[2] in ("gadmin", "eligible")]
    assert not [row for row in flagged if row[0] in (ExceptionKind.NO_ANCHOR, ExceptionKind.NOT_IN_FEED)], flagged

    privileged = {(row[1], row[2]): row for row in sheets[PRIVILEGED]}
    for login, role in admins.items():
        assert privileged[(role, login)][-1] == PRIVILEGED_NOT_MANAGED
    # An ordinary account without a person ID is still one (the check is not simply off).
    assert [row[5] for row in sheets[PEOPLE] if row[8] == f"reception@{STAFF}"] == ["No person ID"]
    assert [row[0] for row in sheets[EXCEPTIONS] if row[2] == "reception"] == [ExceptionKind.NO_ANCHOR]
    assert (f"reception@{STAFF}") not in {row[2] for row in sheets[PRIVILEGED]}
