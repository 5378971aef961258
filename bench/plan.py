"""Time and peak memory of the planner and of a feed read, at a trust's size, all in this process.

Targets (issue 16): planning 100,000 people across Entra, Google and AD in under 3 s and 500 MB, and a
100,000-row MIS export read and checked in under 1 s. Run: `.venv/bin/python bench/plan.py`
(`--people N`, `--feed-rows N`, `--only first|trust|feed`).

Three measures, each on synthetic data made before the clock starts:
- first night, 20,000 pupils and staff against an empty Entra tenant (every account, group and
  membership created): the case issue 16 measured through the CLI;
- a trust's ordinary night, 100,000 people in three directories that already hold their accounts, with
  the churn of a term: starters, leavers, year moves, name changes, accounts to adopt by login, strays;
- reading and checking a 100,000-row MIS CSV export (SIMS-like headers and dd/mm/yyyy dates).

Wall and CPU time are measured without tracing (CPU time says more on a shared machine, where wall time
waits for the cores); peak memory is the measured code's own allocations (tracemalloc), in a second run,
so the inputs are not counted and the tracing does not slow the timed run.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from idlifecycle.config import load_mapping
from idlifecycle.feeds import FeedSpec, check_bad_rows, read_feeds
from idlifecycle.feeds._fields import upn_check_letter
from idlifecycle.mapping import MappingRules, desired_account
from idlifecycle.model import Account, Capabilities, Group, Kind, Person, Snapshot
from idlifecycle.naming import assign_usernames
from idlifecycle.planner import PlanState, plan

ROOT = Path(__file__).resolve().parent.parent
TODAY = date(2026, 11, 23)
CAPABILITIES = {
    # As EntraConnector, GoogleConnector and ADConnector declare them (not imported: that loads their SDKs).
    "entra": Capabilities(containers=False, max_username_length=64, licence_groups=True, hybrid=True,
                          password_rules="entra"),
    "google": Capabilities(containers=True, max_username_length=64, password_rules="google"),
    "ad": Capabilities(containers=True, max_username_length=20, revoke_sessions=False,
                       password_rules="ad"),
}
FIRST = ("Oliver", "Amelia", "Noah", "Olivia", "George", "Isla", "Muhammad", "Ava", "Leo", "Freya", "Harry", "Lily",
         "Jack", "Mia", "Zoë", "Siân", "Łukasz", "José", "Aoife", "Seán", "Chloé", "Ibrahim", "Priya", "Kai")
LAST = ("Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas", "Johnson", "Roberts",
        "Khan", "Patel", "O'Brien", "Nguyễn", "Kowalski", "Murphy", "Ali", "Hughes", "Wright", "Walker", "Edwards")
ROLES = ("Teacher", "Teaching Assistant", "Office", "Head Teacher", "SENCo", "IT Technician")
YEARS = ("R", *(str(n) for n in range(1, 14)))


def people(count: int, seed: int = 16) -> list[Person]:
    """A trust's roll: one in twelve staff, the rest pupils from Reception to Year 13; names collide often."""
    rng = random.Random(seed)
    roll: list[Person] = []
    for n in range(count):
        first = rng.choice(FIRST)
        last = f"{rng.choice(LAST)}{'' if n % 3 else rng.choice('abcdefghij')}"
        if n % 12 == 0:
            roll.append(Person(f"S{n:06d}", Kind.STAFF, first, last, roles=(rng.choice(ROLES),),
                               start_date=date(2019, 9, 1)))
            continue
        year = YEARS[n % len(YEARS)]
        roll.append(Person(f"{n:06d}", Kind.PUPIL, first, last, year_group=year,
                           registration_group=f"{year}{'ABCD'[n % 4]}", start_date=date(2025, 9, 1)))
    return roll


def empty(directory: str) -> Snapshot:
    return Snapshot(directory, (), ())


def settled(roll: Sequence[Person], directory: str, rules: MappingRules, seed: int = 7) -> tuple[list[Person],
                                                                                                 Snapshot]:
    """A directory that held everyone last night, and tonight's feed with a term's churn in it.

    Of every 100 people: 2 are new (no account yet), 2 left on Friday, 3 moved up a year since the
    accounts were made, 1 changed their surname; 1 in 200 accounts has lost its anchor (adopted again by
    login), and 1 in 100 accounts belongs to someone no longer in the feed.
    """
    rng = random.Random(seed)
    caps = CAPABILITIES[directory]
    names = assign_usernames(roll, rules.naming, (), TODAY)
    tonight: list[Person] = []
    accounts: list[Account] = []
    members: dict[str, dict[str, str]] = {}
    for n, person in enumerate(roll):
        was = person
        if n % 100 == 1:
            tonight.append(replace(person, start_date=TODAY + timedelta(days=3)))
            continue
        if n % 100 == 2:
            tonight.append(replace(person, leave_date=TODAY - timedelta(days=3)))
        elif n % 100 in (3, 4, 5) and person.year_group not in (None, "R"):
            # The account still shows last year's year group: the feed has moved them up.
            was = replace(person, year_group=YEARS[YEARS.index(person.year_group or "R") - 1])
            tonight.append(person)
        elif n % 100 == 6:
            tonight.append(replace(person, last_name=f"{person.last_name}-{rng.choice(LAST)}"))
        elif n % 100 == 7:
            continue  # left the feed altogether
        else:
            tonight.append(person)
        desired = desired_account(was, names[person.person_id], directory, caps, rules)
        key = f"{directory}-{person.person_id}"
        accounts.append(Account(directory, key, desired.username, desired.login, desired.given_name,
                                desired.surname, desired.display_name, None if n % 200 == 8 else person.person_id,
                                True, desired.container, dict(desired.attributes)))
        for group in desired.groups:
            members.setdefault(group, {})[key] = desired.display_name
    groups = tuple(Group(directory, f"{directory}-group-{n}", name, held)
                   for n, (name, held) in enumerate(sorted(members.items())))
    return tonight, Snapshot(directory, tuple(accounts), groups)


def measured(run: Callable[[], Any]) -> tuple[Any, str]:
    """The result, and the wall and CPU time of an untraced run and the peak traced memory of a second run."""
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    result = run()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    del result
    gc.collect()
    tracemalloc.start()
    result = run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, f"{wall:.2f} s wall, {cpu:.2f} s CPU, peak {peak / 2**20:,.0f} MiB"


def bench_plan(label: str, roll: Sequence[Person], snapshots: Mapping[str, Snapshot], rules: MappingRules) -> None:
    caps = {directory: CAPABILITIES[directory] for directory in snapshots}
    # The job makes each snapshot's fingerprint in that directory's reading thread (job/snapshots.py), while
    # the others are still being read; the planner reuses it. Made here before the clock, and said apart.
    cpu = time.process_time()
    for snapshot in snapshots.values():
        snapshot.fingerprint()
    fingerprints = time.process_time() - cpu
    result, figures = measured(lambda: plan(roll, snapshots, caps, rules, PlanState(), TODAY))
    accounts = sum(len(s.accounts) for s in snapshots.values())
    print(f"{label}: {len(roll):,} people, {accounts:,} accounts in {', '.join(snapshots)}: "
          f"{len(result.changes):,} changes; plan {figures} "
          f"(+ {fingerprints:.2f} s CPU of snapshot fingerprints, made as each directory is read)")


def write_export(path: Path, rows: int) -> None:
    """A SIMS-like pupil report: quoted values, an admission number with leading zeros, UK dates."""
    rng = random.Random(3)
    lines = ['"Adno","UPN","Legal Forename","Preferred Forename","Legal Surname","Year","Reg Group",'
             '"Admission Date","Leaving Date"']
    for n in range(rows):
        digits = f"{801200000000 + n:012d}"
        upn = upn_check_letter("X" + digits) + digits
        year = YEARS[n % len(YEARS)]
        leaving = f"{rng.randrange(1, 28):02d}/07/2026" if n % 50 == 0 else ""
        lines.append(f'"{n:06d}","{upn}","{rng.choice(FIRST)}","","{rng.choice(LAST)}","Year {year}",'
                     f'"{year}{"ABCD"[n % 4]}","{rng.randrange(1, 28):02d}/09/2025","{leaving}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def bench_feed(rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pupils.csv"
        write_export(path, rows)

        def read() -> Any:
            result = read_feeds([FeedSpec("mis-csv", path, {"kind": "pupil"})])
            check_bad_rows(result)
            return result

        result, figures = measured(read)
    print(f"feed read: {rows:,} rows, {len(result.people):,} people, {len(result.errors)} errors: {figures}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000, help="the trust's size (default 100,000)")
    parser.add_argument("--first-night-people", type=int, default=20_000)
    parser.add_argument("--feed-rows", type=int, default=100_000)
    parser.add_argument("--only", choices=("first", "trust", "feed"))
    args = parser.parse_args()
    rules = load_mapping([ROOT / "mappings" / "school.toml"])

    if args.only in (None, "first"):
        bench_plan("first night", people(args.first_night_people), {"entra": empty("entra")}, rules)
    if args.only in (None, "trust"):
        roll = people(args.people)
        snapshots: dict[str, Snapshot] = {}
        tonight: list[Person] = []
        for directory in CAPABILITIES:
            tonight, snapshots[directory] = settled(roll, directory, rules)
        bench_plan("trust night", tonight, snapshots, rules)
    if args.only in (None, "feed"):
        bench_feed(args.feed_rows)
    print(f"max RSS of this process (inputs, tracing and all): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
