"""The state checkpoint, kept outside the state database: which database, how many runs, how far its audit
log reached and the newest entry's MAC. A database found missing, emptied, replaced or older than its
checkpoint stops the run, because starting afresh would lose the never-reissue names and leavers' disable
dates without a word; and `audit verify` can tell a truncated or rolled-back log from an intact one.

Each checkpoint is written three ways, so losing one copy is not losing the evidence: a file beside the
state folder (atomically, 0600), the system log (for journald or a log server to keep off the machine),
and the run summary mailed after each run.
"""

from __future__ import annotations

import fcntl
import json
import logging
import logging.handlers
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from idlifecycle.config import JobConfig
from idlifecycle.errors import GuardTripped, UserError
from idlifecycle.store import GENESIS, Store, utcnow

log = logging.getLogger("idlifecycle.checkpoint")
"""One `state-checkpoint` line per checkpoint written, with -v (the system log always gets it): a command's
stderr stays the one line that says what went wrong."""

AUDIT_KEY = "audit_key"
"""The secret the audit chain is keyed with (`IDLIFECYCLE_AUDIT_KEY` or a file `audit_key` in the secrets folder)."""
MIN_KEY_LENGTH = 32
REBUILD = "idlifecycle state rebuild"
FIX = (f"put back a copy of the state database at least as new as the checkpoint, or rebuild the state from "
       f"the directories with `{REBUILD}` (it shows what it will do; add --yes to do it)")


class StateMismatch(GuardTripped):
    """The state database is not the one the checkpoint describes (exit 2); nothing was read or written."""

    heading = "Stopped: the state database is not the one the last run left; nothing was read or applied:"


def audit_key(config: JobConfig, found: Mapping[str, str]) -> bytes:
    """The audit chain's key: the school's secret; a demo job on the embedded sandbox makes its own.

    A real job without it stops here: an unkeyed log could be rewritten by anyone who can write the file.
    """
    value = found.get(AUDIT_KEY)
    if value:
        if len(value) < MIN_KEY_LENGTH:
            raise UserError(f"secret {AUDIT_KEY!r} is too short ({len(value)} characters): use at least "
                            f"{MIN_KEY_LENGTH}, e.g. the output of `openssl rand -hex 32`")
        return value.encode()
    if config.sandbox_only:
        return _generated_key(config.state_dir / AUDIT_KEY)
    raise UserError(f"secret {AUDIT_KEY!r} is missing: the audit log is chained with it and it is never kept in "
                    f"the database; set IDLIFECYCLE_AUDIT_KEY or put it in a file {AUDIT_KEY} in "
                    f"$IDLIFECYCLE_SECRETS_DIR (make one with `openssl rand -hex 32`, and keep a copy with the "
                    f"school's other secrets: without it the log cannot be verified)")


def _generated_key(path: Path) -> bytes:
    """The demo's own key, made once (0600). Linked into place, never renamed over: two first runs agree."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        _sync_folder(path.parent)
    return path.read_text().strip().encode()


@dataclass(frozen=True)
class Checkpoint:
    job: str
    database_id: str
    """Random, made with the database: another file in its place has another id."""
    run: int
    """The highest run number the database had given out."""
    audit_seq: int
    head_mac: str
    """The MAC of audit entry `audit_seq` (GENESIS when there was none)."""
    at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"run {self.run}, audit entry {self.audit_seq}, database {self.database_id}"


def current(store: Store, job: str) -> Checkpoint:
    seq, mac = store.audit_head()
    return Checkpoint(job, store.database_id, store.run_counter(), seq, mac, utcnow().isoformat())


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint in `path`; None when there is no such file (no run has written one yet).

    The file a run wrote, or a line saved from the system log or the summary mail: the JSON object in it.
    """
    try:
        text = path.read_text()
        data, _ = json.JSONDecoder().raw_decode(text, text.index("{"))
        return Checkpoint(job=str(data["job"]), database_id=str(data["database_id"]), run=int(data["run"]),
                          audit_seq=int(data["audit_seq"]), head_mac=str(data["head_mac"]), at=str(data["at"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path}: not a state checkpoint ({error}); put back the file a run wrote, or name "
                        f"another with --checkpoint") from None


def write_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Temporary file, fsync, rename: a crash leaves the old checkpoint or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (json.dumps(checkpoint.to_json(), sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One writer at a time (the nightly run and the approval server share a checkpoint)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record(config: JobConfig, store: Store, *, replacing: bool = False) -> Checkpoint | None:
    """Writes the store's checkpoint when it moved on since the last one; returns the one in force.

    A checkpoint is never lowered nor pointed at another database here: that is what the start-of-run check
    stops on, and only `state rebuild` (`replacing`) may replace it, audited.
    """
    path = config.checkpoint_path
    with _locked(path.parent):
        before = read_checkpoint(path)
        if before is None and store.is_empty():
            return None  # nothing recorded yet, so nothing a lost database could take with it
        now = current(store, config.name)
        if before is not None and not replacing:
            if state_problems(before, store, config.state_db, path):
                return None
            if (before.database_id, before.run, before.audit_seq) == (now.database_id, now.run, now.audit_seq):
                return before
        write_checkpoint(path, now)
    line = json.dumps({"event": "state-checkpoint", **now.to_json()}, sort_keys=True)
    log.debug(line)
    _to_syslog(config.syslog_address, line)
    return now


class _QuietSysLogHandler(logging.handlers.SysLogHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        """A system log that went away mid-write costs the copy there, not the run (the file is kept)."""


def _to_syslog(address: str, line: str) -> None:
    """One line to the system log (journald reads /dev/log); quietly nothing on a machine without one."""
    if not address or not Path(address).exists():
        return
    try:
        handler = _QuietSysLogHandler(address=address, facility=logging.handlers.SysLogHandler.LOG_AUTH)
    except OSError:
        return
    handler.ident = "idlifecycle: "
    try:
        handler.emit(logging.LogRecord("idlifecycle.checkpoint", logging.INFO, __file__, 0, line, None, None))
    finally:
        handler.close()


def state_problems(checkpoint: Checkpoint, store: Store | None, db_path: Path, checkpoint_path: Path) -> list[str]:
    """Why the state database is not (or no longer) the one `checkpoint` describes; empty when it is."""
    recorded = f"the checkpoint {checkpoint_path} records {checkpoint.describe()} ({checkpoint.at})"
    lost = "the never-reissue names, account links and leavers' disable dates it held would be lost"
    if store is None:
        return [f"the state database {db_path} is missing, but {recorded}: it was deleted or moved; {lost}; {FIX}"]
    if store.database_id != checkpoint.database_id:
        if store.is_empty():
            return [f"the state database {db_path} is empty, but {recorded}: it was emptied or recreated; "
                    f"{lost}; {FIX}"]
        return [f"the state database {db_path} is another database (id {store.database_id}) than the one "
                f"{recorded}: it was replaced; {lost}; {FIX}"]
    seq, _ = store.audit_head()
    if store.run_counter() < checkpoint.run or seq < checkpoint.audit_seq:
        how_far = (f"run {store.run_counter()} < {checkpoint.run}" if store.run_counter() < checkpoint.run
                   else f"audit entry {seq} < {checkpoint.audit_seq}")
        return [f"the state database {db_path} is older than the last checkpoint ({how_far}): it was restored "
                f"from a backup or replaced, or audit entries at its end were deleted; retention dates and "
                f"never-reissue names since then would be lost; {FIX}"]
    if checkpoint.audit_seq and store.audit_mac(checkpoint.audit_seq) != checkpoint.head_mac:
        return [f"audit entry {checkpoint.audit_seq} in {db_path} is not the one {recorded}: the log was "
                f"rewritten or the database replaced; {FIX}"]
    if not checkpoint.audit_seq and checkpoint.head_mac != GENESIS:
        return [f"{checkpoint_path}: records no audit entry but a MAC; it was edited"]
    return []


def open_checked_store(config: JobConfig, key: bytes, *, check: bool = True) -> Store:
    """The job's store, once it is shown to be the database the checkpoint describes (StateMismatch if not).

    A missing database is refused before anything is opened: opening would create an empty one. With no
    checkpoint yet (the first run, or the first since checkpoints were kept) the store opens as it is.
    """
    checkpoint = read_checkpoint(config.checkpoint_path) if check else None
    if checkpoint is not None and not config.state_db.exists():
        raise StateMismatch(state_problems(checkpoint, None, config.state_db, config.checkpoint_path))
    store = Store(config.state_db, audit_key=key)
    if checkpoint is not None:
        problems = state_problems(checkpoint, store, config.state_db, config.checkpoint_path)
        if problems:
            store.close()
            for problem in problems:
                _to_syslog(config.syslog_address, json.dumps({"event": "state-mismatch", "problem": problem}))
            raise StateMismatch(problems)
    store.key_the_chain()
    return store
