"""The Entra connector when Graph throttles, loses replies or refuses to sign us in (real msal + msgraph-sdk)."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from idlifecycle.connectors.base import AuthError
from idlifecycle.connectors.entra import EntraConnector
from idlifecycle.model import Action, Outcome
from idlifecycle.sandbox.graph import Fault, GraphEmulator
from idlifecycle.sandbox.tls import make_key_and_certificate
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_ID, CLIENT_SECRET, PUPILS, STAFF, change, in_order, starter


def _pupils(emulator: GraphEmulator) -> list[dict[str, object]]:
    return [u for u in emulator.directory.state["users"].values() if u["userPrincipalName"].endswith(PUPILS)]


def test_september_intake_throttled_mid_batch_is_finished_after_retry_after_without_duplicates(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector]) -> None:
    emulator = make_emulator(write_limit=10, write_window=1.0)
    entra = make_connector(emulator, write_limit_per_second=1000)  # paced too fast on purpose: Graph must push back
    intake = [starter(f"P2{i:03d}", f"25pupil{i}", "New", f"Pupil{i}") for i in range(30)]

    results = list(entra.apply(intake))

    assert [r.outcome for r in results] == [Outcome.APPLIED] * 30
    assert emulator.stats["throttled"] > 0
    assert len(_pupils(emulator)) == 31  # Amy plus 30, each once
    assert len({r.key for r in results}) == 30


def test_throttling_without_retry_after_backs_off_and_still_finishes(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector]) -> None:
    emulator = make_emulator(write_limit=8, write_window=1.0, send_retry_after=False)
    entra = make_connector(emulator, write_limit_per_second=1000)

    results = list(entra.apply([starter(f"P3{i:03d}", f"25late{i}", "Late", f"Pupil{i}") for i in range(12)]))

    assert {r.outcome for r in results} == {Outcome.APPLIED}
    assert emulator.stats["throttled"] > 0


def test_pacing_under_the_write_limit_provokes_no_throttling(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector]) -> None:
    emulator = make_emulator(write_limit=40, write_window=1.0)
    entra = make_connector(emulator, write_limit_per_second=20)

    results = list(entra.apply([starter(f"P4{i:03d}", f"25calm{i}", "Calm", f"Pupil{i}") for i in range(30)]))

    assert {r.outcome for r in results} == {Outcome.APPLIED}
    assert emulator.stats["throttled"] == 0


def test_create_whose_reply_is_lost_after_graph_made_the_account_is_not_made_twice(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    emulator.faults.append(Fault("POST", r"^/v1\.0/users$", mode="drop_after"))

    [result] = list(entra.apply([starter("P500", "25lost", "Lost", "Reply")]))

    assert result.outcome is Outcome.APPLIED
    made = [u for u in _pupils(emulator) if u.get("employeeId") == "P500"]
    assert len(made) == 1 and made[0]["id"] == result.key


def test_create_that_timed_out_after_graph_made_the_account_is_not_made_twice(
        emulator: GraphEmulator, make_connector: Callable[..., EntraConnector]) -> None:
    entra = make_connector(emulator, timeout_seconds=1)
    emulator.faults.append(Fault("POST", r"^/v1\.0/users$", mode="hang_after", delay=2.5))

    [result] = list(entra.apply([starter("P503", "25hung", "Hung", "Reply")]))

    assert result.outcome is Outcome.APPLIED
    assert [u["id"] for u in _pupils(emulator) if u.get("employeeId") == "P503"] == [result.key]


def test_create_answered_with_a_gateway_timeout_after_it_happened_is_not_made_twice(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    emulator.faults.append(Fault("POST", r"^/v1\.0/users$", mode="after", status=504))

    [result] = list(entra.apply([starter("P501", "25slow", "Slow", "Gateway")]))

    assert result.outcome is Outcome.APPLIED
    assert len([u for u in _pupils(emulator) if u.get("employeeId") == "P501"]) == 1


def test_whole_batch_answered_503_after_it_ran_is_not_resent_blindly_by_the_sdk(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    emulator.faults.append(Fault("POST", r"^/v1\.0/\$batch$", mode="after", status=503, retry_after=0))

    [result] = list(entra.apply([starter("P504", "25whole", "Whole", "Batch")]))

    # Found by its anchor before anything was sent again: had the SDK resent the POST, Graph would
    # have answered "duplicate UPN" and the outcome would read "already existed".
    assert (result.outcome, result.detail) == (Outcome.APPLIED, "")
    assert emulator.stats["batches"] == 1
    assert len([u for u in _pupils(emulator) if u.get("employeeId") == "P504"]) == 1


def test_create_refused_with_503_before_it_happened_is_sent_again(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    emulator.faults.append(Fault("POST", r"^/v1\.0/users$", mode="status", status=503, retry_after=0))

    [result] = list(entra.apply([starter("P502", "25busy", "Busy", "Service")]))

    assert result.outcome is Outcome.APPLIED
    assert len([u for u in _pupils(emulator) if u.get("employeeId") == "P502"]) == 1


def test_account_made_by_a_crashed_earlier_run_is_adopted_and_someone_elses_is_a_conflict(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    entra.snapshot()
    mine = emulator.directory.add_user(userPrincipalName=f"25ghost@{PUPILS}", displayName="G", employeeId="P600")
    emulator.directory.add_user(userPrincipalName=f"25taken@{PUPILS}", displayName="T", employeeId="P999")
    emulator.directory.add_user(userPrincipalName=f"25bare@{PUPILS}", displayName="B")
    # The plan's snapshot did not see them: Graph's duplicate-UPN answer is what the connector acts on.
    creates = [starter("P600", "25ghost", "G", "Host"), starter("P601", "25taken", "T", "Aken"),
               starter("P602", "25bare", "B", "Are")]

    results = in_order(entra, creates)

    assert (results[0].outcome, results[0].key) == (Outcome.ALREADY, mine)
    assert results[1].outcome is Outcome.FAILED and "anchor 'P999'" in results[1].detail
    assert results[2].outcome is Outcome.FAILED and "without an anchor" in results[2].detail
    assert not results[1].retryable


def test_forty_five_new_members_go_in_three_requests(emulator: GraphEmulator, entra: EntraConnector) -> None:
    keys = [emulator.directory.add_user(userPrincipalName=f"m{i}@{PUPILS}", displayName=f"M {i}") for i in range(45)]
    entra.snapshot()
    writes_before = emulator.stats["writes"]

    results = list(entra.apply([change(Action.ADD_MEMBER, k, group="All Pupils") for k in keys]))

    assert {r.outcome for r in results} == {Outcome.APPLIED}
    assert emulator.stats["writes"] - writes_before == 3
    group = next(g for g in emulator.directory.state["groups"].values() if g["displayName"] == "All Pupils")
    assert set(keys) <= set(group["members"])


def test_member_added_by_hand_meanwhile_does_not_sink_the_other_nineteen(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    keys = [emulator.directory.add_user(userPrincipalName=f"n{i}@{PUPILS}", displayName=f"N {i}") for i in range(20)]
    snapshot = entra.snapshot()
    group = next(g for g in snapshot.groups if g.name == "All Pupils")
    emulator.directory.add_member_ref(group.key, {"@odata.id": f"{emulator.graph_url}/directoryObjects/{keys[7]}"})
    removal = change(Action.REMOVE_MEMBER, next(iter(group.members)), group="All Pupils")

    results = in_order(entra, [*(change(Action.ADD_MEMBER, k, group="All Pupils") for k in keys), removal])

    outcomes = [r.outcome for r in results]
    assert outcomes[7] is Outcome.ALREADY
    assert outcomes.count(Outcome.APPLIED) == 20  # 19 adds and the removal
    assert set(emulator.directory.group_member_ids(group.key)) == set(keys)


def test_removal_whose_reply_was_lost_and_whose_resends_ran_out_is_unconfirmed_not_failed(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    # The first DELETE lands and its answer is a gateway timeout; every resend is refused until the tries
    # run out. Recorded plainly failed, the removal that landed would be in no audit entry: the next plan
    # no longer has it to do (seen on CI in the faulted night). Unconfirmed, the next run looks and audits it.
    group = next(g for g in entra.snapshot().groups if g.name == "All Pupils")
    member = next(iter(group.members))
    emulator.faults += [Fault("DELETE", r"/members/.*\$ref$", mode="after", status=504),
                        Fault("DELETE", r"/members/.*\$ref$", mode="status", status=503, times=20, retry_after=0)]

    [result] = list(entra.apply([change(Action.REMOVE_MEMBER, member, group="All Pupils")]))

    assert result.outcome is Outcome.FAILED and result.unconfirmed, result
    assert member not in emulator.directory.group_member_ids(group.key)


def test_removal_refused_without_having_been_sent_before_is_plainly_failed(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    group = next(g for g in entra.snapshot().groups if g.name == "All Pupils")
    member = next(iter(group.members))
    emulator.faults.append(Fault("DELETE", r"/members/.*\$ref$", mode="status", status=403))

    [result] = list(entra.apply([change(Action.REMOVE_MEMBER, member, group="All Pupils")]))

    assert result.outcome is Outcome.FAILED and not result.unconfirmed, result
    assert member in emulator.directory.group_member_ids(group.key)


def test_snapshot_survives_a_dropped_connection_and_a_busy_graph(emulator: GraphEmulator,
                                                                 entra: EntraConnector) -> None:
    emulator.faults += [Fault("GET", r"^/v1\.0/users/delta$", mode="drop"),
                        Fault("GET", r"^/v1\.0/groups/delta$", mode="status", status=503, retry_after=1)]

    snapshot = entra.snapshot()

    assert {a.anchor for a in snapshot.accounts} == {"S001", "P001", "S002"}
    assert {g.name for g in snapshot.groups} >= {"All Pupils"}
    assert all(f.times == 0 for f in emulator.faults)


def test_wrong_tenant_id_says_where_to_find_the_right_one(
        emulator: GraphEmulator, make_connector: Callable[..., EntraConnector]) -> None:
    entra = make_connector(emulator, tenant_id="00000000-dead-beef-0000-000000000000")

    with pytest.raises(AuthError, match=r"tenant_id: tenant '00000000-dead-beef-0000-000000000000' was not found"):
        entra.snapshot()


def test_wrong_client_secret_names_the_secret_not_its_value(
        emulator: GraphEmulator, make_connector: Callable[..., EntraConnector]) -> None:
    entra = make_connector(emulator, secrets={"entra_client_secret": "hunter2-wrong"})

    with pytest.raises(AuthError) as raised:
        entra.snapshot()

    assert "entra_client_secret" in str(raised.value) and "wrong or has expired" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_missing_admin_consent_names_the_permission(
        emulator: GraphEmulator, make_connector: Callable[..., EntraConnector]) -> None:
    emulator.register_application(CLIENT_ID, roles=("User.ReadWrite.All", "Group.Create",
                                                    "RoleManagement.Read.Directory"))
    entra = make_connector(emulator)

    with pytest.raises(AuthError, match=r"lacks admin consent .*GroupMember\.ReadWrite\.All.*Grant admin consent"):
        entra.snapshot()
    [result] = list(entra.apply([change(Action.DISABLE, "x")]))
    assert result.outcome is Outcome.FAILED and "GroupMember.ReadWrite.All" in result.detail


def test_certificate_sign_in_works_and_an_unregistered_certificate_is_refused(
        emulator: GraphEmulator, make_connector: Callable[..., EntraConnector], tmp_path: Path) -> None:
    key_pem, cert_pem = make_key_and_certificate("idlifecycle entra")
    emulator.register_application("cert-app", certificate_pem=cert_pem.decode())
    (tmp_path / "entra.pem").write_bytes(cert_pem)
    entra = make_connector(emulator, client_id="cert-app", certificate="entra.pem",
                           secrets={"entra_certificate_key": key_pem.decode()})
    assert {a.anchor for a in entra.snapshot().accounts} >= {"S001", "P001"}

    other_key, other_cert = make_key_and_certificate("someone else")
    (tmp_path / "other.pem").write_bytes(other_cert)
    stranger = make_connector(emulator, client_id="cert-app", certificate="other.pem",
                              secrets={"entra_certificate_key": other_key.decode()})
    with pytest.raises(AuthError, match="certificate"):
        stranger.snapshot()


def test_emulator_answers_like_graph_to_oversized_batches_absolute_urls_and_big_binds(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    token = entra.session.token()
    assert emulator.certificate is not None
    trust = ssl.create_default_context(cafile=str(emulator.certificate.cert))
    with httpx.Client(verify=trust, headers={"Authorization": f"Bearer {token}"}) as http:
        too_many = {"requests": [{"id": str(i), "method": "GET", "url": "/users"} for i in range(21)]}
        assert http.post(f"{emulator.graph_url}/$batch", json=too_many).status_code == 400
        absolute = {"requests": [{"id": "1", "method": "GET", "url": f"{emulator.graph_url}/users"},
                                 {"id": "2", "method": "GET", "url": "/users?$top=1"}]}
        replies = {r["id"]: r for r in http.post(f"{emulator.graph_url}/$batch", json=absolute).json()["responses"]}
        assert (replies["1"]["status"], replies["2"]["status"]) == (400, 200)
        group = next(iter(emulator.directory.state["groups"]))
        binds = {"members@odata.bind": [f"{emulator.graph_url}/directoryObjects/{i}" for i in range(21)]}
        assert http.patch(f"{emulator.graph_url}/groups/{group}", json=binds).status_code == 400
        duplicate = http.post(f"{emulator.graph_url}/users", json={
            "accountEnabled": True, "displayName": "Dup", "mailNickname": "dup",
            "userPrincipalName": f"jsmith@{STAFF}", "passwordProfile": {"password": "Abcdef12!"}})
        assert duplicate.status_code == 400
        assert duplicate.json()["error"]["code"] == "Request_BadRequest"
        assert http.get(f"{emulator.graph_url}/users/nobody").json()["error"]["code"] == "Request_ResourceNotFound"


def test_member_add_right_after_the_create_waits_out_replication_and_is_applied(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector]) -> None:
    emulator = make_emulator(replication_window=1.5)
    entra = make_connector(emulator)
    entra.snapshot()

    [created] = list(entra.apply([starter("P700", "25quick", "Quick", "Join")]))
    joins = list(entra.apply([change(Action.ADD_MEMBER, created.key, group="All Pupils", person_id="P700")]))

    assert created.outcome is Outcome.APPLIED
    assert [(r.outcome, r.detail) for r in joins] == [(Outcome.APPLIED, "")]  # not "no longer exists"
    assert entra.session.replication_retries > 0
    group = next(g for g in emulator.directory.state["groups"].values() if g["displayName"] == "All Pupils")
    assert created.key in group["members"]


def test_member_add_for_an_account_deleted_before_this_run_is_still_gone_at_once(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    amy = next(a for a in entra.snapshot().accounts if a.anchor == "P001")
    emulator.directory.delete_user(amy.key)  # behind the tool's back, after the snapshot

    started = time.monotonic()
    [result] = list(entra.apply([change(Action.ADD_MEMBER, amy.key, group="All Staff")]))

    assert result.outcome is Outcome.FAILED and "no longer exists" in result.detail
    assert entra.session.replication_retries == 0 and time.monotonic() - started < 3


def test_licence_assigned_right_after_the_create_waits_out_replication(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector]) -> None:
    sku = "94763226-9b3c-4e75-a931-5c89701abe66"
    emulator = make_emulator(replication_window=1.5)
    entra = make_connector(emulator, assign_licences={"staff": [sku]})
    entra.snapshot()

    [result] = list(entra.apply([starter("S700", "nlicensed", "New", "Licensed", domain=STAFF)]))

    assert (result.outcome, result.detail) == (Outcome.APPLIED, "")
    assert [lic["skuId"] for lic in emulator.directory.user(result.key)["assignedLicenses"]] == [sku]


def test_licence_that_could_not_be_assigned_fails_the_create_and_the_next_run_assigns_it(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector]) -> None:
    sku = "94763226-9b3c-4e75-a931-5c89701abe66"
    emulator = make_emulator(replication_window=0.5)
    entra = make_connector(emulator, assign_licences={"staff": [sku]})
    entra.snapshot()
    emulator.faults.append(Fault("POST", r"/assignLicense$", mode="status", status=400))
    create = starter("S701", "nunlicensed", "New", "Unlicensed", domain=STAFF)

    [failed] = list(entra.apply([create]))

    assert failed.outcome is Outcome.FAILED and failed.retryable and "licence" in failed.detail
    assert failed.key and emulator.directory.user(failed.key)["assignedLicenses"] == []
    entra.close()
    time.sleep(0.5)  # the night: replication has long finished
    # The next night: the unfinished account is left out of the snapshot, so the plan has the create again.
    tomorrow = make_connector(emulator, assign_licences={"staff": [sku]})
    unfinished = tomorrow.snapshot()
    assert "S701" not in {a.anchor for a in unfinished.accounts}
    assert "nunlicensed" in unfinished.names_outside_scope  # its name stays taken meanwhile
    [again] = list(tomorrow.apply([create]))
    assert (again.outcome, again.key) == (Outcome.APPLIED, failed.key)
    assert [lic["skuId"] for lic in emulator.directory.user(failed.key)["assignedLicenses"]] == [sku]
    assert "S701" in {a.anchor for a in tomorrow.snapshot().accounts}
    assert len([u for u in emulator.directory.state["users"].values() if u.get("employeeId") == "S701"]) == 1


def test_app_without_the_user_administrator_role_is_told_once_and_no_password_change_is_sent(
        emulator: GraphEmulator, make_connector: Callable[..., EntraConnector]) -> None:
    emulator.register_application(CLIENT_ID, secret=CLIENT_SECRET, directory_roles=())
    entra = make_connector(emulator)
    accounts = {a.anchor: a for a in entra.snapshot().accounts}
    amy, jo = accounts["P001"], accounts["S001"]
    writes_before = emulator.stats["writes"]

    results = in_order(entra, [
        change(Action.SET_PASSWORD, amy.key, after={"must_change_password": True}, password="Sunny-Days-2026"),
        change(Action.REQUIRE_PASSWORD_CHANGE, jo.key),
        change(Action.UPDATE, amy.key, after={"attributes": {"department": "Year 8"}}),
    ])

    assert [r.outcome for r in results] == [Outcome.FAILED, Outcome.FAILED, Outcome.APPLIED]
    assert results[0].detail == results[1].detail
    assert "User Administrator" in results[0].detail and "may not set passwords" in results[0].detail
    assert emulator.stats["writes"] - writes_before == 1  # only the update: no password change was attempted


def test_a_proxys_403_page_on_a_batch_is_not_read_as_graph_refusing_and_is_sent_again(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    amy = next(a for a in entra.snapshot().accounts if a.anchor == "P001")
    emulator.faults.append(Fault("POST", r"^/v1\.0/\$batch$", mode="status", status=403, html=True, retry_after=0))

    [result] = list(entra.apply([change(Action.DISABLE, amy.key)]))

    assert result.outcome is Outcome.APPLIED
    assert emulator.directory.user(amy.key)["accountEnabled"] is False
    assert emulator.faults[0].times == 0


def test_a_proxys_403_page_on_a_read_is_asked_again_not_a_missing_permission(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    emulator.faults.append(Fault("GET", r"^/v1\.0/users/delta$", mode="status", status=403, html=True))

    snapshot = entra.snapshot()

    assert {a.anchor for a in snapshot.accounts} == {"S001", "P001", "S002"}
    assert emulator.faults[0].times == 0


def test_graphs_own_403_is_still_a_missing_permission(emulator: GraphEmulator, entra: EntraConnector) -> None:
    emulator.faults.append(Fault("GET", r"^/v1\.0/users/delta$", mode="status", status=403))

    with pytest.raises(AuthError, match=r"User\.ReadWrite\.All"):
        entra.snapshot()


def _groups_named(emulator: GraphEmulator, name: str) -> list[dict[str, object]]:
    return [g for g in emulator.directory.state["groups"].values() if g["displayName"] == name]


def test_group_create_whose_reply_is_lost_is_found_after_replication_not_made_twice(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    entra.snapshot()
    emulator.faults.append(Fault("POST", r"^/v1\.0/groups$", mode="drop_after"))
    create = change(Action.CREATE_GROUP, None, group="Year 8 Pupils", after={"name": "Year 8 Pupils"})

    [result] = list(entra.apply([create]))

    assert result.outcome is Outcome.APPLIED
    [group] = _groups_named(emulator, "Year 8 Pupils")
    assert group["id"] == result.key


def test_group_create_still_unseen_after_a_lost_reply_waits_for_the_next_run_instead_of_making_a_twin(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector]) -> None:
    emulator = make_emulator(replication_window=6.0)  # longer than the connector looks for it (3.5 s)
    entra = make_connector(emulator)
    entra.snapshot()
    emulator.faults.append(Fault("POST", r"^/v1\.0/groups$", mode="drop_after"))
    create = change(Action.CREATE_GROUP, None, group="Year 9 Pupils", after={"name": "Year 9 Pupils"})
    started = time.monotonic()

    [undecided] = list(entra.apply([create]))

    assert undecided.outcome is Outcome.FAILED and undecided.retryable and "next run" in undecided.detail
    assert undecided.unconfirmed  # left `started`: the next run's reconcile audits the create if it landed
    assert len(_groups_named(emulator, "Year 9 Pupils")) == 1
    # The next run, once replication is done: its snapshot shows the group, so nothing is created again.
    time.sleep(6.0 - (time.monotonic() - started))
    assert "Year 9 Pupils" in {g.name for g in entra.snapshot().groups}
    assert next(iter(entra.apply([create]))).outcome is Outcome.ALREADY
    assert len(_groups_named(emulator, "Year 9 Pupils")) == 1


def test_new_group_meeting_an_old_deleted_account_is_not_held_up_by_replication_retries(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    amy = next(a for a in entra.snapshot().accounts if a.anchor == "P001")
    [made] = list(entra.apply([change(Action.CREATE_GROUP, None, group="Year 10 Pupils",
                                      after={"name": "Year 10 Pupils"})]))
    emulator.directory.delete_user(amy.key)  # behind the tool's back, before tonight's member add

    started = time.monotonic()
    [result] = list(entra.apply([change(Action.ADD_MEMBER, amy.key, group="Year 10 Pupils")]))

    # Graph's 404 names Amy, made long before this run: gone, not replicating (the new group is).
    assert made.outcome is Outcome.APPLIED
    assert result.outcome is Outcome.FAILED and "no longer exists" in result.detail
    assert time.monotonic() - started < 10


def test_whole_batch_of_creates_refused_before_it_ran_is_looked_up_side_by_side_then_sent_again(
        emulator: GraphEmulator, entra: EntraConnector) -> None:
    entra.snapshot()
    emulator.faults.append(Fault("POST", r"^/v1\.0/\$batch$", mode="status", status=503, retry_after=0))
    intake = [starter(f"P8{i:02d}", f"25side{i}", "Side", f"By{i}") for i in range(20)]

    started = time.monotonic()
    results = list(entra.apply(intake))

    # Each create is looked for (over a few seconds, for replication) before it is sent again;
    # one at a time, twenty lookups would take over a minute.
    assert [r.outcome for r in results] == [Outcome.APPLIED] * 20
    assert time.monotonic() - started < 20
    assert len([u for u in _pupils(emulator) if str(u.get("employeeId", "")).startswith("P8")]) == 20
