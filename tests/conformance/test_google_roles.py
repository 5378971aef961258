"""The Google emulator's admin roles held to the Directory API's documented behaviour, through the real
google-api-python-client: the Role and RoleAssignment resources, their lists and the scope they need.

Sources: https://developers.google.com/admin-sdk/directory/reference/rest/v1/roles (ROLES) and
https://developers.google.com/admin-sdk/directory/reference/rest/v1/roleAssignments (ASSIGNMENTS), with
their list methods' pages (.../roles/list, .../roleAssignments/list)."""

from __future__ import annotations

import json
from typing import Any

import httplib2
import pytest
from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from idlifecycle.connectors.google import SCOPES
from tests.integration.google_fixtures import ADMIN, Tenant, tenant_fixture

__all__ = ["tenant_fixture"]
READONLY = "https://www.googleapis.com/auth/admin.directory.rolemanagement.readonly"
ROLES = "https://developers.google.com/admin-sdk/directory/reference/rest/v1/roles"
ASSIGNMENTS = "https://developers.google.com/admin-sdk/directory/reference/rest/v1/roleAssignments"


def _service(tenant: Tenant, scopes: list[str]) -> Any:
    tenant.emulator.add_service_account(tenant.key, [*SCOPES, READONLY])
    credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        tenant.key, scopes=scopes).with_subject(ADMIN)
    return build("admin", "directory_v1", http=AuthorizedHttp(credentials, http=httplib2.Http(timeout=10)),
                 static_discovery=True, client_options={"api_endpoint": tenant.emulator.url})


def test_roles_list_gives_the_documented_role_resource_with_the_system_roles(tenant: Tenant) -> None:
    """ROLES: a Role is {roleId (int64 format), roleName, roleDescription, rolePrivileges[{serviceId,
    privilegeName}], isSystemRole, isSuperAdminRole, kind "admin#directory#role", etag}; roles.list answers
    {kind "admin#directory#roles", etag, items[], nextPageToken}, maxResults 1-100. The pre-defined roles are
    system roles; the super admin's is named _SEED_ADMIN_ROLE (the roles' names are Google's own)."""
    listed = _service(tenant, [READONLY]).roles().list(customer="my_customer").execute()
    assert listed["kind"] == "admin#directory#roles" and "etag" in listed
    role_keys = {"roleId", "roleName", "roleDescription", "rolePrivileges", "isSystemRole", "isSuperAdminRole",
                 "kind", "etag"}
    assert all(set(role) == role_keys and role["kind"] == "admin#directory#role" for role in listed["items"])
    assert all(role["roleId"].isdigit() for role in listed["items"])
    [seed] = [r for r in listed["items"] if r["isSuperAdminRole"]]
    assert seed["roleName"] == "_SEED_ADMIN_ROLE" and seed["isSystemRole"] is True
    first = _service(tenant, [READONLY]).roles().list(customer="my_customer", maxResults=2).execute()
    assert len(first["items"]) == 2 and first["nextPageToken"]


def test_role_assignments_list_gives_the_documented_resource_and_filters_by_user(tenant: Tenant) -> None:
    """ASSIGNMENTS: a RoleAssignment is {roleAssignmentId, roleId, kind "admin#directory#roleAssignment", etag,
    assignedTo (the user_id of a user, or a group's id), assigneeType (USER or GROUP, output only), scopeType
    (CUSTOMER or ORG_UNIT), orgUnitId (when ORG_UNIT)}; roleAssignments.list takes userKey ("the primary
    email address, alias email address, or unique user ID") or roleId, and maxResults 1-200."""
    directory = tenant.emulator.directory
    helper = directory.add_user("helper@school.example", "Hal", "Per", "correct-horse-battery")
    roles = tenant.emulator.admin_roles
    roles.assign("_HELP_DESK_ADMIN_ROLE", "helper@school.example")
    roles.assign("_SEED_ADMIN_ROLE", ADMIN)
    service = _service(tenant, [READONLY])
    listed = service.roleAssignments().list(customer="my_customer", userKey="helper@school.example").execute()
    assert listed["kind"] == "admin#directory#roleAssignments"
    [assignment] = listed["items"]
    assert set(assignment) == {"roleAssignmentId", "roleId", "kind", "etag", "assignedTo", "assigneeType",
                               "scopeType"}
    assert assignment["kind"] == "admin#directory#roleAssignment"
    assert (assignment["assignedTo"], assignment["assigneeType"], assignment["scopeType"]) == (
        helper["id"], "USER", "CUSTOMER")
    assert assignment["roleId"] == roles.role_id("_HELP_DESK_ADMIN_ROLE")
    everyone = service.roleAssignments().list(customer="my_customer").execute()["items"]
    assert len(everyone) == 2


@pytest.mark.parametrize("resource", ["roles", "roleAssignments"])
def test_without_the_rolemanagement_scope_the_lists_are_refused_403(tenant: Tenant, resource: str) -> None:
    """Both lists need admin.directory.rolemanagement or its .readonly (their pages' "Authorization scopes");
    a token without either is 403 "Request had insufficient authentication scopes." (insufficientPermissions,
    https://cloud.google.com/resource-manager/docs/core_errors#FORBIDDEN)."""
    request = getattr(_service(tenant, list(SCOPES)), resource)().list(customer="my_customer")
    with pytest.raises(HttpError) as raised:
        request.execute()
    error = json.loads(raised.value.content)["error"]
    assert raised.value.resp.status == 403 and error["errors"][0]["reason"] == "insufficientPermissions"
