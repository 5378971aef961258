"""The summary mailed after each nightly run: what changed by kind, what a guard stopped and why,
security incidents, and failures — built as text by a pure function, then sent to `[report] summary_to`."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence

from idlifecycle.notify import Mailer
from idlifecycle.reports._job import SummaryJob
from idlifecycle.reports.collect import report_options
from idlifecycle.run_report import RunReport
from idlifecycle.store import ClassReset

log = logging.getLogger("idlifecycle")

HEADLINES = {
    "ok": "done",
    "nothing-to-do": "nothing to do",
    "planned": "planned only, nothing applied",
    "guard": "STOPPED by a guard, nothing applied",
    "partial": "done, but some changes FAILED",
    "error": "FAILED with an error",
}


def class_reset_lines(resets: Sequence[ClassReset]) -> list[str]:
    """One line per pupil whose password a teacher (or the IT desk for one) reset: who, whom, when, from where."""
    lines = []
    for reset in resets:
        where = f"set in {', '.join(reset.directories)}" if reset.directories else "set nowhere (refused)"
        entered = f", entered by {reset.operator}" if reset.operator else ""
        lines.append(f"{reset.at:%d/%m/%Y %H:%M} UTC: {reset.teacher} reset {reset.pupil_id} ({reset.username}), "
                     f"{where}, from {reset.from_address}{entered}")
    return lines


def run_summary(job_name: str, report: RunReport, class_resets: Sequence[ClassReset] = ()) -> tuple[str, str]:
    """(subject, text) of the summary for one run; `class_resets` are those since the job's last run."""
    headline = HEADLINES.get(report.status, report.status)
    applied = report.counts()
    subject = f"[idlifecycle] {job_name}: {headline}"
    if applied:
        subject += f" ({sum(applied.values())} changes)"
    lines = [f"Run {report.run_id} of job {job_name!r}: {headline}.", ""]
    if applied:
        lines.append("Applied changes by kind:")
        lines += [f"  {action:<24} {count}" for action, count in applied.items()]
    elif report.plan.changes and report.status in ("guard", "planned"):
        planned = Counter(str(c.action) for c in report.plan.changes)
        lines.append("Planned changes by kind (none applied):")
        lines += [f"  {action:<24} {count}" for action, count in sorted(planned.items())]
    else:
        lines.append("No changes were applied.")
    sections = (
        ("Stopped by a guard (run `idlifecycle plan` to review; `--allow-destructive N` to override):",
         report.guard_reasons),
        ("Security incidents:", report.incidents),
        ("Disabled as dormant (no sign-in for the kind's dormant_days; `idlifecycle people keep-active` exempts):",
         report.dormant_disabled),
        ("People outside the MIS, end-date warnings:", report.sponsor_notes),
        ("Failures (the next run retries them):", report.failures),
        ("Waiting, not failed (nothing was changed; the next run looks again and makes each once it can):",
         report.waiting),
        ("Rows of the feed that were refused (fix them in the MIS):", report.feed_errors or report.plan.rejected_rows),
        ("Held: nothing was created, changed, disabled or removed for them:", report.plan.held),
        ("Passwords not yet delivered (the next run sets a fresh one for each and delivers it):",
         report.owed_passwords),
        ("Passwords reset by teachers since the last run (`passwords reset-class`, the reset page):",
         class_reset_lines(class_resets)),
        ("Notes:", report.plan.notes),
    )
    for title, items in sections:
        if items:
            lines += ["", title, *(f"  - {item}" for item in items)]
    if report.checkpoint:
        lines += ["", "State checkpoint (keep this mail: `idlifecycle audit verify --checkpoint FILE` checks the "
                      "state database against it, saved as a file):",
                  "  " + json.dumps(dict(report.checkpoint), sort_keys=True)]
    lines += ["", "Exit codes: 0 done or nothing to do, 1 error, 2 stopped by a guard, "
                  "3 done but feed rows were refused."]
    return subject, "\n".join(lines) + "\n"


def send_run_summary(job: SummaryJob, report: RunReport) -> None:
    """Mail the summary to `[report] summary_to`; does nothing when no one is configured to get it."""
    to = list(report_options(job).summary_to)
    if not to:
        return
    mailer = Mailer.from_job(job)
    if mailer is None:
        raise job.config_error("mail", "add a [mail] table: [report] summary_to needs it to send the run summary")
    subject, text = run_summary(job.config.name, report, job.store.class_resets_before_run(job.config.name,
                                                                                            report.run_id))
    mailer.send(to, subject, text)
    log.info("run summary sent to %s", ", ".join(to))
