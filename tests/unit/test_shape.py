"""The guards on the shape of a feed and a plan: lost columns, lost zeros, lost groups, too many removals."""

from dataclasses import dataclass, field
from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from idlifecycle.guards import GuardLimits
from idlifecycle.model import Action, Change
from idlifecycle.naming import year_label
from idlifecycle.shape import (
    change_reasons,
    column_problems,
    feed_shape,
    in_rollover,
    lost_leading_zeros,
    shape_reasons,
)
from tests.factories import TODAY, pupil, school_rules, staff

RULES = school_rules()
LIMITS = GuardLimits()


@dataclass(frozen=True)
class Columns:
    file: str
    kind: str | None
    mapping: dict[str, str]
    absent: tuple[str, ...] = ()
    format: str = "mis-csv"
    ignored: tuple[str, ...] = field(default=())
    feed: str = ""


PUPIL_COLUMNS = {"person_id": "Adno", "legal_first_name": "Forename", "last_name": "Surname", "year_group": "Year",
                 "registration_group": "Reg", "leave_date": "Leaving Date", "upn": "UPN"}


def test_a_column_the_mapping_needs_is_required_unless_declared_absent():
    without_reg = {k: v for k, v in PUPIL_COLUMNS.items() if k != "registration_group"}
    problems = column_problems([Columns("pupils.csv", "pupil", without_reg)], RULES, None)
    assert len(problems) == 1
    assert problems[0].startswith("pupils.csv: no column for registration_group, which the mapping needs")
    assert 'absent = ["registration_group"]' in problems[0]
    assert column_problems([Columns("pupils.csv", "pupil", without_reg, ("registration_group",))], RULES, None) == []


def test_the_leaving_date_is_needed_for_staff_and_pupils():
    staff_columns = {"person_id": "Staff Code", "legal_first_name": "Forename", "last_name": "Surname",
                     "roles": "Role"}
    [problem] = column_problems([Columns("staff.csv", "staff", staff_columns)], RULES, None)
    assert "no column for leave_date" in problem


def test_a_column_read_on_the_last_good_run_and_missing_now_is_named():
    without_upn = {k: v for k, v in PUPIL_COLUMNS.items() if k != "upn"}
    [problem] = column_problems([Columns("pupils.csv", "pupil", without_upn)], RULES,
                                {"pupils.csv": sorted(PUPIL_COLUMNS)})
    assert "the column for upn was read on the last good run and is missing now" in problem
    assert column_problems([Columns("pupils.csv", "pupil", PUPIL_COLUMNS)], RULES,
                           {"pupils.csv": sorted(PUPIL_COLUMNS)}) == []


def test_leading_zeros_lost_by_a_spreadsheet_are_found():
    known = {"000231", "000232", "HCA"}
    assert lost_leading_zeros(["231", "232", "HCA"], known) == [("000231", "231"), ("000232", "232")]
    # A school may really have both 231 and 000231; an id the feed carries in full is not a loss.
    assert lost_leading_zeros(["231", "000231"], {"000231", "231"}) == []
    assert lost_leading_zeros(["000231", "000232"], known) == []


def _shape(people, today=TODAY):
    return feed_shape(people, RULES, today)


def test_a_year_group_that_vanished_stops_the_run_and_says_why():
    before = _shape([pupil(f"{i}", "A", "B", year="11", reg="11A") for i in range(30)]
                    + [pupil(f"x{i}", "A", "B", year="7", reg="7A") for i in range(30)]).to_json()
    now = _shape([pupil(f"x{i}", "A", "B", year="7", reg="7A") for i in range(30)])
    reasons = shape_reasons(before, now, LIMITS, TODAY)
    assert ("year group Year 11: 30 on the last good run, none now (0 reached their leaving date, 30 are missing "
            "from the feed)") in reasons[0]
    assert any(r.startswith("registration group 11A: 30 on the last good run, none now") for r in reasons)
    assert shape_reasons(before, now, LIMITS, TODAY, allowed=30) == []


def test_july_leavers_are_named_as_leavers_and_stop_the_run_until_allowed():
    leaving = TODAY - timedelta(days=1)
    people = [pupil(f"{i}", "A", "B", year="6", reg="6A", leave_date=leaving) for i in range(25)]
    before = _shape([pupil(f"{i}", "A", "B", year="6", reg="6A") for i in range(25)]).to_json()
    reasons = shape_reasons(before, _shape(people), LIMITS, TODAY)
    assert "25 reached their leaving date, 0 are missing from the feed" in reasons[0]


def test_a_small_group_may_lose_a_few_and_a_large_one_may_not_lose_most():
    before = {"year_group": {"7": 30}, "registration_group": {"7A": 2}, "role": {}}
    small = _shape([pupil(f"{i}", "A", "B", year="7", reg="7B") for i in range(28)])
    assert shape_reasons(before, small, LIMITS, TODAY) == []  # 7A had 2: under the floor of 3
    most = _shape([pupil(f"{i}", "A", "B", year="7", reg="7B") for i in range(10)])
    assert shape_reasons(before, most, LIMITS, TODAY)[0].startswith(
        "year group Year 7: 30 on the last good run, 10 now (67% fewer)")


def test_a_staff_role_that_vanished_stops_the_run():
    before = _shape([staff(f"T{i}", "A", "B", role="Teacher") for i in range(12)]).to_json()
    now = _shape([staff(f"T{i}", "A", "B", role="") for i in range(12)])
    assert shape_reasons(before, now, LIMITS, TODAY)[0].startswith("staff role Teacher: 12 on the last good run")


def test_registration_groups_are_renamed_at_the_rollover_without_stopping_it():
    september = date(2027, 9, 2)
    before = {"year_group": {"7": 20}, "registration_group": {"7A": 20}, "role": {}}
    now = _shape([pupil(f"{i}", "A", "B", year="7", reg="7 Oak") for i in range(20)], september)
    assert in_rollover(september, LIMITS) and not in_rollover(TODAY, LIMITS)
    assert shape_reasons(before, now, LIMITS, september) == []
    assert shape_reasons(before, now, LIMITS, TODAY)


def _removal(target: str, group: str, directory: str = "ad") -> Change:
    return Change(directory, Action.REMOVE_MEMBER, target, target, f"no longer belongs in {group}", target=target,
                  group=group)


def test_removing_most_of_a_group_stops_the_run_naming_the_group():
    changes = [_removal(f"k{i}", "Reg 7A") for i in range(20)]
    reasons = change_reasons(changes, {("ad", "Reg 7A"): 25}, {"ad": 300}, LIMITS, TODAY, first_run=False)
    assert reasons[0] == ("ad: 20 of the 25 members of Reg 7A would be removed (80%, over the limit of 25%); "
                          "review the plan, then rerun with --allow-destructive 20")
    assert change_reasons(changes, {("ad", "Reg 7A"): 25}, {"ad": 300}, LIMITS, TODAY, first_run=False,
                          allowed=20) == []
    assert change_reasons(changes, {("ad", "Reg 7A"): 25}, {"ad": 300}, LIMITS, date(2027, 9, 1),
                          first_run=False) == []


def test_leavers_removed_from_their_groups_count_per_group_but_not_per_directory():
    changes = []
    for i in range(60):
        group = f"Reg {i % 10}"
        changes += [Change("ad", Action.DISABLE, f"k{i}", f"k{i}", "left", target=f"k{i}"), _removal(f"k{i}", group)]
    sizes = {("ad", f"Reg {i}"): 30 for i in range(10)}
    assert change_reasons(changes, sizes, {"ad": 300}, LIMITS, TODAY, first_run=False) == []
    staying = [_removal(f"s{i}", f"Club {i}") for i in range(60)]
    [reason] = change_reasons(staying, {}, {"ad": 300}, LIMITS, TODAY, first_run=False)
    assert reason.startswith("ad: 60 group memberships of people who are not leaving would be removed")


def test_one_attribute_changed_for_a_large_share_of_accounts_stops_the_run_outside_the_rollover():
    changes = [Change("entra", Action.UPDATE, f"p{i}", f"u{i}", "department: Year 7 -> Year 8", target=f"k{i}",
                      before={"attributes": {"department": "Year 7"}},
                      after={"attributes": {"department": "Year 8"}}) for i in range(40)]
    [reason] = change_reasons(changes, {}, {"entra": 100}, LIMITS, TODAY, first_run=False)
    assert reason.startswith("entra: department would change for 40 of 100 accounts (40%")
    assert change_reasons(changes, {}, {"entra": 100}, LIMITS, date(2026, 8, 25), first_run=False) == []
    # The first run adopts a directory nobody kept in step: adoption, not a bad export.
    assert change_reasons(changes, {}, {"entra": 100}, LIMITS, TODAY, first_run=True) == []
    removals = [_removal(f"k{i}", "Reg 7A") for i in range(20)]
    assert change_reasons(removals, {("ad", "Reg 7A"): 25}, {"ad": 300}, LIMITS, TODAY, first_run=True) == []
    filling = [Change("entra", Action.UPDATE, f"p{i}", f"u{i}", "r", target=f"k{i}", before={"attributes": {}},
                      after={"attributes": {"department": "Year 8"}}) for i in range(40)]
    assert change_reasons(filling, {}, {"entra": 100}, LIMITS, TODAY, first_run=False) == []


@given(years=st.sampled_from([["R", "1", "2", "3", "4", "5", "6"], ["7", "8", "9", "10", "11"],
                              ["7", "8", "9", "10", "11", "12", "13"]]),
       size=st.integers(min_value=3, max_value=400), data=st.data())
def test_a_whole_year_group_missing_stops_a_school_of_any_size(years, size, data):
    """The README's promise: from a school of 150 to one of 2,000, a lost year group is never applied."""
    lost = data.draw(st.sampled_from(years))
    school = [pupil(f"{year}-{i}", "A", "B", year=year, reg=f"{year}A") for year in years for i in range(size)]
    before = feed_shape(school, RULES, TODAY).to_json()
    now = feed_shape([p for p in school if p.year_group != lost], RULES, TODAY)
    reasons = shape_reasons(before, now, LIMITS, TODAY)
    assert reasons and reasons[0].startswith(f"year group {year_label(lost)}: {size} on the last good run, none now")
    assert shape_reasons(before, now, LIMITS, TODAY, allowed=size) == []


# A feed of several files: SDS v2.1 keeps names in users.csv and the year group, role and leaving date
# in roles.csv, so the fields the mapping needs are the feed's, not each file's.

def test_a_field_one_of_a_feeds_files_has_is_the_feeds():
    users = Columns("sds/users.csv", None, {"person_id": "sourcedId", "legal_first_name": "givenName"}, feed="sds")
    roles = Columns("sds/roles.csv", None, {"person_id": "userSourcedId", "year_group": "grade", "roles": "role",
                                            "leave_date": "roleEndDate", "registration_group": "homeroom"},
                    feed="sds")
    assert column_problems([users, roles], RULES, None) == []


def test_a_field_none_of_a_feeds_files_has_is_named_once_for_the_feed_and_its_files():
    users = Columns("sds/users.csv", None, {"person_id": "sourcedId"}, feed="sds")
    roles = Columns("sds/roles.csv", None, {"person_id": "userSourcedId", "year_group": "grade", "roles": "role",
                                            "leave_date": "roleEndDate"}, feed="sds")
    [problem] = column_problems([users, roles], RULES, None)
    assert problem.startswith("sds (users.csv, roles.csv): no column for registration_group, which the mapping "
                              "needs for pupil accounts")
    declared = [Columns(c.file, None, c.mapping, ("registration_group",), feed="sds") for c in (users, roles)]
    assert column_problems(declared, RULES, None) == []


def test_two_feeds_are_checked_apart_even_when_one_has_the_field():
    pupils = Columns("pupils.csv", "pupil", {"person_id": "Adno", "year_group": "Year", "leave_date": "Leaving",
                                             "registration_group": "Reg"}, feed="pupils.csv")
    others = Columns("more.csv", "pupil", {"person_id": "Adno", "year_group": "Year", "leave_date": "Leaving"},
                     feed="more.csv")
    [problem] = column_problems([pupils, others], RULES, None)
    assert problem.startswith("more.csv: no column for registration_group")
