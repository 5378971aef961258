"""A run's identity is the run: a later night, reset or decision is never taken for an earlier one,
a saved plan is checked every time it is applied, and the date is checked against the last run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from idlifecycle.executor import new_plan_id
from idlifecycle.model import Action, Change, Plan, plan_to_json
from idlifecycle.store import Store
from tests.doubles import FileDirectory
from tests.e2e.school import slip_passwords, write_pupils
from tests.e2e.test_cli import idl, school
from tests.factories import ROOT


def directory(tmp: Path) -> FileDirectory:
    return FileDirectory("ad", tmp / "directory.sqlite")


def account_of(tmp: Path, person_id: str):
    return next(a for a in directory(tmp).accounts() if a.anchor == person_id)


def test_a_leaver_who_comes_back_and_leaves_again_is_disabled_again(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    write_pupils(tmp_path / "pupils.csv", 40, leaving={3: "22/07/2026"})
    left = idl(tmp_path, "sync")
    assert left.returncode == 0, left.stderr
    assert not account_of(tmp_path, "000003").enabled
    write_pupils(tmp_path / "pupils.csv", 40)
    back = idl(tmp_path, "sync")
    assert back.returncode == 0, back.stderr
    assert account_of(tmp_path, "000003").enabled
    write_pupils(tmp_path / "pupils.csv", 40, leaving={3: "22/07/2026"})
    again = idl(tmp_path, "sync")
    assert again.returncode == 0, again.stderr
    assert not account_of(tmp_path, "000003").enabled, "the third night must disable the leaver again"
    assert "No changes" in idl(tmp_path, "sync").stdout


def test_two_password_resets_of_one_person_are_both_set_and_both_handed_out(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    slips = tmp_path / "state" / "slips"
    before = len(slip_passwords(slips))
    for _ in range(2):
        reset = idl(tmp_path, "passwords", "reset", "000003")
        assert reset.returncode == 0, reset.stderr
        assert "New password set for Pupil Number3" in reset.stdout
    account = account_of(tmp_path, "000003")
    set_in_directory = directory(tmp_path).password_hashes(account.key)
    handed_out = [p for u, p in slip_passwords(slips)[before:] if u == account.username]
    assert len(set_in_directory) == 2, "the second reset must reach the directory"
    assert len(handed_out) == 2 and handed_out[0] != handed_out[1]
    assert [hashlib.sha256(p.encode()).hexdigest() for p in handed_out] == set_in_directory


def start(tmp: Path, *args: str, delay: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "idlifecycle", "--config", str(tmp / "job.toml"), "--today", "2026-11-23", *args],
        cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DOUBLE_DELAY": delay},
    )


def kill_when(run: subprocess.Popen[str], reached: Callable[[], bool]) -> None:
    """SIGKILL the run as soon as `reached()` is true (polled; at most a minute), while it still runs."""
    deadline = time.monotonic() + 60
    while not reached() and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.01)
    assert run.poll() is None, run.communicate()
    os.kill(run.pid, signal.SIGKILL)
    run.wait()


def kill_after_writes(tmp: Path, run: subprocess.Popen[str], writes: int) -> None:
    """SIGKILL the run once the directory has taken `writes` more writes (the double records each)."""
    seen = directory(tmp)
    target = len(seen.writes()) + writes
    kill_when(run, lambda: len(seen.writes()) >= target)


def audit_events(tmp: Path, event: str) -> list[dict[str, object]]:
    store = Store(tmp / "state" / "idlifecycle.db")
    try:
        return [e.data for e in store.audit_entries() if e.event == event]
    finally:
        store.close()


def two_leavers_planned_and_partly_applied(tmp: Path) -> None:
    school(tmp)
    assert idl(tmp, "sync").returncode == 0
    write_pupils(tmp / "pupils.csv", 40, leaving={3: "22/07/2026", 4: "22/07/2026"})
    assert idl(tmp, "plan", "--out", "plan.json").returncode == 0
    plan = json.loads((tmp / "plan.json").read_text())
    assert sorted(c["username"] for c in plan["changes"] if c["action"] == "disable") == \
        ["15pnumber4", "16pnumber3"]
    # Killed after its first change (a removal from a group: leavers leave their groups first) was
    # recorded, and before the second is sent (0.5 s later): waiting for the record, not only for the
    # write, so a loaded machine cannot kill it between the two.
    planned = {c["change_id"] for c in plan["changes"]}
    kill_when(start(tmp, "apply", "plan.json", delay="0.5"), lambda: len(applied_ids(tmp) & planned) >= 1)
    assert len(applied_ids(tmp) & planned) == 1


def applied_ids(tmp: Path) -> set[str]:
    db = tmp / "state" / "idlifecycle.db"
    if not db.exists():
        return set()
    connection = sqlite3.connect(db, timeout=5)
    try:
        return {r[0] for r in connection.execute("SELECT change_id FROM journal WHERE state='applied'")}
    except sqlite3.OperationalError:
        return set()  # the journal table is not there yet
    finally:
        connection.close()


def test_a_partly_applied_plan_resumes_when_nothing_else_moved(tmp_path):
    two_leavers_planned_and_partly_applied(tmp_path)
    resumed = idl(tmp_path, "apply", "plan.json")
    assert resumed.returncode == 0, resumed.stderr
    assert not account_of(tmp_path, "000003").enabled and not account_of(tmp_path, "000004").enabled
    assert "No changes" in idl(tmp_path, "sync").stdout


def test_a_partly_applied_plan_is_refused_once_the_mis_was_corrected(tmp_path):
    two_leavers_planned_and_partly_applied(tmp_path)
    write_pupils(tmp_path / "pupils.csv", 40)  # the MIS corrected: both are on roll after all
    refused = idl(tmp_path, "apply", "plan.json")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "disable 15pnumber4 (left on 22/07/2026) is no longer called for by the feed" in refused.stderr
    assert all(a.enabled for a in directory(tmp_path).accounts()), "nobody may be disabled"
    assert len(audit_events(tmp_path, "plan-refused-stale")) == 1
    # Applying the refused file again is refused again; the next night puts back the one removal.
    assert idl(tmp_path, "apply", "plan.json").returncode == 2
    night = idl(tmp_path, "sync")
    assert night.returncode == 0 and "+ add-member" in night.stdout


def test_a_killed_run_is_marked_interrupted_at_the_next_start_which_plans_afresh(tmp_path):
    school(tmp_path)
    kill_after_writes(tmp_path, start(tmp_path, "sync", delay="0.05"), 5)
    db = sqlite3.connect(tmp_path / "state" / "idlifecycle.db")
    assert db.execute("SELECT status FROM runs").fetchall() == [("running",)]
    db.close()
    nxt = idl(tmp_path, "sync")
    assert nxt.returncode == 0, nxt.stderr
    assert "run 1 (started " in nxt.stderr and "did not finish and is marked interrupted" in nxt.stderr
    db = sqlite3.connect(tmp_path / "state" / "idlifecycle.db")
    assert db.execute("SELECT run_id, status FROM runs ORDER BY run_id").fetchall() == [(1, "interrupted"), (2, "ok")]
    db.close()
    assert [e["run"] for e in audit_events(tmp_path, "run-interrupted")] == [1]
    accounts = directory(tmp_path).accounts()
    assert len(accounts) == 42 and len({a.anchor for a in accounts}) == 42
    assert "No changes" in idl(tmp_path, "sync").stdout


def idl_on(tmp: Path, day: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as if on `day` (test_cli.idl always runs on 2026-11-23)."""
    return subprocess.run(
        [sys.executable, "-m", "idlifecycle", "--config", str(tmp / "job.toml"), "--today", day, *args],
        capture_output=True, text=True, cwd=tmp, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_a_run_dated_before_the_last_run_stops_unless_that_date_is_allowed(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    write_pupils(tmp_path / "pupils.csv", 40, leaving={3: "22/07/2026"})
    backwards = idl_on(tmp_path, "2020-01-01", "sync")
    assert backwards.returncode == 2, backwards.stdout + backwards.stderr
    assert "the run's date 2020-01-01 is before the last run's (2026-11-23)" in backwards.stderr
    assert "rerun with --allow-date 2020-01-01" in backwards.stderr
    assert account_of(tmp_path, "000003").enabled, "nothing is applied"
    assert audit_events(tmp_path, "guard-tripped")[-1]["reasons"] == [backwards.stderr.split("  - ")[1].strip()]
    # A rehearsal may take any date, and says what a sync would do.
    rehearsal = idl_on(tmp_path, "2020-01-01", "plan")
    assert rehearsal.returncode == 0 and "rehearsal only: a sync on this date would stop" in rehearsal.stderr
    allowed = idl_on(tmp_path, "2026-11-20", "sync", "--allow-date", "2026-11-20")
    assert allowed.returncode == 0, allowed.stderr
    assert not account_of(tmp_path, "000003").enabled
    assert audit_events(tmp_path, "guard-override")[-1]["allow_date"] == "2026-11-20"
    # The allowed run is now the last: the next day follows it; the allowance did not carry over.
    assert idl_on(tmp_path, "2026-11-21", "sync").returncode == 0
    assert idl_on(tmp_path, "2026-11-20", "sync").returncode == 2


def test_a_run_dated_long_after_the_last_run_stops_but_the_summer_holiday_does_not(tmp_path):
    school(tmp_path)
    assert idl_on(tmp_path, "2026-07-22", "sync").returncode == 0
    assert idl_on(tmp_path, "2026-09-03", "sync").returncode == 0, "43 days: the server was off over summer"
    years = idl_on(tmp_path, "2036-09-03", "sync")
    assert years.returncode == 2
    assert ("the run's date 2036-09-03 is 3653 days after the last run's (2026-09-03), more than "
            "max_days_between_runs (60)") in years.stderr
    assert all(a.enabled for a in directory(tmp_path).accounts())


def test_re_enabling_leavers_wholesale_is_stopped_by_the_destructive_guard(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    leavers = {i: "22/07/2026" for i in range(3, 10)}
    write_pupils(tmp_path / "pupils.csv", 40, leaving=leavers)
    assert idl(tmp_path, "sync", "--allow-destructive", "7").returncode == 0
    write_pupils(tmp_path / "pupils.csv", 40)  # a wrong feed: the seven leavers are back
    wrong = idl(tmp_path, "sync")
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert "ad: 7 destructive changes are 17% of 42 managed accounts" in wrong.stderr
    assert sum(not a.enabled for a in directory(tmp_path).accounts()) == 7
    assert idl(tmp_path, "sync", "--allow-destructive", "7").returncode == 0
    assert all(a.enabled for a in directory(tmp_path).accounts())


def test_a_saved_plan_applied_on_a_date_before_the_last_run_stops_unless_allowed(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    write_pupils(tmp_path / "pupils.csv", 40, leaving={3: "22/07/2026"})
    assert idl_on(tmp_path, "2026-11-01", "plan", "--out", "plan.json").returncode == 0
    stopped = idl_on(tmp_path, "2026-11-01", "apply", "plan.json")
    assert stopped.returncode == 2 and "is before the last run's (2026-11-23)" in stopped.stderr
    assert account_of(tmp_path, "000003").enabled
    allowed = idl_on(tmp_path, "2026-11-01", "apply", "plan.json", "--allow-date", "2026-11-01")
    assert allowed.returncode == 0, allowed.stderr
    assert not account_of(tmp_path, "000003").enabled


def test_a_saved_access_review_plan_is_checked_against_its_accounts_not_against_the_feed(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "sync").returncode == 0
    double = directory(tmp_path)
    jane = account_of(tmp_path, "JDO")
    double.put_group("Share-SEN-Restricted", (jane.key,), managed=False)
    snapshot = double.snapshot()
    removal = Change("ad", Action.REMOVE_MEMBER, "JDO", jane.username, "removed at the access review by Dr Ada Okafor",
                     target=jane.key, group="Share-SEN-Restricted", restricted=True)
    plan = Plan((removal,), {"ad": snapshot.fingerprint()}, {"ad": len(snapshot.accounts)},
                plan_id=new_plan_id(), origin="access-review")
    (tmp_path / "review-plan.json").write_text(json.dumps(plan_to_json(plan)))
    # The nightly plan would never make this change (no share defines the group), yet it is the SIRO's decision.
    applied = idl(tmp_path, "apply", "review-plan.json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert double.members("Share-SEN-Restricted") == set()


def test_apply_of_a_saved_plan_hands_out_the_new_starters_passwords_like_sync(tmp_path):
    school(tmp_path)
    assert idl(tmp_path, "plan", "--out", "plan.json").returncode == 0
    applied = idl(tmp_path, "apply", "plan.json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Passwords not yet delivered" not in applied.stdout
    double = directory(tmp_path)
    accounts = {a.username: a for a in double.accounts()}
    handed = slip_passwords(tmp_path / "state" / "slips")
    assert sorted(u for u, _ in handed) == sorted(accounts), "everyone created is given their password once"
    for username, password in handed:
        assert hashlib.sha256(password.encode()).hexdigest() == double.current_password_hash(accounts[username].key)
    assert len(audit_events(tmp_path, "password-delivered")) == 42
    assert "No changes" in idl(tmp_path, "sync").stdout
