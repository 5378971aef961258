"""Fixtures for the Entra tests: a seeded Graph emulator over HTTPS and connectors built like the job builds them.

Import the fixtures into a test module with `from tests.integration.graph_fixtures import *`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from idlifecycle.connectors.base import ConnectorContext
from idlifecycle.connectors.entra import EntraConnector
from idlifecycle.model import Action, Change, Result
from idlifecycle.passwords.generator import throwaway
from idlifecycle.sandbox.graph import GraphEmulator
from idlifecycle.sandbox.graph_directory import Directory
from idlifecycle.store import Store

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "test-secret-value"
STAFF = "staff.example.sch.uk"
PUPILS = "pupils.example.sch.uk"
MARKER = "Managed by idlifecycle"
PASSWORD = "Correct-Horse-42"


def school_seed() -> dict[str, Any]:
    """A small school tenant: managed pupils and staff, an outsider, a hybrid teacher, an admin."""
    return {
        "tenant_id": "a0a0a0a0-0000-4000-8000-000000000001",
        "domains": [STAFF, PUPILS, "example.org"],
        "premium": True,  # Entra ID P1 (e.g. Microsoft 365 A3): sign-in activity can be read
        "subscribedSkus": [{"skuId": "94763226-9b3c-4e75-a931-5c89701abe66",
                            "skuPartNumber": "STANDARDWOFFPACK_FACULTY"}],
        "users": [
            {"userPrincipalName": f"jsmith@{STAFF}", "givenName": "Jo", "surname": "Smith", "displayName": "Jo Smith",
             "employeeId": "S001", "jobTitle": "Teacher", "employeeType": "staff", "mail": f"jsmith@{STAFF}",
             "proxyAddresses": [f"SMTP:jsmith@{STAFF}"], "usageLocation": "GB"},
            {"userPrincipalName": f"23abrown@{PUPILS}", "givenName": "Amy", "surname": "Brown",
             "displayName": "Amy Brown", "employeeId": "P001", "department": "Year 7", "employeeType": "pupil"},
            {"userPrincipalName": f"hybridteacher@{STAFF}", "givenName": "Hal", "surname": "Hybrid",
             "displayName": "Hal Hybrid", "employeeId": "S002", "onPremisesSyncEnabled": True},
            {"userPrincipalName": "it.admin@example.org", "givenName": "Ida", "surname": "Admin",
             "displayName": "Ida Admin"},
        ],
        "groups": [
            {"displayName": "All Pupils", "description": MARKER, "members": [f"23abrown@{PUPILS}"]},
            {"displayName": "All Staff", "description": f"Everyone on the staff list ({MARKER})",
             "members": [f"jsmith@{STAFF}"]},
            {"displayName": "Licence - Microsoft 365 A3 Faculty", "description": MARKER, "members": []},
            {"displayName": "Chess Club", "description": "run by Mr Jones", "members": [f"23abrown@{PUPILS}"]},
        ],
        "directoryRoles": [{"displayName": "Global Administrator", "members": ["it.admin@example.org"]}],
    }


@pytest.fixture(scope="session")
def graph_tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("graph-tls")


@pytest.fixture
def make_emulator(graph_tls_dir: Path) -> Iterator[Callable[..., GraphEmulator]]:
    started: list[GraphEmulator] = []

    def make(seed: dict[str, Any] | None = None, **options: Any) -> GraphEmulator:
        emulator = GraphEmulator(Directory.from_seed(seed or school_seed()), tls_dir=graph_tls_dir, **options)
        emulator.register_application(CLIENT_ID, secret=CLIENT_SECRET)
        started.append(emulator.start())
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(make_emulator: Callable[..., GraphEmulator]) -> GraphEmulator:
    return make_emulator()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "state.db")
    yield opened
    opened.close()


def connector_options(emulator: GraphEmulator, **overrides: Any) -> dict[str, Any]:
    assert emulator.certificate is not None
    return {
        "tenant_id": emulator.tenant_id, "client_id": CLIENT_ID, "authority_host": f"127.0.0.1:{emulator.port}",
        "graph_url": emulator.graph_url, "ca_file": str(emulator.certificate.cert),
        "domains": {"staff": STAFF, "pupil": PUPILS}, "group_marker": MARKER, "timeout_seconds": 5,
        "write_limit_per_second": 1000, **overrides,
    }


@pytest.fixture
def make_connector(tmp_path: Path, store: Store) -> Iterator[Callable[..., EntraConnector]]:
    built: list[EntraConnector] = []

    def make(emulator: GraphEmulator, *, secrets: dict[str, str] | None = None, **overrides: Any) -> EntraConnector:
        context = ConnectorContext(
            name="entra", type="entra", options=connector_options(emulator, **overrides),
            source=str(tmp_path / "entra.toml"), cursors=store, state_dir=tmp_path / "sandbox",
            secrets={"entra_client_secret": CLIENT_SECRET} if secrets is None else secrets,
            password_generator=throwaway,
        )
        connector = EntraConnector.from_config(context)
        built.append(connector)
        return connector

    yield make
    for connector in built:
        connector.close()


@pytest.fixture
def entra(emulator: GraphEmulator, make_connector: Callable[..., EntraConnector]) -> EntraConnector:
    return make_connector(emulator)


def starter(person_id: str, username: str, given: str, surname: str, domain: str = PUPILS, **extra: Any) -> Change:
    """The CREATE the planner makes for a new starter."""
    return Change(
        directory="entra", action=Action.CREATE, person_id=person_id, username=username, reason="new pupil on roll",
        after={"username": username, "login": f"{username}@{domain}", "given_name": given, "surname": surname,
               "display_name": f"{given} {surname}", "container": "", "attributes": extra.pop("attributes", {}),
               "enabled": True, "anchor": person_id, "must_change_password": True},
        password=extra.pop("password", PASSWORD), **extra,
    )


def in_order(entra: EntraConnector, changes: list[Change]) -> list[Result]:
    """Applies the changes and lists their Results in the changes' order (apply yields them as they arrive)."""
    arrived = {r.change_id: r for r in entra.apply(changes)}
    return [arrived[c.change_id] for c in changes]


def change(action: Action, target: str | None, **fields: Any) -> Change:
    return Change(directory="entra", action=action, person_id=fields.pop("person_id", None),
                  username=fields.pop("username", "someone"), reason="test", target=target, **fields)


__all__ = [
    "CLIENT_ID", "CLIENT_SECRET", "MARKER", "PASSWORD", "PUPILS", "STAFF", "change", "emulator", "entra",
    "graph_tls_dir", "in_order", "make_connector", "make_emulator", "school_seed", "starter", "store",
]
