"""The sample school's first night killed twenty times, or met with 20 % faults, still does everything exactly once.

The emulators run in processes of their own (`idlifecycle.sandbox.night`), so their directories
outlive each `kill -9` of `idlifecycle sync`; the kill points are counted on the emulators' own
write logs (`idlifecycle.sandbox.faults`): the tool dies right after the Nth write landed and
before it heard so. After the last resume the night is compared with an uninterrupted one
(`tests/e2e/night_checks.py`): the same directories, every write audited once as applied, every
username and disable date recorded, every new starter's password handed out once (slips for pupils,
mail through aiosmtpd for staff), the audit chain intact, and the next night has nothing to do.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from idlifecycle.sandbox.faults import FaultSpec, kill_points
from idlifecycle.sandbox.night import EmulatorProcess, SchoolNight
from tests.e2e.night_checks import Effect, Kill, check_night, collect, heard_but_unrecorded, kill_record, view
from tests.factories import ROOT
from tests.integration.access_support import SMTP_PASSWORD, SMTP_USER, Mailbox, mailbox

__all__ = ["mailbox"]

TODAY = "2026-11-23"
NEXT_NIGHT = "2026-11-24"
KILLS = 20
FAULTS = FaultSpec(rate=0.2, seed=7, hang=20.0)
"""20 % of requests (and of batch parts) meet a fault, all five kinds; a hang outlasts the timeout."""
SETTLE = 5.0
"""At a kill point the emulator stops answering; the run is killed once idle, or after this many seconds."""
IDLE = 0.5
"""Seconds without a new audit entry after which a frozen run has recorded all it heard."""
TIMEOUT = 4.0
"""The connectors' per-request timeout in these nights: a hang costs this long, not a minute."""


def mail_section(box: Mailbox) -> dict[str, Any]:
    return {"from_address": SMTP_USER, "smtp_host": "127.0.0.1", "smtp_port": box.port, "smtp_username": SMTP_USER,
            "ca_file": str(box.ca_file), "timeout_seconds": 5}


def start(folder: Path, box: Mailbox, *, google: bool, faults: FaultSpec | None = None) -> SchoolNight:
    box.messages.clear()
    return SchoolNight.start(folder, google=google, faults=faults, mail=mail_section(box), timeout_seconds=TIMEOUT,
                             env={"IDLIFECYCLE_SMTP_PASSWORD": SMTP_PASSWORD})


@dataclass(frozen=True)
class Reference:
    """An uninterrupted first night: its directories, its changes, its writes per emulator, its wall time."""

    view: dict[str, Any]
    effects: Counter[Effect]
    writes: dict[str, int]
    seconds: float


def _reference(folder: Path, box: Mailbox, google: bool) -> Reference:
    night = start(folder, box, google=google)
    try:
        began = time.monotonic()
        run = night.run(TODAY)
        seconds = time.monotonic() - began
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        final = collect(night)
        # The reference is itself exactly once, or nothing can be compared with it.
        assert final.audited == final.logged and not final.already
        effects = Counter({e: n for e, n in final.audited.items() if e[1] != "set-password"})
        writes = {name: int(e.stats()["applied_writes"]) for name, e in night.emulators().items()}
        return Reference(view(night), effects, writes, seconds)
    finally:
        night.stop()


@pytest.fixture(scope="module")
def entra_reference(tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox) -> Reference:
    return _reference(tmp_path_factory.mktemp("reference-entra"), mailbox, google=False)


@pytest.fixture(scope="module")
def both_reference(tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox) -> Reference:
    return _reference(tmp_path_factory.mktemp("reference-both"), mailbox, google=True)


@pytest.fixture
def night_factory(tmp_path: Path, mailbox: Mailbox) -> Iterator[Any]:
    started: list[SchoolNight] = []

    def make(*, google: bool, faults: FaultSpec | None = None) -> SchoolNight:
        night = start(tmp_path / f"night-{len(started)}", mailbox, google=google, faults=faults)
        started.append(night)
        return night

    yield make
    for night in started:
        night.stop()


def _killed_night(night: SchoolNight, reference: Reference, seed: int) -> list[Kill]:
    """`idlifecycle sync` killed at KILLS seeded points spread over the night's writes, resumed each time."""
    order = list(night.emulators())  # the directories are applied one after the other, in this order
    total = sum(reference.writes[name] for name in order)
    kills: list[Kill] = []
    for point in kill_points(seed, total, KILLS):
        name = order[0]
        for name in order:
            if point <= reference.writes[name]:
                break
            point -= reference.writes[name]
        run = night.sync(TODAY)
        killer = night.emulators()[name]
        killer.arm_kill(run.pid, point, settle=SETTLE)
        _kill_once_idle(night, killer, run)
        run.wait(timeout=300)
        out, err = night.output(run)
        for emulator in night.emulators().values():
            emulator.disarm()
        never = f"kill {len(kills) + 1} ({name} write {point}) never came: exit {run.returncode}\n"
        assert run.returncode == -signal.SIGKILL, never + out[-2000:] + err[-2000:]
        kills.append(kill_record(night, name, point))
    resumed = night.run(TODAY)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return kills


def _kill_once_idle(night: SchoolNight, killer: EmulatorProcess, run: subprocess.Popen[str]) -> None:
    """Once the emulator froze at the kill point, SIGKILL the run as soon as its audit trail stops growing.

    The run has heard nothing since the freeze, so what it records meanwhile is what it had heard; the
    emulator kills it after SETTLE seconds anyway."""
    while run.poll() is None and not killer.frozen():
        time.sleep(0.01)
    last, still_since = -1, time.monotonic()
    while run.poll() is None and time.monotonic() - still_since < IDLE:
        count = _audit_length(night)
        if count != last:
            last, still_since = count, time.monotonic()
        time.sleep(0.05)
    if run.poll() is None:
        killer.kill_now(run.pid)


def _audit_length(night: SchoolNight) -> int:
    db = sqlite3.connect(f"file:{night.folder / 'state' / 'idlifecycle.db'}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()[0])
    finally:
        db.close()


def _next_night_has_nothing_to_do(night: SchoolNight) -> None:
    following = night.run(NEXT_NIGHT)
    assert following.returncode == 0 and "No changes" in following.stdout, \
        following.stdout[-3000:] + following.stderr[-2000:]


def test_a_first_night_killed_twenty_times_and_resumed_ends_as_if_never_killed(
        night_factory: Any, entra_reference: Reference, mailbox: Mailbox) -> None:
    night = night_factory(google=False)
    kills = _killed_night(night, entra_reference, seed=12)
    assert len(kills) == KILLS
    late = heard_but_unrecorded(night, kills)
    assert not late, f"{len(late)} of {KILLS} kills found replies heard and not recorded: " + "; ".join(late[:4])
    check_night(night, collect(night), entra_reference.view, entra_reference.effects, TODAY, mailbox=mailbox)
    _next_night_has_nothing_to_do(night)


def test_a_first_night_with_google_beside_entra_killed_twenty_times_ends_as_if_never_killed(
        night_factory: Any, both_reference: Reference, mailbox: Mailbox) -> None:
    night = night_factory(google=True)
    kills = _killed_night(night, both_reference, seed=13)
    assert {k.directory for k in kills} == {"entra", "google"}
    late = heard_but_unrecorded(night, kills)
    assert not late, f"{len(late)} of {KILLS} kills found replies heard and not recorded: " + "; ".join(late[:4])
    check_night(night, collect(night), both_reference.view, both_reference.effects, TODAY, mailbox=mailbox)
    _next_night_has_nothing_to_do(night)


def _failed(run: subprocess.CompletedProcess[str]) -> int:
    """The failed count of the run's last "Applied:" line, read as a number: a substring test for
    "0 failed" also matched "110 failed" (seen on CI, where the loop stopped after one run)."""
    counts = re.findall(r"^Applied: .*?(\d+) failed\.?$", run.stdout, re.MULTILINE)
    if not counts and run.returncode != 0 and "could not read the directory" in run.stderr:
        return -1  # the faults kept one directory from being read: the run stopped before planning; run again
    assert counts, f"no Applied: line (exit {run.returncode}): " + run.stdout[-2000:] + run.stderr[-3000:]
    return int(counts[-1])


@pytest.mark.parametrize("google", [False, True], ids=["entra", "both"])
def test_a_first_night_with_a_fifth_of_requests_faulted_ends_as_the_clean_one_and_not_ten_times_slower(
        night_factory: Any, entra_reference: Reference, both_reference: Reference, mailbox: Mailbox,
        google: bool) -> None:
    reference = both_reference if google else entra_reference
    night = night_factory(google=google, faults=FAULTS)
    began = time.monotonic()
    run = night.run(TODAY)
    seconds = time.monotonic() - began
    # A change the faults left undecided may fail, retryably, and only that: a group whose create
    # reply was lost and that replication still hides is not sent twice (no twin), so its members
    # wait. The run says so, and running again (faults still on) finishes the night. Up to five runs: a
    # group create can be left undecided on two runs in a row (seen on CI: Teaching Staff after three).
    # A run may also stop before planning, when the faults kept a directory from being read: so said, it
    # counts as one of the runs. The failed count is read as a number ("110 failed" is not "0 failed").
    attempts = 1
    while _failed(run) != 0 and attempts < 5:
        assert run.returncode != 0, run.stdout[-3000:] + run.stderr[-2000:]
        run = night.run(TODAY)
        attempts += 1
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert _failed(run) == 0, run.stdout[-3000:]
    print(f"faulted night: finished in {attempts} run(s)")
    faults = {name: e.stats()["faults"] for name, e in night.emulators().items()}
    print(f"faulted night: {seconds:.1f} s against {reference.seconds:.1f} s clean "
          f"({seconds / reference.seconds:.1f}x); faults injected: {faults}")
    assert all(sum(f.values()) > 50 for f in faults.values()), faults
    check_night(night, collect(night), reference.view, reference.effects, TODAY, mailbox=mailbox)
    _next_night_has_nothing_to_do(night)
    # The bound: ten times the clean night, plus for each hang one whole-request timeout (twice the
    # night's 10 s read timeout: the documented most a silent request may cost), plus some slack.
    hangs = sum(f.get("hang", 0) for f in faults.values())
    budget = 10 * reference.seconds + hangs * 2 * 10 + 60
    assert seconds < budget, f"{seconds:.0f} s with faults ({hangs} hangs), {reference.seconds:.0f} s without"


# --- the embedded sandboxes survive a kill in their first seconds --------------------------------------------


def test_a_demo_night_killed_in_its_first_seconds_leaves_sandboxes_the_next_night_can_use(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    text = (ROOT / "jobs" / "nightly.toml").read_text(encoding="utf-8")
    text = text.replace('connectors = ["../connectors/entra-sandbox.toml"]',
                        'connectors = ["../connectors/entra-sandbox.toml", "../connectors/google-sandbox.toml"]')
    text = text.replace('state_dir = "../state"', f'state_dir = "{tmp_path / "state"}"')
    text = text.replace('"../', f'"{ROOT}/')
    job.write_text(text, encoding="utf-8")
    key = tmp_path / "state" / "sandbox" / "google-sandbox" / "service_account.json"
    command = [sys.executable, "-m", "idlifecycle", "--config", str(job), "--today", TODAY, "plan"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Killed the moment the Google sandbox's key file appears: before its tenant had saved the key,
    # every later run was refused sign-in.
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 60
    while not key.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert key.exists()
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "Plan:" in again.stdout
    leftovers = [p.name for p in (tmp_path / "state").rglob("*.tmp")]
    assert not leftovers
