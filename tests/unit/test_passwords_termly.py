"""The termly change: due from the first day of term until done, for the kinds configured only."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from idlifecycle.model import Account, Action, Kind, Person, Snapshot
from idlifecycle.passwords.settings import PasswordSettings, parse_settings
from idlifecycle.passwords.termly import DDL, due_term, plan_termly
from idlifecycle.store import Store

STAFF = Person("S1", Kind.STAFF, "Dan", "Evans")
YEAR_9 = Person("P9", Kind.PUPIL, "Ola", "Nowak", year_group="9")
YEAR_1 = Person("P1", Kind.PUPIL, "Amy", "Li", year_group="1")
PEOPLE = {p.person_id: p for p in (STAFF, YEAR_9, YEAR_1)}


def settings(tmp_path: Path) -> PasswordSettings:
    data: dict[str, Any] = {
        "terms": [{"name": "Autumn", "starts": date(2026, 9, 3)}, {"name": "Spring", "starts": date(2027, 1, 5)}],
        "catch_up_days": 7,
        "staff": {"termly_change": True},
        "pupil": {"termly_change": False, "bands": {"7-13": {"termly_change": True}}},
    }
    return parse_settings(data, source="passwords.toml", base_dir=tmp_path)


def account(person_id: str, username: str, **extra: Any) -> Account:
    return Account("ad", f"key-{username}", username, f"{username}@x", "", "", username, person_id, True, **extra)


SPRING = settings(Path("/tmp")).terms[1]


def test_spring_term_flags_staff_and_year_9_but_not_year_1() -> None:
    snap = Snapshot("ad", (account("S1", "devans"), account("P9", "onowak"), account("P1", "ali")), ())
    changes = plan_termly(settings(Path("/tmp")), SPRING, {"ad": snap}, PEOPLE, frozenset())
    assert [(c.action, c.username, c.target, c.person_id) for c in changes] == [
        (Action.REQUIRE_PASSWORD_CHANGE, "devans", "key-devans", "S1"),
        (Action.REQUIRE_PASSWORD_CHANGE, "onowak", "key-onowak", "P9"),
    ]
    assert changes[0].reason == "termly password change (Spring term starts 05/01/2027)"


def test_never_expires_is_cleared_for_every_managed_account() -> None:
    snap = Snapshot("ad", (account("P1", "ali", password_never_expires=True),), ())
    [change] = plan_termly(settings(Path("/tmp")), SPRING, {"ad": snap}, PEOPLE, frozenset())
    assert change.action is Action.UPDATE and change.after == {"password_never_expires": False}


def test_disabled_hybrid_already_flagged_and_unknown_accounts_are_left_alone() -> None:
    snap = Snapshot("entra", (
        account("S1", "devans", synced_from_on_premises=True),
        account("P9", "onowak", must_change_password=True),
        Account("entra", "k3", "gone", "gone@x", "", "", "", "P404", True),
        Account("entra", "k4", "left", "left@x", "", "", "", "S1", False),
    ), ())
    assert plan_termly(settings(Path("/tmp")), SPRING, {"entra": snap}, PEOPLE, frozenset()) == []
    snap = Snapshot("ad", (account("S1", "devans"),), ())
    assert plan_termly(settings(Path("/tmp")), SPRING, {"ad": snap}, PEOPLE, frozenset({("ad", "key-devans")})) == []


def test_change_is_due_from_the_first_day_until_done_within_the_catch_up_days(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    policy = settings(tmp_path)
    assert due_term(policy, store, date(2027, 1, 4)) is None  # the Autumn term's window closed long ago
    assert due_term(policy, store, date(2027, 1, 5)) == SPRING
    assert due_term(policy, store, date(2027, 1, 12)) == SPRING  # the first nights were missed
    assert due_term(policy, store, date(2027, 1, 13)) is None
    store.ensure_schema(DDL)
    store.db.execute("INSERT INTO password_terms_done VALUES ('2027-01-05', 'Spring', 'now')")
    assert due_term(policy, store, date(2027, 1, 6)) is None
