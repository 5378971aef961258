"""The feed API the sync uses: several feeds as one, the bad-row threshold, the check report."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

import idlifecycle.sandbox
from idlifecycle.errors import ConfigError, FeedError
from idlifecycle.feeds import (
    FeedColumns,
    FeedResult,
    FeedSpec,
    check_bad_rows,
    format_report,
    read_feed,
    read_feeds,
)
from idlifecycle.model import Kind, Person, RowError

SAMPLE = Path(idlifecycle.sandbox.__file__).parent / "sample_school"
TODAY = date(2026, 11, 23)


def mis(path: Path, **options: object) -> FeedSpec:
    return FeedSpec("mis-csv", path, options, "jobs/nightly.toml")


def pupils_file(tmp_path: Path, good: int, bad: int) -> Path:
    """A pupil export with `good` clean rows and `bad` rows whose year group is unknown."""
    lines = ["Adno,Forename,Surname,Year"]
    lines += [f"{n:06d},Ann,Lee{n},Year 7" for n in range(good)]
    lines += [f"{good + n:06d},Bob,Ray{n},Year 99" for n in range(bad)]
    path = tmp_path / f"pupils_{good}_{bad}.csv"
    path.write_text("\r\n".join(lines) + "\r\n")
    return path


def test_pupils_and_staff_feeds_read_as_one_school():
    result = read_feeds([mis(SAMPLE / "pupils.csv"), mis(SAMPLE / "staff.csv")])
    assert result.errors == ()
    assert result.rows == 353
    assert sum(p.kind is Kind.PUPIL for p in result.people) == 313
    assert sum(p.kind is Kind.STAFF for p in result.people) == 40


def test_sample_school_has_the_leavers_starters_and_name_clashes_the_demo_relies_on():
    people = read_feeds([mis(SAMPLE / "pupils.csv"), mis(SAMPLE / "staff.csv")]).people
    leavers = sorted(p.person_id for p in people if p.leave_date and p.leave_date <= TODAY)
    starters = sorted(p.person_id for p in people if p.start_date and p.start_date > TODAY)
    assert leavers == ["000401", "000402", "000403", "000404", "000405", "000406", "000407", "000408", "DPR"]
    assert starters == ["000409", "000410", "000411", "000412", "000413", "RLL"]
    names = [(p.first_name, p.last_name) for p in people]
    assert names.count(("James", "Smith")) == 2
    assert {("Jon", "Smith"), ("John", "Smith"), ("Zoë", "Adams"), ("Zoe", "Adams"), ("Łukasz", "Kowalski"),
            ("An", "Nguyễn"), ("Aoife", "O'Brien"), ("Daan", "van der Berg"), ("Siân", "Williams")} <= set(names)
    assert {p.year_group for p in people if p.kind is Kind.PUPIL} == {"R", *(str(n) for n in range(1, 12))}
    assert all(p.upn for p in people if p.kind is Kind.PUPIL)


def test_the_same_id_in_the_pupil_and_the_staff_feed_is_refused_in_both(tmp_path):
    pupils = tmp_path / "pupils.csv"
    pupils.write_text("Adno,Forename,Surname,Year\nAB1,Ann,Lee,7\nAB2,Cy,Oak,8\n")
    staff = tmp_path / "staff.csv"
    staff.write_text("Staff Code,Forename,Surname,Role\nAB1,Bob,Ray,Teacher\n")
    result = read_feeds([mis(pupils), mis(staff)])
    assert [p.person_id for p in result.people] == ["AB2"]
    assert [str(e) for e in result.errors] == [
        f"{pupils}:2: person_id: duplicate id 'AB1', also at {staff}:2",
        f"{staff}:2: person_id: duplicate id 'AB1', also at {pupils}:2",
    ]


def test_two_bad_rows_in_a_hundred_pass_the_two_percent_threshold(tmp_path):
    result = read_feed(mis(pupils_file(tmp_path, 98, 2)))
    assert len(result.people) == 98
    check_bad_rows(result, 2.0)


def test_three_bad_rows_in_a_hundred_stop_the_run(tmp_path):
    path = pupils_file(tmp_path, 97, 3)
    result = read_feed(mis(path))
    with pytest.raises(FeedError) as caught:
        check_bad_rows(result, 2.0)
    assert str(caught.value) == (
        "3 of 100 feed rows (3.0 %) have errors, more than the 2 % allowed (max_bad_percent); first: "
        f"{path}:99: Year: unknown year group 'Year 99'; expected N1, N2, R or 1 to 14 (e.g. 'Year 7', 'Y7', 'R'); "
        "see `idlifecycle feed check` for the full list and fix the export"
    )


def test_threshold_just_under_and_just_over_with_a_larger_school(tmp_path):
    check_bad_rows(read_feed(mis(pupils_file(tmp_path, 981, 19))), 2.0)  # 1.9 %
    with pytest.raises(FeedError):
        check_bad_rows(read_feed(mis(pupils_file(tmp_path, 979, 21))), 2.0)  # 2.1 %


def test_feed_check_report_lists_every_error_then_a_summary():
    result = FeedResult(
        people=(),
        errors=(RowError("pupils.csv", 4, "UPN", "bad"), RowError("pupils.csv", 4, "Year", "bad too")),
        rows=1,
    )
    assert format_report(result) == (
        "pupils.csv:4: UPN: bad\n"
        "pupils.csv:4: Year: bad too\n"
        "1 row read: 0 pupils, 0 staff; 2 errors in 1 row (100.0 %)"
    )
    sample = read_feeds([mis(SAMPLE / "pupils.csv"), mis(SAMPLE / "staff.csv")])
    assert format_report(sample).splitlines()[-1] == "353 rows read: 313 pupils, 40 staff; 0 errors in 0 rows (0.0 %)"


def test_feed_check_report_shows_the_columns_read_who_is_on_roll_and_who_is_not_provisioned():
    people = (
        Person("1", Kind.PUPIL, "Ann", "Lee", year_group="R"),
        Person("2", Kind.PUPIL, "Bob", "Ray", year_group="10"),
        Person("3", Kind.PUPIL, "Cy", "Oak", year_group="R"),
        Person("S1", Kind.STAFF, "Di", "Fox", roles=("Teacher", "SENCo")),
        Person("S2", Kind.STAFF, "Ed", "Ash", roles=("Teacher",)),
    )
    columns = (
        FeedColumns("users.csv", "sds-v2", None, {"person_id": "sourcedId", "last_name": "familyName"},
                    ("password", "sms"), ("leave_date",)),
        FeedColumns("pupils.csv", "mis-csv", "pupil", {"person_id": "Adno"}),
    )
    result = FeedResult(people, (RowError("users.csv", 9, "username", "bad", "P9"),), 6, columns,
                        {"guardian": 3, "no role": 1})
    assert format_report(result) == "\n".join([
        "users.csv (sds-v2):",
        "  sourcedId -> person_id",
        "  familyName -> last_name",
        "  ignored: password, sms",
        "  absent: leave_date",
        "pupils.csv (mis-csv, pupils):",
        "  Adno -> person_id",
        "pupils: 3",
        "  Reception: 2",
        "  Year 10: 1",
        "staff: 2",
        "  Teacher: 2",
        "  SENCo: 1",
        "not provisioned: 3 guardians, 1 with no role",
        "users.csv:9: username: bad",
        "6 rows read: 3 pupils, 2 staff; 1 error in 1 row (16.7 %)",
    ])


def test_an_unknown_feed_format_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        read_feed(FeedSpec("sims-xml", tmp_path, {}, "jobs/nightly.toml"))
    assert str(caught.value) == (
        "jobs/nightly.toml: format: unknown feed format 'sims-xml'; expected one of mis-csv, sds-v2, sds-v1, oneroster"
    )


def test_no_feeds_at_all_is_a_feed_error():
    with pytest.raises(FeedError):
        read_feeds([])
