"""The planner's quick look (`DirectoryPlanner.may_change`) passes over only accounts `update` would leave alone.

The quick look compares each account with its person's shape (OU, attributes, groups) worked out once per shape;
these tests hold it to the slow path: one field off is always planned, and a shape is a person's whole shape.
"""

from dataclasses import replace
from datetime import date

import pytest

from idlifecycle.model import Account, Action, Group, Kind, Person, Snapshot
from idlifecycle.planner import PlanState, plan
from tests.factories import AD_LIKE, TODAY, account, pupil, school_rules

RULES = school_rules()
PUPIL_ATTRIBUTES = {"department": "Year 7", "jobTitle": "Pupil", "employeeType": "pupil"}
PUPIL_GROUPS = ("All Pupils", "Year 7 Pupils", "Reg 7A")


def settled_pupil(**changed: object) -> Account:
    """Tom's AD account exactly as the mapping wants it, with `changed` fields off."""
    fields: dict[str, object] = {"given": "Tom", "surname": "Jones", "container": "Pupils/Year 7",
                                 "attributes": dict(PUPIL_ATTRIBUTES)}
    fields.update(changed)
    return account("k1", str(fields.pop("username", "19tjones")), anchor="1001", **fields)  # type: ignore[arg-type]


def groups_of(key: str, names: tuple[str, ...]) -> list[Group]:
    return [Group("ad", f"g{n}", name, {key: "Tom Jones"}) for n, name in enumerate(names)]


def plan_ad(people: list[Person], accounts: list[Account], groups: list[Group], rules=RULES):  # type: ignore[no-untyped-def]
    return plan(people, {"ad": Snapshot("ad", tuple(accounts), tuple(groups))}, {"ad": AD_LIKE}, rules,
                PlanState(), TODAY)


def test_an_account_as_desired_is_passed_over() -> None:
    tom = pupil("1001", "Tom", "Jones")
    assert plan_ad([tom], [settled_pupil()], groups_of("k1", PUPIL_GROUPS)).changes == ()


@pytest.mark.parametrize(("off", "expected"), [
    ({"enabled": False}, Action.ENABLE),
    ({"given": "Thomas"}, Action.UPDATE),
    ({"surname": "Jone"}, Action.UPDATE),
    ({"display": "Tommy Jones"}, Action.UPDATE),
    ({"attributes": {**PUPIL_ATTRIBUTES, "department": "Year 6"}}, Action.UPDATE),
    ({"attributes": {"jobTitle": "Pupil", "employeeType": "pupil"}}, Action.UPDATE),
    ({"container": "Pupils/Year 6"}, Action.MOVE),
])
def test_one_field_off_is_planned(off: dict[str, object], expected: Action) -> None:
    tom = pupil("1001", "Tom", "Jones")
    p = plan_ad([tom], [settled_pupil(**off)], groups_of("k1", PUPIL_GROUPS))
    assert expected in [c.action for c in p.changes]


def test_a_login_off_in_its_domain_alone_is_planned() -> None:
    tom = pupil("1001", "Tom", "Jones")
    moved = replace(settled_pupil(), login="19tjones@old.example.sch.uk")
    assert [c.action for c in plan_ad([tom], [moved], groups_of("k1", PUPIL_GROUPS)).changes] == [Action.RENAME]


def test_one_group_too_many_or_too_few_is_planned() -> None:
    tom = pupil("1001", "Tom", "Jones")
    extra = plan_ad([tom], [settled_pupil()], groups_of("k1", (*PUPIL_GROUPS, "Year 6 Pupils")))
    assert [(c.action, c.group) for c in extra.changes] == [(Action.REMOVE_MEMBER, "Year 6 Pupils")]
    missing = plan_ad([tom], [settled_pupil()], groups_of("k1", PUPIL_GROUPS[:2]))
    assert [(c.action, c.group) for c in missing.changes] == [(Action.CREATE_GROUP, "Reg 7A"),
                                                              (Action.ADD_MEMBER, "Reg 7A")]


def test_an_extra_kind_does_not_share_the_shape_of_its_base_kind() -> None:
    # A supply teacher (base kind staff, no role) comes first on the roll, so the quick look works out the
    # shape of "staff, no role" from her. A member of staff with no role whose account sits in the supply OU
    # with the supply groups and attributes must still be moved out: the extra kind is part of the shape.
    supply = Person("X-0000abcd", Kind.STAFF, "Rose", "Tyler", extra_kind="supply", sponsor="S001",
                    leave_date=date(2026, 12, 19))
    clerk = Person("S002", Kind.STAFF, "Ada", "Byron")
    accounts = [
        account("k1", "rtyler", anchor="X-0000abcd", container="Staff/Supply", domain="staff.example.sch.uk",
                given="Rose", surname="Tyler", attributes={"jobTitle": "Supply Teacher", "employeeType": "supply"}),
        account("k2", "abyron", anchor="S002", container="Staff/Supply", domain="staff.example.sch.uk",
                given="Ada", surname="Byron", attributes={"jobTitle": "Supply Teacher", "employeeType": "supply"}),
    ]
    groups = [Group("ad", "g1", "All Staff", {"k1": "Rose Tyler", "k2": "Ada Byron"}),
              Group("ad", "g2", "Supply Staff", {"k1": "Rose Tyler", "k2": "Ada Byron"})]
    p = plan_ad([supply, clerk], accounts, groups)
    assert {(c.username, c.action, c.group) for c in p.changes} == {
        ("abyron", Action.UPDATE, None), ("abyron", Action.MOVE, None),
        ("abyron", Action.REMOVE_MEMBER, "Supply Staff")}


def test_a_kind_renamed_on_a_name_change_gets_a_new_name_when_the_old_one_no_longer_fits() -> None:
    rules = replace(RULES, kinds={k: replace(v, rename_on_name_change=True) for k, v in RULES.kinds.items()})
    tom = pupil("1001", "Tom", "Smith")
    p = plan_ad([tom], [settled_pupil(surname="Smith", display="Tom Smith")], groups_of("k1", PUPIL_GROUPS),
                rules)
    assert [(c.action, c.after.get("username")) for c in p.changes] == [(Action.RENAME, "19tsmith")]
