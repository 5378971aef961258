"""`idlifecycle sync` (its own process) with Entra and a second directory, while Graph (the emulator, in
this test's process) takes every write and never answers: Entra's changes fail within the documented
`give_up_after_seconds`, the other directory's are applied, and the run says which failed and why."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from idlifecycle.sandbox.graph import Fault, GraphEmulator
from tests.doubles import FileDirectory
from tests.factories import ROOT
from tests.integration.graph_fixtures import CLIENT_SECRET, graph_tls_dir, make_emulator  # noqa: F401
from tests.integration.test_entra_job import seed
from tests.integration.test_entra_per_change import _two_directory_school

GIVE_UP_AFTER = 4


def test_sync_gives_up_on_a_graph_that_never_answers_and_applies_the_other_directory(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path) -> None:  # noqa: F811
    emulator = make_emulator(seed())
    _two_directory_school(tmp_path, emulator, give_up_after=GIVE_UP_AFTER)
    snapshot_reads = r"^/v1\.0/(?!(users|groups)/delta|directoryRoles|roleManagement)"
    emulator.faults.append(Fault("*", snapshot_reads, mode="hang", times=10**6))

    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "idlifecycle", "--config", str(tmp_path / "job.toml"), "--today", "2026-09-03",
         "sync"], capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "IDLIFECYCLE_ENTRA_CLIENT_SECRET": CLIENT_SECRET})
    took = time.monotonic() - started
    print(f"\nidlifecycle sync with a silent Graph: exit {run.returncode} after {took:.1f} s "
          f"(give_up_after_seconds = {GIVE_UP_AFTER})")

    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert "answered nothing" in run.stdout + run.stderr
    assert {a.anchor for a in FileDirectory("double", tmp_path / "directory.sqlite").accounts()} >= \
        {"000201", "000202", "000205", "JDO"}
    assert emulator.write_log == []
    assert took < GIVE_UP_AFTER + 20
