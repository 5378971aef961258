"""People outside the MIS: the file's checks, the merge into the feed, the append, the mapping's rules for
them and the access review's lines for them (pure parts; the CLI and a night are in
tests/integration/test_extra_people_job.py)."""

from __future__ import annotations

import stat
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from idlifecycle import extra_people
from idlifecycle.config import load_mapping
from idlifecycle.errors import ConfigError, UserError
from idlifecycle.mapping import DesiredAccounts, Status, status
from idlifecycle.model import Action, Kind, Snapshot
from idlifecycle.naming import base_username
from idlifecycle.planner import PlanState, plan
from idlifecycle.reports.access_review import ExceptionKind, ReviewInput, _people_and_accounts, find_exceptions
from tests.factories import AD_LIKE, ENTRA_LIKE, ROOT, account, school_rules, staff
from tests.unit.test_report_school import OPTIONS

RULES = school_rules()
ENTRY = """
[[person]]
id = "X-0A1B2C3D"
kind = "supply"
first = "Rose"
last = "Tyler"
sponsor = "S001"
start = 2026-09-07
end = 2026-10-23
"""


def rose(**changes: object) -> extra_people.ExtraPerson:
    values: dict[str, object] = {"person_id": "X-0A1B2C3D", "kind": "supply", "first": "Rose", "last": "Tyler",
                                 "sponsor": "S001", "start": date(2026, 9, 7), "end": date(2026, 10, 23)}
    return extra_people.ExtraPerson(**{**values, **changes})  # type: ignore[arg-type]


def test_an_end_date_is_required_and_held_to_the_kinds_maximum() -> None:
    with pytest.raises(UserError, match="an end date is required for a supply"):
        extra_people.check_dates("supply", date(2026, 9, 7), None, RULES)
    with pytest.raises(UserError, match="at most 95 days"):
        extra_people.check_dates("supply", date(2026, 9, 7), date(2026, 12, 12), RULES)
    with pytest.raises(UserError, match="before the start"):
        extra_people.check_dates("supply", date(2026, 9, 7), date(2026, 9, 6), RULES)
    with pytest.raises(UserError, match="unknown kind of extra person 'caterer'; known kinds: governor, supply"):
        extra_people.check_dates("caterer", date(2026, 9, 7), date(2026, 9, 8), RULES)
    extra_people.check_dates("supply", date(2026, 9, 7), date(2026, 12, 11), RULES)  # 95 days: the maximum itself


def test_the_sponsor_is_current_staff_on_the_feed() -> None:
    feed = [staff("S001", "Ada", "Lovelace"), staff("S002", "Bea", "Cox", leave_date=date(2026, 7, 20))]
    extra_people.check_sponsor("S001", feed, RULES, date(2026, 9, 1))
    with pytest.raises(UserError, match="sponsor S002 has left"):
        extra_people.check_sponsor("S002", feed, RULES, date(2026, 9, 1))
    with pytest.raises(UserError, match="not on the staff feed"):
        extra_people.check_sponsor("S999", feed, RULES, date(2026, 9, 1))


def test_the_file_is_read_into_checked_entries_and_a_bad_one_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "extra-people.toml"
    assert extra_people.read_extra_people(path, RULES) == []
    path.write_text(ENTRY, encoding="utf-8")
    [entry] = extra_people.read_extra_people(path, RULES)
    assert (entry.person_id, entry.kind, entry.sponsor, entry.end) == ("X-0A1B2C3D", "supply", "S001",
                                                                      date(2026, 10, 23))
    path.write_text(ENTRY.replace("end = 2026-10-23\n", ""), encoding="utf-8")
    with pytest.raises(UserError, match=r"person 1: an end date is required"):
        extra_people.read_extra_people(path, RULES)
    path.write_text(ENTRY.replace('"X-0A1B2C3D"', '"000201"'), encoding="utf-8")
    with pytest.raises(UserError, match="is not an extra person's id"):
        extra_people.read_extra_people(path, RULES)
    path.write_text(ENTRY + ENTRY, encoding="utf-8")
    with pytest.raises(UserError, match="X-0A1B2C3D is given to two people"):
        extra_people.read_extra_people(path, RULES)
    # Past the maximum (a hand edit): still read and still ending on its end date; the review flags it.
    path.write_text(ENTRY.replace("end = 2026-10-23", "end = 2027-08-31"), encoding="utf-8")
    assert extra_people.read_extra_people(path, RULES)[0].end == date(2027, 8, 31)


def test_merged_people_carry_their_kind_sponsor_and_end_date_and_an_id_clash_stops_the_run() -> None:
    feed = (staff("S001", "Ada", "Lovelace"),)
    merged = extra_people.merge(feed, [rose()], RULES)
    person = merged[-1]
    assert (person.kind, person.extra_kind, person.sponsor, person.leave_date) == (
        Kind.STAFF, "supply", "S001", date(2026, 10, 23))
    assert status(person, RULES.for_person(person), date(2026, 10, 22)) is Status.ACTIVE
    assert status(person, RULES.for_person(person), date(2026, 10, 23)) is Status.LEFT
    with pytest.raises(UserError, match="same id as someone in the MIS feed"):
        extra_people.merge((staff("X-0A1B2C3D", "Ada", "Lovelace"),), [rose()], RULES)


def test_the_extra_kinds_rules_give_the_account_its_ou_groups_and_licence() -> None:
    person = extra_people.merge((), [rose()], RULES)[0]
    desired = DesiredAccounts(RULES).account(person, "rtyler", "entra", ENTRA_LIKE)
    assert desired.groups == {"All Staff", "Supply Staff", "Licence - Microsoft 365 A3 Faculty"}
    assert desired.attributes == {"jobTitle": "Supply Teacher", "employeeType": "supply"}
    assert desired.login == "rtyler@staff.example.sch.uk"
    teacher = DesiredAccounts(RULES).account(staff("S001", "Ada", "Lovelace"), "alovelace", "entra", ENTRA_LIKE)
    assert "Supply Staff" not in teacher.groups
    assert base_username(person, RULES.naming, date(2026, 9, 7)) == "rtyler"


def test_an_extra_kind_on_a_base_kind_the_mapping_lacks_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "mappings" / "school.toml").read_text(encoding="utf-8")
    path = tmp_path / "mapping.toml"
    # The school's mapping up to its [staff] table (pupils only), and an extra kind built on staff.
    pupils_only = text.split("[staff]")[0]
    path.write_text(pupils_only + '\n[extra.x]\nusername = "{surname}"\ndomain = "d"\nmax_days = 1\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"extra\.x\.base"):
        load_mapping([path])


def test_an_entry_is_appended_keeping_the_files_comments_in_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "extra-people.toml"
    path.write_text("# governors added by the clerk\n", encoding="utf-8")
    extra_people.append(path, rose(last='Tyler "Bad Wolf"'), datetime(2026, 9, 1, 8, 0, tzinfo=UTC))
    extra_people.append(path, rose(person_id="X-00000001"), datetime(2026, 9, 1, 8, 0, tzinfo=UTC))
    assert path.read_text(encoding="utf-8").startswith("# governors added by the clerk\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    read = extra_people.read_extra_people(path, RULES)
    assert [(p.person_id, p.last) for p in read] == [("X-0A1B2C3D", 'Tyler "Bad Wolf"'), ("X-00000001", "Tyler")]
    assert extra_people.new_id(["X-0A1B2C3D"]).startswith("X-")


def test_the_review_lists_an_extra_person_with_kind_sponsor_and_end_and_flags_one_past_the_maximum() -> None:
    within = extra_people.merge((), [rose()], RULES)[0]
    beyond = extra_people.merge((), [rose(person_id="X-00000002", last="Noble", end=date(2027, 8, 31))], RULES)[0]
    accounts = (account("k1", "rtyler", anchor=within.person_id, directory="entra"),
                account("k2", "dnoble", anchor=beyond.person_id, directory="entra"))
    data = ReviewInput(date(2026, 10, 1), [within, beyond], {"entra": Snapshot("entra", accounts, ())}, {}, (), (),
                       OPTIONS, extra_max_days={"supply": 95})
    flagged = [e for e in find_exceptions(data) if e.kind is ExceptionKind.EXTRA_PAST_MAXIMUM]
    assert [e.account.username for e in flagged] == ["dnoble"]
    assert "358 days, over the 95 a supply may have (sponsor S001)" in flagged[0].detail
    rows = {row[0]: row for row in _people_and_accounts(data).tables[0].rows}
    assert rows[within.person_id][2] == "supply"
    assert rows[within.person_id][5] == "Current; outside the MIS, sponsor S001, ends 23/10/2026"


def test_an_ended_extra_person_leaves_by_their_kinds_rules_not_their_base_kinds() -> None:
    supply = replace(RULES.extra["supply"], leavers_container="Leavers/Supply", retention_days=30)
    rules = replace(RULES, extra={**RULES.extra, "supply": supply})
    person = extra_people.merge((), [rose()], rules)[0]
    acct = account("k1", "rtyler", anchor=person.person_id, container="Staff/Supply", domain="staff.example.sch.uk")
    ended = plan([person], {"ad": Snapshot("ad", (acct,), ())}, {"ad": AD_LIKE}, rules, PlanState(),
                 date(2026, 10, 23))
    assert [(c.action, c.after.get("container")) for c in ended.changes] == [
        (Action.DISABLE, None), (Action.MOVE, "Leavers/Supply")]
    disabled = replace(acct, enabled=False, container="Leavers/Supply")
    late = plan([person], {"ad": Snapshot("ad", (disabled,), ())}, {"ad": AD_LIKE}, rules,
                PlanState(disabled_on={("ad", person.person_id): date(2026, 10, 23)}), date(2026, 11, 23))
    assert [c.action for c in late.changes] == [Action.DELETE]
    assert "30-day retention ended" in late.changes[0].reason
