"""What each change sends to Graph and how the replies read: pure functions of the change, the account as the
snapshot read it and the settings (no I/O; tests/unit/test_entra_requests.py).

An account change is either `Decided` by the directory as read (already so, or refused before anything
is sent) or a `Send`: its requests, in order, and what their replies mean (`read_replies`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from idlifecycle.anchors import directory_anchor
from idlifecycle.connectors.base import failed_result
from idlifecycle.connectors.entra.graph import BatchRequest, GraphResponse
from idlifecycle.connectors.entra.session import write_refused
from idlifecycle.connectors.entra.settings import EntraSettings
from idlifecycle.connectors.entra.snapshot import EMPLOYEE_ID_LIMIT
from idlifecycle.model import Action, Change, Outcome, Result

PASSWORD_ACTIONS = (Action.SET_PASSWORD, Action.REQUIRE_PASSWORD_CHANGE)
HYBRID_WRITABLE = (Action.REVOKE_SESSIONS, Action.UPDATE)
"""What may change on an account Entra Connect synchronises from AD (an UPDATE only of what AD does not own)."""
PERMISSION_OF = {Action.CREATE_GROUP: "Group.Create", Action.ADD_MEMBER: "GroupMember.ReadWrite.All",
                 Action.REMOVE_MEMBER: "GroupMember.ReadWrite.All"}
"""The Graph application permission a refused write names (User.ReadWrite.All for the rest)."""
NAMES = {"given_name": "givenName", "surname": "surname", "display_name": "displayName"}


@dataclass(frozen=True)
class Decided:
    """A change the directory as read decides: nothing is sent."""

    outcome: Outcome
    detail: str = ""
    key: str | None = None


@dataclass(frozen=True)
class Send:
    """The requests one change sends, in order, and how its APPLIED Result reads."""

    requests: tuple[BatchRequest, ...]
    detail: str = ""
    key: str | None = None
    gone_is_already: bool = False
    """A 404 means the change is made already (a delete of an account that is gone)."""


Plan = Decided | Send
Handler = Callable[[Change, Mapping[str, Any], EntraSettings], Plan]
"""One account change's builder: (change, the account as read, settings) -> what to do."""


def send(*requests: BatchRequest, detail: str = "", key: str | None = None, gone_is_already: bool = False) -> Send:
    return Send(tuple(requests), detail, key, gone_is_already)


# account changes (the connector's HANDLERS) -------------------------------------------------------------
def adopt(change: Change, user: Mapping[str, Any], settings: EntraSettings) -> Plan:
    target = str(change.target)
    anchor = str(change.after.get("anchor") or change.person_id or "")
    if user.get("employeeId") == directory_anchor(anchor, EMPLOYEE_ID_LIMIT):
        return Decided(Outcome.ALREADY, key=target)
    return send(BatchRequest("PATCH", f"/users/{target}", anchor_fields(anchor, settings.full_id_attribute)),
                key=target)


def update(change: Change, user: Mapping[str, Any], settings: EntraSettings) -> Plan:
    body = update_body(change.after)
    if user.get("onPremisesSyncEnabled") and set(body) & {"givenName", "surname", "displayName",
                                                          *settings.attributes}:
        return hybrid_refusal(change, user)
    if all(same(user.get(k), v) for k, v in body.items()):
        return Decided(Outcome.ALREADY)
    return send(BatchRequest("PATCH", f"/users/{change.target}", body))


def rename(change: Change, user: Mapping[str, Any], settings: EntraSettings) -> Plan:
    login = str(change.after["login"])
    if str(user.get("userPrincipalName")) == login:
        return Decided(Outcome.ALREADY)
    body = {"userPrincipalName": login, "mailNickname": mail_nickname(str(change.after["username"]))}
    return send(BatchRequest("PATCH", f"/users/{change.target}", body))


def enable(change: Change, user: Mapping[str, Any], settings: EntraSettings) -> Plan:
    if user.get("accountEnabled"):
        return Decided(Outcome.ALREADY)
    return send(BatchRequest("PATCH", f"/users/{change.target}", {"accountEnabled": True}))


def disable(change: Change, user: Mapping[str, Any], settings: EntraSettings) -> Plan:
    if user.get("accountEnabled") is False:
        return Decided(Outcome.ALREADY)
    return send(BatchRequest("PATCH", f"/users/{change.target}", {"accountEnabled": False}),
                BatchRequest("POST", f"/users/{change.target}/revokeSignInSessions"))


def delete(change: Change, user: Mapping[str, Any], settings: EntraSettings) -> Plan:
    return send(BatchRequest("DELETE", f"/users/{change.target}"), gone_is_already=True)


def set_password(change: Change, user: Mapping[str, Any], settings: EntraSettings) -> Plan:
    if not change.password:
        return Decided(Outcome.FAILED, "no password was given to set")
    profile = {"password": change.password,
               "forceChangePasswordNextSignIn": bool(change.after.get("must_change_password", True))}
    return send(BatchRequest("PATCH", f"/users/{change.target}", {"passwordProfile": profile}))


def require_password_change(change: Change, user: Mapping[str, Any], settings: EntraSettings) -> Plan:
    return send(BatchRequest("PATCH", f"/users/{change.target}",
                             {"passwordProfile": {"forceChangePasswordNextSignIn": True}}))


def revoke_sessions(change: Change, user: Mapping[str, Any], settings: EntraSettings) -> Plan:
    return send(BatchRequest("POST", f"/users/{change.target}/revokeSignInSessions"))


def missing_account(change: Change, in_recycle_bin: bool) -> Plan:
    """A change to an account the snapshot does not hold: gone already, restorable, or a failure."""
    target = str(change.target or "")
    if in_recycle_bin and change.action is Action.DELETE:
        return Decided(Outcome.ALREADY, "already in the recycle bin")
    if in_recycle_bin and change.action is Action.ENABLE:
        return send(BatchRequest("POST", f"/directory/deletedItems/{target}/restore"),
                    BatchRequest("PATCH", f"/users/{target}", {"accountEnabled": True}),
                    detail="restored from the recycle bin and enabled")
    if change.action is Action.DELETE:
        return Decided(Outcome.ALREADY, "no such account")
    return Decided(Outcome.FAILED, f"account {target} does not exist in Entra ID")


def hybrid_refusal(change: Change, user: Mapping[str, Any]) -> Decided:
    return Decided(Outcome.FAILED, f"{user.get('userPrincipalName')} is synchronised from on-premises Active "
                   f"Directory by Entra Connect: make this change ({change.action}) in AD, not in Entra ID")


# replies ------------------------------------------------------------------------------------------------
def read_replies(change: Change, plan: Send, replies: Sequence[GraphResponse], *, lost: bool) -> Result:
    """A Send's Result from Graph's answers; `lost`: a reply to one of its requests was lost before a resend."""
    failed = next((r for r in replies if not r.ok), None)
    if failed is None:
        return Result(change.change_id, Outcome.APPLIED, plan.detail, key=plan.key)
    if plan.gone_is_already and failed.status == 404:
        if lost:  # our own delete, whose reply was lost, landed
            return Result(change.change_id, Outcome.APPLIED, "applied; the reply to it was lost", key=plan.key)
        return Result(change.change_id, Outcome.ALREADY, "no such account", key=plan.key)
    return write_failure(change, failed)


def write_failure(change: Change, response: GraphResponse) -> Result:
    """Graph's refusal of a change's write as its FAILED Result (what it means: session.REFUSALS)."""
    password_role = (" and the User Administrator role to change passwords" if change.action in PASSWORD_ACTIONS
                     else "")
    return failed_result(change, write_refused(response, PERMISSION_OF.get(change.action, "User.ReadWrite.All"),
                                               password_role))


def read_back_url(request: BatchRequest) -> str | None:
    """For a PATCH whose reply was lost: the GET that tells whether it landed (None: it cannot tell).

    PATCHes are idempotent in effect, but sent twice they are two writes (and two audit-worthy
    changes in the directory's own log): "nothing is done twice". A password cannot be read back,
    nor can a nested value be compared.
    """
    body = request.body
    if request.method != "PATCH" or not isinstance(body, dict) or not body or "passwordProfile" in body \
            or any(isinstance(v, dict | list) for v in body.values()):
        return None
    return f"{request.url}?$select=id,{','.join(sorted(body))}"


def landed(request: BatchRequest, found: GraphResponse) -> bool:
    """Whether the object read back holds every property the PATCH set."""
    return found.ok and isinstance(found.body, dict) and isinstance(request.body, dict) and all(
        same(found.body.get(k), v) for k, v in request.body.items())


# bodies -------------------------------------------------------------------------------------------------
def update_body(after: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {theirs: after[ours] for ours, theirs in NAMES.items() if ours in after}
    for name, value in dict(after.get("attributes") or {}).items():
        body[name] = value or None
    if "password_never_expires" in after:
        body["passwordPolicies"] = "DisablePasswordExpiration" if after["password_never_expires"] else "None"
    return body


def anchor_fields(person_id: str, full_id_attribute: str) -> dict[str, Any]:
    """What a create or adopt writes to anchor an account to `person_id`."""
    anchor = directory_anchor(person_id, EMPLOYEE_ID_LIMIT)
    fields: dict[str, Any] = {"employeeId": anchor}
    if anchor != person_id and full_id_attribute:
        fields["onPremisesExtensionAttributes"] = {full_id_attribute: person_id}
    return fields


def profile_of(after: Mapping[str, Any]) -> dict[str, Any]:
    """A create's names and attributes, as an UPDATE would write them."""
    return update_body({"given_name": after.get("given_name"), "surname": after.get("surname"),
                        "display_name": after.get("display_name"), "attributes": after.get("attributes") or {}})


def create_requests(change: Change, settings: EntraSettings, password: str) -> list[BatchRequest]:
    """A new account in one POST (anchor, usage location, password to change at first sign-in), then its
    direct licence when `assign_licences` names one for its kind."""
    after = change.after
    login = str(after["login"])
    body = {k: v for k, v in profile_of(after).items() if v is not None}
    body.update({
        "accountEnabled": bool(after.get("enabled", True)), "userPrincipalName": login,
        "mailNickname": mail_nickname(str(after.get("username") or login.split("@")[0])),
        **anchor_fields(person_of(change), settings.full_id_attribute), "usageLocation": settings.usage_location,
        "passwordProfile": {"password": password,
                            "forceChangePasswordNextSignIn": bool(after.get("must_change_password", True))},
    })
    requests = [BatchRequest("POST", "/users", body)]
    skus = licences_for(login, settings)
    if skus:
        requests.append(BatchRequest("POST", f"/users/{quote(login)}/assignLicense", licence_body(skus)))
    return requests


def restore_requests(change: Change, deleted: str) -> list[BatchRequest]:
    """A leaver's account back from the recycle bin, with the names the plan wants."""
    body = {**profile_of(change.after), "userPrincipalName": str(change.after["login"]),
            "accountEnabled": bool(change.after.get("enabled", True))}
    return [BatchRequest("POST", f"/directory/deletedItems/{deleted}/restore"),
            BatchRequest("PATCH", f"/users/{deleted}", body)]


def person_of(change: Change) -> str:
    return str(change.after.get("anchor") or change.person_id or "")


def licences_for(login: str, settings: EntraSettings) -> list[str]:
    """The SKUs `assign_licences` gives an account of the kind its domain tells."""
    domain = login.rsplit("@", 1)[-1].lower()
    kind = next((k for k, d in settings.domains.items() if d.lower() == domain), "")
    return settings.assign_licences.get(kind, [])


def licence_body(skus: Sequence[str]) -> dict[str, Any]:
    return {"addLicenses": [{"skuId": s, "disabledPlans": []} for s in skus], "removeLicenses": []}


def anchor_lookup(anchor: str) -> str:
    """The GET that finds accounts carrying an anchor (after a create's reply was lost)."""
    return f"/users?$filter={quote(f'employeeId eq {literal(anchor)}')}&$select=id,userPrincipalName,employeeId"


def group_body(name: str, marker: str) -> dict[str, Any]:
    return {"displayName": name, "description": marker, "mailEnabled": False, "securityEnabled": True,
            "mailNickname": mail_nickname(name) or "group"}


def group_lookup(name: str) -> str:
    return f"/groups?$filter={quote(f'displayName eq {literal(name)}')}&$select=id,description"


def add_members(graph_url: str, group: str, members: Sequence[str]) -> BatchRequest:
    """Up to 20 members in one PATCH (`members@odata.bind`)."""
    return BatchRequest("PATCH", f"/groups/{group}",
                        {"members@odata.bind": [f"{graph_url}/directoryObjects/{m}" for m in members]})


def add_member(graph_url: str, group: str, member: str) -> BatchRequest:
    return BatchRequest("POST", f"/groups/{group}/members/$ref",
                        {"@odata.id": f"{graph_url}/directoryObjects/{member}"})


def remove_member(group: str, member: str) -> BatchRequest:
    return BatchRequest("DELETE", f"/groups/{group}/members/{member}/$ref")


def same(current: Any, wanted: Any) -> bool:
    if wanted in (None, "") and current in (None, ""):
        return True
    if isinstance(wanted, str) and wanted == "None" and current in (None, "", "None"):
        return True
    return bool(current == wanted)


def literal(value: str) -> str:
    """A string literal for an OData $filter (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def mail_nickname(name: str) -> str:
    """Graph's mailNickname refuses spaces and most punctuation."""
    return re.sub(r"[^A-Za-z0-9._-]", "", name)[:64]
