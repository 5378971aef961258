"""How Entra was read reaches the school: a refused delta link is in the plan's notes and the run summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.reports.summary import run_summary
from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_SECRET
from tests.integration.test_entra_job import AMY, RORY, night, seed, write_school


def test_a_delta_link_that_expired_over_half_term_is_noted_in_the_run_summary(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = make_emulator(seed(), delta_token_ttl=1.0)
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    job_file = write_school(tmp_path, emulator, [AMY, RORY])
    report, _ = night(job_file, date(2026, 10, 23))
    assert report.status == "ok", report.failures
    assert not any("delta link" in n for n in report.plan.notes)
    time.sleep(1.2)  # half-term: longer than Graph keeps a delta link

    report, _ = night(job_file, date(2026, 11, 2))

    assert report.status == "nothing-to-do"
    (note,) = [n for n in report.plan.notes if "delta link" in n]
    assert "the whole directory was read once instead" in note and "syncStateNotFound" in note
    _, text = run_summary("nightly", report)
    assert "Notes:\n" in text and f"  - {note}\n" in text
