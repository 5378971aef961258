"""Reading an Entra tenant's managed scope: `/users/delta` and `/groups/delta` into the cache (a full read when
there are no links or Graph refuses them), then the Snapshot, the recycle bin and the licences still owed.

Scope: the managed accounts are the users whose UPN is in one of `domains`; the managed groups are
those whose description contains `group_marker`. With `hybrid = "off"`, users synchronised from
on-premises AD are outside the scope.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from idlifecycle.anchors import directory_anchor, is_short_anchor
from idlifecycle.connectors.base import CursorStore
from idlifecycle.connectors.entra.cache import Cache, CacheFile
from idlifecycle.connectors.entra.graph import ResponseError
from idlifecycle.connectors.entra.roles import MAX_PAGE, Roles
from idlifecycle.connectors.entra.session import GraphSession, response_refused
from idlifecycle.connectors.entra.settings import EntraSettings
from idlifecycle.connectors.entra.sign_ins import SignInRecord, read_url
from idlifecycle.model import Account, DeletedAccount, Group, Snapshot

log = logging.getLogger(__name__)
LICENCE_DEBT_DAYS = 14
EMPLOYEE_ID_LIMIT = 16
"""employeeId holds at most 16 characters (https://learn.microsoft.com/en-us/graph/api/resources/user):
a longer person id is written as its short anchor (idlifecycle.anchors)."""
USER_FIELDS = ("id", "userPrincipalName", "givenName", "surname", "displayName", "employeeId", "accountEnabled",
               "createdDateTime", "lastPasswordChangeDateTime", "passwordPolicies", "onPremisesSyncEnabled",
               "usageLocation", "mailNickname", "proxyAddresses", "onPremisesExtensionAttributes")
GROUP_FIELDS = "displayName,description,proxyAddresses,members"
READ = ("read", "as-is")
"""Where REFUSALS looks up a refused read."""


class Reader:
    """The tenant as this connector reads it: the cache, the role map, the licences owed, the snapshot's notes."""

    def __init__(self, name: str, session: GraphSession, settings: EntraSettings, cursors: CursorStore,
                 cache_path: Path) -> None:
        self.name = name
        self.session = session
        self.settings = settings
        self.cursors = cursors
        self.domains = frozenset(d.lower() for d in settings.domains.values())
        self.cache: Cache | None = None
        self.notes: list[str] = []
        """Notes of the snapshot being read (Snapshot.notes)."""
        self.read_whole = True
        """Whether the last refresh read the users whole (the sign-in dates are then read whole too)."""
        self.sign_ins_unknown = ""
        """Why last sign-in dates were not read this snapshot ("" when they were): see Snapshot.sign_ins_unknown."""
        self.roles = Roles(name, session, self.domains, self.note)
        self.licence_debt: dict[str, float] | None = None
        """Accounts created without their direct licence -> when (epoch seconds); kept in the store."""
        self.cache_file = CacheFile(name, cache_path, cursors, (self.users_select(), GROUP_FIELDS))

    def note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    def snapshot(self) -> Snapshot:
        self.notes = []
        cache = self.refresh()
        self.sign_ins_unknown = "" if self.settings.sign_in_activity else \
            "sign_in_activity is off in the connector (it needs Entra ID P1 and AuditLog.Read.All)"
        sign_ins = self._sign_ins() if self.settings.sign_in_activity else {}
        privileged = self.roles.read_privileged(cache)
        accounts: list[Account] = []
        outside: set[str] = set()
        debt = self.owed_licences(cache)
        for user in cache.users.values():
            upn = str(user.get("userPrincipalName") or "")
            if user["id"] in debt:
                # Created by an earlier run whose licence could not be assigned: the create is not
                # finished, so it is left out and planned again (creates then assign the licence).
                # Its name stays taken meanwhile.
                outside.add(upn.split("@")[0].lower())
            elif self.in_scope(user):
                accounts.append(replace(self._account(user, sign_ins.get(user["id"])),
                                        privileged=privileged.get(str(user["id"]), "")))
            elif upn:
                outside.add(upn.split("@")[0].lower())
        for user in cache.deleted.values():
            if user.get("userPrincipalName"):
                # A deleted user's name is not reissued while it can be restored (deleted items list its
                # UPN with an id prefix, `deleted_upn`).
                outside.add(deleted_upn(user).split("@")[0].lower())
        # An address in any object's proxyAddresses (a renamed or deleted person's old address, a
        # mail-enabled group's) is refused for a new UPN: "Another object with the same value for
        # property proxyAddresses already exists" (microsoft-graph-docs-contrib#8421). Their local
        # parts are reserved in every domain, which is stricter than Graph but never wrong.
        for obj in (*cache.users.values(), *cache.deleted.values(), *cache.groups.values()):
            outside.update(_proxy_local_parts(obj))
        groups = tuple(
            Group(self.name, key, str(group.get("displayName") or ""),
                  {m: self._member_name(cache, m) for m in sorted(group["members"])})
            for key, group in sorted(cache.groups.items()) if self.managed_group(group)
        )
        managed_names = {a.username.lower() for a in accounts}
        return Snapshot(self.name, tuple(sorted(accounts, key=lambda a: a.key)), groups,
                        frozenset(outside - managed_names), notes=tuple(self.notes),
                        sign_ins_unknown=self.sign_ins_unknown)

    def owed_licences(self, cache: Cache) -> dict[str, float]:
        """Accounts this tool created whose direct licence is still to be assigned (kept in the store).

        After LICENCE_DEBT_DAYS an account is given up on (logged) and managed like any other, so
        that a person who left meanwhile is still disabled.
        """
        if self.licence_debt is None:
            stored = self.cursors.get_cursor(self.name, "licence_debt")
            self.licence_debt = {str(k): float(v) for k, v in json.loads(stored).items()} if stored else {}
        now = time.time()
        stale = {k for k, since in self.licence_debt.items()
                 if k not in cache.users or now - since > LICENCE_DEBT_DAYS * 86400}
        for key in stale:
            if key in cache.users:
                log.warning("%s: the licence of %s could not be assigned for %d days; it is now managed without it",
                            self.name, cache.users[key].get("userPrincipalName"), LICENCE_DEBT_DAYS)
            del self.licence_debt[key]
        if stale:
            self.save_licence_debt()
        return dict(self.licence_debt)

    def save_licence_debt(self, owed: Mapping[str, float] | None = None) -> None:
        owed = (self.licence_debt or {}) if owed is None else owed
        self.cursors.set_cursor(self.name, "licence_debt", json.dumps(owed, sort_keys=True) if owed else None)

    def in_scope(self, user: Mapping[str, Any]) -> bool:
        upn = str(user.get("userPrincipalName") or "")
        domain = upn.rsplit("@", 1)[-1].lower()
        return domain in self.domains and not (self.settings.hybrid == "off" and user.get("onPremisesSyncEnabled"))

    def managed_group(self, group: Mapping[str, Any]) -> bool:
        return self.settings.group_marker.lower() in str(group.get("description") or "").lower()

    def _member_name(self, cache: Cache, key: str) -> str:
        user = cache.users.get(key)
        if user is not None:
            return str(user.get("displayName") or user.get("userPrincipalName") or key)
        group = cache.groups.get(key)
        return str(group.get("displayName") or key) if group else key

    def _account(self, user: Mapping[str, Any], last_sign_in: datetime | None) -> Account:
        upn = str(user["userPrincipalName"])
        policies = str(user.get("passwordPolicies") or "")
        return Account(
            directory=self.name, key=str(user["id"]), username=upn.split("@")[0], login=upn,
            given_name=str(user.get("givenName") or ""), surname=str(user.get("surname") or ""),
            display_name=str(user.get("displayName") or ""), anchor=self.person_id(user),
            enabled=bool(user.get("accountEnabled")), container="",
            attributes={a: str(user[a]) for a in self.settings.attributes if user.get(a)},
            password_never_expires="DisablePasswordExpiration" in policies,
            synced_from_on_premises=bool(user.get("onPremisesSyncEnabled")),
            created=when(user.get("createdDateTime")), last_sign_in=last_sign_in,
            password_last_set=when(user.get("lastPasswordChangeDateTime")),
        )

    def person_id(self, user: Mapping[str, Any]) -> str | None:
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

    def refresh(self) -> Cache:
        """Bring the cache up to date through delta links; a full read when there are none or they expired."""
        cache = self.cache or self.cache_file.load()
        try:
            changed, links_changed = self.session.run(self._read_deltas(cache))
        except ResponseError as error:
            raise response_refused(READ, error) from None
        self.cache = cache
        self.cache_file.save(cache, changed=changed, links_changed=links_changed)
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
            raise response_refused(READ, error) from None
        found = []
        for item in items:
            username, _, domain = deleted_upn(item).rpartition("@")
            if username and domain.lower() in self.domains:
                found.append(DeletedAccount(self.name, str(item["id"]), username, self.person_id(item),
                                            when(item.get("deletedDateTime"))))
        return found

    async def _read_deltas(self, cache: Cache) -> tuple[bool, bool]:
        """Merge what changed into `cache`; (whether the directory did, whether a delta link did)."""
        refused: list[str] = []
        (user_items, users_link, users_full), (group_items, groups_link, groups_full) = await asyncio.gather(
            self._read_delta(cache.users_link, f"/users/delta?$select={self.users_select()}", refused),
            self._read_delta(cache.groups_link, f"/groups/delta?$select={GROUP_FIELDS}", refused),
        )
        if refused:
            self.notes.append(f"{self.name}: Graph refused the stored delta links for {' and '.join(sorted(refused))}"
                              " (they expire after about 7 days without a run): the whole directory was read "
                              "once instead")
        self.read_whole = users_full
        if users_full:
            cache.users, cache.deleted = {}, {}
        if groups_full:
            cache.groups = {}
        _merge_users(cache, user_items)
        _merge_groups(cache, group_items)
        links_changed = (users_link, groups_link) != (cache.users_link, cache.groups_link)
        cache.users_link, cache.groups_link = users_link, groups_link
        return bool(user_items or group_items or users_full or groups_full), links_changed

    async def _read_delta(self, link: str | None, first: str, refused: list[str]) -> tuple[list[Any], str | None, bool]:
        """What changed since `link` (items, the next link, False), or everything (…, True) when there is no link
        or Graph refuses it."""
        prefer = {"Prefer": f"odata.maxpagesize={MAX_PAGE}"}
        if link:
            try:
                items, new_link = await self.session.read_all(self._rebase(link), prefer)
                return items, new_link, False
            except ResponseError as error:
                if not _link_refused(error):
                    raise
                log.warning("%s: Graph refused the stored %s delta link (%s): reading the whole directory "
                            "once instead", self.name, first.split("/")[1], error)
                refused.append(f"{first.split('/')[1]} ({error.response.error_code or error.response.status})")
        items, new_link = await self.session.read_all(first, prefer)
        return items, new_link, True

    def _rebase(self, link: str) -> str:
        """A stored link on the configured Graph root (the sandbox gets a new port on every run)."""
        version = urlsplit(self.session.graph_url).path
        parts = urlsplit(link)
        if not parts.path.startswith(version + "/"):
            return link
        return self.session.graph_url + parts.path[len(version):] + (f"?{parts.query}" if parts.query else "")

    def _sign_ins(self) -> dict[str, datetime | None]:
        """Each user's last sign-in: read whole once, then only the users who signed in since (sign_ins.py).
        The record is read and kept here, not in the coroutine: the store belongs to this thread."""
        record = SignInRecord(self.name, self.cursors)
        since = record.since(read_whole=self.read_whole)
        began = record.clock()
        items = self.session.run(self._read_sign_ins(read_url(since, MAX_PAGE)))
        if items is None:
            return {}
        record.merge(items, whole=since is None, began=began)
        return {key: when(value) for key, value in record.last.items()}

    async def _read_sign_ins(self, url: str) -> list[Any] | None:
        try:
            items, _ = await self.session.read_all(url)
        except ResponseError as error:
            if error.response.error_code != "Authentication_RequestFromNonPremiumTenantOrB2CTenant":
                raise
            # Sign-in activity needs Entra ID P1 in the tenant: the access review goes without it.
            log.warning("%s: sign_in_activity: the tenant has no Entra ID P1 licence, so Graph does not give "
                        "last sign-in dates; the access review is made without them", self.name)
            self.notes.append(f"{self.name}: no last sign-in dates (sign_in_activity needs Entra ID P1, which "
                              "the tenant does not have)")
            self.sign_ins_unknown = "the tenant has no Entra ID P1 licence, so Graph gives no sign-in dates"
            return None
        return items

    def users_select(self) -> str:
        return ",".join(dict.fromkeys((*USER_FIELDS, *self.settings.attributes)))


def _link_refused(error: ResponseError) -> bool:
    """Whether Graph refused a stored delta link itself, so that one full read replaces it.

    Expired links answer 400 syncStateNotFound after seven days (Graph's blog, "Duration of change
    tracking tokens"), 410 when the service lost the state, other 4xx codes now and then: any refusal
    of the link itself means one full read, not a failed night.
    """
    status, code = error.response.status, error.response.error_code.lower()
    return (status == 410 or code in ("syncstatenotfound", "resyncrequired")
            or (400 <= status < 500 and status not in (401, 403, 429)))


def _merge_users(cache: Cache, items: list[Any]) -> None:
    for item in items:
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


def _merge_groups(cache: Cache, items: list[Any]) -> None:
    for item in items:
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


def deleted_upn(item: Mapping[str, Any]) -> str:
    """The UPN a deleted user held. Entra may show it prefixed with the user's object id (no dashes), so
    that the name is free for a new user while the deleted one waits; the prefix is not part of the name."""
    upn = str(item.get("userPrincipalName") or "")
    prefix = str(item.get("id") or "").replace("-", "")
    return upn[len(prefix):] if prefix and upn.lower().startswith(prefix.lower()) and len(upn) > len(prefix) else upn


def when(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _proxy_local_parts(obj: Mapping[str, Any]) -> set[str]:
    """The local parts of an object's SMTP proxy addresses ("smtp:jsmith@…" -> "jsmith")."""
    parts: set[str] = set()
    for proxy in obj.get("proxyAddresses") or []:
        kind, _, address = str(proxy).partition(":")
        if kind.lower() == "smtp" and "@" in address:
            parts.add(address.rsplit("@", 1)[0].lower())
    return parts
