"""A cron line, a shell completion or a health check starts the CLI: it must not load a directory's SDK to do so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.school import write_job, write_pupils, write_staff
from tests.factories import ROOT

SDKS = frozenset({"msgraph", "msal", "azure", "kiota_abstractions", "googleapiclient", "google", "ldap3", "openpyxl",
                  "starlette", "uvicorn"})
"""Directory and web SDKs, by top-level package: each costs a tenth of a second or more to import."""
HEAVY = SDKS | {"pydantic", "httpx", "fpdf"}
"""Heavy libraries besides: `--help` and `--version` need none of them either."""

STARTED = """
import json, sys, time
from idlifecycle.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
loaded = sorted({name.split(".")[0] for name in sys.modules})
print("\\n" + json.dumps({"code": code, "loaded": loaded, "cpu": time.process_time()}))
"""
"""Runs the CLI as `idlifecycle` would, then says which packages it had imported and the process's CPU time."""


def started(cwd: Path, *args: str) -> tuple[int, set[str], float]:
    result = subprocess.run([sys.executable, "-c", STARTED, *args], capture_output=True, text=True, cwd=cwd,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"idlifecycle {' '.join(args)}: {report['cpu']:.3f} s CPU")
    return report["code"], set(report["loaded"]), report["cpu"]


def test_help_and_version_import_no_sdk_nor_any_heavy_library(tmp_path):
    for args in (["--help"], ["--version"]):
        code, loaded, cpu = started(tmp_path, *args)
        assert code == 0
        assert loaded & HEAVY == set(), args
        # The goal is 0.15 s; the bound is loose because six other test runs may share the two cores.
        assert cpu < 0.5, args


def test_feed_check_of_an_export_imports_no_sdk(tmp_path):
    write_pupils(tmp_path / "pupils.csv", 20)
    code, loaded, _ = started(tmp_path, "feed", "check", "pupils.csv", "--kind", "pupil", "--date-order", "dmy")
    assert code == 0
    assert loaded & SDKS == set()


def test_audit_verify_of_a_fresh_job_imports_no_sdk(tmp_path):
    write_pupils(tmp_path / "pupils.csv", 20)
    write_staff(tmp_path / "staff.csv", [("JDO", "Jane", "Doe", "Teacher")])
    write_job(tmp_path)
    # One night first, in its own process: a job that never ran has nothing to verify (exit 1).
    night = subprocess.run([sys.executable, "-m", "idlifecycle", "--config", str(tmp_path / "job.toml"), "sync"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert night.returncode == 0, night.stderr
    code, loaded, _ = started(tmp_path, "--config", str(tmp_path / "job.toml"), "audit", "verify")
    assert code == 0
    assert loaded & SDKS == set()
