"""`idlifecycle sync` (its own process) with Entra and a second directory, while Graph (the emulator, in
this test's process) takes every write and never answers: Entra's changes fail within the documented
`give_up_after_seconds`, the other directory's are applied, and the run says which failed and why. When
Graph applied what it never answered, the next run's look settles it: each such create is audited
applied once, its username and key recorded, and its password delivered once."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from idlifecycle.sandbox.graph import Fault, GraphEmulator
from idlifecycle.store import Store
from tests.doubles import FileDirectory
from tests.e2e.school import slip_passwords
from tests.factories import ROOT
from tests.integration.graph_fixtures import CLIENT_SECRET, graph_tls_dir, make_emulator  # noqa: F401
from tests.integration.test_entra_job import MARKER, seed
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


def _sync(tmp_path: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idlifecycle", "--config", str(tmp_path / "job.toml"), "--today", "2026-09-03",
         *(command or ("sync",))], capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "IDLIFECYCLE_ENTRA_CLIENT_SECRET": CLIENT_SECRET})


def test_a_create_that_landed_while_graph_was_given_up_on_is_audited_applied_once_by_the_next_run(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path) -> None:  # noqa: F811
    tenant = seed()
    # The school's groups are there already, so the first thing sent to Graph is the accounts' phase.
    groups = [{"displayName": name, "description": MARKER, "members": []}
              for name in ("All Pupils", "All Staff", "Year 7 Pupils", "Year 8 Pupils")]
    tenant["groups"] = [*cast(list[object], tenant["groups"]), *groups]
    emulator = make_emulator(tenant)
    _two_directory_school(tmp_path, emulator, give_up_after=GIVE_UP_AFTER)
    # Graph applies every batch of writes and never answers it (the connection is held until the
    # emulator stops): what was sent lands, unanswered, and Entra is given up on.
    emulator.faults.append(Fault("POST", r"^/v1\.0/\$batch$", mode="hang_after", delay=3600, times=10**6))
    silent = _sync(tmp_path)
    assert silent.returncode == 1, silent.stdout + silent.stderr
    assert "Traceback" not in silent.stderr
    assert "entra was given up on" in silent.stdout + silent.stderr
    landed = {e["body"].get("employeeId"): e["id"] for e in emulator.write_log.since()
              if (e["method"], e["path"]) == ("POST", "/v1.0/users")}
    assert sorted(landed) == ["000201", "000202", "JDO"], "the accounts' batch did not land"

    emulator.faults.clear()  # Graph answers again: the next night looks and settles what was unconfirmed
    again = _sync(tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Passwords not yet delivered" not in again.stdout
    # Clara's rename landed in the other directory only; the next night finishes it with the same name.
    assert "18coswald2" not in again.stdout, again.stdout

    store = Store(tmp_path / "state" / "idlifecycle.db")
    try:
        audit = [(e.event, e.data) for e in store.audit_entries() if e.data.get("directory") == "entra"]
        accounts = dict(store.db.execute("SELECT person_id, key FROM accounts WHERE directory='entra'").fetchall())
        owed = store.owed_passwords()
        issued = store.issued_usernames()
    finally:
        store.close()
    for pid, username in (("000201", "19apond"), ("000202", "19rwilliams"), ("JDO", "jdoe")):
        creates = [(event, data["journal"]) for event, data in audit
                   if data["person_id"] == pid and data["action"] == "create"]
        # Sent by the first run, left unconfirmed (not failed), settled applied once by the second's look.
        assert creates == [("change-started", "run-1"), ("change-unconfirmed", "run-1"),
                           ("change-applied", "run-1")], (pid, creates)
        assert accounts[pid] == landed[pid] and issued[username] == pid
    assert not owed
    # Each new starter's Entra account holds exactly one of the passwords handed out: the first run's
    # went to the other directory's account (its slip), the second set a fresh one for Entra's and handed it out.
    handed: dict[str, list[str]] = {}
    for username, password in slip_passwords(tmp_path / "state" / "slips"):
        handed.setdefault(username, []).append(password)
    users = {u["employeeId"]: u for u in emulator.directory.state["users"].values()}
    for pid, username in (("000201", "19apond"), ("000202", "19rwilliams"), ("JDO", "jdoe")):
        digests = [hashlib.sha256(p.encode()).hexdigest() for p in handed[username]]
        assert digests.count(users[pid]["_passwordSha256"]) == 1, (username, len(handed[username]))
    verify = _sync(tmp_path, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
