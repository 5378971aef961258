"""Errors a user can cause: each ends as one clear message, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the school can fix (bad feed, bad config, missing secret).

    The CLI prints `str(error)` and exits 1; the message names where (file, key or line)
    and what to do.
    """


class ConfigError(UserError):
    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        super().__init__(f"{file}: {key}: {message}")


class FeedError(UserError):
    """The feed as a whole cannot be trusted (missing file, empty, wrong header, too many bad rows)."""


class GuardTripped(Exception):
    """A guard stopped the run; nothing was applied. The CLI exits 2."""

    heading = "Stopped by a guard; nothing was applied:"
    """The line the CLI prints above the reasons."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


class StalePlan(GuardTripped):
    """The directory moved since the plan was computed."""
