"""Commands of the access review: `report access-review` writes the SIRO's workbook (and CSV);
`report apply-decisions` turns the returned workbook's Remove rows into a guarded, audited plan and, once
applied, records every decision as the standing one the nightly plan honours."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from idlifecycle.cli import add_command
from idlifecycle.errors import UserError
from idlifecycle.executor import new_plan_id
from idlifecycle.job import failures_of, open_job
from idlifecycle.model import Plan, plan_to_json
from idlifecycle.reports.access_review import build_review
from idlifecycle.reports.collect import collect_review, open_grants, report_options
from idlifecycle.reports.decisions import decisions_to_json, plan_removals, read_decisions, record_decisions
from idlifecycle.reports.workbook import write_csv, write_xlsx


def _out_path(out: str, today: str) -> Path:
    path = Path(out)
    # A directory (the timer's case) gets a dated file, so each year's review is kept.
    return path / f"access-review-{today}.xlsx" if path.is_dir() else path


def cmd_access_review(args: argparse.Namespace) -> int:
    with open_job(args.config, today=args.today) as job:
        with job.open_connectors() as connectors:
            review, _ = collect_review(job, connectors)
        sheets = build_review(review)
        out = _out_path(args.out, job.today.isoformat())
        if out.suffix.lower() != ".xlsx":
            raise UserError(f"--out {out}: name an .xlsx file (or a folder)")
        write_xlsx(sheets, out)
        print(f"Access review written to {out}")
        if args.csv:
            for path in write_csv(sheets, Path(args.csv)):
                print(f"  {path}")
    return 0


def cmd_apply_decisions(args: argparse.Namespace) -> int:
    workbook = Path(args.workbook)
    decisions = read_decisions(workbook)
    with open_job(args.config, today=args.today) as job:
        siro = args.siro or report_options(job).siro_name
        if not siro:
            raise job.config_error("report.siro_name", "name the SIRO (or pass --siro NAME): removals record who "
                                                       "decided them")
        with job.lock(), job.open_connectors() as connectors:
            review, shares = collect_review(job, connectors)
            removals = plan_removals(workbook, decisions, snapshots=review.snapshots, shares=shares,
                                     siro=siro, on=job.today, grants=open_grants(job))
            for note in removals.notes:
                print(f"note: {note}")
            for change in removals.changes:
                print(f"  - remove-member {change.username:<22} {change.group:<28} {change.directory}")
            print(f"{len(removals.changes)} membership(s) to remove, "
                  f"{sum(1 for d in decisions if d.choice == 'Keep')} kept.")
            if args.out:
                directories = {c.directory for c in removals.changes}
                plan = Plan(tuple(removals.changes),
                            {d: review.snapshots[d].fingerprint() for d in sorted(directories)},
                            {d: len(review.snapshots[d].accounts) for d in sorted(directories)},
                            created_at=job.today.isoformat(),
                            notes=(f"access review decisions from {workbook.name} by {siro}",),
                            plan_id=new_plan_id(), origin="access-review",
                            decisions=decisions_to_json(removals.decided, siro=siro, review=workbook.name))
                Path(args.out).write_text(json.dumps(plan_to_json(plan), indent=2) + "\n")
                print(f"Plan written to {args.out}; apply it with: idlifecycle apply {args.out}")
            if not args.apply:
                if not args.out:
                    print("Nothing applied: add --apply to remove them now, or --out PLAN.json to save the plan.")
                return 0
            results = job.apply_changes(removals.changes, connectors, actor=f"access review ({siro})",
                                        allow_destructive=args.allow_destructive)
            record_decisions(job.store, removals.decided, siro=siro, review=workbook.name)
        failures = failures_of(Plan(tuple(removals.changes), {}), results)
        for failure in failures:
            print(f"  failed: {failure}")
        print(f"Applied: {len(results) - len(failures)} done, {len(failures)} failed.")
        return 1 if failures else 0


def register(subparsers: Any) -> None:
    report = add_command(subparsers, "report").add_subparsers(
        dest="report_command", required=True)

    p = report.add_parser("access-review", help="write the access-review workbook (.xlsx), and CSV on request")
    p.add_argument("--out", default="access-review.xlsx", metavar="REVIEW.xlsx",
                   help="the workbook to write; a folder gets access-review-<date>.xlsx")
    p.add_argument("--csv", metavar="DIR", help="also write one CSV file per sheet into DIR")
    p.set_defaults(handler=cmd_access_review)

    p = report.add_parser("apply-decisions", help="turn the SIRO's Remove decisions into a guarded plan")
    p.add_argument("workbook", metavar="REVIEW.xlsx")
    p.add_argument("--out", metavar="PLAN.json", help="write the plan for `idlifecycle apply` instead of applying")
    p.add_argument("--apply", action="store_true", help="remove the memberships now (guarded and audited)")
    p.add_argument("--siro", metavar="NAME", help="who decided (default: [report] siro_name or [access] siro_name)")
    p.add_argument("--allow-destructive", type=int, metavar="N", default=None,
                   help="allow up to N removals per directory in this run (recorded in the audit log)")
    p.set_defaults(handler=cmd_apply_decisions)
