"""The data and rules behind the Google Directory emulator: users, groups, members, org units.

Kept apart from the HTTP layer so the rules (duplicate addresses, aliases kept on rename, org
unit paths, paging, `fields` projection, Google's error bodies) read as one piece. Every
operation returns `(status, body)` the way the Directory API would answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NEVER = "1970-01-01T00:00:00.000Z"
"""What Google reports as `lastLoginTime` for a user who never signed in."""

REPLICATION_WINDOW_SECONDS = 1.0
"""How long a just-created user or group stays "not yet everywhere" (see Directory.settling).
Small, so the demo and every test meet it without waiting long; Google documents no figure."""

NAME_PART_LIMIT = 60
"""givenName and familyName: "The maximum number of characters in the givenName and in the
familyName values is 60" (User resource, `name`:
https://developers.google.com/admin-sdk/directory/reference/rest/v1/users; the same text is in the
discovery document google-api-python-client ships)."""

DISPLAY_NAME_LIMIT = 256
"""name.displayName: "Limit: 256 characters" (UserName in the same reference and discovery document)."""

USER_CREATION_NOT_COMPLETE = "User creation is not complete."

Answer = tuple[int, dict[str, Any] | None]


def google_error(status: int, message: str, reason: str, *, domain: str = "global",
                 rpc_status: str | None = None) -> dict[str, Any]:
    """The error body the Directory API sends (`error.errors[].reason` is what clients match)."""
    body: dict[str, Any] = {
        "code": status,
        "message": message,
        "errors": [{"message": message, "domain": domain, "reason": reason}],
    }
    if rpc_status:
        body["status"] = rpc_status
    return {"error": body}


def _err(status: int, message: str, reason: str, **kwargs: Any) -> Answer:
    return status, google_error(status, message, reason, **kwargs)


def _now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _hash_password(password: str, salt: str) -> str:
    return hashlib.sha256((salt + password).encode()).hexdigest()


# --- fields projection -----------------------------------------------------------------------

FieldTree = dict[str, "FieldTree | None"]


def parse_fields(text: str) -> FieldTree:
    """Parse Google's partial-response syntax: `a,b/c,d(e,f(g))` into a tree (None = whole value)."""
    pos = 0

    def parse_list(end: str | None) -> FieldTree:
        nonlocal pos
        tree: FieldTree = {}
        while pos < len(text):
            start = pos
            while pos < len(text) and text[pos] not in ",()/":
                pos += 1
            name = text[start:pos].strip()
            if not name:
                raise ValueError(f"invalid fields expression near {text[start:]!r}")
            sub: FieldTree | None = None
            if pos < len(text) and text[pos] == "(":
                pos += 1
                sub = parse_list(")")
                pos += 1
            elif pos < len(text) and text[pos] == "/":
                pos += 1
                sub = parse_path()
            tree[name] = _merge(tree.get(name, {}), sub) if name in tree else sub
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            if end is not None and pos < len(text) and text[pos] == end:
                return tree
        if end is not None:
            raise ValueError("unbalanced parentheses in fields")
        return tree

    def parse_path() -> FieldTree:
        nonlocal pos
        start = pos
        while pos < len(text) and text[pos] not in ",()/":
            pos += 1
        name = text[start:pos].strip()
        sub: FieldTree | None = None
        if pos < len(text) and text[pos] == "/":
            pos += 1
            sub = parse_path()
        elif pos < len(text) and text[pos] == "(":
            pos += 1
            sub = parse_list(")")
            pos += 1
        return {name: sub}

    return parse_list(None)


def _merge(left: FieldTree | None, right: FieldTree | None) -> FieldTree | None:
    if left is None or right is None:
        return None
    merged = dict(left)
    for key, value in right.items():
        merged[key] = _merge(merged[key], value) if key in merged else value
    return merged


def project(value: Any, tree: FieldTree | None) -> Any:
    """Keep only the selected fields; lists are projected element by element."""
    if tree is None:
        return value
    if isinstance(value, list):
        return [project(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    if "*" in tree:
        return value
    return {key: project(value[key], sub) for key, sub in tree.items() if key in value}


# --- the directory ---------------------------------------------------------------------------


@dataclass
class Directory:
    """One Google Workspace customer: its domains, org units, users, groups and memberships."""

    domains: list[str]
    customer_id: str = field(default_factory=lambda: "C0" + secrets.token_hex(4))
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    """user id -> the user resource as Google returns it (without internal fields)."""
    secrets_: dict[str, dict[str, Any]] = field(default_factory=dict)
    """user id -> internal fields no API call returns (password hash, sign-out count)."""
    deleted: dict[str, dict[str, Any]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    """lower-cased primary email or alias -> user or group id: the one namespace Google keeps."""
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    orgunits: dict[str, dict[str, Any]] = field(default_factory=dict)
    """lower-cased org unit path -> org unit resource ("/" is the root)."""
    replication_window: float = REPLICATION_WINDOW_SECONDS
    """Seconds after its create in which a user or group is not yet usable (0: off)."""
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    born: dict[str, float] = field(default_factory=dict, repr=False)
    """user or group id -> clock() at its create through the API; not saved (a restart settles all)."""
    replication_refusals: int = 0

    def __post_init__(self) -> None:
        if "/" not in self.orgunits:
            self.orgunits["/"] = {"kind": "admin#directory#orgUnit", "name": "", "orgUnitPath": "/",
                                  "orgUnitId": "id:" + secrets.token_hex(6)}

    # -- persistence --

    def to_json(self) -> dict[str, Any]:
        return {"domains": self.domains, "customer_id": self.customer_id, "users": self.users,
                "secrets": self.secrets_, "deleted": self.deleted, "groups": self.groups,
                "members": self.members, "orgunits": self.orgunits}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Directory:
        directory = cls(domains=list(data["domains"]), customer_id=data["customer_id"],
                        users=dict(data["users"]), secrets_=dict(data["secrets"]),
                        deleted=dict(data["deleted"]), groups=dict(data["groups"]),
                        members={k: dict(v) for k, v in data["members"].items()},
                        orgunits=dict(data["orgunits"]))
        for user_id, user in directory.users.items():
            for address in [user["primaryEmail"], *user.get("aliases", [])]:
                directory.addresses[address.lower()] = user_id
        for group_id, group in directory.groups.items():
            directory.addresses[group["email"].lower()] = group_id
        return directory

    # -- helpers --

    def _new_id(self) -> str:
        while True:
            candidate = str(100000000000000000000 + secrets.randbelow(899999999999999999999))
            if candidate not in self.users and candidate not in self.groups:
                return candidate

    def find_user(self, key: str) -> dict[str, Any] | None:
        user_id = key if key in self.users else self.addresses.get(key.lower())
        return self.users.get(user_id) if user_id else None

    def _find_group(self, key: str) -> dict[str, Any] | None:
        group_id = key if key in self.groups else self.addresses.get(key.lower())
        return self.groups.get(group_id) if group_id else None

    def _domain_ok(self, email: str) -> bool:
        return "@" in email and email.rsplit("@", 1)[1].lower() in {d.lower() for d in self.domains}

    def _orgunit_path(self, path: str) -> str | None:
        path = "/" + path.strip("/") if path.strip("/") else "/"
        unit = self.orgunits.get(path.lower())
        return str(unit["orgUnitPath"]) if unit else None

    def customer_ok(self, customer: str) -> bool:
        return customer in ("my_customer", self.customer_id)

    def settling(self, object_id: str) -> bool:
        """True while a user or group made through the API is still propagating in Google's backends.

        The users.insert reference says "Mutate calls immediately following user creation might
        sometimes fail as the user isn't fully created due to propagation delay in our backends.
        Check the error details for the 'User creation is not complete' message"
        (https://developers.google.com/admin-sdk/directory/reference/rest/v1/users/insert, and the
        users.insert description in the bundled discovery document). Group member adds straight
        after a group's create answer 404 groupKey (lithnet/googleapps-managementagent#7,
        hashicorp/terraform-provider-googleworkspace#162)."""
        born = self.born.get(object_id)
        if born is None:
            return False
        if self.clock() - born < self.replication_window:
            return True
        del self.born[object_id]
        return False

    def _not_yet_created(self) -> Answer:
        # Seen from the service as 412 with this message (e.g. a delete or update seconds after the
        # create); 412's reason in Google's global error domain is conditionNotMet
        # (https://cloud.google.com/resource-manager/docs/core_errors#PRECONDITION_FAILED).
        self.replication_refusals += 1
        return _err(412, USER_CREATION_NOT_COMPLETE, "conditionNotMet")

    def _refused_fresh(self, message: str) -> Answer:
        self.replication_refusals += 1
        return _err(404, message, "notFound")

    @staticmethod
    def _name_refusal(name: Mapping[str, Any]) -> Answer | None:
        """The documented length limits of the name parts (NAME_PART_LIMIT, DISPLAY_NAME_LIMIT)."""
        for part, label in (("givenName", "GivenName"), ("familyName", "FamilyName")):
            if len(str(name.get(part) or "")) > NAME_PART_LIMIT:
                return _err(400, f"Invalid Given/Family Name: {label}", "invalid")
        if len(str(name.get("displayName") or "")) > DISPLAY_NAME_LIMIT:
            return _err(400, "Invalid Input: displayName", "invalid")
        return None

    # -- users --

    def insert_user(self, body: Mapping[str, Any]) -> Answer:
        email = str(body.get("primaryEmail") or "")
        name = body.get("name") or {}
        if not email or not self._domain_ok(email):
            return _err(400, "Invalid Input: primary_user_email" if email else "Invalid Input: primaryEmail",
                        "invalid")
        if not name.get("givenName") or not name.get("familyName"):
            return _err(400, "Invalid Given/Family Name: " + ("GivenName" if not name.get("givenName")
                                                               else "FamilyName"), "invalid")
        refusal = self._name_refusal(name)
        if refusal is not None:
            return refusal
        password = str(body.get("password") or "")
        if not 8 <= len(password) <= 100:
            return _err(400, "Invalid Password", "invalid")
        if email.lower() in self.addresses:
            return _err(409, "Entity already exists.", "duplicate")
        org_unit = self._orgunit_path(str(body.get("orgUnitPath") or "/"))
        if org_unit is None:
            return _err(400, "Invalid Input: INVALID_OU_ID", "invalid")
        user_id = self._new_id()
        user: dict[str, Any] = {
            "kind": "admin#directory#user",
            "id": user_id,
            "etag": '"' + secrets.token_urlsafe(12) + '"',
            "primaryEmail": email,
            "name": {"givenName": name["givenName"], "familyName": name["familyName"],
                     "fullName": f"{name['givenName']} {name['familyName']}",
                     "displayName": name.get("displayName") or f"{name['givenName']} {name['familyName']}"},
            "isAdmin": False,
            "isDelegatedAdmin": False,
            # Output only, as the user resource documents them: a new user is in neither.
            "isEnrolledIn2Sv": False,
            "isEnforcedIn2Sv": False,
            "lastLoginTime": NEVER,
            "creationTime": _now(),
            "agreedToTerms": False,
            "suspended": bool(body.get("suspended", False)),
            "archived": False,
            "changePasswordAtNextLogin": bool(body.get("changePasswordAtNextLogin", False)),
            "ipWhitelisted": False,
            "emails": [{"address": email, "primary": True}],
            "customerId": self.customer_id,
            "orgUnitPath": org_unit,
            "isMailboxSetup": False,
            "includeInGlobalAddressList": True,
        }
        for optional in ("externalIds", "organizations", "phones", "notes"):
            if optional in body:
                user[optional] = body[optional]
        if user["suspended"]:
            user["suspensionReason"] = "ADMIN"
        salt = secrets.token_hex(8)
        self.users[user_id] = user
        self.secrets_[user_id] = {"salt": salt, "password": _hash_password(password, salt), "sign_outs": 0}
        self.addresses[email.lower()] = user_id
        self.born[user_id] = self.clock()
        return 201, user

    def get_user(self, key: str) -> Answer:
        user = self.find_user(key)
        if user is None:
            return _err(404, "Resource Not Found: userKey", "notFound")
        if self.settling(user["id"]):
            # A read straight after the create can miss the new user: "the get request ... is
            # initially sent too quickly and returns a 404" (hashicorp/terraform-provider-googleworkspace#286;
            # also #304 and lithnet/googleapps-managementagent#80).
            return self._refused_fresh("Resource Not Found: userKey")
        return 200, user

    def patch_user(self, key: str, body: Mapping[str, Any]) -> Answer:
        user = self.find_user(key)
        if user is None:
            return _err(404, "Resource Not Found: userKey", "notFound")
        user_id = user["id"]
        if self.settling(user_id):
            return self._not_yet_created()
        if "name" in body:
            refusal = self._name_refusal({**user["name"], **body["name"]})
            if refusal is not None:
                return refusal
        if "primaryEmail" in body and str(body["primaryEmail"]).lower() != user["primaryEmail"].lower():
            new = str(body["primaryEmail"])
            if not self._domain_ok(new):
                return _err(400, "Invalid Input: primary_user_email", "invalid")
            holder = self.addresses.get(new.lower())
            if holder is not None and holder != user_id:
                return _err(409, "Entity already exists.", "duplicate")
        if "orgUnitPath" in body and self._orgunit_path(str(body["orgUnitPath"])) is None:
            return _err(400, "Invalid Input: INVALID_OU_ID", "invalid")
        if "password" in body and not 8 <= len(str(body["password"])) <= 100:
            return _err(400, "Invalid Password", "invalid")
        if "primaryEmail" in body:
            self._rename(user, str(body["primaryEmail"]))
        if "name" in body:
            name = {**user["name"], **body["name"]}
            name["fullName"] = f"{name['givenName']} {name['familyName']}"
            user["name"] = name
        if "suspended" in body:
            user["suspended"] = bool(body["suspended"])
            if user["suspended"]:
                user["suspensionReason"] = "ADMIN"
            else:
                user.pop("suspensionReason", None)
        if "orgUnitPath" in body:
            user["orgUnitPath"] = self._orgunit_path(str(body["orgUnitPath"]))
        if "password" in body:
            salt = self.secrets_[user_id]["salt"]
            self.secrets_[user_id]["password"] = _hash_password(str(body["password"]), salt)
        for plain in ("changePasswordAtNextLogin", "externalIds", "organizations", "phones", "notes",
                      "includeInGlobalAddressList"):
            if plain in body:
                user[plain] = body[plain]
        user["etag"] = '"' + secrets.token_urlsafe(12) + '"'
        return 200, user

    def _rename(self, user: dict[str, Any], new: str) -> None:
        """Google keeps the previous primary address as an alias, so mail to it still arrives."""
        old = user["primaryEmail"]
        if old.lower() == new.lower():
            user["primaryEmail"] = new
            return
        aliases = [a for a in user.get("aliases", []) if a.lower() != new.lower()]
        aliases.append(old)
        user["aliases"] = aliases
        user["primaryEmail"] = new
        user["emails"] = [{"address": new, "primary": True}, *({"address": a} for a in aliases)]
        self.addresses[new.lower()] = user["id"]

    def delete_user(self, key: str) -> Answer:
        user = self.find_user(key)
        if user is None:
            return _err(404, "Resource Not Found: userKey", "notFound")
        user_id = user["id"]
        if self.settling(user_id):
            return self._not_yet_created()
        del self.users[user_id]
        for address in [user["primaryEmail"], *user.get("aliases", [])]:
            self.addresses.pop(address.lower(), None)
        for members in self.members.values():
            members.pop(user_id, None)
        user["deletionTime"] = _now()
        self.deleted[user_id] = user
        return 204, None

    def sign_out(self, key: str) -> Answer:
        user = self.find_user(key)
        if user is None:
            return _err(404, "Resource Not Found: userKey", "notFound")
        if self.settling(user["id"]):
            return self._not_yet_created()
        self.secrets_[user["id"]]["sign_outs"] += 1
        return 204, None

    def list_users(self, params: Mapping[str, str]) -> Answer:
        customer, domain = params.get("customer"), params.get("domain")
        if not customer and not domain:
            return _err(400, "Bad Request", "badRequest")
        if customer and not self.customer_ok(customer):
            return _err(400, "Bad Request", "badRequest")
        try:
            limit = min(max(int(params.get("maxResults", "100")), 1), 500)
        except ValueError:
            return _err(400, "Invalid value for maxResults", "invalid")
        source = self.deleted if params.get("showDeleted") == "true" else self.users
        after = ""
        if params.get("pageToken"):
            try:
                after = json.loads(base64.urlsafe_b64decode(params["pageToken"]))["after"]
            except (ValueError, KeyError, TypeError):
                return _err(400, "Invalid page token", "invalid")
        ordered = sorted((u["primaryEmail"].lower(), u) for u in source.values()
                         if not domain or u["primaryEmail"].lower().endswith("@" + domain.lower()))
        page = [u for email, u in ordered if email > after][: limit + 1]
        body: dict[str, Any] = {"kind": "admin#directory#users", "etag": '"list"', "users": page[:limit]}
        if len(page) > limit:
            token = json.dumps({"after": page[limit - 1]["primaryEmail"].lower()}).encode()
            body["nextPageToken"] = base64.urlsafe_b64encode(token).decode()
        if not body["users"]:
            del body["users"]
        return 200, body

    def check_password(self, key: str, password: str) -> bool:
        user = self.find_user(key)
        if user is None:
            return False
        stored = self.secrets_[user["id"]]
        return bool(stored["password"] == _hash_password(password, stored["salt"]))

    def sign_outs(self, key: str) -> int:
        user = self.find_user(key)
        return int(self.secrets_[user["id"]]["sign_outs"]) if user else 0

    def add_user(self, email: str, given_name: str, family_name: str, password: str, *,
                 org_unit: str = "/", admin: bool = False) -> dict[str, Any]:
        """Seed a user directly (the admin the service account impersonates, unmanaged staff)."""
        status, user = self.insert_user({"primaryEmail": email, "password": password, "orgUnitPath": org_unit,
                                         "name": {"givenName": given_name, "familyName": family_name}})
        if status != 201 or user is None:
            raise ValueError(f"cannot seed {email}: {user}")
        # Seeded users stand for accounts that existed long before the run: already settled.
        self.born.pop(user["id"], None)
        user["isAdmin"] = admin
        return user

    def add_orgunit_path(self, path: str) -> None:
        """Seed an org unit and its parents."""
        parent = "/"
        for part in [p for p in path.split("/") if p]:
            if self._orgunit_path(parent.rstrip("/") + "/" + part) is None:
                self.insert_orgunit({"name": part, "parentOrgUnitPath": parent})
            parent = parent.rstrip("/") + "/" + part

    # -- groups and members --

    def insert_group(self, body: Mapping[str, Any]) -> Answer:
        email = str(body.get("email") or "")
        if not email or not self._domain_ok(email):
            return _err(400, "Invalid Input: email", "invalid")
        if email.lower() in self.addresses:
            return _err(409, "Entity already exists.", "duplicate")
        group_id = "0" + secrets.token_hex(8)
        group = {"kind": "admin#directory#group", "id": group_id, "etag": '"g"', "email": email,
                 "name": str(body.get("name") or email.split("@")[0]),
                 "description": str(body.get("description") or ""), "directMembersCount": "0",
                 "adminCreated": True}
        self.groups[group_id] = group
        self.members[group_id] = {}
        self.addresses[email.lower()] = group_id
        self.born[group_id] = self.clock()
        return 200, group

    def get_group(self, key: str) -> Answer:
        group = self._find_group(key)
        if group is None:
            return _err(404, "Resource Not Found: groupKey", "notFound")
        return 200, group

    def list_groups(self, params: Mapping[str, str]) -> Answer:
        customer = params.get("customer")
        if customer and not self.customer_ok(customer):
            return _err(400, "Bad Request", "badRequest")
        return self._page(sorted(self.groups.values(), key=lambda g: str(g["email"]).lower()),
                          params, "groups", "admin#directory#groups", 200)

    def _page(self, items: list[dict[str, Any]], params: Mapping[str, str], key: str, kind: str,
              maximum: int) -> Answer:
        try:
            limit = min(max(int(params.get("maxResults", str(maximum))), 1), maximum)
            start = int(base64.urlsafe_b64decode(params["pageToken"])) if params.get("pageToken") else 0
        except ValueError:
            return _err(400, "Invalid page token", "invalid")
        body: dict[str, Any] = {"kind": kind, "etag": '"list"'}
        if items[start:start + limit]:
            body[key] = items[start:start + limit]
        if start + limit < len(items):
            body["nextPageToken"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
        return 200, body

    def list_members(self, group_key: str, params: Mapping[str, str]) -> Answer:
        group = self._find_group(group_key)
        if group is None:
            return _err(404, "Resource Not Found: groupKey", "notFound")
        members = sorted(self.members[group["id"]].values(), key=lambda m: str(m["email"]).lower())
        return self._page(members, params, "members", "admin#directory#members", 200)

    def insert_member(self, group_key: str, body: Mapping[str, Any]) -> Answer:
        group = self._find_group(group_key)
        if group is None:
            return _err(404, "Resource Not Found: groupKey", "notFound")
        if self.settling(group["id"]):
            return self._refused_fresh("Resource Not Found: groupKey")
        member_key = str(body.get("email") or body.get("id") or "")
        user = self.find_user(member_key) if member_key else None
        nested = self._find_group(member_key) if member_key and user is None else None
        if nested is not None:
            # A group may be a member of another (members.insert: "The member can be a user or a group").
            if nested["id"] in self.members[group["id"]]:
                return _err(409, "Member already exists.", "duplicate")
            self.members[group["id"]][nested["id"]] = {
                "kind": "admin#directory#member", "etag": '"m"', "id": nested["id"], "email": nested["email"],
                "role": str(body.get("role") or "MEMBER"), "type": "GROUP", "status": "ACTIVE"}
            group["directMembersCount"] = str(len(self.members[group["id"]]))
            return 200, self.members[group["id"]][nested["id"]]
        if user is None:
            return _err(404, "Resource Not Found: memberKey", "notFound")
        if self.settling(user["id"]):
            # Adding a user made seconds ago is a mutate call that references it (see settling).
            return self._refused_fresh("Resource Not Found: memberKey")
        members = self.members[group["id"]]
        if user["id"] in members:
            return _err(409, "Member already exists.", "duplicate")
        member = {"kind": "admin#directory#member", "etag": '"m"', "id": user["id"],
                  "email": user["primaryEmail"], "role": str(body.get("role") or "MEMBER"),
                  "type": "USER", "status": "ACTIVE"}
        members[user["id"]] = member
        group["directMembersCount"] = str(len(members))
        return 200, member

    def delete_member(self, group_key: str, member_key: str) -> Answer:
        group = self._find_group(group_key)
        if group is None:
            return _err(404, "Resource Not Found: groupKey", "notFound")
        member = self.find_user(member_key) or self._find_group(member_key)
        members = self.members[group["id"]]
        if member is None or member["id"] not in members:
            return _err(404, "Resource Not Found: memberKey", "notFound")
        del members[member["id"]]
        group["directMembersCount"] = str(len(members))
        return 204, None

    def member_emails(self, group_key: str) -> list[str]:
        group = self._find_group(group_key)
        if group is None:
            return []
        return sorted(self.users[m]["primaryEmail"] for m in self.members[group["id"]] if m in self.users)

    # -- org units --

    def insert_orgunit(self, body: Mapping[str, Any]) -> Answer:
        name = str(body.get("name") or "").strip()
        parent = self._orgunit_path(str(body.get("parentOrgUnitPath") or "/"))
        if not name or "/" in name:
            return _err(400, "Invalid Ou Name", "invalid")
        if parent is None:
            return _err(400, "Invalid Parent Orgunit Id", "invalid")
        path = parent.rstrip("/") + "/" + name
        if path.lower() in self.orgunits:
            return _err(400, "Invalid Ou Id", "invalid")
        unit = {"kind": "admin#directory#orgUnit", "name": name, "orgUnitPath": path,
                "orgUnitId": "id:" + secrets.token_hex(6), "parentOrgUnitPath": parent,
                "parentOrgUnitId": self.orgunits[parent.lower()]["orgUnitId"],
                "description": str(body.get("description") or ""), "blockInheritance": False}
        self.orgunits[path.lower()] = unit
        return 200, unit

    def get_orgunit(self, path: str) -> Answer:
        if path.startswith("id:"):
            unit = next((u for u in self.orgunits.values() if u["orgUnitId"] == path), None)
        else:
            found = self._orgunit_path(path)
            unit = self.orgunits[found.lower()] if found else None
        if unit is None:
            return _err(404, "Org unit not found", "notFound")
        return 200, unit

    def list_orgunits(self, params: Mapping[str, str]) -> Answer:
        base = self._orgunit_path(params.get("orgUnitPath", "/"))
        if base is None:
            return _err(404, "Org unit not found", "notFound")
        prefix = base.rstrip("/") + "/"
        units = [u for p, u in sorted(self.orgunits.items()) if p != "/" and p.startswith(prefix.lower())]
        if params.get("type") == "children":
            units = [u for u in units if u["parentOrgUnitPath"].lower() == base.lower()]
        return 200, {"kind": "admin#directory#orgUnits", "etag": '"ou"', "organizationUnits": units}
