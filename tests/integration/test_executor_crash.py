"""A run killed with kill -9 in the middle of applying, then started again, applies every change once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from tests.doubles import FileDirectory
from tests.e2e.school import write_job, write_pupils, write_staff
from tests.factories import ROOT


def _apply(tmp, env_extra):
    return subprocess.Popen(
        [sys.executable, "-m", "idlifecycle", "--config", str(tmp / "job.toml"), "--today", "2026-11-23",
         "apply", "plan.json"],
        cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env_extra},
    )


def test_a_run_killed_mid_apply_and_restarted_applies_every_change_exactly_once(tmp_path):
    write_pupils(tmp_path / "pupils.csv", 30)
    write_staff(tmp_path / "staff.csv", [("JDO", "Jane", "Doe", "Teacher")])
    write_job(tmp_path)
    planned = subprocess.run(
        [sys.executable, "-m", "idlifecycle", "--config", str(tmp_path / "job.toml"), "--today", "2026-11-23",
         "plan", "--out", "plan.json"], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert "Plan:" in planned.stdout
    plan = json.loads((tmp_path / "plan.json").read_text())
    change_ids = [c["change_id"] for c in plan["changes"]]
    directory = FileDirectory("ad", tmp_path / "directory.sqlite")

    kills = 0
    for stop_after in (15, 60):
        run = _apply(tmp_path, {"DOUBLE_DELAY": "0.02"})
        deadline = time.monotonic() + 60
        while len(directory.writes()) < stop_after and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.01)
        assert run.poll() is None, run.communicate()
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        assert run.returncode == -signal.SIGKILL
        kills += 1
    assert 0 < len({w[0] for w in directory.writes()}) < len(change_ids)

    finished = _apply(tmp_path, {})
    _out, err = finished.communicate(timeout=120)
    assert finished.returncode == 0, err

    applied = Counter(change_id for change_id, _, outcome in directory.writes() if outcome == "applied")
    # Group changes of new starters are sent with the new account's key filled in, so the directory
    # sees other ids than the plan's: count them instead.
    assert sum(applied.values()) == len(change_ids)
    assert set(applied.values()) == {1}, "a change took effect twice"
    accounts = directory.accounts()
    assert len(accounts) == 31
    assert len({a.anchor for a in accounts}) == 31
    assert kills == 2
