"""The nightly run (`run_sync`): plan, guard, apply, record, and mail the run summary."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date
from typing import Any

from idlifecycle import access, checkpoint, dormant_notice, passwords, sponsors
from idlifecycle.errors import GuardTripped, UserError
from idlifecycle.executor import reconcile_started, run_journal_id
from idlifecycle.feeds import FeedResult
from idlifecycle.guards import check_run_date
from idlifecycle.job.snapshots import read_back_after_changes
from idlifecycle.job.wiring import Job, ResultHook
from idlifecycle.model import Action, Outcome, Person, Plan, Result, RowError, Snapshot
from idlifecycle.notify import Mailer
from idlifecycle.passwords.owed import owed_changes, still_owed
from idlifecycle.run_report import RunReport
from idlifecycle.shape import change_reasons, columns_profile, feed_shape, shape_reasons

log = logging.getLogger("idlifecycle")
feed_log = logging.getLogger("idlifecycle.feed")
"""One structured line per refused feed row (the CLI quiets it in a terminal, where the plan shows them)."""


def failures_of(plan: Plan, results: Sequence[Result], outcome: Outcome = Outcome.FAILED) -> tuple[str, ...]:
    """"directory: action username: detail" of each change with this outcome (the failures, or those waiting)."""
    by_id = {c.change_id: c for c in plan.changes}
    return tuple(
        f"{by_id[r.change_id].directory}: {by_id[r.change_id].action} {by_id[r.change_id].username}: {r.detail}"
        for r in results if r.outcome is outcome and r.change_id in by_id
    )


def run_sync(
    job: Job,
    *,
    apply: bool = True,
    allow_destructive: int | None = None,
    actor: str = "nightly job",
    on_plan: Callable[[Plan], None] | None = None,
    on_result: ResultHook | None = None,
    allow_date: date | None = None,
) -> RunReport:
    """The nightly job: plan, guard, apply, record, and mail the run summary.

    Guards stop the run before anything is applied (GuardTripped). A run that only plans
    (`apply=False`) sends no summary.
    """
    seen: list[Plan] = []

    def planned(plan: Plan) -> None:
        seen.append(plan)
        if on_plan is not None:
            on_plan(plan)

    with job.lock():
        mark_interrupted_runs(job, actor)
        run_id = job.store.start_run(job.config.name)
        try:
            check_date(job, run_id, apply, allow_date, actor)
            feed = job.read_people()
            report = _sync(job, feed, run_id, apply, allow_destructive, actor, planned, on_result)
        except GuardTripped as tripped:
            job.store.finish_run(run_id, "guard", None, {"reasons": tripped.reasons})
            if apply:
                empty = Plan(changes=(), fingerprints={})
                _send_summary(job, RunReport(run_id, "guard", seen[-1] if seen else empty,
                                             guard_reasons=tuple(tripped.reasons),
                                             checkpoint=_checkpoint(job)))
            raise
        except UserError as error:
            job.store.finish_run(run_id, "error", None, {"error": str(error)})
            if apply:
                _send_summary(job, RunReport(run_id, "error", Plan(changes=(), fingerprints={}),
                                             failures=(str(error),), checkpoint=_checkpoint(job)))
            raise
        except BaseException as error:
            job.store.finish_run(run_id, "error", None, {"error": type(error).__name__})
            raise
        if apply:
            # Tonight's feed, as planned from: not read again for the notices.
            dormant, told = _tell_dormant(job, feed.people, actor)
            report = replace(report, owed_passwords=still_owed(job.store), dormant_disabled=dormant,
                             sponsor_notes=_warn_sponsors(job, feed.people) + told)
        job.store.finish_run(run_id, report.status, report.plan.people_count,
                             {"counts": report.counts(), "failures": len(report.failures),
                              "waiting": len(report.waiting), "passwords_owed": len(report.owed_passwords)})
        if apply and report.feed_profile:
            job.store.record_feed_profile(job.config.name, run_id, report.feed_profile)
        if apply:
            report = replace(report, checkpoint=_checkpoint(job))
            _send_summary(job, report)
        return report


def _warn_sponsors(job: Job, people: Sequence[Person]) -> tuple[str, ...]:
    """Tonight's end-date warnings to sponsors; a problem with them is reported, never fails the run."""
    if job.config.extra_people_path is None:
        return ()
    try:
        return tuple(sponsors.warn_sponsors(job, people))
    except (UserError, OSError) as error:
        log.warning(json.dumps({"event": "sponsor-warnings-not-sent", "reason": str(error)}))
        return (f"sponsors were not told of end dates: {error}",)


def _tell_dormant(job: Job, people: Sequence[Person], actor: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Tonight's dormant disables told (`dormant_notice.tell`); a problem with that never fails the run."""
    try:
        return dormant_notice.tell(job, people, actor)
    except (UserError, OSError) as error:
        log.warning(json.dumps({"event": "dormant-notices-not-sent", "reason": str(error)}))
        return (), (f"dormant disables were not told: {error}",)


def _checkpoint(job: Job) -> Mapping[str, Any] | None:
    """The checkpoint as the run finished, written before the summary that carries it is sent.

    A checkpoint that cannot be written here (the disk that failed the run) leaves the summary without
    it; `Job.close` tries again and says so.
    """
    try:
        written = checkpoint.record(job.config, job.store)
    except (UserError, OSError) as error:
        log.warning(json.dumps({"event": "state-checkpoint-not-written", "reason": str(error)}))
        return None
    return None if written is None else written.to_json()


def mark_interrupted_runs(job: Job, actor: str) -> list[int]:
    """Runs left `running` (killed, or the machine stopped) are marked `interrupted`, audited and said.

    Called holding the job lock, so none of them is alive. Their journals are never resumed by a
    later run: it plans afresh from a new snapshot, so what the killed run had already done is simply
    not planned again. What it had sent and not recorded is settled first (`reconcile_started`):
    audited once as applied when the directory shows it done.
    """
    found = job.store.mark_interrupted(job.config.name)
    for run_id, started_at in found:
        job.store.audit("run-interrupted", {"run": run_id, "started_at": started_at}, actor=actor)
        log.warning(f"run {run_id} (started {started_at}) did not finish and is marked interrupted; "
                    f"this run plans afresh from the directories as they are now")
    return [run_id for run_id, _ in found]


def check_date(job: Job, run_id: int, apply: bool, allow_date: date | None, actor: str) -> None:
    """An applying run whose date does not follow the last run's stops here (GuardTripped, exit 2).

    A rehearsal (`plan --today`, which applies nothing) may take any date: it is told what a sync
    on that date would do, and its date is not recorded as a run's.
    """
    last = job.store.last_run_day(job.config.name, before_run=run_id)
    reasons = check_run_date(job.today, last, job.config.guards)
    if reasons and not apply:
        for reason in reasons:
            log.warning(f"rehearsal only: a sync on this date would stop: {reason}")
        return
    if reasons and allow_date == job.today:
        job.store.audit("guard-override", {"allow_date": job.today.isoformat(), "last_run": str(last),
                                           "run": run_id}, actor=actor)
    elif reasons:
        job.store.audit("guard-tripped", {"reasons": reasons, "run": run_id}, actor=actor)
        raise GuardTripped(reasons)
    if apply:
        job.store.set_run_day(run_id, job.today)


def _send_summary(job: Job, report: RunReport) -> None:
    """Mail the run summary; a mail problem is logged, never allowed to change the run's outcome."""
    # Imported here: the reports package pulls in openpyxl, which a command that sends no summary never needs.
    from idlifecycle.reports.summary import send_run_summary

    try:
        send_run_summary(job, report)
    except (UserError, OSError) as error:
        log.warning(json.dumps({"event": "run-summary-not-sent", "reason": str(error)}))


def _settle(job: Job, snapshots: Mapping[str, Snapshot], run_id: int, actor: str) -> None:
    """What the directories show tonight of earlier runs, settled in the store before anything is planned."""
    # What an interrupted run (or apply, reset, approval) sent and never recorded, against the directories now.
    reconcile_started(job.store, snapshots, found_by=run_journal_id(run_id), actor=actor)
    # A dormant disable undone by hand since the last run: its grace counts from tonight.
    dormant_notice.note_enabled_again(job, snapshots, actor)


def _sync(job: Job, feed: FeedResult, run_id: int, apply: bool, allow_destructive: int | None, actor: str,
          on_plan: Callable[[Plan], None] | None, on_result: ResultHook | None) -> RunReport:
    uses_shares = bool(job.section("access"))
    feed_errors = tuple(str(e) for e in feed.errors)
    _report_refused_rows(job, run_id, feed.errors, actor)
    with job.open_connectors() as connectors:
        snapshots = job.snapshots(connectors)
        if apply:
            _settle(job, snapshots, run_id, actor)
        plan, held, termly = job.plan_from(feed, snapshots, connectors)
        people = {p.person_id: p for p in feed.people if not held.holds(p.person_id)}
        if apply:
            owed = owed_changes(job.store, snapshots, people, plan.changes, holds=held.holds,
                                absence_counts=not held.unidentified, actor=actor)
            plan = replace(plan, changes=plan.changes + tuple(owed))
        if plan.held:
            job.store.audit("people-held", {"run": run_id, "held": list(plan.held)}, actor=actor)
        if on_plan is not None:
            on_plan(plan)
        previous = job.store.feed_profile(job.config.name)
        # The feed's shape is the MIS's: people outside it (extra_people) are not counted in it.
        shape = feed_shape([p for p in people.values() if p.extra_kind is None], job.config.mapping, job.today)
        group_sizes = {(name, g.name): len(g.members) for name, snap in snapshots.items() for g in snap.groups}
        reasons = job.check_guards(plan, allow_destructive)
        reasons += shape_reasons((previous or {}).get("shape"), shape, job.config.guards, job.today,
                                 allow_destructive or 0)
        reasons += change_reasons(plan.changes, group_sizes, plan.managed_counts, job.config.guards, job.today,
                                  first_run=previous is None, allowed=allow_destructive or 0)
        if reasons:
            job.store.audit("guard-tripped", {"reasons": reasons, "run": run_id}, actor=actor)
            raise GuardTripped(reasons)
        profile = {"columns": columns_profile(feed.columns), "shape": shape.to_json()}
        if not apply:
            return RunReport(run_id, "planned", plan, feed_errors=feed_errors)
        if not plan.changes:
            quiet = RunReport(run_id, "nothing-to-do", plan, feed_errors=feed_errors, feed_profile=profile)
            # Grants can expire on a quiet night too (their member removed by hand): end them.
            if uses_shares:
                quiet = replace(quiet, incidents=tuple(access.after_run(job, quiet, connectors)))
            return quiet
        if allow_destructive:
            job.store.audit("guard-override", {"allow_destructive": allow_destructive, "run": run_id}, actor=actor)
        issuer = passwords.PasswordIssuer.for_job(job, connectors)
        results = job.execute(plan, connectors, actor=actor, on_result=on_result, journal_id=run_journal_id(run_id),
                              password_for=issuer.password_for(people, plan.changes))
        passwords.record_termly_results(job, termly, results)
        given = passwords_set_in(plan, results)
        issuer.deliver(Mailer.from_job(job), applied=set(given), set_in=given)
        failures = failures_of(plan, results)
        # A change waiting for its directory (a Google delete for its transfer) is a normal wait, not a failure.
        report = RunReport(run_id, "partial" if failures else "ok", plan, tuple(results), failures=failures,
                           waiting=failures_of(plan, results, Outcome.WAITING), feed_errors=feed_errors,
                           feed_profile=profile)
        if uses_shares:
            report = replace(report, incidents=tuple(access.after_run(job, report, connectors)))
        read_back_after_changes(connectors, job.store)
        log.info(json.dumps({"event": "run-finished", "run": run_id, "changes": len(results),
                             "failed": len(failures), "incidents": len(report.incidents)}))
        return report


def _report_refused_rows(job: Job, run_id: int, errors: Sequence[RowError], actor: str) -> None:
    """Every refused row: one log event each, and one audit entry for the run."""
    if not errors:
        return
    for error in errors:
        feed_log.info(json.dumps({"event": "feed-row-refused", "run": run_id, "file": error.file,
                                     "line": error.line, "field": error.field, "message": error.message,
                                     "person_id": error.person_id}))
    job.store.audit("feed-rows-refused", {"run": run_id, "rows": [str(e) for e in errors]}, actor=actor)


def passwords_set_in(plan: Plan, results: Sequence[Result]) -> dict[str, set[str]]:
    """person_id -> the directories that accepted their new password: only those people are handed one,
    and only there is the password no longer owed once it is delivered."""
    outcome = {r.change_id: r.outcome for r in results}
    given: dict[str, set[str]] = {}
    for c in plan.changes:
        if c.person_id and c.action in (Action.CREATE, Action.SET_PASSWORD) \
                and outcome.get(c.change_id) is Outcome.APPLIED:
            given.setdefault(c.person_id, set()).add(c.directory)
    return given
