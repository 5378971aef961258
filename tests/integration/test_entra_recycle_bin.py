"""EntraConnector.recycle_bin against the Graph emulator through msgraph-sdk: the deleted users of the managed
domains, with their anchor and deletion time, under the UPN they held (Graph lists it with an id prefix)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from idlifecycle.connectors.entra import EntraConnector
from idlifecycle.model import Outcome
from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import PUPILS, school_seed, starter


def test_the_bin_lists_the_managed_domains_deleted_users_by_the_name_they_held(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector]) -> None:
    seed = school_seed()
    seed["users"] = [*seed["users"], {"userPrincipalName": "visitor@example.org", "displayName": "Visitor"}]
    emulator = make_emulator(seed)
    for upn in (f"23abrown@{PUPILS}", "visitor@example.org"):
        emulator.directory.delete_user(emulator.directory.user(upn)["id"])
    [amy] = make_connector(emulator).recycle_bin()
    assert (amy.directory, amy.username, amy.anchor) == ("entra", "23abrown", "P001")
    assert amy.deleted_at is not None and abs(datetime.now(UTC) - amy.deleted_at) < timedelta(minutes=5)


def test_a_deleted_users_name_stays_outside_after_a_create_read_the_bin_without_a_cache(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector]) -> None:
    """A connector with no cache (first run, or a lost state folder) learns deleted users only from the bin."""
    emulator = make_emulator()
    emulator.directory.delete_user(emulator.directory.user(f"23abrown@{PUPILS}")["id"])
    entra = make_connector(emulator)
    assert "23abrown" not in entra.snapshot().names_outside_scope  # a first delta does not show deletions
    [result] = list(entra.apply([starter("P100", "24cgreen", "Cy", "Green")]))
    assert result.outcome is Outcome.APPLIED, result
    assert "23abrown" in entra.snapshot().names_outside_scope
