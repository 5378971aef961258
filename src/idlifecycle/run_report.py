"""What one run did: the value the nightly job returns, the CLI prints and the run summary mails.

Apart from `idlifecycle.job` so that the reports area can read it without importing the job.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from idlifecycle.model import Outcome, Plan, Result


@dataclass(frozen=True)
class RunReport:
    run_id: int
    status: str
    """"ok", "nothing-to-do", "guard", "partial" (some changes failed) or "error"."""
    plan: Plan
    results: tuple[Result, ...] = ()
    guard_reasons: tuple[str, ...] = ()
    incidents: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    """Changes not made yet because the directory is still busy (Outcome.WAITING): not failures; tried next run."""
    feed_errors: tuple[str, ...] = field(default=())
    feed_profile: Mapping[str, Any] = field(default_factory=dict)
    """The feed's columns and group sizes, kept when the run succeeds for the next run's shape guards."""
    owed_passwords: tuple[str, ...] = ()
    """Everyone still waiting for a password after this run (`passwords.owed.still_owed`)."""
    sponsor_notes: tuple[str, ...] = ()
    """End-date warnings to sponsors that went elsewhere or not at all (`sponsors.warn_sponsors`)."""
    dormant_disabled: tuple[str, ...] = ()
    """"username, directory, reason" of each dormant disable not told to a sponsor (`dormant_notice.tell`)."""
    checkpoint: Mapping[str, Any] | None = None
    """The state checkpoint written as the run finished, for the summary (a copy kept off the machine)."""

    def counts(self) -> dict[str, int]:
        """Applied changes by action."""
        by_id = {c.change_id: c for c in self.plan.changes}
        counted = Counter(
            str(by_id[r.change_id].action) for r in self.results
            if r.outcome is Outcome.APPLIED and r.change_id in by_id
        )
        return dict(sorted(counted.items()))
