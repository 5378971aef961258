"""Pure request builders: a Change (and the object as the DC holds it now) -> the ldap3 add or modify to
send. No LDAP here, so every rule of what is written is unit-tested (tests/unit/test_ad_requests.py).

Neutral names map to AD's: `container` "Pupils/Year 7" is `OU=Year 7,OU=Pupils,<base_dn>`, `jobTitle`
is `title`; a person id longer than employeeID holds is written as its short anchor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ldap3
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from idlifecycle.anchors import directory_anchor
from idlifecycle.connectors.ad.dn import checked_key, text
from idlifecycle.connectors.ad.settings import ADSettings
from idlifecycle.connectors.base import ConnectorError
from idlifecycle.model import Change

UAC_DISABLED = 0x2
UAC_NORMAL_ACCOUNT = 0x200
UAC_DONT_EXPIRE_PASSWORD = 0x10000
GLOBAL_SECURITY_GROUP = -2147483646
EMPLOYEE_ID_LIMIT = 16
"""employeeID's rangeUpper (MS-ADA1 "Employee-ID"): a longer person id is written as its short anchor
(idlifecycle.anchors), resolved back to the full id by the job from the ids it knows."""
SAM_GROUP_LIMIT = 64
_GROUP_NAME_FORBIDDEN = re.compile(r'["/\\\[\]:;|=,+*?<>@]')
"""Characters sAMAccountName may not hold (learn.microsoft.com, "sAMAccountName attribute")."""

ATTRIBUTE_NAMES = {
    "department": "department",
    "jobTitle": "title",
    "employeeType": "employeeType",
    "company": "company",
    "office": "physicalDeliveryOfficeName",
    "description": "description",
    "employeeNumber": "employeeNumber",
}
"""Neutral attribute names the mapping uses -> AD attribute; other names are used as they are."""

ACCOUNT_ATTRIBUTES = [
    "objectGUID", "sAMAccountName", "userPrincipalName", "givenName", "sn", "displayName", "employeeID",
    "userAccountControl", "pwdLastSet", "whenCreated", "lastLogonTimestamp", "objectClass",
]
NAME_FIELDS = (("given_name", "givenName"), ("surname", "sn"), ("display_name", "displayName"))

Modification = dict[str, list[tuple[str, list[Any]]]]
"""ldap3's `changes` argument of `modify`."""


@dataclass(frozen=True)
class AddRequest:
    """An ldap3 `add`: the new object's DN, classes and attributes."""

    dn: str
    object_class: tuple[str, ...]
    attributes: Mapping[str, Any]


def ldap_name(neutral: str) -> str:
    return ATTRIBUTE_NAMES.get(neutral, neutral)


def anchor_value(person_id: Any) -> str | None:
    """employeeID for a person id: the id itself, or its short anchor when longer than employeeID holds."""
    return directory_anchor(str(person_id), EMPLOYEE_ID_LIMIT) if person_id else None


def password_value(password: str) -> bytes:
    """unicodePwd: the password in double quotes, UTF-16LE (MS-ADTS 3.1.1.3.1.5)."""
    return f'"{password}"'.encode("utf-16-le")


def container_path(base_dn: str, container: str) -> list[tuple[str, str]]:
    """(DN, OU name) of each OU from base_dn down to a neutral path's last one."""
    steps, dn = [], base_dn
    for name in (part.strip() for part in container.split("/") if part.strip()):
        dn = f"OU={escape_rdn(name)},{dn}"
        steps.append((dn, name))
    return steps


def container_dn(base_dn: str, container: str) -> str:
    steps = container_path(base_dn, container)
    return steps[-1][0] if steps else base_dn


def login_for(settings: ADSettings, username: str, login: str | None) -> str:
    """The userPrincipalName: the change's login, or username@upn_suffix."""
    if login:
        return login
    if not settings.upn_suffix:
        raise ConnectorError(f"{username}: the change has no login and upn_suffix is not configured")
    return f"{username}@{settings.upn_suffix}"


def created_enabled(change: Change) -> bool:
    """An account without a password is created disabled: nobody could sign in to it anyway."""
    return bool(change.after.get("enabled", True)) and change.password is not None


def account_add(change: Change, settings: ADSettings, parent: str) -> AddRequest:
    """The add for a new account under the OU `parent` (empty values left out)."""
    after = change.after
    username = str(after["username"])
    login = login_for(settings, username, after.get("login"))
    values: dict[str, Any] = {
        "sAMAccountName": username, "userPrincipalName": login, "givenName": after.get("given_name"),
        "sn": after.get("surname"), "displayName": after.get("display_name"),
        "employeeID": anchor_value(after.get("anchor")),
        "userAccountControl": UAC_NORMAL_ACCOUNT | (0 if created_enabled(change) else UAC_DISABLED),
    }
    if settings.mail_from_login:
        values["mail"] = login
    if settings.home_directory:
        values["homeDirectory"] = settings.home_directory.format(username=username)
        if settings.home_drive:
            values["homeDrive"] = settings.home_drive
    for neutral, value in dict(after.get("attributes") or {}).items():
        values[ldap_name(neutral)] = value
    if change.password is not None:
        values["unicodePwd"] = password_value(change.password)
        if after.get("must_change_password"):
            values["pwdLastSet"] = 0
    return AddRequest(f"CN={escape_rdn(username)},{parent}", ("top", "person", "organizationalPerson", "user"),
                      {k: v for k, v in values.items() if v not in (None, "")})


def group_add(name: str, parent: str) -> AddRequest:
    """A global security group; its sAMAccountName is the name with the characters AD refuses replaced."""
    sam = _GROUP_NAME_FORBIDDEN.sub("_", name)[:SAM_GROUP_LIMIT]
    return AddRequest(f"CN={escape_rdn(name)},{parent}", ("top", "group"),
                      {"sAMAccountName": sam, "groupType": GLOBAL_SECURITY_GROUP,
                       "description": "managed by idlifecycle"})


def replacing(values: Mapping[str, Any]) -> Modification:
    """A modify replacing each attribute; None or "" clears it."""
    return {name: [(ldap3.MODIFY_REPLACE, [] if value in (None, "") else [value])] for name, value in values.items()}


def update_values(change: Change, current: Mapping[str, Any]) -> dict[str, Any]:
    """What an update must replace on the object as it is now ({} when it is already so)."""
    wanted: dict[str, Any] = {}
    for field_name, attribute in NAME_FIELDS:
        if field_name in change.after:
            wanted[attribute] = change.after[field_name] or None
    for neutral, value in dict(change.after.get("attributes") or {}).items():
        wanted[ldap_name(neutral)] = value or None
    values = {name: value for name, value in wanted.items() if text(current, name) != value}
    if change.after.get("password_never_expires") is False:
        uac = int(text(current, "userAccountControl") or UAC_NORMAL_ACCOUNT)
        if uac & UAC_DONT_EXPIRE_PASSWORD:
            values["userAccountControl"] = str(uac & ~UAC_DONT_EXPIRE_PASSWORD)
    return values


def update_reads(change: Change) -> list[str]:
    """The extra attributes an update compares (the mapped ones it sets)."""
    return [ldap_name(a) for a in dict(change.after.get("attributes") or {})]


def rename_values(settings: ADSettings, current: Mapping[str, Any], username: str, login: str) -> dict[str, Any]:
    """The sign-in names a rename must replace ({} when they are already so)."""
    values: dict[str, Any] = {}
    if text(current, "sAMAccountName") != username:
        values["sAMAccountName"] = username
    if text(current, "userPrincipalName") != login:
        values["userPrincipalName"] = login
        if settings.mail_from_login:
            values["mail"] = login
    return values


def with_enabled(uac: int, enabled: bool) -> int:
    """userAccountControl with the ACCOUNTDISABLE bit cleared (enabled) or set."""
    return uac & ~UAC_DISABLED if enabled else uac | UAC_DISABLED


def membership(adding: bool, member_dns: Sequence[str]) -> Modification:
    """One modify adding (or removing) every DN to a group's `member`."""
    return {"member": [(ldap3.MODIFY_ADD if adding else ldap3.MODIFY_DELETE, sorted(set(member_dns)))]}


def still_to_do(batch: Sequence[Change], members: set[str], adding: bool) -> tuple[list[Change], list[Change]]:
    """(already so, still to send) of a group's membership changes, by the members it has now."""
    already: list[Change] = []
    wanted: list[Change] = []
    for change in batch:
        done = bool(change.target) and (checked_key(change.target or "") in members) == adding
        (already if done else wanted).append(change)
    return already, wanted


def names_filter(usernames: Sequence[str]) -> str:
    """One filter finding every account with one of these sAMAccountNames."""
    return "(|" + "".join(f"(sAMAccountName={escape_filter_chars(name)})" for name in usernames) + ")"
