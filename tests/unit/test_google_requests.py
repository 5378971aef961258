"""The Google connector's request builders, without HTTP: a change -> the Directory API calls it sends,
and how a refusal of each kind of call reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from idlifecycle.connectors.base import ConnectorError
from idlifecycle.connectors.google import requests as build
from idlifecycle.connectors.google.connector import GoogleConnector
from idlifecycle.connectors.google.session import Verdict
from idlifecycle.model import Action, Change

DOMAINS = ("school.example", "pupils.school.example")


def starter(**after: Any) -> Change:
    return Change(directory="google", action=Action.CREATE, person_id="P1", username="ada.lovelace", reason="joined",
                  after={"login": "ada.lovelace@pupils.school.example", "given_name": "Ada", "surname": "Lovelace",
                         "display_name": "Ada Lovelace", "anchor": "P1", "enabled": True, **after})


def unread() -> Mapping[str, Any]:
    raise AssertionError("the user was read though the patch does not need it")


def test_a_create_with_the_tools_password_sends_it_and_keeps_the_change_flag_as_planned() -> None:
    planned = starter(must_change_password=False)
    change = Change(planned.directory, planned.action, planned.person_id, planned.username, planned.reason,
                    after=planned.after, password="Known-Pass-1")
    request = build.create_user(change, DOMAINS, "/Managed/Pupils/Year 7", "Known-Pass-1")
    assert request.method == "users.insert" and request.kind == "insert-user"
    assert request.lookup == "ada.lovelace@pupils.school.example" and request.anchor == "P1"
    body = request.params["body"]
    assert body == {
        "primaryEmail": "ada.lovelace@pupils.school.example",
        "name": {"givenName": "Ada", "familyName": "Lovelace", "displayName": "Ada Lovelace"},
        "password": "Known-Pass-1", "changePasswordAtNextLogin": False, "orgUnitPath": "/Managed/Pupils/Year 7",
        "externalIds": [{"type": "organization", "value": "P1"}], "suspended": False}
    assert request.params["fields"] == "id,primaryEmail"


def test_a_create_without_a_password_must_change_the_throwaway_one_and_maps_attributes() -> None:
    change = starter(enabled=False, display_name="", attributes={"department": "Science", "jobTitle": "Teacher"})
    body = build.create_user(change, DOMAINS, "/Managed", "throwaway-Pass-9").params["body"]
    assert body["password"] == "throwaway-Pass-9" and body["changePasswordAtNextLogin"] is True
    assert body["suspended"] is True and "displayName" not in body["name"]
    assert body["organizations"] == [{"primary": True, "department": "Science", "title": "Teacher"}]


@pytest.mark.parametrize(("after", "message"), [
    ({"login": "ada@elsewhere.example"}, "cannot create 'ada@elsewhere.example': the address must be in one of "
                                         "the managed domains (school.example, pupils.school.example)"),
    ({"anchor": ""}, "cannot create ada.lovelace@pupils.school.example: no anchor (person id) to write on it"),
    ({"attributes": {"shoeSize": "9"}}, "Google has no place for the attributes shoeSize; the mapping for this "
                                        "directory may use only department, jobTitle, employeeType, costCenter"),
])
def test_a_create_google_cannot_take_is_refused_before_anything_is_sent(after: dict[str, Any], message: str) -> None:
    planned = starter(**after)
    # No anchor in the change and no person id to fall back on.
    change = Change(planned.directory, planned.action, None if "anchor" in after else "P1", planned.username,
                    planned.reason, after=planned.after)
    with pytest.raises(ConnectorError) as raised:
        build.create_user(change, DOMAINS, "/Managed", "x")
    assert str(raised.value) == message


def test_adopting_sets_our_anchor_and_keeps_ids_of_other_types() -> None:
    current = {"externalIds": [{"type": "organization", "value": "OLD"}, {"type": "custom", "value": "K9"}]}
    request = build.adopt("u1", "P1", lambda: current)
    assert request.method == "users.patch" and request.params["userKey"] == "u1" and request.refs == ("u1",)
    assert request.params["body"] == {"externalIds": [{"type": "custom", "value": "K9"},
                                                      {"type": "organization", "value": "P1"}]}


def test_an_update_of_names_only_does_not_read_the_user_and_nothing_changed_sends_nothing() -> None:
    assert build.update("u1", {}, unread) == []
    [request] = build.update("u1", {"given_name": "Ada", "display_name": "Ada L"}, unread)
    assert request.params["body"] == {"name": {"givenName": "Ada", "displayName": "Ada L"}}


def test_an_update_of_attributes_sets_them_on_the_primary_organization_keeping_the_others() -> None:
    current = {"organizations": [{"name": "Trust", "title": "Governor"},
                                 {"primary": True, "department": "Maths", "costCenter": "C1"}]}
    [request] = build.update("u1", {"attributes": {"department": "Science"}}, lambda: current)
    assert request.params["body"]["organizations"] == [
        {"name": "Trust", "title": "Governor"}, {"primary": True, "department": "Science", "costCenter": "C1"}]
    assert current["organizations"][1]["department"] == "Maths", "the read is not changed in place"
    [made] = build.update("u2", {"attributes": {"costCenter": "C2"}}, lambda: {"organizations": []})
    assert made.params["body"]["organizations"] == [{"primary": True, "costCenter": "C2"}]
    with pytest.raises(ConnectorError, match=r"^Google has no place for the attributes shoeSize$"):
        build.update("u1", {"attributes": {"shoeSize": "9"}}, unread)


def test_a_disable_suspends_moves_to_leavers_when_set_and_signs_out() -> None:
    patch, sign_out = build.disable("u1", "/Managed/Leavers")
    assert patch.params["body"] == {"suspended": True, "orgUnitPath": "/Managed/Leavers"}
    assert (sign_out.method, sign_out.params, sign_out.kind) == ("users.signOut", {"userKey": "u1"}, "sign-out")
    assert build.disable("u1", None)[0].params["body"] == {"suspended": True}


def test_rename_and_set_password_refuse_what_they_cannot_send() -> None:
    assert build.rename("u1", "ada.l@school.example").params["body"] == {"primaryEmail": "ada.l@school.example"}
    with pytest.raises(ConnectorError, match="rename needs the new primary email, got 'ada'"):
        build.rename("u1", "ada")
    reset = Change("google", Action.SET_PASSWORD, "P1", "ada", "reset", target="u1",
                   after={"must_change_password": True})
    with pytest.raises(ConnectorError, match="without a password; nothing was sent"):
        build.set_password("u1", reset)
    reset = Change("google", Action.SET_PASSWORD, "P1", "ada", "reset", target="u1",
                   after={"must_change_password": True}, password="New-Pass-2")
    assert build.set_password("u1", reset).params["body"] == {"password": "New-Pass-2",
                                                             "changePasswordAtNextLogin": True}


def test_groups_get_an_address_in_the_group_domain_and_carry_the_marker() -> None:
    request = build.create_group("Year 7 / Science!", "school.example", "[managed by idlifecycle]")
    assert request.lookup == "year-7-science@school.example" and request.kind == "insert-group"
    assert request.params["body"] == {"email": "year-7-science@school.example", "name": "Year 7 / Science!",
                                      "description": "[managed by idlifecycle] Kept in step with the school's "
                                                     "records."}
    named = build.create_group("staff@school.example", "school.example", "[m]")
    assert named.params["body"]["email"] == "staff@school.example" and named.params["body"]["name"] == "staff"


def test_members_are_added_by_address_and_the_call_names_group_user_and_address() -> None:
    request = build.add_member("G1", "U1", "Ada@School.example")
    assert request.params == {"groupKey": "G1", "body": {"email": "Ada@School.example", "role": "MEMBER"},
                              "fields": "id"}
    assert request.refs == ("g1", "u1", "ada@school.example")
    assert build.remove_member("G1", "U1").params == {"groupKey": "G1", "memberKey": "U1"}


@pytest.mark.parametrize(("kind", "verdict", "already"), [
    ("insert-member", Verdict.CONFLICT, "already a member"),
    ("delete-member", Verdict.NOT_FOUND, "already gone"),
    ("delete-user", Verdict.NOT_FOUND, "already gone"),
    ("patch", Verdict.NOT_FOUND, ""),
    ("insert-user", Verdict.CONFLICT, ""),
    ("insert-member", Verdict.NOT_FOUND, ""),
])
def test_a_refusal_means_already_so_only_where_the_wanted_state_holds(kind: str, verdict: Verdict,
                                                                       already: str) -> None:
    assert build.already_so(kind, verdict.value) == already


@pytest.mark.parametrize(("root", "path", "container"), [
    ("/Managed", "/Managed", ""), ("/Managed", "/managed/Pupils/Year 7", "Pupils/Year 7"),
    ("/Managed", "/Managed Elsewhere", None), ("/Managed", "/Staff", None), ("/", "/Pupils", "Pupils"),
    ("/", "/", ""),
])
def test_org_unit_paths_and_containers_are_read_under_the_root(root: str, path: str, container: str | None) -> None:
    assert build.container_of(root, path) == container
    if container is not None:
        assert build.org_unit_path(root, container).lower() == (path.lower() if path != "/" else root)


def test_every_action_has_a_handler_row() -> None:
    assert set(GoogleConnector.HANDLERS) == set(Action)


# -- leavers' data: the Data Transfer API --

APPLICATIONS = [{"id": "55656082996", "name": "Drive and Docs"}, {"id": "435070579839", "name": "Calendar"},
                {"id": "553547912911", "name": "Looker Studio"}]


def test_the_transfer_asks_for_the_leavers_drive_shared_and_private_and_their_calendar() -> None:
    ids = build.application_ids(APPLICATIONS)
    assert build.transfer_body("111", "222", ids) == {
        "oldOwnerUserId": "111", "newOwnerUserId": "222", "applicationDataTransfers": [
            {"applicationId": "55656082996",
             "applicationTransferParams": [{"key": "PRIVACY_LEVEL", "value": ["SHARED", "PRIVATE"]}]},
            {"applicationId": "435070579839"}]}


def test_drive_and_calendar_are_found_by_googles_ids_when_their_names_differ_and_a_missing_one_is_said() -> None:
    renamed = [{"id": "55656082996", "name": "Drive"}, {"id": "435070579839", "name": "Google Calendar"}]
    assert build.application_ids(renamed) == {build.DRIVE: "55656082996", build.CALENDAR: "435070579839"}
    with pytest.raises(ConnectorError, match=r"lists no Calendar application.*the delete was not sent"):
        build.application_ids(APPLICATIONS[:1])


def test_the_existing_transfer_is_the_latest_to_the_same_new_owner() -> None:
    transfers = [{"id": "old", "oldOwnerUserId": "111", "newOwnerUserId": "222", "requestTime": "2026-01-01T00:00:00Z"},
                 {"id": "new", "oldOwnerUserId": "111", "newOwnerUserId": "222", "requestTime": "2026-03-01T00:00:00Z"},
                 {"id": "elsewhere", "oldOwnerUserId": "111", "newOwnerUserId": "999",
                  "requestTime": "2026-04-01T00:00:00Z"}]
    assert build.existing_transfer(transfers, "111", "222") == transfers[1]
    assert build.existing_transfer(transfers, "333", "222") is None


@pytest.mark.parametrize("status", ["new", "inProgress", ""])
def test_a_delete_waits_while_the_transfer_has_not_completed_and_the_next_run_asks_again(status: str) -> None:
    with pytest.raises(ConnectorError) as raised:
        build.after_transfer({"id": "T1", "overallTransferStatusCode": status}, "111", "archive@school.example")
    assert raised.value.retryable
    assert "the delete waits for Data Transfer T1 of 111's Drive and Calendar to archive@school.example" in str(
        raised.value)


def test_a_completed_transfer_lets_the_delete_go_and_a_failed_one_keeps_the_account() -> None:
    assert build.after_transfer({"id": "T1", "overallTransferStatusCode": "completed"}, "111", "a@school.example") == [
        build.delete_user("111")]
    with pytest.raises(ConnectorError, match=r"Data Transfer T2 .* failed, so the account was not deleted") as raised:
        build.after_transfer({"id": "T2", "overallTransferStatusCode": "failed"}, "111", "a@school.example")
    assert not raised.value.retryable
