"""The shipped systemd units, cron example and logrotate file are checked as a server would read them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from idlifecycle.config import Secrets
from tests.factories import ROOT

JOBS = ROOT / "jobs"
UNITS = sorted(JOBS.glob("idlifecycle-*.service")) + sorted(JOBS.glob("idlifecycle-*.timer"))
SECRETS = ("ad_bind_password", "entra_client_secret", "entra_certificate_key", "google_service_account",
           "smtp_password", "approval_signing_key", "graph_mail_client_secret")
"""Every secret a job can name (connectors named as shipped: ad, entra, google)."""


def _installed_copy(tmp: Path) -> Path:
    """The units as installed, but starting this checkout's idlifecycle (systemd-analyze checks it exists)."""
    idlifecycle = Path(sys.executable).with_name("idlifecycle")
    for unit in UNITS:
        (tmp / unit.name).write_text(unit.read_text(encoding="utf-8").replace(
            "/opt/idlifecycle/bin/idlifecycle", str(idlifecycle)), encoding="utf-8")
    return tmp


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", [u.name for u in UNITS])
def test_each_shipped_unit_passes_systemd_analyze_verify(tmp_path: Path, unit: str) -> None:
    copy = _installed_copy(tmp_path)
    result = subprocess.run(["systemd-analyze", "verify", str(copy / unit)], capture_output=True, text=True,
                            timeout=60, cwd=copy)
    assert result.returncode == 0 and unit not in result.stderr, result.stderr


@pytest.mark.parametrize("service", ["idlifecycle-nightly.service", "idlifecycle-access-review.service"])
def test_each_service_hands_the_tool_every_secret_file_and_the_tool_reads_it(tmp_path: Path, service: str) -> None:
    text = (JOBS / service).read_text(encoding="utf-8")
    assert re.search(r"^LoadCredential=idlifecycle:/etc/idlifecycle/credentials$", text, re.M)
    assert re.search(r"^Environment=IDLIFECYCLE_SECRETS_DIR=%d$", text, re.M)
    # $CREDENTIALS_DIRECTORY as systemd fills it from that folder: each file named idlifecycle_<file>.
    for name in SECRETS:
        (tmp_path / f"idlifecycle_{name}").write_text(f"value of {name}\n", encoding="utf-8")
    secrets = Secrets(tmp_path)
    assert {name: secrets[name] for name in SECRETS} == {name: f"value of {name}" for name in SECRETS}


def test_a_guard_stop_or_refused_rows_show_as_failed_not_as_success() -> None:
    service = (JOBS / "idlifecycle-nightly.service").read_text(encoding="utf-8")
    assert not re.search(r"^SuccessExitStatus=", service, re.M)


def test_each_cron_line_runs_a_command_the_cli_accepts(tmp_path: Path) -> None:
    lines = [line for line in (JOBS / "crontab.example").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#") and not re.match(r"^[A-Z_]+=", line)]
    assert lines
    for line in lines:
        fields = line.split()
        assert all(re.fullmatch(r"[\d*/,-]+", f) for f in fields[:5]), line
        command = line.split(">>")[0].split()[5:]
        assert command[0] == "/opt/idlifecycle/bin/idlifecycle"
        args = [a for a in command[1:]]
        result = subprocess.run([sys.executable, "-m", "idlifecycle", *args, "--help"], capture_output=True,
                                text=True, timeout=60, cwd=tmp_path)
        assert result.returncode == 0, (line, result.stderr)


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate is not installed")
def test_the_logrotate_file_is_read_without_an_error(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "nightly.log").write_text("a line\n", encoding="utf-8")
    # As installed, but on this folder and for a user this machine has.
    config = tmp_path / "idlifecycle"
    config.write_text((JOBS / "logrotate.conf").read_text(encoding="utf-8")
                      .replace("/var/log/idlifecycle", str(logs)).replace("idlifecycle idlifecycle", "root root"),
                      encoding="utf-8")
    result = subprocess.run(["logrotate", "-d", "-s", str(tmp_path / "state"), str(config)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "error" not in result.stderr, result.stderr
