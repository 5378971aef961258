"""The command line as a network manager uses it: plan, apply, sync, guards, exit codes, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.doubles import FileDirectory
from tests.e2e.school import slip_passwords, write_job, write_pupils, write_staff
from tests.factories import ROOT

STAFF = [("JDO", "Jane", "Doe", "Teacher"), ("HCA", "Helen", "Carter", "Head Teacher")]


def idl(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idlifecycle", "--config", str(tmp / "job.toml"), "--today", "2026-11-23", *args],
        capture_output=True, text=True, cwd=tmp, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def school(tmp: Path, pupils: int = 40) -> None:
    write_pupils(tmp / "pupils.csv", pupils)
    write_staff(tmp / "staff.csv", STAFF)
    write_job(tmp)


def test_plan_shows_each_change_with_its_reason_and_writes_a_plan_file(tmp_path):
    school(tmp_path)
    result = idl(tmp_path, "plan", "--out", "plan.json")
    assert result.returncode == 0, result.stderr
    assert "+ create                   18pnumber1" in result.stdout
    assert "Plan: " in result.stdout and " to add, 0 to change, 0 to remove, disable or delete." in result.stdout
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["schema"] == "idlifecycle-plan/1"
    first = plan["changes"][0]
    assert {"directory", "action", "person_id", "username", "before", "after", "reason"} <= set(first)
    assert FileDirectory("ad", tmp_path / "directory.sqlite").accounts() == []


def test_apply_runs_a_saved_plan_and_a_second_sync_has_nothing_to_do(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "plan", "--out", "plan.json").returncode == 0
    applied = idl(tmp_path, "apply", "plan.json")
    assert applied.returncode == 0, applied.stderr
    assert len(FileDirectory("ad", tmp_path / "directory.sqlite").accounts()) == 42
    again = idl(tmp_path, "sync")
    assert again.returncode == 0
    assert "No changes. The directories match the feed." in again.stdout


def test_a_saved_plan_is_refused_when_the_directory_moved_since(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    write_pupils(tmp_path / "pupils.csv", 40, leaving={3: "22/07/2026"})
    assert idl(tmp_path, "plan", "--out", "plan.json").returncode == 0
    directory = FileDirectory("ad", tmp_path / "directory.sqlite")
    someone = directory.accounts()[0]
    directory.put(someone.__class__(**{**someone.__dict__, "display_name": "Changed behind our back"}))
    result = idl(tmp_path, "apply", "plan.json")
    assert result.returncode == 2
    assert "ad: the directory changed since the plan was made; make a new plan" in result.stderr


def test_a_feed_that_lost_half_its_pupils_stops_the_run_and_changes_nothing(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    write_pupils(tmp_path / "pupils.csv", 20)
    before = FileDirectory("ad", tmp_path / "directory.sqlite").accounts()
    result = idl(tmp_path, "sync")
    assert result.returncode == 2
    assert "Stopped by a guard; nothing was applied:" in result.stderr
    assert "the feed has 22 people, 20 fewer (48%) than the last successful run's 42" in result.stderr
    assert FileDirectory("ad", tmp_path / "directory.sqlite").accounts() == before
    overridden = idl(tmp_path, "sync", "--allow-destructive", "20")
    assert overridden.returncode == 0, overridden.stderr
    disabled = [a for a in FileDirectory("ad", tmp_path / "directory.sqlite").accounts() if not a.enabled]
    assert len(disabled) == 20
    verify = idl(tmp_path, "audit", "verify")
    assert verify.returncode == 0 and "The audit log is intact" in verify.stdout


def test_a_missing_feed_file_is_one_clear_error_not_everyone_left(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    (tmp_path / "pupils.csv").unlink()
    result = idl(tmp_path, "sync")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "pupils.csv" in result.stderr
    assert all(a.enabled for a in FileDirectory("ad", tmp_path / "directory.sqlite").accounts())


def test_a_wrong_config_names_the_file_and_key(tmp_path):
    school(tmp_path)
    job = tmp_path / "job.toml"
    job.write_text(job.read_text() + "\n[guards]\nmax_destructive = -3\n")
    result = idl(tmp_path, "plan")
    assert result.returncode == 1
    assert result.stderr.strip() == (f"idlifecycle: {job}: guards.max_destructive: "
                                     "Input should be greater than or equal to 0")


def test_two_runs_of_the_same_job_never_overlap(tmp_path):
    school(tmp_path)
    from idlifecycle.job import load_job

    job = load_job(tmp_path / "job.toml")
    with job.lock():
        result = idl(tmp_path, "sync")
    assert result.returncode == 1
    assert "job 'nightly' is already running" in result.stderr


def test_a_plan_stopped_by_a_guard_is_still_saved_for_review_and_cron_logs_each_change(tmp_path):
    school(tmp_path)
    first = idl(tmp_path, "--log-format", "json", "sync")
    assert first.returncode == 0
    lines = [json.loads(line) for line in first.stderr.splitlines() if line.startswith("{")]
    changes = [line for line in lines if line.get("event") == "change"]
    assert len(changes) > 42 and {"directory", "action", "username", "outcome", "reason"} <= set(changes[0])
    assert all(line["level"] == "INFO" and "time" in line for line in lines)
    write_pupils(tmp_path / "pupils.csv", 20)
    stopped = idl(tmp_path, "plan", "--out", "plan.json")
    assert stopped.returncode == 2
    saved = json.loads((tmp_path / "plan.json").read_text())
    assert sum(c["action"] == "disable" for c in saved["changes"]) == 20
    assert idl(tmp_path, "apply", "plan.json").returncode == 2


def test_feed_check_reads_an_export_named_on_the_command_line_and_tells_its_format(tmp_path):
    sds = ROOT / "tests" / "data" / "feeds" / "sds_v2"
    result = subprocess.run([sys.executable, "-m", "idlifecycle", "feed", "check", str(sds)], capture_output=True,
                            text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert result.returncode == 1
    assert f"{sds}/roles.csv:4: grade: unknown year group '15'" in result.stdout
    assert "feed check failed: 4 of 7 feed rows (57.1 %) have errors" in result.stdout
    write_pupils(tmp_path / "pupils.csv", 30)
    unsure = subprocess.run([sys.executable, "-m", "idlifecycle", "feed", "check", "pupils.csv"], capture_output=True,
                            text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert unsure.returncode == 1
    assert "pupils.csv: every date could be dd/mm or mm/dd (e.g. 01/09/2020)" in unsure.stdout
    clean = subprocess.run([sys.executable, "-m", "idlifecycle", "feed", "check", "pupils.csv", "--date-order", "dmy"],
                           capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           timeout=60)
    assert clean.returncode == 0, clean.stdout
    assert "30 rows read: 30 pupils, 0 staff; 0 errors" in clean.stdout


FEEDS = ROOT / "tests" / "data" / "feeds"
SAMPLE_SCHOOL = ROOT / "src" / "idlifecycle" / "sandbox" / "sample_school"


def feed_check(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "idlifecycle", "feed", "check", *args], capture_output=True,
                          text=True, cwd=tmp, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)


@pytest.mark.parametrize(("export", "options", "format", "file", "mapping"), [
    (FEEDS / "mis" / "sims_pupils.csv", (), "mis-csv", "sims_pupils.csv (mis-csv, pupils)",
     ["Adno -> person_id", "UPN -> upn", "Year -> year_group", "Reg Group -> registration_group",
      "ignored: Gender, DOB, Ethnicity"]),
    (FEEDS / "mis" / "sims_staff.csv", (), "mis-csv", "sims_staff.csv (mis-csv, staff)",
     ["Staff Code -> person_id", "Role -> roles", "Work Email -> email", "ignored: Title, NI Number"]),
    (FEEDS / "mis" / "arbor_students.csv", ("--kind", "pupil"), "mis-csv", "arbor_students.csv (mis-csv, pupils)",
     ["MIS ID -> person_id", "first name -> legal_first_name", "Registration Form -> registration_group"]),
    (FEEDS / "mis" / "bromcom_students.csv", ("--date-order", "dmy"), "mis-csv",
     "bromcom_students.csv (mis-csv, pupils)", ["Admission No -> person_id", "Tutor Group -> registration_group"]),
    (SAMPLE_SCHOOL / "pupils.csv", (), "mis-csv", "pupils.csv (mis-csv, pupils)",
     ["Adno -> person_id", "Legal Surname -> last_name", "Admission Date -> start_date", "ignored: Gender"]),
    (SAMPLE_SCHOOL / "staff.csv", (), "mis-csv", "staff.csv (mis-csv, staff)",
     ["Staff Code -> person_id", "End Date -> leave_date", "ignored: Title"]),
    (FEEDS / "sds_v2", (), "sds-v2", "roles.csv (sds-v2)", ["userSourcedId -> person_id", "grade -> year_group"]),
    (FEEDS / "sds_v2_microsoft_sample", (), "sds-v2", "users.csv (sds-v2)",
     ["sourcedId -> person_id", "givenName -> legal_first_name",
      "ignored: password, activeDirectoryMatchId, phone, sms"]),
    (FEEDS / "sds_v1", (), "sds-v1", "Student.csv (sds-v1, pupils)", ["ID -> person_id", "Grade -> year_group"]),
    (FEEDS / "oneroster", (), "oneroster", "users.csv (oneroster)",
     ["sourcedId -> person_id", "grades -> year_group", "userIds -> upn"]),
], ids=lambda value: value.name if isinstance(value, Path) else None)
def test_feed_check_on_each_shipped_export_shows_its_format_and_the_columns_it_read(
    tmp_path, export, options, format, file, mapping,
):
    result = feed_check(tmp_path, str(export), *options)
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"feed {export}: {format} (told from the files)"
    assert any(line.endswith(file + ":") for line in lines), result.stdout
    for expected in mapping:
        assert f"  {expected}" in lines, f"{expected!r} not in\n{result.stdout}"
    assert any(" rows read: " in line for line in lines)


def test_feed_check_counts_year_groups_and_roles_and_says_who_is_not_provisioned(tmp_path):
    result = feed_check(tmp_path, str(FEEDS / "sds_v2_microsoft_sample"))
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert "pupils: 5" in lines and "  Year 12: 1" in lines and "staff: 2" in lines
    assert lines.index("staff: 2") < lines.index("  administrator: 1")
    assert "not provisioned: 3 guardians, 1 relative" in lines
    assert lines[-1] == "7 rows read: 5 pupils, 2 staff; 0 errors in 0 rows (0.0 %)"


def test_feed_check_of_the_job_says_each_feed_comes_from_the_job_file(tmp_path):
    school(tmp_path)
    result = idl(tmp_path, "feed", "check")
    assert result.returncode == 0, result.stdout
    assert f"feed {tmp_path / 'pupils.csv'}: mis-csv (from the job file)" in result.stdout.splitlines()
    assert "  Adno -> person_id" in result.stdout.splitlines()


@contextmanager
def small_disk(folder: Path, size: str = "16m") -> Iterator[Path]:
    """`folder` on a tmpfs of its own (root only), so a test can fill it up or make it read-only."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path, leave_kib: int) -> Path:
    """Fills the file system under `folder` until only `leave_kib` KiB are free."""
    free = os.statvfs(folder)
    filler = folder / "filler"
    filler.write_bytes(b"\0" * (free.f_bavail * free.f_frsize - leave_kib * 1024))
    return filler


def said(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What a person sees on stderr, without the one-JSON-line-per-change log cron gets."""
    return [line for line in result.stderr.splitlines() if not line.startswith("{")
            and not line.startswith("password slips for ")]


def test_a_disk_that_fills_up_mid_run_is_one_clear_line_and_the_next_run_finishes_the_night(tmp_path):
    school(tmp_path)
    with small_disk(tmp_path / "state") as state:
        filler = fill(state, 350)
        full = idl(tmp_path, "sync")
        assert full.returncode == 1, full.stdout + full.stderr
        assert said(full) == [f"idlifecycle: cannot write the state database {state / 'idlifecycle.db'}: the disk is "
                              "full; free some space on it, then rerun (what was done is kept; the next run carries "
                              "on from the directories as they are)"], full.stderr
        double = FileDirectory("ad", tmp_path / "directory.sqlite")
        assert 0 < len(double.writes()) < 181, "the disk filled up part of the way through the night"
        filler.unlink()
        resumed = idl(tmp_path, "sync")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        accounts = {a.username: a for a in double.accounts()}
        assert len(accounts) == 42
        handed = slip_passwords(state / "slips")
        assert sorted(u for u, _ in handed) == sorted(accounts), "each new account's password handed out once"
        for username, password in handed:
            assert hashlib.sha256(password.encode()).hexdigest() == double.current_password_hash(accounts[username].key)
        assert idl(tmp_path, "audit", "verify").returncode == 0
        assert "No changes" in idl(tmp_path, "sync").stdout


def test_a_read_only_state_database_is_one_clear_line_and_nothing_is_changed(tmp_path):
    school(tmp_path)
    with small_disk(tmp_path / "state") as state:
        assert idl(tmp_path, "sync").returncode == 0
        write_pupils(tmp_path / "pupils.csv", 40, leaving={3: "22/07/2026"})
        double = FileDirectory("ad", tmp_path / "directory.sqlite")
        writes = len(double.writes())
        subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
        stopped = idl(tmp_path, "sync")
        assert stopped.returncode == 1, stopped.stdout + stopped.stderr
        assert said(stopped) == [f"idlifecycle: cannot write the state database {state / 'idlifecycle.db'}: it is "
                                 "read-only; make the file and its folder writable by this user, then rerun (what "
                                 "was done is kept; the next run carries on from the directories as they are)"]
        assert len(double.writes()) == writes, "nothing is sent while nothing can be recorded"
        subprocess.run(["mount", "-o", "remount,rw", str(state)], check=True)
        night = idl(tmp_path, "sync")
        assert night.returncode == 0, night.stderr
        assert not next(a for a in double.accounts() if a.anchor == "000003").enabled
