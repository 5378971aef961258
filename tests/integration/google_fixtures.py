"""A Google Workspace tenant for tests: the emulator on 127.0.0.1, a service account trusted by
it, and GoogleConnectors built from configuration exactly as a job builds them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from idlifecycle.connectors.base import ConnectorContext, build_connector
from idlifecycle.connectors.google import SCOPES, GoogleConnector
from idlifecycle.model import Action, Change
from idlifecycle.passwords.generator import throwaway
from idlifecycle.sandbox.google import GoogleEmulator, generate_service_account

ADMIN = "it.admin@school.example"
DOMAINS = {"staff": "school.example", "pupil": "pupils.school.example"}
ROOT = "/Managed"


class MemoryCursors:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str | None] = {}

    def get_cursor(self, directory: str, name: str) -> str | None:
        return self.values.get((directory, name))

    def set_cursor(self, directory: str, name: str, value: str | None) -> None:
        self.values[(directory, name)] = value


@dataclass
class Tenant:
    emulator: GoogleEmulator
    key: dict[str, str]
    tmp: Path

    def options(self, **overrides: Any) -> dict[str, Any]:
        # A generous quota unless a test is about pacing: most tests are about what gets written.
        return {"admin": ADMIN, "domains": DOMAINS, "org_unit_root": ROOT, "api_endpoint": self.emulator.url,
                "timeout": 10, "quota_per_minute": 600_000, **overrides}

    def connector(self, **overrides: Any) -> GoogleConnector:
        context = ConnectorContext(
            name="google", type="google", options=self.options(**overrides), source="connectors/google.toml",
            cursors=MemoryCursors(), state_dir=self.tmp / "state",
            secrets={"google_service_account": json.dumps(self.key)}, password_generator=throwaway)
        connector = build_connector(context)
        assert isinstance(connector, GoogleConnector)
        return connector

    def user(self, email: str) -> dict[str, Any]:
        user = self.emulator.directory.find_user(email)
        assert user is not None, f"{email} is not in the tenant"
        return user


CLIENT_EMAIL = "idlifecycle@school-idm.iam.gserviceaccount.com"


@pytest.fixture(name="tenant")
def tenant_fixture(tmp_path: Path) -> Iterator[Tenant]:
    """Import `tenant_fixture` into a test module to use the `tenant` fixture."""
    with GoogleEmulator(domains=list(DOMAINS.values())) as emulator:
        key = generate_service_account(tmp_path / "key.json", client_email=CLIENT_EMAIL, token_uri=emulator.token_uri)
        emulator.add_service_account(key, list(SCOPES))
        emulator.directory.add_user(ADMIN, "Ina", "Admin", "correct-horse-battery", admin=True)
        emulator.directory.add_orgunit_path(ROOT)
        yield Tenant(emulator, key, tmp_path)


def starter(person_id: str, username: str, *, year: str = "7", password: str | None = None,
            domain: str = "pupils.school.example", **after: Any) -> Change:
    """The CREATE the planner makes for a new pupil."""
    first, _, last = username.partition(".")
    return Change(
        directory="google", action=Action.CREATE, person_id=person_id, username=username,
        reason="joined Year " + year,
        after={"username": username, "login": f"{username}@{domain}", "given_name": first.title(),
               "surname": last.title(), "display_name": f"{first.title()} {last.title()}",
               "container": f"Pupils/Year {year}", "attributes": {}, "enabled": True, "anchor": person_id,
               "must_change_password": False, **after},
        password=password)


def change(action: Action, target: str, username: str = "", **kwargs: Any) -> Change:
    return Change(directory="google", action=action, person_id=kwargs.pop("person_id", None), username=username,
                  reason=kwargs.pop("reason", "test"), target=target, **kwargs)
