"""OneRoster 1.1 CSV bulk exports: users.csv and orgs.csv, with leavers marked by status."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.errors import FeedError
from idlifecycle.feeds import FeedSpec, read_feed
from idlifecycle.model import Kind

ROSTER = Path(__file__).resolve().parents[1] / "data" / "feeds" / "oneroster"


def read(path: Path = ROSTER, **options: object):
    return read_feed(FeedSpec("oneroster", path, options, "jobs/nightly.toml"))


def test_oneroster_students_and_staff_with_grades_and_upn_from_user_ids():
    by_id = {person.person_id: person for person in read().people}
    assert sorted(by_id) == ["u-000987", "u-000990", "u-001234", "u-t01", "u-t02"]
    zoe = by_id["u-001234"]
    assert (zoe.kind, zoe.legal_first_name, zoe.year_group, zoe.upn, zoe.username) == (
        Kind.PUPIL, "Zoë", "7", "B801200005001", "001234")
    assert by_id["u-t01"].roles == ("teacher",)
    assert by_id["u-t02"].kind is Kind.STAFF  # an aide is staff
    assert by_id["u-t01"].email == "jsmith@riverside.sch.uk"


def test_oneroster_tobedeleted_user_is_a_leaver_dated_when_the_sis_marked_them():
    by_id = {person.person_id: person for person in read().people}
    assert by_id["u-000987"].leave_date == date(2026, 7, 22)
    assert by_id["u-001234"].leave_date is None


def test_oneroster_disabled_user_without_a_date_is_left_out_and_guardians_are_not_people():
    ids = {person.person_id for person in read().people}
    assert "u-000988" not in ids  # enabledUser=false, no dateLastModified
    assert "u-g01" not in ids


def test_oneroster_disabled_user_with_a_date_is_a_leaver(tmp_path):
    folder = tmp_path / "roster"
    shutil.copytree(ROSTER, folder)
    users = folder / "users.csv"
    users.write_text(users.read_text().replace("u-000988,active,,false", "u-000988,active,2026-10-01,false"))
    by_id = {person.person_id: person for person in read(folder).people}
    assert by_id["u-000988"].leave_date == date(2026, 10, 1)


def test_oneroster_bad_rows_are_named_exactly():
    assert [str(error) for error in read().errors] == [
        f"{ROSTER}/users.csv:8: role: unknown role 'techer'; expected student, teacher, administrator, aide or proctor",
        f"{ROSTER}/users.csv:9: orgSourcedIds: 'org-999' not in orgs.csv",
        f"{ROSTER}/users.csv:9: userIds: 'A801200005001' has check letter A but its digits give B; the UPN is mistyped",
    ]


def test_oneroster_without_orgs_csv_is_a_feed_error(tmp_path):
    folder = tmp_path / "roster"
    shutil.copytree(ROSTER, folder)
    (folder / "orgs.csv").unlink()
    with pytest.raises(FeedError) as caught:
        read(folder)
    assert str(caught.value) == (
        f"{folder}: missing orgs.csv (found academicSessions.csv, manifest.csv, users.csv); refusing to read a "
        "partial oneroster export as if those records had gone"
    )


def test_oneroster_us_grades_and_one_school_of_several(tmp_path):
    folder = tmp_path / "roster"
    shutil.copytree(ROSTER, folder)
    with (folder / "orgs.csv").open("a", newline="") as orgs:
        orgs.write("org-999,,,Hillside Primary,school,8014013,\r\n")
    users = folder / "users.csv"
    users.write_text(users.read_text().replace("{UPN:A801200005001}", "{UPN:B801200005001}"))
    result = read(folder, school="org-999", grades="us")
    assert [(p.person_id, p.year_group, p.upn) for p in result.people] == [("u-000989", "6", "B801200005001")]
    assert result.errors == ()
    assert result.rows == 1
