"""Time and peak memory to build the access-review workbook for 50,000 people in three directories.

Target: under 60 s and under 1 GB. Run: `.venv/bin/python bench/report.py [--people N] [--out FILE]`.
The data is synthetic but shaped like a large trust: every person has an account in each
directory, four groups each, a year of sign-ins, some leavers, strays and admin roles.
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from idlifecycle.model import Account, Group, Kind, Person, RoleHolder, Snapshot
from idlifecycle.reports.access_review import ReportOptions, RestrictedAccessRow, ReviewInput, build_review
from idlifecycle.reports.workbook import write_csv, write_xlsx
from idlifecycle.store import AuditEntry

TODAY = date(2026, 7, 20)
DIRECTORIES = ("entra", "google", "ad")


def school(count: int) -> ReviewInput:
    rng = random.Random(8)
    people = [
        Person(f"P{n:06d}", Kind.STAFF if n % 12 == 0 else Kind.PUPIL,
               rng.choice(["Amelia", "Oliver", "Zoë", "Łukasz"]), f"Surname{n}",
               year_group=str(n % 13 + 1), registration_group=f"{n % 13 + 1}{'ABCD'[n % 4]}",
               leave_date=TODAY - timedelta(days=30) if n % 97 == 0 else None)
        for n in range(count)
    ]
    base = datetime(2026, 7, 1, tzinfo=UTC)
    snapshots: dict[str, Snapshot] = {}
    for directory in DIRECTORIES:
        accounts = tuple(
            Account(directory, f"{directory}-{p.person_id}", f"user{p.person_id.lower()}",
                    f"user{p.person_id.lower()}@school.example", p.first_name, p.last_name, p.display_name,
                    p.person_id if n % 500 else None, n % 50 != 0,
                    container=f"Pupils/Year {p.year_group}" if p.kind is Kind.PUPIL else "Staff",
                    created=base - timedelta(days=rng.randrange(30, 2000)),
                    last_sign_in=base - timedelta(days=rng.randrange(0, 200), minutes=rng.randrange(1440)),
                    password_last_set=base - timedelta(days=rng.randrange(0, 500)),
                    password_never_expires=n % 1000 == 0)
            for n, p in enumerate(people)
        )
        groups = []
        for index in range(40):
            members = {a.key: a.display_name for a in accounts[index::40]}
            groups.append(Group(directory, f"{directory}-g{index}", f"Year group {index}", members))
        for index in range(3):
            members = {a.key: a.display_name for a in accounts[index::10]}
            groups.append(Group(directory, f"{directory}-c{index}", f"Club {index}", members))
        snapshots[directory] = Snapshot(directory, accounts, tuple(groups))
    restricted = [
        RestrictedAccessRow(f"Share {n % 20}", directory, f"SG-Share-{n % 20}", f"{directory}-{p.person_id}",
                            f"user{p.person_id.lower()}", p.display_name, p.person_id,
                            "grant" if n % 3 else "baseline: staff", approver="The SIRO",
                            approved_at=base, expires=TODAY + timedelta(days=n % 90))
        for directory in DIRECTORIES for n, p in enumerate(people[::12][:1000])
    ]
    roles = {d: [RoleHolder(d, "Global Administrator", f"admin{n}", f"Admin {n}", f"P{n * 12:06d}") for n in range(10)]
             for d in DIRECTORIES}
    audit = [AuditEntry(n, (base - timedelta(minutes=n)).isoformat(), "change-applied", "nightly job",
                        {"directory": "entra", "action": "update", "username": f"user{n}", "reason": "moved to Year 8"})
             for n in range(20_000)]
    options = ReportOptions(school_name="Big Trust", siro_name="The SIRO", password_max_age_days={"staff": 365})
    return ReviewInput(TODAY, people, snapshots, roles, restricted, audit, options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--csv", action="store_true", help="also time the CSV export")
    args = parser.parse_args()

    started = time.perf_counter()
    data = school(args.people)
    made = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "review.xlsx"
        sheets = build_review(data)
        built = time.perf_counter()
        write_xlsx(sheets, out)
        written = time.perf_counter()
        size = out.stat().st_size
        if args.csv:
            write_csv(sheets, Path(tmp) / "csv")
        finished = time.perf_counter()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    accounts = sum(len(s.accounts) for s in data.snapshots.values())
    print(f"people: {args.people:,}; accounts: {accounts:,} in {len(data.snapshots)} directories")
    print(f"test data: {made - started:.1f} s (not counted)")
    print(f"build sheets: {built - made:.1f} s; write xlsx: {written - built:.1f} s "
          f"({size / 2**20:.1f} MiB); total: {written - made:.1f} s")
    if args.csv:
        print(f"write csv: {finished - written:.1f} s")
    print(f"peak memory (max RSS, whole process incl. test data): {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
