"""Reading the managed scope: users in the org units under `org_unit_root`, the managed groups and
their members, the org units, and the recycle bin.

The Directory API has no change feed for users and groups, so every snapshot is a full read (500
users a page, with a `fields=` projection); there is no incremental read and no cursor, so the lists
travel together, a batch a round (`listing.py`). What a read
learns (addresses, externalIds and organizations, admin roles, group keys) is kept for the writes
that follow, so that a member add or a patch does not read the same user again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from idlifecycle.connectors.base import ConnectorError
from idlifecycle.connectors.google.listing import Listing, read_together
from idlifecycle.connectors.google.requests import ANCHOR_TYPE, ATTRIBUTES, container_of
from idlifecycle.connectors.google.session import Session
from idlifecycle.errors import ConfigError
from idlifecycle.model import (
    SECOND_FACTOR_ENFORCED,
    SECOND_FACTOR_NONE,
    SECOND_FACTOR_REGISTERED,
    Account,
    DeletedAccount,
    Group,
    RoleHolder,
    Snapshot,
)

USER_FIELDS = ("id,primaryEmail,aliases,name(givenName,familyName,displayName,fullName),suspended,orgUnitPath,"
               "externalIds,organizations,creationTime,lastLoginTime,changePasswordAtNextLogin,isAdmin,"
               "isDelegatedAdmin")
GROUP_FIELDS = "nextPageToken,groups(id,email,name,description)"
NEVER_SIGNED_IN = "1970-01-01T00:00:00.000Z"
ADMIN_FIELDS = ("nextPageToken,users(id,primaryEmail,name(displayName,fullName),externalIds,isAdmin,isDelegatedAdmin,"
                "isEnrolledIn2Sv,isEnforcedIn2Sv)")
"""What the access review reads of every user of the customer to list its admins with their 2-Step Verification."""


def admin_role(user: Mapping[str, Any]) -> str:
    """Why a Google user is privileged: a super admin, or an admin with delegated roles ("" for neither)."""
    if user.get("isAdmin"):
        return "super admin"
    return "delegated admin" if user.get("isDelegatedAdmin") else ""


def second_factor(user: Mapping[str, Any]) -> str:
    """A Google user's second factor from the Directory API's `isEnrolledIn2Sv` / `isEnforcedIn2Sv`.

    Enforced but not enrolled is "none": the account has no second factor yet (a new user's enrolment
    period), and an admin in that state is what the review must show.
    """
    if not user.get("isEnrolledIn2Sv"):
        return SECOND_FACTOR_NONE
    return SECOND_FACTOR_ENFORCED if user.get("isEnforcedIn2Sv") else SECOND_FACTOR_REGISTERED


def parse_time(value: str | None) -> datetime | None:
    if not value or value == NEVER_SIGNED_IN:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def anchor_of(user: Mapping[str, Any]) -> str | None:
    return next((str(e["value"]) for e in user.get("externalIds", []) or []
                 if e.get("type") == ANCHOR_TYPE and e.get("value")), None)


def account(directory: str, user: Mapping[str, Any], container: str) -> Account:
    """The neutral Account of a Google user as users.list returns it (USER_FIELDS)."""
    name = user.get("name", {})
    organisation = next((o for o in user.get("organizations", []) or [] if o.get("primary")),
                        (user.get("organizations") or [{}])[0])
    attributes = {ours: str(organisation[theirs]) for ours, theirs in ATTRIBUTES.items() if organisation.get(theirs)}
    return Account(
        directory=directory, key=str(user["id"]), username=str(user["primaryEmail"]).partition("@")[0],
        login=str(user["primaryEmail"]), given_name=str(name.get("givenName", "")),
        surname=str(name.get("familyName", "")),
        display_name=str(name.get("displayName") or name.get("fullName", "")), anchor=anchor_of(user),
        enabled=not user.get("suspended", False), container=container, attributes=attributes,
        must_change_password=bool(user.get("changePasswordAtNextLogin", False)),
        created=parse_time(user.get("creationTime")), last_sign_in=parse_time(user.get("lastLoginTime")),
        privileged=admin_role(user))


class ScopeReader:
    """Reads the managed scope through a Session and remembers what the writes need of it."""

    def __init__(self, name: str, session: Session, source: str) -> None:
        self.name, self.session, self.source = name, session, source
        self.options = session.options
        self.emails: dict[str, str] = {}
        """user key -> primary email, for adding members (Google wants the member's address)."""
        self.raw: dict[str, dict[str, Any]] = {}
        """user key -> externalIds and organizations as read, so a patch keeps entries it does not own."""
        self.privileged: dict[str, str] = {}
        """user key -> its admin role ("" for none), as last read."""
        self.groups: dict[str, str] | None = None
        """managed group name / email / local part (lower-case) -> group key."""
        self.org_units: set[str] | None = None

    def container(self, org_unit_path: str) -> str | None:
        return container_of(self.options.org_unit_root, org_unit_path)

    def snapshot(self) -> Snapshot:
        self.load_org_units()
        accounts: list[Account] = []
        outside: set[str] = set()
        self.emails.clear()
        self.raw.clear()
        self.privileged.clear()
        self.groups = {}
        customer, members_of = self.options.customer, self.session.members.list
        managed: list[tuple[dict[str, Any], Listing]] = []

        def members(listing: Listing) -> list[Listing]:
            """Once the groups are listed: a members listing for each managed one, read in the same rounds."""
            found = []
            for group in listing.items:
                if self.options.managed_group_marker not in str(group.get("description", "")):
                    continue
                self.remember_group(group)
                found.append(Listing(f"the members of {group.get('email')}", members_of, "members",
                                     {"groupKey": group["id"], "maxResults": 200,
                                      "fields": "nextPageToken,members(id,email,type)"}))
                managed.append((group, found[-1]))
            return found

        users = Listing("users.list", self.session.users.list, "users",
                        {"customer": customer, "maxResults": 500, "projection": "basic",
                         "fields": f"nextPageToken,users({USER_FIELDS})"})
        read_together(self.session, [users, Listing("groups.list", self.session.groups.list, "groups",
                                                    {"customer": customer, "maxResults": 200,
                                                     "fields": GROUP_FIELDS}, then=members)])
        for user in users.items:
            local, _, domain = str(user["primaryEmail"]).lower().partition("@")
            container = self.container(str(user.get("orgUnitPath", "/")))
            for alias in user.get("aliases", []):
                alias_local, _, alias_domain = str(alias).lower().partition("@")
                if alias_domain in self.options.domains:
                    outside.add(alias_local)
            if container is None:
                if domain in self.options.domains:
                    outside.add(local)
                continue
            accounts.append(self._remember_user(user, container))
        by_key = {a.key: a for a in accounts}
        # Every member with an id (users anywhere, nested groups, the whole customer): a restricted
        # share's group is held to its approved members, so none may be left out of sight.
        groups = [Group(self.name, str(group["id"]), str(group.get("name") or group["email"]),
                        {str(m["id"]): by_key[m["id"]].display_name if m["id"] in by_key
                         else str(m.get("email", m["id"])) for m in listing.items if "id" in m})
                  for group, listing in managed]
        return Snapshot(self.name, tuple(accounts), tuple(groups), frozenset(outside))

    def _remember_user(self, user: Mapping[str, Any], container: str) -> Account:
        read = account(self.name, user, container)
        self.emails[read.key] = read.login
        self.raw[read.key] = {"externalIds": user.get("externalIds") or [],
                              "organizations": user.get("organizations") or []}
        self.privileged[read.key] = read.privileged
        return read

    def recycle_bin(self) -> list[DeletedAccount]:
        """The deleted users (restorable for 20 days) whose primary email is in one of `domains`.

        `users.list(showDeleted="true")` lists only deleted users, paged like the live ones (500 a page), with
        `deletionTime`; no `query` goes with it. The scope is the domain, not the org unit: a leaver may have
        been moved out of `org_unit_root` before it was deleted, and a name reserved too many is never wrong.
        """
        found = []
        for user in self.session.pages(self.session.users.list, "users", customer=self.options.customer,
                                       showDeleted="true", maxResults=500,
                                       fields="nextPageToken,users(id,primaryEmail,externalIds,deletionTime)"):
            local, _, domain = str(user.get("primaryEmail") or "").partition("@")
            if not local or domain.lower() not in self.options.domains:
                continue
            found.append(DeletedAccount(self.name, str(user["id"]), local, anchor_of(user),
                                        parse_time(user.get("deletionTime"))))
        return found

    def admins(self, role_names: Mapping[str, Sequence[str]] | str | None = None) -> list[RoleHolder]:
        """Every super and delegated admin of the customer, in the managed org units or not, with their
        2-Step Verification state (the access review's Privileged roles sheet).

        `role_names` (`roles.RoleNames.by_user`): user id -> role names, a delegated admin then listed once per
        role; or why they could not be read, said in each delegated admin's role cell; None: not asked."""
        holders = []
        for user in self.session.pages(self.session.users.list, "users", customer=self.options.customer,
                                       maxResults=500, projection="basic", fields=ADMIN_FIELDS):
            role = admin_role(user)
            if not role:
                continue
            roles = [role]
            if role == "delegated admin" and isinstance(role_names, str):
                roles = [f"delegated admin ({role_names})"]
            elif role == "delegated admin" and isinstance(role_names, Mapping):
                roles = [f"delegated admin: {name}" for name in role_names.get(str(user["id"]), ())] or roles
            name = user.get("name", {})
            holders += [RoleHolder(self.name, held, str(user["primaryEmail"]),
                                   str(name.get("displayName") or name.get("fullName", "")),
                                   anchor_of(user), second_factor=second_factor(user)) for held in roles]
        return holders

    def privileged_reason(self, key: str) -> str:
        if key.lower() in self.session.born:
            return ""  # made by this run, as an ordinary account
        if key not in self.privileged:
            user = self.session.execute(lambda: self.session.users.get(userKey=key, fields="isAdmin,isDelegatedAdmin"),
                                        missing_ok=True)
            self.privileged[key] = admin_role(user or {})
        return self.privileged[key]

    # -- what the writes need --

    def remember_group(self, group: Mapping[str, Any]) -> None:
        assert self.groups is not None
        email = str(group["email"]).lower()
        for name in (str(group.get("name", "")).lower(), email, email.partition("@")[0]):
            if name:
                self.groups.setdefault(name, str(group["id"]))

    def group_key(self, name: str) -> str:
        if self.groups is None:
            self.groups = {}
            for group in self.session.pages(self.session.groups.list, "groups", customer=self.options.customer,
                                            maxResults=200, fields=GROUP_FIELDS):
                if self.options.managed_group_marker in str(group.get("description", "")):
                    self.remember_group(group)
        key = self.groups.get(name.lower())
        if key is None:
            raise ConnectorError(f"no managed Google group called {name!r} (managed groups carry "
                                 f"{self.options.managed_group_marker!r} in their description)")
        return key

    def email(self, key: str) -> str:
        if key not in self.emails:
            user = self.session.get_user(key, "id,primaryEmail")
            if user is None:
                raise ConnectorError(f"no Google user with id {key}")
            self.emails[key] = str(user["primaryEmail"])
        return self.emails[key]

    def current(self, key: str) -> dict[str, Any]:
        if key not in self.raw:
            user = self.session.get_user(key, "externalIds,organizations")
            if user is None:
                raise ConnectorError(f"no Google user with id {key}")
            self.raw[key] = {"externalIds": user.get("externalIds") or [],
                             "organizations": user.get("organizations") or []}
        return self.raw[key]

    def load_org_units(self) -> None:
        root, customer = self.options.org_unit_root, self.options.customer
        if root != "/" and self.session.execute(lambda: self.session.orgunits.get(
                customerId=customer, orgUnitPath=root.lstrip("/"), fields="orgUnitPath"), missing_ok=True) is None:
            raise ConfigError(self.source, "org_unit_root", f"the org unit {root} does not exist in Google: "
                              "create it in the Admin console (Directory > Organisational units) or correct it")
        listing = self.session.execute(lambda: self.session.orgunits.list(
            customerId=customer, orgUnitPath=root, type="all", fields="organizationUnits(orgUnitPath)"))
        self.org_units = {root.lower(), *(str(u["orgUnitPath"]).lower()
                                          for u in listing.get("organizationUnits", []))}

    def ensure_org_unit(self, path: str) -> None:
        """Create a missing org unit (and missing parents) under the managed root."""
        if self.org_units is None:
            self.load_org_units()
        assert self.org_units is not None
        if path.lower() in self.org_units:
            return
        parent, _, leaf = path.rpartition("/")
        parent = parent or "/"
        self.ensure_org_unit(parent)
        customer = self.options.customer
        try:
            self.session.execute(lambda: self.session.orgunits.insert(
                customerId=customer, body={"name": leaf, "parentOrgUnitPath": parent}))
        except ConnectorError:
            # Another run may have created it meanwhile: believe the directory, not the error.
            if self.session.execute(lambda: self.session.orgunits.get(
                    customerId=customer, orgUnitPath=path.lstrip("/")), missing_ok=True) is None:
                raise
        self.org_units.add(path.lower())
