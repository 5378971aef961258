"""A local emulator of the Google Admin SDK Directory API and Google's OAuth token endpoint.

It is the test target for the Google connector, the bench's target (run as a separate process:
`python -m idlifecycle.sandbox.google --port 8085 --state FILE`) and the demo's embedded Google
tenant. It answers what the real client library sends: the Directory paths the connector uses,
`fields` projection, paging, Google's error bodies, multipart/mixed batches exactly as
googleapiclient writes and parses them, a per-minute quota over a sliding window, a limit on
concurrent requests for one operation (403 quotaExceeded), the propagation delay after a create
(412 "User creation is not complete.", 404 on member adds), the documented name lengths, and a token
endpoint that verifies a service account's RS256-signed JWT (domain-wide delegation: `sub` must
be a user, every requested scope must be authorised for the client). It is also Google's OpenID Connect
provider for staff sign-in (`google_signin`: authorize, sign-in form, the code grant on `/token`, keys).

Plain HTTP on 127.0.0.1: google-auth accepts an http `token_uri`, and nothing here leaves the
machine. The `/_emulator/...` paths let a test or the bench inject faults and read counters
from another process; they exist only in the emulator. `--faults rate=…,seed=…,kinds=…` (or
`faults=FaultSpec(...)`) injects seeded random faults; `GET /_emulator/writes` is the write log and
`POST /_emulator/kill` arms a kill point on it (`idlifecycle.sandbox.faults`).
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import json
import random
import re
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from email.message import Message
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from googleapiclient.discovery_cache import get_static_doc

from idlifecycle.sandbox.faults import (
    FaultInjector,
    FaultSpec,
    WriteLog,
    faults_argument,
    kill_order,
    without_secrets,
)
from idlifecycle.sandbox.files import write_atomically
from idlifecycle.sandbox.google_directory import (
    REPLICATION_WINDOW_SECONDS,
    Answer,
    Directory,
    google_error,
    parse_fields,
    project,
)
from idlifecycle.sandbox.google_roles import AdminRoles
from idlifecycle.sandbox.google_signin import GoogleSignIn
from idlifecycle.sandbox.google_transfers import API_PREFIX as TRANSFERS_PREFIX
from idlifecycle.sandbox.google_transfers import DataTransfers
from idlifecycle.sandbox.google_transfers import method_scopes as transfer_scopes
from idlifecycle.sandbox.http import EmulatorHandler

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
API_PREFIX = "/admin/directory/v1/"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
LIMITS_PAGE = "https://developers.google.com/admin-sdk/directory/v1/limits"

CONCURRENT_CALLS_PER_OPERATION = 50
"""Calls of one operation (e.g. members.insert) Google takes at once before answering 403
quotaExceeded, "Indicates that the limit of concurrent requests for a certain operation has been
reached. Retry using exponential back-off" (Directory API, Limits and quotas: LIMITS_PAGE). The
parts of a batch run concurrently, which is how GAM met it on batched member adds with the message
used here (GAM-team/GAM#597). Google publishes no figure; this one is met by a batch of 100."""


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _method_scopes() -> dict[str, frozenset[str]]:
    """"resource.method" -> the scopes the Directory API accepts for it, from the bundled discovery document."""
    document = json.loads(get_static_doc("admin", "directory_v1") or "{}")
    scopes: dict[str, frozenset[str]] = {}
    for resource, body in document["resources"].items():
        for method, spec in body.get("methods", {}).items():
            scopes[f"{resource}.{method}"] = frozenset(spec.get("scopes", ()))
    return scopes


def generate_service_account(path: Path, *, client_email: str, token_uri: str) -> dict[str, str]:
    """Write a new service-account key file (mode 0600) as the Cloud console would, and return it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {
        "type": "service_account",
        "project_id": client_email.split("@")[1].split(".")[0],
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": client_email,
        "client_id": str(100000000000000000000 + secrets.randbelow(10**20)),
        "token_uri": token_uri,
    }
    write_atomically(path, json.dumps(info, indent=2).encode())
    return info


@dataclass
class ServiceAccountGrant:
    """A service account the tenant knows: its public key and the scopes its client ID was
    authorised for under domain-wide delegation (empty: delegation not set up)."""

    client_email: str
    client_id: str
    public_key_pem: str
    scopes: list[str] = field(default_factory=list)


@dataclass
class Fault:
    """A failure to inject. `action` "error" answers `status`/`reason` for matching calls (batch
    parts included); "drop" closes the connection before doing anything; "lose_response" does
    the work and then closes the connection without answering (a response lost on the way);
    "hang" takes the request and neither does it nor answers (a service that has stopped
    answering) for `delay` seconds, or until the emulator stops, then closes the connection."""

    action: str = "error"
    status: int = 503
    reason: str = "backendError"
    message: str = "Backend Error"
    method: str | None = None
    path: str | None = None
    """A substring of the call's path (e.g. "/members", "signOut")."""
    times: int = 1
    delay: float = 3600.0
    """Seconds a "hang" holds the request."""
    chance: float = 1.0
    """Below 1: the share of matching calls the fault fires on, drawn from a generator seeded with `seed`
    (one connection in five reset, the same ones on every run)."""
    seed: int = 0
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)  # noqa: S311 - reproducible faults, not security

    def matches(self, method: str, path: str) -> bool:
        return ((self.method is None or self.method == method) and (self.path is None or self.path in path)
                and (self.chance >= 1 or self._random.random() < self.chance))


@dataclass
class Stats:
    http_requests: int = 0
    batches: int = 0
    calls: int = 0
    """API calls served (each batch part counts, as at Google)."""
    rate_limited: int = 0
    """Calls refused for the per-minute quota (403 userRateLimitExceeded / 429 rateLimitExceeded)."""
    quota_exceeded: int = 0
    """Calls refused for too many concurrent calls of one operation (403 quotaExceeded)."""
    daily_limit_exceeded: int = 0
    replication_refusals: int = 0
    """Calls refused because the object they name was created moments ago (412 or 404)."""
    tokens_issued: int = 0
    token_errors: int = 0
    faults_fired: int = 0


@dataclass
class Token:
    subject: str | None
    scopes: frozenset[str]
    expires: float


class GoogleEmulator:
    """One emulated Google Workspace tenant served on 127.0.0.1; use as a context manager."""

    def __init__(self, *, domains: list[str] | None = None, state_file: Path | None = None,
                 host: str = "127.0.0.1", port: int = 0, latency: float = 0.0,
                 quota_per_minute: int | None = None, rate_limit_status: int = 403,
                 daily_quota: int | None = None,
                 concurrent_limit: int | None = CONCURRENT_CALLS_PER_OPERATION,
                 replication_window: float = REPLICATION_WINDOW_SECONDS, faults: FaultSpec | None = None) -> None:
        self.state_file = state_file
        self.latency = latency
        self.quota_per_minute = quota_per_minute
        self.rate_limit_status = rate_limit_status
        self.daily_quota = daily_quota
        self.concurrent_limit = concurrent_limit
        """Calls of one operation in flight at once (batch parts included) before 403 quotaExceeded; None: off."""
        self._in_flight: dict[str, int] = {}
        self.lock = threading.RLock()
        self.service_accounts: dict[str, ServiceAccountGrant] = {}
        if state_file is not None and state_file.exists():
            saved = json.loads(state_file.read_text())
            self.directory = Directory.from_json(saved["directory"])
            self.data_transfers = DataTransfers.from_json(self.directory, saved.get("data_transfers", {}))
            self.service_accounts = {sa["client_email"]: ServiceAccountGrant(**sa)
                                     for sa in saved["service_accounts"]}
        else:
            self.directory = Directory(domains=list(domains or ["school.example"]))
            self.data_transfers = DataTransfers(self.directory)
            """The Data Transfer API's transfers (google_transfers)."""
        self.directory.replication_window = replication_window
        self.admin_roles = AdminRoles(self.directory)
        """roles and roleAssignments (google_roles); not kept in the state file: the demo assigns none."""
        self.faults: list[Fault] = []
        self.injector = FaultInjector(faults or FaultSpec())
        """Random faults at a rate (`idlifecycle.sandbox.faults`), beside the scripted `faults` above."""
        self.write_log = WriteLog()
        self.stats = Stats()
        self.tokens: dict[str, Token] = {}
        self.sign_in = GoogleSignIn(self)
        """Google's OpenID Connect provider for this tenant's users (google_signin)."""
        self._window: deque[float] = deque()
        self._scopes = _method_scopes() | transfer_scopes()
        self._dirty = False
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.emulator = self  # type: ignore[attr-defined]
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # -- lifecycle --

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    @property
    def token_uri(self) -> str:
        return self.url + "token"

    @property
    def batch_uri(self) -> str:
        return self.url + "batch/admin/directory_v1"

    def start(self) -> GoogleEmulator:
        serve = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="google-emulator",
                                 daemon=True)
        serve.start()
        self._threads.append(serve)
        if self.state_file is not None:
            saver = threading.Thread(target=self._autosave, name="google-emulator-save", daemon=True)
            saver.start()
            self._threads.append(saver)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self.save()

    def __enter__(self) -> GoogleEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _autosave(self) -> None:
        # Saving on every write would rewrite the whole tenant thousands of times in a bulk run.
        while not self._stopping.wait(1.0):
            self.save()

    def save(self) -> None:
        if self.state_file is None:
            return
        with self.lock:
            if not self._dirty and self.state_file.exists():
                return
            text = json.dumps({"directory": self.directory.to_json(),
                               "data_transfers": self.data_transfers.to_json(),
                               "service_accounts": [asdict(sa) for sa in self.service_accounts.values()]})
            self._dirty = False
        # Atomic and 0600: a kill mid-save leaves the previous tenant, never a torn file.
        write_atomically(self.state_file, text.encode("utf-8"))

    # -- set-up, for tests, the demo and the bench --

    def add_service_account(self, info: Mapping[str, str], scopes: list[str] | None = None) -> None:
        """Trust a service account's key; `scopes` are those authorised for domain-wide delegation."""
        private = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
        public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        with self.lock:
            self.service_accounts[info["client_email"]] = ServiceAccountGrant(
                info["client_email"], info["client_id"], public.decode(), list(scopes or []))
            self._dirty = True

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def mark_dirty(self) -> None:
        with self.lock:
            self._dirty = True

    # -- the quota --

    def _admit(self, name: str) -> Answer | None:
        """Count one call of operation `name` against the quotas (LIMITS_PAGE); a refusal or None."""
        now = time.monotonic()
        if self.daily_quota is not None and self.stats.calls >= self.daily_quota:
            # The limits page once listed "403 dailyLimitExceeded ... Do not retry without fixing the
            # problem" (the 2015 edition of LIMITS_PAGE); today's edition has no daily quota, so it is off
            # unless a test sets one.
            self.stats.daily_limit_exceeded += 1
            return 403, google_error(403, "Daily Limit Exceeded", "dailyLimitExceeded", domain="usageLimits")
        if self.concurrent_limit is not None and self._in_flight.get(name, 0) >= self.concurrent_limit:
            # LIMITS_PAGE: "403 quotaExceeded: Indicates that the limit of concurrent requests for a
            # certain operation has been reached. Retry using exponential back-off."
            self.stats.quota_exceeded += 1
            return 403, google_error(403, "Request rate higher than configured.", "quotaExceeded",
                                     domain="usageLimits")
        if self.quota_per_minute is not None:
            while self._window and self._window[0] <= now - 60.0:
                self._window.popleft()
            if len(self._window) >= self.quota_per_minute:
                self.stats.rate_limited += 1
                if self.rate_limit_status == 429:
                    # LIMITS_PAGE: "429 rateLimitExceeded ... per Google Workspace account".
                    return 429, google_error(
                        429, "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' "
                        "of service 'admin.googleapis.com'.", "rateLimitExceeded", rpc_status="RESOURCE_EXHAUSTED")
                # LIMITS_PAGE: "403 userRateLimitExceeded: ... 2,400 queries per minute per user per
                # Google Cloud project".
                return 403, google_error(403, "User Rate Limit Exceeded", "userRateLimitExceeded",
                                         domain="usageLimits")
            self._window.append(now)
        self.stats.calls += 1
        return None

    def _take_fault(self, action: str, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.action == action and fault.times > 0 and fault.matches(method, path):
                fault.times -= 1
                self.stats.faults_fired += 1
                return fault
        return None

    # -- the token endpoint --

    def issue_token(self, form: Mapping[str, str]) -> Answer:
        with self.lock:
            answer = self._verify_assertion(form)
            if answer[0] != 200:
                self.stats.token_errors += 1
            else:
                self.stats.tokens_issued += 1
            return answer

    def _verify_assertion(self, form: Mapping[str, str]) -> Answer:
        def refuse(status: int, error: str, description: str) -> Answer:
            return status, {"error": error, "error_description": description}

        if form.get("grant_type") != JWT_BEARER:
            return refuse(400, "unsupported_grant_type", "Invalid grant_type: " + form.get("grant_type", ""))
        try:
            head, payload, signature = form.get("assertion", "").split(".")
            header = json.loads(_b64url_decode(head))
            claims = json.loads(_b64url_decode(payload))
        except ValueError:
            return refuse(400, "invalid_grant", "Invalid JWT: Token must be a short-lived token")
        grant = self.service_accounts.get(str(claims.get("iss")))
        if header.get("alg") != "RS256" or grant is None:
            return refuse(400, "invalid_grant", "Invalid JWT Signature.")
        public = serialization.load_pem_public_key(grant.public_key_pem.encode())
        assert isinstance(public, rsa.RSAPublicKey)
        try:
            public.verify(_b64url_decode(signature), f"{head}.{payload}".encode(), padding.PKCS1v15(),
                          hashes.SHA256())
        except (InvalidSignature, ValueError):
            return refuse(400, "invalid_grant", "Invalid JWT Signature.")
        # google-auth always addresses the assertion to Google's token endpoint, whatever token_uri says.
        if claims.get("aud") not in (GOOGLE_TOKEN_AUDIENCE, self.token_uri):
            return refuse(400, "invalid_grant", "Invalid JWT: Failed audience check.")
        now = time.time()
        if not (claims.get("iat", 0) - 300 <= now <= claims.get("exp", 0)) or claims["exp"] - claims["iat"] > 3600:
            return refuse(400, "invalid_grant",
                          "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.")
        requested = frozenset(str(claims.get("scope", "")).split())
        if not requested:
            return refuse(400, "invalid_scope", "Empty or missing scope not allowed.")
        subject = claims.get("sub")
        if subject:
            if not requested <= set(grant.scopes):
                return refuse(401, "unauthorized_client",
                              "Client is unauthorized to retrieve access tokens using this method, or client "
                              "not authorized for any of the scopes requested.")
            if self.directory.find_user(str(subject)) is None:
                return refuse(400, "invalid_grant", "Invalid email or User ID")
        token = "ya29." + secrets.token_urlsafe(32)
        self.tokens[token] = Token(str(subject) if subject else None, requested, time.time() + 3600)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    # -- the Directory API --

    def call(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Answer one API call (a plain request or one part of a batch)."""
        name, answer = self.start_call(method, target, headers, body)
        self.end_calls([name])
        return answer

    def start_call(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> tuple[str, Answer]:
        """Answer one call and leave it counted as in flight (for the concurrency limit) until
        end_calls: the parts of one batch are all in flight together, as at Google."""
        split = urlsplit(target)
        path = unquote(split.path)
        params = dict(parse_qsl(split.query))
        with self.lock:
            fault = self._take_fault("error", method, path)
            if fault is not None:
                limits = fault.reason in ("rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded",
                                          "dailyLimitExceeded")
                return "", (fault.status, google_error(fault.status, fault.message, fault.reason,
                                                       domain="usageLimits" if limits else "global"))
            route = self._route(method, path)
            if route is None:
                return "", (404, google_error(404, "Not Found", "notFound"))
            name, handler = route
            refusal = self._authorise(headers.get("authorization", ""), name) or self._admit(name)
            self._in_flight[name] = self._in_flight.get(name, 0) + 1
            if refusal is not None:
                return name, refusal
            try:
                payload = json.loads(body) if body.strip() else {}
            except ValueError:
                return name, (400, google_error(400, "Invalid JSON payload received.", "parseError"))
            refused_before = self.directory.replication_refusals
            status, answer = handler(params, payload)
            self.stats.replication_refusals += self.directory.replication_refusals - refused_before
            # A transfer moves on when it is looked at (google_transfers): a GET changes the tenant too.
            self._dirty = self._dirty or name.startswith("datatransfer.transfers")
            if method != "GET" and status < 300:
                self._dirty = True
                made = answer.get("id") if isinstance(answer, dict) else None
                self.write_log.record({"method": method, "path": path, "status": status,
                                       "body": without_secrets(payload), "id": made})
        if answer is not None and params.get("fields") and status < 300:
            try:
                answer = project(answer, parse_fields(params["fields"]))
            except ValueError as error:
                return name, (400, google_error(400, f"Invalid field selection {error}", "invalidParameter"))
        return name, (status, answer)

    def end_calls(self, names: list[str]) -> None:
        with self.lock:
            for name in names:
                if name:
                    self._in_flight[name] -= 1

    def _authorise(self, authorization: str, name: str) -> Answer | None:
        token = self.tokens.get(authorization[7:]) if authorization.lower().startswith("bearer ") else None
        if token is None or token.expires < time.time():
            return 401, google_error(401, "Request had invalid authentication credentials.", "authError",
                                     rpc_status="UNAUTHENTICATED")
        if not token.scopes & self._scopes.get(name, frozenset()):
            return 403, google_error(403, "Request had insufficient authentication scopes.",
                                     "insufficientPermissions", rpc_status="PERMISSION_DENIED")
        admin = self.directory.find_user(token.subject) if token.subject else None
        if admin is None or not admin.get("isAdmin"):
            return 403, google_error(403, "Not Authorized to access this resource/api", "forbidden")
        return None

    def _route(self, method: str, path: str) -> tuple[str, Any] | None:
        if path.startswith(TRANSFERS_PREFIX):
            return self.data_transfers.route(method, path)
        if not path.startswith(API_PREFIX):
            return None
        parts = path[len(API_PREFIX):].split("/")
        d = self.directory

        def needs_customer(customer: str, answer: Any) -> Any:
            if not d.customer_ok(customer):
                return lambda p, b: (404, google_error(404, "Resource Not Found: customer", "notFound"))
            return answer

        table: dict[tuple[str, int, str], tuple[str, Any]] = {
            ("users", 1, "GET"): ("users.list", lambda p, b: d.list_users(p)),
            ("users", 1, "POST"): ("users.insert", lambda p, b: d.insert_user(b)),
            ("groups", 1, "GET"): ("groups.list", lambda p, b: d.list_groups(p)),
            ("groups", 1, "POST"): ("groups.insert", lambda p, b: d.insert_group(b)),
        }
        head = parts[0]
        if (head, len(parts), method) in table:
            return table[(head, len(parts), method)]
        if head == "users" and len(parts) == 2:
            key = parts[1]
            return {"GET": ("users.get", lambda p, b: d.get_user(key)),
                    "PATCH": ("users.patch", lambda p, b: d.patch_user(key, b)),
                    "PUT": ("users.update", lambda p, b: d.patch_user(key, b)),
                    "DELETE": ("users.delete", lambda p, b: d.delete_user(key))}.get(method)
        if head == "users" and len(parts) == 3 and parts[2] == "signOut" and method == "POST":
            return "users.signOut", lambda p, b: d.sign_out(parts[1])
        if head == "groups" and len(parts) == 2 and method == "GET":
            return "groups.get", lambda p, b: d.get_group(parts[1])
        if head == "groups" and len(parts) == 3 and parts[2] == "members":
            group = parts[1]
            return {"GET": ("members.list", lambda p, b: d.list_members(group, p)),
                    "POST": ("members.insert", lambda p, b: d.insert_member(group, b))}.get(method)
        if head == "groups" and len(parts) == 4 and parts[2] == "members" and method == "DELETE":
            return "members.delete", lambda p, b: d.delete_member(parts[1], parts[3])
        if head == "customer" and len(parts) == 3 and parts[2] in ("roles", "roleassignments"):
            return self.admin_roles.route(method, parts[1], parts[2])
        if head == "customer" and len(parts) >= 3 and parts[2] == "orgunits":
            customer = parts[1]
            if len(parts) == 3:
                return {"GET": ("orgunits.list", needs_customer(customer, lambda p, b: d.list_orgunits(p))),
                        "POST": ("orgunits.insert", needs_customer(customer, lambda p, b: d.insert_orgunit(b)))
                        }.get(method)
            if method == "GET":
                unit = "/".join(parts[3:])
                return "orgunits.get", needs_customer(customer, lambda p, b: d.get_orgunit(unit))
        return None

    # -- batches --

    def batch(self, content_type: str, body: bytes) -> tuple[str, bytes]:
        """Run each part of a multipart/mixed batch; answer in the same format, part for part."""
        message = email.parser.BytesParser().parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        boundary = "batch_" + secrets.token_hex(12)
        out: list[bytes] = []
        parts = message.get_payload() if message.is_multipart() else []
        started: list[str] = []
        try:
            self._answer_parts(parts, boundary, out, started)
        finally:
            self.end_calls(started)
        out.append(f"--{boundary}--\r\n".encode())
        return f"multipart/mixed; boundary={boundary}", b"".join(out)

    def _answer_parts(self, parts: Any, boundary: str, out: list[bytes], started: list[str]) -> None:
        for part in parts:
            if not isinstance(part, Message):
                continue
            raw = str(part.get_payload())
            request_line, rest = re.split(r"\r?\n", raw, maxsplit=1)
            head, _, part_body = re.split(r"(\r?\n\r?\n)", rest, maxsplit=1) if re.search(
                r"\r?\n\r?\n", rest) else (rest, "", "")
            headers = {k.lower(): v for k, v in email.parser.Parser().parsestr(head + "\n\n").items()}
            method, target, _version = request_line.split(" ", 2)
            drawn = self.injector.draw(writes=method != "GET", part=True)
            if drawn is not None:
                status, answer = _drawn_answer(drawn)
            else:
                name, (status, answer) = self.start_call(method, target, headers, part_body.encode())
                started.append(name)
            payload = b"" if answer is None else json.dumps(answer).encode()
            content_id = part.get("Content-ID", "<0 + 0>")
            out.append(
                f"--{boundary}\r\nContent-Type: application/http\r\n"
                f"Content-ID: <response-{content_id[1:-1]}>\r\n\r\n"
                f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
                f"Content-Type: application/json; charset=UTF-8\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                + payload + b"\r\n")

    @staticmethod
    def batch_paths(body: bytes) -> list[tuple[str, str]]:
        """(method, path) of each part, to match connection faults against a batch's contents."""
        return [(m.group(1).decode(), urlsplit(m.group(2).decode()).path) for m in _PART_REQUEST.finditer(body)]

    # -- emulator control, for tests and the bench in another process --

    def control(self, method: str, path: str, body: bytes) -> Answer:
        if path == "/_emulator/stats" and method == "GET":
            return 200, {**asdict(self.stats), "applied_writes": len(self.write_log),
                         "faults": dict(self.injector.fired)}
        if path == "/_emulator/writes" and method == "GET":
            return 200, {"writes": self.write_log.since(), "killed_at": self.write_log.killed_at,
                         "frozen_at": self.write_log.frozen_at}
        if path == "/_emulator/kill" and method == "POST":
            return 200, kill_order(self.write_log, json.loads(body or b"{}"))
        if path == "/_emulator/faults" and method == "POST":
            self.inject(Fault(**json.loads(body)))
            return 200, {}
        if path == "/_emulator/config" and method == "POST":
            settings = json.loads(body)
            with self.lock:
                for name in ("latency", "quota_per_minute", "daily_quota", "rate_limit_status", "concurrent_limit"):
                    if name in settings:
                        setattr(self, name, settings[name])
                if "transfer_polls" in settings:
                    self.data_transfers.polls_to_complete = int(settings["transfer_polls"])
                if "replication_window" in settings:
                    self.directory.replication_window = float(settings["replication_window"])
                if settings.get("reset_stats"):
                    self.stats = Stats()
                    self._window.clear()
            return 200, {}
        if path == "/_emulator/seed-users" and method == "POST":
            seed = json.loads(body)
            self.seed_users(int(seed["count"]), str(seed["domain"]), str(seed["org_unit"]),
                            prefix=str(seed.get("prefix", "seed")))
            return 200, {"users": len(self.directory.users)}
        return 404, google_error(404, "Not Found", "notFound")

    def seed_users(self, count: int, domain: str, org_unit: str, *, prefix: str = "seed") -> None:
        """Create many users directly, without the API (the bench's 50,000-user tenant)."""
        with self.lock:
            self.directory.add_orgunit_path(org_unit)
            for number in range(count):
                self.directory.add_user(f"{prefix}{number:06d}@{domain}", "Pupil", f"Number{number}",
                                        secrets.token_urlsafe(12), org_unit=org_unit)
                self.directory.users[self.directory.addresses[f"{prefix}{number:06d}@{domain}"]]["externalIds"] = [
                    {"type": "organization", "value": f"{prefix.upper()}{number:06d}"}]
            self._dirty = True


def _drawn_answer(kind: str) -> Answer:
    """A random fault's answer (`idlifecycle.sandbox.faults`): 429 rateLimitExceeded, or 503 backendError."""
    if kind == "throttle":
        return 429, google_error(429, "Quota exceeded for quota metric 'Queries' (injected).", "rateLimitExceeded",
                                 rpc_status="RESOURCE_EXHAUSTED")
    return 503, google_error(503, "Backend Error (injected).", "backendError")


_PART_REQUEST = re.compile(rb"^(GET|POST|PATCH|PUT|DELETE) (\S+) HTTP/1\.1", re.M)
_REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 409: "Conflict", 412: "Precondition Failed", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


class _Handler(EmulatorHandler):
    server: ThreadingHTTPServer

    @property
    def emulator(self) -> GoogleEmulator:
        emulator: GoogleEmulator = self.server.emulator  # type: ignore[attr-defined]
        return emulator

    def serve(self, method: str) -> None:
        emulator = self.emulator
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlsplit(self.path).path
        with emulator.lock:
            emulator.stats.http_requests += 1
        if path.startswith("/_emulator/"):
            self._send_json(*emulator.control(method, path, body))
            return
        if emulator.write_log.hold():
            self.close_connection = True  # came while frozen for a kill: its caller is gone
            return
        if emulator.latency:
            time.sleep(emulator.latency)
        connection_fault = self._connection_fault(emulator, method, path, body)
        if connection_fault is not None and connection_fault.action in ("drop", "hang"):
            if connection_fault.action == "hang":
                emulator._stopping.wait(connection_fault.delay)
            self.close_connection = True
            return
        drawn = emulator.injector.draw(writes=method != "GET" or path.startswith("/batch")) \
            if path != "/token" else None
        if drawn == "reset_before":
            self.close_connection = True
            return
        if drawn in ("throttle", "unavailable"):
            status, answer = _drawn_answer(drawn)
            wait = {"Retry-After": str(emulator.injector.spec.retry_after)} if drawn == "throttle" else {}
            self._send_json(status, answer, wait)
            return
        if drawn in ("reset_after", "hang"):
            # Applied below, then the reply is lost (at once, or after the caller's timeout).
            connection_fault = Fault(action="lose_response")
        connection_fault = self._apply(emulator, method, path, body, connection_fault)
        if connection_fault is not None:
            emulator.write_log.lost()
            if drawn == "hang":
                time.sleep(emulator.injector.spec.hang)
            self.close_connection = True
        else:
            emulator.write_log.answered()

    @staticmethod
    def _connection_fault(emulator: GoogleEmulator, method: str, path: str, body: bytes) -> Fault | None:
        """A fault set for the connection (drop, hang, lose_response) that matches the request or a part of its
        batch, taken (counted as fired)."""
        calls = (emulator.batch_paths(body) if path.startswith("/batch") else [(method, path)]) or [(method, path)]
        with emulator.lock:
            for action in ("drop", "hang", "lose_response"):
                fault = next((f for m, p in [(method, path), *calls]
                              for f in [emulator._take_fault(action, m, p)] if f), None)
                if fault:
                    return fault
        return None

    def _apply(self, emulator: GoogleEmulator, method: str, path: str, body: bytes,
               connection_fault: Fault | None) -> Fault | None:
        """Applies the call and answers it, unless its answer is to be lost: the fault it was lost to, if any
        (`connection_fault`, or a kill's freeze that began meanwhile)."""
        sign_in = self._sign_in(emulator, method, path, body)
        if sign_in is not None:
            status, headers, answer = sign_in
            if isinstance(answer, bytes):
                self._send(status, "text/html; charset=utf-8", answer, headers)
            else:
                self._send_json(status, answer, headers)
        elif path == "/token" and method == "POST":
            self._send_json(*emulator.issue_token(dict(parse_qsl(body.decode()))))
        elif path.startswith("/batch") and method == "POST":
            with emulator.lock:
                emulator.stats.batches += 1
            content_type, payload = emulator.batch(self.headers.get("Content-Type", ""), body)
            if connection_fault is None and emulator.write_log.hold():
                connection_fault = Fault(action="lose_response")  # frozen for a kill: never answered
            if connection_fault is None:
                self._send(200, content_type, payload)
        else:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer = emulator.call(method, self.path, headers, body)
            if connection_fault is None and emulator.write_log.hold():
                connection_fault = Fault(action="lose_response")  # frozen for a kill: never answered
            if connection_fault is None:
                self._send_json(status, answer)
        return connection_fault

    def _sign_in(self, emulator: GoogleEmulator, method: str, path: str, body: bytes) \
            -> tuple[int, dict[str, str], Any] | None:
        """The OpenID Connect provider's paths (`google_signin`), or None for the rest."""
        if path not in ("/.well-known/openid-configuration", "/oauth2/v3/certs", "/o/oauth2/v2/auth", "/token"):
            return None  # the Directory API's bodies are not forms: never parsed here
        form = dict(parse_qsl(body.decode("utf-8", "replace"))) if method == "POST" else {}
        if path == "/.well-known/openid-configuration":
            return emulator.sign_in.configuration()
        if path == "/oauth2/v3/certs":
            return emulator.sign_in.keys()
        if path == "/o/oauth2/v2/auth" and method in ("GET", "POST"):
            params = {**dict(parse_qsl(urlsplit(self.path).query)), **form}
            return emulator.sign_in.authorize(method, params)
        if path == "/token" and method == "POST" and form.get("grant_type") == "authorization_code":
            status, answer = emulator.sign_in.redeem(form)
            return status, {}, answer
        return None

    def _send_json(self, status: int, answer: Mapping[str, Any] | None, headers: Mapping[str, str] | None = None) \
            -> None:
        self._send(status, "application/json; charset=UTF-8", b"" if answer is None else json.dumps(answer).encode(),
                   headers)

    def _send(self, status: int, content_type: str, payload: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_payload(status, payload, {"Content-Type": content_type if status != 204 else "", **(headers or {})})


def _serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m idlifecycle.sandbox.google", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state", type=Path, help="JSON file the tenant is kept in between runs")
    parser.add_argument("--domain", action="append", default=[], help="a domain of the tenant (repeatable)")
    parser.add_argument("--admin", default="", help="the super admin to create (e.g. admin@school.example)")
    parser.add_argument("--service-account", type=Path, help="key file to trust for domain-wide delegation")
    parser.add_argument("--scope", action="append", default=[], help="a delegated scope (repeatable)")
    parser.add_argument("--org-unit", action="append", default=[], help="an org unit path to create")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every HTTP request")
    parser.add_argument("--quota-per-minute", type=int)
    parser.add_argument("--replication-window", type=float, default=REPLICATION_WINDOW_SECONDS,
                        help="seconds a new user or group is not yet usable (0: off)")
    parser.add_argument("--concurrent-limit", type=int, default=CONCURRENT_CALLS_PER_OPERATION,
                        help="calls of one operation at once before 403 quotaExceeded (0: off)")
    parser.add_argument("--faults", type=faults_argument, default=None, metavar="rate=0.2,seed=7,kinds=...",
                        help="random faults (idlifecycle.sandbox.faults); kinds: "
                        "throttle+unavailable+reset_before+reset_after+hang")
    parser.add_argument("--seed-users", type=int, default=0)
    parser.add_argument("--seed-org-unit", default="/Seeded")
    args = parser.parse_args(argv)
    emulator = GoogleEmulator(domains=args.domain or None, state_file=args.state, port=args.port,
                              latency=args.latency, quota_per_minute=args.quota_per_minute,
                              replication_window=args.replication_window,
                              concurrent_limit=args.concurrent_limit or None, faults=args.faults)
    if args.admin and emulator.directory.find_user(args.admin) is None:
        emulator.directory.add_user(args.admin, "Site", "Admin", secrets.token_urlsafe(16), admin=True)
    for path in args.org_unit:
        emulator.directory.add_orgunit_path(path)
    if args.service_account:
        emulator.add_service_account(json.loads(args.service_account.read_text()), args.scope)
    if args.seed_users:
        emulator.seed_users(args.seed_users, emulator.directory.domains[0], args.seed_org_unit)
    emulator.mark_dirty()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    with emulator:
        print(f"listening on {emulator.url}", flush=True)
        stopped.wait()


if __name__ == "__main__":
    _serve()
