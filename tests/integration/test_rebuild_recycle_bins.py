"""`state rebuild` reads the recycle bins: a name held only by a deleted, still restorable account is
reserved, so a new starter whose natural name it is gets another one after the state database was lost.

Entra: the Graph emulator through the real msgraph-sdk (the connector's own session); Google: the sandbox
tenant through google-api-python-client. The account is deleted by the tool's own DELETE (the end of a
leaver's retention), then the state database and the connector cache are lost.
"""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.checkpoint import StateMismatch
from idlifecycle.config import JobConfig, Secrets, load_job_config
from idlifecycle.errors import UserError
from idlifecycle.job import load_job, run_sync
from idlifecycle.model import Action, Change, Outcome
from idlifecycle.rebuild import rebuild
from idlifecycle.sandbox.graph import Fault, GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_SECRET, PUPILS
from tests.integration.test_entra_job import AMY, CLARA, RORY, seed, write_school
from tests.jobfiles import write_job

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "src/idlifecycle/sandbox/sample_school"
GOOGLE = REPO / "connectors/google-sandbox.toml"
AUTUMN, SPRING = date(2026, 9, 3), date(2027, 3, 1)


def delete_account(job_file: Path, directory: str, person_id: str) -> str:
    """Deletes the person's account with the connector's own DELETE (to the recycle bin); its username."""
    job = load_job(job_file, today=SPRING, secrets=Secrets())
    try:
        with job.open_connectors() as connectors:
            account = next(a for a in job.snapshots(connectors)[directory].accounts if a.anchor == person_id)
            result = connectors[directory].apply_one(Change(
                directory=directory, action=Action.DELETE, person_id=person_id, username=account.username,
                reason="retention ended", target=account.key))
    finally:
        job.close()
    assert result.outcome is Outcome.APPLIED, result
    return account.username


def lose_the_state(config: JobConfig) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{config.state_db}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(config.state_dir / "cache", ignore_errors=True)


def rebuilt(job_file: Path) -> tuple[list[str], dict[str, object], dict[str, str]]:
    """The rebuild's report, its audit entry and the never-reissue record it left."""
    config = load_job_config(job_file)
    with pytest.raises(StateMismatch):  # the lost database stops the night until the state is rebuilt
        load_job(job_file, today=SPRING, secrets=Secrets())
    lines = rebuild(config, SPRING, Secrets())
    db = sqlite3.connect(config.state_db)
    try:
        entry = json.loads(db.execute("SELECT data FROM audit WHERE event = 'state-rebuild-recorded'").fetchone()[0])
        names = {str(u).lower(): str(p) for u, p in db.execute("SELECT username, person_id FROM usernames")}
    finally:
        db.close()
    return lines, entry, names


def new_username(job_file: Path, directory: str, person_id: str) -> str:
    job = load_job(job_file, today=SPRING, secrets=Secrets())
    report = run_sync(job)
    assert report.status == "ok", report.failures
    job = load_job(job_file, today=SPRING, secrets=Secrets())
    try:
        with job.open_connectors() as connectors:
            return next(a.username for a in job.snapshots(connectors)[directory].accounts if a.anchor == person_id)
    finally:
        job.close()


def test_entra_a_deleted_pupils_name_is_not_reissued_after_a_rebuild(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = make_emulator(seed())
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    job_file = write_school(tmp_path, emulator, [AMY, RORY, CLARA])
    assert run_sync(load_job(job_file, today=AUTUMN, secrets=Secrets())).status == "ok"
    write_school(tmp_path, emulator, [RORY, CLARA])  # Amy left; her account was deleted at the end of retention
    gone = delete_account(job_file, "entra", "000201")
    assert [u["userPrincipalName"] for u in emulator.directory.state["deleted"].values()] == [f"{gone}@{PUPILS}"]

    lose_the_state(load_job_config(job_file))
    lines, entry, names = rebuilt(job_file)
    assert "Recycle bins: entra: 1 usernames reserved." in lines
    assert entry["recycle_bins"] == {"entra": 1} and entry["recycle_bins_not_read"] == []
    assert names[gone.lower()] == "000201", "reserved for the person the deleted account carries"

    # Another Amy Pond joins Year 7: her natural name is the deleted account's.
    write_school(tmp_path, emulator, [RORY, CLARA, ["000301", *AMY[1:]]])
    given = new_username(job_file, "entra", "000301")
    assert given.lower() != gone.lower() and given.lower().startswith(gone.lower())


def google_school(tmp: Path, pupils: list[list[str]]) -> Path:
    rows = list(csv.reader((SAMPLE / "pupils.csv").read_text(encoding="utf-8-sig").splitlines()))
    with (tmp / "pupils.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([rows[0], *pupils])
    staff = (SAMPLE / "staff.csv").read_text(encoding="utf-8-sig").splitlines()[:2]
    (tmp / "staff.csv").write_text("\n".join(staff) + "\n", encoding="utf-8")
    return write_job(tmp / "nightly.toml", connectors=[GOOGLE], mappings=[REPO / "mappings/school.toml"],
                     feeds=[(tmp / "pupils.csv", "pupil"), (tmp / "staff.csv", "staff")], state_dir=tmp / "state",
                     guards={"max_destructive": 5, "max_feed_drop_percent": 50})


def sample_pupils(count: int) -> list[list[str]]:
    return list(csv.reader((SAMPLE / "pupils.csv").read_text(encoding="utf-8-sig").splitlines()))[1:count + 1]


def test_google_a_deleted_pupils_name_is_not_reissued_after_a_rebuild(tmp_path: Path) -> None:
    pupils = sample_pupils(4)
    job_file = google_school(tmp_path, pupils)
    assert run_sync(load_job(job_file, today=AUTUMN, secrets=Secrets())).status == "ok"
    leaver, *staying = pupils
    google_school(tmp_path, staying)
    gone = delete_account(job_file, "google", leaver[0])

    lose_the_state(load_job_config(job_file))
    lines, entry, names = rebuilt(job_file)
    assert "Recycle bins: google: 1 usernames reserved." in lines
    assert entry["recycle_bins"] == {"google": 1}
    assert names[gone.lower()] == leaver[0]

    google_school(tmp_path, [*staying, ["009001", "", *leaver[2:]]])
    given = new_username(job_file, "google", "009001")
    assert given.lower() != gone.lower() and given.lower().startswith(gone.lower())


def test_a_bin_that_cannot_be_read_stops_the_rebuild_and_leaves_nothing_half_built(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = make_emulator(seed())
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    job_file = write_school(tmp_path, emulator, [AMY, RORY, CLARA])
    assert run_sync(load_job(job_file, today=AUTUMN, secrets=Secrets())).status == "ok"
    config = load_job_config(job_file)
    lose_the_state(config)
    checkpoint = config.checkpoint_path.read_bytes()
    emulator.faults.append(Fault("GET", r"/directory/deletedItems/", status=403, times=5))

    with pytest.raises(UserError) as refused:
        rebuild(config, SPRING, Secrets())
    assert str(refused.value).startswith("entra: could not read the recycle bin: "), refused.value
    assert "\n" not in str(refused.value)
    assert not config.state_db.exists(), "no new database is left behind"
    assert config.checkpoint_path.read_bytes() == checkpoint, "the checkpoint is not replaced"

    emulator.faults.clear()
    assert "Recycle bins: entra: 0 usernames reserved." in rebuild(config, SPRING, Secrets())
