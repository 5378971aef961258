"""`Job.snapshots` reads the directories side by side, a real thread each: results in directory order,
a connector's cursor write from its reading thread reaching the store, one timing line per directory;
a failure names its directory, the first in directory order is the one raised and the others are said."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from idlifecycle.connectors.base import Capabilities, Connector, ConnectorContext, ConnectorError
from idlifecycle.errors import UserError
from idlifecycle.job import Job, open_job
from idlifecycle.model import Account, Change, Result, Snapshot
from idlifecycle.store import Store
from tests.factories import ROOT
from tests.jobfiles import write_job

READ = 0.4
"""Seconds each directory takes to read: three read one after another take 1.2 s."""


class SlowDirectory(Connector):
    """Takes `delay` seconds to read (on the network, in life), writes a cursor as it ends, may fail."""

    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, name: str, store: Store, delay: float, fails: str | None = None) -> None:
        super().__init__(name)
        self.cursors = store
        self.delay = delay
        self.fails = fails
        self.began = self.ended = 0.0
        self.thread = 0

    @classmethod
    def from_config(cls, context: ConnectorContext) -> Connector:  # pragma: no cover - built directly
        raise NotImplementedError

    def snapshot(self) -> Snapshot:
        self.began, self.thread = time.perf_counter(), threading.get_ident()
        time.sleep(self.delay)
        self.ended = time.perf_counter()
        if self.fails:
            raise ConnectorError(self.fails)
        # From this thread: through the store's own thread, or sqlite3 refuses the connection.
        self.cursors.set_cursor(self.name, "delta", f"{self.name}-link")
        account = Account(self.name, f"key-{self.name}", "26pupil", "26pupil@school.example", "Pat", "Pupil",
                          "Pat Pupil", anchor="P001", enabled=True)
        return Snapshot(self.name, (account,), ())

    def apply(self, changes: Sequence[Change]) -> Iterator[Result]:  # pragma: no cover - not applied here
        raise NotImplementedError


@pytest.fixture
def job(tmp_path: Path) -> Iterator[Job]:
    job_file = write_job(tmp_path / "job.toml", connectors=[ROOT / "connectors" / "entra-sandbox.toml"],
                         mappings=[ROOT / "mappings" / "school.toml"])
    with open_job(job_file) as opened:
        yield opened


def test_the_directories_are_read_at_the_same_time_and_come_back_in_directory_order(
        job: Job, caplog: pytest.LogCaptureFixture) -> None:
    # The first directory is the slowest: read side by side, it is the last to finish.
    directories = {name: SlowDirectory(name, job.store, READ - 0.1 * i)
                   for i, name in enumerate(("entra", "google", "ad"))}
    began = time.perf_counter()
    with caplog.at_level(logging.DEBUG, logger="idlifecycle.changes.timing"):
        snapshots = job.snapshots(directories)
    took = time.perf_counter() - began

    assert list(snapshots) == ["entra", "google", "ad"]
    assert [s.directory for s in snapshots.values()] == ["entra", "google", "ad"]
    # Every read began before any ended: read one after another, each would begin after the last ended.
    assert max(d.began for d in directories.values()) < min(d.ended for d in directories.values())
    assert took < READ + 0.3 < 3 * READ - 0.4
    threads = {d.thread for d in directories.values()}
    assert len(threads) == 3 and threading.get_ident() not in threads
    assert {name: job.store.get_cursor(name, "delta") for name in directories} == {
        "entra": "entra-link", "google": "google-link", "ad": "ad-link"}
    timings = [json.loads(r.getMessage()) for r in caplog.records if r.name == "idlifecycle.changes.timing"]
    assert sorted(t["directory"] for t in timings if t["event"] == "snapshot-timing") == ["ad", "entra", "google"]
    assert job.store.handover is None  # the store is this thread's alone again
    # Each fingerprint was made in its directory's reading thread, not left to the planner.
    assert all("_fingerprint" in s.__dict__ for s in snapshots.values())
    assert all("fingerprint_seconds" in t for t in timings if t["event"] == "snapshot-timing")


def test_the_first_directory_in_order_that_fails_is_raised_and_the_others_are_said_with_it(job: Job) -> None:
    # entra fails last (it is slowest) and ad first: the message still begins with entra, as before.
    directories = {
        "entra": SlowDirectory("entra", job.store, READ, fails="the tenant refused the sign-in"),
        "google": SlowDirectory("google", job.store, 0.05),
        "ad": SlowDirectory("ad", job.store, 0.05, fails="no domain controller answered"),
    }
    with pytest.raises(UserError) as raised:
        job.snapshots(directories)
    assert str(raised.value) == ("entra: could not read the directory: the tenant refused the sign-in; "
                                 "also ad: could not read the directory: no domain controller answered")
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_one_directory_that_fails_reads_as_it_always_did(job: Job) -> None:
    directory = SlowDirectory("google", job.store, 0.0, fails="the customer id is wrong")
    with pytest.raises(UserError) as raised:
        job.snapshots({"google": directory})
    assert str(raised.value) == "google: could not read the directory: the customer id is wrong"
    assert directory.thread == threading.get_ident()  # one directory is read on the calling thread


def test_a_failure_that_is_not_the_directory_s_is_raised_as_it_was(job: Job, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(SlowDirectory):
        def snapshot(self) -> Snapshot:
            raise KeyError("id")

    directories = {"entra": Broken("entra", job.store, 0.0),
                   "google": SlowDirectory("google", job.store, 0.05, fails="quota exhausted")}
    with caplog.at_level(logging.WARNING, logger="idlifecycle"), pytest.raises(KeyError):
        job.snapshots(directories)
    assert "google: could not read the directory either: quota exhausted" in caplog.text
