"""Entra's last sign-in dates are read whole once, then only for the users who signed in since (sign_ins.py):
the no-change night is one short list, not the whole tenant again, and no date is lost on the way."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from idlifecycle.connectors.entra import EntraConnector
from idlifecycle.connectors.entra.sign_ins import FULL_EVERY, SignInRecord
from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import STAFF, school_seed


def sign_in_reads(emulator: GraphEmulator) -> list[str]:
    return [path for path in emulator.reads if "signInActivity" in path]


def last_sign_ins(entra: EntraConnector) -> dict[str, Any]:
    return {a.login: a.last_sign_in for a in entra.snapshot().accounts}


def signed_in(emulator: GraphEmulator, upn: str, when: datetime) -> None:
    user = emulator.directory.user(upn)
    emulator.directory.state["users"][user["id"]]["signInActivity"] = {
        "lastSignInDateTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_after_one_whole_read_a_night_asks_only_for_who_signed_in_since(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector]) -> None:
    emulator = make_emulator(school_seed())
    now = datetime.now(UTC).replace(microsecond=0)
    signed_in(emulator, f"jsmith@{STAFF}", now - timedelta(days=30))
    entra = make_connector(emulator, sign_in_activity=True)

    first = last_sign_ins(entra)
    assert first[f"jsmith@{STAFF}"] == now - timedelta(days=30)
    [whole] = sign_in_reads(emulator)
    assert "filter" not in whole

    signed_in(emulator, f"jsmith@{STAFF}", now)
    second = last_sign_ins(entra)
    *_, incremental = sign_in_reads(emulator)
    assert "lastSignInDateTime" in incremental and "ge" in incremental
    # The one who signed in has tonight's date; everyone else keeps what the whole read found.
    assert second[f"jsmith@{STAFF}"] == now
    assert {k: v for k, v in second.items() if k != f"jsmith@{STAFF}"} == \
        {k: v for k, v in first.items() if k != f"jsmith@{STAFF}"}


def test_a_week_after_the_whole_read_or_an_unreadable_record_it_is_read_whole_again(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector]) -> None:
    emulator = make_emulator(school_seed())
    entra = make_connector(emulator, sign_in_activity=True)
    last_sign_ins(entra)
    cursors = entra.reader.cursors
    record = SignInRecord(entra.name, cursors)
    assert record.since(read_whole=False) is not None
    later = SignInRecord(entra.name, cursors, clock=lambda: datetime.now(UTC) + FULL_EVERY)
    assert later.since(read_whole=False) is None
    assert record.since(read_whole=True) is None
    cursors.set_cursor(entra.name, "sign_ins", "not base64 at all")
    assert SignInRecord(entra.name, cursors).since(read_whole=False) is None
    last_sign_ins(entra)
    assert "filter" not in sign_in_reads(emulator)[-1]
