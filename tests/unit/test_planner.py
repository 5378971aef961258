"""The planner, told as the school's year: starters, leavers, roll-over, re-joiners, first runs."""

from dataclasses import dataclass, field, replace
from datetime import date

from idlifecycle.model import Action, Group, Snapshot
from idlifecycle.planner import PlanState, plan
from tests.factories import AD_LIKE, ENTRA_LIKE, TODAY, account, pupil, school_rules, staff

RULES = school_rules()


def plan_for(people, accounts=(), groups=(), *, caps=AD_LIKE, state=PlanState(), today=TODAY, shares=None,
             outside=frozenset()):
    snapshot = Snapshot("ad", tuple(accounts), tuple(groups), frozenset(outside))
    return plan(people, {"ad": snapshot}, {"ad": caps}, RULES, state, today, shares=shares)


def actions(p, action=None):
    return [(c.action, c.username, c.group) for c in p.changes if action is None or c.action is action]


def test_a_new_pupil_gets_an_account_in_their_year_ou_with_year_and_class_groups():
    p = plan_for([pupil("1001", "Zoë", "Nguyễn", year="7", reg="7B")])
    create = p.changes[[c.action for c in p.changes].index(Action.CREATE)]
    assert create.username == "19znguyen"
    assert create.after["login"] == "19znguyen@pupils.example.sch.uk"
    assert create.after["container"] == "Pupils/Year 7"
    assert create.after["display_name"] == "Zoë Nguyễn"
    assert create.after["anchor"] == "1001"
    assert {c.group for c in p.changes if c.action is Action.ADD_MEMBER} == {"All Pupils", "Year 7 Pupils",
                                                                              "Reg 7B"}
    # The groups do not exist yet, so they are created first.
    assert [c.action for c in p.changes][:3] == [Action.CREATE_GROUP] * 3


def test_a_pupil_who_left_in_july_is_disabled_not_deleted_and_moved_to_leavers():
    leaver = pupil("1001", "Amy", "Brown", year="11", leave_date=date(2026, 7, 22))
    acct = account("k1", "16abrown", anchor="1001", container="Pupils/Year 11")
    p = plan_for([leaver], [acct], [Group("ad", "g1", "All Pupils", {"k1": "Amy Brown"})])
    assert [c.action for c in p.changes] == [Action.REMOVE_MEMBER, Action.DISABLE, Action.MOVE]
    assert all(c.reason.startswith("left on 22/07/2026") for c in p.changes)
    assert p.changes[-1].after["container"] == "Leavers/Pupils"


def test_a_disabled_leaver_is_deleted_only_after_the_retention_period():
    leaver = pupil("1001", "Amy", "Brown", leave_date=date(2026, 1, 10))
    acct = account("k1", "16abrown", anchor="1001", enabled=False, container="Leavers/Pupils")
    early = plan_for([leaver], [acct], state=PlanState(disabled_on={("ad", "1001"): date(2026, 3, 1)}))
    assert early.changes == ()
    late = plan_for([leaver], [acct], state=PlanState(disabled_on={("ad", "1001"): date(2026, 1, 10)}),
                    today=date(2026, 10, 7))
    assert actions(late) == [(Action.DELETE, "16abrown", None)]
    assert "270-day retention ended" in late.changes[0].reason


def test_the_september_roll_over_is_a_move_never_a_leave_and_a_join():
    year6 = pupil("1001", "Tom", "Jones", year="6", reg="6A")
    acct = account("k1", "19tjones", anchor="1001", container="Pupils/Year 6", given="Tom", surname="Jones",
                   attributes={"department": "Year 6", "jobTitle": "Pupil", "employeeType": "pupil"})
    groups = [Group("ad", "g1", "Year 6 Pupils", {"k1": "Tom Jones"}), Group("ad", "g2", "All Pupils", {"k1": "x"}),
              Group("ad", "g3", "Reg 6A", {"k1": "x"})]
    july = plan_for([year6], [acct], groups, today=date(2026, 7, 1))
    assert july.changes == ()
    year7 = pupil("1001", "Tom", "Jones", year="7", reg="7A")
    september = plan_for([year7], [acct], groups, today=date(2026, 9, 2))
    kinds = {c.action for c in september.changes}
    assert Action.CREATE not in kinds and Action.DISABLE not in kinds
    move = next(c for c in september.changes if c.action is Action.MOVE)
    assert (move.after["container"], move.reason) == ("Pupils/Year 7", "moved to Year 7")
    removed = sorted(c.group for c in september.changes if c.action is Action.REMOVE_MEMBER)
    assert removed == ["Reg 6A", "Year 6 Pupils"]


def test_a_rejoiner_within_retention_gets_the_same_account_back_enabled():
    back = pupil("1001", "Amy", "Brown", year="8", reg="8C")
    acct = account("k1", "18abrown", anchor="1001", enabled=False, container="Leavers/Pupils", given="Amy",
                   surname="Brown")
    p = plan_for([back], [acct], state=PlanState(disabled_on={("ad", "1001"): date(2026, 8, 1)}))
    kinds = [c.action for c in p.changes]
    assert Action.CREATE not in kinds
    assert Action.ENABLE in kinds
    assert [c.after["container"] for c in p.changes if c.action is Action.MOVE] == ["Pupils/Year 8"]
    assert all(c.target == "k1" for c in p.changes if c.action is not Action.CREATE_GROUP)


def test_a_first_run_adopts_an_existing_account_by_email_instead_of_creating_a_duplicate():
    teacher = staff("T01", "Jane", "Doe", email="jdoe@staff.example.sch.uk")
    existing = account("k9", "jdoe", anchor=None, domain="staff.example.sch.uk", container="Staff", given="Jane",
                       surname="Doe")
    p = plan_for([teacher], [existing])
    assert Action.CREATE not in [c.action for c in p.changes]
    adopt = next(c for c in p.changes if c.action is Action.ADOPT)
    assert (adopt.target, adopt.after) == ("k9", {"anchor": "T01"})


def test_accounts_matching_nobody_are_reported_and_never_changed():
    stranger = account("k5", "oldtech", anchor=None, domain="staff.example.sch.uk", container="Staff")
    p = plan_for([staff("T01", "Jane", "Doe")], [stranger])
    assert all(c.target != "k5" for c in p.changes)
    assert any("unmanaged: oldtech@staff.example.sch.uk" in n for n in p.notes)


def test_a_name_held_outside_the_managed_scope_is_never_issued():
    p = plan_for([staff("T01", "Jane", "Doe")], outside={"jdoe"})
    assert [c.username for c in p.changes if c.action is Action.CREATE] == ["jdoe2"]


def test_a_name_change_updates_the_display_name_but_keeps_the_username():
    renamed = staff("T01", "Jane", "Smith", role="Teacher")
    acct = account("k1", "jdoe", anchor="T01", domain="staff.example.sch.uk", container="Staff", given="Jane",
                   surname="Doe", attributes={"jobTitle": "Teacher", "employeeType": "staff"})
    p = plan_for([renamed], [acct])
    update = next(c for c in p.changes if c.action is Action.UPDATE)
    assert update.after == {"surname": "Smith", "display_name": "Jane Smith"}
    assert Action.RENAME not in [c.action for c in p.changes]


def test_hybrid_users_synced_from_ad_are_left_alone_in_entra_but_for_groups_and_sessions():
    leaver = staff("T01", "Jane", "Doe", leave_date=date(2026, 8, 31))
    synced = account("k1", "jdoe", anchor="T01", domain="staff.example.sch.uk", container="",
                     synced_from_on_premises=True)
    p = plan_for([leaver], [synced], [Group("ad", "g1", "All Staff", {"k1": "Jane Doe"})], caps=ENTRA_LIKE)
    assert [c.action for c in p.changes] == [Action.REMOVE_MEMBER, Action.REVOKE_SESSIONS]


@dataclass(frozen=True)
class Shares:
    desired: dict = field(default_factory=dict)
    restricted: dict = field(default_factory=lambda: {"ad": frozenset({"Share-SEN-Restricted"})})
    managed: dict = field(default_factory=lambda: {"ad": frozenset({"Share-SEN-Restricted"})})


def test_anyone_not_approved_in_a_restricted_group_is_removed_even_outside_the_managed_scope():
    teacher = staff("T01", "Jane", "Doe")
    acct = account("k1", "jdoe", anchor="T01", domain="staff.example.sch.uk", container="Staff")
    group = Group("ad", "g1", "Share-SEN-Restricted", {"k1": "Jane Doe", "outsider": "Bob Admin"})
    p = plan_for([teacher], [acct], [group], shares=Shares())
    removals = [c for c in p.changes if c.action is Action.REMOVE_MEMBER]
    assert {(c.target, c.restricted) for c in removals} == {("k1", True), ("outsider", True)}
    assert all(c.destructive for c in removals)
    approved = Shares(desired={"T01": {"ad": frozenset({"Share-SEN-Restricted"})}})
    p = plan_for([teacher], [acct], [group], shares=approved)
    assert [c.target for c in p.changes if c.action is Action.REMOVE_MEMBER] == ["outsider"]


def test_a_starter_is_created_two_weeks_before_their_first_day_and_not_before():
    starter = staff("T02", "New", "Teacher", start_date=date(2027, 1, 4))
    assert plan_for([starter], today=date(2026, 12, 1)).changes == ()
    assert Action.CREATE in [c.action for c in plan_for([starter], today=date(2026, 12, 28)).changes]


def test_a_first_run_adopts_accounts_named_by_the_schools_own_convention():
    existing = account("k7", "19tjones", anchor=None, container="Pupils/Year 7", given="Tom", surname="Jones")
    p = plan_for([pupil("1001", "Tom", "Jones")], [existing])
    assert [(c.action, c.target) for c in p.changes if c.action in (Action.ADOPT, Action.CREATE)] == [
        (Action.ADOPT, "k7")]


def test_two_pupils_with_the_same_name_are_not_adopted_by_name_alone():
    existing = account("k7", "19jsmith", anchor=None, container="Pupils/Year 7")
    p = plan_for([pupil("1001", "James", "Smith"), pupil("1002", "James", "Smith")], [existing])
    assert Action.ADOPT not in [c.action for c in p.changes]
    assert sorted(c.username for c in p.changes if c.action is Action.CREATE) == ["19jsmith2", "19jsmith3"]
    assert any("unmanaged: 19jsmith@pupils.example.sch.uk" in n for n in p.notes)


def test_a_leaver_whose_account_was_never_anchored_is_adopted_and_disabled():
    leaver = staff("DPR", "Darren", "Price", leave_date=date(2026, 8, 31))
    existing = account("k3", "dprice", anchor=None, domain="staff.example.sch.uk", container="Staff")
    p = plan_for([leaver], [existing])
    assert [(c.action, c.target) for c in p.changes] == [(Action.ADOPT, "k3"), (Action.DISABLE, "k3"),
                                                          (Action.MOVE, "k3")]
    assert not p.notes


def test_a_roll_over_update_says_what_changed():
    year7 = pupil("1001", "Tom", "Jones", year="7", reg=None)
    acct = account("k1", "19tjones", anchor="1001", container="Pupils/Year 7", given="Tom", surname="Jones",
                   attributes={"department": "Year 6", "jobTitle": "Pupil", "employeeType": "pupil"})
    p = plan_for([year7], [acct])
    [update] = [c for c in p.changes if c.action is Action.UPDATE]
    assert update.reason == "department: Year 6 -> Year 7"


def test_a_rename_made_in_one_directory_but_not_the_other_is_finished_with_the_same_name():
    # Clara's account was renamed coswald -> 18coswald in one directory; the other directory's rename
    # was never confirmed (a run given up on). The next night renames the other to 18coswald, the name
    # already issued to her, and leaves the first alone: never a third name such as 18coswald2.
    rules = replace(RULES, kinds={k: replace(v, rename_on_name_change=True) for k, v in RULES.kinds.items()})
    clara = pupil("000205", "Clara", "Oswald", year="8", reg="8A")
    old = account("e1", "coswald", anchor="000205", directory="entra", container="Pupils/Year 8",
                  given="Clara", surname="Oswald")
    new = account("d1", "18coswald", anchor="000205", directory="double", container="Pupils/Year 8",
                  given="Clara", surname="Oswald")
    state = PlanState(person_usernames={"000205": "18coswald"},
                      issued_usernames={"coswald": "000205", "18coswald": "000205"})
    snapshots = {"entra": Snapshot("entra", (old,), ()), "double": Snapshot("double", (new,), ())}
    p = plan([clara], snapshots, {"entra": ENTRA_LIKE, "double": AD_LIKE}, rules, state, TODAY)
    renames = [(c.directory, c.after.get("username")) for c in p.changes if c.action is Action.RENAME]
    assert renames == [("entra", "18coswald")]
