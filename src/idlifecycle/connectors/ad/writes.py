"""One handler per action: read the object's current state, send what `requests` builds, say what happened.

Every change first reads the object as the DC holds it now, so re-running a change after a lost
connection reports ALREADY instead of doing it twice; a create that hit an existing name is ALREADY
when that object carries our anchor, a Conflict otherwise. Nothing outside base_dn is ever written
(`check_in_scope`, before every write).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from idlifecycle.anchors import directory_anchor
from idlifecycle.connectors.ad import requests
from idlifecycle.connectors.ad.dn import (
    checked_key,
    first_rdn,
    guid_filter,
    key_of,
    member_guid,
    parent_dn,
    plain_dn,
    rdn_values,
    same_dn,
    text,
    within,
)
from idlifecycle.connectors.ad.requests import ACCOUNT_ATTRIBUTES, EMPLOYEE_ID_LIMIT, AddRequest
from idlifecycle.connectors.ad.session import ADSession, Entry, transient
from idlifecycle.connectors.ad.snapshot import EXTENDED_DN_CONTROL
from idlifecycle.connectors.base import Conflict, ConnectorError, failed_result
from idlifecycle.model import Action, Change, Outcome, Result

DN_SEARCH_CHUNK = 200
"""objectGUID clauses OR-ed in one search for members' DNs."""


def done(change: Change, outcome: Outcome = Outcome.APPLIED, detail: str = "", key: str | None = None) -> Result:
    return Result(change.change_id, outcome, detail, key=key or change.target)


class Writer:
    """The write handlers of one connector (its session, its managed tree)."""

    def __init__(self, session: ADSession, privileged_reason: Callable[[str], str]) -> None:
        self.session = session
        self.settings = session.settings
        self.privileged_reason = privileged_reason
        self._known_containers: set[str] = set()

    # the scope and the object as it is now

    def check_in_scope(self, dn: str) -> None:
        """The one rule no code path may skip: nothing outside base_dn is ever written."""
        if not within(dn, self.settings.base_dn):
            raise ConnectorError(f"refusing to write {dn}: it is outside the managed tree {self.settings.base_dn}")

    def ensure_container(self, container: str) -> str:
        """The OU for a neutral path, creating missing OUs below base_dn (never above it)."""
        dn = self.settings.base_dn
        for dn, name in requests.container_path(self.settings.base_dn, container):
            if dn.lower() in self._known_containers:
                continue
            self.check_in_scope(dn)
            if self.session.read_one(dn, ["objectGUID"]) is None:
                try:
                    self.session.conn.add(dn, ["top", "organizationalUnit"], {"ou": name})
                except ldap_errors.LDAPEntryAlreadyExistsResult:
                    pass  # another connection created it a moment ago
                except ldap_errors.LDAPNoSuchObjectResult:
                    raise ConnectorError(f"base_dn {self.settings.base_dn} does not exist: create it first") from None
            self._known_containers.add(dn.lower())
        return dn

    def current(self, key: str | None, extra: Sequence[str] = ()) -> Entry | None:
        """The managed object with this objectGUID (None when it is not in the managed tree)."""
        if not key:
            raise ConnectorError("the change names no account")
        for found in self.session.search(self.settings.base_dn, guid_filter(key),
                                         [*ACCOUNT_ATTRIBUTES, *extra, "cn", "member"]):
            return found
        return None

    def require(self, change: Change, extra: Sequence[str] = ()) -> Entry:
        found = self.current(change.target, extra)
        if found is None:
            raise ConnectorError(f"{change.action} {change.username}: no account {change.target} in "
                                 f"{self.settings.base_dn} (deleted, or moved out of the managed tree)")
        return found

    def modify(self, dn: str, values: dict[str, Any]) -> None:
        self.check_in_scope(dn)
        self.session.conn.modify(dn, requests.replacing(values))

    def add(self, request: AddRequest) -> None:
        self.check_in_scope(request.dn)
        self.session.conn.add(request.dn, list(request.object_class), dict(request.attributes))

    # accounts

    def create(self, change: Change) -> Result:
        """The new account's key is left for the caller to read back (`ADConnector._with_keys`, one search
        for a chunk of creates)."""
        username = str(change.after["username"])
        requests.login_for(self.settings, username, change.after.get("login"))  # refused before any OU is made
        parent = self.ensure_container(str(change.after.get("container") or ""))
        try:
            self.add(requests.account_add(change, self.settings, parent))
        except ldap_errors.LDAPEntryAlreadyExistsResult:
            return self._existing_create(change, username)
        except ldap_errors.LDAPNoSuchObjectResult:
            self._known_containers.clear()
            raise ConnectorError(f"create {username}: the OU {parent} disappeared while creating the account; "
                                 "run again to recreate it", retryable=True) from None
        disabled_for_want_of_password = not requests.created_enabled(change) and change.after.get("enabled", True)
        return done(change, detail="created disabled: no password was given" if disabled_for_want_of_password else "",
                    key=None)

    def _existing_create(self, change: Change, username: str) -> Result:
        """The add hit an existing name: ours from an interrupted earlier attempt (ALREADY), or a clash."""
        base_dn = self.settings.base_dn
        same_name = f"(sAMAccountName={escape_filter_chars(username)})"
        for dn, raw in self.session.search(self.session.domain_dn(), same_name, ["objectGUID", "employeeID"]):
            anchor = text(raw, "employeeID")
            key = key_of(raw)
            why = self.privileged_reason(key) if within(dn, base_dn) else ""
            if why:
                raise Conflict(f"create {username}: the name is already used by {dn}, a privileged account ({why}); "
                               "it is never taken as this person's account")
            if anchor == requests.anchor_value(change.after.get("anchor")) and within(dn, base_dn):
                return done(change, Outcome.ALREADY, key=key)
            where = "inside" if within(dn, base_dn) else "outside"
            raise Conflict(f"create {username}: the name is already used by {dn} ({where} the managed tree"
                           f"{', anchor ' + anchor if anchor else ', no anchor'})")
        raise Conflict(f"create {username}: another object already has that name in "
                       f"{requests.container_dn(base_dn, str(change.after.get('container') or ''))}")

    def adopt(self, change: Change) -> Result:
        dn, raw = self.require(change)
        anchor = directory_anchor(str(change.after["anchor"]), EMPLOYEE_ID_LIMIT)
        current = text(raw, "employeeID")
        if current == anchor:
            return done(change, Outcome.ALREADY)
        if current:
            raise Conflict(f"adopt {change.username}: {dn} already carries the anchor {current}")
        self.modify(dn, {"employeeID": anchor})
        return done(change)

    def update(self, change: Change) -> Result:
        dn, raw = self.require(change, requests.update_reads(change))
        values = requests.update_values(change, raw)
        if not values:
            return done(change, Outcome.ALREADY)
        self.modify(dn, values)
        return done(change)

    def rename(self, change: Change) -> Result:
        dn, raw = self.require(change)
        username = str(change.after["username"])
        login = requests.login_for(self.settings, username, change.after.get("login"))
        renamed = False
        if text(raw, "cn") != username:
            self.check_in_scope(dn)
            self.session.conn.modify_dn(dn, f"CN={escape_rdn(username)}")
            parent = parent_dn(dn)
            dn, raw = self.require(change)
            if text(raw, "cn") != username or not same_dn(parent_dn(dn), parent):
                raise ConnectorError(f"{change.action} {change.username}: the DC answered success but the "
                                     f"account is now {dn}; check it by hand")
            renamed = True
        values = requests.rename_values(self.settings, raw, username, login)
        if values:
            self.modify(dn, values)
        return done(change, Outcome.APPLIED if renamed or values else Outcome.ALREADY)

    def move(self, change: Change) -> Result:
        dn, _ = self.require(change)
        container = str(change.after.get("container") or "")
        if same_dn(parent_dn(dn), requests.container_dn(self.settings.base_dn, container)):
            return done(change, Outcome.ALREADY)
        target = self.ensure_container(container)
        self.check_in_scope(dn)
        self.check_in_scope(target)
        self.session.conn.modify_dn(dn, first_rdn(dn), new_superior=target)
        moved, _ = self.require(change)
        if not (same_dn(parent_dn(moved), target) and rdn_values(moved)[0] == rdn_values(dn)[0]):
            raise ConnectorError(f"{change.action} {change.username}: the DC answered success but the account "
                                 f"is now {plain_dn(moved)}, not under {target}; check it by hand")
        return done(change)

    def _set_enabled(self, change: Change, enabled: bool) -> Result:
        dn, raw = self.require(change)
        uac = int(text(raw, "userAccountControl") or requests.UAC_NORMAL_ACCOUNT)
        wanted = requests.with_enabled(uac, enabled)
        if wanted == uac:
            return done(change, Outcome.ALREADY)
        self.modify(dn, {"userAccountControl": str(wanted)})  # no password yet: REFUSALS' "enable" row
        return done(change)

    def enable(self, change: Change) -> Result:
        return self._set_enabled(change, True)

    def disable(self, change: Change) -> Result:
        return self._set_enabled(change, False)

    def delete(self, change: Change) -> Result:
        found = self.current(change.target)
        if found is None:
            elsewhere = self.session.read_one(f"<GUID={checked_key(change.target or '')}>", ["objectGUID"])
            if elsewhere is not None:
                raise ConnectorError(f"delete {change.username}: {elsewhere[0]} is outside the managed tree "
                                     f"{self.settings.base_dn}; not deleted")
            return done(change, Outcome.ALREADY, "no longer in the directory")
        self.check_in_scope(found[0])
        self.session.conn.delete(found[0])
        return done(change)

    def set_password(self, change: Change) -> Result:
        if change.password is None:
            raise ConnectorError(f"set-password {change.username}: no password was supplied")
        dn, _ = self.require(change)
        self.modify(dn, {"unicodePwd": requests.password_value(change.password)})
        # An admin reset sets pwdLastSet to now; 0 on top makes the pupil choose their own at next sign-in.
        if change.after.get("must_change_password"):
            self.modify(dn, {"pwdLastSet": "0"})
        return done(change)

    def require_password_change(self, change: Change) -> Result:
        dn, raw = self.require(change)
        if text(raw, "pwdLastSet") == "0":
            return done(change, Outcome.ALREADY)
        self.modify(dn, {"pwdLastSet": "0"})
        return done(change)

    def revoke_sessions(self, change: Change) -> Result:
        return done(change, Outcome.ALREADY, "Active Directory has no sign-in sessions to revoke; "
                    "disabling the account stops new sign-ins")

    # groups

    def create_group(self, change: Change) -> Result:
        name = str(change.group or change.after.get("name") or "")
        if not name:
            raise ConnectorError("create-group: the change names no group")
        existing = self.find_group(name)
        if existing is not None:
            return done(change, Outcome.ALREADY, key=existing[1])
        request = requests.group_add(name, self.ensure_container(self.settings.groups_container))
        try:
            self.add(request)
        except ldap_errors.LDAPEntryAlreadyExistsResult:
            raise Conflict(f"create-group {name}: the name {request.attributes['sAMAccountName']} is already used "
                           "in the domain") from None
        found = self.session.read_one(request.dn, ["objectGUID"])
        return Result(change.change_id, Outcome.APPLIED, key=key_of(found[1]) if found else None)

    def find_group(self, name: str) -> tuple[str, str] | None:
        """(dn, key) of the managed group with this name; only groups inside base_dn count."""
        value = escape_filter_chars(name)
        for dn, raw in self.session.search(self.settings.base_dn, f"(&(objectClass=group)(cn={value}))",
                                           ["objectGUID"]):
            return dn, key_of(raw)
        return None

    def members(self, group: str, action: Action, batch: Sequence[Change]) -> list[Result]:
        """One group's adds (or removes) in one modify; one by one when the DC refuses the lot."""
        found = self.find_group(group)
        if found is None:
            raise ConnectorError(f"{action} {group}: there is no group of that name in {self.settings.base_dn}")
        group_dn = found[0]
        self.check_in_scope(group_dn)
        current = self.session.read_one(group_dn, ["member"], controls=[EXTENDED_DN_CONTROL])
        members = {g for v in (current[1].get("member", []) if current else [])
                   if (g := member_guid(v.decode() if isinstance(v, bytes) else v))}
        adding = action is Action.ADD_MEMBER
        already, wanted = requests.still_to_do(batch, members, adding)
        results = [done(change, Outcome.ALREADY) for change in already]
        dns = self._dns_of({checked_key(c.target) for c in wanted if c.target})
        pending: list[tuple[Change, str]] = []
        for change in wanted:
            dn = dns.get(checked_key(change.target)) if change.target else None
            if dn is None:
                results.append(failed_result(change, f"{action} {group}: account {change.target} "
                                                      f"({change.username}) not found"))
            else:
                pending.append((change, dn))
        if pending:
            try:
                self.session.conn.modify(group_dn, requests.membership(adding, [dn for _, dn in pending]))
                results.extend(done(change) for change, _ in pending)
            except ldap_errors.LDAPOperationResult as error:
                if transient(error):
                    raise
                results.extend(self._one_member(group_dn, adding, change, dn) for change, dn in pending)
        return results

    def _dns_of(self, keys: set[str]) -> dict[str, str]:
        """objectGUID -> DN for many accounts in a few searches (members may live outside base_dn)."""
        found: dict[str, str] = {}
        ordered = sorted(keys)
        domain = self.session.domain_dn() if ordered else ""
        for start in range(0, len(ordered), DN_SEARCH_CHUNK):
            chunk = "".join(guid_filter(key) for key in ordered[start:start + DN_SEARCH_CHUNK])
            for dn, raw in self.session.search(domain, f"(|{chunk})", ["objectGUID"]):
                found[key_of(raw)] = dn
        return found

    def _one_member(self, group_dn: str, adding: bool, change: Change, dn: str) -> Result:
        try:
            self.session.conn.modify(group_dn, requests.membership(adding, [dn]))
        except (ldap_errors.LDAPEntryAlreadyExistsResult, ldap_errors.LDAPAttributeOrValueExistsResult):
            return done(change, Outcome.ALREADY)
        except ldap_errors.LDAPUnwillingToPerformResult:
            return done(change, Outcome.ALREADY)  # removing a member that is not there
        except ldap_errors.LDAPOperationResult as error:
            if transient(error):
                raise
            return failed_result(change, self.session.refused(error, change.action.value,
                                                              f"{change.action} {change.username}"))
        return done(change)
