"""A password that could not be delivered is owed: the next run sets a fresh one and delivers that.

Staff passwords go by email to their line manager; the first night the mail server is down, the
second night it is up (aiosmtpd on 127.0.0.1). Nobody ever saw the first password, so it is never
sent late: a new one is set in the directory and mailed, once.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

from idlifecycle.store import Store
from tests import jobfiles
from tests.doubles import FileDirectory
from tests.e2e.school import write_pupils, write_staff
from tests.factories import ROOT
from tests.integration.access_support import SMTP_PASSWORD, SMTP_USER, Mailbox, free_port, mailbox

__all__ = ["mailbox"]

OFFICE = "office@school.example.org"


def write_job(tmp: Path, port: int, ca_file: Path) -> None:
    (tmp / "connectors").mkdir(exist_ok=True)
    jobfiles.write_connector(tmp / "connectors" / "double.toml", "ad", "tests.doubles:FileDirectory",
                             {"path": str(tmp / "directory.sqlite")})
    jobfiles.write_job(tmp / "job.toml", connectors=["connectors/double.toml"],
                       mappings=[ROOT / "mappings" / "school.toml"], guards={}, sections={
                           "mail": {"from_address": SMTP_USER, "smtp_host": "127.0.0.1", "smtp_port": port,
                                    "smtp_username": SMTP_USER, "ca_file": str(ca_file), "timeout_seconds": 5},
                           "passwords": {"staff": {"delivery": "email"}, "line_managers": {"fallback": OFFICE}},
                       })


def sync(tmp: Path, day: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idlifecycle", "--config", str(tmp / "job.toml"), "--today", day, "sync"],
        capture_output=True, text=True, cwd=tmp, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "IDLIFECYCLE_SMTP_PASSWORD": SMTP_PASSWORD},
    )


def test_a_staff_password_whose_email_failed_is_set_afresh_and_mailed_the_next_night(tmp_path, mailbox: Mailbox):
    write_pupils(tmp_path / "pupils.csv", 10)
    write_staff(tmp_path / "staff.csv", [("JDO", "Jane", "Doe", "Teacher"), ("HCA", "Helen", "Carter", "Head")])
    write_job(tmp_path, free_port(), mailbox.ca_file)  # nothing listens there: the mail server is down
    down = sync(tmp_path, "2026-11-23")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Passwords not yet delivered (2); the next sync sets a fresh one for each and delivers it:" in down.stdout
    assert re.search(r"  jdoe \(ad\): email to office@school\.example\.org failed: .+, waiting since \d{4}-\d\d-\d\d\n",
                     down.stdout), down.stdout
    assert not [m for m in mailbox.messages if OFFICE in m.recipients]

    write_job(tmp_path, mailbox.port, mailbox.ca_file)
    up = sync(tmp_path, "2026-11-24")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "Passwords not yet delivered" not in up.stdout
    double = FileDirectory("ad", tmp_path / "directory.sqlite")
    staff = {a.username: a for a in double.accounts() if a.anchor in ("JDO", "HCA")}
    for username, account in staff.items():
        received = mailbox.wait_for(OFFICE, f"({username})")
        password = re.search(r"Password: (\S+)", received.text)
        assert password is not None
        assert hashlib.sha256(password.group(1).encode()).hexdigest() == double.current_password_hash(account.key)
        assert len(double.password_hashes(account.key)) == 1, "one fresh password set, not the old one mailed"
    assert len([m for m in mailbox.messages if OFFICE in m.recipients]) == 2
    store = Store(tmp_path / "state" / "idlifecycle.db")
    assert store.owed_passwords() == []
    store.close()
    assert "No changes" in sync(tmp_path, "2026-11-25").stdout
