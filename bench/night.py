"""Benchmark: a trust-sized first night and the no-change night after it, `idlifecycle sync` end to end.

The Graph and Google emulators run in processes of their own (`idlifecycle.sandbox.night`) with
`--latency` added to every request and the services' limits on: Graph takes 3,000 writes per
150 s per app (the Entra connector paces itself at its default, 20 writes/s), Google 2,400 calls a
minute (the connector paces at the same). The feed is the sample school's pupils plus synthetic
ones up to `--people`, every one of them in both directories. Each night is the real CLI in a
subprocess; printed per night: wall time, the sync process's peak RSS, HTTP requests (and writes)
each emulator served, each directory's snapshot and apply times as the tool logged them, the
night's wall time divided by the slowest directory's connector-only time (its snapshot plus its
apply, less the time it waited for the store's thread), and the executor's overhead per change
(journal, audit and log, on the store's thread). Where Samba can run (root, samba installed) a
throw-away Samba AD DC of the run's own is a third directory (`bench/night_ad.py`), with no latency
added; its LDAP operations are not counted. Elsewhere one line says why and the night has no AD.

    .venv/bin/python bench/night.py                   # 20,000 people (long: the services' write limits)
    .venv/bin/python bench/night.py --people 2000
    .venv/bin/python bench/night.py --setup-fast      # the no-change night at 20,000 without the hour

`--setup-fast` makes the first night a setup, not a measure: the emulators run it with no latency and no
limits (and the Entra connector unpaced), then are restarted on the same tenants with the latency and the
services' limits before the no-change night, which is measured as ever. The output says so, and the first
night's figures are printed as a setup's.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from night_ad import add_to_job, start_dc  # bench/, the script's own folder, is first on sys.path

from idlifecycle.feeds._fields import upn_check_letter
from idlifecycle.passwords.history import hash_password
from idlifecycle.sandbox.night import SAMPLE, SchoolNight, start_google, start_graph

FIRST_NIGHT, NEXT_NIGHT = "2026-11-23", "2026-11-24"
GRAPH_WRITE_LIMIT = (3000, 150.0)
"""Microsoft Graph, identity and access: 3,000 writes per app per 2.5 minutes (FACTS.md)."""
GOOGLE_QUOTA = 2400
"""Google Directory API: 2,400 queries per minute per user per project (FACTS.md)."""
FORENAMES = ["Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Noah", "Mia", "Jack", "Ivy", "Leo", "Freya",
             "Arthur", "Lily", "Oscar", "Grace", "Charlie", "Emily", "Jacob", "Poppy", "Alfie", "Ella", "Theo",
             "Ruby", "Henry", "Joshua", "Willow", "Finley", "Daisy", "Aisha", "Hamza", "Priya", "Rhys", "Zara"]
SURNAMES = ["Jones", "Williams", "Brown", "Taylor", "Davies", "Wilson", "Evans", "Thomas", "Johnson", "Roberts",
            "Walker", "Wright", "Robinson", "Thompson", "White", "Hughes", "Edwards", "Green", "Hall", "Wood",
            "Harris", "Lewis", "Martin", "Jackson", "Clarke", "Turner", "Hill", "Scott", "Cooper", "Morris",
            "Ward", "Moore", "King", "Watson", "Baker", "Morgan", "Patel", "Young", "Allen", "Khan", "Bell"]


def write_pupils(path: Path, people: int, seed: int = 16) -> int:
    """The sample school's pupils, then synthetic ones (shaped like them) until there are `people`."""
    with (SAMPLE / "pupils.csv").open(encoding="utf-8-sig", newline="") as sample:
        rows = list(csv.reader(sample))
    header, body = rows[0], rows[1:]
    rng = random.Random(seed)
    shapes = [r for r in body if not r[9]]  # on roll: year, reg group, admission date
    serial = 0
    while len(body) < people:
        shape = rng.choice(shapes)
        tail = f"8014013{serial:05d}"  # the sample's UPNs are 8014012…: none of these is one of theirs
        forename = rng.choice(FORENAMES)
        surname = rng.choice(SURNAMES) + ("-" + rng.choice(SURNAMES) if rng.random() < 0.5 else "")
        body.append([f"{300_000 + serial:06d}", upn_check_letter("?" + tail) + tail, forename, forename, surname,
                     rng.choice("FM"), shape[6], shape[7], shape[8], ""])
        serial += 1
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out, quoting=csv.QUOTE_ALL).writerows([header, *body])
    return len(body)


@dataclass
class Night:
    """One `sync` as measured from outside (wall, RSS, requests) and as the tool logged its own timings."""

    wall: float
    cpu: float
    """The sync process's user + system CPU seconds (the machine may be shared: wall time alone misleads)."""
    peak_rss_mb: float
    exit_code: int
    applied_line: str
    requests: dict[str, dict[str, int]]
    snapshot: dict[str, float] = field(default_factory=dict)
    apply: dict[str, dict[str, float]] = field(default_factory=dict)
    store_ms_per_change: float | None = None
    store_cpu_ms_per_change: float | None = None
    password_seconds: float = 0.0
    changes: int = 0
    after_changes: dict[str, float] = field(default_factory=dict)
    """Seconds each directory took to read the run's own writes back after applying (Connector.after_changes)."""


def counters(school: SchoolNight) -> dict[str, dict[str, int]]:
    figures: dict[str, dict[str, int]] = {}
    for name, emulator in school.emulators().items():
        stats = emulator.stats()
        figures[name] = {"requests": int(stats.get("requests", stats.get("http_requests", 0))),
                         "writes": int(stats.get("applied_writes", 0))}
    return figures


def run_night(school: SchoolNight, today: str) -> Night:
    before = counters(school)
    began = time.monotonic()
    with (school.folder / f"{today}.err").open("w") as err, (school.folder / f"{today}.out").open("w") as out:
        run = subprocess.Popen(school.command(today, "sync", "--quiet"),
                               cwd=school.folder, stdout=out, stderr=err,
                               env={**os.environ, **school.env, "IDLIFECYCLE_TIMINGS": "1"})
        _, status, usage = os.wait4(run.pid, 0)
    wall = time.monotonic() - began
    run.returncode = os.waitstatus_to_exitcode(status)
    after = counters(school)
    stdout = (school.folder / f"{today}.out").read_text()
    applied = next((line for line in stdout.splitlines() if line.startswith(("Applied:", "No changes"))),
                   stdout.strip().splitlines()[-1] if stdout.strip() else "(no output)")
    if run.returncode not in (0, 3):
        errors = (school.folder / f"{today}.err").read_text().strip().splitlines()
        applied += f"; stderr: {errors[-1] if errors else '(nothing)'}"
    night = Night(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, run.returncode, applied,
                  {d: {k: after[d][k] - before[d][k] for k in after[d]} for d in after})
    read_timings(school.folder / f"{today}.err", night)
    return night


def read_timings(stderr: Path, night: Night) -> None:
    """The tool's own `*-timing` log lines (one JSON object each, as the text log format prints them)."""
    for line in stderr.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("event") == "snapshot-timing":
            night.snapshot[event["directory"]] = float(event["seconds"])
        elif event.get("event") == "directory-timing":
            night.apply[event["directory"]] = {"seconds": float(event["seconds"]),
                                               "connector": float(event["connector_seconds"]),
                                               "passwords": float(event.get("password_seconds", 0.0)),
                                               "changes": int(event["changes"])}
        elif event.get("event") == "after-changes-timing":
            night.after_changes[event["directory"]] = float(event["seconds"])
        elif event.get("event") == "apply-timing":
            night.store_ms_per_change = float(event["store_ms_per_change"])
            night.store_cpu_ms_per_change = event.get("store_cpu_ms_per_change")
            night.password_seconds = float(event.get("password_seconds", 0.0))
            night.changes = int(event["changes"])


def report(title: str, night: Night, new_passwords: int = 0) -> None:
    print(f"{title}: {night.wall:.1f} s wall, {night.cpu:.1f} s CPU, peak RSS {night.peak_rss_mb:.0f} MB (the sync "
          f"process), exit {night.exit_code}; {night.applied_line}")
    connector_only: dict[str, float] = {}
    for directory in [*night.requests, *(d for d in night.snapshot if d not in night.requests)]:
        snapshot = night.snapshot.get(directory, 0.0)
        applied = night.apply.get(directory)
        connector_only[directory] = snapshot + (applied["connector"] if applied else 0.0) + \
            night.after_changes.get(directory, 0.0)
        apply_text = (f"apply {applied['seconds']:.1f} s for {applied['changes']:.0f} changes (connector "
                      f"{applied['connector']:.1f} s, getting passwords {applied['passwords']:.1f} s)"
                      if applied else "nothing to apply")
        counts = night.requests.get(directory)
        asked = (f"{counts['requests']:6,} HTTP requests ({counts['writes']:,} writes)" if counts
                 else "LDAP operations not counted")
        read_back = night.after_changes.get(directory)
        read_back_text = "" if read_back is None else f"; its writes read back after {read_back:.1f} s"
        print(f"  {directory:7}: {asked}; snapshot {snapshot:.1f} s, {apply_text}{read_back_text}")
    slowest = max(connector_only, key=lambda d: connector_only[d])
    if connector_only[slowest] > 0:
        print(f"  whole night / slowest directory's connector-only time ({slowest}, snapshot + apply + read back "
              f"{connector_only[slowest]:.1f} s): {night.wall / connector_only[slowest]:.2f}")
    if new_passwords and connector_only[slowest] > 0:
        hashing_share(night, new_passwords, connector_only[slowest])
    if night.store_ms_per_change is not None:
        cpu = night.store_cpu_ms_per_change
        print(f"  executor overhead: {night.store_ms_per_change:.3f} ms per change (journal + audit + log, "
              f"{night.changes:,} changes{'' if cpu is None else f'; {cpu:.3f} ms of it CPU'}); the workers waited "
              f"{night.password_seconds:.1f} s for passwords (drawn ahead: a scrypt hash each for the history)")


def limits_on(school: SchoolNight, latency: float) -> None:
    """The emulators restarted on the tenants they saved, with `latency` and the services' limits, and the job
    rewritten for their new ports with the connectors paced as in a measured night."""
    secret = school.entra.info["secret"]
    school.entra.stop()
    if school.google is not None:
        school.google.stop()
    school.entra = start_graph(school.folder / "entra", secret=secret, write_limit=GRAPH_WRITE_LIMIT,
                               latency=latency)
    if school.google is not None:
        school.google = start_google(school.folder / "google", latency=latency, quota_per_minute=GOOGLE_QUOTA)
    school.google_quota_per_minute = GOOGLE_QUOTA
    school.write_job(timeout_seconds=30, write_limit_per_second=20)


def start_school(work: Path, latency: float, fast: bool) -> SchoolNight:
    feeds = {"pupil": work / "pupils.csv", "staff": SAMPLE / "staff.csv"}
    if fast:  # no latency, no limits: Graph and Google as quick as the emulators go, the connectors unpaced
        return SchoolNight.start(work / "night", google=True, timeout_seconds=30, write_limit_per_second=100_000,
                                 google_quota=1_000_000, feeds=feeds)
    return SchoolNight.start(work / "night", google=True, latency=latency, write_limit_per_second=20,
                             graph_write_limit=GRAPH_WRITE_LIMIT, google_quota=GOOGLE_QUOTA,
                             timeout_seconds=30, feeds=feeds)


def scrypt_seconds(samples: int = 5) -> float:
    """CPU seconds of one history hash (the tool's own scrypt, N=2**14), the median of a few, in this process."""
    times = []
    for _ in range(samples):
        began = time.process_time()
        hash_password("Correct-Horse-7-Battery")
        times.append(time.process_time() - began)
    return sorted(times)[len(times) // 2]


def hashing_share(night: Night, new_passwords: int, slowest: float) -> None:
    """How much of the first night's gap over its slowest directory is CPU-bound hashing, on this machine's cores.

    Every new person's password is hashed once for the never-reissue history before it may be sent; the hashes
    run on the cores the sync's own work (plan, journal, TLS, JSON) and the emulators also need. However early
    or late they are drawn, they cannot cost less than their CPU time spread over every core.
    """
    cores = os.cpu_count() or 1
    each = scrypt_seconds()
    hashing = new_passwords * each
    gap = night.wall - slowest
    others = "the emulators, Samba" if "ad" in night.apply else "the emulators"
    print(f"  hashing: {new_passwords:,} new passwords x {each * 1000:.0f} ms of scrypt = {hashing:.1f} s of CPU, "
          f"{hashing / night.cpu * 100:.0f} % of the sync process's {night.cpu:.1f} s; at least "
          f"{hashing / cores:.1f} s of wall on this machine's {cores} cores, shared with {others} and the rest "
          f"of the sync; the gap over the slowest directory is {gap:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=20_000, help="pupils in the feed (the sample's 313 included)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every emulator request")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (its path is printed)")
    parser.add_argument("--setup-fast", action="store_true",
                        help="first night with no latency and no limits (a setup, not measured), then the "
                             "no-change night with the latency and limits on")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="night-bench-"))
    work.chmod(0o700)
    pupils = write_pupils(work / "pupils.csv", args.people)
    staff = len((SAMPLE / "staff.csv").read_text(encoding="utf-8-sig").splitlines()) - 1
    dc, ad_line = start_dc(work)
    print(f"{pupils:,} pupils and {staff} staff, each in Entra, Google{' and AD' if dc else ''}; "
          f"{args.latency * 1000:.0f} ms latency; Graph {GRAPH_WRITE_LIMIT[0]:,} writes per "
          f"{GRAPH_WRITE_LIMIT[1]:.0f} s, Google {GOOGLE_QUOTA:,} calls a minute", flush=True)
    print(ad_line, flush=True)
    school = None
    try:
        school = start_school(work, args.latency, args.setup_fast)
        school.env["IDLIFECYCLE_AUDIT_KEY"] = secrets.token_hex(32)  # a fresh school's own key
        if dc is not None:
            add_to_job(school, dc)
        if args.setup_fast:
            print("--setup-fast: the first night is a setup with NO latency and NO limits (not a measure); the "
                  "no-change night after it has the latency and limits on", flush=True)
        report("first night (setup: no latency, no limits)" if args.setup_fast else "first night",
               run_night(school, FIRST_NIGHT), new_passwords=pupils + staff)
        if args.setup_fast:
            limits_on(school, args.latency)
            if dc is not None:
                add_to_job(school, dc)
        report("no-change night", run_night(school, NEXT_NIGHT))
    finally:
        if school is not None:
            school.stop()
        if dc is not None:
            dc.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
