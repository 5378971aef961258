"""Who holds a protected group of the domain, found by well-known SID (the names are localised).

Every snapshot reads this afresh: a membership change does not move a user's uSNChanged, so the
incremental read would not see someone made a Domain Admin.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from ldap3.protocol.formatters.formatters import format_sid
from ldap3.utils.conv import escape_filter_chars

from idlifecycle.connectors.ad.dn import RDNs, dn_parts, key_of, plain_dn, text
from idlifecycle.connectors.ad.session import ADSession
from idlifecycle.model import RoleHolder, second_factor_unknown

AD_SECOND_FACTOR = second_factor_unknown("AD does not record a second factor")
"""An AD account's second factor lives in whatever sits in front of it (smart cards, an MFA agent), not in AD."""

PROTECTED_GROUPS = (
    ("Domain Admins", "domain", 512), ("Enterprise Admins", "root", 519), ("Schema Admins", "root", 518),
    ("Administrators", "builtin", 544), ("Account Operators", "builtin", 548),
    ("Server Operators", "builtin", 549), ("Print Operators", "builtin", 550), ("Backup Operators", "builtin", 551),
    ("Replicator", "builtin", 552), ("Domain Controllers", "domain", 516),
    ("Read-only Domain Controllers", "domain", 521), ("Cert Publishers", "domain", 517),
    ("Group Policy Creator Owners", "domain", 520), ("Key Admins", "domain", 526),
    ("Enterprise Key Admins", "root", 527),
)
"""Role name, whose SID it is relative to (this domain, the forest root domain, or BUILTIN S-1-5-32)
and its well-known RID ("Well-known SIDs", learn.microsoft.com/windows-server/identity/ad-ds/manage/
understand-security-identifiers): found by SID because the names differ by language."""
IN_CHAIN = "1.2.840.113556.1.4.1941"
"""LDAP_MATCHING_RULE_IN_CHAIN: membership through any depth of nested groups (the access review's
role holders; too slow on Samba for every snapshot, see `privileged_in_scope`)."""
CLAUSES_PER_SEARCH = 100
"""memberOf clauses OR-ed in one filter."""

ProtectedGroup = tuple[str, str, str, str]
"""(role name, DN, SID, what it is relative to)."""


def protected_groups(session: ADSession) -> list[ProtectedGroup]:
    """Each protected group this forest has (Key Admins needs the 2016 functional level)."""
    dse = session.root_dse()
    domain = text(dse, "defaultNamingContext") or session.domain_dn()
    root = text(dse, "rootDomainNamingContext") or domain
    sids = {"builtin": "S-1-5-32"}
    for kind, dn in (("domain", domain), ("root", root)):
        found = session.read_one(dn, ["objectSid"])
        sids[kind] = format_sid(found[1]["objectSid"][0]) if found and found[1].get("objectSid") else ""
    groups: list[ProtectedGroup] = []
    for role, relative_to, rid in PROTECTED_GROUPS:
        if not sids[relative_to]:
            continue
        sid = f"{sids[relative_to]}-{rid}"
        group = session.read_one(f"<SID={sid}>", ["objectGUID"])
        if group is not None:
            groups.append((role, plain_dn(group[0]), sid, relative_to))
    return groups


def _any_member_of(dns: list[str]) -> list[str]:
    """OR-able memberOf clauses, a search's worth each."""
    return ["".join(f"(memberOf={escape_filter_chars(dn)})" for dn in dns[start:start + CLAUSES_PER_SEARCH])
            for start in range(0, len(dns), CLAUSES_PER_SEARCH)]


def _nested_groups(session: ADSession, role_of: dict[RDNs, str], primary: dict[str, str], domain_sid: str,
                   frontier: list[str]) -> list[str]:
    """Every group of the domain nested, at any depth, in the `frontier` groups: `role_of` and `primary`
    (RID -> role) are filled in on the way."""
    domain = session.domain_dn()
    groups = list(frontier)
    while frontier:
        nested: list[str] = []
        for clauses in _any_member_of(frontier):
            for dn, raw in session.search(domain, f"(&(objectClass=group)(|{clauses}))", ["memberOf", "objectSid"]):
                parts = tuple(dn_parts(dn))
                if parts in role_of:
                    continue
                role_of[parts] = first_role(raw, role_of) or "a protected group"
                nested.append(plain_dn(dn))
                sid = format_sid(raw["objectSid"][0]) if raw.get("objectSid") else ""
                if domain_sid and sid.startswith(domain_sid + "-"):
                    primary.setdefault(sid.rsplit("-", 1)[1], role_of[parts])
        groups += nested
        frontier = nested
    return groups


def privileged_in_scope(session: ADSession) -> dict[str, str]:
    """objectGUID -> why, for the accounts under base_dn holding a protected group, nested or not.

    The nesting is walked one level per search over `memberOf` (indexed), not with the in-chain
    matching rule, which Samba evaluates object by object (15 such searches: about 1 s for 300
    accounts, measured, against 30 ms this way).
    """
    role_of: dict[RDNs, str] = {}
    # RID -> role, for every group of this domain that is or leads to a protected group: a primary
    # group is not listed in `member`, so a user whose primaryGroupID is 512 is a Domain Admin, and
    # one whose primary group is itself nested in Domain Admins or Administrators is one too.
    primary: dict[str, str] = {}
    frontier: list[str] = []
    domain_sid = ""
    for role, dn, sid, relative_to in protected_groups(session):
        role_of.setdefault(tuple(dn_parts(dn)), role)
        frontier.append(dn)
        if relative_to == "domain":
            domain_sid, rid = sid.rsplit("-", 1)
            primary[rid] = role
    groups = _nested_groups(session, role_of, primary, domain_sid, frontier)
    base_dn = session.settings.base_dn
    privileged: dict[str, str] = {}
    for index, clauses in enumerate(_any_member_of(groups)):
        if index == 0:
            clauses += "".join(f"(primaryGroupID={rid})" for rid in primary)
        for _, raw in session.search(base_dn, f"(&(objectCategory=person)(|{clauses}))",
                                     ["objectGUID", "memberOf", "primaryGroupID"]):
            role = first_role(raw, role_of) or primary.get(text(raw, "primaryGroupID") or "", "")
            if role:
                privileged.setdefault(key_of(raw), f"member of {role}")
    for _, raw in session.search(base_dn, "(&(objectCategory=person)(adminCount=1))", ["objectGUID"]):
        privileged.setdefault(key_of(raw), "adminCount=1: protected by AdminSDHolder")
    return privileged


def first_role(raw: Mapping[str, Any], role_of: Mapping[RDNs, str]) -> str:
    """The protected role an object holds through the first of its groups that leads to one."""
    for value in raw.get("memberOf", []):
        dn = value.decode() if isinstance(value, bytes) else str(value)
        with contextlib.suppress(ValueError):
            role = role_of.get(tuple(dn_parts(dn)))
            if role:
                return role
    return ""


def role_holders(session: ADSession, directory: str) -> list[RoleHolder]:
    """Everyone in the domain holding a protected group, for the access review (in-chain: complete, slow)."""
    domain = session.domain_dn()
    holders: list[RoleHolder] = []
    protected = protected_groups(session)
    domain_sid = next((s.rsplit("-", 1)[0] for _, _, s, of in protected if of == "domain"), "")
    for role, dn, sid, _ in protected:
        chain = f"(memberOf:{IN_CHAIN}:={escape_filter_chars(dn)})"
        # A primary group is in no `member` list: look for primaryGroupID naming the group, or
        # any group of this domain nested in it.
        sids = [sid] + [format_sid(raw["objectSid"][0]) for _, raw in
                        session.search(domain, f"(&(objectClass=group){chain})", ["objectSid"])
                        if raw.get("objectSid")]
        rids = "".join(f"(primaryGroupID={s.rsplit('-', 1)[1]})" for s in sids
                       if domain_sid and s.startswith(domain_sid + "-"))
        found = f"(&(objectCategory=person)(|{chain}{rids}))"
        for _, raw in session.search(domain, found, ["sAMAccountName", "displayName", "employeeID"]):
            holders.append(RoleHolder(directory, role, text(raw, "sAMAccountName") or "",
                                      text(raw, "displayName") or "", text(raw, "employeeID"),
                                      second_factor=AD_SECOND_FACTOR))
    return holders
