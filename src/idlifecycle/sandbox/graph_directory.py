"""The Graph emulator's directory: users, groups, roles, the recycle bin and the delta log.

Pure in-memory state behind one lock, answering Graph-shaped requests as
`(status, headers, body)`; the HTTP layer (`graph.py`) adds sockets, tokens, batching, throttling
and faults. Graph's rules that a client can notice are kept: required properties on create,
duplicate-UPN conflicts, verified domains, the cloud password policy, read-only synced attributes,
20 members per `members@odata.bind`, soft delete and restore, delta with `@removed`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from idlifecycle.sandbox.files import write_atomically

Json = dict[str, Any]
Reply = tuple[int, dict[str, str], Any]

DEFAULT_USER_PROPERTIES = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
    "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id",
)
SYNCED_USER_PROPERTIES = frozenset({
    "givenName", "surname", "displayName", "userPrincipalName", "accountEnabled", "employeeId",
    "department", "jobTitle", "employeeType", "mailNickname", "mail", "passwordProfile",
    "companyName", "officeLocation", "onPremisesExtensionAttributes",
})
"""Attributes Entra Connect owns on a synced user: Graph refuses to write them (onPremisesExtensionAttributes:
"for an onPremisesSyncEnabled user, the source of authority for this set of properties is the on-premises
and is read-only", https://learn.microsoft.com/en-us/graph/api/resources/onpremisesextensionattributes)."""
EXTENSION_ATTRIBUTE_NAMES = frozenset(f"extensionAttribute{n}" for n in range(1, 16))
EXTENSION_ATTRIBUTE_LIMIT = 1024
"""onPremisesExtensionAttributes holds extensionAttribute1-15, each of at most 1,024 characters
(https://learn.microsoft.com/en-us/graph/api/resources/onpremisesextensionattributes); an update
sets only the attributes it names, and null clears one (the user-update example)."""
WRITABLE_USER_PROPERTIES = SYNCED_USER_PROPERTIES | {"usageLocation", "passwordPolicies", "preferredLanguage"}
PASSWORD_SYMBOLS = set("@#$%^&*-_!+=[]{}|\\:',.?/`~\"();<> ")
MEMBER_BIND_LIMIT = 20
USER_PROPERTY_LIMITS: dict[str, int] = {
    "employeeId": 16, "mailNickname": 64, "displayName": 256, "givenName": 64, "surname": 64,
    "department": 64, "jobTitle": 128, "companyName": 64,
}
"""Maximum lengths Graph enforces on user properties (https://learn.microsoft.com/en-us/graph/api/resources/user,
each property's description; companyName: microsoft-graph-docs#7979). Over one, a create or update is
refused whole: 400 Request_BadRequest "Invalid value specified for property '…' of resource 'User'."."""
ROLE_GROUP_NESTING = "Nesting is currently not supported for groups that can be assigned to a role."
"""A role-assignable group (`isAssignableToRole`) holds users and service principals only: "Group nesting
isn't supported. A group can't be added as a member of a role-assignable group"
(https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/groups-concept); Graph's
message as reported in MicrosoftDocs/azure-docs#88710. Only such a group can hold a directory role."""
ROLE_GROUP_MEMBERS_PERMISSION = "RoleManagement.ReadWrite.Directory"
"""Adding or removing members of a role-assignable group needs this permission; Group.ReadWrite.All or
GroupMember.ReadWrite.All "won't work" (same page; microsoft-graph-docs#15815)."""
PAGE_DEFAULT = 100
PAGE_MAX = 999
CURSOR_TTL_SECONDS = 600
DELTA_TOKEN_TTL_SECONDS = 7 * 24 * 3600.0
"""Delta links for identity resources live seven days; an older one is a 400 syncStateNotFound
(https://devblogs.microsoft.com/microsoft365dev/duration-of-change-tracking-tokens-for-identity-and-education-resources/)."""

# Which application permissions (any one of the tuple) allow an operation, as Graph's docs list them.
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "users.read": ("User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"),
    "users.write": ("User.ReadWrite.All", "Directory.ReadWrite.All"),
    "users.signins": ("AuditLog.Read.All",),
    "groups.read": ("GroupMember.Read.All", "GroupMember.ReadWrite.All", "Group.Read.All", "Group.ReadWrite.All",
                    "Directory.Read.All", "Directory.ReadWrite.All"),
    "groups.members": ("GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"),
    "groups.create": ("Group.Create", "Group.ReadWrite.All", "Directory.ReadWrite.All"),
    "licences": ("LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"),
    "roles.read": ("RoleManagement.Read.Directory", "RoleManagement.ReadWrite.Directory", "Directory.Read.All",
                   "Directory.ReadWrite.All"),
    # PIM's own list: not Directory.Read.All (rbacapplication-list-roleeligibilityscheduleinstances, Permissions).
    "roles.eligible": ("RoleEligibilitySchedule.Read.Directory", "RoleEligibilitySchedule.ReadWrite.Directory",
                       "RoleManagement.Read.All", "RoleManagement.Read.Directory",
                       "RoleManagement.ReadWrite.Directory"),
}


class GraphError(Exception):
    """Becomes Graph's error body: {"error": {"code", "message", "innerError"}}."""

    def __init__(self, status: int, code: str, message: str, details: list[Json] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = dict(headers or {})

    def reply(self) -> Reply:
        error: Json = {"code": self.code, "message": self.message,
                       "innerError": {"date": now_iso(), "request-id": str(uuid.uuid4()),
                                      "client-request-id": str(uuid.uuid4())}}
        if self.details:
            error["details"] = self.details
        return self.status, self.headers, {"error": error}


def service_principal_id(app_id: str) -> str:
    """The object id of an app's service principal in this tenant (the `oid` of its tokens)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, app_id))


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def not_found(what: str) -> GraphError:
    return GraphError(404, "Request_ResourceNotFound",
                      f"Resource '{what}' does not exist or one of its queried reference-property objects "
                      "are not present.")


def bad_request(message: str, code: str = "Request_BadRequest", details: list[Json] | None = None) -> GraphError:
    return GraphError(400, code, message, details)


def password_is_complex(password: str) -> bool:
    """Entra's cloud rule: 8-256 characters, 3 of 4 classes, only ASCII letters/digits/listed symbols."""
    if not 8 <= len(password) <= 256:
        return False
    if any(not (c.isascii() and (c.isalnum() or c in PASSWORD_SYMBOLS)) for c in password):
        return False
    classes = [any(c.islower() for c in password), any(c.isupper() for c in password),
               any(c.isdigit() for c in password), any(c in PASSWORD_SYMBOLS for c in password)]
    return sum(classes) >= 3


def _odata_literal(raw: str) -> Any:
    raw = raw.strip()
    if raw.startswith("'") and raw.endswith("'"):
        return raw[1:-1].replace("''", "'")
    if raw in ("true", "false"):
        return raw == "true"
    if raw == "null":
        return None
    raise bad_request(f"Invalid filter clause: unsupported literal {raw}.", "BadRequest")


_CLAUSE_EQ = re.compile(r"^\s*(\w+)\s+(eq|ne)\s+(.+?)\s*$")
_CLAUSE_STARTS = re.compile(r"^\s*startswith\(\s*(\w+)\s*,\s*('(?:[^']|'')*')\s*\)\s*$", re.IGNORECASE)
_CLAUSE_IN = re.compile(r"^\s*(\w+)\s+in\s+\((.*)\)\s*$")
_CLAUSE_SIGN_IN = re.compile(r"^\s*signInActivity/(lastSignInDateTime|lastNonInteractiveSignInDateTime)\s+(ge|le)\s+"
                             r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)\s*$")
SIGN_IN_FILTER = "https://learn.microsoft.com/en-us/graph/api/resources/user (signInActivity)"
"""signInActivity: "Supports $filter (eq, ne, not, ge, le) but not with any other filterable properties"."""


def compile_filter(expression: str) -> list[tuple[str, str, Any]]:
    """`a eq 'x' and startswith(b,'y') and c in ('p','q')` -> clauses; anything else is a 400."""
    clauses: list[tuple[str, str, Any]] = []
    parts = re.split(r"\s+and\s+", expression.strip())
    for part in parts:
        if match := _CLAUSE_SIGN_IN.match(part):
            if len(parts) > 1:  # SIGN_IN_FILTER: not with any other filterable property
                raise bad_request("Invalid filter clause: signInActivity cannot be combined with other properties.",
                                  "BadRequest")
            clauses.append(("signInActivity/" + match.group(1), match.group(2),
                            datetime.fromisoformat(match.group(3).replace("Z", "+00:00"))))
        elif match := _CLAUSE_STARTS.match(part):
            clauses.append((match.group(1), "startswith", _odata_literal(match.group(2))))
        elif match := _CLAUSE_IN.match(part):
            values = [_odata_literal(v) for v in re.findall(r"'(?:[^']|'')*'", match.group(2))]
            clauses.append((match.group(1), "in", values))
        elif match := _CLAUSE_EQ.match(part):
            clauses.append((match.group(1), match.group(2), _odata_literal(match.group(3))))
        else:
            raise bad_request(f"Invalid filter clause: {part}", "BadRequest")
    return clauses


def _fold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def matches(obj: Mapping[str, Any], clauses: list[tuple[str, str, Any]]) -> bool:
    for prop, op, value in clauses:
        if prop.startswith("signInActivity/"):
            stamp = (obj.get("signInActivity") or {}).get(prop.partition("/")[2])
            if not stamp:
                return False  # never signed in: neither ge nor le a date
            moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
            if (op == "ge" and moment < value) or (op == "le" and moment > value):
                return False
            continue
        actual = _fold(obj.get(prop))
        if op == "eq" and actual != _fold(value):
            return False
        if op == "ne" and actual == _fold(value):
            return False
        if op == "startswith" and not (isinstance(actual, str) and actual.startswith(_fold(value))):
            return False
        if op == "in" and actual not in [_fold(v) for v in value]:
            return False
    return True


def project(obj: Mapping[str, Any], select: list[str] | None, defaults: Iterable[str]) -> Json:
    names = select or list(defaults)
    out: Json = {"id": obj["id"]}
    for name in names:
        if name == "passwordProfile":
            out[name] = None  # Graph never returns passwords
        elif not name.startswith("_"):
            value = obj.get(name)
            out[name] = copy.deepcopy(value) if isinstance(value, list | dict) else value
    return out


class Directory:
    """One tenant's directory. Every public method takes the lock; replies are plain JSON values."""

    def __init__(self, state: Json) -> None:
        self.lock = threading.RLock()
        self.state = state
        self.dirty = False
        self.cursors: dict[str, Json] = {}
        self._upns: dict[str, str] | None = None
        self._proxies: dict[str, str] | None = None
        self.base_url = "https://graph.microsoft.com/v1.0"
        self.delta_token_ttl = DELTA_TOKEN_TTL_SECONDS

    # construction and persistence -------------------------------------------------------------
    @classmethod
    def empty(cls, tenant_id: str, domains: Iterable[str]) -> Directory:
        return cls({
            "format": 1, "epoch": secrets.token_hex(4), "seq": 0, "min_delta_seq": 0,
            "tenant_id": tenant_id, "domains": sorted(domains), "applications": {},
            "users": {}, "deleted": {}, "groups": {}, "tombstones": {}, "member_log": [],
            "roles": {}, "skus": [],
        })

    @classmethod
    def from_seed(cls, seed: Mapping[str, Any]) -> Directory:
        """Build from the seed format documented in `idlifecycle.sandbox.graph`."""
        upns = [str(u["userPrincipalName"]) for u in seed.get("users", [])]
        domains = seed.get("domains") or sorted({u.split("@", 1)[1].lower() for u in upns})
        directory = cls.empty(str(seed.get("tenant_id", "sandbox-tenant")), domains)
        state = directory.state
        state["skus"] = list(seed.get("subscribedSkus", []))
        state["premium"] = bool(seed.get("premium", False))
        state["pim"] = bool(seed.get("pim", False))
        by_upn: dict[str, str] = {}
        for raw in seed.get("users", []):
            user = directory._new_user_record(dict(raw))
            state["users"][user["id"]] = user
            by_upn[user["userPrincipalName"].lower()] = user["id"]

        def resolve(name: str) -> str:
            """A member named by UPN, by a seeded group's displayName, or by id."""
            key = by_upn.get(name.lower()) or next(
                (k for k, g in state["groups"].items() if g["displayName"] == name), name)
            if key not in state["users"] and key not in state["groups"]:
                raise ValueError(f"seed: member {name!r} is not a user or group in the seed")
            return key

        for raw in seed.get("groups", []):
            group = directory._new_group_record(dict(raw))
            state["groups"][group["id"]] = group
        for raw, group in zip(seed.get("groups", []), list(state["groups"].values()), strict=True):
            for member in raw.get("members", []):
                key = resolve(member)
                if group["isAssignableToRole"] and key in state["groups"]:
                    raise ValueError(f"seed: group {member!r} in role-assignable {group['displayName']!r}: "
                                     f"{ROLE_GROUP_NESTING}")
                directory._add_member(group, key)
        for raw in seed.get("directoryRoles", []):
            role_id = str(raw.get("id") or uuid.uuid4())
            holders = [resolve(m) for m in (*raw.get("members", []), *raw.get("eligible", []))]
            plain = [state["groups"][k]["displayName"] for k in holders
                     if k in state["groups"] and not state["groups"][k]["isAssignableToRole"]]
            if plain:
                raise ValueError(f"seed: role {raw['displayName']!r} given to group {plain[0]!r}, which is not "
                                 "role-assignable (isAssignableToRole)")
            state["roles"][role_id] = {
                "id": role_id, "displayName": raw["displayName"],
                "roleTemplateId": raw.get("roleTemplateId", str(uuid.uuid4())),
                "members": [resolve(m) for m in raw.get("members", [])],
                "eligible": [resolve(m) for m in raw.get("eligible", [])],
            }
        for app in seed.get("applications", []):
            state["applications"][app["appId"]] = {
                "secrets": list(app.get("secrets", [])), "certificates": list(app.get("certificates", [])),
                "roles": list(app.get("roles", [])),
            }
        return directory

    @classmethod
    def load(cls, path: Path) -> Directory:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def save(self, path: Path) -> None:
        with self.lock:
            text = json.dumps(self.state, separators=(",", ":"))
            self.dirty = False
        # Atomic and 0600: the tenant (app secrets' hashes, password hashes) is never half-written.
        write_atomically(path, text.encode("utf-8"))

    # helpers ------------------------------------------------------------------------------------
    def _bump(self) -> int:
        self.state["seq"] += 1
        self.dirty = True
        return int(self.state["seq"])

    def _new_user_record(self, raw: Json) -> Json:
        user: Json = {
            "id": str(raw.pop("id", None) or uuid.uuid4()),
            "accountEnabled": True, "businessPhones": [], "mail": None, "mobilePhone": None,
            "officeLocation": None, "preferredLanguage": None, "jobTitle": None, "department": None,
            "employeeId": None, "employeeType": None, "companyName": None, "usageLocation": None,
            "passwordPolicies": None, "onPremisesSyncEnabled": None, "proxyAddresses": [],
            "assignedLicenses": [], "createdDateTime": now_iso(), "lastPasswordChangeDateTime": now_iso(),
            "signInSessionsValidFromDateTime": now_iso(), "signInActivity": None,
        }
        password = (raw.pop("passwordProfile", None) or {})
        user.update(raw)
        user["mailNickname"] = user.get("mailNickname") or user["userPrincipalName"].split("@")[0]
        user["_forceChangePasswordNextSignIn"] = bool(password.get("forceChangePasswordNextSignIn", False))
        if password.get("password"):
            # Graph never returns a password; the emulator keeps its digest so that a test can tell
            # whether the password handed to a person is the one their account has.
            user["_passwordSha256"] = hashlib.sha256(str(password["password"]).encode()).hexdigest()
        user["_seq"] = self._bump()
        self._index_upn(None, user["userPrincipalName"], user["id"])
        return user

    def _new_group_record(self, raw: Json) -> Json:
        raw.pop("members", None)
        group: Json = {
            "id": str(raw.pop("id", None) or uuid.uuid4()), "description": None, "mailEnabled": False,
            "securityEnabled": True, "groupTypes": [], "createdDateTime": now_iso(),
            "mailNickname": re.sub(r"[^A-Za-z0-9]", "", str(raw.get("displayName", ""))) or "group",
            "isAssignableToRole": False,
        }
        group.update(raw)
        group["isAssignableToRole"] = bool(group["isAssignableToRole"])
        group["members"] = {}  # member id -> True: insertion-ordered, and O(1) lookups in big groups
        group["_seq"] = self._bump()
        return group

    def _add_member(self, group: Json, member_id: str) -> None:
        if group.get("isAssignableToRole") and member_id in self.state["groups"]:
            raise bad_request(ROLE_GROUP_NESTING)
        group["members"][member_id] = True
        self.state["member_log"].append([self._bump(), group["id"], member_id, 1])

    def _remove_member(self, group: Json, member_id: str) -> None:
        del group["members"][member_id]
        self.state["member_log"].append([self._bump(), group["id"], member_id, 0])

    def user(self, key: str) -> Json:
        return dict(self._user_ref(key))

    def _user_ref(self, key: str) -> Json:
        users = self.state["users"]
        found = users.get(key)
        if found is None and "@" in key:
            found = users.get(self._upn_owner(key) or "")
        if found is None:
            raise not_found(key)
        return found  # type: ignore[no-any-return]

    def _group_ref(self, key: str) -> Json:
        group = self.state["groups"].get(key)
        if group is None:
            raise not_found(key)
        return group  # type: ignore[no-any-return]

    def _object_type(self, key: str) -> str:
        if key in self.state["users"]:
            return "#microsoft.graph.user"
        if key in self.state["groups"]:
            return "#microsoft.graph.group"
        raise not_found(key)

    def _upn_owner(self, upn: str) -> str | None:
        """Id of the live or deleted user holding this UPN (deleted users keep theirs until purged)."""
        if self._upns is None:
            self._upns = {u["userPrincipalName"].lower(): u["id"]
                          for u in (*self.state["users"].values(), *self.state["deleted"].values())}
        return self._upns.get(upn.lower())

    def _index_upn(self, old: str | None, new: str | None, key: str) -> None:
        if self._upns is None:
            return
        if old is not None:
            self._upns.pop(old.lower(), None)
        if new is not None:
            self._upns[new.lower()] = key

    def _upn_taken(self, upn: str, except_id: str | None = None) -> bool:
        owner = self._upn_owner(upn)
        return owner is not None and owner != except_id

    def _check_upn(self, upn: str, except_id: str | None = None) -> None:
        if "@" not in upn or upn.split("@", 1)[1].lower() not in self.state["domains"]:
            raise bad_request(
                "Property userPrincipalName is invalid.",
                details=[{"code": "InvalidValue", "target": "userPrincipalName"}])
        if self._upn_taken(upn, except_id):
            raise bad_request(
                "Another object with the same value for property userPrincipalName already exists.",
                details=[{"code": "ObjectConflict", "target": "userPrincipalName"}])

    def _proxy_owner(self, address: str) -> str | None:
        """Id of the user (live or deleted) or group holding `address` among its proxyAddresses."""
        if self._proxies is None:
            self._proxies = {}
            for obj in (*self.state["users"].values(), *self.state["deleted"].values(),
                        *self.state["groups"].values()):
                for proxy in obj.get("proxyAddresses") or []:
                    kind, _, value = str(proxy).partition(":")
                    if kind.lower() == "smtp":
                        self._proxies[value.lower()] = obj["id"]
        return self._proxies.get(address.lower())

    def _check_proxy_addresses(self, upn: str, mail: Any, nickname: Any, except_id: str | None = None) -> None:
        """proxyAddresses are unique across users, groups and contacts, and a new UPN, mail or mailNickname
        address may not equal another object's: 400 "Another object with the same value for property
        proxyAddresses already exists." (https://learn.microsoft.com/en-us/graph/api/resources/user, "mail
        and proxyAddresses"; the answer's body as reported in
        https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/8421)."""
        domain = upn.rsplit("@", 1)[-1]
        addresses = {upn, *([str(mail)] if mail else []), *([f"{nickname}@{domain}"] if nickname else [])}
        if any(self._proxy_owner(a) not in (None, except_id) for a in addresses):
            message = "Another object with the same value for property proxyAddresses already exists."
            raise bad_request(message, details=[
                {"code": "ObjectConflict", "message": message, "target": "proxyAddresses"},
                {"code": "ConflictingObjects", "message": message, "target": "proxyAddresses"}])

    @staticmethod
    def _check_lengths(body: Json) -> None:
        extensions = body.get("onPremisesExtensionAttributes")
        if extensions is not None:
            if not isinstance(extensions, dict) or set(extensions) - EXTENSION_ATTRIBUTE_NAMES:
                raise bad_request("Invalid property 'onPremisesExtensionAttributes'.", "BadRequest")
            for name, value in extensions.items():
                if value is not None and (not isinstance(value, str) or len(value) > EXTENSION_ATTRIBUTE_LIMIT):
                    raise bad_request(f"Invalid value specified for property '{name}' of resource "
                                      "'OnPremisesExtensionAttributes'.", details=[{"code": "InvalidLength",
                                                                                      "target": name}])
        for name, limit in USER_PROPERTY_LIMITS.items():
            value = body.get(name)
            if isinstance(value, str) and len(value) > limit:
                raise bad_request(f"Invalid value specified for property '{name}' of resource 'User'.",
                                  details=[{"code": "InvalidLength", "target": name}])

    # users --------------------------------------------------------------------------------------
    def create_user(self, body: Json) -> Json:
        with self.lock:
            missing = [p for p in ("accountEnabled", "displayName", "mailNickname", "passwordProfile",
                                   "userPrincipalName") if body.get(p) in (None, "")]
            if missing:
                raise bad_request(f"Property '{missing[0]}' is required when creating the user.",
                                  details=[{"code": "PropertyNotNullable", "target": missing[0]}])
            unknown = set(body) - WRITABLE_USER_PROPERTIES
            if unknown:
                raise bad_request(f"Invalid property '{sorted(unknown)[0]}'.", "BadRequest")
            self._check_lengths(body)
            password = str(body["passwordProfile"].get("password") or "")
            if not password_is_complex(password):
                raise bad_request("The specified password does not comply with password complexity requirements. "
                                  "Please provide a different password.")
            self._check_upn(str(body["userPrincipalName"]))
            self._check_proxy_addresses(str(body["userPrincipalName"]), body.get("mail"), body.get("mailNickname"))
            user = self._new_user_record(copy.deepcopy(body))
            self.state["users"][user["id"]] = user
            return project(user, None, DEFAULT_USER_PROPERTIES)

    def update_user(self, key: str, body: Json) -> None:
        with self.lock:
            user = self._user_ref(key)
            unknown = set(body) - WRITABLE_USER_PROPERTIES
            if unknown:
                raise bad_request(f"Invalid property '{sorted(unknown)[0]}'.", "BadRequest")
            self._check_lengths(body)
            if user.get("onPremisesSyncEnabled") and set(body) & SYNCED_USER_PROPERTIES:
                raise bad_request("Unable to update the specified properties for on-premises mastered Directory "
                                  "Sync objects or objects currently undergoing migration.")
            if {"userPrincipalName", "mail", "mailNickname"} & set(body):
                self._check_proxy_addresses(str(body.get("userPrincipalName") or user["userPrincipalName"]),
                                            body.get("mail"), body.get("mailNickname"), user["id"])
            if "userPrincipalName" in body and body["userPrincipalName"] != user["userPrincipalName"]:
                self._check_upn(str(body["userPrincipalName"]), user["id"])
                self._proxies = None  # an alias may be added below
                if user.get("mail"):
                    # Exchange keeps the old primary address as an alias when the UPN changes.
                    user["proxyAddresses"] = [a.lower() if a.startswith("SMTP:") else a
                                              for a in user.get("proxyAddresses", [])]
                    user["proxyAddresses"] = [a for a in user["proxyAddresses"] if a.lower() != "smtp:"
                                              + str(user["mail"]).lower()]
                    user["proxyAddresses"] += ["smtp:" + str(user["mail"]), "SMTP:" + str(body["userPrincipalName"])]
                    user["mail"] = body["userPrincipalName"]
                self._index_upn(user["userPrincipalName"], str(body["userPrincipalName"]), user["id"])
            if "passwordProfile" in body:
                profile = body["passwordProfile"] or {}
                if "password" in profile:
                    if not password_is_complex(str(profile["password"] or "")):
                        raise bad_request("The specified password does not comply with password complexity "
                                          "requirements. Please provide a different password.")
                    user["lastPasswordChangeDateTime"] = now_iso()
                    user["_passwordSha256"] = hashlib.sha256(str(profile["password"]).encode()).hexdigest()
                if "forceChangePasswordNextSignIn" in profile:
                    user["_forceChangePasswordNextSignIn"] = bool(profile["forceChangePasswordNextSignIn"])
            for name, value in body.items():
                if name == "onPremisesExtensionAttributes":
                    merged = {**dict.fromkeys(sorted(EXTENSION_ATTRIBUTE_NAMES)), **(user.get(name) or {})}
                    user[name] = {**merged, **(value or {})}
                elif name != "passwordProfile":
                    user[name] = copy.deepcopy(value)
            user["_seq"] = self._bump()

    def delete_user(self, key: str) -> None:
        with self.lock:
            user = self._user_ref(key)
            if user.get("onPremisesSyncEnabled"):
                raise bad_request("Unable to delete the specified on-premises mastered Directory Sync object.")
            groups = [g for g in self.state["groups"].values() if user["id"] in g["members"]]
            for group in groups:
                self._remove_member(group, user["id"])
            del self.state["users"][user["id"]]
            user["deletedDateTime"] = now_iso()
            user["_groups"] = [g["id"] for g in groups]
            self.state["deleted"][user["id"]] = user
            self.state["tombstones"][user["id"]] = {"kind": "user", "reason": "changed", "seq": self._bump()}

    def restore(self, key: str) -> Json:
        with self.lock:
            user = self.state["deleted"].get(key)
            if user is None:
                raise not_found(key)
            if self._upn_taken(user["userPrincipalName"], user["id"]):
                raise bad_request("Another object with the same value for property userPrincipalName already "
                                  "exists.", details=[{"code": "ObjectConflict", "target": "userPrincipalName"}])
            del self.state["deleted"][key]
            user.pop("deletedDateTime", None)
            self.state["users"][key] = user
            for group_id in user.pop("_groups", []):
                if group_id in self.state["groups"]:
                    self._add_member(self.state["groups"][group_id], key)
            self.state["tombstones"].pop(key, None)
            user["_seq"] = self._bump()
            return project(user, None, DEFAULT_USER_PROPERTIES)

    def purge(self, key: str) -> None:
        with self.lock:
            purged = self.state["deleted"].pop(key, None)
            if purged is None:
                raise not_found(key)
            self._index_upn(purged["userPrincipalName"], None, key)
            self._proxies = None
            self.state["tombstones"][key] = {"kind": "user", "reason": "deleted", "seq": self._bump()}

    def revoke_sessions(self, key: str) -> None:
        with self.lock:
            user = self._user_ref(key)
            user["signInSessionsValidFromDateTime"] = now_iso()
            self.dirty = True

    def assign_license(self, key: str, body: Json) -> Json:
        with self.lock:
            user = self._user_ref(key)
            if not user.get("usageLocation"):
                raise bad_request("License assignment cannot be done for user with invalid usage location.")
            known = {s["skuId"] for s in self.state["skus"]}
            adds = list(body.get("addLicenses") or [])
            removes = set(body.get("removeLicenses") or [])
            for licence in adds:
                if licence.get("skuId") not in known:
                    raise bad_request(f"License {licence.get('skuId')} does not correspond to a valid company "
                                      "License.")
            current = [lic for lic in user["assignedLicenses"] if lic["skuId"] not in removes]
            for licence in adds:
                if all(c["skuId"] != licence["skuId"] for c in current):
                    current.append({"skuId": licence["skuId"], "disabledPlans": licence.get("disabledPlans", [])})
            user["assignedLicenses"] = current
            user["_seq"] = self._bump()
            return project(user, None, DEFAULT_USER_PROPERTIES)

    def list_users(self, clauses: list[tuple[str, str, Any]], select: list[str] | None) -> list[Json]:
        with self.lock:
            return [project(u, select, DEFAULT_USER_PROPERTIES) for u in self.state["users"].values()
                    if matches(u, clauses)]

    def list_deleted(self, select: list[str] | None) -> list[Json]:
        """Deleted users as Graph lists them: the UPN shown prefixed with the object id without dashes, as
        Entra renames a soft-deleted user's UPN (it comes back on restore; tests/conformance/test_graph.py)."""
        with self.lock:
            listed = []
            for user in self.state["deleted"].values():
                shown = project(user, select, (*DEFAULT_USER_PROPERTIES, "deletedDateTime"))
                if "userPrincipalName" in shown:
                    shown["userPrincipalName"] = user["id"].replace("-", "") + user["userPrincipalName"]
                listed.append(shown)
            return listed

    # groups -------------------------------------------------------------------------------------
    def create_group(self, body: Json) -> Json:
        with self.lock:
            missing = [p for p in ("displayName", "mailEnabled", "mailNickname", "securityEnabled")
                       if body.get(p) is None or body.get(p) == ""]
            if missing:
                raise bad_request(f"Property '{missing[0]}' is required when creating the group.")
            binds = list(body.pop("members@odata.bind", []))
            ids = [self._ref_id(ref) for ref in binds]
            if body.get("isAssignableToRole") and any(i in self.state["groups"] for i in ids):
                raise bad_request(ROLE_GROUP_NESTING)
            group = self._new_group_record(copy.deepcopy(body))
            self.state["groups"][group["id"]] = group
            for member_id in ids:
                self._add_member(group, member_id)
            return project(group, None, ("id", "displayName", "description", "mailEnabled", "securityEnabled",
                                         "mailNickname", "groupTypes", "createdDateTime"))

    def _ref_id(self, ref: str) -> str:
        match = re.search(r"/(?:directoryObjects|users|groups)/([^/?]+)$", ref)
        if not match:
            raise bad_request(f"Invalid object identifier '{ref}'.")
        key = match.group(1)
        if "@" in key:
            key = self._user_ref(key)["id"]
        self._object_type(key)
        return key

    def update_group(self, key: str, body: Json) -> None:
        with self.lock:
            group = self._group_ref(key)
            binds = list(body.get("members@odata.bind", []))
            if len(binds) > MEMBER_BIND_LIMIT:
                raise bad_request(f"Cannot add more than {MEMBER_BIND_LIMIT} members in a single request.",
                                  "BadRequest")
            ids = [self._ref_id(ref) for ref in binds]
            if group["isAssignableToRole"] and any(i in self.state["groups"] for i in ids):
                raise bad_request(ROLE_GROUP_NESTING)  # refused whole, before anything is set
            if any(i in group["members"] for i in ids) or len(set(ids)) != len(ids):
                raise bad_request("One or more added object references already exist for the following modified "
                                  "properties: 'members'.")
            for name, value in body.items():
                if name != "members@odata.bind":
                    group[name] = copy.deepcopy(value)
            if set(body) - {"members@odata.bind"}:
                group["_seq"] = self._bump()
            for member_id in ids:
                self._add_member(group, member_id)

    def delete_group(self, key: str) -> None:
        with self.lock:
            group = self._group_ref(key)
            del self.state["groups"][group["id"]]
            self.state["tombstones"][group["id"]] = {"kind": "group", "reason": "changed", "seq": self._bump()}

    def add_member_ref(self, key: str, body: Json) -> None:
        with self.lock:
            group = self._group_ref(key)
            member_id = self._ref_id(str(body.get("@odata.id", "")))
            if member_id in group["members"]:
                raise bad_request("One or more added object references already exist for the following modified "
                                  "properties: 'members'.")
            self._add_member(group, member_id)

    def remove_member_ref(self, key: str, member_id: str) -> None:
        with self.lock:
            group = self._group_ref(key)
            if member_id not in group["members"]:
                raise not_found(member_id)
            self._remove_member(group, member_id)

    def list_groups(self, clauses: list[tuple[str, str, Any]], select: list[str] | None) -> list[Json]:
        with self.lock:
            return [project(g, select, ("id", "displayName", "description", "mailEnabled", "securityEnabled",
                                        "mailNickname", "groupTypes", "createdDateTime"))
                    for g in self.state["groups"].values() if matches(g, clauses)]

    def group(self, key: str, select: list[str] | None) -> Json:
        with self.lock:
            return project(self._group_ref(key), select, ("id", "displayName", "description"))

    def list_members(self, member_ids: Iterable[str], select: list[str] | None) -> list[Json]:
        with self.lock:
            out = []
            apps = {service_principal_id(a): a for a in self.state["applications"]}
            for member_id in member_ids:
                obj = self.state["users"].get(member_id) or self.state["groups"].get(member_id)
                if obj is not None:
                    item = project(obj, select, ("id", "displayName"))
                    item["@odata.type"] = self._object_type(member_id)
                    out.append(item)
                elif member_id in apps:  # an app's service principal holding a directory role
                    principal = {"id": member_id, "appId": apps[member_id], "displayName": apps[member_id]}
                    item = {k: v for k, v in principal.items() if select is None or k in select or k == "id"}
                    item["@odata.type"] = "#microsoft.graph.servicePrincipal"
                    out.append(item)
            return out

    def assign_app_roles(self, app_id: str, names: Iterable[str]) -> None:
        """Make the app's service principal a member of exactly these directory roles (created when missing)."""
        with self.lock:
            principal = service_principal_id(app_id)
            names = list(names)
            for held in self.state["roles"].values():
                if held["displayName"] not in names and principal in held["members"]:
                    held["members"].remove(principal)
            for name in names:
                role: Json | None = next((r for r in self.state["roles"].values() if r["displayName"] == name), None)
                if role is None:
                    role_id = str(uuid.uuid4())
                    role = {"id": role_id, "displayName": name, "roleTemplateId": str(uuid.uuid4()), "members": []}
                    self.state["roles"][role_id] = role
                if principal not in role["members"]:
                    role["members"].append(principal)
            self.dirty = True

    def holds_role(self, principal: str, names: Iterable[str]) -> bool:
        with self.lock:
            wanted = set(names)
            return any(principal in r["members"] for r in self.state["roles"].values() if r["displayName"] in wanted)

    def role_assignable(self, key: str) -> bool:
        with self.lock:
            return bool(self._group_ref(key).get("isAssignableToRole"))

    def group_member_ids(self, key: str) -> list[str]:
        with self.lock:
            return list(self._group_ref(key)["members"])

    # roles --------------------------------------------------------------------------------------
    def list_roles(self) -> list[Json]:
        with self.lock:
            return [{"id": r["id"], "displayName": r["displayName"], "roleTemplateId": r["roleTemplateId"]}
                    for r in self.state["roles"].values()]

    def role_assignments(self, clauses: list[tuple[str, str, Any]], *, eligible: bool = False) -> list[Json]:
        """unifiedRoleAssignment (or, `eligible`, unifiedRoleEligibilityScheduleInstance) documents: one per
        holder of a role, tenant-wide, the role definition named by its template id as Graph does for
        built-in roles."""
        with self.lock:
            out: list[Json] = []
            for role in self.state["roles"].values():
                for principal in role.get("eligible" if eligible else "members", []):
                    item: Json = {"id": f"{role['roleTemplateId']}-{principal}", "principalId": principal,
                                  "roleDefinitionId": role["roleTemplateId"], "directoryScopeId": "/"}
                    if eligible:
                        item.update({"memberType": "Direct", "startDateTime": "2026-01-01T00:00:00Z",
                                     "endDateTime": None, "roleEligibilityScheduleId": item["id"]})
                    if matches(item, clauses):
                        out.append(item)
            return out

    def role_member_ids(self, key: str) -> list[str]:
        with self.lock:
            role = self.state["roles"].get(key)
            if role is None:
                raise not_found(key)
            return list(role["members"])

    # delta --------------------------------------------------------------------------------------
    def delta_token(self, seq: int, select: list[str] | None) -> str:
        raw = json.dumps({"e": self.state["epoch"], "s": seq, "sel": select or [], "t": round(time.time(), 3)})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def read_delta_token(self, token: str) -> tuple[int, list[str] | None]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            seq, epoch, select = int(data["s"]), data["e"], list(data["sel"]) or None
            issued = float(data.get("t", 0))
        except (ValueError, KeyError, TypeError):
            raise bad_request("Invalid delta token.", "BadRequest") from None
        if time.time() - issued > self.delta_token_ttl:
            raise GraphError(400, "syncStateNotFound", "The sync state generation is not found. The delta token is "
                             "expired and data must be synchronized again.")
        if epoch != self.state["epoch"] or seq < self.state["min_delta_seq"]:
            raise GraphError(410, "syncStateNotFound",
                             "The sync state is no longer valid: restart the synchronization without a delta token.")
        return seq, select

    def expire_delta_tokens(self) -> None:
        """What Graph does after its retention window: every existing delta link answers 410."""
        with self.lock:
            self.state["min_delta_seq"] = self._bump()

    def users_delta(self, since: int | None, select: list[str] | None) -> tuple[list[Json], int]:
        with self.lock:
            items: list[Json] = []
            for user in self.state["users"].values():
                if since is None or user["_seq"] > since:
                    items.append(project(user, select, DEFAULT_USER_PROPERTIES))
            if since is not None:
                for key, stone in self.state["tombstones"].items():
                    if stone["kind"] == "user" and stone["seq"] > since:
                        items.append({"id": key, "@removed": {"reason": stone["reason"]}})
            return items, int(self.state["seq"])

    def groups_delta(self, since: int | None, select: list[str] | None) -> tuple[list[Json], int]:
        with self.lock:
            want_members = select is None or "members" in select
            fields = [s for s in (select or ["displayName", "description"]) if s != "members"]
            changed_members: dict[str, dict[str, int]] = {}
            if since is None:
                for group in self.state["groups"].values():
                    changed_members[group["id"]] = {m: 1 for m in group["members"]}
            else:
                for seq, group_id, member_id, added in self.state["member_log"]:
                    if seq > since:
                        changed_members.setdefault(group_id, {})[member_id] = added
            items: list[Json] = []
            for group in self.state["groups"].values():
                if since is None or group["_seq"] > since or group["id"] in changed_members:
                    item = project(group, fields, ())
                    if want_members:
                        item["members@delta"] = [
                            {"@odata.type": self._member_type(m), "id": m} if added
                            else {"@odata.type": "#microsoft.graph.user", "id": m, "@removed": {"reason": "deleted"}}
                            for m, added in changed_members.get(group["id"], {}).items()
                        ]
                    items.append(item)
            if since is not None:
                for key, stone in self.state["tombstones"].items():
                    if stone["kind"] == "group" and stone["seq"] > since:
                        items.append({"id": key, "@removed": {"reason": stone["reason"]}})
            return items, int(self.state["seq"])

    def _member_type(self, key: str) -> str:
        return "#microsoft.graph.group" if key in self.state["groups"] else "#microsoft.graph.user"

    # server-side paging cursors ------------------------------------------------------------------
    def open_cursor(self, items: list[Json], final: Json) -> str:
        """Keep a materialised result so later pages are consistent; `final` goes on the last page."""
        with self.lock:
            now = time.monotonic()
            for key in [k for k, c in self.cursors.items() if now - c["at"] > CURSOR_TTL_SECONDS]:
                del self.cursors[key]
            key = secrets.token_urlsafe(12)
            self.cursors[key] = {"items": items, "final": final, "at": now}
            return key

    def take_cursor(self, key: str) -> Json:
        with self.lock:
            cursor = self.cursors.get(key)
            if cursor is None:
                raise bad_request("The skip token is invalid or has expired.", "BadRequest")
            cursor["at"] = time.monotonic()
            return cursor

    # seeding behind the tool's back (tests and the demo script) ---------------------------------
    def add_user(self, **properties: Any) -> str:
        """Put a user straight into the directory, as an administrator in the portal would."""
        with self.lock:
            user = self._new_user_record(dict(properties))
            self.state["users"][user["id"]] = user
            self._proxies = None
            return str(user["id"])

    def add_group(self, display_name: str, *, description: str | None = None, members: Iterable[str] = ()) -> str:
        with self.lock:
            group = self._new_group_record({"displayName": display_name, "description": description})
            self.state["groups"][group["id"]] = group
            for member in members:
                self._add_member(group, self._user_ref(member)["id"])
            return str(group["id"])

    def find_user(self, upn: str) -> Json | None:
        with self.lock:
            try:
                return self.user(upn)
            except GraphError:
                return None
