"""The Directory API's admin roles, as the Google emulator serves them: roles.list and roleAssignments.list.

Shapes from the references (developers.google.com/admin-sdk/directory/reference/rest/v1/roles and
.../roleAssignments): a Role is {kind "admin#directory#role", etag, roleId (an int64 as a string),
roleName, roleDescription, rolePrivileges[{serviceId, privilegeName}], isSystemRole, isSuperAdminRole};
a RoleAssignment is {kind "admin#directory#roleAssignment", etag, roleAssignmentId, roleId, assignedTo
(a user's or group's id), assigneeType (USER or GROUP, output only), scopeType (CUSTOMER or ORG_UNIT),
orgUnitId}. Lists are {kind "admin#directory#roles" / "admin#directory#roleAssignments", etag, items,
nextPageToken}, paged by maxResults (roles 1-100, assignments 1-200) and pageToken; roleAssignments.list
filters by userKey (an id or primary address) or roleId, never both. The system roles carry Google's own
names (`_SEED_ADMIN_ROLE` is Super Admin). The scope check (admin.directory.rolemanagement[.readonly]) is the
emulator's, from the bundled discovery document, like every Directory API call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from idlifecycle.sandbox.google_directory import Answer, Directory, google_error

Handler = Callable[[Mapping[str, str], Mapping[str, Any]], Answer]

SYSTEM_ROLES = (
    ("_SEED_ADMIN_ROLE", "Super Admin", True),
    ("_GROUPS_ADMIN_ROLE", "Groups Administrator", False),
    ("_USER_MANAGEMENT_ADMIN_ROLE", "User Management Administrator", False),
    ("_HELP_DESK_ADMIN_ROLE", "Help Desk Administrator", False),
    ("_SERVICES_ADMIN_ROLE", "Services Administrator", False),
)
"""Every customer's pre-defined roles: (roleName, roleDescription, isSuperAdminRole)."""


def _etag(*parts: str) -> str:
    return '"' + hashlib.sha256("/".join(parts).encode()).hexdigest()[:27] + '"'


def _page(items: list[dict[str, Any]], params: Mapping[str, str], kind: str, most: int) -> Answer:
    try:
        size = int(params.get("maxResults", str(most)))
        start = int(params.get("pageToken") or 0)
    except ValueError:
        return 400, google_error(400, "Invalid value for maxResults or pageToken", "invalid")
    if not 1 <= size <= most:
        return 400, google_error(400, f"Invalid value for maxResults: must be between 1 and {most}", "invalid")
    body: dict[str, Any] = {"kind": kind, "etag": _etag(kind, str(len(items))), "items": items[start:start + size]}
    if start + size < len(items):
        body["nextPageToken"] = str(start + size)
    return 200, body


@dataclass
class AdminRoles:
    """The customer's roles and who holds them; a test assigns them (`assign`)."""

    directory: Directory
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    assignments: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for number, (name, description, superadmin) in enumerate(SYSTEM_ROLES, start=1):
            self.add_role(name, description, system=True, superadmin=superadmin, role_id=f"9170516996{number:06d}")

    def add_role(self, name: str, description: str = "", *, system: bool = False, superadmin: bool = False,
                 role_id: str | None = None) -> str:
        """A role of the customer (a custom one unless `system`); returns its roleId."""
        role_id = role_id or f"9170516997{len(self.roles):06d}"
        self.roles[role_id] = {
            "kind": "admin#directory#role", "etag": _etag("role", role_id), "roleId": role_id, "roleName": name,
            "roleDescription": description,
            "rolePrivileges": [{"serviceId": "00haapch16h1ysv", "privilegeName": "USERS_RETRIEVE"}],
            "isSystemRole": system, "isSuperAdminRole": superadmin}
        return role_id

    def role_id(self, name: str) -> str:
        return next(r for r, role in self.roles.items() if role["roleName"] == name)

    def assign(self, role_name: str, user_key: str, *, org_unit_id: str | None = None) -> str:
        """Give a user (id or address) a role, customer-wide or over one org unit; returns the assignment's id."""
        user = self.directory.find_user(user_key)
        assert user is not None, user_key
        assignment_id = f"9170516998{len(self.assignments):06d}"
        self.assignments[assignment_id] = {
            "kind": "admin#directory#roleAssignment", "etag": _etag("assignment", assignment_id),
            "roleAssignmentId": assignment_id, "roleId": self.role_id(role_name), "assignedTo": str(user["id"]),
            "assigneeType": "USER", "scopeType": "ORG_UNIT" if org_unit_id else "CUSTOMER",
            **({"orgUnitId": org_unit_id} if org_unit_id else {})}
        return assignment_id

    def route(self, method: str, customer: str, resource: str) -> tuple[str, Handler] | None:
        if method != "GET" or resource not in ("roles", "roleassignments"):
            return None
        if not self.directory.customer_ok(customer):
            return f"{'roles' if resource == 'roles' else 'roleAssignments'}.list", lambda p, b: (
                404, google_error(404, "Resource Not Found: customer", "notFound"))
        if resource == "roles":
            return "roles.list", lambda p, b: _page(list(self.roles.values()), p, "admin#directory#roles", 100)
        return "roleAssignments.list", lambda p, b: self.list_assignments(p)

    def list_assignments(self, params: Mapping[str, str]) -> Answer:
        if params.get("userKey") and params.get("roleId"):
            return 400, google_error(400, "userKey and roleId cannot both be given", "invalid")
        found = list(self.assignments.values())
        if params.get("userKey"):
            user = self.directory.find_user(params["userKey"])
            if user is None:
                return 404, google_error(404, "Resource Not Found: userKey", "notFound")
            found = [a for a in found if a["assignedTo"] == str(user["id"])]
        if params.get("roleId"):
            found = [a for a in found if a["roleId"] == params["roleId"]]
        return _page(found, params, "admin#directory#roleAssignments", 200)
