"""A run killed with kill -9 in the middle of applying, then started again, applies every change once."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from idlifecycle.model import Change
from idlifecycle.store import Store
from tests.doubles import FileDirectory
from tests.e2e.school import slip_passwords, write_job, write_pupils, write_staff
from tests.e2e.test_cli import school
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
    _every_write_audited_once(tmp_path, resent=True)
    # The passwords of accounts created before a kill were never handed out: the next night sets and
    # hands out fresh ones, so each person gets exactly one, the one they have.
    night = _run(tmp_path, "2026-11-23", "sync")
    assert night.returncode == 0, night.stdout + night.stderr
    handed = Counter(u for u, _ in slip_passwords(tmp_path / "state" / "slips"))
    assert handed == Counter({a.username: 1 for a in accounts}), handed
    for username, password in slip_passwords(tmp_path / "state" / "slips"):
        key = next(a.key for a in accounts if a.username == username)
        assert hashlib.sha256(password.encode()).hexdigest() == directory.current_password_hash(key)


# --- a night killed between a change landing and the tool hearing of it, resumed -------------------

NIGHT_2 = "2026-11-24"
LEAVERS = {3: "22/07/2026", 4: "22/07/2026"}
STARTERS = range(41, 49)


def _cli(tmp: Path, day: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "idlifecycle", "--config", str(tmp / "job.toml"), "--today", day, *args],
        cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def _run(tmp: Path, day: str, *args: str) -> subprocess.CompletedProcess[str]:
    run = _cli(tmp, day, *args)
    out, err = run.communicate(timeout=120)
    return subprocess.CompletedProcess(run.args, run.returncode, out, err)


def _kill_after(tmp: Path, run: subprocess.Popen[str], writes: int) -> None:
    """SIGKILL `run` once the directory took `writes` more writes: with DOUBLE_DELAY_AFTER the kill lands
    after the write, while the tool is still waiting for the answer."""
    seen = FileDirectory("ad", tmp / "directory.sqlite")
    target = len(seen.writes()) + writes
    deadline = time.monotonic() + 60
    while len(seen.writes()) < target and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.005)
    assert run.poll() is None, run.communicate()
    os.kill(run.pid, signal.SIGKILL)
    run.wait()


@pytest.fixture(scope="module")
def second_night(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A school after an uninterrupted first night, with two leavers and eight new starters in the feed;
    and how many writes the second night makes when nothing stops it."""
    base = tmp_path_factory.mktemp("school")
    school(base)
    first = _run(base, "2026-11-23", "sync")
    assert first.returncode == 0, first.stderr
    write_pupils(base / "pupils.csv", 48, leaving=LEAVERS)
    reference = tmp_path_factory.mktemp("reference")
    shutil.copytree(base, reference, dirs_exist_ok=True)
    write_job(reference)
    before = len(FileDirectory("ad", reference / "directory.sqlite").writes())
    night = _run(reference, NIGHT_2, "sync")
    assert night.returncode == 0, night.stdout + night.stderr
    return base, len(FileDirectory("ad", reference / "directory.sqlite").writes()) - before


def _copy(base: Path, tmp: Path) -> Path:
    shutil.copytree(base, tmp, dirs_exist_ok=True)
    write_job(tmp)  # the connector's file names the copy's directory
    return tmp


def _audit(tmp: Path) -> list[tuple[str, dict[str, object]]]:
    store = Store(tmp / "state" / "idlifecycle.db")
    try:
        return [(e.event, e.data) for e in store.audit_entries()]
    finally:
        store.close()


def sent_id(entry: dict[str, object]) -> str:
    """The id the directory saw for an audited change: its change with the target it was sent to (a create
    has none: the audit names the key it made)."""
    creates = entry["action"] in ("create", "create-group")
    return Change.from_json({**entry, "target": None if creates else entry.get("target")}).change_id


def _every_write_audited_once(tmp: Path, *, resent: bool = False) -> None:
    """`resent`: a saved plan applied again re-sends what a killed attempt had only started, and the
    directory answers "already so" for those that had landed."""
    double = FileDirectory("ad", tmp / "directory.sqlite")
    audit = _audit(tmp)
    # Every write the directory took is audited exactly once as applied (by the id it was sent as); a
    # password set by a killed run cannot be seen in the directory, so it is audited as of unknown outcome.
    landed = Counter(cid for cid, _, outcome in double.writes() if outcome == "applied")
    applied = Counter(sent_id(d) for e, d in audit if e == "change-applied")
    unknown = Counter(sent_id(d) for e, d in audit if e == "change-outcome-unknown")
    password_sets = {cid for cid, action, _ in double.writes() if action == "set-password"}
    assert set(unknown) <= password_sets
    not_audited = landed - applied - unknown
    assert not not_audited, f"{sum(not_audited.values())} of {sum(landed.values())} applied writes not audited"
    assert applied + Counter({cid: n for cid, n in unknown.items() if cid not in applied}) == landed
    assert set(applied.values()) == {1}
    if not resent:
        assert not [cid for cid, _, outcome in double.writes() if outcome == "already-so"], "a change was sent twice"
    # Every intent has exactly one outcome.
    started = Counter((d["journal"], d["change_id"]) for e, d in audit if e == "change-started")
    ended = Counter((d["journal"], d["change_id"]) for e, d in audit
                    if e in ("change-applied", "change-already-so", "change-failed", "change-not-applied",
                             "change-outcome-unknown") and "journal" in d)
    assert set(started.values()) == {1} and set(started) <= set(ended) and set(ended.values()) == {1}


def _check_exactly_once(tmp: Path) -> None:
    double = FileDirectory("ad", tmp / "directory.sqlite")
    _every_write_audited_once(tmp)

    db = sqlite3.connect(tmp / "state" / "idlifecycle.db")
    issued = {u.lower(): p for u, p in db.execute("SELECT username, person_id FROM usernames")}
    accounts = double.accounts()
    assert len(accounts) == 50 and len({a.anchor for a in accounts}) == 50, "a duplicate account"
    missing = [a.username for a in accounts if issued.get(a.username.lower()) != a.anchor]
    assert not missing, f"created usernames missing from the never-reissue record: {missing}"
    disabled_on = dict(db.execute("SELECT person_id, disabled_on FROM accounts WHERE directory='ad'"))
    leavers = [a.anchor for a in accounts if not a.enabled]
    assert sorted(leavers) == ["000003", "000004"]
    assert all(disabled_on.get(p) == NIGHT_2 for p in leavers), f"disable dates: {disabled_on}"
    assert db.execute("SELECT COUNT(*) FROM passwords_owed").fetchone()[0] == 0
    db.close()

    # Each new starter's password reached their class teacher exactly once, and it is the one they have.
    slips = slip_passwords(tmp / "state" / "slips", f"{NIGHT_2}_*.pdf")
    starters = {a.username: a for a in accounts if a.anchor in {f"{i:06d}" for i in STARTERS}}
    assert len(starters) == 8
    handed = Counter(username for username, _ in slips)
    assert {u: handed[u] for u in starters} == dict.fromkeys(starters, 1), handed
    for username, password in slips:
        assert hashlib.sha256(password.encode()).hexdigest() == double.current_password_hash(starters[username].key)

    verify = _run(tmp, NIGHT_2, "audit", "verify")
    assert verify.returncode == 0, verify.stdout
    following = _run(tmp, "2026-11-25", "sync")
    assert following.returncode == 0 and "No changes" in following.stdout, following.stdout + following.stderr


SLOW_REPLY = {"DOUBLE_DELAY": "0.01", "DOUBLE_DELAY_AFTER": "0.08"}


@pytest.mark.parametrize("seed", range(6))
def test_a_night_killed_after_a_change_landed_and_resumed_is_recorded_audited_and_delivered_once(
    tmp_path, second_night, seed,
):
    base, writes = second_night
    tmp = _copy(base, tmp_path)
    kill_at = random.Random(seed).randint(1, writes - 1)
    _kill_after(tmp, _cli(tmp, NIGHT_2, "sync", env=SLOW_REPLY), kill_at)
    resumed = _run(tmp, NIGHT_2, "sync")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _check_exactly_once(tmp)


def test_a_night_killed_twice_once_while_resuming_is_recorded_audited_and_delivered_once(tmp_path, second_night):
    base, writes = second_night
    tmp = _copy(base, tmp_path)
    rng = random.Random(99)
    _kill_after(tmp, _cli(tmp, NIGHT_2, "sync", env=SLOW_REPLY), rng.randint(writes // 2, writes - 1))
    # The resume's own writes: the rest of the night, then the passwords owed to the new starters.
    _kill_after(tmp, _cli(tmp, NIGHT_2, "sync", env=SLOW_REPLY), rng.randint(1, 4))
    resumed = _run(tmp, NIGHT_2, "sync")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _check_exactly_once(tmp)
