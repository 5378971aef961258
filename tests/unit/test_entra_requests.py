"""What each Entra change sends and how Graph's replies read, without HTTP: the pure builders of
connectors/entra/requests.py, and the refusal table (session.REFUSALS) they read failures through."""

from __future__ import annotations

from typing import Any

import pytest

from idlifecycle.anchors import directory_anchor
from idlifecycle.connectors.base import AuthError, ConnectorContext
from idlifecycle.connectors.entra import requests
from idlifecycle.connectors.entra.connector import HANDLERS
from idlifecycle.connectors.entra.graph import BatchRequest, GraphResponse
from idlifecycle.connectors.entra.requests import Decided, Send
from idlifecycle.connectors.entra.session import refused
from idlifecycle.connectors.entra.settings import EntraSettings, read_settings
from idlifecycle.errors import ConfigError
from idlifecycle.model import Action, Change, Outcome

SETTINGS = EntraSettings(domains={"staff": "staff.example.sch.uk", "pupil": "pupils.example.sch.uk"},
                         assign_licences={"pupil": ["sku-a1"]})
KEY = "0f0f0f0f-0000-4000-8000-000000000001"
AMY = {"id": KEY, "userPrincipalName": "23abrown@pupils.example.sch.uk", "givenName": "Amy", "surname": "Brown",
       "displayName": "Amy Brown", "employeeId": "P001", "accountEnabled": True, "department": "Year 7"}


def change(action: Action, *, target: str | None = KEY, **fields: Any) -> Change:
    return Change(directory="entra", action=action, person_id=fields.pop("person_id", "P001"), username="23abrown",
                  reason="test", target=target, **fields)


def graph_error(status: int, code: str = "", message: str = "") -> GraphResponse:
    return GraphResponse(status, {}, {"error": {"code": code, "message": message}})


def test_every_change_to_an_existing_account_has_a_handler_and_none_reads_the_network() -> None:
    assert set(HANDLERS) == {Action.ADOPT, Action.UPDATE, Action.RENAME, Action.ENABLE, Action.DISABLE,
                             Action.DELETE, Action.SET_PASSWORD, Action.REQUIRE_PASSWORD_CHANGE,
                             Action.REVOKE_SESSIONS}


def test_disabling_sends_the_patch_then_revokes_sessions_and_an_already_disabled_account_is_left_alone() -> None:
    plan = requests.disable(change(Action.DISABLE), AMY, SETTINGS)

    assert isinstance(plan, Send)
    assert [(r.method, r.url, r.body) for r in plan.requests] == [
        ("PATCH", f"/users/{KEY}", {"accountEnabled": False}), ("POST", f"/users/{KEY}/revokeSignInSessions", None)]
    assert requests.disable(change(Action.DISABLE), {**AMY, "accountEnabled": False}, SETTINGS) == Decided(
        Outcome.ALREADY)


def test_an_update_sends_only_what_differs_and_clears_an_emptied_attribute() -> None:
    wanted = change(Action.UPDATE, after={"display_name": "Amy Brown-Smith", "attributes": {"department": ""}})

    plan = requests.update(wanted, AMY, SETTINGS)

    assert isinstance(plan, Send)
    assert plan.requests[0].body == {"displayName": "Amy Brown-Smith", "department": None}
    same = change(Action.UPDATE, after={"display_name": "Amy Brown", "attributes": {"department": "Year 7"}})
    assert requests.update(same, AMY, SETTINGS) == Decided(Outcome.ALREADY)


def test_a_synced_account_refuses_a_name_change_but_not_a_session_revoke() -> None:
    synced = {**AMY, "onPremisesSyncEnabled": True}

    plan = requests.update(change(Action.UPDATE, after={"surname": "Green"}), synced, SETTINGS)

    assert isinstance(plan, Decided) and plan.outcome is Outcome.FAILED
    assert "synchronised from on-premises Active Directory" in plan.detail and "in AD" in plan.detail
    assert isinstance(requests.revoke_sessions(change(Action.REVOKE_SESSIONS), synced, SETTINGS), Send)


def test_a_rename_that_differs_only_in_case_is_sent() -> None:
    login = "23ABrown@pupils.example.sch.uk"
    plan = requests.rename(change(Action.RENAME, after={"login": login, "username": "23ABrown"}), AMY, SETTINGS)

    assert isinstance(plan, Send)
    assert plan.requests[0].body == {"userPrincipalName": login, "mailNickname": "23ABrown"}


def test_a_long_person_id_is_written_as_its_short_anchor_with_the_full_id_beside_it() -> None:
    person = "5e6f7a8b-0000-4000-8000-00000000abcd"

    fields = requests.anchor_fields(person, "extensionAttribute15")

    assert fields == {"employeeId": directory_anchor(person, 16),
                      "onPremisesExtensionAttributes": {"extensionAttribute15": person}}
    assert requests.anchor_fields("P001", "extensionAttribute15") == {"employeeId": "P001"}
    assert requests.anchor_fields(person, "") == {"employeeId": directory_anchor(person, 16)}


def test_a_create_is_one_post_with_its_kinds_licence_after_it_and_the_password_to_change_at_first_sign_in() -> None:
    new = change(Action.CREATE, target=None, after={
        "username": "24cgreen", "login": "24cgreen@pupils.example.sch.uk", "given_name": "Cal", "surname": "Green",
        "display_name": "Cal Green", "attributes": {"department": "Year 7"}, "enabled": True, "anchor": "P009"})

    post, licence = requests.create_requests(new, SETTINGS, "Throwaway-Pass-1")

    assert (post.method, post.url) == ("POST", "/users")
    assert post.body["employeeId"] == "P009" and post.body["usageLocation"] == "GB"
    assert post.body["passwordProfile"] == {"password": "Throwaway-Pass-1", "forceChangePasswordNextSignIn": True}
    assert post.body["department"] == "Year 7" and "surname" in post.body
    assert (licence.method, licence.url) == ("POST", "/users/24cgreen%40pupils.example.sch.uk/assignLicense")
    assert licence.body == {"addLicenses": [{"skuId": "sku-a1", "disabledPlans": []}], "removeLicenses": []}
    staff = change(Action.CREATE, target=None, after={**new.after, "login": "cgreen@staff.example.sch.uk"})
    assert len(requests.create_requests(staff, SETTINGS, "Throwaway-Pass-1")) == 1


def test_a_delete_answered_404_is_already_done_unless_its_own_earlier_reply_was_lost() -> None:
    delete = change(Action.DELETE)
    plan = requests.delete(delete, AMY, SETTINGS)
    assert isinstance(plan, Send)
    gone = [graph_error(404, "Request_ResourceNotFound")]

    assert requests.read_replies(delete, plan, gone, lost=False).outcome is Outcome.ALREADY
    assert requests.read_replies(delete, plan, gone, lost=True).outcome is Outcome.APPLIED
    assert requests.read_replies(delete, plan, [GraphResponse(204, {}, None)], lost=False).outcome is Outcome.APPLIED


def test_a_missing_account_is_restored_to_enable_it_and_already_gone_to_delete_it() -> None:
    restore = requests.missing_account(change(Action.ENABLE), in_recycle_bin=True)
    assert isinstance(restore, Send)
    assert [r.url for r in restore.requests] == [f"/directory/deletedItems/{KEY}/restore", f"/users/{KEY}"]
    assert requests.missing_account(change(Action.DELETE), in_recycle_bin=False) == Decided(
        Outcome.ALREADY, "no such account")
    failed = requests.missing_account(change(Action.UPDATE), in_recycle_bin=False)
    assert isinstance(failed, Decided) and failed.outcome is Outcome.FAILED


@pytest.mark.parametrize(("response", "retryable", "says"), [
    (graph_error(403, "Authorization_RequestDenied", "Insufficient privileges"), False,
     "the app needs the application permission User.ReadWrite.All with admin consent and the User Administrator"),
    (GraphResponse(403, {}, None), True, "a proxy or gateway on the way refused it"),
    (graph_error(429, "TooManyRequests", "slow down"), True, "TooManyRequests: slow down"),
    (graph_error(400, "Request_BadRequest", "Invalid value"), False, "Request_BadRequest: Invalid value"),
])
def test_a_refused_write_fails_its_change_once_with_the_fix_and_says_whether_trying_later_may_work(
        response: GraphResponse, retryable: bool, says: str) -> None:
    password = change(Action.SET_PASSWORD, password="Pass-Word-1")

    result = requests.write_failure(password, response)

    assert result.outcome is Outcome.FAILED and result.retryable is retryable
    assert says in result.detail and "Pass-Word-1" not in result.detail


def test_a_patch_whose_reply_was_lost_is_read_back_but_a_password_is_not() -> None:
    patch = BatchRequest("PATCH", f"/users/{KEY}", {"accountEnabled": False})

    assert requests.read_back_url(patch) == f"/users/{KEY}?$select=id,accountEnabled"
    assert requests.landed(patch, GraphResponse(200, {}, {"id": KEY, "accountEnabled": False}))
    assert not requests.landed(patch, GraphResponse(200, {}, {"id": KEY, "accountEnabled": True}))
    assert requests.read_back_url(BatchRequest("PATCH", "/users/x", {"passwordProfile": {"password": "p"}})) is None


def test_member_requests_bind_directory_objects_on_the_graph_root() -> None:
    root = "https://graph.example/v1.0"

    assert requests.add_members(root, "g1", ["a", "b"]).body == {
        "members@odata.bind": [f"{root}/directoryObjects/a", f"{root}/directoryObjects/b"]}
    assert requests.add_member(root, "g1", "a").url == "/groups/g1/members/$ref"
    assert requests.remove_member("g1", "a").url == "/groups/g1/members/a/$ref"
    assert "displayName%20eq%20%27O%27%27Brien%20Club%27" in requests.group_lookup("O'Brien Club")


def test_sign_in_refusals_name_the_key_to_fix_and_an_unknown_one_keeps_the_services_words() -> None:
    facts = {"tenant_id": "t", "client_id": "c", "config_file": "entra.toml", "where": "secret s",
             "authority_host": "login.example"}

    tenant = refused(("sign-in",), codes=(90002, "invalid_request"), error="AADSTS90002", **facts)
    other = refused(("sign-in",), codes=(12345, "invalid_request"), error="AADSTS12345: odd", **facts)
    unreachable = refused(("sign-in",), codes=("unreachable",), error="ConnectionError", **facts)

    assert isinstance(tenant, AuthError) and str(tenant).startswith("entra.toml: tenant_id: tenant 't' was not found")
    assert str(other) == "sign-in to tenant 't' as app 'c' failed: AADSTS12345: odd"
    assert unreachable.retryable and not isinstance(unreachable, AuthError)


def _context(**options: Any) -> ConnectorContext:
    return ConnectorContext(name="entra", type="entra", options={"domains": {"pupil": "pupils.example.sch.uk"},
                                                                 **options},
                            source="connectors/entra.toml", cursors=None, state_dir=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("options", "message"), [
    ({"hybrid": "on"}, "connectors/entra.toml: hybrid: must be \"detect\" or \"off\", not 'on'"),
    ({"timeout_seconds": True}, "connectors/entra.toml: timeout_seconds: must be a positive number, not True"),
    ({"timeout_secs": 5}, "connectors/entra.toml: timeout_secs: unknown option; did you mean 'timeout_seconds'?"),
    ({"domains": {"pupil": "nodot"}}, "connectors/entra.toml: domains: must be a table of kind = \"domain\""),
    ({"full_id_attribute": "extensionAttribute16"}, "connectors/entra.toml: full_id_attribute: must be one of"),
    ({"group_marker": 5}, "connectors/entra.toml: group_marker: input should be a valid string, not 5"),
])
def test_a_bad_option_is_one_config_error_naming_the_file_and_the_key(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        read_settings(_context(**options))
    assert str(raised.value).startswith(message)


def test_a_missing_domain_table_is_required_and_good_options_read_with_their_defaults() -> None:
    context = _context()
    with pytest.raises(ConfigError, match=r"^connectors/entra.toml: domains: is required$"):
        read_settings(ConnectorContext(**{**context.__dict__, "options": {}}))

    settings = read_settings(_context(attributes=["department"], write_limit_per_second=5))

    assert settings.attributes == ("department",) and settings.write_limit_per_second == 5
    assert settings.give_up_after_seconds == 120 and settings.hybrid == "detect"
