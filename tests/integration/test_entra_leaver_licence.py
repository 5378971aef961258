"""A pupil leaver's licence group kept `licence_kept_days` after the disable, through the job and the Graph
emulator with the real msgraph-sdk: disabled and out of the other groups on the first night, still in the
licence group the night before the day, out of it on the day."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.model import Action
from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_SECRET
from tests.integration.test_entra_job import AMY, MAPPING, RORY, by_anchor, members, night, seed, write_school

LICENCE = "Licence - Microsoft 365 A1 Students"


def test_a_leavers_licence_group_is_kept_until_the_configured_day_and_removed_then(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = make_emulator(seed())
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)

    def school(pupils: list[list[str]]) -> Path:
        job_file = write_school(tmp_path, emulator, pupils)
        kept = MAPPING.replace("retention_days = 270\n", "retention_days = 270\nlicence_kept_days = 30\n", 1)
        assert kept != MAPPING
        (tmp_path / "mapping.toml").write_text(kept, encoding="utf-8")
        return job_file

    job_file = school([AMY, RORY])
    report, snap = night(job_file, date(2026, 9, 3))
    assert report.status == "ok", report.failures
    rory = by_anchor(snap)["000202"].key
    assert rory in members(snap, LICENCE)

    # Rory leaves on 05/09: disabled on the night of 10/09, out of his year group, still licensed.
    school([AMY, [*RORY[:9], "05/09/2026", ""]])
    report, snap = night(job_file, date(2026, 9, 10))
    assert report.status == "ok", report.failures
    assert not by_anchor(snap)["000202"].enabled
    assert rory not in members(snap, "Year 7 Pupils")
    assert rory in members(snap, LICENCE)

    report, snap = night(job_file, date(2026, 10, 9))  # day 29 after the disable
    assert report.status == "nothing-to-do", [f"{c.action} {c.username} {c.group}" for c in report.plan.changes]
    assert rory in members(snap, LICENCE)

    report, snap = night(job_file, date(2026, 10, 10))  # day 30: the licence goes, the account stays
    assert report.status == "ok", report.failures
    assert [(c.action, c.group) for c in report.plan.changes] == [(Action.REMOVE_MEMBER, LICENCE)]
    assert rory not in members(snap, LICENCE)
    assert not by_anchor(snap)["000202"].enabled
