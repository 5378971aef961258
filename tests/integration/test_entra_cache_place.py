"""The production Entra connector keeps its delta cache in the state directory's own cache/, not the sandbox's."""

from __future__ import annotations

import stat
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_SECRET
from tests.integration.test_entra_job import AMY, night, seed, write_school


def test_the_delta_cache_of_a_real_tenant_lives_under_state_cache(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = make_emulator(seed())
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.chdir(tmp_path)
    job_file = write_school(tmp_path, emulator, [AMY])
    report, _ = night(job_file, date(2026, 9, 3))
    assert report.status == "ok", report.failures

    state = job_file.parent / "state"
    cache = state / "cache" / "entra-entra" / "directory-cache.json"
    assert cache.is_file()
    assert not (state / "sandbox").exists()
    # Private whatever the umask (this test runs under the default 022, not the CLI's 077).
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
