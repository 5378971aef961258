"""What the tool writes is private to its user, whatever umask cron or a shell gives it (issue 14, files)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from tests.e2e.test_cli import school
from tests.factories import ROOT


def test_what_the_tool_writes_is_private_whatever_the_umask(tmp_path):
    school(tmp_path)
    result = subprocess.run(
        ["sh", "-c", f"umask 022 && exec {sys.executable} -m idlifecycle --config job.toml --today 2026-11-23 "
                     "plan --out plan.json"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "plan.json", tmp_path / "state",
                                                                *(tmp_path / "state").iterdir()]}
    assert modes["plan.json"] == 0o600 and modes["state"] == 0o700 and modes["idlifecycle.db"] == 0o600, modes
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes
