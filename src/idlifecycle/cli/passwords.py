"""Password commands: `passwords reset PERSON_ID` and `passwords audit`."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from idlifecycle.cli import add_command
from idlifecycle.job import open_job
from idlifecycle.notify import Mailer
from idlifecycle.passwords.audit import format_table, password_audit
from idlifecycle.passwords.issuer import settings_for_job
from idlifecycle.passwords.reset import reset_password


def cmd_reset(args: argparse.Namespace) -> int:
    with open_job(args.config, today=args.today) as job, job.lock(), job.open_connectors() as connectors:
        outcome = reset_password(job, connectors, args.person, actor=args.actor, mailer=Mailer.from_job(job))
    who = f"{outcome.person.display_name} ({outcome.username})"
    if outcome.set_in:
        print(f"New password set for {who} in {', '.join(outcome.set_in)}; it must be changed at first sign-in.")
    for failure in outcome.failed:
        print(f"Not set in {failure}", file=sys.stderr)
    for path in outcome.delivery.slips:
        print(f"Slip written to {path}")
    for username in outcome.delivery.emailed:
        print(f"Password for {username} emailed to their line manager.")
    return 1 if outcome.failed else 0


def cmd_audit(args: argparse.Namespace) -> int:
    with open_job(args.config, today=args.today) as job:
        settings = settings_for_job(job)
        people = {p.person_id: p for p in job.read_people().people}
        with job.open_connectors() as connectors:
            snapshots = job.snapshots(connectors)
        print(format_table(password_audit(settings, snapshots, people, job.today)))
    return 0


def register(subparsers: Any) -> None:
    passwords = add_command(subparsers, "passwords").add_subparsers(
        dest="passwords_command", required=True)
    p = passwords.add_parser("reset", help="set one new password in every directory the person has an account in")
    p.add_argument("person", metavar="PERSON_ID", help="the person's MIS id (admission number, staff code)")
    p.add_argument("--actor", default=getpass.getuser(),
                   help="who asked, for the audit log (default: the signed-in user)")
    p.set_defaults(handler=cmd_reset)
    p = passwords.add_parser("audit", help="old passwords, never-expires flags and accounts never signed in")
    p.set_defaults(handler=cmd_audit)
