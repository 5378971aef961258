"""Benchmark: the Entra connector applying a September intake and reading a large tenant, against the Graph emulator.

Part 1 (apply): N starters, each created and added to three groups plus a licence group, sent the
way the executor sends them (all creates, then all memberships), to the emulator running in
another process with `--latency-ms` per request, a write limit and Graph's replication delay
(`--replication-window`: member adds that meet a not-yet-replicated account are retried, and
counted). Prints wall time, Graph write requests per starter (each $batch item counted, as
Graph counts them; target <= 1.3), achieved writes per second against the limit (target >= 90 %) and the number of 429s.

Part 2 (snapshot): a full snapshot of M users (first run: no delta link) in a fresh connector
process, with no added latency and with `--latency-ms`; prints wall time (construction, sign-in
and snapshot) and that process's peak memory (targets < 5 s, < 400 MB).

    .venv/bin/python bench/entra_apply.py                       # 10,000 starters, 50,000 users
    .venv/bin/python bench/entra_apply.py --starters 500 --users 5000   # quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from idlifecycle.connectors.base import ConnectorContext
from idlifecycle.connectors.entra import EntraConnector
from idlifecycle.model import Action, Change, Outcome
from idlifecycle.passwords.generator import throwaway
from idlifecycle.store import Store

CLIENT_ID = "bench-app"
SECRET = "bench-secret"
DOMAIN = "pupils.bench.sch.uk"
GROUPS = ["All Pupils", "Year 7 Pupils", "Reg 7A", "Licence - Microsoft 365 A1 Students"]


@contextmanager
def emulator_process(work: Path, seed: dict[str, Any], latency_ms: float, write_limit: int | None,
                     window: float, replication_window: float = 0.3) -> Iterator[dict[str, Any]]:
    """`python -m idlifecycle.sandbox.graph` in its own process; yields its ready line (url, tenant, cert)."""
    (work / "seed.json").write_text(json.dumps(seed))
    (work / "secret").write_text(SECRET)
    command = [sys.executable, "-m", "idlifecycle.sandbox.graph", "--seed", str(work / "seed.json"),
               "--tls-dir", str(work / "tls"), "--latency-ms", str(latency_ms), "--write-window", str(window),
               "--replication-window", str(replication_window), "--app", f"{CLIENT_ID}:{work / 'secret'}"]
    if write_limit is not None:
        command += ["--write-limit", str(write_limit)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        yield ready
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


def connector(work: Path, ready: dict[str, Any], write_limit_per_second: float) -> EntraConnector:
    port = ready["url"].rsplit(":", 1)[1]
    options = {"tenant_id": ready["tenant_id"], "client_id": CLIENT_ID, "authority_host": f"127.0.0.1:{port}",
               "graph_url": ready["url"] + "/v1.0", "ca_file": ready["certificate"], "domains": {"pupil": DOMAIN},
               "write_limit_per_second": write_limit_per_second, "max_batches_in_flight": 6, "timeout_seconds": 60}
    context = ConnectorContext(name="entra", type="entra", options=options, source="bench", cursors=Store(
        work / "state.db"), state_dir=work / "state", secrets={"entra_client_secret": SECRET},
        password_generator=throwaway)
    return EntraConnector.from_config(context)


def stats(ready: dict[str, Any]) -> dict[str, int]:
    with httpx.Client(verify=ssl.create_default_context(cafile=ready["certificate"])) as http:
        return dict(http.get(ready["url"] + "/_emulator/stats").json())


def apply_part(starters: int, latency_ms: float, limit: float, window: float,
               replication_window: float) -> dict[str, Any]:
    seed = {"tenant_id": "bench", "domains": [DOMAIN],
            "groups": [{"displayName": g, "description": "Managed by idlifecycle"} for g in GROUPS]}
    with tempfile.TemporaryDirectory() as temporary, \
            emulator_process(Path(temporary), seed, latency_ms, int(limit * window), window,
                             replication_window) as ready:
        entra = connector(Path(temporary), ready, limit)
        try:
            entra.snapshot()
            creates = [Change("entra", Action.CREATE, f"P{i:06d}", f"25pupil{i}", "new pupil on roll", after={
                "username": f"25pupil{i}", "login": f"25pupil{i}@{DOMAIN}", "given_name": "New",
                "surname": f"Pupil{i}", "display_name": f"New Pupil{i}", "container": "",
                "attributes": {"department": "Year 7"}, "enabled": True, "anchor": f"P{i:06d}",
                "must_change_password": True}, password=f"Start-{i:06d}-Here") for i in range(starters)]
            before = stats(ready)
            started = time.perf_counter()
            created = list(entra.apply(creates))
            # Results arrive as Graph answers, not in the order sent: matched by change id.
            made = {r.change_id: r.key for r in created if r.outcome is Outcome.APPLIED}
            keys = [made[c.change_id] for c in creates if c.change_id in made]
            joins = [Change("entra", Action.ADD_MEMBER, c.person_id, c.username, "new account",
                            target=made[c.change_id], group=g) for c in creates if c.change_id in made for g in GROUPS]
            joined = list(entra.apply(joins))
            wall = time.perf_counter() - started
            after = stats(ready)
            replication_retries = entra.session.replication_retries
        finally:
            entra.close()
    writes = after["writes"] - before["writes"]
    return {
        "starters": starters, "created": len(keys), "memberships": sum(r.outcome is Outcome.APPLIED for r in joined),
        "wall_s": round(wall, 1), "write_requests": writes, "writes_per_starter": round(writes / starters, 3),
        "http_batches": after["batches"] - before["batches"], "write_limit_per_s": limit,
        "achieved_writes_per_s": round(writes / wall, 1), "of_limit_percent": round(100 * writes / wall / limit, 1),
        "throttled_429": after["throttled"] - before["throttled"], "latency_ms": latency_ms,
        "replication_window_s": replication_window, "replication_retries": replication_retries,
    }


def snapshot_part(users: int, latency_ms: float) -> dict[str, Any]:
    seed = {"tenant_id": "bench", "domains": [DOMAIN, "staff.bench.sch.uk"],
            "users": [{"userPrincipalName": f"u{i}@{DOMAIN}", "givenName": "Given", "surname": f"Surname{i}",
                       "displayName": f"Given Surname{i}", "employeeId": f"E{i:06d}", "department": "Year 9",
                       "jobTitle": "Pupil", "employeeType": "pupil"} for i in range(users)],
            "groups": [{"displayName": f"Year {y} Pupils", "description": "Managed by idlifecycle",
                        "members": [f"u{i}@{DOMAIN}" for i in range(y, users, 7)]} for y in range(7)]}
    with tempfile.TemporaryDirectory() as temporary, \
            emulator_process(Path(temporary), seed, latency_ms, None, 150) as ready:
        # The snapshot runs in a fresh process so that its peak memory is the connector's alone.
        child = subprocess.run([sys.executable, __file__, "--snapshot-child", json.dumps(ready), temporary],
                               capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    result["latency_ms"] = latency_ms
    return result


def snapshot_child(ready_json: str, work: str) -> None:
    started = time.perf_counter()
    entra = connector(Path(work), json.loads(ready_json), 20)
    try:
        entra.session.token()
        signed_in = time.perf_counter()
        snapshot = entra.snapshot()
        done = time.perf_counter()
        again = entra.snapshot()  # the next night: only what changed, through the stored delta links
        nightly = time.perf_counter() - done
    finally:
        entra.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"users": len(snapshot.accounts), "groups": len(snapshot.groups),
                      "wall_s": round(done - started, 2), "of_which_sign_in_s": round(signed_in - started, 2),
                      "snapshot_s": round(done - signed_in, 2), "unchanged_delta_snapshot_s": round(nightly, 2),
                      "same_accounts": len(again.accounts) == len(snapshot.accounts),
                      "peak_memory_mb": round(peak_mb)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starters", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--write-limit", type=float, default=200.0,
                        help="writes per second the emulator allows (Graph: 20); the connector is paced to it")
    parser.add_argument("--write-window", type=float, default=10.0, help="the emulator's throttling window, s")
    parser.add_argument("--replication-window", type=float, default=0.3,
                        help="seconds a just-created object stays invisible (Graph's replication delay)")
    parser.add_argument("--snapshot-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.snapshot_child:
        snapshot_child(*args.snapshot_child)
        return
    if args.starters:
        print("apply:", json.dumps(apply_part(args.starters, args.latency_ms, args.write_limit, args.write_window,
                                              args.replication_window)), flush=True)
    if args.users:
        for latency in dict.fromkeys((0.0, args.latency_ms)):
            print("snapshot:", json.dumps(snapshot_part(args.users, latency)), flush=True)


if __name__ == "__main__":
    main()
