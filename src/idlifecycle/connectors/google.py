"""Google Workspace connector: the Admin SDK Directory API through google-api-python-client.

Signs in as a service account with domain-wide delegation, impersonating an admin, with only the
scopes it uses (SCOPES). Reads users in the managed org units (`fields=` projection, 500 a page)
and the managed groups; writes in multipart batches paced under the per-minute quota, retrying
rate limits, `quotaExceeded` (Google's limit on concurrent calls: batches shrink to what Google took),
429 and 5xx, waiting out the propagation delay after its own creates (412 "User creation is not
complete.", 404 on a just-created group or user), and stopping cleanly when the run cannot go on.
What each documented error reason means to the connector is one table: google_pacing.REASONS.

Configuration (connectors/google.toml): `admin`, `domains`, `org_unit_root`, and optionally
`customer`, `group_domain`, `leavers`, `managed_group_marker`, `quota_per_minute`, `batch_size`,
`timeout`, `give_up_after`, `replication_wait`, `api_endpoint`, `secret`. The service-account key (the JSON
text, or the path of the JSON file) comes from the secret `<name>_service_account`, never from the TOML.
The demo's tenant is a connector type of its own, `type = "google-sandbox"` (idlifecycle.sandbox.launch): it
starts the emulator and hands this connector its endpoint, key and token URI, so this module has no sandbox branch.

Each change's Result is yielded as soon as its calls are settled, batch by batch, not when the
wave ends. `timeout` bounds every socket operation (connect, each read); when Google has answered
nothing at all for `give_up_after` seconds (it hangs or refuses connections), the changes not yet
settled, and every later one this run, fail at once (retryable) so the other directories go on.
"""

from __future__ import annotations

import functools
import http.client
import json
import re
import secrets
import socket
import string
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import httplib2
from google.auth.exceptions import RefreshError, TransportError
from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import BatchError, HttpError
from googleapiclient.http import BatchHttpRequest, HttpRequest

from idlifecycle.connectors.base import (
    AuthError,
    Capabilities,
    Connector,
    ConnectorContext,
    ConnectorError,
)
from idlifecycle.connectors.google_pacing import Pacer, Verdict, backoff, read_error, settle_delay
from idlifecycle.connectors.google_transport import OneSendHttp
from idlifecycle.errors import ConfigError, UserError
from idlifecycle.model import Account, Action, Change, DeletedAccount, Group, Outcome, Result, Snapshot

SCOPES = (
    "https://www.googleapis.com/auth/admin.directory.user",
    # users.signOut needs this one; DISABLE and REVOKE_SESSIONS sign the user out everywhere.
    "https://www.googleapis.com/auth/admin.directory.user.security",
    # Groups are created (CREATE_GROUP), so the read-only and member-only scopes are not enough.
    "https://www.googleapis.com/auth/admin.directory.group",
    # Missing org units under org_unit_root are created.
    "https://www.googleapis.com/auth/admin.directory.orgunit",
)
"""The scopes to authorise for the client ID under domain-wide delegation, and no more."""

ATTRIBUTES = {"department": "department", "jobTitle": "title", "employeeType": "description",
              "costCenter": "costCenter"}
"""Account attribute -> field of the user's primary `organizations` entry (the Admin console's
"Employee information": Department, Job title, Type of employee, Cost centre)."""

ANCHOR_TYPE = "organization"
"""externalIds type the anchor is written under (the Admin console's "Employee ID")."""

USER_FIELDS = ("id,primaryEmail,aliases,name(givenName,familyName,displayName,fullName),suspended,orgUnitPath,"
               "externalIds,organizations,creationTime,lastLoginTime,changePasswordAtNextLogin,isAdmin,"
               "isDelegatedAdmin")
NEVER_SIGNED_IN = "1970-01-01T00:00:00.000Z"
MAX_ATTEMPTS = 7
PASSWORD_ALPHABET = string.ascii_letters + string.digits + "!#$%&*+-=?@^_"

_TRANSPORT_ERRORS = (httplib2.HttpLib2Error, OSError, socket.timeout, http.client.HTTPException, BatchError)
"""An answer lost on the way. http.client's own (a torn status line, a body cut short) reach us too:
the transport sends once and hands them up (google_transport) instead of trying again."""


@dataclass(frozen=True)
class GoogleOptions:
    """The connector's TOML table, checked."""

    admin: str
    domains: tuple[str, ...]
    org_unit_root: str
    customer: str = "my_customer"
    group_domain: str = ""
    leavers: str | None = None
    managed_group_marker: str = "[managed by idlifecycle]"
    quota_per_minute: int = 2400
    batch_size: int = 100
    timeout: float = 30.0
    """Seconds for each socket operation (connecting, and each read of an answer)."""
    give_up_after: float = 120.0
    """Seconds Google may answer nothing at all before the run's remaining changes to it fail."""
    replication_wait: float = 60.0
    """Seconds after one of its own creates during which a 404 or "User creation is not complete"
    about that object is waited out and retried rather than failed."""
    api_endpoint: str = "https://admin.googleapis.com/"
    secret: str = ""

    @classmethod
    def read(cls, context: ConnectorContext) -> GoogleOptions:
        source = context.source

        def text(key: str, default: str | None = None) -> str:
            value = context.option(key, default, required=default is None)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(source, key, "must be a non-empty string")
            return value.strip()

        def number(key: str, default: float, low: float, high: float) -> float:
            value = context.option(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise ConfigError(source, key, f"must be a number from {low:g} to {high:g}")
            return float(value)

        admin = text("admin")
        if "@" not in admin:
            raise ConfigError(source, "admin", f"{admin!r} is not an email address: name the super admin to act as")
        raw_domains = context.option("domains", required=True)
        domains = tuple(raw_domains.values()) if isinstance(raw_domains, Mapping) else raw_domains
        if not isinstance(domains, list | tuple) or not domains or not all(
                isinstance(d, str) and "." in d for d in domains):
            raise ConfigError(source, "domains", 'must list the managed domains, e.g. { staff = "school.example", '
                              'pupil = "pupils.school.example" }')
        root = text("org_unit_root")
        if not root.startswith("/"):
            raise ConfigError(source, "org_unit_root", f"{root!r} must be a full org unit path starting with '/'")
        leavers = context.option("leavers")
        if leavers is not None and (not isinstance(leavers, str) or not leavers.strip("/")):
            raise ConfigError(source, "leavers", "must be a container path under org_unit_root, e.g. \"Leavers\"")
        staff = raw_domains.get("staff") if isinstance(raw_domains, Mapping) else None
        endpoint = text("api_endpoint", cls.api_endpoint)
        return cls(
            admin=admin, domains=tuple(d.lower() for d in domains), org_unit_root=root.rstrip("/") or "/",
            customer=text("customer", cls.customer),
            group_domain=text("group_domain", str(staff or domains[0])).lower(),
            leavers=leavers.strip("/") if leavers else None,
            managed_group_marker=text("managed_group_marker", cls.managed_group_marker),
            quota_per_minute=int(number("quota_per_minute", cls.quota_per_minute, 1, 1_000_000)),
            batch_size=int(number("batch_size", cls.batch_size, 1, 1000)),
            timeout=number("timeout", cls.timeout, 1, 600),
            give_up_after=number("give_up_after", cls.give_up_after, 1, 3600),
            replication_wait=number("replication_wait", cls.replication_wait, 0, 600),
            api_endpoint=endpoint if endpoint.endswith("/") else endpoint + "/",
            secret=text("secret", f"{context.name}_service_account"),
        )


def _admin_role(user: Mapping[str, Any]) -> str:
    """Why a Google user is privileged: a super admin, or an admin with delegated roles ("" for neither)."""
    if user.get("isAdmin"):
        return "super admin"
    return "delegated admin" if user.get("isDelegatedAdmin") else ""


def _parse_time(value: str | None) -> datetime | None:
    if not value or value == NEVER_SIGNED_IN:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def generated_password() -> str:
    """Google insists on a password; nobody is told this one and the user must change it anyway."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(32))


@dataclass
class _Call:
    """One Directory API call made for one change."""

    index: int
    """Position of the change in the list being applied."""
    request: Callable[[], HttpRequest]
    kind: str
    """What the call does, for choosing how 404/409 and lost answers are read."""
    lookup: str = ""
    """For inserts: the address to look up when the answer is lost or says duplicate."""
    anchor: str | None = None
    attempts: int = 0
    done: bool = False
    outcome: Outcome | None = None
    detail: str = ""
    retryable: bool = False
    key: str | None = None
    refs: tuple[str, ...] = ()
    """Keys of the objects the call names (user id or address, group id): a 404 about one created
    this run, moments ago, is Google still propagating it, not the object being gone."""
    settling: bool = False
    """Sent again because of the propagation delay: does not use up an attempt."""
    settling_since: float | None = None
    lost: bool = False
    """An earlier send's answer was lost: "already so" to a later send is that send landing (APPLIED)."""
    unconfirmed: bool = False
    """Given up on after a send whose answer was lost: it may have landed (see Result.unconfirmed)."""


@dataclass
class _Pending:
    change: Change
    calls: list[_Call] = field(default_factory=list)
    result: Result | None = None


class GoogleConnector(Connector):
    """A Google Workspace domain, managed under one org unit root."""

    capabilities = Capabilities(containers=True, password_rules="google", revoke_sessions=True,  # noqa: S106
                                max_username_length=64, recycle_bin=True)

    option_keys: ClassVar[frozenset[str]] = frozenset({
        "admin", "api_endpoint", "batch_size", "customer", "domains", "group_domain", "leavers",
        "managed_group_marker", "org_unit_root", "quota_per_minute", "replication_wait", "secret",
        "timeout", "token_uri", "give_up_after",
    })

    def __init__(self, name: str, options: GoogleOptions, key_info: Mapping[str, str], *,
                 source: str = "", token_uri: str | None = None, on_close: Callable[[], None] | None = None) -> None:
        super().__init__(name)
        self.options = options
        self.source = source
        self._on_close = on_close
        self._client_email = str(key_info.get("client_email", "?"))
        self._client_id = str(key_info.get("client_id", "?"))
        info = dict(key_info)
        if token_uri:
            info["token_uri"] = token_uri
        try:
            credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=list(SCOPES))
        except (ValueError, KeyError) as error:
            raise UserError(f"{source}: secret {options.secret}: not a service-account key ({error}); "
                            "download a JSON key for the service account from the Cloud console") from None
        self._http = AuthorizedHttp(credentials.with_subject(options.admin),
                                    http=OneSendHttp(timeout=options.timeout))
        # static_discovery: the Directory API's description ships in the package; no network at build.
        self._service = build("admin", "directory_v1", http=self._http, static_discovery=True,
                              client_options={"api_endpoint": options.api_endpoint})
        # Building a resource walks the discovery document (~3 ms): build each once.
        self._users = self._service.users()
        self._groups_api = self._service.groups()
        self._members = self._service.members()
        self._orgunits = self._service.orgunits()
        # Batches ignore api_endpoint (FACTS.md section 3), so the batch URL is built here.
        self._batch_uri = options.api_endpoint + "batch/admin/directory_v1"
        self.pacer = Pacer(options.quota_per_minute)
        self.calls_sent = 0
        self.rate_limited = 0
        self.settling_retries = 0
        """Calls sent again because Google was still propagating an object this run created."""
        self._born: dict[str, float] = {}
        """lower-cased key (id or address) of each user and group this run created -> when."""
        self._batch_cap = options.batch_size
        """Largest batch Google has taken without quotaExceeded (its concurrency limit) this run."""
        self._stopped: str | None = None
        self._silent_since: float | None = None
        """When the first call sent since Google last answered anything went out (None: it just answered)."""
        self._emails: dict[str, str] = {}
        """user key -> primary email, for adding members (Google wants the member's address)."""
        self._raw: dict[str, dict[str, Any]] = {}
        """user key -> externalIds and organizations as read, so a patch keeps entries it does not own."""
        self._privileged: dict[str, str] = {}
        """user key -> its admin role ("" for none), as last read."""
        self._groups: dict[str, str] | None = None
        """managed group name / email / local part (lower-case) -> group key."""
        self._org_units: set[str] | None = None

    # -- construction --

    @classmethod
    def from_config(cls, context: ConnectorContext) -> GoogleConnector:
        options = GoogleOptions.read(context)
        if "token_uri" in context.options:
            raise ConfigError(context.source, "token_uri", "is only for the sandbox; remove it")
        return cls(context.name, options, _read_key(context, options.secret), source=context.source)

    def close(self) -> None:
        for connection in self._http.http.connections.values():
            connection.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    # -- paths --

    def _org_unit(self, container: str) -> str:
        container = container.strip("/")
        root = self.options.org_unit_root
        return root if not container else f"{root.rstrip('/')}/{container}"

    def _container(self, org_unit_path: str) -> str | None:
        """The neutral container of an org unit path, or None when outside the managed root."""
        root = self.options.org_unit_root.lower()
        path = org_unit_path.lower()
        if root == "/" or path == root:
            return org_unit_path.strip("/") if root == "/" else ""
        if path.startswith(root + "/"):
            return org_unit_path[len(root) + 1:]
        return None

    # -- single calls --

    def _execute(self, request: Callable[[], HttpRequest], *, missing_ok: bool = False) -> Any:
        """One paced call with retries; returns the parsed answer (None for 404 when missing_ok)."""
        for attempt in range(MAX_ATTEMPTS):
            if self._stopped or self._given_up():
                raise ConnectorError(str(self._stopped), retryable=True)
            self.pacer.acquire(1)
            self._sending()
            try:
                answered = request().execute(num_retries=0)
                self._silent_since = None
                return answered
            except HttpError as error:
                self._silent_since = None
                answer = read_error(error.resp.status, error.content)
                if answer.verdict is Verdict.NOT_FOUND and missing_ok:
                    return None
                if answer.verdict not in (Verdict.RETRY, Verdict.NOT_YET) or attempt == MAX_ATTEMPTS - 1:
                    raise self._error(answer.status, answer.reason, answer.message) from None
                self.rate_limited += answer.status in (403, 429)
            except RefreshError as error:
                raise self._auth_error(error) from None
            except (*_TRANSPORT_ERRORS, TransportError) as error:
                if attempt == MAX_ATTEMPTS - 1:
                    raise ConnectorError(f"cannot reach Google: {error}", retryable=True) from None
            finally:
                self.calls_sent += 1
                self.pacer.record(1)
            time.sleep(backoff(attempt))
        raise AssertionError("unreachable")

    def _sending(self) -> None:
        if self._silent_since is None:
            self._silent_since = time.monotonic()

    def _given_up(self) -> bool:
        """Whether Google has answered nothing for `give_up_after` seconds; if so the run stops sending to it."""
        since = self._silent_since
        if self._stopped is None and since is not None and time.monotonic() - since > self.options.give_up_after:
            self._stopped = (f"Google answered nothing for {time.monotonic() - since:.0f} s (give_up_after = "
                             f"{self.options.give_up_after:g}), so {self.name} was given up on for this run: this "
                             "change was not made, or not confirmed; the next run looks again")
        return self._stopped is not None

    def _pages(self, method: Callable[..., HttpRequest], key: str, **params: Any) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            page = self._execute(functools.partial(method, **params, **({"pageToken": token} if token else {})))
            yield from page.get(key, [])
            token = page.get("nextPageToken")
            if not token:
                return

    def _error(self, status: int, reason: str, message: str) -> ConnectorError:
        if reason == "dailyLimitExceeded":
            return ConnectorError(self._quota_message(message), retryable=True)
        if reason in ("accessNotConfigured", "domainCannotUseApis"):
            return AuthError(f"{self.source}: Google will not take Admin SDK calls from this project ({message}). "
                             "Fix: enable the Admin SDK API for the service account's Cloud project "
                             "(APIs & Services > Library), and check API access is allowed in the Admin console")
        if status == 401 or reason == "authError":
            return AuthError(f"{self.source}: Google did not accept the access token ({message}); check that "
                             f"the service account {self._client_email} still exists and its key is current")
        if reason == "insufficientPermissions":
            return AuthError(f"{self.source}: the access token lacks a scope this call needs ({message}); "
                             f"authorise client ID {self._client_id} for: {', '.join(SCOPES)}")
        if status == 403 and reason == "forbidden":
            return AuthError(f"{self.source}: admin: {self.options.admin} may not manage users and groups "
                             f"({message}); set `admin` to a super admin, or give them the User and Groups "
                             "management admin roles")
        return ConnectorError(f"Google answered {status} {reason}: {message}", retryable=status >= 500)

    def _quota_message(self, message: str) -> str:
        return (f"Google's daily limit for this project is used up ({message}); the run stopped and the "
                "remaining changes were not sent. Run again after the limit resets (daily limits reset at "
                "midnight Pacific time) or ask for more quota in the Cloud console (Admin SDK API > Quotas)")

    def _auth_error(self, error: RefreshError) -> AuthError:
        data = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], Mapping) else {}
        code = str(data.get("error", "")) or str(error).split(":")[0]
        description = str(data.get("error_description", "")) or str(error)
        prefix = f"{self.source}: Google refused to sign in the service account {self._client_email}"
        if code == "unauthorized_client":
            return AuthError(f"{prefix}: domain-wide delegation is not set up for client ID {self._client_id} "
                             "with every scope the connector needs. Fix: Admin console > Security > Access and "
                             "data control > API controls > Domain-wide delegation: add client ID "
                             f"{self._client_id} with the scopes {','.join(SCOPES)}")
        if code == "invalid_grant" and "email" in description.lower():
            return AuthError(f"{prefix}: admin: {self.options.admin} is not a user of this Google Workspace. "
                             "Fix: set `admin` to the primary email of a super admin")
        if code == "invalid_grant" and "signature" in description.lower():
            return AuthError(f"{prefix}: its key was refused (deleted or not this account's key). Fix: create a "
                             f"new JSON key for {self._client_email} and store it in the secret "
                             f"{self.options.secret}")
        return AuthError(f"{prefix}: {code}: {description}. Check the key in the secret {self.options.secret} "
                         f"and `admin` ({self.options.admin})")

    # -- snapshot --

    def snapshot(self) -> Snapshot:
        users = self._users
        self._load_org_units()
        accounts: list[Account] = []
        outside: set[str] = set()
        self._emails.clear()
        self._raw.clear()
        self._privileged.clear()
        for user in self._pages(users.list, "users", customer=self.options.customer, maxResults=500,
                                projection="basic", fields=f"nextPageToken,users({USER_FIELDS})"):
            email = str(user["primaryEmail"])
            local, _, domain = email.lower().partition("@")
            container = self._container(str(user.get("orgUnitPath", "/")))
            for alias in user.get("aliases", []):
                alias_local, _, alias_domain = str(alias).lower().partition("@")
                if alias_domain in self.options.domains:
                    outside.add(alias_local)
            if container is None:
                if domain in self.options.domains:
                    outside.add(local)
                continue
            accounts.append(self._account(user, container))
        accounts_by_key = {a.key: a for a in accounts}
        groups = []
        self._groups = {}
        for group in self._pages(self._groups_api.list, "groups", customer=self.options.customer,
                                 maxResults=200, fields="nextPageToken,groups(id,email,name,description)"):
            if self.options.managed_group_marker not in str(group.get("description", "")):
                continue
            self._remember_group(group)
            # Every member with an id (users anywhere, nested groups, the whole customer): a restricted
            # share's group is held to its approved members, so none may be left out of sight.
            members = {
                str(m["id"]): accounts_by_key[m["id"]].display_name if m["id"] in accounts_by_key
                else str(m.get("email", m["id"]))
                for m in self._pages(self._members.list, "members", groupKey=group["id"], maxResults=200,
                                     fields="nextPageToken,members(id,email,type)")
                if "id" in m}
            groups.append(Group(self.name, str(group["id"]), str(group.get("name") or group["email"]), members))
        return Snapshot(self.name, tuple(accounts), tuple(groups), frozenset(outside))

    def recycle_bin(self) -> list[DeletedAccount]:
        """The deleted users (restorable for 20 days) whose primary email is in one of `domains`.

        `users.list(showDeleted="true")` lists only deleted users, paged like the live ones (500 a page), with
        `deletionTime`; no `query` goes with it. The scope is the domain, not the org unit: a leaver may have
        been moved out of `org_unit_root` before it was deleted, and a name reserved too many is never wrong.
        """
        found = []
        for user in self._pages(self._users.list, "users", customer=self.options.customer, showDeleted="true",
                                maxResults=500, fields="nextPageToken,users(id,primaryEmail,externalIds,deletionTime)"):
            local, _, domain = str(user.get("primaryEmail") or "").partition("@")
            if not local or domain.lower() not in self.options.domains:
                continue
            anchor = next((str(e["value"]) for e in user.get("externalIds", []) or []
                           if e.get("type") == ANCHOR_TYPE and e.get("value")), None)
            found.append(DeletedAccount(self.name, str(user["id"]), local, anchor,
                                        _parse_time(user.get("deletionTime"))))
        return found

    def _account(self, user: Mapping[str, Any], container: str) -> Account:
        key = str(user["id"])
        name = user.get("name", {})
        anchor = next((str(e["value"]) for e in user.get("externalIds", []) or []
                       if e.get("type") == ANCHOR_TYPE and e.get("value")), None)
        organisation = next((o for o in user.get("organizations", []) or [] if o.get("primary")),
                            (user.get("organizations") or [{}])[0])
        attributes = {ours: str(organisation[theirs]) for ours, theirs in ATTRIBUTES.items()
                      if organisation.get(theirs)}
        self._emails[key] = str(user["primaryEmail"])
        self._raw[key] = {"externalIds": user.get("externalIds") or [],
                          "organizations": user.get("organizations") or []}
        self._privileged[key] = _admin_role(user)
        return Account(
            directory=self.name, key=key, username=str(user["primaryEmail"]).partition("@")[0],
            login=str(user["primaryEmail"]), given_name=str(name.get("givenName", "")),
            surname=str(name.get("familyName", "")),
            display_name=str(name.get("displayName") or name.get("fullName", "")), anchor=anchor,
            enabled=not user.get("suspended", False), container=container, attributes=attributes,
            must_change_password=bool(user.get("changePasswordAtNextLogin", False)),
            created=_parse_time(user.get("creationTime")), last_sign_in=_parse_time(user.get("lastLoginTime")),
            privileged=self._privileged[key])

    def privileged_reason(self, key: str) -> str:
        if key.lower() in self._born:
            return ""  # made by this run, as an ordinary account
        if key not in self._privileged:
            user = self._execute(lambda: self._users.get(userKey=key, fields="isAdmin,isDelegatedAdmin"),
                                 missing_ok=True)
            self._privileged[key] = _admin_role(user or {})
        return self._privileged[key]

    def _remember_group(self, group: Mapping[str, Any]) -> None:
        assert self._groups is not None
        email = str(group["email"]).lower()
        for name in (str(group.get("name", "")).lower(), email, email.partition("@")[0]):
            if name:
                self._groups.setdefault(name, str(group["id"]))

    def _load_org_units(self) -> None:
        root = self.options.org_unit_root
        if root != "/" and self._execute(lambda: self._orgunits.get(
                customerId=self.options.customer, orgUnitPath=root.lstrip("/"), fields="orgUnitPath"),
                missing_ok=True) is None:
            raise ConfigError(self.source, "org_unit_root", f"the org unit {root} does not exist in Google: "
                              "create it in the Admin console (Directory > Organisational units) or correct it")
        listing = self._execute(lambda: self._orgunits.list(
            customerId=self.options.customer, orgUnitPath=root, type="all",
            fields="organizationUnits(orgUnitPath)"))
        self._org_units = {root.lower(), *(str(u["orgUnitPath"]).lower()
                                           for u in listing.get("organizationUnits", []))}

    def _ensure_org_unit(self, path: str) -> None:
        """Create a missing org unit (and missing parents) under the managed root."""
        if self._org_units is None:
            self._load_org_units()
        assert self._org_units is not None
        if path.lower() in self._org_units:
            return
        parent, _, leaf = path.rpartition("/")
        parent = parent or "/"
        self._ensure_org_unit(parent)
        try:
            self._execute(lambda: self._orgunits.insert(
                customerId=self.options.customer, body={"name": leaf, "parentOrgUnitPath": parent}))
        except ConnectorError:
            # Another run may have created it meanwhile: believe the directory, not the error.
            if self._execute(lambda: self._orgunits.get(
                    customerId=self.options.customer, orgUnitPath=path.lstrip("/")), missing_ok=True) is None:
                raise
        self._org_units.add(path.lower())

    # -- apply --

    def apply_one(self, change: Change) -> Result:
        return next(iter(self.apply([change])))

    def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
        wave: list[_Pending] = []
        exclusive: set[str] = set()
        shared: set[str] = set()
        for change in changes:
            mine, reads = self._locks(change)
            if wave and (mine & (exclusive | shared) or reads & exclusive):
                yield from self._apply_wave(wave)
                wave, exclusive, shared = [], set(), set()
            wave.append(_Pending(change))
            exclusive |= mine
            shared |= reads
        if wave:
            yield from self._apply_wave(wave)

    @staticmethod
    def _locks(change: Change) -> tuple[set[str], set[str]]:
        """What a change writes and what it only relies on. The parts of a Google batch run in any
        order, so a change that writes what another in the same batch writes or relies on (a user
        renamed while added to a group, a group created while filled) waits for the next batch."""
        group = "group:" + str(change.group).lower()
        if change.action is Action.CREATE_GROUP:
            return {group}, set()
        if change.action in (Action.ADD_MEMBER, Action.REMOVE_MEMBER):
            return set(), {group, "user:" + str(change.target)}
        if change.action is Action.CREATE:
            return {"login:" + str(change.after.get("login", "")).lower()}, set()
        return {"user:" + str(change.target)}, set()

    def _apply_wave(self, wave: list[_Pending]) -> Iterator[Result]:
        for index, item in enumerate(wave):
            if self._stopped:
                item.result = Result(item.change.change_id, Outcome.FAILED, self._stopped, retryable=True)
                continue
            try:
                item.calls = self._calls_for(index, item.change)
            except ConnectorError as error:
                item.result = Result(item.change.change_id, Outcome.FAILED, str(error), retryable=error.retryable)
                continue
            if not item.calls:
                item.result = Result(item.change.change_id, Outcome.ALREADY, "nothing to change in Google")
        for item in wave:
            if item.result is not None:
                yield item.result
        waiting = [item for item in wave if item.result is None]
        calls = [call for item in waiting for call in item.calls]
        for _ in self._run(calls):
            # After each batch: the changes whose calls are all settled go to the caller now.
            settled = [item for item in waiting if all(c.done for c in item.calls)]
            waiting = [item for item in waiting if not all(c.done for c in item.calls)]
            for item in settled:
                yield self._result(item)
        for item in waiting:
            yield self._result(item)

    def _result(self, item: _Pending) -> Result:
        change_id = item.change.change_id
        failed = next((c for c in item.calls if c.outcome is Outcome.FAILED or c.outcome is None), None)
        if failed is not None:
            detail = failed.detail or self._stopped or "not sent"
            # Given up on with a send unanswered, or after some of its calls landed: the next run's look settles it.
            unconfirmed = any(c.unconfirmed for c in item.calls) or (
                self._stopped is not None and detail == self._stopped
                and any(c.outcome is Outcome.APPLIED for c in item.calls))
            return Result(change_id, Outcome.FAILED, detail, retryable=failed.retryable or failed.outcome is None,
                          unconfirmed=unconfirmed)
        key = next((c.key for c in item.calls if c.key), None)
        if item.change.action is Action.CREATE_GROUP and key and self._groups is not None:
            self._groups[str(item.change.group).lower()] = key
        if all(c.outcome is Outcome.ALREADY for c in item.calls):
            return Result(change_id, Outcome.ALREADY, item.calls[0].detail, key=key)
        return Result(change_id, Outcome.APPLIED, key=key)

    def _run(self, calls: list[_Call]) -> Iterator[None]:
        """Send calls in batches until each is settled, retrying what Google says is transient.

        Yields after each batch, so that what it settled is recorded before the next is sent.
        """
        attempt = 0
        todo = calls
        while todo and not self._given_up():
            retry: list[_Call] = []
            start = 0
            while start < len(todo) and not self._given_up():
                # The cap can shrink during the pass, when Google says quotaExceeded.
                chunk = todo[start:start + self._batch_cap]
                start += len(chunk)
                retry.extend(self._send_batch(chunk))
                yield
            todo = [c for c in retry if not c.done]
            for call in todo:
                if call.settling:
                    continue
                call.attempts += 1
                if call.attempts >= MAX_ATTEMPTS:
                    call.done, call.outcome, call.retryable = True, Outcome.FAILED, True
                    call.detail = call.detail or "Google kept asking to slow down; try again later"
            todo = [c for c in todo if not c.done]
            if todo and not self._stopped:
                # Only objects still propagating: short, growing waits; otherwise Google asked to back off.
                waiting = all(c.settling for c in todo)
                time.sleep(settle_delay(attempt) if waiting else backoff(attempt))
                attempt += 1
        for call in calls:
            if not call.done and self._stopped:
                call.done, call.outcome, call.detail, call.retryable = True, Outcome.FAILED, self._stopped, True
                call.unconfirmed = call.lost

    def _send_batch(self, chunk: list[_Call]) -> list[_Call]:
        """One batch; returns the calls to send again."""
        answers: dict[str, tuple[Any, HttpError | None]] = {}
        batch = BatchHttpRequest(callback=lambda rid, body, error: answers.__setitem__(rid, (body, error)),
                                 batch_uri=self._batch_uri)
        for number, call in enumerate(chunk):
            batch.add(call.request(), request_id=str(number))
        self.pacer.acquire(len(chunk))
        self._sending()
        try:
            batch.execute(http=self._http)
            self._silent_since = None
        except RefreshError as error:
            raise self._auth_error(error) from None
        except HttpError as error:
            self._silent_since = None
            answer = read_error(error.resp.status, error.content)
            if answer.verdict is not Verdict.RETRY:
                raise self._error(answer.status, answer.reason, answer.message) from None
            return chunk
        except (*_TRANSPORT_ERRORS, TransportError) as error:
            if isinstance(error, ConnectionRefusedError):
                return chunk  # refused at connect: nothing was sent, so nothing can have landed
            # The answer was lost: the writes may or may not have happened. Inserts are looked up
            # before being sent again; every other call is safe to repeat (patches set values,
            # 409 on a member and 404 on a delete then mean this send landed). A lookup that
            # cannot be made leaves only its own insert to be sent again (a duplicate answer tells).
            again: list[_Call] = []
            for call in chunk:
                call.lost = True
                try:
                    settled = self._settle_lost_insert(call)
                except ConnectorError:
                    settled = False
                if not settled:
                    again.append(call)
            return again
        finally:
            self.calls_sent += len(chunk)
            self.pacer.record(len(chunk))
        retry: list[_Call] = []
        concurrency_refused = 0
        for number, call in enumerate(chunk):
            body, failure = answers.get(str(number), (None, None))
            call.settling = False
            if failure is None:
                self._settle_ok(call, body)
                continue
            answer = read_error(failure.resp.status, failure.content)
            verdict = answer.verdict
            if verdict is Verdict.NOT_FOUND and self._propagating(call):
                verdict = Verdict.NOT_YET
            if verdict is Verdict.RETRY:
                self.rate_limited += answer.status in (403, 429)
                concurrency_refused += answer.reason == "quotaExceeded"
                call.detail = f"Google answered {answer.status} {answer.reason}"
                retry.append(call)
            elif verdict is Verdict.NOT_YET:
                self._wait_for_propagation(call, answer, retry)
            elif verdict is Verdict.STOP and answer.reason == "dailyLimitExceeded":
                self._stopped = self._quota_message(answer.message)
                retry.append(call)
            elif verdict is Verdict.STOP:
                raise self._error(answer.status, answer.reason, answer.message)
            else:
                self._settle_refused(call, verdict, f"Google answered {answer.status} {answer.reason}: "
                                                    f"{answer.message}")
        if concurrency_refused:
            # quotaExceeded is Google's limit on concurrent calls for one operation (the limits
            # page): the parts it took are what it will take at once, so later batches hold no more.
            taken = len(chunk) - concurrency_refused
            self._batch_cap = max(1, min(self._batch_cap, taken if taken > 0 else len(chunk) // 2))
        return retry

    def _propagating(self, call: _Call) -> bool:
        """True when the call names a user or group this run created within replication_wait."""
        now = time.monotonic()
        return any(now - self._born[ref] < self.options.replication_wait
                   for ref in call.refs if ref in self._born)

    def _wait_for_propagation(self, call: _Call, answer: Any, retry: list[_Call]) -> None:
        """Send the call again shortly, unless Google has been propagating for longer than replication_wait."""
        now = time.monotonic()
        since = min([self._born[r] for r in call.refs if r in self._born] or [call.settling_since or now])
        call.settling_since = call.settling_since or now
        if now - since < self.options.replication_wait:
            call.settling = True
            call.detail = f"Google answered {answer.status} {answer.reason}: {answer.message}"
            self.settling_retries += 1
            retry.append(call)
            return
        call.done, call.outcome, call.retryable = True, Outcome.FAILED, True
        call.detail = (f"Google was still finishing the account or group created moments before "
                       f"({answer.status} {answer.message}) after {self.options.replication_wait:g} s; "
                       "the next run tries again")

    def _settle_ok(self, call: _Call, body: Any) -> None:
        call.done, call.outcome = True, Outcome.APPLIED
        # Google acted on the objects this call names: they have propagated, so from now on a 404
        # about them means what it says (e.g. a user this run created and then deleted).
        for ref in call.refs:
            self._born.pop(ref, None)
        if call.kind in ("insert-user", "insert-group") and isinstance(body, Mapping):
            call.key = str(body.get("id"))
            self._note_created(call.key, call.lookup)
            if call.kind == "insert-user":
                self._emails[call.key] = call.lookup

    def _note_created(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            if key:
                self._born[key.lower()] = now

    def _settle_refused(self, call: _Call, verdict: Verdict, detail: str) -> None:
        call.done, call.detail = True, detail
        if verdict is Verdict.CONFLICT and call.kind == "insert-member":
            call.outcome, call.detail = Outcome.ALREADY, "already a member"
        elif verdict is Verdict.NOT_FOUND and call.kind in ("delete-member", "delete-user"):
            call.outcome, call.detail = Outcome.ALREADY, "already gone"
        elif verdict is Verdict.CONFLICT and call.kind in ("insert-user", "insert-group"):
            try:
                self._adopt_existing(call)
            except ConnectorError as error:  # the read that tells whose it is failed: this change only
                call.outcome, call.detail, call.retryable = Outcome.FAILED, str(error), error.retryable
        else:
            call.outcome = Outcome.FAILED
        if call.lost and call.outcome is Outcome.ALREADY:
            # Not so when planned; sent, its answer lost, sent again: this run's own write landed.
            call.outcome, call.detail = Outcome.APPLIED, ""

    def _adopt_existing(self, call: _Call) -> None:
        """After a duplicate: the object is ours (an earlier, unanswered attempt) only if it carries our mark."""
        if call.kind == "insert-user":
            # Google says the address is taken; a read may still miss the holder if it was made
            # moments ago (by an earlier attempt of ours whose answer was lost): wait it out.
            user = self._execute(lambda: self._users.get(userKey=call.lookup, fields=USER_FIELDS), missing_ok=True)
            if user is None and self._execute(lambda: self._groups_api.get(groupKey=call.lookup, fields="id"),
                                              missing_ok=True) is None:
                self._note_created(call.lookup)
                user = self._get_user(call.lookup, USER_FIELDS)
            ids = [str(e.get("value")) for e in (user or {}).get("externalIds", []) or []
                   if e.get("type") == ANCHOR_TYPE]
            outside = user is not None and (self._container(str(user.get("orgUnitPath", "/"))) is None
                                            or _admin_role(user))
            if outside and user is not None:
                # Ours only if it is in the managed org units and holds no admin role, whatever it carries.
                where = _admin_role(user) or f"in {user.get('orgUnitPath')}, outside {self.options.org_unit_root}"
                call.outcome = Outcome.FAILED
                call.detail = (f"conflict: {call.lookup} is already taken by an account that is {where}; "
                               "not taken over")
                return
            if user is not None and str(user["primaryEmail"]).lower() == call.lookup.lower() and call.anchor in ids:
                call.outcome, call.key, call.detail = Outcome.ALREADY, str(user["id"]), "already created"
                self._emails[call.key] = call.lookup
                # Made by an earlier attempt of this run whose answer was lost: just as new.
                self._note_created(call.key, call.lookup)
                return
            holder = "an alias of another account" if user and str(user["primaryEmail"]).lower() != \
                call.lookup.lower() else f"an account with anchor {', '.join(ids) or 'none'}"
            call.outcome = Outcome.FAILED
            call.detail = (f"{call.lookup} is already taken by {holder}; not taken over. Choose another name "
                           "or adopt that account explicitly")
            return
        group = self._execute(lambda: self._groups_api.get(groupKey=call.lookup), missing_ok=True)
        if group is not None and self.options.managed_group_marker in str(group.get("description", "")):
            call.outcome, call.key, call.detail = Outcome.ALREADY, str(group["id"]), "already created"
            self._note_created(call.key, call.lookup)
            return
        call.outcome = Outcome.FAILED
        call.detail = (f"the group address {call.lookup} is already in use by a group or user this tool does "
                       f"not manage (no {self.options.managed_group_marker!r} in its description)")

    def _settle_lost_insert(self, call: _Call) -> bool:
        """True when a lost insert turns out to have happened (settled); False to send it again."""
        if call.kind not in ("insert-user", "insert-group") or call.done:
            return call.done
        found = self._execute(lambda: (self._users.get(userKey=call.lookup, fields=USER_FIELDS)
                                       if call.kind == "insert-user" else
                                       self._groups_api.get(groupKey=call.lookup)), missing_ok=True)
        if found is None:
            return False
        call.done = True
        self._adopt_existing(call)
        if call.outcome is Outcome.ALREADY:
            call.outcome, call.detail = Outcome.APPLIED, ""
        return True

    # -- changes -> calls --

    def _calls_for(self, index: int, change: Change) -> list[_Call]:
        users = self._users
        after = change.after
        key = change.target or ""

        refs = (key.lower(),)

        def patch(body: Mapping[str, Any], kind: str = "patch") -> _Call:
            return _Call(index, lambda: users.patch(userKey=key, body=dict(body), fields="id"), kind, refs=refs)

        def sign_out() -> _Call:
            return _Call(index, lambda: users.signOut(userKey=key), "sign-out", refs=refs)

        action = change.action
        if action is not Action.CREATE and action is not Action.CREATE_GROUP and not key:
            raise ConnectorError(f"{action} needs the account's Google id (target)")
        if action is Action.CREATE:
            return [self._insert_user(index, change)]
        if action is Action.ADOPT:
            return [patch({"externalIds": self._anchored(key, str(after["anchor"]))})]
        if action is Action.UPDATE:
            body: dict[str, Any] = {}
            name = {k: str(after[ours]) for ours, k in (("given_name", "givenName"), ("surname", "familyName"),
                                                        ("display_name", "displayName")) if ours in after}
            if name:
                body["name"] = name
            if after.get("attributes"):
                body["organizations"] = self._organizations(key, after["attributes"])
            return [patch(body)] if body else []
        if action is Action.RENAME:
            login = str(after.get("login") or "")
            if "@" not in login:
                raise ConnectorError(f"rename needs the new primary email, got {login!r}")
            self._emails[key] = login
            return [patch({"primaryEmail": login})]
        if action is Action.MOVE:
            path = self._org_unit(str(after.get("container", "")))
            self._ensure_org_unit(path)
            return [patch({"orgUnitPath": path})]
        if action is Action.ENABLE:
            return [patch({"suspended": False})]
        if action is Action.DISABLE:
            body = {"suspended": True}
            if self.options.leavers:
                body["orgUnitPath"] = self._org_unit(self.options.leavers)
                self._ensure_org_unit(body["orgUnitPath"])
            return [patch(body), sign_out()]
        if action is Action.DELETE:
            return [_Call(index, lambda: users.delete(userKey=key), "delete-user", refs=refs)]
        if action is Action.REVOKE_SESSIONS:
            return [sign_out()]
        if action is Action.REQUIRE_PASSWORD_CHANGE:
            return [patch({"changePasswordAtNextLogin": True})]
        if action is Action.SET_PASSWORD:
            if not change.password:
                raise ConnectorError("set-password arrived without a password; nothing was sent")
            return [patch({"password": change.password,
                           "changePasswordAtNextLogin": bool(after.get("must_change_password", False))})]
        if action is Action.CREATE_GROUP:
            return [self._insert_group(index, str(change.group))]
        if action in (Action.ADD_MEMBER, Action.REMOVE_MEMBER):
            group_key = self._group_key(str(change.group))
            members = self._members
            if action is Action.REMOVE_MEMBER:
                return [_Call(index, lambda: members.delete(groupKey=group_key, memberKey=key), "delete-member")]
            email = self._email(key)
            return [_Call(index, lambda: members.insert(groupKey=group_key, body={"email": email, "role": "MEMBER"},
                                                        fields="id"), "insert-member",
                          refs=(group_key.lower(), key.lower(), email.lower()))]
        raise ConnectorError(f"the Google connector does not know how to {action}")

    def _insert_user(self, index: int, change: Change) -> _Call:
        after = change.after
        login = str(after.get("login") or "")
        anchor = str(after.get("anchor") or change.person_id or "")
        if "@" not in login or login.partition("@")[2].lower() not in self.options.domains:
            raise ConnectorError(f"cannot create {login!r}: the address must be in one of the managed domains "
                                 f"({', '.join(self.options.domains)})")
        if not anchor:
            raise ConnectorError(f"cannot create {login}: no anchor (person id) to write on it")
        path = self._org_unit(str(after.get("container", "")))
        self._ensure_org_unit(path)
        password = change.password or generated_password()
        body: dict[str, Any] = {
            "primaryEmail": login,
            "name": {"givenName": str(after.get("given_name", "")), "familyName": str(after.get("surname", "")),
                     **({"displayName": str(after["display_name"])} if after.get("display_name") else {})},
            "password": password,
            # With no password from the tool, nobody knows the random one: a change is the only way in.
            "changePasswordAtNextLogin": bool(after.get("must_change_password", False)) or change.password is None,
            "orgUnitPath": path,
            "externalIds": [{"type": ANCHOR_TYPE, "value": anchor}],
            "suspended": not bool(after.get("enabled", True)),
        }
        attributes = after.get("attributes") or {}
        unknown = sorted(set(attributes) - set(ATTRIBUTES))
        if unknown:
            raise ConnectorError(f"Google has no place for the attributes {', '.join(unknown)}; the mapping for "
                                 f"this directory may use only {', '.join(ATTRIBUTES)}")
        if attributes:
            body["organizations"] = [{"primary": True, **{ATTRIBUTES[k]: str(v) for k, v in attributes.items()}}]
        users = self._users
        return _Call(index, lambda: users.insert(body=body, fields="id,primaryEmail"), "insert-user",
                     lookup=login, anchor=anchor)

    def _insert_group(self, index: int, name: str) -> _Call:
        local = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")
        email = name if "@" in name else f"{local}@{self.options.group_domain}"
        body = {"email": email, "name": name.partition("@")[0] if "@" in name else name,
                "description": f"{self.options.managed_group_marker} Kept in step with the school's records."}
        groups = self._groups_api
        return _Call(index, lambda: groups.insert(body=body, fields="id,email"), "insert-group", lookup=email)

    def _group_key(self, name: str) -> str:
        if self._groups is None:
            self._groups = {}
            for group in self._pages(self._groups_api.list, "groups", customer=self.options.customer,
                                     maxResults=200, fields="nextPageToken,groups(id,email,name,description)"):
                if self.options.managed_group_marker in str(group.get("description", "")):
                    self._remember_group(group)
        key = self._groups.get(name.lower())
        if key is None:
            raise ConnectorError(f"no managed Google group called {name!r} (managed groups carry "
                                 f"{self.options.managed_group_marker!r} in their description)")
        return key

    def _get_user(self, key: str, fields: str) -> dict[str, Any] | None:
        """users.get; a 404 about a user this run created moments ago is Google still propagating
        it (reads trail the create: terraform-provider-googleworkspace#286), so it is asked again."""
        attempt = 0
        while True:
            user: dict[str, Any] | None = self._execute(lambda: self._users.get(userKey=key, fields=fields),
                                                        missing_ok=True)
            born = self._born.get(key.lower())
            if user is not None or born is None or time.monotonic() - born >= self.options.replication_wait:
                return user
            self.settling_retries += 1
            time.sleep(settle_delay(attempt))
            attempt += 1

    def _email(self, key: str) -> str:
        if key not in self._emails:
            user = self._get_user(key, "id,primaryEmail")
            if user is None:
                raise ConnectorError(f"no Google user with id {key}")
            self._emails[key] = str(user["primaryEmail"])
        return self._emails[key]

    def _current(self, key: str) -> dict[str, Any]:
        if key not in self._raw:
            user = self._get_user(key, "externalIds,organizations")
            if user is None:
                raise ConnectorError(f"no Google user with id {key}")
            self._raw[key] = {"externalIds": user.get("externalIds") or [],
                              "organizations": user.get("organizations") or []}
        return self._raw[key]

    def _anchored(self, key: str, anchor: str) -> list[dict[str, Any]]:
        """The user's externalIds with ours set, keeping ids of other types (Google replaces the list)."""
        kept = [e for e in self._current(key)["externalIds"] if e.get("type") != ANCHOR_TYPE]
        return [*kept, {"type": ANCHOR_TYPE, "value": anchor}]

    def _organizations(self, key: str, attributes: Mapping[str, str]) -> list[dict[str, Any]]:
        unknown = sorted(set(attributes) - set(ATTRIBUTES))
        if unknown:
            raise ConnectorError(f"Google has no place for the attributes {', '.join(unknown)}")
        organisations = [dict(o) for o in self._current(key)["organizations"]]
        primary = next((o for o in organisations if o.get("primary")), None)
        if primary is None:
            primary = {"primary": True}
            organisations.insert(0, primary)
        for ours, value in attributes.items():
            primary[ATTRIBUTES[ours]] = str(value)
        return organisations


def _read_key(context: ConnectorContext, secret: str) -> dict[str, str]:
    """The service-account key from the secret: its JSON text, or the path of the JSON file."""
    try:
        value = context.secrets[secret]
    except KeyError:
        raise UserError(f"{context.source}: the service-account key is missing: set the environment variable "
                        f"IDLIFECYCLE_{secret.upper()} or the file {secret} in $IDLIFECYCLE_SECRETS_DIR") from None
    text = value.strip()
    if not text.startswith("{"):
        try:
            text = Path(text).expanduser().read_text()
        except OSError as error:
            raise UserError(f"{context.source}: secret {secret}: cannot read the key file {text!r} "
                            f"({error.strerror}); give the JSON key itself or a readable path") from None
    try:
        info = json.loads(text)
    except ValueError:
        raise UserError(f"{context.source}: secret {secret}: is not JSON; give the service account's JSON key "
                        "as downloaded from the Cloud console") from None
    if not isinstance(info, dict) or info.get("type") != "service_account" or "private_key" not in info:
        raise UserError(f"{context.source}: secret {secret}: is not a service-account key (no type "
                        "\"service_account\" or no private_key)")
    return {str(k): str(v) for k, v in info.items()}
