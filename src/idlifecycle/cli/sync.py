"""Commands of the nightly job: `plan`, `apply`, `sync`, `feed check`, `audit verify`."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from idlifecycle.checkpoint import audit_key, read_checkpoint, state_problems
from idlifecycle.cli import add_command, today_arg
from idlifecycle.config import Secrets, load_job_config
from idlifecycle.errors import FeedError, UserError
from idlifecycle.executor import new_plan_id
from idlifecycle.feeds import (
    DEFAULT_MAX_BAD_PERCENT,
    READERS,
    FeedResult,
    FeedSpec,
    check_bad_rows,
    format_report,
    guess_format,
    read_feeds,
)
from idlifecycle.job import failures_of, open_job, passwords_set_in, run_sync
from idlifecycle.model import Action, Change, Outcome, Plan, Result, plan_from_json, plan_to_json
from idlifecycle.notify import Mailer
from idlifecycle.passwords.issuer import PasswordIssuer
from idlifecycle.passwords.owed import still_owed
from idlifecycle.run_report import RunReport
from idlifecycle.store import Store

if TYPE_CHECKING:
    from idlifecycle.reports.decisions import Decision

EXIT_ROWS_REFUSED = 3
"""Done, but some feed rows were refused: their people were held (nothing changed for them)."""

ADD = {Action.CREATE, Action.CREATE_GROUP, Action.ADD_MEMBER}
DESTROY = {Action.DISABLE, Action.DELETE, Action.REMOVE_MEMBER}


def symbol(change: Change) -> str:
    return "+" if change.action in ADD else "-" if change.action in DESTROY else "~"


def _summary(changes: list[Change] | tuple[Change, ...]) -> str:
    counts = Counter(symbol(c) for c in changes)
    return f"{counts['+']} to add, {counts['~']} to change, {counts['-']} to remove, disable or delete."


def render_plan(plan: Plan) -> str:
    """Terraform-like: one line per change with its reason, a summary per directory and overall."""
    lines: list[str] = []
    directories = list(dict.fromkeys(c.directory for c in plan.changes)) or list(plan.fingerprints)
    for directory in directories:
        changes = plan.for_directory(directory)
        lines.append(f"{directory}:")
        if not changes:
            lines.append("  no changes")
        for change in changes:
            what = change.group or ""
            if change.action is Action.MOVE:
                what = f"{change.before.get('container') or '(top)'} -> {change.after.get('container')}"
            elif change.action is Action.RENAME:
                what = f"-> {change.after.get('login')}"
            elif change.action is Action.UPDATE:
                what = ", ".join(sorted(change.after))
            lines.append(f"  {symbol(change)} {change.action:<24} {change.username:<22} {what:<34} {change.reason}")
        if changes:
            lines.append(f"  {directory}: {_summary(changes)}")
        lines.append("")
    for note in plan.notes:
        lines.append(f"note: {note}")
    if plan.notes:
        lines.append("")
    if plan.rejected_rows:
        lines.append(f"Refused feed rows ({len(plan.rejected_rows)}): fix them in the MIS; until then their people "
                     "are held")
        lines += [f"  {row}" for row in plan.rejected_rows]
        lines.append("")
    if plan.held:
        lines.append(f"Held ({len(plan.held)}): nothing is created, changed, disabled or removed for them this run")
        lines += [f"  {line}" for line in plan.held]
        lines.append("")
    if plan.changes:
        lines.append(f"Plan: {_summary(plan.changes)}")
    else:
        lines.append("No changes. The directories match the feed.")
    return "\n".join(lines)


class Progress:
    """A progress bar per directory in a terminal, started once the plan is known; silent under cron.

    One bar each because the directories are applied side by side (`executor`): each moves at its
    own service's pace. Ticked from the thread that records the results, never from a worker.
    """

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def start(self, changes: Sequence[Change]) -> None:
        if sys.stderr.isatty() and changes:
            from tqdm import tqdm

            counts = Counter(c.directory for c in changes)
            self.bars = {directory: tqdm(total=count, desc=directory, unit="change", file=sys.stderr, position=i)
                         for i, (directory, count) in enumerate(counts.items())}

    def tick(self, change: Change, result: Result) -> None:
        bar = self.bars.get(change.directory)
        if bar is not None:
            bar.update(1)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _report_results(plan: Plan, results: list[Result] | tuple[Result, ...]) -> int:
    failures = failures_of(plan, results)
    applied = Counter(str(r.outcome) for r in results)
    print(f"Applied: {applied.get('applied', 0)} applied, {applied.get('already-so', 0)} already so, "
          f"{applied.get('failed', 0)} failed" + (f", {applied['waiting']} waiting." if applied["waiting"] else "."))
    for waiting in failures_of(plan, results, Outcome.WAITING):
        print(f"  waiting: {waiting}")
    for failure in failures:
        print(f"  failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


def cmd_plan(args: argparse.Namespace) -> int:
    seen: list[Plan] = []

    def show(plan: Plan) -> None:
        seen.append(plan)
        print(render_plan(plan))

    with open_job(args.config, today=args.today) as job:
        try:
            run_sync(job, apply=False, allow_destructive=args.allow_destructive, on_plan=show, actor="plan")
        finally:
            # Saved even when a guard stops the run: that is when a person most needs to review it.
            # Applying it is guarded again.
            if args.out and seen:
                # Its own id: applying this file resumes this file's journal and nothing else.
                saved = replace(seen[-1], plan_id=new_plan_id())
                Path(args.out).write_text(json.dumps(plan_to_json(saved), indent=2) + "\n")
                print(f"Plan written to {args.out}; apply it with: idlifecycle apply {args.out}")
    return EXIT_ROWS_REFUSED if seen and seen[-1].rejected_rows else 0


def cmd_apply(args: argparse.Namespace) -> int:
    try:
        plan = plan_from_json(json.loads(Path(args.plan).read_text()))
    except FileNotFoundError:
        raise UserError(f"{args.plan}: file not found") from None
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{args.plan}: not a plan file: {error}") from None
    decisions = _saved_decisions(args.plan, plan) if plan.decisions else None
    with open_job(args.config, today=args.today) as job:
        progress = Progress()
        progress.start(plan.changes)
        try:
            with job.lock(), job.open_connectors() as connectors:
                # New accounts and resets get their passwords as in `sync`, and they are delivered the same way.
                issuer: PasswordIssuer | None = None
                password_for = None
                if any(c.action in (Action.CREATE, Action.SET_PASSWORD) for c in plan.changes):
                    issuer = PasswordIssuer.for_job(job, connectors)
                    password_for = issuer.password_for({p.person_id: p for p in job.read_people().people},
                                                       plan.changes)
                results = job.apply_saved_plan(plan, connectors, actor="apply", on_result=progress.tick,
                                               allow_destructive=args.allow_destructive, allow_date=args.allow_date,
                                               password_for=password_for)
                if decisions is not None:
                    from idlifecycle.reports.decisions import record_decisions  # openpyxl: only when a review's plan

                    # The SIRO's decisions stand (and date the rows' last review) once their plan is applied.
                    record_decisions(job.store, decisions[0], siro=decisions[1], review=decisions[2],
                                     plan_id=plan.plan_id)
                if issuer is not None:
                    given = passwords_set_in(plan, results)
                    issuer.deliver(Mailer.from_job(job), applied=set(given), set_in=given)
            owed = still_owed(job.store)
        finally:
            progress.close()
    code = _report_results(plan, results)
    _report_owed(owed)
    return code


def _saved_decisions(path: str, plan: Plan) -> tuple[list[Decision], str, str]:
    # Imported here: the reports pull in openpyxl, which only a review's saved plan needs.
    from idlifecycle.reports.decisions import decisions_from_json

    try:
        return decisions_from_json(plan.decisions)
    except (KeyError, TypeError) as error:
        raise UserError(f"{path}: its \"decisions\" are not as `report apply-decisions --out` wrote them "
                        f"({error}); make the plan again") from None


def _report_owed(owed: tuple[str, ...]) -> None:
    if owed:
        print(f"Passwords not yet delivered ({len(owed)}); the next sync sets a fresh one for each and "
              "delivers it:")
        for line in owed:
            print(f"  {line}")


def cmd_sync(args: argparse.Namespace) -> int:
    progress = Progress()

    def show(plan: Plan) -> None:
        if not args.quiet:
            print(render_plan(plan))
            sys.stdout.flush()
        progress.start(plan.changes)

    with open_job(args.config, today=args.today) as job:
        try:
            report: RunReport = run_sync(job, allow_destructive=args.allow_destructive, on_plan=show,
                                         on_result=progress.tick, allow_date=args.allow_date)
        finally:
            progress.close()
    code = 0 if report.status == "nothing-to-do" else _report_results(report.plan, report.results)
    _report_owed(report.owed_passwords)
    if code == 0 and report.plan.rejected_rows:
        print(f"Done, but {len(report.plan.rejected_rows)} feed row(s) were refused and their people held; "
              "fix them in the MIS (exit 3).", file=sys.stderr)
        return EXIT_ROWS_REFUSED
    return code


def cmd_feed_check(args: argparse.Namespace) -> int:
    """The job's feeds, or one export named on the command line (no job file needed)."""
    if args.path:
        specs, told = _export_specs(args)
        _print_specs(specs, told)
        try:
            result = read_feeds(specs)
        except FeedError as error:
            print(f"feed check failed: {error}")
            return 1
        return _report_feed(result, DEFAULT_MAX_BAD_PERCENT, [])
    with open_job(args.config, today=args.today) as job:
        specs, max_bad = job.feed_specs(), job.config.guards.max_bad_rows_percent
        _print_specs(specs, "from the job file")
        try:
            # What the run itself would refuse: directory limits, protected group names, lost columns.
            result, problems = job.check_feed()
        except FeedError as error:
            print(f"feed check failed: {error}")
            return 1
    return _report_feed(result, max_bad, problems)


def _export_specs(args: argparse.Namespace) -> tuple[list[FeedSpec], str]:
    path = Path(args.path)
    fmt = args.format or guess_format(path)
    if fmt is None:
        raise UserError(f"{path}: cannot tell the feed format (no such file, or a folder without users.csv, "
                        f"roles.csv or Student.csv); name it with --format {'|'.join(READERS)}")
    options: dict[str, str] = {}
    if args.kind:
        options["kind"] = args.kind
    if args.date_order:
        options["date_order"] = args.date_order
    told = "given with --format" if args.format else "told from the files"
    return [FeedSpec(fmt, path, options, source="--format/--kind/--date-order")], told


def _print_specs(specs: list[FeedSpec], told: str) -> None:
    for spec in specs:
        print(f"feed {spec.path}: {spec.format} ({told})")


def _report_feed(result: FeedResult, max_bad: float, problems: list[str]) -> int:
    print(format_report(result))
    try:
        check_bad_rows(result, max_bad)
    except FeedError as error:
        print(f"feed check failed: {error}")
        return 1
    for problem in problems:
        print(f"feed check failed: {problem}")
    return 1 if problems else 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """The chain checked with the key, and the database against the checkpoint given or the job's own."""
    config = load_job_config(args.config)
    key = audit_key(config, Secrets())
    checkpoint_path = Path(args.checkpoint) if args.checkpoint else config.checkpoint_path
    if args.checkpoint and not checkpoint_path.exists():
        raise UserError(f"{checkpoint_path}: file not found (the checkpoint to verify against)")
    checkpoint = read_checkpoint(checkpoint_path)
    if not config.state_db.exists():
        if checkpoint is None:
            print(f"Nothing to verify: there is no state database at {config.state_db} and no checkpoint at "
                  f"{checkpoint_path} (has the job ever run?).")
            return 1
        problems, count = state_problems(checkpoint, None, config.state_db, checkpoint_path), 0
    else:
        store = Store(config.state_db, audit_key=key)
        try:
            problems = store.verify_audit()
            if checkpoint is not None:
                problems += state_problems(checkpoint, store, config.state_db, checkpoint_path)
            count = len(store.audit_entries())
        finally:
            store.close()
    if problems:
        for problem in problems:
            print(problem)
        print(f"The audit log has been tampered with: {len(problems)} problem(s) found.")
        return 1
    against = (f", and it reaches the checkpoint {checkpoint_path} ({checkpoint.describe()})" if checkpoint
               else f"; there is no checkpoint at {checkpoint_path} to check its end against")
    print(f"The audit log is intact: {count} entries, each chained to the one before with the audit key{against}.")
    return 0


def register(subparsers: Any) -> None:
    def allow(p: argparse.ArgumentParser) -> None:
        p.add_argument("--allow-destructive", type=int, metavar="N", default=None,
                       help="allow up to N destructive changes (disable, delete, enable, restricted-group removal) "
                            "per directory for this run (recorded in the audit log)")

    def allow_date(p: argparse.ArgumentParser) -> None:
        p.add_argument("--allow-date", type=today_arg, metavar="YYYY-MM-DD", default=None,
                       help="run although this date (which must be the run's own) is before the last run's, or "
                            "more than max_days_between_runs after it (recorded in the audit log)")

    p = add_command(subparsers, "plan")
    p.add_argument("--out", metavar="PLAN.json", help="write the plan as JSON for `idlifecycle apply`")
    allow(p)
    p.set_defaults(handler=cmd_plan)

    p = add_command(subparsers, "apply")
    p.add_argument("plan", metavar="PLAN.json")
    allow(p)
    allow_date(p)
    p.set_defaults(handler=cmd_apply)

    p = add_command(subparsers, "sync")
    p.add_argument("--quiet", action="store_true", help="do not print the plan")
    allow(p)
    allow_date(p)
    p.set_defaults(handler=cmd_sync)

    feed = add_command(subparsers, "feed").add_subparsers(dest="feed_command", required=True)
    p = feed.add_parser("check", help="validate a feed and print every problem as file:line: field: message")
    p.add_argument("path", nargs="?", help="an export to check instead of the job's feeds: a CSV file or a folder")
    p.add_argument("--format", choices=sorted(READERS), help="the export's format (default: told from the files)")
    p.add_argument("--kind", choices=("pupil", "staff"), help="who a MIS CSV lists, when it has no column for it")
    p.add_argument("--date-order", choices=("dmy", "mdy"),
                   help="how the export writes dates, when every date could be dd/mm or mm/dd")
    p.set_defaults(handler=cmd_feed_check)

    audit = add_command(subparsers, "audit").add_subparsers(dest="audit_command",
                                                                                      required=True)
    p = audit.add_parser("verify", help="check that no audit row was edited, forged or deleted, and that the "
                                        "state database is the one the last checkpoint describes")
    p.add_argument("--checkpoint", metavar="FILE", help="a checkpoint kept elsewhere (a copy of the file, or the "
                                                        "JSON line from the system log or the run summary); "
                                                        "default: the job's checkpoint file")
    p.set_defaults(handler=cmd_audit_verify)
