"""A row we could not read never harms the person it describes: refused rows hold their people.

The planner is pure and tested with plain values; the property test reads real CSV files through the
real MIS reader, so a reader that forgets to say whose row it refused fails it too.
"""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idlifecycle.executor import Executor
from idlifecycle.feeds import FeedSpec, read_feeds
from idlifecycle.feeds._fields import upn_check_letter
from idlifecycle.job import held_rows
from idlifecycle.model import Action, Group, Kind, Snapshot
from idlifecycle.planner import Held, NoShareGroups, PlanState, normalise_id, plan
from idlifecycle.store import Store
from tests.doubles import FileDirectory
from tests.factories import AD_LIKE, TODAY, account, pupil, school_rules

RULES = school_rules()
HARM = {Action.DISABLE, Action.DELETE, Action.MOVE, Action.REMOVE_MEMBER, Action.RENAME, Action.UPDATE}


def plan_for(people, accounts, groups=(), held=None, shares=None):
    snapshot = Snapshot("ad", tuple(accounts), tuple(groups))
    return plan(people, {"ad": snapshot}, {"ad": AD_LIKE}, RULES, PlanState(), TODAY, shares=shares, held=held)


def test_ids_match_whatever_a_spreadsheet_did_to_their_zeros_case_and_spaces():
    assert normalise_id(" 000231 ") == normalise_id("231") == "231"
    assert normalise_id("ab12") == normalise_id("AB12")
    assert normalise_id("000") == "0"


def test_a_held_pupil_keeps_their_account_and_groups_and_is_listed_with_the_row_error():
    acct = account("k1", "19tjones", anchor="000231", container="Pupils/Year 7")
    groups = [Group("ad", "g1", "Reg 7A", {"k1": "Tom Jones"}), Group("ad", "g2", "All Pupils", {"k1": "Tom Jones"})]
    error = "pupils.csv:12: UPN: 'T801401226001' has check letter T but its digits give G; the UPN is mistyped"
    p = plan_for([], [acct], groups, held=Held({"231": (error,)}))
    assert p.changes == ()
    assert p.held == (f"231: left as they are (ad 19tjones): {error}",)
    # Without the hold the same picture is "no longer in the feed": that is what a typo used to cost.
    assert {c.action for c in plan_for([], [acct], groups).changes} >= {Action.DISABLE, Action.REMOVE_MEMBER}


def test_a_held_starter_gets_no_account_and_is_still_counted_in_the_feed():
    p = plan_for([pupil("1001", "Ann", "Lee")], [], held=Held({"1001": ("pupils.csv:3: Year: unknown",)}))
    assert p.changes == ()
    assert p.held == ("1001: left as they are (no account yet, none created): pupils.csv:3: Year: unknown",)
    assert p.people_count == 1


def test_a_refused_row_without_an_id_stops_anyone_being_taken_for_a_leaver_by_absence():
    absent = account("k1", "19tjones", anchor="1001")
    leaver = account("k2", "19abrown", anchor="1002")
    people = [pupil("1002", "Amy", "Brown", leave_date=TODAY - timedelta(days=1))]
    p = plan_for(people, [absent, leaver], held=Held(unidentified=("pupils.csv:9: Adno: is required but empty",)))
    assert {c.target for c in p.changes if c.action is Action.DISABLE} == {"k2"}  # a valid leaving date still counts
    assert "not disabled because 1 refused row(s) have no readable id" in p.held[-1]
    assert "ad 19tjones (1001)" in p.held[-1]


def test_a_held_person_in_a_restricted_group_is_not_policed_out_on_a_doubtful_night():
    acct = account("k1", "19tjones", anchor="1001")

    shares = NoShareGroups(restricted={"ad": frozenset({"SEN Restricted"})},
                           managed={"ad": frozenset({"SEN Restricted"})})
    groups = [Group("ad", "g1", "SEN Restricted", {"k1": "Tom Jones"})]
    p = plan_for([], [acct], groups, held=Held({"1001": ("pupils.csv:2: Surname: is required but empty",)}),
                 shares=shares)
    assert p.changes == ()


# --- the property: any subset of rows corrupted so that they are refused harms nobody in them -------------

HEADER = ["Adno", "UPN", "Legal Forename", "Legal Surname", "Year", "Reg Group", "Admission Date", "Leaving Date"]


def _upn(n: int) -> str:
    digits = f"8014012{n:04d}1"
    body = "A" + digits
    return upn_check_letter(body) + digits


def _wrong_letter(upn: str) -> str:
    return ("B" if upn[0] != "B" else "C") + upn[1:]


CORRUPTIONS = {
    "surname blank": lambda row: {**row, "Legal Surname": ""},
    "upn check letter": lambda row: {**row, "UPN": _wrong_letter(row["UPN"])},
    "year unknown": lambda row: {**row, "Year": "Year 99"},
    "leaving date impossible": lambda row: {**row, "Leaving Date": "31/02/2026"},
    "left before joining": lambda row: {**row, "Leaving Date": "01/01/2019"},
    "forename control character": lambda row: {**row, "Legal Forename": "Ann\x07"},
}


def _rows(count: int) -> list[dict[str, str]]:
    return [{"Adno": f"{i:06d}", "UPN": _upn(i), "Legal Forename": "Pupil", "Legal Surname": f"Number{i}",
             "Year": str(7 + i % 5), "Reg Group": f"{7 + i % 5}A", "Admission Date": "01/09/2020",
             "Leaving Date": ""} for i in range(1, count + 1)]


def _write(path: Path, rows: list[dict[str, str]], duplicates: list[dict[str, str]] = ()) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, HEADER)
        writer.writeheader()
        writer.writerows([*rows, *duplicates])


def _read(path: Path):
    return read_feeds([FeedSpec("mis-csv", path, {"kind": "pupil", "date_order": "dmy"})])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(min_value=5, max_value=30), data=st.data())
def test_no_person_in_a_refused_row_is_disabled_deleted_moved_or_loses_a_group(tmp_path_factory, count, data):
    tmp = tmp_path_factory.mktemp("feed")
    directory = FileDirectory("ad", tmp / "dir.sqlite")
    store = Store(tmp / "state.db")
    rows = _rows(count)
    _write(tmp / "pupils.csv", rows)
    first = plan(list(_read(tmp / "pupils.csv").people), {"ad": directory.snapshot()}, {"ad": AD_LIKE}, RULES,
                 PlanState(), TODAY)
    Executor(store, {"ad": directory}, today=TODAY).run("first", first.changes)

    corrupted = data.draw(st.sets(st.integers(0, count - 1), min_size=1, max_size=count))
    how = data.draw(st.lists(st.sampled_from([*CORRUPTIONS, "duplicate id"]), min_size=len(corrupted),
                             max_size=len(corrupted)))
    later = list(rows)
    extra = []
    for index, corruption in zip(sorted(corrupted), how, strict=True):
        if corruption == "duplicate id":
            extra.append({**rows[index], "Legal Surname": "Someone Else", "UPN": ""})
        else:
            later[index] = CORRUPTIONS[corruption](rows[index])
    _write(tmp / "pupils.csv", later, extra)
    feed = _read(tmp / "pupils.csv")
    held = held_rows(feed.errors)
    snapshot = directory.snapshot()
    night = plan(list(feed.people), {"ad": snapshot}, {"ad": AD_LIKE}, RULES,
                 PlanState(issued_usernames=store.issued_usernames()), TODAY + timedelta(days=1), held=held)
    harmed_ids = {rows[i]["Adno"] for i in corrupted}
    keys = {a.key for a in snapshot.accounts if a.anchor in harmed_ids}
    assert len(keys) == len(harmed_ids)
    harm = [c for c in night.changes if c.target in keys and c.action in HARM]
    assert harm == [], f"refused rows {sorted(harmed_ids)} harmed: {harm}"
    assert {normalise_id(i) for i in harmed_ids} <= set(held.keys)
    store.close()


def test_a_feed_value_that_would_name_a_share_or_admin_group_is_refused_and_its_pupil_held():
    from dataclasses import replace as changed

    from idlifecycle.shape import protected_group_rows

    pupil_rules = changed(RULES.kinds[Kind.PUPIL], groups=("All Pupils", "{registration_group}"))
    rules = changed(RULES, kinds={**RULES.kinds, Kind.PUPIL: pupil_rules})
    hostile = [pupil("1001", "Ann", "Lee", reg="share sen-RESTRICTED", source="pupils.csv:2"),
               pupil("1002", "Bob", "Lee", reg="Domain  Admins", source="pupils.csv:3"),
               pupil("1003", "Cat", "Lee", reg="7A", source="pupils.csv:4")]
    errors = protected_group_rows(hostile, rules, {"Share-SEN-Restricted"})
    assert [(e.line, e.person_id, e.field) for e in errors] == [(2, "1001", "registration_group"),
                                                                  (3, "1002", "registration_group")]
    assert "which is the protected group 'Share-SEN-Restricted'" in errors[0].message
    held = held_rows(errors)
    p = plan(hostile, {"ad": Snapshot("ad", (), ())}, {"ad": AD_LIKE}, rules, PlanState(), TODAY, held=held)
    assert {c.person_id for c in p.changes if c.person_id} == {"1003"}
    # The school's own fixed group names are its choice, not the feed's: never refused.
    assert protected_group_rows(hostile, RULES, {"All Pupils"}) == []


def test_someone_the_export_still_lists_without_a_role_is_not_disabled_as_gone():
    lost_role = account("k1", "19tjones", anchor="1001")
    gone = account("k2", "19abrown", anchor="1002")
    p = plan_for([], [lost_role, gone], held=Held(listed=frozenset({"1001", "PARENT7"})))
    assert {c.target for c in p.changes if c.action is Action.DISABLE} == {"k2"}
    assert p.held == ("listed in the export without a pupil or staff role, so not taken to have left; give them "
                      "their role again in the MIS, or end it with a leaving date: ad 19tjones (1001)",)


def test_an_sds_upn_username_is_used_as_the_local_part_of_the_mappings_domain():
    """use_feed_usernames with SDS v2.1 once built jcraig@contoso.org@pupils.example.sch.uk (issue 11, 6)."""
    from dataclasses import replace as changed

    from idlifecycle.feeds import read_feed

    sample = Path(__file__).resolve().parents[1] / "data" / "feeds" / "sds_v2_microsoft_sample"
    feed = read_feed(FeedSpec("sds-v2", sample, {"date_order": "mdy"}))
    rules = changed(RULES, use_feed_usernames=True)
    p = plan(list(feed.people), {"ad": Snapshot("ad", (), ())}, {"ad": AD_LIKE}, rules, PlanState(), TODAY)
    creates = {c.person_id: c.after["login"] for c in p.changes if c.action is Action.CREATE}
    assert creates["221001"] == "awhite@pupils.example.sch.uk"
    assert all(login.count("@") == 1 for login in creates.values())


def test_a_full_width_or_differently_cased_share_group_name_from_the_feed_is_refused_every_night():
    """Issue 14, item 4: a case variant of a restricted group's name joined it and flipped in and out."""
    from dataclasses import replace as changed

    from idlifecycle.shape import protected_group_rows

    pupil_rules = changed(RULES.kinds[Kind.PUPIL], groups=("{registration_group}",))
    rules = changed(RULES, kinds={**RULES.kinds, Kind.PUPIL: pupil_rules})
    hostile = [pupil("1001", "Ann", "Lee", reg="\uff33\uff48\uff41\uff52\uff45-SEN-Restricted", source="p.csv:2"),
               pupil("1002", "Bob", "Lee", reg="SHARE-sen-restricted", source="p.csv:3"),
               pupil("1003", "Cat", "Lee", reg="\uff24omain \uff21dmins", source="p.csv:4"),
               pupil("1004", "Dan", "Lee", reg="7A", source="p.csv:5")]
    for _night in (1, 2):
        errors = protected_group_rows(hostile, rules, {"Share-SEN-Restricted"})
        assert [e.person_id for e in errors] == ["1001", "1002", "1003"]
        p = plan(hostile, {"ad": Snapshot("ad", (), ())}, {"ad": AD_LIKE}, rules, PlanState(), TODAY,
                 held=held_rows(errors))
        assert {c.person_id for c in p.changes if c.person_id} == {"1004"}
