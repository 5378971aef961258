"""`people add`, `list` and `extend`: people outside the MIS, kept in the job's extra-people file; and
`people keep-active`: anyone's accounts kept from a dormant disable for a while."""

from __future__ import annotations

import argparse
import getpass
import os
from datetime import UTC, date, datetime
from typing import Any

from idlifecycle import dormant_notice, extra_people, sponsors
from idlifecycle.cli import add_command, today_arg
from idlifecycle.errors import UserError
from idlifecycle.job import open_job


def _actor() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser()


def cmd_people_add(args: argparse.Namespace) -> int:
    with open_job(args.config, today=args.today) as job:
        path = job.config.extra_people_path
        if path is None:
            raise UserError(f"{job.config.path}: [job] extra_people is not set; name the extra-people file "
                            "(e.g. extra_people = \"../mappings/extra-people.toml\")")
        mapping = job.config.mapping
        start = args.start or job.today
        extra_people.check_dates(args.kind, start, args.end, mapping)
        feed = job.read_people().people
        extra_people.check_sponsor(args.sponsor, feed, mapping, job.today)
        person = extra_people.ExtraPerson(
            person_id=extra_people.new_id(p.person_id for p in feed), kind=args.kind, first=args.first.strip(),
            last=args.last.strip(), sponsor=args.sponsor, start=start, end=args.end, added_by=_actor())
        if not person.first or not person.last:
            raise UserError("--first and --last must not be empty")
        extra_people.append(path, person, datetime.now(UTC))
        job.store.audit("extra-person-added", {"person_id": person.person_id, "kind": person.kind,
                                               "sponsor": person.sponsor, "start": str(start),
                                               "end": str(args.end), "file": str(path)}, actor=person.added_by)
    print(f"added {person.person_id}: {person.first} {person.last} ({person.kind}, sponsor {person.sponsor}), "
          f"{start} to {args.end}; accounts follow on the next sync")
    return 0


def cmd_people_list(args: argparse.Namespace) -> int:
    with open_job(args.config, today=args.today) as job:
        people = job.extra_people()
        today = job.today
    for p in sorted(people, key=lambda p: (p.end, p.person_id)):
        state = "ended" if p.end <= today else f"{(p.end - today).days} days left"
        print(f"{p.person_id}  {p.kind:<12} {p.first} {p.last}  sponsor {p.sponsor}  {p.start} to {p.end}  ({state})")
    if not people:
        print("no people outside the MIS")
    return 0


def cmd_people_extend(args: argparse.Namespace) -> int:
    with open_job(args.config, today=args.today) as job:
        if args.end is None:
            raise UserError("give the new end date: --end YYYY-MM-DD")
        before = sponsors.extend(job, args.person_id, args.end, actor=_actor(), via="people extend")
    print(f"extended {before.person_id} ({before.first} {before.last}, {before.kind}) from {before.end} to "
          f"{args.end}")
    return 0


def cmd_people_keep_active(args: argparse.Namespace) -> int:
    with open_job(args.config, today=args.today) as job:
        until = dormant_notice.kept_until(job.today, args.days)
        why = " ".join(args.why.split())
        if not why:
            raise UserError("say why with --why (e.g. \"maternity leave, back in April\"): it goes in the audit log")
        known = {p.person_id for p in job.read_people().people} | job.store.known_person_ids()
        if args.person_id not in known:
            raise UserError(f"no one with id {args.person_id!r} in the feed, the extra-people file or the store")
        actor = _actor()
        with job.store.transaction():
            job.store.keep_active_until(args.person_id, until, actor, why)
            job.store.audit("dormant-keep-active", {"person_id": args.person_id, "until": str(until), "why": why},
                            actor=actor)
    print(f"{args.person_id}: accounts not disabled as dormant until {until} (inclusive); an account already "
          "disabled as dormant is enabled again by the next sync")
    return 0


def _date(value: str) -> date:
    return today_arg(value)


def register(subparsers: Any) -> None:
    people = add_command(subparsers, "people").add_subparsers(dest="people_command", required=True)
    p = people.add_parser("add", help="add someone the MIS does not know (supply, governor …) with a sponsor "
                                      "and an end date")
    p.add_argument("--kind", required=True, help="an [extra.<kind>] of the mapping, e.g. supply")
    p.add_argument("--first", required=True)
    p.add_argument("--last", required=True)
    p.add_argument("--sponsor", required=True, metavar="STAFF_ID", help="the MIS id of the member of staff")
    p.add_argument("--start", type=_date, default=None, metavar="YYYY-MM-DD", help="default: today")
    # Not required=True for argparse: a missing end date gets the tool's own one-line reason.
    p.add_argument("--end", type=_date, default=None, metavar="YYYY-MM-DD", help="required")
    p.add_argument("--job", dest="config", default=argparse.SUPPRESS, metavar="FILE",
                   help="the job file (as --config)")
    p.set_defaults(handler=cmd_people_add)
    p = people.add_parser("extend", help="move an extra person's end date later (within their kind's max_days)")
    p.add_argument("person_id", metavar="PERSON_ID", help="their X-… id (people list)")
    p.add_argument("--end", type=_date, default=None, metavar="YYYY-MM-DD", help="the new end date (required)")
    p.add_argument("--job", dest="config", default=argparse.SUPPRESS, metavar="FILE")
    p.set_defaults(handler=cmd_people_extend)
    p = people.add_parser("keep-active", help="keep a person's accounts from being disabled as dormant for N days "
                                              "(audited)")
    p.add_argument("person_id", metavar="PERSON_ID", help="their MIS id, or X-… id")
    p.add_argument("--days", type=int, required=True, metavar="N", help="1 to 366, counted from today")
    p.add_argument("--why", default="", help="the reason, for the audit log (required)")
    p.add_argument("--job", dest="config", default=argparse.SUPPRESS, metavar="FILE")
    p.set_defaults(handler=cmd_people_keep_active)
    p = people.add_parser("list", help="the people outside the MIS, by end date")
    p.add_argument("--job", dest="config", default=argparse.SUPPRESS, metavar="FILE")
    p.set_defaults(handler=cmd_people_list)
