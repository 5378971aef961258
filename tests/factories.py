"""Small builders for people, accounts and the example school's rules, shared by the unit tests."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from idlifecycle.config import load_mapping
from idlifecycle.connectors.base import Capabilities
from idlifecycle.mapping import MappingRules
from idlifecycle.model import Account, Kind, Person

ROOT = Path(__file__).resolve().parent.parent
TODAY = date(2026, 11, 23)
AD_LIKE = Capabilities(containers=True, max_username_length=20)
ENTRA_LIKE = Capabilities(containers=False, licence_groups=True, hybrid=True)


def school_rules() -> MappingRules:
    return load_mapping([ROOT / "mappings" / "school.toml"])


def pupil(pid: str, first: str, last: str, year: str = "7", reg: str | None = "7A", **kw: object) -> Person:
    return Person(pid, Kind.PUPIL, first, last, year_group=year, registration_group=reg, **kw)  # type: ignore[arg-type]


def staff(pid: str, first: str, last: str, role: str = "Teacher", **kw: object) -> Person:
    return Person(pid, Kind.STAFF, first, last, roles=(role,), **kw)  # type: ignore[arg-type]


def account(key: str, username: str, *, anchor: str | None, directory: str = "ad", enabled: bool = True,
            container: str = "Pupils/Year 7", domain: str = "pupils.example.sch.uk", given: str = "A",
            surname: str = "B", display: str | None = None, **kw: object) -> Account:
    return Account(directory, key, username, f"{username}@{domain}", given, surname, display or f"{given} {surname}",
                   anchor, enabled, container, **kw)  # type: ignore[arg-type]
