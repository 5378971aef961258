"""Reading the managed tree: a full read, or the uSN-incremental read of what changed since the last one.

A full read is a paged search of the managed tree (only the compared attributes; group members with
the extended-DN control so they are GUIDs, which survive renames) plus a cheap paged listing of every
sAMAccountName in the domain (names outside the scope). The result is kept, compressed, in the cursor
store with the DC's invocationId and highestCommittedUSN. The next read on the same DC only fetches
objects with a higher uSNChanged, plus tombstones (show-deleted control) for deletions; an object
whose new DN is outside the tree has moved out. A renamed or moved OU changes the DNs of objects whose
uSNChanged does not move, so the state keeps every OU and container of the tree by objectGUID and DN:
a changed one that kept its DN (a linked GPO, a description) or is new since the last read (uSNCreated
above it: nothing old can be under it unchanged) keeps the read incremental; one whose DN moved, or
one of the tree the state does not know, forces a full read, as do a new invocationId (a restored DC),
a different DC or changed settings.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from idlifecycle.connectors.ad.dn import (
    filetime,
    generalized,
    guid,
    key_of,
    members_of,
    plain_dn,
    rdn_values,
    split_unescaped,
    text,
    within,
)
from idlifecycle.connectors.ad.requests import ACCOUNT_ATTRIBUTES, UAC_DISABLED, UAC_DONT_EXPIRE_PASSWORD, ldap_name
from idlifecycle.connectors.ad.session import ADSession
from idlifecycle.connectors.base import ConnectorError, CursorStore
from idlifecycle.model import Account, DeletedAccount, Group, Snapshot

EXTENDED_DN_CONTROL = ("1.2.840.113556.1.4.529", False, None)
SHOW_DELETED_CONTROL = ("1.2.840.113556.1.4.417", False, None)
GROUP_ATTRIBUTES = ["objectGUID", "cn", "sAMAccountName", "member", "objectClass"]
SCOPE_FILTER = "(|(&(objectCategory=person)(objectClass=user))(objectClass=group))"
CONTAINER_FILTER = "(|(objectClass=organizationalUnit)(objectClass=container))"
RECORDED = ("sAMAccountName", "userPrincipalName", "givenName", "sn", "displayName", "employeeID",
            "userAccountControl", "pwdLastSet", "whenCreated", "lastLogonTimestamp")
"""An account's attributes as the cached state keeps them (text, as the DC sent them)."""

State = dict[str, Any]
"""{"objects": objectGUID -> record, "outside": objectGUID -> sAMAccountName, "containers": objectGUID -> DN
(the tree's OUs and containers), "invocation", "usn", "settings"}."""


class ScopeReader:
    """Reads one connector's managed tree into a Snapshot, keeping its state in the cursor store."""

    def __init__(self, directory: str, session: ADSession, cursors: CursorStore) -> None:
        self.directory = directory
        self.session = session
        self.settings = session.settings
        self.cursors = cursors
        self.last_read = ""
        """"full" or "incremental": how the last snapshot was read (for logs and tests)."""

    def read(self) -> State:
        """The managed tree's state as of now, read incrementally where that can be trusted."""
        dse = self.session.root_dse()
        high = int(text(dse, "highestCommittedUSN") or 0)
        found = self.session.read_one(text(dse, "dsServiceName") or "", ["invocationId"])
        invocation = guid(found[1]["invocationId"][0]) if found and found[1].get("invocationId") else ""
        if self.session.read_one(self.settings.base_dn, ["objectGUID"]) is None:
            raise ConnectorError(f"base_dn {self.settings.base_dn} does not exist on "
                                 f"{self.session.conn.server.host}: create it or correct base_dn")
        state = self._load_state(invocation)
        self.last_read = "incremental"
        if state is None or not self._incremental_read(state):
            self.last_read = "full"
            state = self._full_read()
        state.update(invocation=invocation, usn=high, settings=self.settings.fingerprint())
        self._save_state(state)
        return state

    def _scope_attributes(self) -> list[str]:
        extra = [ldap_name(a) for a in self.settings.attributes]
        return sorted(set(ACCOUNT_ATTRIBUTES + GROUP_ATTRIBUTES + extra + ["uSNChanged"]))

    def _record(self, dn: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        """What the state keeps of one object of the tree."""
        dn = plain_dn(dn)
        classes = {(c.decode() if isinstance(c, bytes) else c).lower() for c in raw.get("objectClass", [])}
        if "group" in classes:
            # Every member, with its CN for messages: one outside the tree is as much a member.
            return {"type": "group", "dn": dn, "cn": text(raw, "cn"), "members": members_of(raw)}
        record: dict[str, Any] = {"type": "account", "dn": dn, **{name: text(raw, name) for name in RECORDED}}
        record["attributes"] = {neutral: value for neutral in self.settings.attributes
                                if (value := text(raw, ldap_name(neutral))) is not None}
        return record

    def _tree(self, extra_filter: str = "") -> dict[str, dict[str, Any]]:
        search_filter = f"(&{SCOPE_FILTER}{extra_filter})" if extra_filter else SCOPE_FILTER
        return {key_of(raw): self._record(dn, raw) for dn, raw in self.session.search(
            self.settings.base_dn, search_filter, self._scope_attributes(), controls=[EXTENDED_DN_CONTROL])}

    def _full_read(self) -> State:
        outside: dict[str, str] = {}
        objects = self._tree()
        for dn, raw in self.session.search(self.session.domain_dn(), "(sAMAccountName=*)",
                                           ["objectGUID", "sAMAccountName"]):
            if not within(dn, self.settings.base_dn):
                outside[key_of(raw)] = text(raw, "sAMAccountName") or ""
        containers = {key_of(raw): plain_dn(dn) for dn, raw in self.session.search(
            self.settings.base_dn, CONTAINER_FILTER, ["objectGUID"])}
        return {"objects": objects, "outside": outside, "containers": containers}

    def _containers_unmoved(self, state: State, since: str) -> bool:
        """Whether no OU or container moved since the last read, so every unchanged object kept its DN."""
        known: dict[str, str] | None = state.get("containers")
        if known is None:
            return False  # a state from before containers were kept
        usn = int(state["usn"])
        for dn, raw in self.session.search(self.session.domain_dn(), f"(&{CONTAINER_FILTER}{since})",
                                           ["objectGUID", "uSNCreated"]):
            key, dn = key_of(raw), plain_dn(dn)
            inside = within(dn, self.settings.base_dn)
            if key in known:
                if known[key].lower() != dn.lower():
                    return False  # renamed or moved: what is under it moved without a uSN
            elif inside and int(text(raw, "uSNCreated") or 0) <= usn:
                return False  # an old container come into the tree, with whatever is under it
            if inside:
                known[key] = dn
            else:
                known.pop(key, None)
        return True

    def _incremental_read(self, state: State) -> bool:
        """Bring a cached snapshot up to date; False when only a full read can be trusted."""
        since = f"(uSNChanged>={int(state['usn']) + 1})"
        domain = self.session.domain_dn()
        if not self._containers_unmoved(state, since):
            return False
        objects: dict[str, dict[str, Any]] = state["objects"]
        outside: dict[str, str] = state["outside"]
        for dn, raw in self.session.search(domain, f"(&(sAMAccountName=*){since})", ["objectGUID", "sAMAccountName"]):
            key = key_of(raw)
            if within(dn, self.settings.base_dn):
                outside.pop(key, None)
            else:
                objects.pop(key, None)
                outside[key] = text(raw, "sAMAccountName") or ""
        objects.update(self._tree(since))
        for _, raw in self.session.search(domain, f"(&(isDeleted=TRUE){since})", ["objectGUID"],
                                          controls=[SHOW_DELETED_CONTROL]):
            key = key_of(raw)
            objects.pop(key, None)
            outside.pop(key, None)
        return True

    def _cursor_name(self) -> str:
        assert self.session.server_used is not None
        return f"snapshot@{self.session.server_used.url}"

    def _load_state(self, invocation: str) -> State | None:
        stored = self.cursors.get_cursor(self.directory, self._cursor_name())
        if not stored:
            return None
        try:
            state: State = json.loads(zlib.decompress(base64.b64decode(stored)))
        except (ValueError, zlib.error):
            return None
        if state.get("invocation") != invocation or state.get("settings") != self.settings.fingerprint():
            return None
        return state

    def _save_state(self, state: Mapping[str, Any]) -> None:
        packed = base64.b64encode(zlib.compress(json.dumps(state, separators=(",", ":")).encode(), 6)).decode()
        self.cursors.set_cursor(self.directory, self._cursor_name(), packed)

    def snapshot_from(self, state: Mapping[str, Any], privileged: Mapping[str, str]) -> Snapshot:
        objects: Mapping[str, Mapping[str, Any]] = state["objects"]
        accounts = {key: replace(self._account_from(key, r), privileged=privileged.get(key, ""))
                    for key, r in objects.items() if r["type"] == "account"}
        groups = tuple(
            Group(self.directory, key, r.get("cn") or "",
                  {m: accounts[m].display_name if m in accounts else name for m, name in r["members"].items()})
            for key, r in objects.items() if r["type"] == "group"
        )
        return Snapshot(self.directory, tuple(accounts.values()), groups,
                        frozenset(name for name in state["outside"].values() if name))

    def _container_of(self, dn: str) -> str:
        """The neutral container path ("Pupils/Year 7") of an object's DN below base_dn."""
        values = rdn_values(dn)
        between = values[1:len(values) - len(split_unescaped(self.settings.base_dn, ","))]
        return "/".join(reversed(between))

    def _account_from(self, key: str, record: Mapping[str, Any]) -> Account:
        uac = int(record.get("userAccountControl") or 0)
        pwd_last_set = record.get("pwdLastSet")
        return Account(
            directory=self.directory, key=key, username=record.get("sAMAccountName") or "",
            login=record.get("userPrincipalName") or "", given_name=record.get("givenName") or "",
            surname=record.get("sn") or "", display_name=record.get("displayName") or "",
            anchor=record.get("employeeID") or None, enabled=not uac & UAC_DISABLED,
            container=self._container_of(record["dn"]), attributes=dict(record.get("attributes") or {}),
            password_never_expires=bool(uac & UAC_DONT_EXPIRE_PASSWORD),
            must_change_password=pwd_last_set == "0",  # noqa: S105 - pwdLastSet 0 means "change at next sign-in"
            created=generalized(record.get("whenCreated")),
            last_sign_in=filetime(record.get("lastLogonTimestamp")), password_last_set=filetime(pwd_last_set),
        )

    def recycle_bin(self) -> list[DeletedAccount]:
        """The deleted user objects (CN=Deleted Objects, read with the show-deleted control) that were last
        under `base_dn`. A deleted object keeps sAMAccountName and lastKnownParent; employeeID only with the
        AD Recycle Bin feature (Samba without it drops it: tests/integration/test_rebuild_recycle_bin_ad.py),
        so the anchor is often None. whenChanged is the deletion time: deleting is the object's last change.
        An object without lastKnownParent is kept: a name reserved too many is never wrong."""
        found = []
        for _, raw in self.session.search(
                self.session.domain_dn(), "(&(isDeleted=TRUE)(objectClass=user)(!(objectClass=computer)))",
                ["objectGUID", "sAMAccountName", "employeeID", "lastKnownParent", "whenChanged"],
                controls=[SHOW_DELETED_CONTROL]):
            username, parent = text(raw, "sAMAccountName"), text(raw, "lastKnownParent")
            if not username or (parent and not within(parent, self.settings.base_dn)):
                continue
            found.append(DeletedAccount(self.directory, key_of(raw), username, text(raw, "employeeID"),
                                        generalized(text(raw, "whenChanged"))))
        return found

    def password_constraints(self) -> dict[str, Any]:
        """The domain's own password policy, as the domain object holds it."""
        found = self.session.read_one(self.session.domain_dn(), ["minPwdLength", "pwdProperties", "pwdHistoryLength"])
        raw = found[1] if found else {}
        return {
            "min_length": int(text(raw, "minPwdLength") or 0),
            "max_length": 256,
            "complexity": bool(int(text(raw, "pwdProperties") or 0) & 1),
            "history": int(text(raw, "pwdHistoryLength") or 0),
        }
