"""Directories applied side by side (executor.py): the real Entra and Google connectors against their
emulators, each with latency, applied by one Executor run.

Each directory's writes overlap the other's in time, each keeps its phase order (a group before
the starters, the starters before their memberships, which need the starters' new keys), and a
directory that refuses connections or raises leaves the other directories' changes made."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import date
from typing import Any

import pytest

from idlifecycle.connectors.entra import EntraConnector
from idlifecycle.executor import Executor, run_journal_id
from idlifecycle.model import Action, Change, Outcome, Result
from idlifecycle.sandbox.graph import GraphEmulator
from idlifecycle.store import Store
from tests.doubles import SendOnly
from tests.integration import google_fixtures as google_tenant
from tests.integration.google_fixtures import Tenant, tenant_fixture  # noqa: F401
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import starter as entra_starter

DAY = date(2026, 12, 2)
LATENCY = 0.15


def entra_changes(count: int) -> list[Change]:
    """New pupils, then each into All Pupils (its target is the key the create returns)."""
    creates = [entra_starter(f"E{n:03d}", f"26side{n:03d}", "Sid", f"Side{n:03d}") for n in range(count)]
    joins = [Change("entra", Action.ADD_MEMBER, c.person_id, c.username, "pupil", group="All Pupils")
             for c in creates]
    return [*creates, *joins]


def google_changes(count: int) -> list[Change]:
    """A new group, new pupils, then each into the group."""
    group = Change("google", Action.CREATE_GROUP, None, "", "year group", group="Year 7 pupils")
    creates = [google_tenant.starter(f"G{n:03d}", f"side.g{n:03d}", password="Daffodil-Kettle-42")
               for n in range(count)]
    joins = [Change("google", Action.ADD_MEMBER, c.person_id, c.username, "pupil", group="Year 7 pupils")
             for c in creates]
    return [group, *creates, *joins]


def writes(log: Any) -> list[dict[str, Any]]:
    with log.lock:
        return [dict(e) for e in log.entries]


def kinds_in_order(entries: list[dict[str, Any]]) -> list[str]:
    """Each write as group / account / member, in the order the emulator applied them, runs collapsed."""
    def kind(entry: dict[str, Any]) -> str:
        path = entry["path"]
        # Graph adds members with a PATCH of the group (members@odata.bind).
        if path.endswith("/members") or (entry["method"] == "PATCH" and "/groups/" in path):
            return "member"
        # Google's org units are made for the accounts that go in them, in the accounts' phase.
        return "account" if path.endswith(("/users", "/orgunits")) else "group"

    seen: list[str] = []
    for entry in sorted(entries, key=lambda e: e["at"]):
        if not seen or seen[-1] != kind(entry):
            seen.append(kind(entry))
    return seen


def test_two_directories_are_written_at_the_same_time_each_in_its_own_phase_order(
        tenant: Tenant, make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector],
        store: Store) -> None:
    graph = make_emulator(latency=LATENCY)
    tenant.emulator.latency = LATENCY
    entra = make_connector(graph)
    with tenant.connector(batch_size=5) as google:
        entra.snapshot()
        google.snapshot()
        recorded_on: set[str] = set()
        executor = Executor(store, {"entra": entra, "google": google}, today=DAY,
                            on_result=lambda change, result: recorded_on.add(change.directory))
        results = executor.run(run_journal_id(1), [*entra_changes(6), *google_changes(12)])
    assert [r.outcome for r in results] == [Outcome.APPLIED] * len(results), [r.detail for r in results]
    entra_writes, google_writes = writes(graph.write_log), writes(tenant.emulator.write_log)
    assert kinds_in_order(entra_writes) == ["account", "member"]
    assert kinds_in_order(google_writes) == ["group", "account", "member"]
    # Side by side: each directory's first write came before the other's last one.
    first = max(min(e["at"] for e in entra_writes), min(e["at"] for e in google_writes))
    last = min(max(e["at"] for e in entra_writes), max(e["at"] for e in google_writes))
    assert first < last, f"one directory started writing {first - last:.2f} s after the other had finished"
    states = {e.state for e in store.journal_states(run_journal_id(1)).values()}
    assert states == {"applied"} and recorded_on == {"entra", "google"}


class Raising(SendOnly):
    """A directory whose connector breaks (a bug, not a refusal) as soon as it is asked to write."""

    def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
        raise RuntimeError("the connector broke")


def test_a_directory_refusing_connections_and_one_raising_do_not_stop_the_other(
        tenant: Tenant, make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector],
        store: Store) -> None:
    graph = make_emulator(latency=LATENCY)
    entra = make_connector(graph)
    entra.snapshot()
    # Nothing listens on port 9: every connection is refused.
    with tenant.connector(api_endpoint="http://127.0.0.1:9", timeout=2, give_up_after=2) as google:
        broken = Raising("ad")
        ad_disable = Change("ad", Action.DISABLE, "A1", "16left", "left", target="k-left",
                            before={"enabled": True}, after={"enabled": False})
        executor = Executor(store, {"ad": broken, "google": google, "entra": entra}, today=DAY)
        with pytest.raises(RuntimeError, match="the connector broke"):
            executor.run(run_journal_id(1), [ad_disable, *google_changes(2), *entra_changes(4)])
    by_directory: dict[str, set[str]] = {}
    for directory, state in store.db.execute("SELECT directory, state FROM journal WHERE plan_id=?",
                                             (run_journal_id(1),)):
        by_directory.setdefault(directory, set()).add(state)
    assert by_directory["entra"] == {"applied"}, "Entra's changes were stopped by another directory"
    assert by_directory["google"] == {"failed"}
    # Sent (as far as anyone knows) and never answered: left for the next run to settle from a snapshot.
    assert by_directory["ad"] == {"started"}
    created = [u for u in graph.directory.state["users"].values() if u["userPrincipalName"].startswith("26side")]
    assert len(created) == 4
