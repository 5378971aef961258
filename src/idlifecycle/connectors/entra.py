"""The Entra ID connector: snapshot and change a school's Microsoft 365 tenant through Microsoft Graph.

Settings (a `connectors/*.toml` table; secrets never live there):

    name = "entra"
    type = "entra"
    tenant_id = "…"                      # Directory (tenant) ID
    client_id = "…"                      # Application (client) ID of the app registration
    certificate = "/etc/idlifecycle/entra.pem"   # public certificate; preferred over a client secret
    domains = { staff = "staff.example.sch.uk", pupil = "pupils.example.sch.uk" }
    group_marker = "Managed by idlifecycle"
    usage_location = "GB"
    hybrid = "detect"                    # or "off"
    write_limit_per_second = 20          # Graph: 3,000 writes per 2.5 minutes per app per tenant
    max_batches_in_flight = 4
    attributes = ["department", "jobTitle", "employeeType"]
    assign_licences = { pupil = ["<skuId>"] }   # optional; licence groups need nothing here
    sign_in_activity = false             # true: read last sign-ins (needs AuditLog.Read.All, Entra ID P1)
    authority_host = "login.microsoftonline.com"
    graph_url = "https://graph.microsoft.com/v1.0"
    ca_file = "…"                        # optional: a private CA to trust (TLS-inspecting proxies)
    timeout_seconds = 60                 # longest wait for the next bytes of a reply
    connect_timeout_seconds = 10         # to open a connection (TCP and TLS)
    request_timeout_seconds = 120        # one whole request, reply included (default: twice timeout_seconds)
    give_up_after_seconds = 120          # Graph answers nothing for this long: the rest of the run's changes fail

Secrets (environment or secret files, see `idlifecycle.config.Secrets`): `<name>_certificate_key`
(the PEM private key of `certificate`) or, without a certificate, `<name>_client_secret`.

Graph application permissions (least privilege, each needs admin consent): User.ReadWrite.All,
GroupMember.ReadWrite.All; Group.Create to create groups; RoleManagement.Read.Directory to know the
directory role holders (every snapshot marks them privileged, and nothing changes them) and for the
access review; LicenseAssignment.ReadWrite.All only with `assign_licences`;
AuditLog.Read.All only with `sign_in_activity`. Setting passwords also needs the app's service
principal to hold the User Administrator role (or higher): Graph refuses app-only passwordProfile
writes without it, whatever the permissions (checked once per run, see `_may_not_set_passwords`).

Scope: the managed accounts are the users whose sign-in name (UPN) is in one of `domains`; the
domain also tells a new account's kind (for `assign_licences`). The managed groups are those
whose description contains `group_marker` (case-insensitive); groups this tool creates carry it,
and a school hands an existing group (e.g. a licence group) to the tool by adding it to the
description. With `hybrid = "detect"`, users synchronised from on-premises AD by Entra Connect
are in scope but read-only for their synced attributes (only group membership, licences and
session revocation are written); with `"off"` they are treated as outside the scope.

Snapshots read `/users/delta` and `/groups/delta`; the delta links are kept with the state
store's cursors and the directory as last seen in `<state>/cache/entra-<name>/directory-cache.json`,
so a nightly run reads only what changed. Writes go in fully parallel JSON $batches of 20, paced
under `write_limit_per_second`, with creates never duplicated (see `_create`, `_create_group`); a
404 on an object this run created is replication delay and retried (`entra_graph.REPLICATION_PATIENCE`).
Each change's Result is yielded as soon as its requests are answered, not when the phase ends
(see `apply`). A lost reply, a reset connection or a 5xx makes only the changes in that batch
uncertain: each is settled by reading the object back (retried, `GraphSession.lookup`) or sent
again, and a change whose earlier, unanswered attempt landed is APPLIED, not "already so". When
Graph has answered nothing for `give_up_after_seconds` (it hangs, or refuses connections) the
changes not yet answered, and any later ones this run, fail at once (retryable): a directory
that stops answering costs the run at most that long, and the other directories go on.

The demo's tenant is a connector type of its own, `type = "entra-sandbox"` (idlifecycle.sandbox.launch):
it starts the Graph emulator and hands this connector its endpoint, credentials and CA file
(`on_endpoint`), so this module has no sandbox branch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import re
import secrets
import string
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from idlifecycle.anchors import directory_anchor, is_short_anchor
from idlifecycle.connectors.base import (
    AuthError,
    Capabilities,
    Connector,
    ConnectorContext,
    ConnectorError,
    CursorStore,
)
from idlifecycle.connectors.entra_graph import (
    BatchRequest,
    Credentials,
    GraphResponse,
    GraphSession,
    RequestGroup,
    ResponseError,
)
from idlifecycle.errors import ConfigError, UserError
from idlifecycle.model import Account, Action, Change, DeletedAccount, Group, Outcome, Result, RoleHolder, Snapshot

log = logging.getLogger(__name__)
LICENCE_DEBT_DAYS = 14
EMPLOYEE_ID_LIMIT = 16
FRESH_ROLES_SECONDS = 5.0
"""How long directory roles read for an account the snapshot did not hold serve further such checks."""
"""employeeId holds at most 16 characters (https://learn.microsoft.com/en-us/graph/api/resources/user):
a longer person id is written as its short anchor (idlifecycle.anchors)."""
EXTENSION_ATTRIBUTES = tuple(f"extensionAttribute{n}" for n in range(1, 16))
USER_FIELDS = ("id", "userPrincipalName", "givenName", "surname", "displayName", "employeeId", "accountEnabled",
               "createdDateTime", "lastPasswordChangeDateTime", "passwordPolicies", "onPremisesSyncEnabled",
               "usageLocation", "mailNickname", "proxyAddresses", "onPremisesExtensionAttributes")
GROUP_FIELDS = "displayName,description,proxyAddresses,members"
PASSWORD_ACTIONS = (Action.SET_PASSWORD, Action.REQUIRE_PASSWORD_CHANGE)
DELTA_UNSUPPORTED = frozenset({
    "aboutMe", "birthday", "hireDate", "interests", "mySite", "pastProjects", "preferredName", "responsibilities",
    "schools", "skills", "signInActivity",
})
"""User properties Graph's users/delta refuses in $select (microsoft-graph-docs#14141, #4746;
microsoft-graph-explorer-v4#3189): a snapshot asking for one fails whole."""
PASSWORD_ROLES = ("User Administrator", "Privileged Authentication Administrator", "Global Administrator")
MAX_PAGE = 999
MEMBERS_PER_PATCH = 20
PASSWORD_SYMBOLS = "!#$%&*+-=?@^_"  # noqa: S105 - the symbols Entra accepts, not a password
Interpret = Callable[[list[GraphResponse]], Awaitable[Result]]
Emit = Callable[[Result], None]
"""Hands one change's Result to `apply`'s caller as soon as it is decided (called on the session's loop)."""
GIVE_UP_AFTER = 120.0
"""Default `give_up_after_seconds`: how long Graph may answer nothing before the run's remaining changes fail."""


@dataclass
class _Settings:
    domains: dict[str, str]
    group_marker: str
    usage_location: str
    hybrid: str
    attributes: tuple[str, ...]
    assign_licences: dict[str, list[str]]
    sign_in_activity: bool
    full_id_attribute: str = "extensionAttribute15"
    """Where a person id too long for employeeId is written in full (onPremisesExtensionAttributes), "" for nowhere."""
    give_up_after: float = GIVE_UP_AFTER


@dataclass
class _Cache:
    """The tenant as last read: all users (scope is applied when building a Snapshot) and groups."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    users_link: str | None = None
    groups_link: str | None = None


@dataclass
class _Step:
    """What one Change sends (a slice of its account's request chain) and how to read the replies."""

    change: Change
    requests: list[BatchRequest]
    interpret: Interpret
    result: Result | None = None
    uncertain: Callable[[int], Awaitable[GraphResponse | None]] | None = None
    """Asked after a lost reply or a 5xx: a stand-in reply when the write did happen (see RequestGroup)."""
    extra: dict[str, Result] = field(default_factory=dict)
    """Results of further changes this step's requests carried (20 member adds in one PATCH)."""
    lost: set[int] = field(default_factory=set)
    """Indexes of this step's requests whose reply was lost (or a 5xx) before they were sent again: an
    "already so" answer to the resend is this run's own write landing (APPLIED, not ALREADY)."""
    carries: tuple[str, ...] = ()
    """Ids of the further changes this step's requests carry (those `extra` answers)."""


class EntraConnector(Connector):
    capabilities: ClassVar[Capabilities] = Capabilities(
        containers=False, max_username_length=64, revoke_sessions=True, licence_groups=True, hybrid=True,
        password_rules="entra",  # noqa: S106 - names a rule set, not a password
        max_anchor_length=EMPLOYEE_ID_LIMIT, recycle_bin=True,
    )

    option_keys: ClassVar[frozenset[str]] = frozenset({
        "assign_licences", "attributes", "authority_host", "ca_file", "certificate", "client_id", "domains",
        "full_id_attribute", "graph_url", "group_marker", "hybrid", "max_batches_in_flight",
        "sign_in_activity", "tenant_id", "timeout_seconds", "usage_location", "write_limit_per_second",
        "connect_timeout_seconds", "request_timeout_seconds", "give_up_after_seconds",
    })

    def __init__(self, name: str, session: GraphSession, settings: _Settings, cursors: CursorStore,
                 cache_file: Path, stop: Callable[[], None] | None = None) -> None:
        super().__init__(name)
        self.session = session
        self.settings = settings
        self.cursors = cursors
        self.cache_file = cache_file
        self.cache: _Cache | None = None
        self._notes: list[str] = []
        """Notes of the snapshot being read (Snapshot.notes)."""
        self._stop = stop
        self._domains = {d.lower() for d in settings.domains.values()}
        self._licence_debt: dict[str, float] | None = None
        """Accounts created without their direct licence -> when (epoch seconds); kept in the store."""
        self._password_refusal: str | None = None
        """After the first password change of the session: "" when the app may set passwords, else why not."""
        self._privileged: dict[str, str] | None = None
        self._fresh_roles: tuple[float, dict[str, set[str]] | None] = (0.0, None)
        """User id -> the directory roles it holds, as the last snapshot read them."""
        self._unreachable: str | None = None
        """Set when Graph stopped answering during this run: why every later change fails at once."""
        self._sent: set[str] = set()
        """Ids of the changes in the current `apply` whose write has gone out (they may land unanswered)."""

    # configuration ------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, context: ConnectorContext) -> EntraConnector:
        settings = _read_settings(context)
        ca_file = context.option("ca_file")
        graph_url = str(context.option("graph_url", "https://graph.microsoft.com/v1.0"))
        return cls.on_endpoint(context, settings, _read_credentials(context), graph_url,
                               str(ca_file) if ca_file else None)

    @classmethod
    def read_settings(cls, context: ConnectorContext) -> _Settings:
        """The table's settings, checked (ConfigError naming the file and key), for a launcher to read first."""
        return _read_settings(context)

    @classmethod
    def on_endpoint(cls, context: ConnectorContext, settings: _Settings, credentials: Credentials, graph_url: str,
                    ca_file: str | None, *, stop: Callable[[], None] | None = None) -> EntraConnector:
        """The connector signed in with `credentials` to the Graph root `graph_url`, trusting `ca_file` when
        given; `stop` runs when it closes (the sandbox launcher's emulator), and also if it cannot be built."""
        needs = ["Group.Create", "RoleManagement.Read.Directory"]
        if settings.sign_in_activity:
            needs.append("AuditLog.Read.All")
        if settings.assign_licences:
            needs.append("LicenseAssignment.ReadWrite.All")
        try:
            session = GraphSession(
                credentials, graph_url, ca_file=str(ca_file) if ca_file else None,
                timeout=float(context.option("timeout_seconds", 60)),
                connect_timeout=float(context.option("connect_timeout_seconds", 10)),
                request_timeout=(float(context.option("request_timeout_seconds"))
                                 if context.option("request_timeout_seconds") is not None else None),
                max_in_flight=int(context.option("max_batches_in_flight", 4)),
                write_limit_per_second=float(context.option("write_limit_per_second", 20)), needs=needs,
            )
        except BaseException:
            if stop is not None:
                stop()
            raise
        connector_type: type[EntraConnector] = _CloudOnlyEntraConnector if settings.hybrid == "off" else cls
        cache = (context.cache_dir or context.state_dir) / f"entra-{context.name}" / "directory-cache.json"
        return connector_type(context.name, session, settings, context.cursors, cache, stop)

    def close(self) -> None:
        self.session.close()
        if self._stop is not None:
            self._stop()
            self._stop = None

    # reading ------------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        self._notes = []
        cache = self._refresh()
        self._unreachable = None  # Graph answered a whole read: later changes are sent again
        sign_ins = self.session.run(self._sign_ins()) if self.settings.sign_in_activity else {}
        privileged = self._privileged = self._read_privileged(cache)
        accounts: list[Account] = []
        outside: set[str] = set()
        debt = self._owed_licences(cache)
        for user in cache.users.values():
            upn = str(user.get("userPrincipalName") or "")
            if user["id"] in debt:
                # Created by an earlier run whose licence could not be assigned: the create is not
                # finished, so it is left out and planned again (`_create` then assigns the licence).
                # Its name stays taken meanwhile.
                outside.add(upn.split("@")[0].lower())
                continue
            if self._in_scope(user):
                accounts.append(replace(self._account(user, sign_ins.get(user["id"])),
                                        privileged=privileged.get(str(user["id"]), "")))
            elif upn:
                outside.add(upn.split("@")[0].lower())
        for user in cache.deleted.values():
            if user.get("userPrincipalName"):
                # A deleted user's name is not reissued while it can be restored (deleted items list its
                # UPN with an id prefix, `_deleted_upn`).
                outside.add(_deleted_upn(user).split("@")[0].lower())
        # An address in any object's proxyAddresses (a renamed or deleted person's old address, a
        # mail-enabled group's) is refused for a new UPN: "Another object with the same value for
        # property proxyAddresses already exists" (microsoft-graph-docs-contrib#8421). Their local
        # parts are reserved in every domain, which is stricter than Graph but never wrong.
        for obj in (*cache.users.values(), *cache.deleted.values(), *cache.groups.values()):
            outside.update(_proxy_local_parts(obj))
        groups = tuple(
            Group(self.name, key, str(group.get("displayName") or ""),
                  {m: self._member_name(m) for m in sorted(group["members"])})
            for key, group in sorted(cache.groups.items()) if self._managed_group(group)
        )
        managed_names = {a.username.lower() for a in accounts}
        return Snapshot(self.name, tuple(sorted(accounts, key=lambda a: a.key)), groups,
                        frozenset(outside - managed_names), notes=tuple(self._notes))

    def _read_privileged(self, cache: _Cache) -> dict[str, str]:
        """User id -> the directory roles it holds, active or (where PIM can be read) eligible.

        Read afresh for every snapshot: a role assignment changes neither the user nor the group
        deltas. A role held by a role-assignable group makes its members, nested or not, privileged.
        """
        try:
            held = self.session.run(self._role_holders())
        except ResponseError as error:
            if error.response.status == 403:
                raise AuthError("Graph refused to list directory role assignments, so admin accounts cannot be "
                                "told apart and none is touched: the app needs the application permission "
                                "RoleManagement.Read.Directory with admin consent") from None
            raise self._read_error(error) from None
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
        return {key: ", ".join(sorted(roles)) for key, roles in privileged.items()}

    async def _role_holders(self) -> dict[str, set[str]]:
        """Principal id -> role names: active `roleAssignments` (or `directoryRoles` members) and PIM eligibilities.

        Three reads a snapshot (role names, assignments, eligibilities): not cached, because a role
        assignment reaches neither delta query.
        """
        roles, _ = await self.session.read_all("/directoryRoles?$select=id,displayName,roleTemplateId")
        names = {str(r.get("roleTemplateId")): str(r.get("displayName")) for r in roles}
        names.update({str(r["id"]): str(r.get("displayName")) for r in roles})
        held: dict[str, set[str]] = {}
        try:
            assignments, _ = await self.session.read_all(
                f"/roleManagement/directory/roleAssignments?$select=principalId,roleDefinitionId&$top={MAX_PAGE}")
        except ResponseError as error:
            if error.response.status != 400:
                raise
            # Early versions of this API wanted a $filter; each activated role's members say the same.
            log.warning("%s: Graph refused to list role assignments (%s): reading each directory role's members",
                        self.name, error)
            members = await asyncio.gather(*(self.session.read_all(f"/directoryRoles/{r['id']}/members?$select=id")
                                             for r in roles))
            assignments = [{"principalId": m["id"], "roleDefinitionId": r["id"]}
                           for r, (items, _) in zip(roles, members, strict=True) for m in items]
        for item in assignments:
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
        if note not in self._notes:
            self._notes.append(note)

    def privileged_reason(self, key: str) -> str:
        if self._privileged is None:
            self._privileged = self._read_privileged(self.cache or self._refresh())
        return self._privileged.get(key, "")

    def _claimable(self, user: Mapping[str, Any] | None) -> str:
        """Why an existing user found by a lookup must not be taken as a change's account ("" if it may be)."""
        if user is None:
            return ""
        upn = str(user.get("userPrincipalName") or user.get("id"))
        domain = upn.rsplit("@", 1)[-1].lower()
        if domain not in self._domains:
            return f"{upn} is outside the managed domains ({', '.join(sorted(self._domains))})"
        why = (self._privileged or {}).get(str(user.get("id")), "")
        return f"{upn} is a privileged account ({why})" if why else ""

    async def _claimable_now(self, cache: _Cache, user: Mapping[str, Any]) -> str:
        """`_claimable`, and for an account the snapshot did not hold (made or given this UPN or anchor
        since) its directory roles read now: the snapshot's role map cannot know it."""
        why = self._claimable(user)
        key = str(user.get("id"))
        if why or key in cache.users:
            return why
        held = await self._role_holders_now()
        roles = set(held.get(key, set()))
        for principal, names in held.items():
            if principal in cache.groups:  # a role-assignable group: its members as they are now
                members, _ = await self.session.read_all(f"/groups/{principal}/members?$select=id")
                if any(str(m.get("id")) == key for m in members):
                    roles |= names
        upn = str(user.get("userPrincipalName") or key)
        return f"{upn} is a privileged account ({', '.join(sorted(roles))})" if roles else ""

    async def _role_holders_now(self) -> dict[str, set[str]]:
        """`_role_holders`, read again at most every FRESH_ROLES_SECONDS: many creates whose replies
        were lost in one batch are looked up side by side, and each would read the roles."""
        read_at, held = self._fresh_roles
        if held is None or time.monotonic() - read_at > FRESH_ROLES_SECONDS:
            held = await self._role_holders()
            self._fresh_roles = (time.monotonic(), held)
        return held

    def _owed_licences(self, cache: _Cache) -> dict[str, float]:
        """Accounts this tool created whose direct licence is still to be assigned (kept in the store).

        After LICENCE_DEBT_DAYS an account is given up on (logged) and managed like any other, so
        that a person who left meanwhile is still disabled.
        """
        if self._licence_debt is None:
            stored = self.cursors.get_cursor(self.name, "licence_debt")
            self._licence_debt = {str(k): float(v) for k, v in json.loads(stored).items()} if stored else {}
        now = time.time()
        stale = {k for k, since in self._licence_debt.items()
                 if k not in cache.users or now - since > LICENCE_DEBT_DAYS * 86400}
        for key in stale:
            if key in cache.users:
                log.warning("%s: the licence of %s could not be assigned for %d days; it is now managed without it",
                            self.name, cache.users[key].get("userPrincipalName"), LICENCE_DEBT_DAYS)
            del self._licence_debt[key]
        if stale:
            self._save_licence_debt()
        return dict(self._licence_debt)

    def _save_licence_debt(self, owed: Mapping[str, float] | None = None) -> None:
        owed = (self._licence_debt or {}) if owed is None else owed
        self.cursors.set_cursor(self.name, "licence_debt", json.dumps(owed, sort_keys=True) if owed else None)

    def _in_scope(self, user: Mapping[str, Any]) -> bool:
        upn = str(user.get("userPrincipalName") or "")
        domain = upn.rsplit("@", 1)[-1].lower()
        return domain in self._domains and not (self.settings.hybrid == "off" and user.get("onPremisesSyncEnabled"))

    def _managed_group(self, group: Mapping[str, Any]) -> bool:
        return self.settings.group_marker.lower() in str(group.get("description") or "").lower()

    def _member_name(self, key: str) -> str:
        assert self.cache is not None
        user = self.cache.users.get(key)
        if user is not None:
            return str(user.get("displayName") or user.get("userPrincipalName") or key)
        group = self.cache.groups.get(key)
        return str(group.get("displayName") or key) if group else key

    def _account(self, user: Mapping[str, Any], last_sign_in: datetime | None) -> Account:
        upn = str(user["userPrincipalName"])
        policies = str(user.get("passwordPolicies") or "")
        return Account(
            directory=self.name, key=str(user["id"]), username=upn.split("@")[0], login=upn,
            given_name=str(user.get("givenName") or ""), surname=str(user.get("surname") or ""),
            display_name=str(user.get("displayName") or ""), anchor=self._person_id(user),
            enabled=bool(user.get("accountEnabled")), container="",
            attributes={a: str(user[a]) for a in self.settings.attributes if user.get(a)},
            password_never_expires="DisablePasswordExpiration" in policies,
            synced_from_on_premises=bool(user.get("onPremisesSyncEnabled")),
            created=_when(user.get("createdDateTime")), last_sign_in=last_sign_in,
            password_last_set=_when(user.get("lastPasswordChangeDateTime")),
        )

    def _person_id(self, user: Mapping[str, Any]) -> str | None:
        """The person id an account carries: employeeId, or the full id behind a short anchor.

        The full id is taken from the extension attribute only when it hashes to the employeeId, so an
        edited attribute cannot move an account to another person; otherwise the job resolves the
        short anchor from the ids it knows (Job.snapshots).
        """
        anchor = user.get("employeeId") or None
        if anchor is None or not is_short_anchor(anchor) or not self.settings.full_id_attribute:
            return anchor
        full = (user.get("onPremisesExtensionAttributes") or {}).get(self.settings.full_id_attribute)
        if isinstance(full, str) and full and directory_anchor(full, EMPLOYEE_ID_LIMIT) == anchor:
            return full
        return str(anchor)

    def _anchor_fields(self, person_id: str) -> dict[str, Any]:
        """What a create or adopt writes to anchor an account to `person_id`."""
        anchor = directory_anchor(person_id, EMPLOYEE_ID_LIMIT)
        fields: dict[str, Any] = {"employeeId": anchor}
        if anchor != person_id and self.settings.full_id_attribute:
            fields["onPremisesExtensionAttributes"] = {self.settings.full_id_attribute: person_id}
        return fields

    def _refresh(self) -> _Cache:
        """Bring the cache up to date through delta links; a full read when there are none or they expired."""
        cache = self.cache or self._load_cache()
        try:
            changed, links_changed = self.session.run(self._read_deltas(cache))
        except ResponseError as error:
            raise self._read_error(error) from None
        self.cache = cache
        generation = self._save_cache(cache) if changed else None
        if changed or links_changed:
            # Graph hands out a new link every round; when nothing else changed, the cache file (tens
            # of megabytes in a large school) is not rewritten: its generation still matches the store.
            self.cursors.set_cursor(self.name, "users_delta", cache.users_link)
            self.cursors.set_cursor(self.name, "groups_delta", cache.groups_link)
        if generation is not None:
            self.cursors.set_cursor(self.name, "cache_generation", generation)
        return cache

    def recycle_bin(self) -> list[DeletedAccount]:
        """The deleted users (restorable for 30 days) whose UPN is in one of `domains`.

        `GET /directory/deletedItems/microsoft.graph.user`: the cast is required (the bare collection is
        not supported), paged through @odata.nextLink (`read_all`); $select names what is read, since
        employeeId is not among a user's default properties.
        """
        fields = "id,userPrincipalName,employeeId,deletedDateTime"
        if self.settings.full_id_attribute:
            fields += ",onPremisesExtensionAttributes"
        try:
            items, _ = self.session.run(self.session.read_all(
                f"/directory/deletedItems/microsoft.graph.user?$select={fields}&$top={MAX_PAGE}"))
        except ResponseError as error:
            raise self._read_error(error) from None
        found = []
        for item in items:
            username, _, domain = _deleted_upn(item).rpartition("@")
            if username and domain.lower() in self._domains:
                found.append(DeletedAccount(self.name, str(item["id"]), username, self._person_id(item),
                                            _when(item.get("deletedDateTime"))))
        return found

    def _read_error(self, error: ResponseError) -> ConnectorError:
        if error.response.status == 403 and error.response.from_graph:
            return AuthError(f"Graph refused to read the directory ({error}); the app needs the application "
                             "permissions User.ReadWrite.All and GroupMember.ReadWrite.All with admin consent")
        if error.response.status == 429:
            return ConnectorError(f"Graph is throttling reads: {error}", retryable=True)
        return error

    async def _read_deltas(self, cache: _Cache) -> tuple[bool, bool]:
        """Merge what changed into `cache`; (whether the directory did, whether a delta link did)."""
        select_users = self._users_select()
        prefer = {"Prefer": f"odata.maxpagesize={MAX_PAGE}"}
        refused: list[str] = []

        async def read(link: str | None, first: str) -> tuple[list[Any], str | None, bool]:
            if link:
                try:
                    items, new_link = await self.session.read_all(self._rebase(link), prefer)
                    return items, new_link, False
                except ResponseError as error:
                    # Expired links answer 400 syncStateNotFound after seven days (Graph's blog, "Duration of
                    # change tracking tokens"), 410 when the service lost the state, other 4xx codes now and
                    # then: any refusal of the link itself means one full read, not a failed night.
                    status, code = error.response.status, error.response.error_code.lower()
                    if not (status == 410 or code in ("syncstatenotfound", "resyncrequired")
                            or (400 <= status < 500 and status not in (401, 403, 429))):
                        raise
                    log.warning("%s: Graph refused the stored %s delta link (%s): reading the whole directory "
                                "once instead", self.name, first.split("/")[1], error)
                    refused.append(f"{first.split('/')[1]} ({error.response.error_code or error.response.status})")
            items, new_link = await self.session.read_all(first, prefer)
            return items, new_link, True

        (user_items, users_link, users_full), (group_items, groups_link, groups_full) = await asyncio.gather(
            read(cache.users_link, f"/users/delta?$select={select_users}"),
            read(cache.groups_link, f"/groups/delta?$select={GROUP_FIELDS}"),
        )
        if refused:
            self._notes.append(f"{self.name}: Graph refused the stored delta links for {' and '.join(sorted(refused))}"
                               " (they expire after about 7 days without a run): the whole directory was read "
                               "once instead")
        if users_full:
            cache.users, cache.deleted = {}, {}
        if groups_full:
            cache.groups = {}
        for item in user_items:
            key = str(item["id"])
            removed = item.get("@removed")
            if removed is not None:
                old = cache.users.pop(key, None)
                if removed.get("reason") == "changed" and old is not None:
                    cache.deleted[key] = old
                elif removed.get("reason") != "changed":
                    cache.deleted.pop(key, None)
                continue
            cache.deleted.pop(key, None)
            cache.users[key] = {**cache.users.get(key, {}), **item}
        for item in group_items:
            key = str(item["id"])
            if item.get("@removed") is not None:
                cache.groups.pop(key, None)
                continue
            group = cache.groups.setdefault(key, {"members": []})
            members = set(group["members"])
            for member in item.get("members@delta", []):
                if member.get("@removed") is not None:
                    members.discard(str(member["id"]))
                else:
                    members.add(str(member["id"]))
            group.update({k: v for k, v in item.items() if k != "members@delta"})
            group["members"] = sorted(members)
        links_changed = (users_link, groups_link) != (cache.users_link, cache.groups_link)
        cache.users_link, cache.groups_link = users_link, groups_link
        return bool(user_items or group_items or users_full or groups_full), links_changed

    def _rebase(self, link: str) -> str:
        """A stored link on the configured Graph root (the sandbox gets a new port on every run)."""
        version = urlsplit(self.session.graph_url).path
        parts = urlsplit(link)
        if not parts.path.startswith(version + "/"):
            return link
        return self.session.graph_url + parts.path[len(version):] + (f"?{parts.query}" if parts.query else "")

    async def _sign_ins(self) -> dict[str, datetime | None]:
        try:
            items, _ = await self.session.read_all(f"/users?$select=id,signInActivity&$top={MAX_PAGE}")
        except ResponseError as error:
            if error.response.error_code != "Authentication_RequestFromNonPremiumTenantOrB2CTenant":
                raise
            # Sign-in activity needs Entra ID P1 in the tenant: the access review goes without it.
            log.warning("%s: sign_in_activity: the tenant has no Entra ID P1 licence, so Graph does not give "
                        "last sign-in dates; the access review is made without them", self.name)
            self._notes.append(f"{self.name}: no last sign-in dates (sign_in_activity needs Entra ID P1, which "
                               "the tenant does not have)")
            return {}
        return {str(u["id"]): _when((u.get("signInActivity") or {}).get("lastSignInDateTime")) for u in items}

    def _users_select(self) -> str:
        return ",".join(dict.fromkeys((*USER_FIELDS, *self.settings.attributes)))

    def _load_cache(self) -> _Cache:
        users_link = self.cursors.get_cursor(self.name, "users_delta")
        groups_link = self.cursors.get_cursor(self.name, "groups_delta")
        try:
            data = json.loads(self.cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return _Cache()
        if not users_link or not groups_link or data.get("generation") != self.cursors.get_cursor(
                self.name, "cache_generation"):
            return _Cache()  # the store and the cache file disagree (restored backup?): read everything
        if data.get("select") != [self._users_select(), GROUP_FIELDS]:
            # A delta link keeps the $select it began with: new properties (an attribute added to the
            # settings, a newer version reading more) arrive only through a full read.
            return _Cache()
        return _Cache(data["users"], data["deleted"], data["groups"], users_link, groups_link)

    def _save_cache(self, cache: _Cache) -> str:
        """Write the cache file under a new generation (returned, for the store)."""
        generation = secrets.token_hex(8)
        # Every user's details are in it: private whatever the umask (0700 folder, 0600 file), and
        # written whole (temporary file, fsync, rename) so a kill never leaves half a cache.
        self.cache_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.cache_file.with_suffix(".tmp")
        body = json.dumps({"generation": generation, "select": [self._users_select(), GROUP_FIELDS],
                           "users": cache.users, "deleted": cache.deleted, "groups": cache.groups},
                          separators=(",", ":")).encode("utf-8")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # an older temporary file may have other bits
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.cache_file)
        return generation

    def privileged_roles(self) -> Sequence[RoleHolder]:
        select = "$select=id,userPrincipalName,displayName,employeeId"

        async def read() -> list[RoleHolder]:
            roles, _ = await self.session.read_all("/directoryRoles")
            holders: list[RoleHolder] = []
            for role in roles:
                members, _ = await self.session.read_all(f"/directoryRoles/{role['id']}/members?{select}")
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
                        inside, _ = await self.session.read_all(f"/groups/{member['id']}/members?{select}")
                        through = f"{role['displayName']} (through the group {member.get('displayName')})"
                        pending.extend((m, through) for m in inside)
                        continue
                    holders.append(RoleHolder(
                        self.name, held,
                        str(member.get("userPrincipalName") or member.get("displayName") or member["id"]),
                        str(member.get("displayName") or ""), member.get("employeeId") or None))
            return holders
        try:
            return self.session.run(read())
        except ResponseError as error:
            if error.response.status == 403:
                raise AuthError("Graph refused to list directory roles: the app needs the application permission "
                                "RoleManagement.Read.Directory with admin consent") from None
            raise

    # writing ------------------------------------------------------------------------------------
    def apply_one(self, change: Change) -> Result:
        return next(iter(self.apply([change])))

    def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
        """Yields each change's Result as soon as Graph's answers decide it, while the rest are still sent.

        The requests run on the session's event loop; each Result crosses to this thread through a
        queue the moment its request group is answered, so the executor records it (journal, audit,
        username, disable date) before the next batches are even sent: a run killed mid-phase loses
        no outcome it had heard. Phases keep their order inside one call (groups, then accounts,
        then memberships). Should Graph answer nothing at all for `give_up_after_seconds`, the
        changes not yet answered fail (retryable) and so does every later change this run.
        """
        changes = list(changes)
        if self._unreachable is not None:
            yield from (Result(c.change_id, Outcome.FAILED, self._unreachable, retryable=True) for c in changes)
            return
        try:
            # The snapshot the plan came from is fresh enough: a change behind our back is met by
            # Graph's own answers (duplicate name, not found), read as ALREADY / Conflict below.
            cache = self.cache or self._refresh()
            before = self._owed_licences(cache)
        except ConnectorError as error:
            yield from (Result(c.change_id, Outcome.FAILED, str(error), retryable=error.retryable) for c in changes)
            return
        arrived: queue.SimpleQueue[Result] = queue.SimpleQueue()
        stopped = threading.Event()
        self._sent = set()  # filled from the session's loop as writes go out (see _sending_hook)

        async def guarded() -> None:
            try:
                await self._apply(cache, changes, arrived.put)
            finally:
                stopped.set()

        wanted = {c.change_id for c in changes}
        given: set[str] = set()
        failure: str | None = None
        retryable = True
        future = self.session.submit(guarded())
        try:
            while not stopped.is_set() or not arrived.empty():
                try:
                    result = arrived.get(timeout=0.2)
                except queue.Empty:
                    if failure is not None:
                        break  # given up on, and the cancelled requests did not unwind in time
                    silent = self.session.silent_for()
                    if not stopped.is_set() and silent > self.settings.give_up_after:
                        self._unreachable = failure = (
                            f"Graph answered nothing for {silent:.0f} s (give_up_after_seconds = "
                            f"{self.settings.give_up_after:g}), so {self.name} was given up on for this run: "
                            "this change was not made, or not confirmed; the next run looks again")
                        log.warning("%s: Graph answered nothing for %.0f s: the remaining changes fail", self.name,
                                    silent)
                        future.cancel()
                        stopped.wait(10)  # the cancelled requests unwind; nothing is sent after this
                    continue  # what was decided before a cancel is still handed over
                if result.change_id in wanted and result.change_id not in given:
                    given.add(result.change_id)
                    owed = (self._licence_debt or {}).copy()  # one C call: safe beside the loop's writes
                    if owed != before:
                        # An account created without its licence is kept as it arrives, like the
                        # outcome: a run killed later still plans its licence the next night.
                        self._save_licence_debt(owed)
                        before = owed
                    yield result
            if failure is None and future.done() and not future.cancelled():
                raised = future.exception()
                if isinstance(raised, ConnectorError):
                    failure, retryable = str(raised), raised.retryable
                elif raised is not None:
                    raise raised
        finally:
            if not future.done():
                future.cancel()  # the caller stopped reading (generator closed): stop sending
                stopped.wait(10)
        if self._licence_debt != before:
            self._save_licence_debt()  # here, not in the event loop's thread: the store is not shared
        for change in changes:
            if change.change_id not in given:
                # Sent and never answered (Graph given up on, or the phase stopped): it may have landed,
                # so the executor leaves it for the next run's look to settle.
                yield Result(change.change_id, Outcome.FAILED, failure or "Graph gave no answer for this change",
                             retryable=retryable, unconfirmed=change.change_id in self._sent)

    async def _apply(self, cache: _Cache, changes: list[Change], emit: Emit) -> None:
        membership = (Action.ADD_MEMBER, Action.REMOVE_MEMBER)
        group_changes = [c for c in changes if c.action is Action.CREATE_GROUP]
        member_changes = [c for c in changes if c.action in membership]
        user_changes = [c for c in changes if c.action is not Action.CREATE_GROUP and c.action not in membership]
        if group_changes:
            await self._run_steps([[self._create_group(cache, c)] for c in group_changes], emit)
        passwords = [c for c in user_changes if c.action in PASSWORD_ACTIONS]
        if passwords and await self._may_not_set_passwords():
            for refused in passwords:
                emit(Result(refused.change_id, Outcome.FAILED, self._password_refusal or ""))
            user_changes = [c for c in user_changes if c.action not in PASSWORD_ACTIONS]
        if user_changes:
            await self._run_steps(await self._user_chains(cache, user_changes), emit)
        if member_changes:
            await self._membership(cache, member_changes, emit)

    async def _may_not_set_passwords(self) -> bool:
        """Whether the app lacks a directory role that may set passwords (checked once, before the first).

        App-only, Graph lets an app write passwordProfile only when its service principal holds
        at least the User Administrator role as well as User.ReadWrite.All
        (https://learn.microsoft.com/en-us/graph/api/user-update); without it every password
        change is a 403. Reading the roles needs RoleManagement.Read.Directory: when that is
        refused the question is left to Graph's answers.
        """
        if self._password_refusal is None:
            self._password_refusal = ""
            try:
                roles, _ = await self.session.read_all("/directoryRoles?$select=id,displayName")
                held = False
                for role in (r for r in roles if r.get("displayName") in PASSWORD_ROLES):
                    members, _ = await self.session.read_all(f"/directoryRoles/{role['id']}/members?$select=id,appId")
                    held = held or any(m.get("appId") == self.session.credentials.client_id for m in members)
            except ResponseError:
                held = True
            if not held:
                self._password_refusal = (
                    f"app {self.session.credentials.client_id!r} may not set passwords: Graph lets an app set them "
                    "only when it also holds the User Administrator role (or Privileged Authentication "
                    "Administrator); in the Entra admin centre open Roles & admins > User Administrator > Add "
                    "assignments, add the app, and run again")
        return bool(self._password_refusal)

    async def _run_steps(self, chains: list[list[_Step]], emit: Emit) -> None:
        """Send each chain (one account's steps, in order) as one request group; emit each step's Result
        as soon as its group is answered."""
        groups: list[tuple[list[_Step], RequestGroup]] = []
        for chain in chains:
            for step in chain:
                if step.result is not None:
                    emit(step.result)  # decided without sending anything
            pending = [s for s in chain if s.result is None]
            requests = [r for s in pending for r in s.requests]
            if requests:
                groups.append((pending, RequestGroup(requests, _uncertain_hook(pending),
                                                     sending=_sending_hook(pending, self._sent))))

        async def settle(pending: list[_Step], group: RequestGroup) -> None:
            await group.finished.wait()
            position = 0
            failed_before = False
            for step in pending:
                replies = group.responses[position:position + len(step.requests)]
                position += len(step.requests)
                if failed_before:
                    step.result = Result(step.change.change_id, Outcome.FAILED,
                                         "not attempted: an earlier change to this account failed", retryable=True)
                else:
                    try:
                        step.result = await step.interpret(replies)
                    except ConnectorError as error:  # a read while interpreting failed: this change only
                        step.result = Result(step.change.change_id, Outcome.FAILED, str(error),
                                             retryable=error.retryable)
                    failed_before = step.result.outcome is Outcome.FAILED
                for extra in step.extra.values():
                    emit(extra)
                emit(step.result)

        settling = [asyncio.ensure_future(settle(p, g)) for p, g in groups]
        try:
            await self.session.run_groups([g for _, g in groups])
            await asyncio.gather(*settling)
        finally:
            for task in settling:
                task.cancel()

    async def _user_chains(self, cache: _Cache, changes: list[Change]) -> list[list[_Step]]:
        deleted_by_anchor: dict[str, str] = {}
        if any(c.action is Action.CREATE for c in changes):
            items, _ = await self.session.read_all(
                "/directory/deletedItems/microsoft.graph.user?$select=id,employeeId,userPrincipalName,proxyAddresses"
                f"&$top={MAX_PAGE}")
            for item in items:
                if item.get("employeeId"):
                    deleted_by_anchor[str(item["employeeId"])] = str(item["id"])
                cache.deleted.setdefault(str(item["id"]), item)
        by_anchor = {str(u["employeeId"]): k for k, u in cache.users.items() if u.get("employeeId")}
        chains: dict[str, list[_Step]] = {}
        for change in changes:
            key = change.target or f"create:{change.change_id}"
            chains.setdefault(key, []).append(self._user_step(cache, change, by_anchor, deleted_by_anchor))
        return list(chains.values())

    def _user_step(self, cache: _Cache, change: Change, by_anchor: Mapping[str, str],
                   deleted_by_anchor: Mapping[str, str]) -> _Step:
        action = change.action
        if action is Action.CREATE:
            return self._create(cache, change, by_anchor, deleted_by_anchor)
        if action is Action.MOVE:
            return self._done(change, Outcome.ALREADY, "Entra ID has no containers")
        target = str(change.target or "")
        user = cache.users.get(target)
        if user is None:
            if target in cache.deleted:
                if action is Action.DELETE:
                    return self._done(change, Outcome.ALREADY, "already in the recycle bin")
                if action is Action.ENABLE:
                    return self._simple(change, [BatchRequest("POST", f"/directory/deletedItems/{target}/restore"),
                                                 BatchRequest("PATCH", f"/users/{target}", {"accountEnabled": True})],
                                        "restored from the recycle bin and enabled")
            if action is Action.DELETE:
                return self._done(change, Outcome.ALREADY, "no such account")
            return self._done(change, Outcome.FAILED, f"account {target} does not exist in Entra ID")
        synced = bool(user.get("onPremisesSyncEnabled"))
        upn = str(user.get("userPrincipalName"))
        if synced and action not in (Action.REVOKE_SESSIONS, Action.UPDATE):
            return self._hybrid_refusal(change, upn)
        path = f"/users/{target}"
        if action is Action.ADOPT:
            anchor = str(change.after.get("anchor") or change.person_id or "")
            if user.get("employeeId") == directory_anchor(anchor, EMPLOYEE_ID_LIMIT):
                return self._done(change, Outcome.ALREADY, key=target)
            return self._simple(change, [BatchRequest("PATCH", path, self._anchor_fields(anchor))], key=target)
        if action is Action.UPDATE:
            body = self._update_body(change.after)
            if synced and set(body) & {"givenName", "surname", "displayName", *self.settings.attributes}:
                return self._hybrid_refusal(change, upn)
            if all(_same(user.get(k), v) for k, v in body.items()):
                return self._done(change, Outcome.ALREADY)
            return self._simple(change, [BatchRequest("PATCH", path, body)])
        if action is Action.RENAME:
            login = str(change.after["login"])
            if str(user.get("userPrincipalName", "")).lower() == login.lower() and upn == login:
                return self._done(change, Outcome.ALREADY)
            body = {"userPrincipalName": login, "mailNickname": _mail_nickname(str(change.after["username"]))}
            return self._simple(change, [BatchRequest("PATCH", path, body)])
        if action is Action.ENABLE:
            if user.get("accountEnabled"):
                return self._done(change, Outcome.ALREADY)
            return self._simple(change, [BatchRequest("PATCH", path, {"accountEnabled": True})])
        if action is Action.DISABLE:
            if user.get("accountEnabled") is False:
                return self._done(change, Outcome.ALREADY)
            return self._simple(change, [BatchRequest("PATCH", path, {"accountEnabled": False}),
                                         BatchRequest("POST", f"{path}/revokeSignInSessions")])
        if action is Action.DELETE:
            return self._simple(change, [BatchRequest("DELETE", path)], gone_is_already=True)
        if action is Action.SET_PASSWORD:
            if not change.password:
                return self._done(change, Outcome.FAILED, "no password was given to set")
            profile = {"password": change.password,
                       "forceChangePasswordNextSignIn": bool(change.after.get("must_change_password", True))}
            return self._simple(change, [BatchRequest("PATCH", path, {"passwordProfile": profile})])
        if action is Action.REQUIRE_PASSWORD_CHANGE:
            return self._simple(change, [BatchRequest("PATCH", path,
                                                      {"passwordProfile": {"forceChangePasswordNextSignIn": True}})])
        if action is Action.REVOKE_SESSIONS:
            return self._simple(change, [BatchRequest("POST", f"{path}/revokeSignInSessions")])
        return self._done(change, Outcome.FAILED, f"{action} is not a change for an account")

    def _update_body(self, after: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {}
        names = {"given_name": "givenName", "surname": "surname", "display_name": "displayName"}
        for ours, theirs in names.items():
            if ours in after:
                body[theirs] = after[ours]
        for name, value in dict(after.get("attributes") or {}).items():
            body[name] = value or None
        if "password_never_expires" in after:
            body["passwordPolicies"] = "DisablePasswordExpiration" if after["password_never_expires"] else "None"
        return body

    def _hybrid_refusal(self, change: Change, upn: str) -> _Step:
        return self._done(change, Outcome.FAILED, f"{upn} is synchronised from on-premises Active Directory by Entra "
                          f"Connect: make this change ({change.action}) in AD, not in Entra ID")

    def _done(self, change: Change, outcome: Outcome, detail: str = "", key: str | None = None) -> _Step:
        async def never(_: list[GraphResponse]) -> Result:
            raise AssertionError("a finished step is never sent")
        return _Step(change, [], never, Result(change.change_id, outcome, detail, key=key))

    def _simple(self, change: Change, requests: list[BatchRequest], detail: str = "", *, key: str | None = None,
                gone_is_already: bool = False) -> _Step:
        """A change whose requests need only Graph's answers; a PATCH first is settled by reading it back."""
        async def interpret(replies: list[GraphResponse]) -> Result:
            failed = next((r for r in replies if not r.ok), None)
            if failed is None:
                return Result(change.change_id, Outcome.APPLIED, detail, key=key)
            if gone_is_already and failed.status == 404:
                if step.lost:  # our own delete, whose reply was lost, landed
                    return Result(change.change_id, Outcome.APPLIED, "applied; the reply to it was lost", key=key)
                return Result(change.change_id, Outcome.ALREADY, "no such account", key=key)
            return self._failure(change, failed)
        step = _Step(change, requests, interpret, uncertain=self._read_back(requests[0]) if requests else None)
        return step

    def _read_back(self, request: BatchRequest) -> Callable[[int], Awaitable[GraphResponse | None]] | None:
        """For a PATCH whose reply was lost: did it land? Read the object back before sending it again.

        PATCHes are idempotent in effect, but sent twice they are two writes (and two audit-worthy
        changes in the directory's own log): "nothing is done twice". When every property the PATCH
        set already reads as sent, a stand-in 204 settles it; otherwise (or when the read fails too)
        it is sent again as before.
        """
        body = request.body
        if request.method != "PATCH" or not isinstance(body, dict) or not body or "passwordProfile" in body \
                or any(isinstance(v, dict | list) for v in body.values()):
            return None
        fields = ",".join(sorted(body))

        async def uncertain(index: int) -> GraphResponse | None:
            if index != 0:
                return None
            found = await self.session.lookup(f"{request.url}?$select=id,{fields}")
            if found.ok and isinstance(found.body, dict) and all(_same(found.body.get(k), v) for k, v in body.items()):
                return GraphResponse(204, {}, None)
            return None

        return uncertain

    def _failure(self, change: Change, response: GraphResponse) -> Result:
        if response.status == 403 and not response.from_graph:
            return Result(change.change_id, Outcome.FAILED, "HTTP 403 without Graph's error body: a proxy or gateway "
                          "on the way refused it, not Graph; tried again on the next run", retryable=True)
        if response.status in (401, 403):
            need = {Action.CREATE_GROUP: "Group.Create", Action.ADD_MEMBER: "GroupMember.ReadWrite.All",
                    Action.REMOVE_MEMBER: "GroupMember.ReadWrite.All"}.get(change.action, "User.ReadWrite.All")
            detail = (f"Graph refused: {response.error_message or response.status}; the app needs the application "
                      f"permission {need} with admin consent")
            if change.action in (Action.SET_PASSWORD, Action.REQUIRE_PASSWORD_CHANGE):
                detail += " and the User Administrator role to change passwords"
            return Result(change.change_id, Outcome.FAILED, detail)
        detail = f"{response.error_code or response.status}: {response.error_message}".rstrip(": ")
        return Result(change.change_id, Outcome.FAILED, detail, retryable=response.status in (429, 500, 502, 503, 504))

    # creates: exactly once -----------------------------------------------------------------------
    def _create(self, cache: _Cache, change: Change, by_anchor: Mapping[str, str],
                deleted_by_anchor: Mapping[str, str]) -> _Step:
        """A new account in one POST (anchor, usage location, password to change at first sign-in).

        Never duplicated: the SDK's retry is off for batches; after a lost reply or a 5xx the
        account is looked up by its anchor before anything is sent again; a duplicate-UPN conflict
        adopts the existing account when it carries the same anchor and is a Conflict otherwise.
        A leaver's account still in the recycle bin is restored rather than created anew.
        """
        after = change.after
        person_id = str(after.get("anchor") or change.person_id or "")
        anchor = directory_anchor(person_id, EMPLOYEE_ID_LIMIT) if person_id else ""
        login = str(after["login"])
        kind = next((k for k, d in self.settings.domains.items() if d.lower() == login.rsplit("@", 1)[-1].lower()), "")
        skus = self.settings.assign_licences.get(kind, [])
        owed = self._licence_debt
        assert owed is not None, "apply() loads the licence debt first"
        existing = by_anchor.get(anchor) if anchor else None
        conflict = self._claimable(cache.users.get(existing)) if existing is not None else ""
        if conflict:
            # Never resolved to an account outside the scope or holding a role (a break-glass admin
            # carrying a starter's employeeId): the starter's groups would be given to it.
            return self._done(change, Outcome.FAILED, f"conflict: {conflict} and carries the anchor {anchor}; it is "
                              "not taken as this person's account: remove the employeeId from it, or make this "
                              "account by hand")
        if existing is not None and existing in owed:
            return self._licence_left_over(change, existing, skus, owed)
        if existing is not None:
            return self._done(change, Outcome.ALREADY, "an account with this anchor exists", key=existing)
        profile = {"given_name": after.get("given_name"), "surname": after.get("surname"),
                   "display_name": after.get("display_name"), "attributes": after.get("attributes") or {}}
        deleted = deleted_by_anchor.get(anchor)
        refused = self._claimable({"id": deleted, **cache.deleted.get(deleted, {})}) if deleted is not None else ""
        if refused:
            return self._done(change, Outcome.FAILED, f"conflict: the deleted account {refused} carries the anchor "
                              f"{anchor}; it is not restored for this person")
        if deleted is not None:
            body = {**self._update_body(profile), "userPrincipalName": login,
                    "accountEnabled": bool(after.get("enabled", True))}
            return self._simple(change, [BatchRequest("POST", f"/directory/deletedItems/{deleted}/restore"),
                                         BatchRequest("PATCH", f"/users/{deleted}", body)],
                                "restored from the recycle bin", key=deleted)
        body = {k: v for k, v in self._update_body(profile).items() if v is not None}
        body.update({
            "accountEnabled": bool(after.get("enabled", True)), "userPrincipalName": login,
            "mailNickname": _mail_nickname(str(after.get("username") or login.split("@")[0])),
            **self._anchor_fields(person_id), "usageLocation": self.settings.usage_location,
            "passwordProfile": {"password": change.password or _generate_password(),
                                "forceChangePasswordNextSignIn": bool(after.get("must_change_password", True))},
        })
        requests = [BatchRequest("POST", "/users", body)]
        if skus:
            requests.append(BatchRequest("POST", f"/users/{quote(login)}/assignLicense", _licence_body(skus)))
        reply_lost = False
        refused_by = ""  # an account the lookup found with this anchor that may not be taken for it

        async def find_by_anchor() -> dict[str, Any] | None:
            nonlocal refused_by
            found = await self.session.lookup(
                f"/users?$filter={quote(f'employeeId eq {_literal(anchor)}')}&$select=id,userPrincipalName,employeeId")
            values = found.body.get("value", []) if found.ok else []
            # Only one of ours is our create landing: an account elsewhere with the anchor is not it.
            reasons = [await self._claimable_now(cache, v) for v in values]
            ours = [v for v, why in zip(values, reasons, strict=True) if not why]
            refused_by = next((why for why in reasons if why), "")
            return ours[0] if ours else None

        async def uncertain(index: int) -> GraphResponse | None:
            nonlocal reply_lost
            if index != 0:
                return None
            reply_lost = True
            # A create that did happen may not be listed yet (replication delay): look a few times
            # over a couple of seconds. Should it still be unseen, the create is sent again and
            # Graph's duplicate-UPN answer tells (see `interpret`).
            for attempt in range(3):
                found = await find_by_anchor()
                if found is not None:
                    return GraphResponse(201, {}, found)
                await asyncio.sleep(0.5 * 2 ** attempt)
            if refused_by:
                # Only an account outside the scope or holding a role carries the anchor (given it
                # since the snapshot): never taken, and the create is not sent again, as the plan-time
                # check would have refused it. Had ours landed unseen, the next snapshot finds it.
                return GraphResponse(409, {}, {"error": {"code": "conflict", "message": refused_by}})
            return None

        async def interpret(replies: list[GraphResponse]) -> Result:
            created = replies[0]
            if refused_by and not created.ok:
                return Result(change.change_id, Outcome.FAILED, f"conflict: {refused_by} and carries the anchor "
                              f"{anchor}; it is not taken as this person's account (the create's reply was lost: "
                              "the next run looks for it again)")
            if created.ok:
                key = str(created.body["id"])
                cache.users[key] = {**body, "id": key, "passwordProfile": None}
                failed = next((r for r in replies[1:] if not r.ok), None)
                if failed is not None:
                    # Not "applied": the account is left out of later snapshots until the licence
                    # is on, so the next run plans this create again and assigns it.
                    owed[key] = time.time()
                    return Result(change.change_id, Outcome.FAILED, "created, but the licence could not be "
                                  f"assigned ({failed.error_code or failed.status}: {failed.error_message}); the next "
                                  "run assigns it", retryable=True, key=key)
                return Result(change.change_id, Outcome.APPLIED, key=key)
            if created.status == 400 and "same value for property userPrincipalName" in created.error_message:
                # Graph just said the UPN is taken: a 404 on reading it is replication lag.
                holder = await self.session.get_replicated(
                    f"/users/{quote(login)}?$select=id,employeeId,userPrincipalName")
                refused = await self._claimable_now(cache, holder.body) if holder.ok else ""
                if refused:
                    return Result(change.change_id, Outcome.FAILED, f"conflict: {login} is already used: {refused}")
                if holder.ok and holder.body.get("employeeId") == anchor:
                    if reply_lost:  # our own first send made it; its reply was lost
                        self.session.note_created(holder.body)
                        return Result(change.change_id, Outcome.APPLIED, key=str(holder.body["id"]))
                    return Result(change.change_id, Outcome.ALREADY, "the account already existed with this anchor",
                                  key=str(holder.body["id"]))
                whose = (f"an account with anchor {holder.body.get('employeeId')!r}" if holder.ok and
                         holder.body.get("employeeId") else "an account without an anchor (plan an adopt)"
                         if holder.ok else "a deleted account still in the recycle bin")
                return Result(change.change_id, Outcome.FAILED, f"conflict: {login} is already used by {whose}")
            return self._failure(change, created)

        return _Step(change, requests, interpret, uncertain=uncertain)

    def _licence_left_over(self, change: Change, key: str, skus: list[str], owed: dict[str, float]) -> _Step:
        """The create an earlier run could not finish: only its licence is still to be assigned."""
        if not skus:
            owed.pop(key, None)
            return self._done(change, Outcome.ALREADY, "an account with this anchor exists", key=key)

        async def interpret(replies: list[GraphResponse]) -> Result:
            reply = replies[0]
            if reply.ok:
                owed.pop(key, None)
                return Result(change.change_id, Outcome.APPLIED, "licence assigned to the account an earlier run "
                              "created", key=key)
            return Result(change.change_id, Outcome.FAILED, f"the licence could not be assigned "
                          f"({reply.error_code or reply.status}: {reply.error_message})", retryable=True, key=key)

        return _Step(change, [BatchRequest("POST", f"/users/{key}/assignLicense", _licence_body(skus))], interpret)

    # groups ---------------------------------------------------------------------------------------
    def _group_key(self, cache: _Cache, name: str) -> tuple[str | None, bool]:
        """(key, managed) of the group with this display name; managed ones win over unmanaged twins."""
        found: tuple[str | None, bool] = (None, False)
        for key, group in cache.groups.items():
            if str(group.get("displayName") or "").lower() == name.lower():
                if self._managed_group(group):
                    return key, True
                found = (key, False)
        return found

    def _create_group(self, cache: _Cache, change: Change) -> _Step:
        name = str(change.group or change.after.get("name"))
        key, managed = self._group_key(cache, name)
        if key is not None and managed:
            return self._done(change, Outcome.ALREADY, key=key)
        if key is not None:
            return self._done(change, Outcome.FAILED, f"conflict: a group named {name!r} exists but is not managed "
                              f"by idlifecycle; add {self.settings.group_marker!r} to its description to hand it over")
        body = {"displayName": name, "description": self.settings.group_marker, "mailEnabled": False,
                "securityEnabled": True, "mailNickname": _mail_nickname(name) or "group"}

        async def uncertain(index: int) -> GraphResponse | None:
            # The reply was lost (or a 5xx came back): the group may exist. Display names are not
            # unique and a new group is listed only after replication, so sending the create again
            # on a "not found" could make a twin. Look for a few seconds; if it is still unseen,
            # the create stays undecided until the next run's snapshot shows whether it happened.
            for wait in (0.0, 0.5, 1.0, 2.0):
                await asyncio.sleep(wait)
                found = await self.session.lookup(
                    f"/groups?$filter={quote(f'displayName eq {_literal(name)}')}&$select=id,description")
                for group in found.body.get("value", []) if found.ok else []:
                    if self.settings.group_marker.lower() in str(group.get("description") or "").lower():
                        return GraphResponse(201, {}, group)
            return GraphResponse(0, {}, None)  # undecided: see interpret

        async def interpret(replies: list[GraphResponse]) -> Result:
            if replies[0].status == 0:
                return Result(change.change_id, Outcome.FAILED, f"Graph's answer to creating group {name!r} was lost "
                              "and the group is not listed yet; it is not sent again now, so that no twin is made: "
                              "the next run sees whether it was created", retryable=True)
            if replies[0].ok:
                key = str(replies[0].body["id"])
                cache.groups[key] = {"displayName": name, "description": self.settings.group_marker, "members": []}
                return Result(change.change_id, Outcome.APPLIED, key=key)
            return self._failure(change, replies[0])

        return _Step(change, [BatchRequest("POST", "/groups", body)], interpret, uncertain=uncertain)

    async def _membership(self, cache: _Cache, changes: list[Change], emit: Emit) -> None:
        """Adds 20 members per PATCH (`members@odata.bind`), removals one `$ref` DELETE each."""
        results: dict[str, Result] = {}
        adds: dict[str, list[Change]] = {}
        removals: list[list[_Step]] = []
        members_of: dict[str, set[str]] = {}
        for change in changes:
            name = str(change.group)
            key, managed = self._group_key(cache, name)
            member = str(change.target or "")
            if key is None:
                results[change.change_id] = Result(change.change_id, Outcome.FAILED, f"group {name!r} does not exist")
                continue
            if not managed:
                results[change.change_id] = Result(
                    change.change_id, Outcome.FAILED, f"group {name!r} is not managed by idlifecycle (its description "
                    f"lacks {self.settings.group_marker!r})")
                continue
            present = member in members_of.setdefault(key, set(cache.groups[key]["members"]))
            if change.action is Action.ADD_MEMBER:
                if present:
                    results[change.change_id] = Result(change.change_id, Outcome.ALREADY)
                elif member not in cache.users and member not in cache.groups:
                    results[change.change_id] = Result(change.change_id, Outcome.FAILED,
                                                       f"account {member} does not exist in Entra ID")
                else:
                    adds.setdefault(key, []).append(change)
            elif not present:
                results[change.change_id] = Result(change.change_id, Outcome.ALREADY)
            else:
                removals.append([self._remove_member(cache, key, change)])
        chains: list[list[_Step]] = []
        one_by_one: list[tuple[str, Change, bool]] = []
        redone: set[str] = set()
        """Adds whose PATCH was refused and that are sent again one by one: their first answer is not theirs."""
        for key, group_changes in adds.items():
            unique = list({str(c.target): c for c in group_changes}.values())
            kept = {c.change_id for c in unique}
            for duplicate in group_changes:
                if duplicate.change_id not in kept:
                    results[duplicate.change_id] = Result(duplicate.change_id, Outcome.ALREADY)
            for start in range(0, len(unique), MEMBERS_PER_PATCH):
                chains.append([self._add_members(cache, key, unique[start:start + MEMBERS_PER_PATCH], one_by_one,
                                                 redone)])
        for result in results.values():
            emit(result)

        def emit_unless_redone(result: Result) -> None:
            if result.change_id not in redone:
                emit(result)

        await self._run_steps(chains + removals, emit_unless_redone)
        if one_by_one:
            # A rejected PATCH (someone added one of them meanwhile, or one vanished) is redone member by member.
            await self._run_steps([[self._add_member_ref(cache, k, c, lost)] for k, c, lost in one_by_one], emit)

    def _add_members(self, cache: _Cache, key: str, changes: list[Change],
                     one_by_one: list[tuple[str, Change, bool]], redone: set[str]) -> _Step:
        binds = [f"{self.session.graph_url}/directoryObjects/{c.target}" for c in changes]
        first = changes[0]

        async def interpret(replies: list[GraphResponse]) -> Result:
            reply = replies[0]
            if reply.status in (400, 404):
                # After a lost reply, "already exist" may be this PATCH's own first send landing.
                one_by_one.extend((key, c, bool(step.lost)) for c in changes)
                redone.update(c.change_id for c in changes)
                results = [Result(c.change_id, Outcome.FAILED, "retried one by one", retryable=True) for c in changes]
            elif reply.ok:
                # Appended, not re-sorted: `_membership` sent only accounts not yet in the group, and
                # sorting 10,000 members after each of a September intake's PATCHes held up the sends.
                cache.groups[key]["members"].extend(str(c.target) for c in changes)
                results = [Result(c.change_id, Outcome.APPLIED) for c in changes]
            else:
                results = [self._failure(c, reply) for c in changes]
            step.extra.update({r.change_id: r for r in results[1:]})
            return results[0]

        step = _Step(first, [BatchRequest("PATCH", f"/groups/{key}", {"members@odata.bind": binds})], interpret,
                     carries=tuple(c.change_id for c in changes[1:]))
        return step

    def _add_member_ref(self, cache: _Cache, key: str, change: Change, after_lost: bool = False) -> _Step:
        async def interpret(replies: list[GraphResponse]) -> Result:
            reply = replies[0]
            if reply.ok:
                cache.groups[key]["members"] = sorted({*cache.groups[key]["members"], str(change.target)})
                return Result(change.change_id, Outcome.APPLIED)
            if reply.status == 400 and "already exist" in reply.error_message:
                if after_lost or step.lost:  # not a member when planned; our own unanswered add landed
                    cache.groups[key]["members"] = sorted({*cache.groups[key]["members"], str(change.target)})
                    return Result(change.change_id, Outcome.APPLIED, "applied; the reply to it was lost")
                return Result(change.change_id, Outcome.ALREADY)
            if reply.status == 404:
                return Result(change.change_id, Outcome.FAILED, f"account {change.target} no longer exists")
            return self._failure(change, reply)
        body = {"@odata.id": f"{self.session.graph_url}/directoryObjects/{change.target}"}
        step = _Step(change, [BatchRequest("POST", f"/groups/{key}/members/$ref", body)], interpret)
        return step

    def _remove_member(self, cache: _Cache, key: str, change: Change) -> _Step:
        async def interpret(replies: list[GraphResponse]) -> Result:
            reply = replies[0]
            if reply.ok or reply.status == 404:
                cache.groups[key]["members"] = [m for m in cache.groups[key]["members"] if m != change.target]
                # A member when planned: gone after our own unanswered removal is that removal landing.
                done = reply.ok or bool(step.lost)
                return Result(change.change_id, Outcome.APPLIED if done else Outcome.ALREADY)
            return self._failure(change, reply)
        step = _Step(change, [BatchRequest("DELETE", f"/groups/{key}/members/{change.target}/$ref")], interpret)
        return step


def _sending_hook(pending: list[_Step], sent: set[str]) -> Callable[[int], None]:
    """A request group's `sending` hook: notes the changes whose write went out (they may land unanswered)."""
    spans: list[tuple[int, _Step]] = []
    start = 0
    for step in pending:
        spans.append((start, step))
        start += len(step.requests)

    def sending(index: int) -> None:
        step = next(s for f, s in reversed(spans) if index >= f)
        sent.update((step.change.change_id, *step.carries))

    return sending


def _uncertain_hook(pending: list[_Step]) -> Callable[[int], Awaitable[GraphResponse | None]]:
    """A request group's `uncertain` hook: notes which step's request was in doubt and asks that step's own hook.

    The group's index runs over all its steps' requests; each step sees its own (0 = its first).
    """
    spans: list[tuple[int, _Step]] = []
    start = 0
    for step in pending:
        spans.append((start, step))
        start += len(step.requests)

    async def uncertain(index: int) -> GraphResponse | None:
        first, step = next((f, s) for f, s in reversed(spans) if index >= f)
        step.lost.add(index - first)
        return None if step.uncertain is None else await step.uncertain(index - first)

    return uncertain


def _deleted_upn(item: Mapping[str, Any]) -> str:
    """The UPN a deleted user held. Entra may show it prefixed with the user's object id (no dashes), so
    that the name is free for a new user while the deleted one waits; the prefix is not part of the name."""
    upn = str(item.get("userPrincipalName") or "")
    prefix = str(item.get("id") or "").replace("-", "")
    return upn[len(prefix):] if prefix and upn.lower().startswith(prefix.lower()) and len(upn) > len(prefix) else upn


class _CloudOnlyEntraConnector(EntraConnector):
    """`hybrid = "off"`: accounts synchronised from AD are outside the scope altogether."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        containers=False, max_username_length=64, revoke_sessions=True, licence_groups=True, hybrid=False,
        password_rules="entra",  # noqa: S106 - names a rule set, not a password
        max_anchor_length=EMPLOYEE_ID_LIMIT, recycle_bin=True,
    )


def _read_settings(context: ConnectorContext) -> _Settings:
    source = context.source
    domains = context.option("domains", required=True)
    if not isinstance(domains, Mapping) or not domains or not all(
            isinstance(v, str) and "." in v for v in domains.values()):
        raise ConfigError(source, "domains", "must be a table of kind = \"domain\", e.g. "
                          "{ staff = \"staff.example.sch.uk\", pupil = \"pupils.example.sch.uk\" }")
    hybrid = str(context.option("hybrid", "detect"))
    if hybrid not in ("detect", "off"):
        raise ConfigError(source, "hybrid", f"must be \"detect\" or \"off\", not {hybrid!r}")
    attributes = context.option("attributes", ["department", "jobTitle", "employeeType"])
    if not isinstance(attributes, list) or not all(isinstance(a, str) and a.isidentifier() for a in attributes):
        raise ConfigError(source, "attributes", "must be a list of Graph user property names, e.g. [\"department\"]")
    refused = [a for a in attributes if a in DELTA_UNSUPPORTED]
    if refused:
        # Snapshots read users/delta, which answers 400 to these in $select: every night would fail.
        raise ConfigError(source, "attributes", f"{', '.join(map(repr, refused))} cannot be read through Graph's "
                          "users/delta query, which refuses it in $select; remove it from the list")
    licences = context.option("assign_licences", {})
    if not isinstance(licences, Mapping) or not all(isinstance(v, list) for v in licences.values()):
        raise ConfigError(source, "assign_licences", "must be a table of kind = [\"skuId\", …]")
    for key in ("write_limit_per_second", "max_batches_in_flight", "timeout_seconds", "connect_timeout_seconds",
                "request_timeout_seconds", "give_up_after_seconds"):
        value = context.option(key, 1)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ConfigError(source, key, f"must be a positive number, not {value!r}")
    full_id_attribute = context.option("full_id_attribute", "extensionAttribute15")
    if full_id_attribute not in ("", *EXTENSION_ATTRIBUTES):
        raise ConfigError(source, "full_id_attribute", "must be one of extensionAttribute1 … extensionAttribute15, "
                          f"or \"\" to write person ids too long for employeeId nowhere, not {full_id_attribute!r}")
    return _Settings(
        domains={str(k): str(v) for k, v in domains.items()},
        group_marker=str(context.option("group_marker", "Managed by idlifecycle")),
        usage_location=str(context.option("usage_location", "GB")), hybrid=hybrid,
        attributes=tuple(attributes), assign_licences={str(k): [str(s) for s in v] for k, v in licences.items()},
        sign_in_activity=bool(context.option("sign_in_activity", False)),
        full_id_attribute=full_id_attribute,
        give_up_after=float(context.option("give_up_after_seconds", GIVE_UP_AFTER)),
    )


def _secret(context: ConnectorContext, name: str) -> str:
    try:
        return str(context.secrets[name])
    except KeyError:
        raise UserError(f"{context.source}: missing secret {name!r}: set IDLIFECYCLE_{name.upper()} or put it in a "
                        f"file named {name} in $IDLIFECYCLE_SECRETS_DIR") from None


def _read_credentials(context: ConnectorContext) -> Credentials:
    tenant_id = str(context.option("tenant_id", required=True))
    client_id = str(context.option("client_id", required=True))
    host = str(context.option("authority_host", "login.microsoftonline.com"))
    certificate = context.option("certificate")
    if certificate:
        path = Path(str(certificate))
        if not path.is_absolute():
            path = Path(context.source).parent / path
        try:
            certificate_pem = path.read_text(encoding="ascii")
        except OSError as error:
            raise ConfigError(context.source, "certificate", f"cannot read {path}: {error.strerror}") from None
        key_name = f"{context.name}_certificate_key"
        return Credentials(tenant_id, client_id, host, private_key=_secret(context, key_name),
                           certificate=certificate_pem, where=f"secret {key_name} with {path}",
                           config_file=context.source)
    secret_name = f"{context.name}_client_secret"
    return Credentials(tenant_id, client_id, host, client_secret=_secret(context, secret_name),
                       where=f"secret {secret_name}", config_file=context.source)


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _same(current: Any, wanted: Any) -> bool:
    if wanted in (None, "") and current in (None, ""):
        return True
    if isinstance(wanted, str) and wanted == "None" and current in (None, "", "None"):
        return True
    return bool(current == wanted)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _proxy_local_parts(obj: Mapping[str, Any]) -> set[str]:
    """The local parts of an object's SMTP proxy addresses ("smtp:jsmith@…" -> "jsmith")."""
    parts: set[str] = set()
    for proxy in obj.get("proxyAddresses") or []:
        kind, _, address = str(proxy).partition(":")
        if kind.lower() == "smtp" and "@" in address:
            parts.add(address.rsplit("@", 1)[0].lower())
    return parts


def _licence_body(skus: Sequence[str]) -> dict[str, Any]:
    return {"addLicenses": [{"skuId": s, "disabledPlans": []} for s in skus], "removeLicenses": []}


def _mail_nickname(name: str) -> str:
    """Graph's mailNickname refuses spaces and most punctuation."""
    return re.sub(r"[^A-Za-z0-9._-]", "", name)[:64]


def _generate_password() -> str:
    """A throw-away initial password that meets Entra's cloud rule, for creates planned without one."""
    alphabet = string.ascii_letters + string.digits + PASSWORD_SYMBOLS
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(20))
        if (any(c.islower() for c in candidate) and any(c.isupper() for c in candidate)
                and any(c.isdigit() for c in candidate) and any(c in PASSWORD_SYMBOLS for c in candidate)):
            return candidate
