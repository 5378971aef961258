"""The password audit: old passwords, never-expires flags, accounts nobody has signed in to."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from idlifecycle.model import Account, Kind, Person, Snapshot
from idlifecycle.passwords.audit import Finding, format_table, password_audit
from idlifecycle.passwords.settings import parse_settings

TODAY = date(2027, 3, 1)
SETTINGS = parse_settings({"staff": {"max_age_days": 120}, "pupil": {"max_age_days": 365}},
                          source="passwords.toml", base_dir=Path("/tmp"))
PEOPLE = {"S1": Person("S1", Kind.STAFF, "Dan", "Evans"), "P1": Person("P1", Kind.PUPIL, "Amy", "Li")}
SIGNED_IN = datetime(2027, 2, 1, tzinfo=UTC)


def account(username: str, anchor: str | None, **extra: Any) -> Account:
    values: dict[str, Any] = {"last_sign_in": SIGNED_IN, **extra}
    return Account("ad", f"k-{username}", username, f"{username}@x", "", "", username.title(), anchor, True, **values)


def test_staff_password_older_than_120_days_is_listed_but_a_pupils_is_not() -> None:
    old = datetime(2026, 10, 1, tzinfo=UTC)
    snap = Snapshot("ad", (account("devans", "S1", password_last_set=old),
                           account("ali", "P1", password_last_set=old)), ())
    assert password_audit(SETTINGS, {"ad": snap}, PEOPLE, TODAY) == [
        Finding("ad", "devans", "Devans", "password is 151 days old (the policy allows 120)")]


def test_never_expires_and_never_signed_in_are_listed_for_enabled_accounts_only() -> None:
    snap = Snapshot("ad", (
        account("ali", "P1", password_never_expires=True),
        account("new1", None, last_sign_in=None, created=datetime(2026, 9, 1, tzinfo=UTC)),
        account("hybrid", "S1", last_sign_in=None, synced_from_on_premises=True),
        Account("ad", "k-off", "off", "off@x", "", "", "Off", "S1", False, password_never_expires=True),
    ), ())
    findings = password_audit(SETTINGS, {"ad": snap}, PEOPLE, TODAY)
    assert [(f.username, f.finding) for f in findings] == [
        ("ali", "password never expires"), ("new1", "never signed in (created 01/09/2026)")]
    table = format_table(findings).splitlines()
    assert table[0].split() == ["DIRECTORY", "USERNAME", "NAME", "FINDING"]
    assert table[1].split(maxsplit=3) == ["ad", "ali", "Ali", "password never expires"]
    assert table[-1] == "2 findings."
