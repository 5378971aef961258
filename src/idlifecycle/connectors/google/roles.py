"""Delegated admins' role names for the access review: the Directory API's roles and roleAssignments.

Only with `read_admin_roles = true`, and through a sign-in of its own asking for the one scope it needs,
admin.directory.rolemanagement.readonly: under domain-wide delegation a token request naming a scope the
school has not authorised is refused whole (unauthorized_client), so asking for it in the connector's own
sign-in would stop every night's run too. A refusal (or any failure to read them) is said in the role
cell of the Privileged roles sheet, and the review goes on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build

from idlifecycle.connectors.base import AuthError, ConnectorError
from idlifecycle.connectors.google.session import Session
from idlifecycle.connectors.google.transport import OneSendHttp

ROLES_SCOPE = "https://www.googleapis.com/auth/admin.directory.rolemanagement.readonly"


def role_label(role: Mapping[str, Any]) -> str:
    """A role as the Admin console names it: a system role's description ("Help Desk Administrator"; its
    roleName is Google's `_HELP_DESK_ADMIN_ROLE`), a custom role's own name."""
    name = str(role.get("roleName", ""))
    if role.get("isSystemRole") or name.startswith("_"):
        return str(role.get("roleDescription") or name)
    return name


class RoleNames:
    """Reads, once per review, which roles each user holds (user id -> role names), or says why it cannot."""

    def __init__(self, session: Session, key_info: Mapping[str, str], token_uri: str | None) -> None:
        self.session = session
        info = dict(key_info) | ({"token_uri": token_uri} if token_uri else {})
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[ROLES_SCOPE])
        options = session.options
        self.http = AuthorizedHttp(credentials.with_subject(options.admin), http=OneSendHttp(timeout=options.timeout))
        service = build("admin", "directory_v1", http=self.http, static_discovery=True,
                        client_options={"api_endpoint": options.api_endpoint})
        self.roles, self.assignments = service.roles(), service.roleAssignments()

    def by_user(self) -> dict[str, list[str]] | str:
        """user id -> the names of the roles assigned to them (over one org unit: said so); or why not read."""
        customer = self.session.options.customer
        try:
            roles = {str(r["roleId"]): r for r in self.session.pages(self.roles.list, "items", customer=customer,
                                                                     maxResults=100)}
            held: dict[str, list[str]] = defaultdict(list)
            for assignment in self.session.pages(self.assignments.list, "items", customer=customer,
                                                 maxResults=200):
                if str(assignment.get("assigneeType", "USER")).upper() != "USER":
                    continue  # a group's role reaches its members; isDelegatedAdmin still marks them
                role = roles.get(str(assignment.get("roleId")))
                label = role_label(role) if role else f"role {assignment.get('roleId')}"
                if assignment.get("scopeType") == "ORG_UNIT":
                    label += " (one org unit)"
                held[str(assignment["assignedTo"])].append(label)
        except AuthError:
            return (f"role names not read: Google refused the scope {ROLES_SCOPE} for client ID "
                    f"{self.session.client_id}; add it to the client ID's domain-wide delegation")
        except ConnectorError as error:
            return f"role names not read: {error}"
        finally:
            for connection in self.http.http.connections.values():
                connection.close()
        return {user: sorted(set(names)) for user, names in held.items()}
