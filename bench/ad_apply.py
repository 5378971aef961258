"""Benchmark: 1,000 starters through ADConnector vs a bare ldap3 loop, and a 10,000-account snapshot, on Samba.

Run as root with samba-ad-dc installed: `.venv/bin/python bench/ad_apply.py [--starters 1000] [--accounts 10000]`.
Each side gets a fresh copy of the same provisioned domain, so neither inherits the other's data.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import ldap3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from idlifecycle.connectors.ad import ADConnector  # noqa: E402
from idlifecycle.model import Action, Change, Outcome  # noqa: E402
from idlifecycle.store import Store  # noqa: E402
from tests.integration.samba import DomainController, provision_template, unavailable_reason  # noqa: E402

PASSWORD = "Blue-Kettle-42"
GROUPS = ("All Pupils", "Year 7 Pupils")
CONTAINER = "Pupils/Year 7"


def starters(count: int) -> list[Change]:
    return [
        Change(directory="ad", action=Action.CREATE, person_id=f"P{i:06d}", username=f"26pupil{i}",
               reason="new starter", password=PASSWORD,
               after={"username": f"26pupil{i}", "login": f"26pupil{i}@pupils.example.sch.uk",
                      "given_name": "Pupil", "surname": f"Number{i}", "display_name": f"Pupil Number{i}",
                      "container": CONTAINER, "attributes": {"department": "Year 7", "employeeType": "pupil"},
                      "enabled": True, "anchor": f"P{i:06d}", "must_change_password": True})
        for i in range(count)
    ]


def through_idlifecycle(dc: DomainController, work: Path, count: int) -> float:
    (work / "bench.db").unlink(missing_ok=True)
    store = Store(work / "bench.db")
    connector = ADConnector.from_config(dc.connector_context(store))
    creates = starters(count)
    start = time.perf_counter()
    group_results = list(connector.apply([Change("ad", Action.CREATE_GROUP, None, "", "group", group=g)
                                          for g in GROUPS]))
    results = list(connector.apply(creates))
    keys = {c.change_id: r.key for c, r in zip(creates, results, strict=True)}
    memberships = [
        Change("ad", Action.ADD_MEMBER, c.person_id, c.username, "new starter", target=keys[c.change_id], group=g)
        for g in GROUPS for c in creates
    ]
    member_results = list(connector.apply(memberships))
    elapsed = time.perf_counter() - start
    outcomes = {r.outcome for r in [*group_results, *results, *member_results]}
    assert outcomes == {Outcome.APPLIED}, [r.detail for r in [*results, *member_results] if r.detail][:3]
    connector.close()
    store.close()
    return elapsed


def bare_loop(dc: DomainController, count: int, *, batch_members: bool) -> float:
    """The same adds and memberships by hand: one modify per member, or (the strongest baseline)
    one modify per group carrying every new member."""
    conn = dc.connection()
    base = dc.managed_dn
    start = time.perf_counter()
    conn.add(f"OU=Pupils,{base}", ["top", "organizationalUnit"])
    ou = f"OU=Year 7,OU=Pupils,{base}"
    conn.add(ou, ["top", "organizationalUnit"])
    conn.add(f"OU=Groups,{base}", ["top", "organizationalUnit"])
    group_dns = [f"CN={g},OU=Groups,{base}" for g in GROUPS]
    for group, dn in zip(GROUPS, group_dns, strict=True):
        conn.add(dn, ["top", "group"], {"sAMAccountName": group, "groupType": -2147483646})
    password = f'"{PASSWORD}"'.encode("utf-16-le")
    created: list[str] = []
    for i in range(count):
        dn = f"CN=26pupil{i},{ou}"
        ok = conn.add(dn, ["top", "person", "organizationalPerson", "user"], {
            "sAMAccountName": f"26pupil{i}", "userPrincipalName": f"26pupil{i}@pupils.example.sch.uk",
            "givenName": "Pupil", "sn": f"Number{i}", "displayName": f"Pupil Number{i}", "employeeID": f"P{i:06d}",
            "department": "Year 7", "employeeType": "pupil", "userAccountControl": 512, "unicodePwd": password,
            "pwdLastSet": 0})
        assert ok, conn.result
        created.append(dn)
        if not batch_members:
            for group_dn in group_dns:
                assert conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [dn])]}), conn.result
    if batch_members:
        for group_dn in group_dns:
            assert conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, created)]}), conn.result
    elapsed = time.perf_counter() - start
    conn.unbind()
    return elapsed


def fill(dc: DomainController, total: int) -> None:
    """More accounts (no passwords: the DC hashes nothing) until the managed tree holds `total`."""
    conn = dc.connection()
    conn.search(dc.managed_dn, "(objectCategory=person)", attributes=["cn"], paged_size=1000)
    have = sum(1 for e in conn.response if e["type"] == "searchResEntry")
    conn.add(f"OU=Pupils,{dc.managed_dn}", ["top", "organizationalUnit"])
    ou = f"OU=Year 8,OU=Pupils,{dc.managed_dn}"
    conn.add(ou, ["top", "organizationalUnit"])
    for i in range(have, total):
        conn.add(f"CN=25pupil{i},{ou}", ["top", "person", "organizationalPerson", "user"], {
            "sAMAccountName": f"25pupil{i}", "userPrincipalName": f"25pupil{i}@pupils.example.sch.uk",
            "givenName": "Pupil", "sn": f"Number{i}", "displayName": f"Pupil Number{i}",
            "employeeID": f"Q{i:06d}", "department": "Year 8", "userAccountControl": 514})
    conn.unbind()


def snapshot_figures(dc: DomainController, work: Path) -> tuple[int, float, float, float, float]:
    store = Store(work / "snap.db")
    with ADConnector.from_config(dc.connector_context(store)) as connector:
        start = time.perf_counter()
        snap = connector.snapshot()
        full = time.perf_counter() - start
        start = time.perf_counter()
        connector.snapshot()
        incremental = time.perf_counter() - start
        assert connector.last_read == "incremental"
    store.set_cursor("ad", f"snapshot@{dc.url}", None)
    tracemalloc.start()
    with ADConnector.from_config(dc.connector_context(store)) as connector:
        again = connector.snapshot()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(again.accounts) == len(snap.accounts)
    store.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return len(snap.accounts), full, incremental, peak / 2**20, rss


def on_fresh_dc(template: Path, root: Path, run: Callable[[DomainController], object]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) for `run` on a fresh copy of the domain."""
    dc = DomainController.copy_of(template, root)
    dc.start()
    try:
        cpu = time.process_time()
        wall = time.perf_counter()
        run(dc)
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        dc.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starters", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of each side, which goes first alternating; the best (least disturbed) counts")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"skipped: {reason}")
        return 1
    work = Path(tempfile.mkdtemp(prefix="ad-bench-"))
    n = args.starters
    try:
        template = provision_template(work / "template")
        times: dict[str, list[tuple[float, float]]] = {"ours": [], "per-group": [], "per-member": []}
        # Alternate the two sides so that load from anything else on the machine hits both alike.
        sides: list[tuple[str, Callable[[DomainController], object]]] = [
            ("ours", lambda dc: through_idlifecycle(dc, work, n)),
            ("per-group", lambda dc: bare_loop(dc, n, batch_members=True)),
        ]
        for round_no in range(args.rounds):
            for name, run in sides if round_no % 2 == 0 else reversed(sides):
                times[name].append(on_fresh_dc(template, work / f"{name}{round_no}", run))
        times["per-member"].append(on_fresh_dc(template, work / "member",
                                               lambda dc: bare_loop(dc, n, batch_members=False)))
        best = {name: min(runs) for name, runs in times.items()}
        print(f"{n} starters with password and {len(GROUPS)} groups each (Samba, 1 connection, "
              f"best of {args.rounds} rounds; CPU = this process, i.e. client overhead):")
        for name, label in (("per-member", "bare ldap3 loop, one modify per member"),
                            ("per-group", "bare ldap3 loop, one modify per group"),
                            ("ours", "idlifecycle ADConnector")):
            wall, cpu = best[name]
            print(f"  {label:40}: {wall:7.2f} s ({n / wall:5.1f} starters/s), client CPU {cpu:5.2f} s")
        for name in ("per-member", "per-group"):
            print(f"  idlifecycle vs the {name} loop: {best[name][0] / best['ours'][0]:7.1%} of its throughput "
                  "(target >= 90 %)")
        print("  all runs (wall s): " + "; ".join(f"{k} {', '.join(f'{w:.1f}' for w, _ in v)}"
                                                  for k, v in times.items()))
        dc = DomainController.copy_of(template, work / "snapshot")
        dc.start()
        try:
            fill(dc, args.accounts)
            count, full, incremental, peak, rss = snapshot_figures(dc, work)
            print(f"snapshot of {count} accounts: full read {full:.2f} s, incremental (nothing changed) "
                  f"{incremental:.2f} s, peak Python heap {peak:.1f} MiB (tracemalloc), process max RSS {rss:.0f} MiB")
        finally:
            dc.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
