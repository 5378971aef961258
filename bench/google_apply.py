"""Bench: September starters into Google through the connector, against the emulator in another process.

Prints, for N starters each added to two groups (emulator with 50 ms latency, a per-minute quota,
its limit on concurrent calls of one operation and the propagation delay after a create, both on
as by default): wall time, requests per starter, achieved requests per minute against the quota
(target at least 90 %), rate-limit, quotaExceeded and propagation answers seen, and failed changes.
Then the wall time and the connector process's peak memory for a snapshot of a 50,000-user tenant.

    .venv/bin/python bench/google_apply.py                        # 10,000 starters, 50,000-user snapshot
    .venv/bin/python bench/google_apply.py --starters 1000 --quota 6000 --snapshot-users 5000   # quick
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from idlifecycle.connectors.base import ConnectorContext
from idlifecycle.connectors.google import SCOPES, GoogleConnector, GoogleOptions
from idlifecycle.model import Action, Change, Outcome
from idlifecycle.sandbox.google import CONCURRENT_CALLS_PER_OPERATION, generate_service_account
from idlifecycle.sandbox.google_directory import REPLICATION_WINDOW_SECONDS

ADMIN = "bench.admin@staff.bench.example"
PUPILS = "pupils.bench.example"
ROOT = "/Bench"


@contextmanager
def emulator(folder: Path, *args: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The emulator as a separate process; yields its URL and the service-account key it trusts."""
    key_file = folder / "key.json"
    key = generate_service_account(key_file, client_email="bench@bench-project.iam.gserviceaccount.com",
                                   token_uri="http://127.0.0.1/token")
    command = [sys.executable, "-m", "idlifecycle.sandbox.google", "--port", "0", "--domain", PUPILS,
               "--domain", "staff.bench.example", "--admin", ADMIN, "--service-account", str(key_file),
               "--org-unit", ROOT, *[a for s in SCOPES for a in ("--scope", s)], *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening on "):
            raise SystemExit(f"the emulator did not start: {line!r}")
        yield line.split()[-1], key
    finally:
        process.terminate()
        process.wait(timeout=30)


def stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "_emulator/stats", timeout=10) as answer:
        result: dict[str, Any] = json.load(answer)
        return result


class NoCursors:
    """The Google connector keeps no incremental-read state."""

    def get_cursor(self, directory: str, name: str) -> str | None:
        return None

    def set_cursor(self, directory: str, name: str, value: str | None) -> None:
        pass


def connector(url: str, key: dict[str, str], quota: int, batch_size: int) -> GoogleConnector:
    options = GoogleOptions(admin=ADMIN, domains=(PUPILS, "staff.bench.example"), org_unit_root=ROOT,
                            group_domain="staff.bench.example", quota_per_minute=quota, batch_size=batch_size,
                            timeout=60, api_endpoint=url, secret="bench")
    # Built directly (not from a table) to hand it the token URI; every starter comes with a password,
    # so no generator is wired in, and the connector keeps nothing in state_dir.
    context = ConnectorContext(name="google", type="google", options={}, source="bench", cursors=NoCursors(),
                               state_dir=Path(tempfile.gettempdir()))
    return GoogleConnector(context, options, key, token_uri=url + "token")


def starter(number: int) -> Change:
    person = f"B{number:06d}"
    return Change(directory="google", action=Action.CREATE, person_id=person, username=f"starter{number:06d}",
                  reason="bench", password=f"Bench-Start-{number:06d}!",
                  after={"username": f"starter{number:06d}", "login": f"starter{number:06d}@{PUPILS}",
                         "given_name": "Bench", "surname": f"Starter{number}", "display_name": f"Bench {number}",
                         "container": f"Pupils/Year {7 + number % 5}", "attributes": {"department": "Pupils"},
                         "enabled": True, "anchor": person, "must_change_password": True})


def bench_apply(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder, emulator(
            Path(folder), "--latency", str(args.latency), "--quota-per-minute", str(args.quota),
            "--replication-window", str(args.replication_window),
            "--concurrent-limit", str(args.concurrent_limit)) as (url, key):
        google = connector(url, key, args.quota, args.batch_size)
        groups = ("All Pupils", "New Starters")
        failed = 0
        started = time.monotonic()
        for result in google.apply([Change("google", Action.CREATE_GROUP, None, g, "bench", group=g) for g in groups]):
            failed += result.outcome is Outcome.FAILED
        created = list(google.apply([starter(n) for n in range(args.starters)]))
        failed += sum(r.outcome is Outcome.FAILED for r in created)
        joins = [Change("google", Action.ADD_MEMBER, None, "", "bench", target=r.key, group=g)
                 for r in created if r.key for g in groups]
        failed += sum(r.outcome is Outcome.FAILED for r in google.apply(joins))
        wall = time.monotonic() - started
        server = stats(url)
        google.close()
    per_minute = google.calls_sent / wall * 60
    print(f"apply: {args.starters:,} starters, each in 2 groups; latency {args.latency * 1000:.0f} ms, "
          f"quota {args.quota:,}/min, batches of {args.batch_size}; emulator: propagation window "
          f"{args.replication_window:g} s, {args.concurrent_limit or 'no'} concurrent calls per operation")
    print(f"  wall time                 {wall:,.1f} s")
    print(f"  requests per starter      {google.calls_sent / args.starters:.2f} API calls "
          f"({server['batches']:,} batch HTTP requests in all)")
    print(f"  achieved                  {per_minute:,.0f} calls/min = {per_minute / args.quota:.1%} of the quota")
    print(f"  rate-limit errors seen    {server['rate_limited']} per-minute, {server['quota_exceeded']} quotaExceeded "
          f"(connector retried {google.rate_limited})")
    print(f"  propagation answers       {server['replication_refusals']} (412/404 just after a create; connector "
          f"waited and resent {google.settling_retries})")
    print(f"  failed changes            {failed}")
    print(f"  time spent pacing         {google.pacer.waited:,.1f} s")


def bench_snapshot(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder, emulator(
            Path(folder), "--latency", str(args.latency), "--seed-users", str(args.snapshot_users),
            "--seed-org-unit", f"{ROOT}/Pupils") as (url, key):
        # The snapshot runs in a fresh process so its peak memory is the connector's alone.
        measured = subprocess.run([sys.executable, __file__, "--snapshot-child", url, json.dumps(key)],
                                  check=True, capture_output=True, text=True)
    figures = json.loads(measured.stdout)
    print(f"snapshot: {args.snapshot_users:,} users, emulator in another process, latency {args.latency * 1000:.0f} ms")
    print(f"  accounts read             {figures['accounts']:,}")
    print(f"  wall time                 {figures['wall']:.1f} s")
    print(f"  connector peak memory     {figures['peak_mib']:.0f} MiB (process max RSS; "
          f"{figures['baseline_mib']:.0f} MiB before the snapshot)")


def snapshot_child(url: str, key_json: str) -> None:
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    google = connector(url, json.loads(key_json), 1_000_000, 100)
    started = time.monotonic()
    snapshot = google.snapshot()
    wall = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"accounts": len(snapshot.accounts), "wall": wall, "peak_mib": peak, "baseline_mib": baseline}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starters", type=int, default=10_000)
    parser.add_argument("--quota", type=int, default=12_000, help="per-minute quota of emulator and connector")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--replication-window", type=float, default=REPLICATION_WINDOW_SECONDS,
                        help="emulator: seconds a new user or group is not yet usable (0: off)")
    parser.add_argument("--concurrent-limit", type=int, default=CONCURRENT_CALLS_PER_OPERATION,
                        help="emulator: calls of one operation at once before 403 quotaExceeded (0: off)")
    parser.add_argument("--snapshot-users", type=int, default=50_000, help="0 skips the snapshot figure")
    parser.add_argument("--snapshot-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.snapshot_child:
        snapshot_child(*args.snapshot_child)
        return
    if args.starters:
        bench_apply(args)
    if args.snapshot_users:
        bench_snapshot(args)


if __name__ == "__main__":
    main()
