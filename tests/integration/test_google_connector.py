"""The Google connector through the real google-api-python-client and google-auth, over HTTP to
the Directory API emulator: every write, paging, batches, and what the school sees in a snapshot."""

from __future__ import annotations

import pytest

from idlifecycle.errors import ConfigError
from idlifecycle.model import Action, Outcome
from tests.integration.google_fixtures import ROOT, Tenant, change, starter, tenant_fixture  # noqa: F401


def test_new_pupil_is_created_in_their_year_org_unit_with_anchor_and_must_change_password(tenant: Tenant) -> None:
    with tenant.connector() as google:
        [result] = google.apply([starter("A1001", "amira.khan")])
        assert result.outcome is Outcome.APPLIED and result.key

        user = tenant.user("amira.khan@pupils.school.example")
        assert user["id"] == result.key
        assert user["orgUnitPath"] == f"{ROOT}/Pupils/Year 7"
        assert user["externalIds"] == [{"type": "organization", "value": "A1001"}]
        # No password was given: Google needs one, so a random one is set and must be changed.
        assert user["changePasswordAtNextLogin"] is True

        snapshot = google.snapshot()
    [account] = snapshot.accounts
    assert (account.key, account.username) == (result.key, "amira.khan")
    assert account.login == "amira.khan@pupils.school.example"
    assert (account.anchor, account.container, account.enabled) == ("A1001", "Pupils/Year 7", True)
    assert account.must_change_password and account.created is not None and account.last_sign_in is None


def test_every_change_the_school_makes_reaches_google(tenant: Tenant) -> None:
    emulator = tenant.emulator
    with tenant.connector(leavers="Leavers") as google:
        [created] = google.apply([starter("A2001", "ben.ode", password="Daffodil-Kettle-42",
                                          attributes={"department": "Year 7", "employeeType": "Pupil"})])
        key = str(created.key)
        assert emulator.directory.check_password(key, "Daffodil-Kettle-42")
        assert tenant.user(key)["changePasswordAtNextLogin"] is False

        results = list(google.apply([
            change(Action.UPDATE, key, after={"given_name": "Benjamin", "display_name": "Benjamin Ode",
                                              "attributes": {"department": "Year 8"}}),
            change(Action.CREATE_GROUP, "", group="Year 8 pupils"),
        ]))
        assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.APPLIED]
        user = tenant.user(key)
        assert user["name"]["givenName"] == "Benjamin" and user["name"]["displayName"] == "Benjamin Ode"
        assert user["organizations"] == [{"primary": True, "department": "Year 8", "description": "Pupil"}]

        steps = [
            (change(Action.RENAME, key,
                    after={"username": "benjamin.ode", "login": "benjamin.ode@pupils.school.example"}),
             lambda u: u["primaryEmail"] == "benjamin.ode@pupils.school.example"
             and u["aliases"] == ["ben.ode@pupils.school.example"]),
            (change(Action.MOVE, key, after={"container": "Pupils/Year 8"}),
             lambda u: u["orgUnitPath"] == f"{ROOT}/Pupils/Year 8"),
            (change(Action.ADD_MEMBER, key, group="Year 8 pupils"),
             lambda u: emulator.directory.member_emails("year-8-pupils@school.example") == [u["primaryEmail"]]),
            (change(Action.DISABLE, key),
             lambda u: u["suspended"] and u["orgUnitPath"] == f"{ROOT}/Leavers"
             and emulator.directory.sign_outs(key) == 1),
            (change(Action.ENABLE, key), lambda u: not u["suspended"]),
            (change(Action.SET_PASSWORD, key, after={"must_change_password": True}, password="Tulip-Ladder-77"),
             lambda u: emulator.directory.check_password(key, "Tulip-Ladder-77") and u["changePasswordAtNextLogin"]),
            (change(Action.SET_PASSWORD, key, after={"must_change_password": False}, password="Violet-Spoon-18"),
             lambda u: not u["changePasswordAtNextLogin"]),
            (change(Action.REQUIRE_PASSWORD_CHANGE, key), lambda u: u["changePasswordAtNextLogin"]),
            (change(Action.REVOKE_SESSIONS, key), lambda u: emulator.directory.sign_outs(key) == 2),
            (change(Action.REMOVE_MEMBER, key, group="Year 8 pupils"),
             lambda u: emulator.directory.member_emails("year-8-pupils@school.example") == []),
        ]
        for step, check in steps:
            [result] = google.apply([step])
            assert result.outcome is Outcome.APPLIED, (step.action, result.detail)
            assert check(tenant.user(key)), step.action

        # The old address is kept as an alias, so it is never issued to anyone else.
        snapshot = google.snapshot()
        assert "ben.ode" in snapshot.names_outside_scope
        [group] = snapshot.groups
        assert group.name == "Year 8 pupils" and dict(group.members) == {}

        # Running the same membership change again after a crash is "already so", not an error.
        [again] = google.apply([change(Action.REMOVE_MEMBER, key, group="Year 8 pupils")])
        assert again.outcome is Outcome.ALREADY

        [deleted] = google.apply([change(Action.DELETE, key)])
        assert deleted.outcome is Outcome.APPLIED
        assert emulator.directory.find_user(key) is None and key in emulator.directory.deleted
        [deleted_again] = google.apply([change(Action.DELETE, key)])
        assert deleted_again.outcome is Outcome.ALREADY


def test_adopting_an_existing_account_keeps_its_other_external_ids(tenant: Tenant) -> None:
    directory = tenant.emulator.directory
    directory.add_orgunit_path(f"{ROOT}/Staff")
    existing = directory.add_user("j.smith@school.example", "Jo", "Smith", "Existing-pass-1", org_unit=f"{ROOT}/Staff")
    existing["externalIds"] = [{"type": "network", "value": "JS-LEGACY"}]
    with tenant.connector() as google:
        [account] = google.snapshot().accounts
        assert account.anchor is None
        [result] = google.apply([change(Action.ADOPT, account.key, after={"anchor": "S0042"})])
    assert result.outcome is Outcome.APPLIED
    assert tenant.user("j.smith@school.example")["externalIds"] == [
        {"type": "network", "value": "JS-LEGACY"}, {"type": "organization", "value": "S0042"}]


def test_snapshot_pages_past_500_users_and_reports_names_held_outside_the_managed_units(tenant: Tenant) -> None:
    emulator = tenant.emulator
    emulator.seed_users(1234, "pupils.school.example", f"{ROOT}/Pupils/Year 9", prefix="pupil")
    emulator.directory.add_orgunit_path("/Governors")
    emulator.directory.add_user("chair@school.example", "Pat", "Chair", "governor-pass-1", org_unit="/Governors")
    with tenant.connector() as google:
        before = emulator.stats.calls
        snapshot = google.snapshot()
        calls = emulator.stats.calls - before
    assert len(snapshot.accounts) == 1234
    assert {a.anchor for a in snapshot.accounts} == {f"PUPIL{n:06d}" for n in range(1234)}
    assert all(a.container == "Pupils/Year 9" for a in snapshot.accounts)
    # The admin and the governor live outside the managed root: their names are never reissued.
    assert {"chair", "it.admin"} <= snapshot.names_outside_scope
    # 1,236 users at 500 a page: three pages, plus the org unit checks and the group list.
    assert calls == 3 + 2 + 1


def test_starters_go_in_batches_and_each_starter_joins_two_groups(tenant: Tenant) -> None:
    emulator = tenant.emulator
    with tenant.connector(batch_size=50) as google:
        groups = list(google.apply([change(Action.CREATE_GROUP, "", group=g) for g in ("Year 7", "Pupils")]))
        assert all(r.outcome is Outcome.APPLIED for r in groups)
        batches = emulator.stats.batches
        created = list(google.apply([starter(f"B{n:04d}", f"pupil.n{n:04d}") for n in range(120)]))
        assert all(r.outcome is Outcome.APPLIED for r in created)
        assert emulator.stats.batches - batches == 3
        joins = [change(Action.ADD_MEMBER, str(r.key), group=g) for r in created for g in ("Year 7", "Pupils")]
        sent = google.calls_sent
        assert all(r.outcome is Outcome.APPLIED for r in google.apply(joins))
        # 240 joins in batches of 50, plus the adds Google answered while still propagating the
        # starters created a moment before (sent again, in further batches).
        assert google.calls_sent - sent == 1 + 240 + google.settling_retries  # 1: the list of managed groups
        assert emulator.stats.batches - batches >= 3 + 5
        snapshot = google.snapshot()
    assert {g.name: len(g.members) for g in snapshot.groups} == {"Year 7": 120, "Pupils": 120}


def test_an_address_already_held_by_someone_else_is_not_taken_over(tenant: Tenant) -> None:
    tenant.emulator.directory.add_user("sam.lee@pupils.school.example", "Sam", "Lee", "Somebody-else-1")
    with tenant.connector() as google:
        [result] = google.apply([starter("C0001", "sam.lee")])
    assert result.outcome is Outcome.FAILED
    assert "sam.lee@pupils.school.example is already taken" in result.detail
    assert len([u for u in tenant.emulator.directory.users.values() if u["primaryEmail"].startswith("sam.lee")]) == 1


def test_a_missing_org_unit_root_is_one_clear_configuration_message(tenant: Tenant) -> None:
    with tenant.connector(org_unit_root="/Not There") as google, pytest.raises(ConfigError) as raised:
        google.snapshot()
    assert "connectors/google.toml: org_unit_root: the org unit /Not There does not exist" in str(raised.value)
