"""The state database and its audit log cannot be lost, rolled back or rewritten unnoticed: a checkpoint
outside the database stops the next run, `audit verify` says *tampered*, and `state rebuild` starts again
from the directories without reissuing a name."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from tests.doubles import FileDirectory
from tests.e2e.school import write_pupils
from tests.e2e.test_cli import idl, school
from tests.factories import ROOT


def db_path(tmp: Path) -> Path:
    return tmp / "state" / "idlifecycle.db"


def checkpoint_file(tmp: Path) -> Path:
    return tmp / "state.checkpoint.json"


def raw(tmp: Path) -> sqlite3.Connection:
    return sqlite3.connect(db_path(tmp), isolation_level=None)


def synced(tmp: Path) -> None:
    school(tmp)
    first = idl(tmp, "sync", "--quiet")
    assert first.returncode == 0, first.stderr


def copy_of_state(tmp: Path, to: Path) -> None:
    """A backup as a school would take it between runs (sqlite3's `.backup`: consistent, WAL and all)."""
    source, copy = sqlite3.connect(db_path(tmp)), sqlite3.connect(to)
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()


def restore(copy: Path, tmp: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{db_path(tmp)}{suffix}").unlink(missing_ok=True)
    shutil.copy2(copy, db_path(tmp))


def verify(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return idl(tmp, "audit", "verify", *args)


def assert_tampered(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "The audit log has been tampered with" in result.stdout, result.stdout
    for word in words:
        assert word in result.stdout, result.stdout


def unkeyed_hash(prev: str, at: str, event: str, actor: str, body: str) -> str:
    """The chain as an attacker without the key can compute it (the unkeyed sha256 of the old store)."""
    return hashlib.sha256("\x1f".join((prev, at, event, actor, body)).encode()).hexdigest()


# ---- audit verify --------------------------------------------------------------------------------------

def test_an_untouched_log_verifies_intact_against_its_checkpoint(tmp_path):
    synced(tmp_path)
    result = verify(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    count = raw(tmp_path).execute("SELECT COUNT(*) FROM audit").fetchone()[0]
    assert f"The audit log is intact: {count} entries" in result.stdout
    assert "reaches the checkpoint" in result.stdout


def test_an_edited_row_rehashed_without_the_key_is_tampered(tmp_path):
    synced(tmp_path)
    db = raw(tmp_path)
    rows = db.execute("SELECT seq, at, event, actor, data, prev_hash FROM audit WHERE seq >= 3 ORDER BY seq").fetchall()
    prev = rows[0][5]
    db.execute("BEGIN")
    for seq, at, event, actor, data, _ in rows:
        if seq == 3:
            data = json.dumps({"username": "someone-else"})
        digest = unkeyed_hash(prev, at, event, actor, data)
        db.execute("UPDATE audit SET data=?, prev_hash=?, hash=? WHERE seq=?", (data, prev, digest, seq))
        prev = digest
    db.execute("COMMIT")
    assert_tampered(verify(tmp_path), "audit row 3: its MAC does not match")


def test_rows_deleted_at_the_end_are_tampered_even_with_the_sequence_reset(tmp_path):
    synced(tmp_path)
    db = raw(tmp_path)
    last = db.execute("SELECT MAX(seq) FROM audit").fetchone()[0]
    db.execute("DELETE FROM audit WHERE seq > ?", (last - 5,))
    db.execute("UPDATE sqlite_sequence SET seq=? WHERE name='audit'", (last - 5,))
    assert_tampered(verify(tmp_path), f"audit entry {last - 5} < {last}")


def test_a_restored_older_database_is_tampered(tmp_path):
    synced(tmp_path)
    copy_of_state(tmp_path, tmp_path / "backup.db")
    write_pupils(tmp_path / "pupils.csv", 40, leaving={3: "22/07/2026"})
    assert idl(tmp_path, "sync", "--quiet").returncode == 0
    restore(tmp_path / "backup.db", tmp_path)
    assert_tampered(verify(tmp_path), "older than the last checkpoint (run 1 < 2)")


def test_a_deleted_database_file_is_tampered_and_not_recreated(tmp_path):
    synced(tmp_path)
    db_path(tmp_path).unlink()
    assert_tampered(verify(tmp_path), "is missing")
    assert not db_path(tmp_path).exists()


def test_a_dropped_audit_table_is_tampered(tmp_path):
    synced(tmp_path)
    db = raw(tmp_path)
    db.execute("DROP TABLE audit")
    db.execute("DELETE FROM sqlite_sequence WHERE name='audit'")
    assert_tampered(verify(tmp_path), "older than the last checkpoint")


def test_a_forged_appended_row_is_tampered(tmp_path):
    synced(tmp_path)
    db = raw(tmp_path)
    seq, head = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    at, event, actor, body = "2026-11-24T01:00:00+00:00", "change-applied", "nightly job", '{"username": "x"}'
    db.execute("INSERT INTO audit (seq, at, event, actor, data, prev_hash, hash, keyed) VALUES (?,?,?,?,?,?,?,1)",
               (seq + 1, at, event, actor, body, head, unkeyed_hash(head, at, event, actor, body)))
    assert_tampered(verify(tmp_path), f"audit row {seq + 1}: its MAC does not match")


def test_a_checkpoint_kept_elsewhere_catches_a_rollback_of_database_and_checkpoint_together(tmp_path):
    synced(tmp_path)
    copy_of_state(tmp_path, tmp_path / "backup.db")
    shutil.copy2(checkpoint_file(tmp_path), tmp_path / "backup.checkpoint.json")
    write_pupils(tmp_path / "pupils.csv", 40, leaving={3: "22/07/2026"})
    assert idl(tmp_path, "sync", "--quiet").returncode == 0
    # As a school would keep it: the line the system log received, pasted into a file.
    kept = tmp_path / "kept-off-the-server.txt"
    kept.write_text("Nov 24 02:31:07 server idlifecycle: " + checkpoint_file(tmp_path).read_text().strip() + "\n")
    restore(tmp_path / "backup.db", tmp_path)
    shutil.copy2(tmp_path / "backup.checkpoint.json", checkpoint_file(tmp_path))
    assert verify(tmp_path).returncode == 0, "the server's own copies agree with each other"
    assert_tampered(verify(tmp_path, "--checkpoint", str(kept)), "older than the last checkpoint")


# ---- the start-of-run state check ----------------------------------------------------------------------

def test_a_deleted_state_database_stops_the_next_sync(tmp_path):
    synced(tmp_path)
    before = FileDirectory("ad", tmp_path / "directory.sqlite").writes()
    db_path(tmp_path).unlink()
    write_pupils(tmp_path / "pupils.csv", 40, leaving={3: "22/07/2026"})
    stopped = idl(tmp_path, "sync")
    assert stopped.returncode == 2, stopped.stdout + stopped.stderr
    assert "the state database" in stopped.stderr and "is missing" in stopped.stderr
    assert "idlifecycle state rebuild" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert not db_path(tmp_path).exists(), "the run must not start afresh on an empty database"
    assert FileDirectory("ad", tmp_path / "directory.sqlite").writes() == before


def test_a_restored_older_state_database_stops_the_next_sync(tmp_path):
    synced(tmp_path)
    copy_of_state(tmp_path, tmp_path / "backup.db")
    write_pupils(tmp_path / "pupils.csv", 40, leaving={3: "22/07/2026"})
    assert idl(tmp_path, "sync", "--quiet").returncode == 0
    restore(tmp_path / "backup.db", tmp_path)
    for command in (("sync",), ("plan",)):
        stopped = idl(tmp_path, *command)
        assert stopped.returncode == 2, stopped.stdout + stopped.stderr
        assert "is older than the last checkpoint (run 1 < 2): it was restored from a backup" in stopped.stderr
        # Not a guard the network manager may override with --allow-destructive: its own heading says so.
        assert "Stopped: the state database is not the one the last run left" in stopped.stderr
        assert "Stopped by a guard" not in stopped.stderr
        assert "retention dates and never-reissue names since then would be lost" in stopped.stderr


def test_an_emptied_state_database_stops_the_next_sync(tmp_path):
    synced(tmp_path)
    for suffix in ("-wal", "-shm"):
        Path(f"{db_path(tmp_path)}{suffix}").unlink(missing_ok=True)
    db_path(tmp_path).write_bytes(b"")
    stopped = idl(tmp_path, "sync")
    assert stopped.returncode == 2, stopped.stdout + stopped.stderr
    assert "is empty" in stopped.stderr


def test_the_first_run_ever_starts_without_a_checkpoint_and_writes_one(tmp_path):
    school(tmp_path)
    assert not checkpoint_file(tmp_path).exists()
    first = idl(tmp_path, "sync", "--quiet")
    assert first.returncode == 0, first.stderr
    written = json.loads(checkpoint_file(tmp_path).read_text())
    db = raw(tmp_path)
    seq, mac = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    assert written["audit_seq"] == seq and written["head_mac"] == mac and written["run"] == 1
    assert written["database_id"] == db.execute("SELECT value FROM meta WHERE name='database_id'").fetchone()[0]


# ---- state rebuild -------------------------------------------------------------------------------------

def test_rebuild_shows_what_it_will_do_and_changes_nothing_without_yes(tmp_path):
    synced(tmp_path)
    db_path(tmp_path).unlink()
    before = checkpoint_file(tmp_path).read_text()
    shown = idl(tmp_path, "state", "rebuild")
    assert shown.returncode == 1
    assert "nothing is changed without --yes" in shown.stdout and "recycle bins" in shown.stdout
    assert not db_path(tmp_path).exists() and checkpoint_file(tmp_path).read_text() == before


def test_after_a_rebuild_the_next_sync_runs_and_no_name_is_reissued(tmp_path):
    synced(tmp_path)
    write_pupils(tmp_path / "pupils.csv", 40, leaving={3: "22/07/2026"})
    assert idl(tmp_path, "sync", "--quiet").returncode == 0
    # A name recorded but held by no account any more (deleted at the end of its retention).
    assert raw(tmp_path).execute("INSERT INTO usernames VALUES ('15pgone1', '009999', '2025-01-01')").rowcount == 1
    issued = dict(raw(tmp_path).execute("SELECT username, person_id FROM usernames").fetchall())
    copy_of_state(tmp_path, tmp_path / "older.db")
    assert idl(tmp_path, "sync", "--quiet").returncode == 0
    old_checkpoint = json.loads(checkpoint_file(tmp_path).read_text())
    restore(tmp_path / "older.db", tmp_path)
    assert idl(tmp_path, "sync").returncode == 2

    rebuilt = idl(tmp_path, "state", "rebuild", "--yes")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "1 more carried over from the old database" in rebuilt.stdout
    assert "1 disable dates kept" in rebuilt.stdout
    # The file directory's connector cannot list a recycle bin: the rebuild goes on and says so.
    assert "Recycle bins: ad: its connector cannot list deleted accounts" in rebuilt.stdout, rebuilt.stdout
    db = raw(tmp_path)
    assert dict(db.execute("SELECT username, person_id FROM usernames").fetchall()) == issued
    first = db.execute("SELECT event, data FROM audit ORDER BY seq LIMIT 1").fetchone()
    assert first[0] == "state-rebuilt"
    assert json.loads(first[1])["replaces_checkpoint"] == old_checkpoint
    recorded = json.loads(db.execute("SELECT data FROM audit WHERE event = 'state-rebuild-recorded'").fetchone()[0])
    assert recorded["recycle_bins"] == {"ad": None} and recorded["recycle_bins_not_read"] == ["ad"]
    assert list(tmp_path.glob("state/idlifecycle.db.replaced-*")), "the old database is kept"

    # A new pupil whose name would give the deleted pupil's name, and one with an existing pupil's name.
    with (tmp_path / "pupils.csv").open("a", encoding="utf-8") as feed:
        feed.write("009001,,Pupil,,Gone1,11,11A,01/09/2020,\n009002,,Pupil,,Number5,7,7A,01/09/2020,\n")
    night = idl(tmp_path, "sync")
    assert night.returncode == 0, night.stdout + night.stderr
    new = dict(raw(tmp_path).execute("SELECT person_id, username FROM usernames WHERE person_id IN "
                                     "('009001', '009002')").fetchall())
    assert set(new) == {"009001", "009002"}
    assert not set(new.values()) & set(issued), f"a name was reissued: {new}"
    assert verify(tmp_path).returncode == 0
    again = idl(tmp_path, "sync")
    assert "No changes" in again.stdout, again.stdout + again.stderr


# ---- the audit key -------------------------------------------------------------------------------------

def test_a_real_job_without_the_audit_key_refuses_to_start_naming_the_secret(tmp_path):
    school(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "IDLIFECYCLE_AUDIT_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "idlifecycle", "--config", str(tmp_path / "job.toml"), "--today", "2026-11-23",
         "sync"], capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**env, "PYTHONPATH": str(ROOT), "IDLIFECYCLE_SECRETS_DIR": str(tmp_path / "no-secrets")})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("idlifecycle: secret 'audit_key' is missing"), result.stderr
    assert "IDLIFECYCLE_AUDIT_KEY" in lines[0] and "$IDLIFECYCLE_SECRETS_DIR" in lines[0]
    assert not db_path(tmp_path).exists()
    assert FileDirectory("ad", tmp_path / "directory.sqlite").writes() == []


def test_a_real_job_reads_the_audit_key_from_a_secret_file(tmp_path):
    school(tmp_path)
    secrets = tmp_path / "credentials"
    secrets.mkdir()
    (secrets / "audit_key").write_text("from-the-secrets-folder-0123456789abcdef\n")
    env = {k: v for k, v in os.environ.items() if k != "IDLIFECYCLE_AUDIT_KEY"}
    env["IDLIFECYCLE_SECRETS_DIR"] = str(secrets)
    assert idl_env(tmp_path, env, "sync", "--quiet").returncode == 0
    assert idl_env(tmp_path, env, "audit", "verify").returncode == 0
    # The same log checked with another key: every entry's MAC is wrong.
    (secrets / "audit_key").write_text("another-key-entirely-0123456789abcdef012\n")
    assert_tampered(idl_env(tmp_path, env, "audit", "verify"), "audit row 1: its MAC does not match")


def idl_env(tmp: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idlifecycle", "--config", str(tmp / "job.toml"), "--today", "2026-11-23", *args],
        capture_output=True, text=True, cwd=tmp, timeout=120, env={**env, "PYTHONPATH": str(ROOT)})


# ---- the checkpoint's copies ---------------------------------------------------------------------------

def test_the_checkpoint_file_is_private_and_replaced_whole(tmp_path):
    synced(tmp_path)
    path = checkpoint_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    old_link = tmp_path / "old-checkpoint"
    os.link(path, old_link)
    old_text = old_link.read_text()
    write_pupils(tmp_path / "pupils.csv", 40, leaving={3: "22/07/2026"})
    assert idl(tmp_path, "sync", "--quiet").returncode == 0
    # Renamed into place: the old file (another name for it) is untouched, the new one is another file.
    assert old_link.read_text() == old_text
    assert path.stat().st_ino != old_link.stat().st_ino
    assert json.loads(path.read_text())["run"] == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temporary file is left"


def test_each_checkpoint_also_goes_to_the_system_log(tmp_path):
    school(tmp_path)
    address = tmp_path / "log.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(address))
    listener.settimeout(5)
    job = tmp_path / "job.toml"
    job.write_text(job.read_text().replace("[job]\n", f"[job]\nsyslog = {json.dumps(str(address))}\n", 1))
    try:
        assert idl(tmp_path, "sync", "--quiet").returncode == 0
        message = listener.recv(65536).decode()
    finally:
        listener.close()
    assert message.startswith("<")  # a syslog priority: auth facility
    assert "idlifecycle: " in message and '"event": "state-checkpoint"' in message
    assert json.loads(message[message.index("{"):].rstrip("\x00"))["head_mac"] == \
        json.loads(checkpoint_file(tmp_path).read_text())["head_mac"]
