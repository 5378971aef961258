"""Who holds an Entra directory role: the snapshot's map of admin accounts (nothing changes them), a fresh
read for an account the snapshot did not hold, the access review's list, and whether this app may set passwords.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from idlifecycle.connectors.entra.cache import Cache
from idlifecycle.connectors.entra.graph import GraphResponse, ResponseError
from idlifecycle.connectors.entra.session import GraphSession, response_refused
from idlifecycle.model import SECOND_FACTOR_NONE, SECOND_FACTOR_REGISTERED, RoleHolder, second_factor_unknown

log = logging.getLogger(__name__)
MAX_PAGE = 999
FRESH_ROLES_SECONDS = 5.0
"""How long directory roles read for an account the snapshot did not hold serve further such checks."""
PASSWORD_ROLES = ("User Administrator", "Privileged Authentication Administrator", "Global Administrator")
REVIEW_SELECT = "$select=id,userPrincipalName,displayName,employeeId"
REGISTRATION_REPORT = "/reports/authenticationMethods/userRegistrationDetails"
"""Each user's registered authentication methods (AuditLog.Read.All, Entra ID P1 or P2): only $filter and $orderBy."""


class Roles:
    """The directory roles of one tenant as this connector knows them."""

    def __init__(self, name: str, session: GraphSession, domains: frozenset[str], note: Callable[[str], None]) -> None:
        self.name = name
        self.session = session
        self.domains = domains
        self.note = note
        """Adds a note to the snapshot being read (Snapshot.notes)."""
        self.privileged: dict[str, str] | None = None
        """User id -> the directory roles it holds, as the last snapshot read them."""
        self._fresh: tuple[float, dict[str, set[str]] | None] = (0.0, None)
        self._password_refusal: str | None = None
        """After the first password change of the session: "" when the app may set passwords, else why not."""

    def read_privileged(self, cache: Cache) -> dict[str, str]:
        """User id -> the directory roles it holds, active or (where PIM can be read) eligible.

        Read afresh for every snapshot: a role assignment changes neither the user nor the group
        deltas. A role held by a role-assignable group makes its members, nested or not, privileged.
        """
        try:
            held = self.session.run(self.holders())
        except ResponseError as error:
            raise response_refused(("roles", "read", "as-is"), error) from None
        privileged: dict[str, set[str]] = {}
        for principal, roles in held.items():
            pending, seen = [principal], set()
            while pending:
                key = pending.pop()
                if key in seen:
                    continue
                seen.add(key)
                if key in cache.users:
                    privileged.setdefault(key, set()).update(roles)
                elif key in cache.groups:
                    pending.extend(cache.groups[key].get("members") or [])
        self.privileged = {key: ", ".join(sorted(roles)) for key, roles in privileged.items()}
        return self.privileged

    async def holders(self) -> dict[str, set[str]]:
        """Principal id -> role names: active `roleAssignments` (or `directoryRoles` members) and PIM eligibilities.

        Three reads a snapshot (role names, assignments, eligibilities): not cached, because a role
        assignment reaches neither delta query.
        """
        roles, _ = await self.session.read_all("/directoryRoles?$select=id,displayName,roleTemplateId")
        names = {str(r.get("roleTemplateId")): str(r.get("displayName")) for r in roles}
        names.update({str(r["id"]): str(r.get("displayName")) for r in roles})
        held: dict[str, set[str]] = {}
        for item in await self._assignments(roles):
            role = names.get(str(item.get("roleDefinitionId")), f"directory role {item.get('roleDefinitionId')}")
            held.setdefault(str(item["principalId"]), set()).add(role)
        try:
            eligible, _ = await self.session.read_all(
                "/roleManagement/directory/roleEligibilityScheduleInstances?$select=principalId,roleDefinitionId"
                f"&$top={MAX_PAGE}")
        except ResponseError as error:
            if error.response.status not in (400, 403):
                raise
            self._eligibility_unread(error.response)
            eligible = []
        for item in eligible:
            role = names.get(str(item.get("roleDefinitionId")), f"directory role {item.get('roleDefinitionId')}")
            held.setdefault(str(item["principalId"]), set()).add(f"eligible for {role}")
        return held

    async def _assignments(self, roles: list[Any]) -> list[Any]:
        """Active role assignments (principalId, roleDefinitionId)."""
        try:
            assignments, _ = await self.session.read_all(
                f"/roleManagement/directory/roleAssignments?$select=principalId,roleDefinitionId&$top={MAX_PAGE}")
            return assignments
        except ResponseError as error:
            if error.response.status != 400:
                raise
            # Early versions of this API wanted a $filter; each activated role's members say the same.
            log.warning("%s: Graph refused to list role assignments (%s): reading each directory role's members",
                        self.name, error)
        members = await asyncio.gather(*(self.session.read_all(f"/directoryRoles/{r['id']}/members?$select=id")
                                         for r in roles))
        return [{"principalId": m["id"], "roleDefinitionId": r["id"]}
                for r, (items, _) in zip(roles, members, strict=True) for m in items]

    def _eligibility_unread(self, refusal: GraphResponse) -> None:
        """Graph would not list PIM eligibilities: the run goes on with active roles only, and says so.

        A school must know its protection is partial: an account eligible to activate a role (not
        holding it now) is then treated as an ordinary account.
        """
        why = ("the tenant has no Entra ID P2 licence" if refusal.error_code == "AadPremiumLicenseRequired"
               else "the app lacks the application permission RoleEligibilitySchedule.Read.Directory"
               if refusal.status == 403 else f"Graph answered {refusal.error_code or refusal.status}")
        note = (f"{self.name}: eligible (PIM) directory roles could not be read ({why}): only accounts holding a "
                "role now are protected as admin accounts; one only eligible for a role is treated as ordinary")
        log.warning("%s", note)
        self.note(note)

    def claimable(self, user: Mapping[str, Any] | None) -> str:
        """Why an existing user found by a lookup must not be taken as a change's account ("" if it may be)."""
        if user is None:
            return ""
        upn = str(user.get("userPrincipalName") or user.get("id"))
        domain = upn.rsplit("@", 1)[-1].lower()
        if domain not in self.domains:
            return f"{upn} is outside the managed domains ({', '.join(sorted(self.domains))})"
        why = (self.privileged or {}).get(str(user.get("id")), "")
        return f"{upn} is a privileged account ({why})" if why else ""

    async def claimable_now(self, cache: Cache, user: Mapping[str, Any]) -> str:
        """`claimable`, and for an account the snapshot did not hold (made or given this UPN or anchor
        since) its directory roles read now: the snapshot's role map cannot know it."""
        why = self.claimable(user)
        key = str(user.get("id"))
        if why or key in cache.users:
            return why
        held = await self._holders_now()
        roles = set(held.get(key, set()))
        for principal, names in held.items():
            if principal in cache.groups:  # a role-assignable group: its members as they are now
                members, _ = await self.session.read_all(f"/groups/{principal}/members?$select=id")
                if any(str(m.get("id")) == key for m in members):
                    roles |= names
        upn = str(user.get("userPrincipalName") or key)
        return f"{upn} is a privileged account ({', '.join(sorted(roles))})" if roles else ""

    async def _holders_now(self) -> dict[str, set[str]]:
        """`holders`, read again at most every FRESH_ROLES_SECONDS: many creates whose replies were lost in
        one batch are looked up side by side, and each would read the roles."""
        read_at, held = self._fresh
        if held is None or time.monotonic() - read_at > FRESH_ROLES_SECONDS:
            held = await self.holders()
            self._fresh = (time.monotonic(), held)
        return held

    def review(self) -> list[RoleHolder]:
        """Every person holding a directory role, directly or through a role-assignable group (the access review)."""
        try:
            return self.session.run(self._review())
        except ResponseError as error:
            raise response_refused(("review", "as-is"), error) from None

    async def second_factors(self) -> Callable[[str], str]:
        """User id -> its second factor from the registration report: "registered" when it has a strong method
        the policy allows (isMfaCapable), else "none"; "unknown — <why>" for all when Graph refuses the report."""
        try:
            # All of it, not `isAdmin eq true`: whether Graph's isAdmin counts a role held through a
            # role-assignable group is not documented, and an admin left out would read "unknown".
            details, _ = await self.session.read_all(REGISTRATION_REPORT)
        except ResponseError as error:
            if error.response.status != 403:
                raise
            why = ("the tenant has no Entra ID P1 or P2 licence for the registration report"
                   if error.response.error_code == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
                   else "the app lacks the application permission AuditLog.Read.All")
            return lambda key: second_factor_unknown(why)
        capable = {str(d.get("id")): bool(d.get("isMfaCapable")) for d in details}
        missing = second_factor_unknown("not in Entra's registration report")
        return lambda key: missing if key not in capable else (
            SECOND_FACTOR_REGISTERED if capable[key] else SECOND_FACTOR_NONE)

    async def _review(self) -> list[RoleHolder]:
        roles, _ = await self.session.read_all("/directoryRoles")
        second_factor = await self.second_factors()
        holders: list[RoleHolder] = []
        for role in roles:
            members, _ = await self.session.read_all(f"/directoryRoles/{role['id']}/members?{REVIEW_SELECT}")
            pending = [(member, str(role["displayName"])) for member in members]
            seen: set[str] = set()
            while pending:
                member, held = pending.pop(0)
                kind = member.get("@odata.type")
                if kind == "#microsoft.graph.servicePrincipal" or member["id"] in seen:
                    continue  # an app (this one, holding User Administrator to set passwords): not a person
                seen.add(member["id"])
                if kind == "#microsoft.graph.group":
                    # A role-assignable group holds the role for each of its members: the review
                    # lists the people, each with the group it comes through.
                    inside, _ = await self.session.read_all(f"/groups/{member['id']}/members?{REVIEW_SELECT}")
                    through = f"{role['displayName']} (through the group {member.get('displayName')})"
                    pending.extend((m, through) for m in inside)
                    continue
                holders.append(RoleHolder(
                    self.name, held, str(member.get("userPrincipalName") or member.get("displayName") or member["id"]),
                    str(member.get("displayName") or ""), member.get("employeeId") or None,
                    second_factor=second_factor(str(member["id"]))))
        return holders

    async def may_not_set_passwords(self) -> str:
        """Why the app may not set passwords ("" when it may), checked once, before the first password change.

        App-only, Graph lets an app write passwordProfile only when its service principal holds
        at least the User Administrator role as well as User.ReadWrite.All
        (https://learn.microsoft.com/en-us/graph/api/user-update); without it every password
        change is a 403. Reading the roles needs RoleManagement.Read.Directory: when that is
        refused the question is left to Graph's answers.
        """
        if self._password_refusal is None:
            self._password_refusal = ""
            client_id = self.session.credentials.client_id
            try:
                roles, _ = await self.session.read_all("/directoryRoles?$select=id,displayName")
                held = False
                for role in (r for r in roles if r.get("displayName") in PASSWORD_ROLES):
                    members, _ = await self.session.read_all(f"/directoryRoles/{role['id']}/members?$select=id,appId")
                    held = held or any(m.get("appId") == client_id for m in members)
            except ResponseError:
                held = True
            if not held:
                self._password_refusal = (
                    f"app {client_id!r} may not set passwords: Graph lets an app set them only when it also holds "
                    "the User Administrator role (or Privileged Authentication Administrator); in the Entra admin "
                    "centre open Roles & admins > User Administrator > Add assignments, add the app, and run again")
        return self._password_refusal
