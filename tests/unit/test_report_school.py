"""A small school, as plain values, for the access-review tests: people, three directories, a
restricted share, admin roles and a year of audit entries (from a real SQLite store)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from idlifecycle.model import Account, Group, Kind, Person, RoleHolder, Snapshot
from idlifecycle.reports.access_review import ReportOptions, RestrictedAccessRow, ReviewInput, audit_since
from idlifecycle.store import Store

TODAY = date(2026, 7, 20)
INJECTION_NAMES = ('=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tTab", "\rReturn", "=1+1")
"""Surnames a pupil could type into a form, each of which a spreadsheet would run as a formula."""


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def people() -> list[Person]:
    staff = [
        Person("S001", Kind.STAFF, "Ada", "Lovelace", roles=("Teacher",)),
        Person("S002", Kind.STAFF, "Brian", "Cox", leave_date=date(2026, 4, 3)),
        Person("S003", Kind.STAFF, "Carol", "Vorderman", start_date=date(2026, 9, 1)),
        Person("S004", Kind.STAFF, "Dinah", "Craik", roles=("Business manager",)),
    ]
    pupils = [
        Person(f"P{n:03d}", Kind.PUPIL, name, "Smith", year_group="8", registration_group="8B")
        for n, name in enumerate(INJECTION_NAMES, 1)
    ]
    pupils.append(Person("P100", Kind.PUPIL, "Łukasz", "Nowak", preferred_first_name="Luke", year_group="7",
                         registration_group="7A"))
    return staff + pupils


def account(directory: str, key: str, username: str, anchor: str | None, *, enabled: bool = True,
            surname: str = "", **extra: object) -> Account:
    defaults: dict[str, object] = {
        "created": at("2024-09-01T08:00:00"), "last_sign_in": at("2026-07-15T08:30:00"),
        "password_last_set": at("2026-03-01T09:00:00"),
    }
    defaults.update(extra)
    return Account(directory, key, username, f"{username}@school.example", "Given", surname or username,
                   f"Given {surname or username}", anchor, enabled, **defaults)  # type: ignore[arg-type]


def snapshots() -> dict[str, Snapshot]:
    entra_accounts = (
        account("entra", "e-ada", "alovelace", "S001", container=""),
        account("entra", "e-brian", "bcox", "S002"),  # left in April, still enabled
        account("entra", "e-dinah", "dcraik", "S004", password_last_set=at("2025-01-10T09:00:00")),
        account("entra", "e-ghost", "oldtemp", "S999"),  # matches nobody
        account("entra", "e-shared", "reception", None, password_never_expires=True),
        *(account("entra", f"e-p{n}", f"pupil{n}", f"P{n:03d}", surname=name)
          for n, name in enumerate(INJECTION_NAMES, 1)),
    )
    entra_groups = (
        Group("entra", "g-sg", "SG-Safeguarding", {"e-ada": "Ada Lovelace", "e-brian": "Brian Cox"}),
        Group("entra", "g-a3", "Licence - A3 Staff", {"e-ada": "Ada Lovelace", "e-dinah": "Dinah Craik"}),
    )
    google_accounts = (
        account("google", "g-ada", "ada.lovelace", "S001", container="Staff"),
        account("google", "g-luke", "luke.nowak", "P100", container="Pupils/Year 7",
                last_sign_in=at("2026-01-05T10:00:00")),  # idle for months
    )
    ad_accounts = (
        account("ad", "ad-ada", "alovelace", "S001", container="Staff/Teachers"),
        account("ad", "ad-brian", "bcox", "S002", enabled=False, container="Leavers"),
        account("ad", "ad-new", "newstarter", "P100", container="Pupils/Year 7", last_sign_in=None,
                created=at("2026-01-02T10:00:00")),  # never signed in
    )
    ad_groups = (Group("ad", "ad-g-sg", "SG-Safeguarding", {"ad-ada": "Ada Lovelace"}),)
    return {
        "entra": Snapshot("entra", entra_accounts, entra_groups),
        "google": Snapshot("google", google_accounts, ()),
        "ad": Snapshot("ad", ad_accounts, ad_groups),
    }


def role_holders() -> dict[str, list[RoleHolder]]:
    return {
        "entra": [RoleHolder("entra", "Global Administrator", "alovelace", "Ada Lovelace", "S001",
                             second_factor="registered"),
                  RoleHolder("entra", "Global Administrator", "breakglass", "Break Glass", None, second_factor="none")],
        "ad": [RoleHolder("ad", "Domain Admins", "bcox", "Brian Cox", "S002",
                          second_factor="unknown — AD does not record a second factor")],
    }


def restricted() -> list[RestrictedAccessRow]:
    return [
        RestrictedAccessRow("Safeguarding", "entra", "SG-Safeguarding", "e-ada", "alovelace", "Ada Lovelace",
                            "S001", "baseline: DSL role", owner="Dinah Craik", last_reviewed=date(2025, 9, 10)),
        RestrictedAccessRow("Safeguarding", "entra", "SG-Safeguarding", "e-brian", "bcox", "Brian Cox", "S002",
                            "grant", owner="Dinah Craik", approver="Dinah Craik",
                            approved_at=at("2025-10-01T14:05:00"), expires=date(2026, 3, 31)),
        RestrictedAccessRow("Safeguarding", "ad", "SG-Safeguarding", "ad-ada", "alovelace", "Ada Lovelace",
                            "S001", "baseline: DSL role", owner="Dinah Craik", last_reviewed=date(2025, 9, 10)),
    ]


OPTIONS = ReportOptions(
    school_name="Hilltop Academy", siro_name="Dinah Craik", no_sign_in_days=90,
    password_max_age_days={"staff": 365}, licence_groups=frozenset({"Licence - A3 Staff"}),
)


def review_input(tmp_path: Path) -> ReviewInput:
    store = Store(tmp_path / "state.db")
    try:
        store.audit("change.applied", {"directory": "entra", "action": "disable", "username": "bcox",
                                       "person_id": "S002", "reason": "left on 2026-04-03"})
        store.audit("guard.tripped", {"reasons": ["12 disables is over the limit of 10"]})
        store.audit("change.applied", {"directory": "entra", "action": "update", "username": "pupil1",
                                       "reason": '=HYPERLINK("http://x")'})
        entries = store.audit_entries(since=audit_since(TODAY, OPTIONS))
    finally:
        store.close()
    return ReviewInput(TODAY, people(), snapshots(), role_holders(), restricted(), entries, OPTIONS)


def test_the_school_has_a_pupil_for_each_name_that_looks_like_a_formula() -> None:
    names = {p.display_name for p in people()}
    assert {f"{n} Smith" for n in INJECTION_NAMES} <= names
