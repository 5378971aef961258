"""Password commands: `passwords reset PERSON_ID`, `passwords reset-class` (for a teacher) and `passwords audit`."""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
from dataclasses import dataclass
from typing import Any

from idlifecycle.cli import add_command
from idlifecycle.job import open_job
from idlifecycle.notify import Mailer
from idlifecycle.passwords.audit import format_table, password_audit
from idlifecycle.passwords.class_reset import reset_pupils, slips_text
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


@dataclass(frozen=True)
class TeacherAtTheDesk:
    """The teacher the IT desk acts for, as the class reset asks for an actor (the web passes the sign-in)."""

    username: str
    name: str


def cmd_reset_class(args: argparse.Namespace) -> int:
    teacher = TeacherAtTheDesk(args.teacher, args.teacher)
    with open_job(args.config, today=args.today) as job, job.lock(), job.open_connectors() as connectors:
        outcome = reset_pupils(job, connectors, teacher, pupils=args.pupil or (), group=args.group,
                               from_address=f"command line on {socket.gethostname()}", operator=args.actor)
        school = settings_for_job(job).school_name
    # The only copy of the new passwords: printed once for the teacher, never written to a file here.
    print(slips_text(outcome, school))
    print(f"{len(outcome.slips)} password{'s' if len(outcome.slips) != 1 else ''} reset for "
          f"{outcome.teacher.display_name}'s pupils.")
    for failure in outcome.failed:
        print(f"Not set for {failure}", file=sys.stderr)
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
    p = passwords.add_parser("reset-class", help="for a teacher: new passwords for pupils of a group they teach")
    p.add_argument("--teacher", required=True, metavar="USERNAME",
                   help="the teacher who asked: their staff id or directory username")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--group", metavar="NAME", help="every pupil of this registration group or class")
    which.add_argument("--pupil", metavar="ID", action="append", help="a pupil's MIS id (repeat for more)")
    p.add_argument("--actor", default=getpass.getuser(),
                   help="who typed it in for the teacher, for the audit log (default: the signed-in user)")
    p.set_defaults(handler=cmd_reset_class)
    p = passwords.add_parser("audit", help="old passwords, never-expires flags and accounts never signed in")
    p.set_defaults(handler=cmd_audit)
