"""The Graph emulator held to Microsoft Graph's documented behaviour: one test per rule, each naming its source.

The expected shapes (status, error code, message) are written from the documentation and from
maintainers' answers in bug reports, not from the emulator: this file is the contract the
emulator is held to. Requests go over HTTPS with a token from the emulator's token endpoint, as
any Graph client would send them.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from idlifecycle.sandbox.graph import GraphEmulator, Replication
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_ID, CLIENT_SECRET, PUPILS, STAFF, school_seed

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def _client(emulator: GraphEmulator) -> httpx.Client:
    assert emulator.certificate is not None
    trust = ssl.create_default_context(cafile=str(emulator.certificate.cert))
    token = httpx.post(f"{emulator.authority}/oauth2/v2.0/token", verify=trust, data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "scope": GRAPH_SCOPE}).json()["access_token"]
    return httpx.Client(base_url=emulator.graph_url, verify=trust, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def graph(emulator: GraphEmulator) -> Iterator[httpx.Client]:
    with _client(emulator) as client:
        yield client


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"])
    return dict(body["error"])


def _new_user(name: str, **extra: Any) -> dict[str, Any]:
    return {"accountEnabled": True, "displayName": name.title(), "mailNickname": name,
            "userPrincipalName": f"{name}@{PUPILS}", "passwordProfile": {"password": "Correct-Horse-42"}, **extra}


def test_batch_mixing_a_depends_on_chain_with_independent_requests_is_refused_whole(
        emulator: GraphEmulator, graph: httpx.Client) -> None:
    """A $batch must be "either fully sequential or fully parallel"; a mixed one is a 400 for the whole batch.

    Sources: https://learn.microsoft.com/en-us/graph/json-batching (Sequencing requests with the
    dependsOn property) and https://github.com/microsoftgraph/microsoft-graph-docs/issues/16280
    ("400 Bad Request: Batch should be either fully sequential or fully parallel", confirmed and
    the documentation's example fixed).
    """
    amy = emulator.directory.user(f"23abrown@{PUPILS}")["id"]
    mixed = {"requests": [
        {"id": "1", "method": "PATCH", "url": f"/users/{amy}", "body": {"accountEnabled": False},
         "headers": {"Content-Type": "application/json"}},
        {"id": "2", "method": "POST", "url": f"/users/{amy}/revokeSignInSessions", "dependsOn": ["1"]},
        {"id": "3", "method": "GET", "url": "/users?$top=1"},
    ]}

    reply = graph.post("/$batch", json=mixed)

    assert reply.status_code == 400
    error = _error(reply)
    assert error["code"] == "BadRequest"
    assert error["message"] == "Batch should be either fully sequential or fully parallel."
    assert emulator.directory.user(amy)["accountEnabled"] is True  # nothing in it ran

    sequential = {"requests": mixed["requests"][:2]}
    parallel = {"requests": [mixed["requests"][0], mixed["requests"][2]]}
    assert [r["status"] for r in graph.post("/$batch", json=sequential).json()["responses"]] == [204, 200]
    assert sorted(r["status"] for r in graph.post("/$batch", json=parallel).json()["responses"]) == [200, 204]


def test_just_created_user_and_group_are_not_found_until_replicated(
        make_emulator: Callable[..., GraphEmulator]) -> None:
    """Right after a create, reads and writes that refer to the new object answer 404 Request_ResourceNotFound.

    Sources: https://github.com/hashicorp/terraform-provider-azuread/pull/283 (member adds after a
    create fail, then succeed on retry), https://github.com/pulumi/pulumi-azuread/issues/2014
    (licence assignment), https://github.com/microsoftgraph/msgraph-sdk-java/issues/2575 (GET of
    a just-created group: "Resource '<id>' does not exist or one of its queried
    reference-property objects are not present."), https://github.com/Azure/azure-powershell/issues/6493.
    """
    emulator = make_emulator(replication_window=2.0)
    with _client(emulator) as graph:
        user = graph.post("/users", json=_new_user("25fresh")).json()
        group = graph.post("/groups", json={"displayName": "Fresh", "mailEnabled": False, "mailNickname": "fresh",
                                            "securityEnabled": True}).json()
        old_group = next(iter(emulator.directory.state["groups"]))
        bind = {"members@odata.bind": [f"{emulator.graph_url}/directoryObjects/{user['id']}"]}

        read = graph.get(f"/users/{user['id']}")
        by_upn = graph.get(f"/users/25fresh@{PUPILS}")
        add = graph.patch(f"/groups/{old_group}", json=bind)
        group_read = graph.get(f"/groups/{group['id']}")
        listed = graph.get("/users", params={"$filter": f"userPrincipalName eq '25fresh@{PUPILS}'"}).json()["value"]

        for reply, key in ((read, user["id"]), (by_upn, f"25fresh@{PUPILS}"), (add, user["id"]),
                           (group_read, group["id"])):
            assert reply.status_code == 404
            error = _error(reply)
            assert error["code"] == "Request_ResourceNotFound"
            assert error["message"] == (f"Resource '{key}' does not exist or one of its queried reference-property "
                                        "objects are not present.")
        assert listed == []

        time.sleep(2.0)
        assert graph.get(f"/users/{user['id']}").status_code == 200
        assert graph.patch(f"/groups/{old_group}", json=bind).status_code == 204
        assert graph.get(f"/groups/{group['id']}").status_code == 200


def test_replication_windows_are_the_same_on_every_run_for_a_seed() -> None:
    """The emulator's replication windows come from a seeded generator, so tests that meet them are repeatable."""
    first, second = Replication(1.0, seed=7), Replication(1.0, seed=7)
    first.begin("a")
    second.begin("a")
    assert abs(first.pending["a"] - second.pending["a"]) < 0.05


def test_new_or_renamed_user_may_not_take_another_objects_proxy_address(
        emulator: GraphEmulator, graph: httpx.Client) -> None:
    """proxyAddresses are unique across users, groups and contacts; a UPN/mail equal to another object's alias is a 400.

    Sources: https://learn.microsoft.com/en-us/graph/api/resources/user ("mail and proxyAddresses")
    and the body reported in https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/8421
    (Request_BadRequest, "Another object with the same value for property proxyAddresses already
    exists.", details ObjectConflict on target proxyAddresses).
    """
    emulator.directory.add_user(userPrincipalName="old.name@example.org", displayName="Renamed Leaver",
                                proxyAddresses=["SMTP:old.name@example.org", f"smtp:25taken@{PUPILS}"])
    amy = emulator.directory.user(f"23abrown@{PUPILS}")["id"]

    create = graph.post("/users", json=_new_user("25taken"))
    rename = graph.patch(f"/users/{amy}", json={"userPrincipalName": f"25taken@{PUPILS}"})

    for reply in (create, rename):
        assert reply.status_code == 400
        error = _error(reply)
        assert error["code"] == "Request_BadRequest"
        assert error["message"] == "Another object with the same value for property proxyAddresses already exists."
        assert {"code": "ObjectConflict", "target": "proxyAddresses"}.items() <= error["details"][0].items()
    assert emulator.directory.find_user(f"25taken@{PUPILS}") is None
    # An object's own aliases are its own: taking back an old address is allowed.
    jo = emulator.directory.user(f"jsmith@{STAFF}")["id"]
    assert graph.patch(f"/users/{jo}", json={"userPrincipalName": f"jtaylor@{STAFF}"}).status_code == 204
    assert graph.patch(f"/users/{jo}", json={"userPrincipalName": f"jsmith@{STAFF}"}).status_code == 204


@pytest.mark.parametrize(("name", "limit"), [("employeeId", 16), ("mailNickname", 64), ("displayName", 256),
                                             ("givenName", 64), ("surname", 64)])
def test_user_property_longer_than_its_documented_maximum_is_refused(
        emulator: GraphEmulator, graph: httpx.Client, name: str, limit: int) -> None:
    """employeeId holds at most 16 characters, mailNickname 64, displayName 256, givenName and surname 64.

    Source: https://learn.microsoft.com/en-us/graph/api/resources/user (each property's
    "maximum length"); Graph refuses the whole create or update with 400 Request_BadRequest,
    "Invalid value specified for property '<name>' of resource 'User'.".
    """
    amy = emulator.directory.user(f"23abrown@{PUPILS}")["id"]
    fits = "a" * limit
    too_long = "a" * (limit + 1)

    create = graph.post("/users", json={**_new_user("25long"), name: too_long})
    update = graph.patch(f"/users/{amy}", json={name: too_long})

    for reply in (create, update):
        assert reply.status_code == 400
        error = _error(reply)
        assert error["code"] == "Request_BadRequest"
        assert error["message"] == f"Invalid value specified for property '{name}' of resource 'User'."
        assert error["details"][0]["target"] == name
    assert emulator.directory.find_user(f"25long@{PUPILS}") is None
    assert graph.patch(f"/users/{amy}", json={name: fits}).status_code == 204


def test_app_without_the_user_administrator_role_may_not_write_passwords(
        emulator: GraphEmulator, graph: httpx.Client) -> None:
    """App-only, passwordProfile needs User.ReadWrite.All and at least the User Administrator role: 403 without it.

    Sources: https://learn.microsoft.com/en-us/graph/api/user-update (passwordProfile: "In
    application-only access, the calling app must be assigned the User.ReadWrite.All application
    permission and at least the User Administrator Microsoft Entra role") and Graph's answer in
    https://learn.microsoft.com/en-us/answers/questions/360090 (403 Authorization_RequestDenied,
    "Insufficient privileges to complete the operation."). An initial password on create needs
    the permission alone.
    """
    amy = emulator.directory.user(f"23abrown@{PUPILS}")["id"]
    reset = {"passwordProfile": {"password": "Sunny-Days-2026", "forceChangePasswordNextSignIn": True}}
    assert graph.patch(f"/users/{amy}", json=reset).status_code == 204  # the fixture's app holds the role

    emulator.register_application(CLIENT_ID, secret=CLIENT_SECRET, directory_roles=())
    with _client(emulator) as without_role:
        refused = without_role.patch(f"/users/{amy}", json=reset)
        forced = without_role.patch(f"/users/{amy}", json={"passwordProfile": {"forceChangePasswordNextSignIn": True}})
        created = without_role.post("/users", json=_new_user("25initial"))

    for reply in (refused, forced):
        assert reply.status_code == 403
        error = _error(reply)
        assert (error["code"], error["message"]) == ("Authorization_RequestDenied",
                                                     "Insufficient privileges to complete the operation.")
    assert created.status_code == 201


def test_users_delta_refuses_profile_properties_in_select_and_names_them(graph: httpx.Client) -> None:
    """users/delta answers 400 BadRequest naming the $select properties it does not support.

    Sources: https://github.com/microsoftgraph/microsoft-graph-docs/issues/14141 ("Invalid request
    for delta query: for this entity set, $expand/$select is not supported for the following
    properties: birthday"), https://github.com/microsoftgraph/microsoft-graph-docs/issues/4746
    (skills, aboutMe), https://github.com/microsoftgraph/microsoft-graph-explorer-v4/issues/3189
    (signInActivity).
    """
    refused = graph.get("/users/delta", params={"$select": "id,displayName,birthday,skills"})
    allowed = graph.get("/users/delta", params={"$select": "id,displayName,proxyAddresses,department"})

    assert refused.status_code == 400
    error = _error(refused)
    assert error["code"] == "BadRequest"
    assert error["message"] == ("Invalid request for delta query: for this entity set, $expand/$select is not "
                                "supported for the following properties: birthday, skills")
    assert allowed.status_code == 200


def test_delta_link_older_than_its_lifetime_is_refused_with_sync_state_not_found(
        make_emulator: Callable[..., GraphEmulator]) -> None:
    """Identity delta links live seven days, then Graph answers 400 syncStateNotFound (the lifetime is configurable).

    Source: https://devblogs.microsoft.com/microsoft365dev/duration-of-change-tracking-tokens-for-identity-and-education-resources/
    ("BadRequest response with the error code syncStateNotFound and the following error message:
    The sync state generation is not found. The delta token is expired and data must be
    synchronized again.").
    """
    emulator = make_emulator(delta_token_ttl=0.5)
    with _client(emulator) as graph:
        link = graph.get("/users/delta", params={"$select": "id,displayName"}).json()["@odata.deltaLink"]
        assert graph.get(link).status_code == 200
        time.sleep(0.6)

        expired = graph.get(link)

    assert expired.status_code == 400
    error = _error(expired)
    assert error["code"] == "syncStateNotFound"
    assert error["message"] == ("The sync state generation is not found. The delta token is expired and data must "
                                "be synchronized again.")


def test_sign_in_activity_without_entra_id_p1_is_refused(make_emulator: Callable[..., GraphEmulator]) -> None:
    """signInActivity needs Entra ID P1 or P2 in the tenant: 403 Authentication_RequestFromNonPremiumTenantOrB2CTenant.

    Sources: https://learn.microsoft.com/en-us/graph/api/resources/signinactivity (licence
    requirement) and https://github.com/microsoftgraph/microsoft-graph-docs/issues/12772 (the
    403 "Neither tenant is B2C or tenant doesn't have premium license").
    """
    emulator = make_emulator({**school_seed(), "premium": False})
    with _client(emulator) as graph:
        refused = graph.get("/users", params={"$select": "id,signInActivity"})
        plain = graph.get("/users", params={"$select": "id,displayName"})

    assert refused.status_code == 403
    error = _error(refused)
    assert (error["code"], error["message"]) == ("Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                                                 "Neither tenant is B2C or tenant doesn't have premium license")
    assert plain.status_code == 200


def test_just_created_user_reaches_delta_late_but_is_never_lost(make_emulator: Callable[..., GraphEmulator]) -> None:
    """A delta round during replication leaves the new user out; the next round from its deltaLink brings it.

    Sources: https://learn.microsoft.com/en-us/graph/delta-query-overview (delta returns the
    changes since the state token; changes are not lost between rounds) with the replication
    delay of https://github.com/hashicorp/terraform-provider-azuread/pull/283.
    """
    emulator = make_emulator(replication_window=1.5)
    with _client(emulator) as graph:
        user = graph.post("/users", json=_new_user("25delta")).json()
        first = graph.get("/users/delta", params={"$select": "id,userPrincipalName"}).json()
        time.sleep(1.5)
        second = graph.get(first["@odata.deltaLink"]).json()

    assert user["id"] not in {u["id"] for u in first["value"]}
    assert user["id"] in {u["id"] for u in second["value"]}


def test_extension_attributes_are_set_one_by_one_hold_1024_characters_and_are_read_only_when_synced(
        make_emulator: Callable[..., GraphEmulator]) -> None:
    """onPremisesExtensionAttributes: extensionAttribute1-15, each at most 1,024 characters; settable on a
    cloud-only user at create and update (an update sets only the attributes it names, null clears one);
    read-only on a user synchronised from AD.

    Sources: https://learn.microsoft.com/en-us/graph/api/resources/onpremisesextensionattributes
    ("For a cloud-only user … these properties can be set during the creation or update"; "for an
    onPremisesSyncEnabled user, the source of authority for this set of properties is the on-premises
    and is read-only"; the 1,024-character limit) and the example "Update the onPremisesExtensionAttributes
    of a user" in https://learn.microsoft.com/en-us/graph/api/user-update (extensionAttribute13 set to null).
    """
    emulator = make_emulator(replication_window=0)
    with _client(emulator) as graph:
        created = graph.post("/users", json={**_new_user("25ext"), "onPremisesExtensionAttributes": {
            "extensionAttribute15": "f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "extensionAttribute13": "keep"}})
        assert created.status_code == 201
        key = created.json()["id"]
        assert graph.patch(f"/users/{key}", json={"onPremisesExtensionAttributes": {
            "extensionAttribute1": "one", "extensionAttribute13": None}}).status_code == 204
        read = graph.get(f"/users/{key}?$select=onPremisesExtensionAttributes").json()["onPremisesExtensionAttributes"]
        assert (read["extensionAttribute1"], read["extensionAttribute13"], read["extensionAttribute15"]) == (
            "one", None, "f81d4fae-7dec-11d0-a765-00a0c91e6bf6")

        too_long = graph.patch(f"/users/{key}",
                               json={"onPremisesExtensionAttributes": {"extensionAttribute2": "a" * 1025}})
        assert too_long.status_code == 400 and _error(too_long)["code"] == "Request_BadRequest"

        synced = emulator.directory.user(f"hybridteacher@{STAFF}")["id"]
        refused = graph.patch(f"/users/{synced}", json={"onPremisesExtensionAttributes": {"extensionAttribute15": "x"}})
        assert refused.status_code == 400
        assert "on-premises mastered Directory Sync objects" in _error(refused)["message"]


def test_directory_role_holders_are_listed_as_role_assignments_and_role_members(
        make_emulator: Callable[..., GraphEmulator]) -> None:
    """Active directory roles show as unifiedRoleAssignments (principalId, roleDefinitionId = the role's
    template id for a built-in role, directoryScopeId "/" tenant-wide) and as members of the activated
    directoryRole; PIM eligibilities are listed only in a tenant with Entra ID P2, and an eligible
    principal is not a member of the directoryRole until it activates.

    Sources: https://learn.microsoft.com/en-us/graph/api/rbacapplication-list-roleassignments (List
    unifiedRoleAssignments; $filter on principalId, roleDefinitionId), https://learn.microsoft.com/en-us/
    graph/api/resources/unifiedroleassignment, https://learn.microsoft.com/en-us/graph/api/
    directoryrole-list-members and https://learn.microsoft.com/en-us/graph/api/
    rbacapplication-list-roleeligibilityscheduleinstances (PIM needs Microsoft Entra ID P2).
    """
    global_admin = "62e90394-69f5-4237-9190-012177145e10"  # Global Administrator's template id in every tenant
    seed = school_seed()
    seed["directoryRoles"] = [{"displayName": "Global Administrator", "roleTemplateId": global_admin,
                               "members": ["it.admin@example.org"], "eligible": [f"jsmith@{STAFF}"]}]
    for pim in (False, True):
        with _client(make_emulator({**seed, "pim": pim})) as graph:
            users = {u["userPrincipalName"]: u["id"] for u in graph.get("/users").json()["value"]}
            assignments = graph.get("/roleManagement/directory/roleAssignments").json()["value"]
            mine = [a for a in assignments if a["principalId"] == users["it.admin@example.org"]]
            assert [(a["roleDefinitionId"], a["directoryScopeId"]) for a in mine] == [(global_admin, "/")]
            assert users[f"jsmith@{STAFF}"] not in {a["principalId"] for a in assignments}
            only = graph.get("/roleManagement/directory/roleAssignments",
                             params={"$filter": f"principalId eq '{users['it.admin@example.org']}'"}).json()["value"]
            assert [a["principalId"] for a in only] == [users["it.admin@example.org"]]
            [role] = [r for r in graph.get("/directoryRoles").json()["value"] if r["roleTemplateId"] == global_admin]
            members = graph.get(f"/directoryRoles/{role['id']}/members").json()["value"]
            assert [m["id"] for m in members] == [users["it.admin@example.org"]]
            eligible = graph.get("/roleManagement/directory/roleEligibilityScheduleInstances")
            if pim:
                assert [(e["principalId"], e["roleDefinitionId"]) for e in eligible.json()["value"]] == [
                    (users[f"jsmith@{STAFF}"], global_admin)]
            else:
                assert eligible.status_code == 403


def test_deleted_users_are_listed_only_through_the_user_cast_paged_and_with_what_select_names(
        make_emulator: Callable[..., GraphEmulator]) -> None:
    """Deleted users: `GET /directory/deletedItems/microsoft.graph.user`; the bare collection is refused.

    Sources: https://learn.microsoft.com/en-us/graph/api/directory-deleteditems-list ("The OData cast type
    is a required part of the URI and calling GET /directory/deleteditems without a type is not supported";
    the cast's own query parameters, $select and $top among them, apply); the default properties of a user
    (employeeId is not one) and $top's 1-999 range: https://learn.microsoft.com/en-us/graph/api/user-list
    and https://learn.microsoft.com/en-us/graph/paging (follow @odata.nextLink until there is none).
    """
    seed = school_seed()
    seed["users"] = [*seed.get("users", []), *({"userPrincipalName": f"gone{i}@{PUPILS}", "displayName": f"Gone {i}",
                                                 "employeeId": f"00090{i}"} for i in range(3))]
    emulator = make_emulator(seed)
    for i in range(3):
        emulator.directory.delete_user(emulator.directory.user(f"gone{i}@{PUPILS}")["id"])
    with _client(emulator) as graph:
        bare = graph.get("/directory/deletedItems")
        assert bare.status_code == 400
        assert "deletedItems" in _error(bare)["message"]
        assert graph.get("/directory/deletedItems/microsoft.graph.user", params={"$top": "1000"}).status_code == 400

        default = graph.get("/directory/deletedItems/microsoft.graph.user").json()["value"]
        assert default and all("employeeId" not in user for user in default)

        page = graph.get("/directory/deletedItems/microsoft.graph.user",
                         params={"$top": "2", "$select": "id,userPrincipalName,employeeId,deletedDateTime"}).json()
        found = list(page["value"])
        assert len(found) == 2 and "@odata.nextLink" in page
        while "@odata.nextLink" in page:
            page = graph.get(page["@odata.nextLink"]).json()
            found.extend(page["value"])
    assert sorted(u["employeeId"] for u in found) == ["000900", "000901", "000902"]
    assert all(set(u) == {"id", "userPrincipalName", "employeeId", "deletedDateTime"} for u in found)


def test_a_deleted_users_upn_is_listed_prefixed_with_its_object_id_and_comes_back_on_restore(
        make_emulator: Callable[..., GraphEmulator]) -> None:
    """Entra renames a soft-deleted user's UPN to `<object id without dashes><original UPN>` in deleted items;
    restoring the user gives the original UPN back.

    Sources: https://github.com/onyx-dot-app/onyx/pull/14074 ("When a user is soft-deleted in Entra ID,
    Entra frees their UPN by renaming it to `<objectId hex, no dashes><original UPN>`", seen live) and
    https://learn.microsoft.com/en-us/graph/api/directory-deleteditems-restore (restore brings the user back
    as it was; `newUserPrincipalName` only for a UPN taken meanwhile,
    https://github.com/microsoftgraph/entra-powershell/issues/1484).
    """
    seed = school_seed()
    seed["users"] = [*seed.get("users", []), {"userPrincipalName": f"gone@{PUPILS}", "displayName": "Gone"}]
    emulator = make_emulator(seed)
    key = emulator.directory.user(f"gone@{PUPILS}")["id"]
    emulator.directory.delete_user(key)
    with _client(emulator) as graph:
        listed = graph.get("/directory/deletedItems/microsoft.graph.user",
                           params={"$select": "id,userPrincipalName"}).json()["value"]
        assert listed == [{"id": key, "userPrincipalName": key.replace("-", "") + f"gone@{PUPILS}"}]
        restored = graph.post(f"/directory/deletedItems/{key}/restore")
        assert restored.status_code == 200
        assert restored.json()["userPrincipalName"] == f"gone@{PUPILS}"


def test_role_assignable_groups_hold_no_groups_and_need_role_management_to_change_members(
        make_emulator: Callable[..., GraphEmulator]) -> None:
    """A group created with `isAssignableToRole` true cannot have groups as members (400 "Nesting is
    currently not supported for groups that can be assigned to a role."), its members are added and
    removed only with RoleManagement.ReadWrite.Directory (GroupMember/Group.ReadWrite.All: 403), and
    only such a group can hold a directory role.

    Sources: https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/groups-concept
    ("Group nesting isn't supported. A group can't be added as a member of a role-assignable group";
    "the RoleManagement.ReadWrite.Directory permission is required to be able to manage the membership
    of role-assignable groups. The Group.ReadWrite.All permission won't work"; "Only groups that have
    the isAssignableToRole property set to true at creation time can be assigned a role"), Graph's
    message in MicrosoftDocs/azure-docs#88710, microsoft-graph-docs#15815.
    """
    seed = school_seed()
    seed["groups"].append({"displayName": "IT Admins", "isAssignableToRole": True, "members": ["it.admin@example.org"]})
    emulator = make_emulator(seed)
    with _client(emulator) as graph:
        groups = {g["displayName"]: g["id"] for g in graph.get("/groups").json()["value"]}
        admins, staff = groups["IT Admins"], groups["All Staff"]
        amy = emulator.directory.user(f"23abrown@{PUPILS}")["id"]
        flag = graph.get(f"/groups/{admins}", params={"$select": "id,isAssignableToRole"}).json()
        assert flag["isAssignableToRole"] is True

        # The fixture's app has GroupMember.ReadWrite.All, not RoleManagement.ReadWrite.Directory.
        for refused in (graph.post(f"/groups/{admins}/members/$ref",
                                   json={"@odata.id": f"{emulator.graph_url}/directoryObjects/{amy}"}),
                        graph.patch(f"/groups/{admins}", json={
                            "members@odata.bind": [f"{emulator.graph_url}/directoryObjects/{amy}"]})):
            assert refused.status_code == 403
            assert _error(refused)["code"] == "Authorization_RequestDenied"
        emulator.register_application(CLIENT_ID, secret=CLIENT_SECRET, roles=(
            "User.ReadWrite.All", "GroupMember.ReadWrite.All", "RoleManagement.ReadWrite.Directory"))
    with _client(emulator) as graph:
        added = graph.post(f"/groups/{admins}/members/$ref",
                           json={"@odata.id": f"{emulator.graph_url}/directoryObjects/{amy}"})
        assert added.status_code == 204
        for nested in (graph.post(f"/groups/{admins}/members/$ref",
                                  json={"@odata.id": f"{emulator.graph_url}/directoryObjects/{staff}"}),
                       graph.patch(f"/groups/{admins}", json={
                           "description": "changed", "members@odata.bind": [
                               f"{emulator.graph_url}/directoryObjects/{staff}"]})):
            assert nested.status_code == 400
            assert _error(nested)["message"] == "Nesting is currently not supported for groups that can be assigned " \
                                                "to a role."
        members = {m["id"] for m in graph.get(f"/groups/{admins}/members").json()["value"]}
        assert staff not in members and amy in members
        assert graph.get(f"/groups/{admins}", params={"$select": "description"}).json().get("description") is None
        # A plain group may hold another group; a role-assignable one may be a member of a plain group.
        assert graph.post(f"/groups/{staff}/members/$ref",
                          json={"@odata.id": f"{emulator.graph_url}/directoryObjects/{admins}"}).status_code == 204

    with pytest.raises(ValueError, match="not role-assignable"):
        make_emulator({**school_seed(), "directoryRoles": [
            {"displayName": "Global Administrator", "members": ["All Staff"]}]})


def test_pim_eligibilities_need_a_pim_or_role_management_permission_not_directory_read_all(
        make_emulator: Callable[..., GraphEmulator]) -> None:
    """An app with Directory.Read.All lists active role assignments but not PIM eligibilities: 403, in PIM's own
    shape (code UnknownError, the message a JSON string with errorCode PermissionScopeNotGranted).

    Sources: https://learn.microsoft.com/en-us/graph/api/rbacapplication-list-roleeligibilityscheduleinstances
    (Permissions, Application: RoleEligibilitySchedule.Read.Directory; higher: RoleEligibilitySchedule.ReadWrite.
    Directory, RoleManagement.Read.All, RoleManagement.Read.Directory, RoleManagement.ReadWrite.Directory) and
    https://learn.microsoft.com/en-us/graph/api/rbacapplication-list-roleassignments (Directory.Read.All is
    enough there); the refusal's body as Graph sent it in microsoft-graph-docs#22292.
    """
    emulator = make_emulator({**school_seed(), "pim": True})
    emulator.register_application(CLIENT_ID, secret=CLIENT_SECRET, roles=("User.Read.All", "Directory.Read.All"))
    with _client(emulator) as graph:
        assert graph.get("/roleManagement/directory/roleAssignments").status_code == 200
        refused = graph.get("/roleManagement/directory/roleEligibilityScheduleInstances")
    assert refused.status_code == 403
    error = _error(refused)
    assert error["code"] == "UnknownError"
    inner = json.loads(error["message"])
    assert inner["errorCode"] == "PermissionScopeNotGranted"
    assert "RoleEligibilitySchedule.Read.Directory" in inner["message"]


def test_the_registration_report_needs_audit_log_read_all_and_entra_id_p1_and_takes_no_select(
        make_emulator: Callable[..., GraphEmulator]) -> None:
    """`GET /reports/authenticationMethods/userRegistrationDetails`: application permission AuditLog.Read.All,
    only $filter and $orderBy; without Entra ID P1/P2 in the tenant, 403
    Authentication_RequestFromNonPremiumTenantOrB2CTenant.

    Sources: https://learn.microsoft.com/en-us/graph/api/authenticationmethodsroot-list-userregistrationdetails
    (permissions, query parameters, the response's fields), https://learn.microsoft.com/en-us/graph/api/resources/
    userregistrationdetails (licence requirements) and
    https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/8777 (the 403 without premium).
    """
    report = "/reports/authenticationMethods/userRegistrationDetails"
    seed = school_seed()
    seed["users"][0]["_registration"] = {"isMfaRegistered": True, "isMfaCapable": True,
                                         "methodsRegistered": ["microsoftAuthenticatorPush"]}
    emulator = make_emulator(seed)
    with _client(emulator) as graph:
        listed = graph.get(report)
        selected = graph.get(report, params={"$select": "id,isMfaRegistered"})
    assert listed.status_code == 200, listed.text
    details = {d["userPrincipalName"]: d for d in listed.json()["value"]}
    assert {k: details[f"jsmith@{STAFF}"][k] for k in ("isMfaRegistered", "isMfaCapable", "isAdmin")} == {
        "isMfaRegistered": True, "isMfaCapable": True, "isAdmin": False}
    admin = details["it.admin@example.org"]
    assert (admin["isAdmin"], admin["isMfaRegistered"], admin["methodsRegistered"]) == (True, False, [])
    assert not any(k.startswith("_") for d in details.values() for k in d)
    assert selected.status_code == 400

    emulator.register_application(CLIENT_ID, secret=CLIENT_SECRET, roles=("User.ReadWrite.All",))
    with _client(emulator) as graph:
        unpermitted = graph.get(report)
    assert unpermitted.status_code == 403 and _error(unpermitted)["code"] == "Authorization_RequestDenied"

    basic = make_emulator({**school_seed(), "premium": False})
    with _client(basic) as graph:
        unlicensed = graph.get(report)
    assert unlicensed.status_code == 403
    assert _error(unlicensed)["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"


def test_users_filter_on_last_sign_in_ge_and_le_alone(emulator: GraphEmulator, graph: httpx.Client) -> None:
    """`$filter=signInActivity/lastSignInDateTime ge|le <time>` lists the users whose last sign-in is on or after
    (before) it; a user who never signed in matches neither; combined with another property it is a 400.

    Sources: https://learn.microsoft.com/en-us/graph/api/resources/user (signInActivity: "Supports $filter (eq,
    ne, not, ge, le) but not with any other filterable properties"), and the user-list example "Get users
    including their last sign-in time" (https://learn.microsoft.com/en-us/graph/api/user-list).
    """
    users = emulator.directory.state["users"]
    early, late, never = list(users)[:3]
    users[early]["signInActivity"] = {"lastSignInDateTime": "2026-09-01T08:00:00Z"}
    users[late]["signInActivity"] = {"lastSignInDateTime": "2026-11-20T08:00:00Z"}
    users[never]["signInActivity"] = None
    select = "id,signInActivity"

    def ids(expression: str) -> set[str]:
        answer = graph.get("/users", params={"$select": select, "$filter": expression})
        assert answer.status_code == 200, answer.text
        return {u["id"] for u in answer.json()["value"]}

    after = ids("signInActivity/lastSignInDateTime ge 2026-11-01T00:00:00Z")
    before = ids("signInActivity/lastSignInDateTime le 2026-11-01T00:00:00Z")
    combined = graph.get("/users", params={"$select": select, "$filter": (
        "signInActivity/lastSignInDateTime ge 2026-11-01T00:00:00Z and accountEnabled eq true")})

    assert late in after and early not in after and never not in after
    assert early in before and late not in before and never not in before
    assert combined.status_code == 400
