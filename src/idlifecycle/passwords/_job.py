"""What the passwords area needs from `idlifecycle.job.Job`, stated as Protocols so it is checked, not assumed.

The area never imports the job: the job imports it (to issue passwords during a run), and a
circle would hold the two together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from idlifecycle.connectors.base import Connector
from idlifecycle.model import Change, Person, Result, Snapshot
from idlifecycle.store import Store


class JobFiles(Protocol):
    """Where the job file and its state folder are (`idlifecycle.config.JobConfig`)."""

    @property
    def path(self) -> Path: ...

    @property
    def state_dir(self) -> Path: ...


class PasswordsJob(Protocol):
    """The job as the issuer and the termly changes read it: its `[passwords]` section, store and date."""

    @property
    def config(self) -> JobFiles: ...

    @property
    def store(self) -> Store: ...

    @property
    def today(self) -> date: ...

    def section(self, name: str) -> Mapping[str, Any]: ...


class FeedPeople(Protocol):
    @property
    def people(self) -> Sequence[Person]: ...


class ResetJob(PasswordsJob, Protocol):
    """The job as `passwords reset` uses it: the feed, the directories, and guarded changes."""

    def read_people(self) -> FeedPeople: ...

    def snapshots(self, connectors: Mapping[str, Connector]) -> dict[str, Snapshot]: ...

    def apply_changes(self, changes: Sequence[Change], connectors: Mapping[str, Connector], *, actor: str,
                      allow_destructive: int | None = None,
                      password_for: Callable[[Change], str] | None = None) -> list[Result]: ...
