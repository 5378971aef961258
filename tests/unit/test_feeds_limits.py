"""Directory limits checked on the feed: a value a directory would refuse keeps that person out of
the run with a row error, instead of failing a create half-way through the night."""

from __future__ import annotations

from pathlib import Path

import pytest

from idlifecycle.feeds import FeedColumns, FeedResult, FeedSpec, read_feed
from idlifecycle.feeds.limits import check_lengths
from idlifecycle.model import Kind, Person, RowError


def pupils(tmp_path: Path, *rows: str, header: str = "Adno,Forename,Surname,Year,Reg Group,Username") -> Path:
    path = tmp_path / "pupils.csv"
    path.write_text("\n".join((header, *rows)) + "\n", encoding="utf-8")
    return path


def checked(path: Path, *directories: str):
    return check_lengths(read_feed(FeedSpec("mis-csv", path, {"kind": "pupil"})), directories)


def test_a_300_character_registration_group_is_refused_whatever_the_directories(tmp_path):
    path = pupils(tmp_path, "001,Ann,Lee,7,7K,", f"002,Bob,Ray,7,{'R' * 300},")
    result = checked(path)
    assert [p.person_id for p in result.people] == ["001"]
    assert result.errors == (RowError(
        str(path), 3, "Reg Group",
        "is 300 characters long; a registration group may have at most 64 "
        "(it names groups, OUs and password-slip files)",
        "002",
    ),)


@pytest.mark.parametrize("group", ["7/K", "7,K", "7K;drop", 'Form "A"', "7+8", "A<B>"])
def test_a_registration_group_with_characters_group_and_file_names_cannot_hold_is_refused(tmp_path, group):
    path = pupils(tmp_path, f'001,Ann,Lee,7,"{group.replace(chr(34), chr(34) * 2)}",')
    result = checked(path)
    assert result.people == ()
    assert "which group and file names cannot hold; rename registration group in the MIS" in result.errors[0].message


def test_a_registration_group_with_a_control_character_is_refused(tmp_path):
    path = pupils(tmp_path, "001,Ann,Lee,7,7\tK,")
    assert checked(path).errors[0].message == (
        "contains a control character (U+0009); a registration group names groups and files")


def test_names_are_held_to_the_strictest_configured_directory():
    # The readers refuse names over 60 characters already; a feed built elsewhere may not.
    surname = "Featherstonehaugh-Cholmondeley-Marjoribanks-Wriothesley-Abcdef"  # 62: over Google's 60
    people = (Person("001", Kind.PUPIL, "Ann", "Lee", year_group="7", source="pupils.csv:2"),
              Person("002", Kind.PUPIL, "Bob", surname, year_group="7", source="pupils.csv:3"))
    feed = FeedResult(people, (), 2, (FeedColumns("pupils.csv", "mis-csv", "pupil", {"last_name": "Surname"}),))
    assert [p.person_id for p in check_lengths(feed, ["ad", "entra"]).people] == ["001", "002"]
    google = check_lengths(feed, ["ad", "google"])
    assert [p.person_id for p in google.people] == ["001"]
    assert [str(e) for e in google.errors] == [
        f"pupils.csv:3: Surname: '{surname}' is 62 characters long; Google Workspace allows at most 60 in familyName"]


def test_a_feed_username_longer_than_sam_account_name_allows_is_refused_for_ad_only(tmp_path):
    (tmp_path / "fits").mkdir()
    fits = pupils(tmp_path / "fits", "001,Ann,Lee,7,7K,annabel.leeson.smyth")  # 20
    assert checked(fits, "ad").errors == ()
    path2 = path = pupils(tmp_path, "001,Ann,Lee,7,7K,annabel.leeson.smythe")  # 21
    result = checked(path2, "ad")
    assert [str(e) for e in result.errors] == [
        f"{path}:2: Username: 'annabel.leeson.smythe' is 21 characters long; Active Directory allows at most 20 "
        "in sAMAccountName"]
    assert result.errors[0].person_id == "001"
    assert checked(path2, "entra", "google").errors == ()


def test_an_id_longer_than_employee_id_holds_is_not_refused_the_connectors_write_its_short_anchor(tmp_path):
    path = pupils(tmp_path, "f81d4fae-7dec-11d0-a765-00a0c91e6bf6,Ann,Lee,7,7K,")
    assert checked(path, "google", "entra", "ad").errors == ()


def test_a_role_is_held_to_the_job_title_limits_and_the_group_name_rules(tmp_path):
    path = tmp_path / "staff.csv"
    path.write_text(
        "Staff Code,Forename,Surname,Role\n"
        f"S1,Ann,Lee,{'Assistant Head ' * 5}\n"  # 74 characters: over 64
        "S2,Bob,Ray,Teacher\n"
        "S3,Cy,Oak,Head of Year/Pastoral\n",
        encoding="utf-8",
    )
    result = check_lengths(read_feed(FeedSpec("mis-csv", path, {"kind": "staff"})), ["entra"])
    assert [p.person_id for p in result.people] == ["S2"]
    assert [(e.line, e.field, e.person_id) for e in result.errors] == [(2, "Role", "S1"), (4, "Role", "S3")]


def test_unknown_directory_types_are_ignored_and_a_clean_feed_comes_back_unchanged(tmp_path):
    path = pupils(tmp_path, "001,Ann,Lee,7,7K,ann")
    before = read_feed(FeedSpec("mis-csv", path, {"kind": "pupil"}))
    assert check_lengths(before, ["ad", "entra", "google", "samba4", "ldap"]) == before


def test_a_role_with_a_slash_is_refused_only_where_roles_name_groups():
    head = Person("HOY", Kind.STAFF, "Ann", "Lee", roles=("Head of Year/Pastoral",), source="staff.csv:2")
    feed = FeedResult((head,), (), 1)
    assert check_lengths(feed, ["entra"], roles_name_groups=False).people == (head,)
    refused = check_lengths(feed, ["entra"], roles_name_groups=True)
    assert refused.people == () and refused.errors[0].person_id == "HOY"
