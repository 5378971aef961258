"""What the reports area needs from `idlifecycle.job.Job`, stated as Protocols so it is checked, not assumed.

The area never imports the job: the job imports the run summary (to mail it after a run), and a
circle would hold the two together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from idlifecycle.access._job import AccessJob
from idlifecycle.errors import ConfigError
from idlifecycle.notify import MailJob
from idlifecycle.store import Store


class JobSections(Protocol):
    """The job's sections, and errors naming its file and a key."""

    def section(self, name: str) -> Mapping[str, Any]: ...

    def config_error(self, key: str, message: str) -> ConfigError: ...


class ReviewJob(AccessJob, Protocol):
    """The job as the access review reads it: what the access area reads, since the review hands it on to
    `Access` for the shares, grants and standing decisions."""


class SummaryJob(MailJob, JobSections, Protocol):
    """The job as the run summary reads it: its name (`config.name`), `[report]` and `[mail]` and secrets, and
    the store (the teachers' class resets since the last run)."""

    @property
    def store(self) -> Store: ...
