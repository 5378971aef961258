"""A local Microsoft Graph v1.0 + Entra token endpoint emulator, for tests, the demo and the bench.

It speaks HTTPS (msal refuses anything else) with a self-signed certificate from
`idlifecycle.sandbox.tls`, HTTP/1.1 with Content-Length and Nagle off (44 ms per request
otherwise, FACTS.md section 2). One port serves both parts:

- `GET /{tenant}/v2.0/.well-known/openid-configuration`, `POST /{tenant}/oauth2/v2.0/token`
  (client credentials with a secret, or a certificate-signed client assertion that is verified);
  AAD-style error bodies for an unknown tenant, unknown app, bad secret or bad assertion.
- `/v1.0/...`: users, groups, members (`$ref`, `members@odata.bind` up to 20), `$select`,
  `$filter` (eq / ne / startswith / in, joined by `and`), `$top` paging with absolute
  `@odata.nextLink`, `/users/delta` and `/groups/delta` (`@odata.deltaLink`, `@removed`,
  `members@delta`, `$deltatoken=latest`; a link older than `delta_token_ttl` (7 days) -> 400
  `syncStateNotFound`, `Directory.expire_delta_tokens` -> 410; profile properties in the users
  delta `$select` -> 400 naming them),
  `directory/deletedItems` (list, restore, purge), `revokeSignInSessions`, `assignLicense`,
  `directoryRoles` + members, `roleManagement/directory/roleAssignments` and (seed `"pim": true`, Entra ID
  P2) `roleEligibilityScheduleInstances` from the same roles (seed `eligible` members), `subscribedSkus`,
  `reports/authenticationMethods/userRegistrationDetails` (Entra ID P1, AuditLog.Read.All, no `$select`;
  a seed user's `_registration` holds its isMfaRegistered / isMfaCapable / methodsRegistered),
  JSON `$batch` (more than 20 -> 400; absolute item URLs -> per-item 400; `dependsOn` -> 424 when
  the dependency failed; a batch that is neither fully sequential nor fully parallel -> 400 for the
  whole batch). Each token carries the app's consented application permissions; a call without one
  answers 403 `Authorization_RequestDenied` as Graph does.
- Write throttling: `write_limit` writes per `write_window` seconds per app, every batch item
  counted; over it, 429 `TooManyRequests` with or without `Retry-After`.
- Replication delay (`Replication`): a just-created user or group answers 404 for a short,
  seeded window (`replication_window`, on by default).
- Graph's other rules, each citing its source where it is kept: proxyAddresses unique across
  objects, user property length limits (`graph_directory`), app-only passwordProfile writes only
  with the User Administrator role (`register_application(directory_roles=…)`), signInActivity
  only in a tenant with Entra ID P1 (seed `"premium": true`), role-assignable groups
  (`isAssignableToRole`: no groups as members, members changed only with
  RoleManagement.ReadWrite.Directory, the only groups a seed may give a role). `tests/conformance/test_graph.py`
  holds the emulator to them.
- `latency` seconds added to every request; `faults` (see `Fault`) inject status codes, dropped
  connections and "applied, then the response was lost"; `--faults rate=…,seed=…,kinds=…`
  (`idlifecycle.sandbox.faults.FaultSpec`) injects seeded random ones at a rate.
- `GET /_emulator/stats` -> counters for the bench: `requests` (Graph HTTP requests), `writes`
  (write operations, each batch item counted as Graph counts it), `throttled` (429s), `batches`,
  `applied_writes`, `faults` (random faults injected, by kind). `GET /_emulator/writes` -> the
  write log (every write applied, passwords left out); `POST /_emulator/kill {"pid", "after"}`
  SIGKILLs a process once the log holds `after` writes (`idlifecycle.sandbox.faults.WriteLog`).

Seed file (JSON), read when the state file does not exist yet::

    {
      "tenant_id": "sandbox-tenant",
      "domains": ["staff.example.sch.uk", "pupils.example.sch.uk"],
      "subscribedSkus": [{"skuId": "...", "skuPartNumber": "STANDARDWOFFPACK_STUDENT"}],
      "premium": false,             # Entra ID P1 or P2 in the tenant (needed for signInActivity)
      "users": [{"userPrincipalName": "j.smith@staff.example.sch.uk", "givenName": "Jo",
                 "surname": "Smith", "displayName": "Jo Smith", "employeeId": "S1001",
                 "accountEnabled": true, "onPremisesSyncEnabled": null,
                 "signInActivity": {"lastSignInDateTime": "2026-09-01T08:00:00Z"}}],
      "groups": [{"displayName": "All Staff", "description": "Managed by idlifecycle",
                  "members": ["j.smith@staff.example.sch.uk"]}],
      "pim": false,                 # Entra ID P2: PIM eligibilities can be listed
      "directoryRoles": [{"displayName": "Global Administrator", "roleTemplateId": "62e90394-…",
                          "members": ["..."], "eligible": ["..."]}],
      "applications": [{"appId": "...", "secrets": ["<sha256 hex of the secret>"],
                        "certificates": ["-----BEGIN CERTIFICATE-----..."], "roles": ["User.ReadWrite.All"]}]
    }

Users take any Graph user property; `id`, `createdDateTime` and the rest default sensibly. Group
and role members are UPNs (or ids). The state file is the same directory in a fuller form
(ids, recycle bin, delta log) and is rewritten within a second of each change and on stop.

Run it on its own with `python -m idlifecycle.sandbox.graph --port 8443 --state state.json`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import math
import random
import re
import secrets
import socket
import ssl
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from idlifecycle.sandbox.faults import (
    FaultInjector,
    FaultSpec,
    WriteLog,
    faults_argument,
    kill_order,
    without_secrets,
)
from idlifecycle.sandbox.graph_directory import (
    DEFAULT_USER_PROPERTIES,
    MEMBER_BIND_LIMIT,
    PAGE_DEFAULT,
    PAGE_MAX,
    PERMISSIONS,
    ROLE_GROUP_MEMBERS_PERMISSION,
    Directory,
    GraphError,
    Json,
    Reply,
    bad_request,
    compile_filter,
    matches,
    not_found,
    project,
    service_principal_id,
)
from idlifecycle.sandbox.graph_signin import EntraSignIn
from idlifecycle.sandbox.http import EmulatorHandler
from idlifecycle.sandbox.tls import CertificateFiles, ensure_certificate

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
DELTA_UNSUPPORTED_USER_PROPERTIES = frozenset({
    "aboutMe", "birthday", "hireDate", "interests", "mySite", "pastProjects", "preferredName", "responsibilities",
    "schools", "skills", "signInActivity",
})
"""User properties `users/delta` refuses in $select with a 400 naming them: the profile properties
(https://github.com/microsoftgraph/microsoft-graph-docs/issues/14141 birthday,
https://github.com/microsoftgraph/microsoft-graph-docs/issues/4746 skills and aboutMe; the user resource
page lists them as returned only for a single user) and signInActivity
(https://github.com/microsoftgraph/microsoft-graph-explorer-v4/issues/3189)."""
PASSWORD_ADMIN_ROLES = ("User Administrator", "Privileged Authentication Administrator", "Global Administrator")
BATCH_LIMIT = 20
HANG_SECONDS = 3600.0
"""How long a "hang" fault without a `delay` holds a request: longer than any client waits."""


@dataclass
class Fault:
    """One injected failure for requests (or batch items) whose method and path match.

    mode: "status" answers `status` without applying; "after" applies, then answers `status`
    (e.g. 504: the write happened but the caller sees a gateway timeout); "drop" closes the
    connection without applying; "drop_after" applies, then closes the connection without a
    reply (inside a batch: the whole batch's reply is lost); "hang_after" applies, then waits
    `delay` seconds before closing without a reply (the caller's timeout fires first); "hang"
    accepts the request and never answers nor applies it (a directory that has stopped
    answering: `delay` seconds, or until the emulator stops, then the connection closes). `times`
    counts down to 0; `chance` below 1 fires the fault on that share of matching requests only,
    drawn from a generator seeded with `seed` (20 % connection resets the same on every run).
    `method` "*" matches every method. `html` answers with an HTML page instead of Graph's JSON error, as a proxy
    or gateway in front of Graph does ("Some HTTP responses may not contain a code/message/value
    response body because the request was routed through proxy and gateway services":
    https://learn.microsoft.com/en-us/previous-versions/azure/ad/graph/howto/azure-ad-graph-api-error-codes-and-error-handling).
    """

    method: str
    path: str
    """A regular expression searched in the path (without query), e.g. r"^/v1.0/users$"."""
    mode: str = "status"
    status: int = 503
    times: int = 1
    retry_after: int | None = None
    delay: float = 0.0
    html: bool = False
    chance: float = 1.0
    seed: int = 0
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)  # noqa: S311 - reproducible faults, not security

    def matches(self, method: str, path: str) -> bool:
        return (self.times > 0 and self.method in (method, "*") and re.search(self.path, path) is not None
                and (self.chance >= 1 or self._random.random() < self.chance))


@dataclass
class Throttle:
    """Graph's per-app write limit as a sliding window: `limit` writes per `window` seconds."""

    limit: int | None = None
    window: float = 150.0
    send_retry_after: bool = True
    stamps: deque[float] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self) -> float | None:
        """None when the write may go ahead; otherwise the seconds until one slot frees."""
        if self.limit is None:
            return None
        now = time.monotonic()
        with self.lock:
            while self.stamps and now - self.stamps[0] >= self.window:
                self.stamps.popleft()
            if len(self.stamps) >= self.limit:
                return self.window - (now - self.stamps[0])
            self.stamps.append(now)
            return None


REPLICATION_WINDOW = 0.3
"""Seconds a just-created object stays invisible by default: small, so every test and the demo meet it."""


@dataclass
class Replication:
    """Graph's replication delay: a just-created user or group is unknown to the replica that answers next.

    For a while after `POST /users` or `POST /groups` answered 201, a read of the new object by
    id or UPN, a `$filter` list and any write that refers to it (its own path, `@odata.id`,
    `members@odata.bind`) answer 404 `Request_ResourceNotFound` with Graph's usual body, then
    succeed on retry. Reported for group member adds and licence assignment right after a create
    (https://github.com/hashicorp/terraform-provider-azuread/pull/283,
    https://github.com/pulumi/pulumi-azuread/issues/2014), a GET of a just-created group
    (https://github.com/microsoftgraph/msgraph-sdk-java/issues/2575) and a first lookup of a new
    user 15-30 s after its create (https://github.com/Azure/azure-powershell/issues/6493).
    Each object's window is `window` x [0.5, 1) drawn from a generator seeded with `seed`, so a
    test sees the same windows on every run. A delta query leaves the object out too, and its
    delta link stops short of it, so a later round brings it (late, never lost).
    """

    window: float = REPLICATION_WINDOW
    seed: int = 0
    pending: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)  # noqa: S311 - reproducible windows, not security

    def begin(self, *keys: str) -> None:
        if self.window <= 0:
            return
        with self.lock:
            until = time.monotonic() + self.window * (0.5 + self.random.random() / 2)
            for key in keys:
                self.pending[key.lower()] = until

    def hidden(self, key: str) -> bool:
        with self.lock:
            until = self.pending.get(key.lower())
            if until is None:
                return False
            if time.monotonic() >= until:
                del self.pending[key.lower()]
                return False
            return True


class DropConnection(Exception):
    """Close the client's connection without a reply (after `delay` seconds)."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__("connection dropped")
        self.delay = delay


class GraphEmulator:
    """The emulator: a Directory behind a threaded HTTPS server. Use as a context manager."""

    def __init__(self, directory: Directory, *, host: str = "127.0.0.1", port: int = 0,
                 tls_dir: Path | None = None, state_file: Path | None = None, latency: float = 0.0,
                 write_limit: int | None = None, write_window: float = 150.0, send_retry_after: bool = True,
                 replication_window: float = REPLICATION_WINDOW, replication_seed: int = 0,
                 delta_token_ttl: float | None = None, faults: FaultSpec | None = None) -> None:
        self.directory = directory
        if delta_token_ttl is not None:
            directory.delta_token_ttl = delta_token_ttl
        self.replication = Replication(replication_window, replication_seed)
        self.state_file = state_file
        self.latency = latency
        self.throttle = Throttle(write_limit, write_window, send_retry_after)
        self.faults: list[Fault] = []
        self.injector = FaultInjector(faults or FaultSpec())
        """Random faults at a rate (`idlifecycle.sandbox.faults`), beside the scripted `faults` above."""
        self.write_log = WriteLog()
        """Every write the directory carried out (2xx), batch items included: what tests count "applied
        exactly once" against; iterating it gives (monotonic time, method, path, status) of each."""
        self.stats: dict[str, int] = {"requests": 0, "writes": 0, "throttled": 0, "batches": 0}
        self.reads: deque[str] = deque(maxlen=10_000)
        """The path and query of each Graph GET, the latest 10,000 (what tests count reads by)."""
        self.signing_key = secrets.token_bytes(32)
        self.sign_in = EntraSignIn(self, _aad_error)
        """The tenant as an identity provider (authorize, the code grant, the ID token keys)."""
        self._stats_lock = threading.Lock()
        self.certificate: CertificateFiles | None = None
        self._server = _Server((host, port), _Handler)
        self._server.emulator = self
        if tls_dir is not None:
            self.certificate = ensure_certificate(tls_dir)
            self._server.socket = self.certificate.server_context().wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = int(self._server.server_address[1])
        scheme = "https" if tls_dir is not None else "http"
        self.url = f"{scheme}://{host}:{self.port}"
        directory.base_url = f"{self.url}/v1.0"
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def tenant_id(self) -> str:
        return str(self.directory.state["tenant_id"])

    @property
    def authority(self) -> str:
        return f"{self.url}/{self.tenant_id}"

    @property
    def graph_url(self) -> str:
        return f"{self.url}/v1.0"

    def register_application(self, app_id: str, *, secret: str | None = None, certificate_pem: str | None = None,
                             roles: tuple[str, ...] = ("User.ReadWrite.All", "GroupMember.ReadWrite.All",
                                                       "Group.Create", "RoleManagement.Read.Directory",
                                                       "LicenseAssignment.ReadWrite.All", "AuditLog.Read.All"),
                             directory_roles: tuple[str, ...] = ("User Administrator",),
                             redirect_uris: tuple[str, ...] = ()) -> None:
        """An app registration with admin consent for `roles`; only the secret's hash is kept.

        `directory_roles` are the Entra roles its service principal holds: setting passwords
        app-only needs User Administrator or higher (see `_patch_user`). `redirect_uris` are the web
        platform's redirect URIs a sign-in may come back to.
        """
        self.directory.assign_app_roles(app_id, directory_roles)
        with self.directory.lock:
            app = self.directory.state["applications"].setdefault(
                app_id, {"secrets": [], "certificates": [], "roles": []})
            digest = hashlib.sha256(secret.encode()).hexdigest() if secret is not None else None
            if digest is not None and digest not in app["secrets"]:
                app["secrets"].append(digest)
            if certificate_pem is not None and certificate_pem not in app["certificates"]:
                app["certificates"].append(certificate_pem)
            app["roles"] = list(roles)
            app["redirect_uris"] = sorted({*app.get("redirect_uris", []), *redirect_uris})
            self.directory.dirty = True

    def start(self) -> GraphEmulator:
        serve = threading.Thread(target=self._server.serve_forever, name="graph-emulator", daemon=True)
        serve.start()
        self._threads.append(serve)
        if self.state_file is not None:
            saver = threading.Thread(target=self._save_loop, name="graph-emulator-saver", daemon=True)
            saver.start()
            self._threads.append(saver)
        return self

    def _save_loop(self) -> None:
        assert self.state_file is not None
        while not self._stopping.wait(0.5):
            if self.directory.dirty:
                self.directory.save(self.state_file)

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.state_file is not None:
            self.directory.save(self.state_file)

    def __enter__(self) -> GraphEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[name] = self.stats.get(name, 0) + n

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._stats_lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    # tokens ---------------------------------------------------------------------------------------
    def openid_configuration(self, tenant: str) -> Reply:
        if tenant != self.tenant_id:
            return _aad_error(400, "invalid_tenant", f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure "
                              "you have the correct tenant ID and are signing into the correct cloud.")
        base = f"{self.url}/{tenant}"
        return 200, {}, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "issuer": f"{base}/v2.0",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "response_types_supported": ["code", "id_token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "tenant_region_scope": "EU",
        }

    def issue_token(self, tenant: str, form: Mapping[str, str]) -> Reply:
        if tenant != self.tenant_id:
            return _aad_error(400, "invalid_tenant", f"AADSTS90002: Tenant '{tenant}' not found.")
        if form.get("grant_type") == "authorization_code":
            return self.sign_in.redeem(tenant, form)
        if form.get("grant_type") != "client_credentials":
            return _aad_error(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant "
                              "type.")
        client_id = form.get("client_id", "")
        app = self.directory.state["applications"].get(client_id)
        if app is None:
            return _aad_error(400, "unauthorized_client", f"AADSTS700016: Application with identifier '{client_id}' "
                              f"was not found in the directory '{tenant}'.")
        if form.get("scope") != GRAPH_SCOPE:
            return _aad_error(400, "invalid_scope", f"AADSTS1002012: The provided value for scope "
                              f"{form.get('scope')} is not valid. Client credential flows must have a scope value "
                              "with /.default suffixed to the resource identifier.")
        if "client_secret" in form:
            digest = hashlib.sha256(form["client_secret"].encode()).hexdigest()
            if digest not in app["secrets"]:
                return _aad_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the "
                                  "secret being sent in the request is the client secret value, not the client "
                                  "secret ID, for a secret added to app '" + client_id + "'.")
        elif "client_assertion" in form:
            problem = self._check_assertion(form["client_assertion"], client_id, app["certificates"], tenant)
            if problem:
                return _aad_error(401, "invalid_client", problem)
        else:
            return _aad_error(401, "invalid_client", "AADSTS7000216: 'client_assertion', 'client_secret' or "
                              "'request' is required for the 'client_credentials' grant type.")
        now = int(time.time())
        claims = {"aud": "https://graph.microsoft.com", "iss": f"{self.url}/{tenant}/", "tid": tenant,
                  "appid": client_id, "roles": list(app["roles"]), "iat": now, "nbf": now, "exp": now + 3600,
                  "oid": service_principal_id(client_id)}
        token = jwt.encode(claims, self.signing_key, algorithm="HS256")
        return 200, {}, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}

    def _check_assertion(self, assertion: str, client_id: str, certificates: list[str], tenant: str) -> str | None:
        audience = f"{self.url}/{tenant}/oauth2/v2.0/token"
        for pem in certificates:
            certificate = x509.load_pem_x509_certificate(pem.encode())
            try:
                claims = jwt.decode(assertion, certificate.public_key(),  # type: ignore[arg-type]
                                    algorithms=["PS256", "RS256"], audience=audience)
            except jwt.PyJWTError:
                continue
            if claims.get("iss") != client_id or claims.get("sub") != client_id:
                return "AADSTS700023: Client assertion audience or issuer claim does not match the client."
            header = jwt.get_unverified_header(assertion)
            der = certificate.public_bytes(serialization.Encoding.DER)
            expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
            if str(header.get("x5t#S256", expected)).rstrip("=") != expected:
                return "AADSTS700027: The certificate with identifier used to sign the client assertion is not " \
                       "registered on application."
            return None
        return "AADSTS700027: Client assertion failed signature validation."

    def caller_roles(self, authorization: str | None) -> list[str]:
        return list(self.caller(authorization).get("roles", []))

    def caller(self, authorization: str | None) -> dict[str, Any]:
        if not authorization or not authorization.startswith("Bearer "):
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            claims = jwt.decode(authorization[7:], self.signing_key, algorithms=["HS256"],
                                audience="https://graph.microsoft.com")
        except jwt.ExpiredSignatureError:
            raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.") \
                from None
        except jwt.PyJWTError:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.") \
                from None
        return dict(claims)

    # graph ----------------------------------------------------------------------------------------
    def graph(self, method: str, target: str, headers: Mapping[str, str], body: Any, roles: list[str]) -> Reply:
        """One Graph call (top level or batch item): permission, throttle, then the operation."""
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        write = method != "GET"
        if write:
            self.count("writes")
            wait = self.throttle.admit()
            if wait is not None:
                self.count("throttled")
                extra = {"Retry-After": str(max(1, math.ceil(wait)))} if self.throttle.send_retry_after else {}
                return GraphError(429, "TooManyRequests", "Too many requests.", headers=extra).reply()
        route, args = _route(method, path)
        if route is None:
            return GraphError(400, "BadRequest", f"Resource not found for the segment '{path.rsplit('/', 1)[-1]}'.") \
                .reply()
        needed = PERMISSIONS[route.permission]
        if not set(needed) & set(roles):
            return GraphError(403, "Authorization_RequestDenied",
                              "Insufficient privileges to complete the operation.").reply()
        unreplicated = next((k for k in (*args, *_references(body)) if self.replication.hidden(k)), None)
        if unreplicated is not None:
            return not_found(unreplicated).reply()
        try:
            reply = route.handler(self, args, query, headers, body)
        except GraphError as error:
            return error.reply()
        if write and 200 <= reply[0] < 300:
            made = reply[2].get("id") if isinstance(reply[2], dict) else None
            self.write_log.record({"method": method, "path": path, "status": reply[0], "body": without_secrets(body),
                                   "id": made})
        return reply

    def page(self, items: list[Json], query: Mapping[str, str], headers: Mapping[str, str], context: str,
             final: Json | None = None) -> Reply:
        """The first page of `items`; the rest through absolute `@odata.nextLink`s."""
        size = _page_size(query, headers)
        body: Json = {"@odata.context": f"{self.graph_url}/$metadata#{context}"}
        if len(items) > size:
            cursor = self.directory.open_cursor(items[size:], final or {})
            body["value"] = items[:size]
            body["@odata.nextLink"] = f"{self.graph_url}/_page?" + urlencode({"$skiptoken": cursor, "n": size})
        else:
            body["value"] = items
            body.update(final or {})
        return 200, {}, body

    def next_page(self, query: Mapping[str, str]) -> Reply:
        cursor = self.directory.take_cursor(query.get("$skiptoken", ""))
        size = int(query.get("n", PAGE_DEFAULT))
        items = cursor["items"]
        body: Json = {"value": items[:size]}
        if len(items) > size:
            cursor["items"] = items[size:]
            body["@odata.nextLink"] = f"{self.graph_url}/_page?" + urlencode(
                {"$skiptoken": query["$skiptoken"], "n": size})
        else:
            self.directory.cursors.pop(query["$skiptoken"], None)
            body.update(cursor["final"])
        return 200, {}, body


def _references(body: Any) -> list[str]:
    """The object keys a write body refers to (`@odata.id`, `members@odata.bind`)."""
    if not isinstance(body, dict):
        return []
    refs = [body.get("@odata.id"), *(body.get("members@odata.bind") or [])]
    return [str(r).rstrip("/").rsplit("/", 1)[-1] for r in refs if isinstance(r, str) and r]


def _replicated(em: GraphEmulator, items: list[Json]) -> list[Json]:
    return [item for item in items if not em.replication.hidden(str(item.get("id", "")))]


def _aad_error(status: int, error: str, description: str) -> Reply:
    codes = [int(c) for c in re.findall(r"AADSTS(\d+)", description)]
    return status, {}, {"error": error, "error_description": description, "error_codes": codes,
                        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                        "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())}


def _page_size(query: Mapping[str, str], headers: Mapping[str, str]) -> int:
    size = PAGE_DEFAULT
    prefer = headers.get("prefer") or headers.get("Prefer") or ""
    if match := re.search(r"odata\.maxpagesize=(\d+)", prefer):
        size = int(match.group(1))
    if "$top" in query:
        try:
            size = int(query["$top"])
        except ValueError:
            raise bad_request("Invalid page size specified.", "BadRequest") from None
    if not 1 <= size <= PAGE_MAX:
        raise bad_request(f"Invalid page size specified: '{size}'. Must be between 1 and {PAGE_MAX} inclusive.",
                          "Request_UnsupportedQuery")
    return size


def _select(query: Mapping[str, str]) -> list[str] | None:
    raw = query.get("$select")
    return [s.strip() for s in raw.split(",") if s.strip()] if raw else None


def _filter(query: Mapping[str, str]) -> list[tuple[str, str, Any]]:
    raw = query.get("$filter")
    return compile_filter(raw) if raw else []


Handler = Callable[[GraphEmulator, tuple[str, ...], Mapping[str, str], Mapping[str, str], Any], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    permission: str
    handler: Handler


ROUTES: list[Route] = []


def route(method: str, pattern: str, permission: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, re.compile("^/v1.0" + pattern + "$"), permission, handler))
        return handler
    return register


def _route(method: str, path: str) -> tuple[Route | None, tuple[str, ...]]:
    for candidate in ROUTES:
        if candidate.method == method and (match := candidate.pattern.match(path)):
            return candidate, match.groups()
    return None, ()


def _delta(emulator: GraphEmulator, query: Mapping[str, str], headers: Mapping[str, str], kind: str,
           read: Callable[[int | None, list[str] | None], tuple[list[Json], int]]) -> Reply:
    directory = emulator.directory
    select = _select(query)
    since: int | None = None
    token = query.get("$deltatoken")
    if token == "latest":  # noqa: S105 - Graph's keyword for "start from now", not a secret
        with directory.lock:
            seq = int(directory.state["seq"])
        link = f"{emulator.graph_url}/{kind}/delta?$deltatoken={directory.delta_token(seq, select)}"
        return 200, {}, {"value": [], "@odata.deltaLink": link}
    if token:
        since, select = directory.read_delta_token(token)
    items, seq = read(since, select)
    # A just-created object is not in the answer yet (replication), and the link stops short of it,
    # so the next round brings it: a delta query is late, never lossy.
    replicating = bool(emulator.replication.pending)  # most rounds: nothing to look up per item
    hidden = [item for item in items if replicating and emulator.replication.hidden(str(item.get("id", "")))]
    if hidden:
        with directory.lock:
            known = directory.state[kind]
            seqs = [int(known[h["id"]]["_seq"]) for h in hidden if h["id"] in known]
        if seqs:
            seq = min(seq, min(seqs) - 1)
        items = [item for item in items if item not in hidden]
    link = f"{emulator.graph_url}/{kind}/delta?$deltatoken={quote(directory.delta_token(seq, select))}"
    return emulator.page(items, {}, headers, f"{kind}(delta)", {"@odata.deltaLink": link})


@route("GET", r"/_page", "users.read")
def _next_page(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str], b: Any) -> Reply:
    return em.next_page(q)


@route("GET", r"/users", "users.read")
def _list_users(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str], b: Any) -> Reply:
    select = _select(q)
    # "$select=signInActivity or $filter=signInActivity" both read it (the user resource, signInActivity).
    sign_ins = bool(select and "signInActivity" in select) or "signInActivity/" in q.get("$filter", "")
    if sign_ins and not {"AuditLog.Read.All"} & set(h.get("x-roles", "").split()):
        raise GraphError(403, "Authorization_RequestDenied", "Calling principal does not have required MSGraph "
                         "permissions AuditLog.Read.All")
    if sign_ins and not em.directory.state.get("premium"):
        # signInActivity needs Entra ID P1/P2 in the tenant (https://learn.microsoft.com/en-us/graph/api/resources/
        # signinactivity; the 403 as reported in https://github.com/microsoftgraph/microsoft-graph-docs/issues/12772).
        raise GraphError(403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                         "Neither tenant is B2C or tenant doesn't have premium license")
    found = em.directory.list_users(_filter(q), select)
    return em.page(_replicated(em, found) if "$filter" in q else found, q, h, "users")


@route("POST", r"/users", "users.write")
def _create_user(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str],
                 b: Any) -> Reply:
    user = em.directory.create_user(dict(b or {}))
    em.replication.begin(user["id"], user["userPrincipalName"])
    return 201, {"Location": ""}, user


@route("GET", r"/users/delta", "users.read")
def _users_delta(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str],
                 b: Any) -> Reply:
    refused = [p for p in (_select(q) or []) if p in DELTA_UNSUPPORTED_USER_PROPERTIES]
    if refused:
        raise bad_request("Invalid request for delta query: for this entity set, $expand/$select is not supported "
                          f"for the following properties: {', '.join(refused)}", "BadRequest")
    return _delta(em, q, h, "users", em.directory.users_delta)


@route("GET", r"/users/([^/]+)", "users.read")
def _get_user(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str], b: Any) -> Reply:
    with em.directory.lock:
        return 200, {}, project(em.directory.user(args[0]), _select(q), DEFAULT_USER_PROPERTIES)


@route("PATCH", r"/users/([^/]+)", "users.write")
def _patch_user(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str],
                b: Any) -> Reply:
    if isinstance(b, dict) and "passwordProfile" in b and not em.directory.holds_role(
            h.get("x-caller-oid", ""), PASSWORD_ADMIN_ROLES):
        # App-only, passwordProfile needs User.ReadWrite.All *and* at least the User Administrator
        # role (https://learn.microsoft.com/en-us/graph/api/user-update, passwordProfile; Graph's
        # answer without the role: https://learn.microsoft.com/en-us/answers/questions/360090).
        # A create with an initial password needs the permission alone.
        raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    em.directory.update_user(args[0], dict(b or {}))
    return 204, {}, None


@route("DELETE", r"/users/([^/]+)", "users.write")
def _delete_user(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str],
                 b: Any) -> Reply:
    em.directory.delete_user(args[0])
    return 204, {}, None


@route("POST", r"/users/([^/]+)/revokeSignInSessions", "users.write")
def _revoke(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str], b: Any) -> Reply:
    em.directory.revoke_sessions(args[0])
    return 200, {}, {"@odata.context": f"{em.graph_url}/$metadata#Edm.Boolean", "value": True}


@route("POST", r"/users/([^/]+)/assignLicense", "licences")
def _assign(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str], b: Any) -> Reply:
    return 200, {}, em.directory.assign_license(args[0], dict(b or {}))


@route("GET", r"/directory/deletedItems/microsoft\.graph\.user", "users.read")
def _deleted(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str], b: Any) -> Reply:
    return em.page(em.directory.list_deleted(_select(q)), q, h, "directoryObjects")


@route("POST", r"/directory/deletedItems/([^/]+)/restore", "users.write")
def _restore(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str], b: Any) -> Reply:
    return 200, {}, em.directory.restore(args[0])


@route("DELETE", r"/directory/deletedItems/([^/]+)", "users.write")
def _purge(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str], b: Any) -> Reply:
    em.directory.purge(args[0])
    return 204, {}, None


@route("GET", r"/groups", "groups.read")
def _list_groups(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str],
                 b: Any) -> Reply:
    found = em.directory.list_groups(_filter(q), _select(q))
    return em.page(_replicated(em, found) if "$filter" in q else found, q, h, "groups")


@route("POST", r"/groups", "groups.create")
def _create_group(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str],
                  b: Any) -> Reply:
    group = em.directory.create_group(dict(b or {}))
    em.replication.begin(group["id"])
    return 201, {}, group


@route("GET", r"/groups/delta", "groups.read")
def _groups_delta(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str],
                  b: Any) -> Reply:
    return _delta(em, q, h, "groups", em.directory.groups_delta)


@route("GET", r"/groups/([^/]+)", "groups.read")
def _get_group(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str], b: Any) -> Reply:
    return 200, {}, em.directory.group(args[0], _select(q))


def _may_change_members(em: GraphEmulator, key: str, h: Mapping[str, str]) -> None:
    """A role-assignable group's members change only with ROLE_GROUP_MEMBERS_PERMISSION."""
    if em.directory.role_assignable(key) and ROLE_GROUP_MEMBERS_PERMISSION not in h.get("x-roles", "").split():
        raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


@route("PATCH", r"/groups/([^/]+)", "groups.members")
def _patch_group(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str],
                 b: Any) -> Reply:
    if isinstance(b, dict) and "members@odata.bind" in b:
        _may_change_members(em, args[0], h)
    em.directory.update_group(args[0], dict(b or {}))
    return 204, {}, None


@route("DELETE", r"/groups/([^/]+)", "groups.create")
def _delete_group(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str],
                  b: Any) -> Reply:
    em.directory.delete_group(args[0])
    return 204, {}, None


@route("GET", r"/groups/([^/]+)/members", "groups.read")
def _members(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str], b: Any) -> Reply:
    ids = em.directory.group_member_ids(args[0])
    return em.page(em.directory.list_members(ids, _select(q)), q, h, "directoryObjects")


@route("POST", r"/groups/([^/]+)/members/\$ref", "groups.members")
def _add_ref(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str], b: Any) -> Reply:
    _may_change_members(em, args[0], h)
    em.directory.add_member_ref(args[0], dict(b or {}))
    return 204, {}, None


@route("DELETE", r"/groups/([^/]+)/members/([^/]+)/\$ref", "groups.members")
def _remove_ref(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str],
                b: Any) -> Reply:
    _may_change_members(em, args[0], h)
    em.directory.remove_member_ref(args[0], args[1])
    return 204, {}, None


@route("GET", r"/directoryRoles", "roles.read")
def _roles(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str], b: Any) -> Reply:
    return em.page(em.directory.list_roles(), q, h, "directoryRoles")


@route("GET", r"/directoryRoles/([^/]+)/members", "roles.read")
def _role_members(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str],
                  b: Any) -> Reply:
    ids = em.directory.role_member_ids(args[0])
    return em.page(em.directory.list_members(ids, _select(q)), q, h, "directoryObjects")


@route("GET", r"/roleManagement/directory/roleAssignments", "roles.read")
def _role_assignments(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str],
                      b: Any) -> Reply:
    # https://learn.microsoft.com/en-us/graph/api/rbacapplication-list-roleassignments: active assignments,
    # $filter on principalId / roleDefinitionId (eq, in).
    return em.page(em.directory.role_assignments(_filter(q)), q, h, "roleManagement/directory/roleAssignments")


@route("GET", r"/roleManagement/directory/roleEligibilityScheduleInstances", "roles.read")
def _role_eligibilities(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str],
                        b: Any) -> Reply:
    # https://learn.microsoft.com/en-us/graph/api/rbacapplication-list-roleeligibilityscheduleinstances:
    # PIM eligibilities, which Graph lists only in a tenant with Entra ID P2 (seed `"pim": true`), and only
    # to an app with one of its own permissions: PIM answers that refusal in its own shape, a JSON string
    # inside an UnknownError (microsoft-graph-docs#22292).
    if not set(PERMISSIONS["roles.eligible"]) & set(h.get("x-roles", "").split()):
        raise GraphError(403, "UnknownError", json.dumps({
            "errorCode": "PermissionScopeNotGranted", "message": "Authorization failed due to missing permission "
            f"scope {','.join(PERMISSIONS['roles.eligible'])}.", "instanceAnnotations": []}, separators=(",", ":")))
    if not em.directory.state.get("pim"):
        raise GraphError(403, "AadPremiumLicenseRequired",
                         "The tenant needs an AAD Premium 2 license to use Privileged Identity Management.")
    return em.page(em.directory.role_assignments(_filter(q), eligible=True), q, h,
                   "roleManagement/directory/roleEligibilityScheduleInstances")


REGISTRATION_REPORT = ("https://learn.microsoft.com/en-us/graph/api/"
                       "authenticationmethodsroot-list-userregistrationdetails")


@route("GET", r"/reports/authenticationMethods/userRegistrationDetails", "users.signins")
def _registration_details(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str],
                          b: Any) -> Reply:
    # REGISTRATION_REPORT: AuditLog.Read.All (application), only $filter and $orderBy; the report needs Entra ID
    # P1 or P2 (userRegistrationDetails resource: "license requirements"), refused without it as users report
    # (https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/8777). A seed user's
    # `_registration` holds its isMfaRegistered / isMfaCapable / methodsRegistered.
    if "$select" in q:
        raise bad_request("Query option '$select' is not allowed.", "BadRequest")
    if not em.directory.state.get("premium"):
        raise GraphError(403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                         "Neither tenant is B2C or tenant doesn't have premium license")
    with em.directory.lock:
        admins = {m for r in em.directory.state["roles"].values() for m in r["members"]}
        details = [{
            "id": u["id"], "userPrincipalName": u["userPrincipalName"], "userDisplayName": u.get("displayName"),
            "isAdmin": u["id"] in admins, "userType": u.get("userType") or "member",
            "isMfaRegistered": bool((u.get("_registration") or {}).get("isMfaRegistered", False)),
            "isMfaCapable": bool((u.get("_registration") or {}).get("isMfaCapable", False)),
            "methodsRegistered": list((u.get("_registration") or {}).get("methodsRegistered", [])),
        } for u in em.directory.state["users"].values()]
    clauses = _filter(q)
    return em.page([d for d in details if matches(d, clauses)], q, h,
                   "reports/authenticationMethods/userRegistrationDetails")


@route("GET", r"/subscribedSkus", "licences")
def _skus(em: GraphEmulator, args: tuple[str, ...], q: Mapping[str, str], h: Mapping[str, str], b: Any) -> Reply:
    with em.directory.lock:
        return 200, {}, {"value": list(em.directory.state["skus"])}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: GraphEmulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that does not trust the self-signed certificate ends the handshake at once (the sign-in
        tests' Chromium, before it is told to go on): not an emulator fault worth a traceback."""
        if isinstance(sys.exc_info()[1], ssl.SSLError):
            return
        super().handle_error(request, client_address)


class _Handler(EmulatorHandler):
    server: _Server

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.settimeout(30)
            self.connection.do_handshake()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ssl.SSLError, ConnectionError, TimeoutError):
            self.close_connection = True

    def serve(self, method: str) -> None:
        emulator = self.server.emulator
        if self.path.startswith("/v1.0/"):
            emulator.count("requests")
            if method == "GET":
                emulator.reads.append(unquote(self.path))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self.path.startswith("/_emulator/") and emulator.write_log.hold():
            self._drop()  # came while frozen for a kill: its caller is gone
            return
        if emulator.latency:
            time.sleep(emulator.latency)
        path = urlsplit(self.path).path
        try:
            status, headers, body = self._dispatch(emulator, method, path, raw)
        except DropConnection as drop:
            emulator.write_log.lost()
            emulator._stopping.wait(drop.delay)  # a hang ends when the emulator stops
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if not path.startswith("/_emulator/") and emulator.write_log.hold():
            emulator.write_log.lost()
            self._drop()
            return
        self._reply(status, headers, body)
        emulator.write_log.answered()

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _dispatch(self, emulator: GraphEmulator, method: str, path: str, raw: bytes) -> Reply:
        if path.startswith("/_emulator/"):
            return _control(emulator, method, path, raw)
        if match := re.match(r"^/([^/]+)/v2\.0/\.well-known/openid-configuration$", path):
            return emulator.openid_configuration(match.group(1))
        if match := re.match(r"^/([^/]+)/discovery/v2\.0/keys$", path):
            return emulator.sign_in.keys()
        if method in ("GET", "POST") and (match := re.match(r"^/([^/]+)/oauth2/v2\.0/authorize$", path)):
            if match.group(1) != emulator.tenant_id:
                return emulator.openid_configuration(match.group(1))  # AADSTS90002 for an unknown tenant
            params = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
            params.update({k: v[-1] for k, v in parse_qs(raw.decode()).items()})
            return emulator.sign_in.authorize(match.group(1), method, params)
        if method == "POST" and (match := re.match(r"^/([^/]+)/oauth2/v2\.0/token$", path)):
            form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
            return emulator.issue_token(match.group(1), form)
        fault = emulator.take_fault(method, path)
        if fault is not None and fault.mode in ("status", "drop", "hang"):
            if fault.mode == "drop":
                raise DropConnection
            if fault.mode == "hang":
                raise DropConnection(fault.delay or HANG_SECONDS)
            return _fault_reply(fault)
        drawn = emulator.injector.draw(writes=method != "GET") if path.startswith("/v1.0/") else None
        if drawn == "reset_before":
            raise DropConnection
        if drawn in ("throttle", "unavailable"):
            return _drawn_reply(emulator, drawn)
        try:
            claims = emulator.caller(self.headers.get("Authorization"))
            roles = list(claims.get("roles", []))
            body = json.loads(raw) if raw else None
        except GraphError as error:
            return error.reply()
        except ValueError:
            return GraphError(400, "BadRequest", "Unable to read JSON request payload.").reply()
        headers = {k.lower(): v for k, v in self.headers.items()}
        headers["x-roles"] = " ".join(roles)
        headers["x-caller-oid"] = str(claims.get("oid", ""))
        if method == "POST" and path == "/v1.0/$batch":
            reply, lost = _batch(emulator, body, headers, roles)
        else:
            reply, lost = emulator.graph(method, self.path, headers, body, roles), None
        if fault is not None:
            if fault.mode in ("drop_after", "hang_after"):
                raise DropConnection(fault.delay)
            return _fault_reply(fault)
        if drawn in ("reset_after", "hang"):
            raise DropConnection(emulator.injector.spec.hang if drawn == "hang" else 0.0)
        if lost is not None:
            raise DropConnection(lost.delay)
        return reply

    def _reply(self, status: int, headers: Mapping[str, str], body: Any) -> None:
        if isinstance(body, bytes):  # a proxy's page, not Graph's JSON
            self.send_payload(status, body, {**headers, "Content-Type": "text/html; charset=utf-8"})
            return
        data = b"" if body is None else json.dumps(body).encode()
        content_type = "application/json; odata.metadata=minimal; charset=utf-8" if data else ""
        self.send_payload(status, data, {**headers, "Content-Type": content_type, "request-id": str(uuid.uuid4())})


def _control(emulator: GraphEmulator, method: str, path: str, raw: bytes) -> Reply:
    """The emulator's own paths, for tests and the bench in another process (never Graph's)."""
    if method == "GET" and path == "/_emulator/stats":
        return 200, {}, {**emulator.stats, "applied_writes": len(emulator.write_log),
                         "faults": dict(emulator.injector.fired)}
    if method == "GET" and path == "/_emulator/writes":
        return 200, {}, {"writes": emulator.write_log.since(), "killed_at": emulator.write_log.killed_at,
                         "frozen_at": emulator.write_log.frozen_at}
    if method == "POST" and path == "/_emulator/kill":
        return 200, {}, kill_order(emulator.write_log, json.loads(raw or b"{}"))
    return GraphError(404, "NotFound", f"no emulator path {path}").reply()


def _drawn_reply(emulator: GraphEmulator, kind: str) -> Reply:
    """A random fault's answer (`idlifecycle.sandbox.faults`): 429 with Retry-After, or 503."""
    if kind == "throttle":
        wait = {"Retry-After": str(emulator.injector.spec.retry_after)}
        return GraphError(429, "TooManyRequests", "Too many requests (injected).", headers=wait).reply()
    return GraphError(503, "serviceNotAvailable", "Service unavailable (injected).").reply()


def _fault_reply(fault: Fault) -> Reply:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    if fault.html:
        page = f"<html><head><title>{fault.status}</title></head><body>Access denied by the web proxy</body></html>"
        return fault.status, headers, page.encode()
    codes = {429: "TooManyRequests", 503: "serviceNotAvailable", 504: "gatewayTimeout", 500: "generalException"}
    return GraphError(fault.status, codes.get(fault.status, "UnknownError"), "Injected fault.", headers=headers).reply()


def _batch(emulator: GraphEmulator, body: Any, headers: Mapping[str, str],
           roles: list[str]) -> tuple[Reply, Fault | None]:
    """Run a JSON batch in order; returns the reply and the item fault, if any, that loses the whole reply."""
    emulator.count("batches")
    requests = (body or {}).get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        return GraphError(400, "BadRequest", "Invalid batch payload format.").reply(), None
    if len(requests) > BATCH_LIMIT:
        return GraphError(400, "BadRequest", f"Too many requests in the batch: the limit is {BATCH_LIMIT}.").reply(), \
            None
    if not _fully_sequential_or_parallel(requests):
        # Graph refuses the whole batch, running none of it, when `dependsOn` chains sit beside
        # independent items: "Batch should be either fully sequential or fully parallel"
        # (https://learn.microsoft.com/en-us/graph/json-batching, "Sequencing requests with the
        # dependsOn property"; the 400 is reported in
        # https://github.com/microsoftgraph/microsoft-graph-docs/issues/16280).
        return GraphError(400, "BadRequest", "Batch should be either fully sequential or fully parallel.").reply(), \
            None
    statuses: dict[str, int] = {}
    responses: list[Json] = []
    lost: Fault | None = None
    for item in requests:
        item_id = str(item.get("id"))
        method = str(item.get("method", "GET")).upper()
        url = str(item.get("url", ""))
        depends = item.get("dependsOn") or []
        if url.startswith(("http://", "https://")) or not url.startswith("/"):
            reply = GraphError(400, "BadRequest", "Invalid request URL: batch request URLs must be relative, e.g. "
                               "'/users'.").reply()
        elif any(statuses.get(str(d), 0) >= 400 or str(d) not in statuses for d in depends):
            reply = GraphError(424, "FailedDependency", "Failed Dependency").reply()
        else:
            fault = emulator.take_fault(method, "/v1.0" + urlsplit(url).path)
            drawn = emulator.injector.draw(writes=method != "GET", part=True)
            if fault is not None and fault.mode == "status":
                reply = _fault_reply(fault)
            elif drawn is not None:
                reply = _drawn_reply(emulator, drawn)
            else:
                item_headers = {**{k.lower(): v for k, v in (item.get("headers") or {}).items()}, **headers}
                reply = emulator.graph(method, "/v1.0" + url, item_headers, item.get("body"), roles)
                if fault is not None and fault.mode == "after":
                    reply = _fault_reply(fault)
                elif fault is not None:
                    lost = fault
        status, item_headers_out, item_body = reply
        statuses[item_id] = status
        entry: Json = {"id": item_id, "status": status, "headers": dict(item_headers_out)}
        if item_body is not None:
            entry["body"] = item_body
            entry["headers"]["Content-Type"] = "application/json"
        responses.append(entry)
    return (200, {}, {"responses": responses}), lost


def _fully_sequential_or_parallel(requests: list[Any]) -> bool:
    """No item has `dependsOn`, or every item after the first depends on exactly the one before it."""
    depends = [list(item.get("dependsOn") or []) if isinstance(item, dict) else [] for item in requests]
    if not any(depends):
        return True
    ids = [str(item.get("id")) if isinstance(item, dict) else "" for item in requests]
    return not depends[0] and all([str(d) for d in depends[i]] == [ids[i - 1]] for i in range(1, len(ids)))


def open_directory(state_file: Path | None, seed_file: Path | None, *,
                   domains: Iterable[str] = ("example.sch.uk",)) -> Directory:
    """The saved state when there is one, else the seed, else an empty sandbox tenant with `domains`."""
    if state_file is not None and state_file.exists():
        return Directory.load(state_file)
    if seed_file is not None:
        return Directory.from_seed(json.loads(seed_file.read_text(encoding="utf-8")))
    return Directory.empty("sandbox-tenant", [d.lower() for d in domains])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m idlifecycle.sandbox.graph", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state", type=Path, help="JSON state file (created from --seed when missing)")
    parser.add_argument("--seed", type=Path)
    parser.add_argument("--tls-dir", type=Path, help="where the self-signed certificate lives (default: next to state)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--write-limit", type=int, default=None, help="writes per window per app (Graph: 3000)")
    parser.add_argument("--write-window", type=float, default=150.0, help="seconds (Graph: 150)")
    parser.add_argument("--no-retry-after", action="store_true", help="answer 429 without Retry-After")
    parser.add_argument("--replication-window", type=float, default=REPLICATION_WINDOW,
                        help="seconds a just-created object stays invisible (0: off)")
    parser.add_argument("--faults", type=faults_argument, default=None, metavar="rate=0.2,seed=7,kinds=...",
                        help="random faults (idlifecycle.sandbox.faults); kinds: "
                        "throttle+unavailable+reset_before+reset_after+hang")
    parser.add_argument("--app", action="append", default=[], metavar="CLIENT_ID:SECRET_FILE",
                        help="register an app whose client secret is the content of SECRET_FILE")
    args = parser.parse_args(argv)
    tls_dir = args.tls_dir or (args.state.parent if args.state else Path.cwd()) / "tls"
    emulator = GraphEmulator(open_directory(args.state, args.seed), port=args.port, tls_dir=tls_dir,
                             state_file=args.state, latency=args.latency_ms / 1000, write_limit=args.write_limit,
                             write_window=args.write_window, send_retry_after=not args.no_retry_after,
                             replication_window=args.replication_window, faults=args.faults)
    for app in args.app:
        client_id, _, secret_file = app.partition(":")
        emulator.register_application(client_id, secret=Path(secret_file).read_text(encoding="utf-8").strip())
    emulator.start()
    print(json.dumps({"url": emulator.url, "tenant_id": emulator.tenant_id,
                      "certificate": str(emulator.certificate.cert) if emulator.certificate else None}), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        # Stops when stdin closes, so a killed parent leaves no emulator behind.
        sys.stdin.read()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["MEMBER_BIND_LIMIT", "Directory", "Fault", "GraphEmulator", "not_found", "open_directory"]
