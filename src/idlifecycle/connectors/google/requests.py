"""Pure request builders: a Change (and what was read about its object) -> the Directory API calls to
send, and how a refusal of each kind of call is read. No HTTP here: the session sends the requests.

The anchor is written as an `externalIds` entry of type "organization" (the Admin console's
"Employee ID"); the mapped attributes go to the user's primary `organizations` entry. Google replaces
a list it is sent whole, so a patch of either keeps the entries the tool does not own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from idlifecycle.connectors.base import ConnectorError, Waiting
from idlifecycle.model import Change

ATTRIBUTES = {"department": "department", "jobTitle": "title", "employeeType": "description",
              "costCenter": "costCenter"}
"""Account attribute -> field of the user's primary `organizations` entry (the Admin console's
"Employee information": Department, Job title, Type of employee, Cost centre)."""

ANCHOR_TYPE = "organization"
"""externalIds type the anchor is written under (the Admin console's "Employee ID")."""

Current = Callable[[], Mapping[str, Any]]
"""Reads the user's externalIds and organizations as they are (only called when a patch needs them)."""


@dataclass(frozen=True)
class Request:
    """One Directory API call for one change, not yet sent."""

    method: str
    """The API method, e.g. "users.patch" (Session.METHODS sends it)."""
    params: Mapping[str, Any]
    kind: str
    """What the call does, for choosing how 404/409 and lost answers are read."""
    lookup: str = ""
    """For inserts: the address to look up when the answer is lost or says duplicate."""
    anchor: str | None = None
    refs: tuple[str, ...] = ()
    """Keys of the objects the call names (user id or address, group id): a 404 about one created
    this run, moments ago, is Google still propagating it, not the object being gone."""


INSERTS = frozenset({"insert-user", "insert-group"})

ALREADY_WHEN = {("insert-member", "conflict"): "already a member", ("delete-member", "not-found"): "already gone",
                ("delete-user", "not-found"): "already gone"}
"""(kind of call, verdict of Google's refusal) -> the refusal means the change is already so."""


def already_so(kind: str, verdict: str) -> str:
    """Why a refusal of this kind of call means the wanted state holds ("" when it does not)."""
    return ALREADY_WHEN.get((kind, verdict), "")


# -- paths --

def org_unit_path(root: str, container: str) -> str:
    """The org unit path of a neutral container under the managed root."""
    container = container.strip("/")
    return root if not container else f"{root.rstrip('/')}/{container}"


def container_of(root: str, org_unit_path: str) -> str | None:
    """The neutral container of an org unit path, or None when outside the managed root."""
    root, path = root.lower(), org_unit_path.lower()
    if root == "/" or path == root:
        return org_unit_path.strip("/") if root == "/" else ""
    if path.startswith(root + "/"):
        return org_unit_path[len(root) + 1:]
    return None


# -- users --

def patch(key: str, body: Mapping[str, Any]) -> Request:
    return Request("users.patch", {"userKey": key, "body": dict(body), "fields": "id"}, "patch", refs=(key.lower(),))


def sign_out(key: str) -> Request:
    return Request("users.signOut", {"userKey": key}, "sign-out", refs=(key.lower(),))


def delete_user(key: str) -> Request:
    return Request("users.delete", {"userKey": key}, "delete-user", refs=(key.lower(),))


def check_attributes(attributes: Mapping[str, Any], hint: str = "") -> None:
    unknown = sorted(set(attributes) - set(ATTRIBUTES))
    if unknown:
        raise ConnectorError(f"Google has no place for the attributes {', '.join(unknown)}{hint}")


def create_user(change: Change, domains: tuple[str, ...], org_unit: str, password: str) -> Request:
    """users.insert for a CREATE; `password` is the change's, or a throw-away one when it has none."""
    after = change.after
    login = str(after.get("login") or "")
    anchor = str(after.get("anchor") or change.person_id or "")
    if "@" not in login or login.partition("@")[2].lower() not in domains:
        raise ConnectorError(f"cannot create {login!r}: the address must be in one of the managed domains "
                             f"({', '.join(domains)})")
    if not anchor:
        raise ConnectorError(f"cannot create {login}: no anchor (person id) to write on it")
    attributes = after.get("attributes") or {}
    check_attributes(attributes, f"; the mapping for this directory may use only {', '.join(ATTRIBUTES)}")
    body: dict[str, Any] = {
        "primaryEmail": login,
        "name": {"givenName": str(after.get("given_name", "")), "familyName": str(after.get("surname", "")),
                 **({"displayName": str(after["display_name"])} if after.get("display_name") else {})},
        "password": password,
        # With no password from the tool, nobody knows the throw-away one: a change is the only way in.
        "changePasswordAtNextLogin": bool(after.get("must_change_password", False)) or change.password is None,
        "orgUnitPath": org_unit,
        "externalIds": [{"type": ANCHOR_TYPE, "value": anchor}],
        "suspended": not bool(after.get("enabled", True)),
    }
    if attributes:
        body["organizations"] = [{"primary": True, **{ATTRIBUTES[k]: str(v) for k, v in attributes.items()}}]
    return Request("users.insert", {"body": body, "fields": "id,primaryEmail"}, "insert-user",
                   lookup=login, anchor=anchor)


def adopt(key: str, anchor: str, current: Current) -> Request:
    """Our anchor set on the user, keeping its ids of other types (Google replaces the list)."""
    kept = [e for e in current()["externalIds"] if e.get("type") != ANCHOR_TYPE]
    return patch(key, {"externalIds": [*kept, {"type": ANCHOR_TYPE, "value": anchor}]})


def update(key: str, after: Mapping[str, Any], current: Current) -> list[Request]:
    """The names and mapped attributes that changed (nothing to send when neither did)."""
    body: dict[str, Any] = {}
    name = {theirs: str(after[ours]) for ours, theirs in (("given_name", "givenName"), ("surname", "familyName"),
                                                          ("display_name", "displayName")) if ours in after}
    if name:
        body["name"] = name
    if after.get("attributes"):
        body["organizations"] = organizations(after["attributes"], current)
    return [patch(key, body)] if body else []


def organizations(attributes: Mapping[str, Any], current: Current) -> list[dict[str, Any]]:
    """The user's organizations with the mapped attributes set on the primary one (made if missing)."""
    check_attributes(attributes)
    organisations = [dict(o) for o in current()["organizations"]]
    primary = next((o for o in organisations if o.get("primary")), None)
    if primary is None:
        primary = {"primary": True}
        organisations.insert(0, primary)
    for ours, value in attributes.items():
        primary[ATTRIBUTES[ours]] = str(value)
    return organisations


def rename(key: str, login: str) -> Request:
    if "@" not in login:
        raise ConnectorError(f"rename needs the new primary email, got {login!r}")
    return patch(key, {"primaryEmail": login})


def disable(key: str, leavers: str | None) -> list[Request]:
    """Suspended (and moved to the leavers' org unit when there is one), and signed out everywhere."""
    body: dict[str, Any] = {"suspended": True, **({"orgUnitPath": leavers} if leavers else {})}
    return [patch(key, body), sign_out(key)]


def set_password(key: str, change: Change) -> Request:
    if not change.password:
        raise ConnectorError("set-password arrived without a password; nothing was sent")
    return patch(key, {"password": change.password,
                       "changePasswordAtNextLogin": bool(change.after.get("must_change_password", False))})


# -- groups --

def group_address(name: str, group_domain: str) -> str:
    """A group name's address: itself when it is one, else its local part under group_domain."""
    local = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")
    return name if "@" in name else f"{local}@{group_domain}"


def create_group(name: str, group_domain: str, marker: str) -> Request:
    email = group_address(name, group_domain)
    body = {"email": email, "name": name.partition("@")[0] if "@" in name else name,
            "description": f"{marker} Kept in step with the school's records."}
    return Request("groups.insert", {"body": body, "fields": "id,email"}, "insert-group", lookup=email)


def add_member(group_key: str, key: str, email: str) -> Request:
    # Google wants the member's address, not its id.
    return Request("members.insert", {"groupKey": group_key, "body": {"email": email, "role": "MEMBER"},
                                      "fields": "id"}, "insert-member",
                   refs=(group_key.lower(), key.lower(), email.lower()))


def remove_member(group_key: str, key: str) -> Request:
    return Request("members.delete", {"groupKey": group_key, "memberKey": key}, "delete-member")


# -- leavers' data: the Data Transfer API --

DRIVE, CALENDAR = "Drive and Docs", "Calendar"
"""The applications a leaver's data is transferred from, by the names applications.list gives them."""

KNOWN_IDS = {"55656082996": DRIVE, "435070579839": CALENDAR}
"""Google's ids for the two, which are the same for every customer: found by id when a name differs."""

DRIVE_PRIVACY = [{"key": "PRIVACY_LEVEL", "value": ["SHARED", "PRIVATE"]}]
"""Drive's transfer parameter: the files shared with others and the private ones alike (Transfer
parameters, developers.google.com/workspace/admin/data-transfer/v1/parameters)."""

TRANSFER_DONE, TRANSFER_FAILED = "completed", "failed"


def application_ids(applications: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Drive's and Calendar's ids from applications.list; ConnectorError naming the one missing."""
    by_name = {KNOWN_IDS.get(str(a.get("id")), str(a.get("name", ""))): str(a.get("id", "")) for a in applications}
    missing = [name for name in (DRIVE, CALENDAR) if not by_name.get(name)]
    if missing:
        raise ConnectorError(f"Google's Data Transfer API lists no {' or '.join(missing)} application for this "
                             "customer, so leavers' data cannot be transferred; the delete was not sent")
    return {DRIVE: by_name[DRIVE], CALENDAR: by_name[CALENDAR]}


def transfer_body(old_owner: str, new_owner: str, applications: Mapping[str, str]) -> dict[str, Any]:
    """transfers.insert's body: the leaver's Drive (shared and private files) and Calendar to new_owner."""
    return {"oldOwnerUserId": old_owner, "newOwnerUserId": new_owner, "applicationDataTransfers": [
        {"applicationId": applications[DRIVE], "applicationTransferParams": DRIVE_PRIVACY},
        {"applicationId": applications[CALENDAR]}]}


def existing_transfer(transfers: Sequence[Mapping[str, Any]], old_owner: str,
                      new_owner: str) -> Mapping[str, Any] | None:
    """The latest transfer of old_owner's data to new_owner (None when there is none): never start a second."""
    mine = [t for t in transfers if t.get("oldOwnerUserId") == old_owner and t.get("newOwnerUserId") == new_owner]
    return max(mine, key=lambda t: str(t.get("requestTime", "")), default=None)


def after_transfer(transfer: Mapping[str, Any], key: str, new_owner_email: str) -> list[Request]:
    """The delete once the transfer has completed; `Waiting` while it is new or in progress (the account
    stays, suspended, and the next run asks again); ConnectorError, not retryable, when it failed."""
    status = str(transfer.get("overallTransferStatusCode", ""))
    named = f"Data Transfer {transfer.get('id')} of {key}'s Drive and Calendar to {new_owner_email}"
    if status == TRANSFER_DONE:
        return [delete_user(key)]
    if status == TRANSFER_FAILED:
        raise ConnectorError(f"{named} failed, so the account was not deleted (it stays suspended): look at the "
                             "transfer in the Admin console (Data migration > Transfer ownership), transfer the "
                             "data by hand, then delete the account")
    raise Waiting(f"the delete waits for {named} ({status or 'no status'}); the account stays suspended and "
                  "the next run deletes it once the transfer has completed")
