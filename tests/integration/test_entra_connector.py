"""The Entra connector through the real msal and msgraph-sdk, over HTTPS, against the Graph emulator."""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from idlifecycle.connectors.base import ConnectorContext, build_connector
from idlifecycle.connectors.entra import EntraConnector
from idlifecycle.errors import ConfigError
from idlifecycle.model import Action, Outcome
from idlifecycle.passwords.generator import throwaway
from idlifecycle.sandbox.graph import Fault, GraphEmulator
from idlifecycle.store import Store
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import MARKER, PUPILS, STAFF, change, in_order, school_seed, starter


def test_snapshot_holds_managed_accounts_and_groups_and_reserves_everyone_elses_names(entra: EntraConnector) -> None:
    snapshot = entra.snapshot()

    logins = {a.login for a in snapshot.accounts}
    assert logins == {f"jsmith@{STAFF}", f"23abrown@{PUPILS}", f"hybridteacher@{STAFF}"}
    amy = next(a for a in snapshot.accounts if a.anchor == "P001")
    assert (amy.username, amy.given_name, amy.enabled, amy.container) == ("23abrown", "Amy", True, "")
    assert amy.attributes == {"department": "Year 7", "employeeType": "pupil"}
    assert amy.created is not None and amy.password_last_set is not None
    hal = next(a for a in snapshot.accounts if a.anchor == "S002")
    assert hal.synced_from_on_premises
    assert snapshot.names_outside_scope == frozenset({"it.admin"})
    groups = {g.name: g for g in snapshot.groups}
    assert set(groups) == {"All Pupils", "All Staff", "Licence - Microsoft 365 A3 Faculty"}  # not the Chess Club
    assert groups["All Pupils"].members == {amy.key: "Amy Brown"}


def test_new_pupil_gets_an_account_with_anchor_and_first_sign_in_password_change_then_joins_groups(
        entra: EntraConnector, emulator: GraphEmulator) -> None:
    entra.snapshot()
    create = starter("P100", "25cjones", "Cara", "Jones", attributes={"department": "Year 7", "jobTitle": "Pupil"})

    [result] = list(entra.apply([create]))

    assert result.outcome is Outcome.APPLIED and result.key
    user = emulator.directory.user(f"25cjones@{PUPILS}")
    assert user["id"] == result.key
    assert (user["employeeId"], user["usageLocation"], user["department"]) == ("P100", "GB", "Year 7")
    assert user["_forceChangePasswordNextSignIn"] is True
    joins = [change(Action.ADD_MEMBER, result.key, group=g, person_id="P100")
             for g in ("All Pupils", "Licence - Microsoft 365 A3 Faculty")]
    assert [r.outcome for r in entra.apply(joins)] == [Outcome.APPLIED, Outcome.APPLIED]
    groups = {g.name: g for g in entra.snapshot().groups}
    assert result.key in groups["All Pupils"].members
    assert result.key in groups["Licence - Microsoft 365 A3 Faculty"].members
    # Running the same changes again (a resumed run) changes nothing and says so.
    assert [r.outcome for r in entra.apply([create, *joins])] == [Outcome.ALREADY] * 3


def test_teacher_who_married_is_renamed_and_keeps_her_old_address_as_an_alias(
        entra: EntraConnector, emulator: GraphEmulator) -> None:
    jo = next(a for a in entra.snapshot().accounts if a.anchor == "S001")
    update = change(Action.UPDATE, jo.key, after={"surname": "Taylor", "display_name": "Jo Taylor",
                                                  "attributes": {"jobTitle": "Head of Science"}})
    rename = change(Action.RENAME, jo.key, before={"username": "jsmith", "login": f"jsmith@{STAFF}"},
                    after={"username": "jtaylor", "login": f"jtaylor@{STAFF}"})

    assert [r.outcome for r in entra.apply([update, rename])] == [Outcome.APPLIED, Outcome.APPLIED]

    user = emulator.directory.user(jo.key)
    assert (user["userPrincipalName"], user["surname"], user["jobTitle"]) == (f"jtaylor@{STAFF}", "Taylor",
                                                                               "Head of Science")
    assert f"smtp:jsmith@{STAFF}" in user["proxyAddresses"]
    after_rename = entra.snapshot()
    renamed = next(a for a in after_rename.accounts if a.key == jo.key)
    assert (renamed.username, renamed.display_name) == ("jtaylor", "Jo Taylor")
    assert "jsmith" in after_rename.names_outside_scope  # her old address is an alias: Graph refuses it to others


def test_leaver_is_disabled_and_signed_out_then_re_enabled_when_back_on_roll(
        entra: EntraConnector, emulator: GraphEmulator) -> None:
    amy = next(a for a in entra.snapshot().accounts if a.anchor == "P001")
    emulator.directory.state["users"][amy.key]["signInSessionsValidFromDateTime"] = "2020-01-01T00:00:00Z"

    [disabled] = list(entra.apply([change(Action.DISABLE, amy.key)]))

    assert disabled.outcome is Outcome.APPLIED
    user = emulator.directory.user(amy.key)
    assert user["accountEnabled"] is False
    assert user["signInSessionsValidFromDateTime"] != "2020-01-01T00:00:00Z"
    assert not next(a for a in entra.snapshot().accounts if a.key == amy.key).enabled
    assert [r.outcome for r in entra.apply([change(Action.DISABLE, amy.key)])] == [Outcome.ALREADY]
    assert [r.outcome for r in entra.apply([change(Action.ENABLE, amy.key)])] == [Outcome.APPLIED]
    assert emulator.directory.user(amy.key)["accountEnabled"] is True


def test_two_leavers_in_one_run_are_both_disabled_and_signed_out(
        entra: EntraConnector, emulator: GraphEmulator) -> None:
    # Each leaver's disable + revokeSignInSessions is a chain; Graph refuses a whole batch that
    # holds two chains side by side ("either fully sequential or fully parallel").
    snapshot = entra.snapshot()
    leavers = [a for a in snapshot.accounts if a.anchor in ("S001", "P001")]
    for account in leavers:
        emulator.directory.state["users"][account.key]["signInSessionsValidFromDateTime"] = "2020-01-01T00:00:00Z"

    results = list(entra.apply([change(Action.DISABLE, a.key) for a in leavers]))

    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.APPLIED]
    for account in leavers:
        user = emulator.directory.user(account.key)
        assert user["accountEnabled"] is False
        assert user["signInSessionsValidFromDateTime"] != "2020-01-01T00:00:00Z"


def test_deleted_leaver_goes_to_the_recycle_bin_and_comes_back_when_she_returns(
        entra: EntraConnector, emulator: GraphEmulator) -> None:
    amy = next(a for a in entra.snapshot().accounts if a.anchor == "P001")

    assert [r.outcome for r in entra.apply([change(Action.DELETE, amy.key)])] == [Outcome.APPLIED]
    assert amy.key in emulator.directory.state["deleted"]
    snapshot = entra.snapshot()
    assert all(a.key != amy.key for a in snapshot.accounts)
    assert "23abrown" in snapshot.names_outside_scope  # the deleted account still holds its name
    assert [r.outcome for r in entra.apply([change(Action.DELETE, amy.key)])] == [Outcome.ALREADY]

    back = starter("P001", "23abrown", "Amy", "Brown")
    [result] = list(entra.apply([back]))

    assert (result.outcome, result.key) == (Outcome.APPLIED, amy.key)
    assert "restored" in result.detail
    assert len([u for u in emulator.directory.state["users"].values() if u.get("employeeId") == "P001"]) == 1
    groups = {g.name: g for g in entra.snapshot().groups}
    assert amy.key in groups["All Pupils"].members  # memberships come back with the restore


def test_hybrid_teacher_synced_from_ad_is_left_alone_except_cloud_groups_and_sessions(
        entra: EntraConnector, emulator: GraphEmulator) -> None:
    hal = next(a for a in entra.snapshot().accounts if a.anchor == "S002")
    before = emulator.directory.user(hal.key)

    results = in_order(entra, [
        change(Action.UPDATE, hal.key, after={"surname": "Hybrid-Jones"}),
        change(Action.DISABLE, hal.key),
        change(Action.REVOKE_SESSIONS, hal.key),
    ])
    member = list(entra.apply([change(Action.ADD_MEMBER, hal.key, group="All Staff")]))

    assert [r.outcome for r in results] == [Outcome.FAILED, Outcome.FAILED, Outcome.APPLIED]
    assert "synchronised from on-premises Active Directory" in results[0].detail
    assert not results[0].retryable
    assert member[0].outcome is Outcome.APPLIED
    after = emulator.directory.user(hal.key)
    assert (after["surname"], after["accountEnabled"]) == (before["surname"], before["accountEnabled"])


def test_hybrid_off_keeps_synced_accounts_out_of_scope(emulator: GraphEmulator,
                                                       make_connector: Callable[..., EntraConnector]) -> None:
    connector = make_connector(emulator, hybrid="off")

    snapshot = connector.snapshot()

    assert not connector.capabilities.hybrid
    assert "hybridteacher" in snapshot.names_outside_scope
    assert all(a.anchor != "S002" for a in snapshot.accounts)


def test_changes_made_in_the_portal_behind_the_tools_back_arrive_through_delta(
        entra: EntraConnector, emulator: GraphEmulator, store: Store) -> None:
    first = entra.snapshot()
    link = store.get_cursor("entra", "users_delta")
    assert link and "$deltatoken=" in link
    jo = next(a for a in first.accounts if a.anchor == "S001")
    amy = next(a for a in first.accounts if a.anchor == "P001")
    new_id = emulator.directory.add_user(userPrincipalName=f"newhire@{STAFF}", displayName="New Hire",
                                         givenName="New", surname="Hire")
    emulator.directory.update_user(jo.key, {"jobTitle": "Deputy Head"})
    emulator.directory.delete_user(amy.key)
    all_staff = next(g for g in first.groups if g.name == "All Staff")
    emulator.directory.remove_member_ref(all_staff.key, jo.key)
    requests_before = emulator.stats["requests"]

    second = entra.snapshot()

    # One delta page each for users and groups, and the three reads of who holds a directory role.
    assert emulator.stats["requests"] - requests_before == 2 + 3
    keys = {a.key for a in second.accounts}
    assert new_id in keys and amy.key not in keys
    assert next(a for a in second.accounts if a.key == jo.key).attributes["jobTitle"] == "Deputy Head"
    assert next(g for g in second.groups if g.name == "All Staff").members == {}
    assert store.get_cursor("entra", "users_delta") != link


def test_expired_delta_link_falls_back_to_a_full_read(entra: EntraConnector, emulator: GraphEmulator) -> None:
    first = entra.snapshot()
    emulator.directory.expire_delta_tokens()
    emulator.directory.add_user(userPrincipalName=f"late@{PUPILS}", displayName="Late Comer")

    second = entra.snapshot()

    assert len(second.accounts) == len(first.accounts) + 1


def test_a_new_connector_process_continues_from_the_stored_delta_link(
        entra: EntraConnector, emulator: GraphEmulator, make_connector: Callable[..., EntraConnector]) -> None:
    first = entra.snapshot()
    entra.close()
    emulator.directory.add_user(userPrincipalName=f"another@{PUPILS}", displayName="Another")
    requests_before = emulator.stats["requests"]

    second = make_connector(emulator).snapshot()

    assert len(second.accounts) == len(first.accounts) + 1
    assert emulator.stats["requests"] - requests_before == 2 + 3  # the deltas, and who holds directory roles


def test_large_school_is_read_across_pages(make_emulator: Callable[..., GraphEmulator],
                                           make_connector: Callable[..., EntraConnector]) -> None:
    seed = {"tenant_id": "t", "domains": [PUPILS],
            "users": [{"userPrincipalName": f"p{i:04d}@{PUPILS}", "displayName": f"Pupil {i}", "employeeId": f"P{i}"}
                      for i in range(2100)],
            "groups": [{"displayName": "All Pupils", "description": MARKER,
                        "members": [f"p{i:04d}@{PUPILS}" for i in range(2100)]}]}
    emulator = make_emulator(seed)

    snapshot = make_connector(emulator).snapshot()

    assert len(snapshot.accounts) == 2100
    assert len(snapshot.groups[0].members) == 2100
    assert emulator.stats["requests"] >= 4  # 999-user pages: at least three for users


def test_admin_role_holders_are_listed_for_the_access_review(entra: EntraConnector) -> None:
    holders = entra.privileged_roles()

    assert [(h.role, h.username) for h in holders] == [("Global Administrator", "it.admin@example.org")]


def test_group_the_school_made_by_hand_is_not_taken_over(entra: EntraConnector) -> None:
    entra.snapshot()
    create = change(Action.CREATE_GROUP, None, group="Chess Club", after={"name": "Chess Club"})
    new = change(Action.CREATE_GROUP, None, group="Year 7 Pupils", after={"name": "Year 7 Pupils"})

    results = in_order(entra, [create, new])

    assert results[0].outcome is Outcome.FAILED and MARKER in results[0].detail
    assert results[1].outcome is Outcome.APPLIED and results[1].key
    assert "Year 7 Pupils" in {g.name for g in entra.snapshot().groups}
    assert next(iter(entra.apply([new]))).outcome is Outcome.ALREADY


def test_sandbox_mode_starts_its_own_tenant_and_keeps_it_between_runs(tmp_path: Path, store: Store) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text('{"tenant_id": "demo", "domains": ["pupils.example.sch.uk"], "users": ['
                    '{"userPrincipalName": "old@pupils.example.sch.uk", "displayName": "Old One"}]}')
    (tmp_path / "entra-sandbox.toml").write_text("")
    context = ConnectorContext(name="entra", type="entra", source=str(tmp_path / "entra-sandbox.toml"),
                               options={"sandbox": True, "seed": "seed.json", "domains": {"pupil": PUPILS}},
                               cursors=store, state_dir=tmp_path / "state", password_generator=throwaway)
    # The older spelling of `type = "entra-sandbox"`: the launcher starts the tenant, the real connector reads it.
    with build_connector(context) as connector:
        assert isinstance(connector, EntraConnector)
        assert [a.login for a in connector.snapshot().accounts] == [f"old@{PUPILS}"]
        [result] = list(connector.apply([starter("P9", "new", "New", "One")]))
        assert result.outcome is Outcome.APPLIED
    secret_file = tmp_path / "state" / "entra-entra" / "client_secret"
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600

    with build_connector(replace(context, type="entra-sandbox", options={"seed": "seed.json",
                                                                       "domains": {"pupil": PUPILS}})) as again:
        assert sorted(a.login for a in again.snapshot().accounts) == [f"new@{PUPILS}", f"old@{PUPILS}"]


def test_new_teacher_gets_a_licence_directly_where_the_school_has_no_licence_groups(
        emulator: GraphEmulator, make_connector: Callable[..., EntraConnector]) -> None:
    sku = "94763226-9b3c-4e75-a931-5c89701abe66"
    entra = make_connector(emulator, assign_licences={"staff": [sku]})
    entra.snapshot()

    [result] = list(entra.apply([starter("S100", "nteacher", "New", "Teacher", domain=STAFF)]))

    assert result.outcome is Outcome.APPLIED
    assert [lic["skuId"] for lic in emulator.directory.user(result.key)["assignedLicenses"]] == [sku]


def test_password_reset_meets_entras_rule_and_a_weak_one_is_refused_without_echoing_it(
        entra: EntraConnector, emulator: GraphEmulator) -> None:
    amy = next(a for a in entra.snapshot().accounts if a.anchor == "P001")
    weak = change(Action.SET_PASSWORD, amy.key, after={"must_change_password": True}, password="amybrown1")
    strong = change(Action.SET_PASSWORD, amy.key, after={"must_change_password": False},
                    password="Sunny-Days-2026")
    emulator.directory.state["users"][amy.key]["lastPasswordChangeDateTime"] = "2020-01-01T00:00:00Z"

    refused, applied = list(entra.apply([weak])) + list(entra.apply([strong]))
    forced = list(entra.apply([change(Action.REQUIRE_PASSWORD_CHANGE, amy.key)]))

    assert refused.outcome is Outcome.FAILED and "complexity" in refused.detail
    assert "amybrown1" not in refused.detail and not refused.retryable
    assert applied.outcome is Outcome.APPLIED and forced[0].outcome is Outcome.APPLIED
    user = emulator.directory.user(amy.key)
    assert user["lastPasswordChangeDateTime"] != "2020-01-01T00:00:00Z"
    assert user["_forceChangePasswordNextSignIn"] is True


def test_last_sign_in_is_read_for_the_access_review_when_asked(
        emulator: GraphEmulator, make_connector: Callable[..., EntraConnector]) -> None:
    jo = emulator.directory.user(f"jsmith@{STAFF}")
    emulator.directory.state["users"][jo["id"]]["signInActivity"] = {"lastSignInDateTime": "2026-10-01T08:15:00Z"}

    snapshot = make_connector(emulator, sign_in_activity=True).snapshot()

    account = next(a for a in snapshot.accounts if a.key == jo["id"])
    assert account.last_sign_in is not None and account.last_sign_in.isoformat() == "2026-10-01T08:15:00+00:00"


def test_attribute_users_delta_cannot_read_is_refused_when_the_job_loads(
        emulator: GraphEmulator, make_connector: Callable[..., EntraConnector]) -> None:
    with pytest.raises(ConfigError, match=r"attributes.*'birthday'.*users/delta"):
        make_connector(emulator, attributes=["department", "birthday"])


def test_delta_link_that_expired_over_half_term_means_one_full_read_noted_in_the_log(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector],
        caplog: pytest.LogCaptureFixture) -> None:
    emulator = make_emulator(delta_token_ttl=0.5)
    entra = make_connector(emulator)
    first = entra.snapshot()
    emulator.directory.add_user(userPrincipalName=f"autumn@{PUPILS}", displayName="Autumn Starter")
    time.sleep(0.6)  # half-term: longer than the links live

    with caplog.at_level(logging.WARNING, logger="idlifecycle.connectors.entra"):
        second = entra.snapshot()

    assert len(second.accounts) == len(first.accounts) + 1
    assert any("reading the whole directory once" in r.getMessage() for r in caplog.records)


def test_delta_link_refused_with_another_client_error_means_one_full_read_not_a_failed_night(
        emulator: GraphEmulator, entra: EntraConnector, caplog: pytest.LogCaptureFixture) -> None:
    first = entra.snapshot()
    emulator.directory.add_user(userPrincipalName=f"later@{PUPILS}", displayName="Later Starter")
    emulator.faults.append(Fault("GET", r"^/v1\.0/users/delta$", mode="status", status=400))

    with caplog.at_level(logging.WARNING, logger="idlifecycle.connectors.entra"):
        second = entra.snapshot()

    assert len(second.accounts) == len(first.accounts) + 1
    assert any("refused the stored users delta link" in r.getMessage() for r in caplog.records)


def test_without_entra_id_p1_sign_in_activity_is_skipped_with_a_note_not_an_aborted_snapshot(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector],
        caplog: pytest.LogCaptureFixture) -> None:
    emulator = make_emulator({**school_seed(), "premium": False})  # e.g. Microsoft 365 A1 only

    with caplog.at_level(logging.WARNING, logger="idlifecycle.connectors.entra"):
        snapshot = make_connector(emulator, sign_in_activity=True).snapshot()

    assert {a.anchor for a in snapshot.accounts} == {"S001", "P001", "S002"}
    assert all(a.last_sign_in is None for a in snapshot.accounts)
    assert any("no Entra ID P1" in r.getMessage() for r in caplog.records)
