"""`idlifecycle state rebuild`: a new state database made from the directories, when the old one was lost,
emptied, replaced or rolled back (the start-of-run check stops every run until then).

What the directories cannot say is made safe rather than guessed: a disabled account whose disable date is
not in the old database is given the rebuild date, so its deletion comes later than it would have, never
earlier. The old database, whatever it is, is kept beside the new one, and its never-reissue names carried
over: a name once issued stays reserved. So are the names of the accounts in the directories' recycle bins
(deleted, still restorable), read from every connector that can list them (`Capabilities.recycle_bin`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from idlifecycle import checkpoint
from idlifecycle.anchors import directory_anchor, is_short_anchor
from idlifecycle.config import JobConfig, Secrets
from idlifecycle.connectors.base import Connector, ConnectorError
from idlifecycle.errors import UserError
from idlifecycle.job import Job, job_lock
from idlifecycle.model import DeletedAccount, Snapshot
from idlifecycle.store import utcnow

ACTOR = "state rebuild"
RECYCLE_BINS = ("read the recycle bins (Entra deleted items, Google deleted users, AD Deleted Objects) of the "
                "directories whose connector can list them, and reserve every name there in the never-reissue "
                "record, for its person where the bin keeps the id; a directory whose connector cannot is named in "
                "the report, and a name held only in its bin is not reserved until it is restored or purged")
NOT_READ = "its connector cannot list deleted accounts, so a name held only there is not reserved"

Bins = dict[str, list[DeletedAccount] | None]
"""Directory -> the accounts in its recycle bin, None where its connector cannot list them."""
DISABLE_DATES = ("no directory records the date an account was disabled in an attribute the tool reads, so a "
                 "date comes from the old database or is the rebuild date")


@dataclass
class OldState:
    """What a lost database's remains still tell: names issued and disable dates."""

    usernames: dict[str, str] = field(default_factory=dict)
    disabled_on: dict[tuple[str, str], str] = field(default_factory=dict)
    note: str = ""


def read_old_state(path: Path) -> OldState:
    if not path.exists():
        return OldState(note="none (missing)")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = {str(u): str(p) for u, p in db.execute("SELECT username, person_id FROM usernames")}
            dates = {(str(d), str(p)): str(on) for d, p, on in db.execute(
                "SELECT directory, person_id, disabled_on FROM accounts WHERE disabled_on IS NOT NULL")}
        finally:
            db.close()
    except sqlite3.Error as error:
        return OldState(note=f"unreadable ({error}); nothing carried over")
    return OldState(names, dates, f"{len(names)} usernames and {len(dates)} disable dates to carry over")


def set_aside(path: Path) -> Path | None:
    """Renames the database (and its WAL files, under matching names) out of the way; None if there was none."""
    if not path.exists():
        return None
    kept = path.with_name(f"{path.name}.replaced-{utcnow().strftime('%Y%m%dT%H%M%SZ')}")
    for suffix in ("-wal", "-shm", ""):
        part = Path(f"{path}{suffix}")
        if part.exists():
            part.rename(Path(f"{kept}{suffix}"))
    return kept


def preview(config: JobConfig, today: date) -> list[str]:
    """What `state rebuild --yes` would do, changing nothing."""
    try:
        replaced = checkpoint.read_checkpoint(config.checkpoint_path)
        was = "none" if replaced is None else f"{replaced.describe()} ({replaced.at})"
    except UserError as error:
        was = f"unreadable: {error}"
    old = read_old_state(config.state_db)
    return [
        f"State rebuild for job {config.name!r}; nothing is changed without --yes. It will:",
        f"  - replace the checkpoint {config.checkpoint_path}: {was}",
        f"  - keep the present state database {config.state_db} beside it as {config.state_db.name}.replaced-<time>: "
        f"{old.note}",
        "  - read every account in " + ", ".join(f"{c.name} ({c.type})" for c in config.connectors)
        + ", record each one's username in the never-reissue record and link it to its person",
        f"  - give each disabled account the disable date the old database has for it, else {today} (the "
        f"rebuild date: retention then ends later than it would have, never earlier); {DISABLE_DATES}",
        f"  - {RECYCLE_BINS}",
        "  - start a new audit chain whose first entry records this rebuild and the checkpoint it replaces, "
        "and write a fresh checkpoint",
    ]


def rebuild(config: JobConfig, today: date, secrets: Secrets | None = None) -> list[str]:
    """Rebuilds the state from the directories (holding the job lock); returns the report's lines."""
    found = secrets if secrets is not None else Secrets()
    checkpoint.audit_key(config, found)  # a missing key stops it before anything is moved
    with job_lock(config):
        try:
            replaced = checkpoint.read_checkpoint(config.checkpoint_path)
        except UserError:
            replaced = None
        old = read_old_state(config.state_db)
        kept = set_aside(config.state_db)
        job = Job(config, today=today, secrets=found, check_state=False)
        try:
            # Short anchors (ids longer than a directory holds) are given back their full ids from the ids
            # the old database had linked and the feed's, as a night would from its own store.
            job.check_feed()
            job.feed_person_ids |= set(old.usernames.values())
            with job.open_connectors() as connectors:
                snapshots = job.snapshots(connectors)
                bins = read_recycle_bins(connectors, job.feed_person_ids)
        except BaseException:
            # The directories could not be read: the old database goes back as it was, nothing is replaced.
            job.store.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{config.state_db}{suffix}").unlink(missing_ok=True)
                if kept is not None and Path(f"{kept}{suffix}").exists():
                    Path(f"{kept}{suffix}").rename(Path(f"{config.state_db}{suffix}"))
            raise
        try:
            job.store.audit("state-rebuilt", {
                "replaces_checkpoint": None if replaced is None else replaced.to_json(),
                "old_database": None if kept is None else str(kept), "old_state": old.note,
            }, actor=ACTOR)
            run_id = job.store.start_run(config.name)
            counts = _record(job, snapshots, old, today)
            counts["recycle_bin"] = _reserve_deleted(job, bins)
            binned = bin_counts(bins)
            job.store.finish_run(run_id, "rebuild", None, counts)
            job.store.audit("state-rebuild-recorded", {
                **counts, "run": run_id, "recycle_bins": binned,
                "recycle_bins_not_read": sorted(name for name, n in binned.items() if n is None)}, actor=ACTOR)
            fresh = checkpoint.record(config, job.store, replacing=True)
        finally:
            job.close()
    assert fresh is not None
    return [
        f"State rebuilt from {', '.join(c.name for c in config.connectors)}: {counts['usernames']} usernames "
        f"recorded ({counts['carried_over']} more carried over from the old database), {counts['linked']} "
        f"accounts linked, {counts['disable_dates_kept']} disable dates kept and {counts['disable_dates_today']} "
        f"set to {today}.",
        "Recycle bins: " + "; ".join(f"{name}: {NOT_READ}" if n is None else f"{name}: {n} usernames reserved"
                                     for name, n in binned.items()) + ".",
        "The old state database was kept as " + (str(kept) if kept else "(there was none)") + ".",
        f"New checkpoint {config.checkpoint_path}: {fresh.describe()}.",
    ]


def _record(job: Job, snapshots: Mapping[str, Snapshot], old: OldState, today: date) -> dict[str, int]:
    counts = {"usernames": 0, "carried_over": 0, "linked": 0, "disable_dates_kept": 0, "disable_dates_today": 0}
    with job.store.transaction():
        for name, snapshot in snapshots.items():
            for account in snapshot.accounts:
                # An account with no person id on it still holds its name: reserve it to nobody in the feed.
                owner = account.anchor or f"unlinked:{name}:{account.key}"
                job.store.record_username(account.username, owner)
                counts["usernames"] += 1
                if not account.anchor:
                    continue
                job.store.record_account(name, account.anchor, account.key, account.username)
                counts["linked"] += 1
                if not account.enabled:
                    known = old.disabled_on.get((name, account.anchor))
                    job.store.mark_disabled(name, account.anchor, date.fromisoformat(known) if known else today)
                    counts["disable_dates_kept" if known else "disable_dates_today"] += 1
        present = job.store.issued_usernames()
        for username, person_id in old.usernames.items():
            if username.lower() not in present:
                job.store.record_username(username, person_id)
                counts["carried_over"] += 1
    return counts



def read_recycle_bins(connectors: Mapping[str, Connector], known: Iterable[str]) -> Bins:
    """Each directory's recycle bin, a short anchor given back the full id among `known` (as Job.snapshots)."""
    bins: Bins = {}
    for name, connector in connectors.items():
        capabilities = type(connector).capabilities
        if not capabilities.recycle_bin:
            bins[name] = None
            continue
        try:
            found = list(connector.recycle_bin())
        except ConnectorError as error:
            raise UserError(f"{name}: could not read the recycle bin: {error}") from None
        limit = capabilities.max_anchor_length
        if limit is not None and any(is_short_anchor(a.anchor) for a in found):
            full = {directory_anchor(p, limit): p for p in known}
            found = [replace(a, anchor=full.get(a.anchor, a.anchor)) if a.anchor else a for a in found]
        bins[name] = found
    return bins


def bin_counts(bins: Bins) -> dict[str, int | None]:
    """Directory -> how many names its bin holds (None: not read), for the report and the audit entry."""
    return {name: None if found is None else len({a.username.lower() for a in found}) for name, found in bins.items()}


def _reserve_deleted(job: Job, bins: Bins) -> int:
    """Reserves every name in the bins for the person the deleted account carries, else for nobody in the feed."""
    reserved = 0
    with job.store.transaction():
        for name, found in bins.items():
            for account in found or ():
                job.store.record_username(account.username, account.anchor or f"deleted:{name}:{account.key}")
                reserved += 1
    return reserved
