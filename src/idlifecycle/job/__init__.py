"""A job run: read the feed, snapshot the directories, plan, guard, apply, record (the imperative shell).

`wiring` builds the job of one command (`open_job`: its configuration, store and directories) and the
steps a run is made of; `snapshots` reads the directories side by side; `night` is the nightly run
made of those steps (`run_sync`).
"""

from __future__ import annotations

from idlifecycle.job.night import check_date, failures_of, mark_interrupted_runs, passwords_set_in, run_sync
from idlifecycle.job.wiring import Job, ResultHook, held_rows, job_lock, load_job, open_job
from idlifecycle.run_report import RunReport  # re-exported: what run_sync returns

__all__ = [
    "Job", "ResultHook", "RunReport", "check_date", "failures_of", "held_rows", "job_lock", "load_job",
    "mark_interrupted_runs", "open_job", "passwords_set_in", "run_sync",
]
