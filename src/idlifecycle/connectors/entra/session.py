"""Talking to Microsoft Graph for the Entra connector: msal sign-in, raw requests, retries, pacing, and what
each refusal of Graph or of the sign-in service means (`REFUSALS`, one table).

Requests go through msgraph-sdk's authenticated adapter and middleware, but bodies are plain
JSON: building an SDK model costs about 5 ms per object (FACTS.md section 2), and msgraph-core's
own batch support sends absolute item URLs that Graph refuses. The SDK is asynchronous and the
connector contract is not, so an event loop runs on a private thread (`GraphSession.run`). The
$batch pump is in `batches`.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import random
import re
import ssl
import threading
import time
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import httpx
import msal
import requests
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_http.middleware.options import RetryHandlerOption
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph_core import GraphClientFactory

from idlifecycle.connectors.base import AuthError, ConnectorError
from idlifecycle.connectors.entra.graph import (
    BATCH_LIMIT,
    RETRYABLE_STATUSES,
    BatchRequest,
    GraphResponse,
    ResponseError,
    TransportFailure,
)
from idlifecycle.connectors.entra.settings import Credentials

T = TypeVar("T")
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
CONNECT_TIMEOUT = 10.0
"""Seconds to open a connection to Graph (TCP and TLS) before the attempt counts as lost."""
LOOKUP_TRIES = 5
"""A lookup after an uncertain write is asked this many times (lost replies, 5xx) before it is left undecided."""
REPLICATION_PATIENCE = 90.0
"""Seconds after its create in which a 404 on an object this session made is read as replication lag.

Graph answers 404 `Request_ResourceNotFound` for a member add or licence assignment right after
a create and succeeds on retry (terraform-provider-azuread#283, pulumi-azuread#2014); the lag is
usually seconds, reported up to a minute or two (msgraph-sdk-dotnet#2772). Outside this window,
or for an object made before this run, a 404 still means the object is gone.
"""

# Application permissions the connector needs, each with the broader ones that also cover it.
REQUIRED_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "User.ReadWrite.All": ("User.ReadWrite.All", "Directory.ReadWrite.All"),
    "GroupMember.ReadWrite.All": ("GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"),
}
OPTIONAL_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "Group.Create": ("Group.Create", "Group.ReadWrite.All", "Directory.ReadWrite.All"),
    "RoleManagement.Read.Directory": ("RoleManagement.Read.Directory", "RoleManagement.ReadWrite.Directory",
                                      "Directory.Read.All", "Directory.ReadWrite.All"),
    "AuditLog.Read.All": ("AuditLog.Read.All",),
    "LicenseAssignment.ReadWrite.All": ("LicenseAssignment.ReadWrite.All", "User.ReadWrite.All",
                                        "Directory.ReadWrite.All"),
}


@dataclass(frozen=True)
class Refusal:
    """One row of REFUSALS: the answers it covers (an empty set or None covers any) and what they become."""

    where: str
    """What was being done: sign-in, consent, read, roles (the snapshot's role read), review, write, as-is."""
    error: type[ConnectorError]
    message: str
    """Formatted with the caller's facts: {error}, {tenant_id}, {client_id}, {need}, {detail}, ..."""
    retryable: bool = False
    statuses: frozenset[int] = frozenset()
    codes: frozenset[str] = frozenset()
    """Graph's error code, or the sign-in service's error and error codes."""
    from_graph: bool | None = None
    """Whether the answer carries Graph's own error body (a proxy's page does not)."""
    transient: bool | None = None


def _row(where: str, error: type[ConnectorError], message: str, *, retryable: bool = False,
         statuses: Iterable[int] = (), codes: Iterable[object] = (), from_graph: bool | None = None,
         transient: bool | None = None) -> Refusal:
    return Refusal(where, error, message, retryable, frozenset(statuses), frozenset(str(c) for c in codes),
                   from_graph, transient)


_CONSENT_FIX = "an administrator must click 'Grant admin consent' under API permissions"
_ROLES_PERMISSION = "the app needs the application permission RoleManagement.Read.Directory with admin consent"
REFUSALS: tuple[Refusal, ...] = (
    # Sign-in (msal's answer from the token endpoint, or building the msal app).
    _row("sign-in", AuthError, "{config_file}: tenant_id: tenant {tenant_id!r} was not found; copy the Directory "
         "(tenant) ID from the app registration's Overview page", codes=(90002, "invalid_tenant")),
    _row("sign-in", AuthError, "{config_file}: client_id: no application {client_id!r} in tenant {tenant_id!r}; "
         "copy the Application (client) ID from the app registration's Overview page", codes=(700016,)),
    _row("sign-in", AuthError, "the client secret ({where}) was refused for app {client_id!r}: it is wrong or has "
         "expired; create a new one under Certificates & secrets and store its Value (not its Secret ID)",
         codes=(7000215, 7000222)),
    _row("sign-in", AuthError, "the certificate ({where}) was refused for app {client_id!r}: upload the public "
         "certificate under Certificates & secrets of the app registration, or check the key matches it",
         codes=(700027, 700023, 700024)),
    _row("sign-in", AuthError, f"app {{client_id!r}} has no admin consent in tenant {{tenant_id!r}}: {_CONSENT_FIX}",
         codes=(65001, "consent_required")),
    _row("sign-in", ConnectorError, "cannot reach the sign-in service {authority_host}: {error}", retryable=True,
         codes=("unreachable",)),
    _row("sign-in", AuthError, "{config_file}: tenant_id: tenant {tenant_id!r} was not found at {authority_host}; "
         "copy the Directory (tenant) ID from the app registration's Overview page in the Entra admin centre",
         codes=("unknown authority",)),
    _row("sign-in", AuthError, "{config_file}: certificate: the certificate or its private key ({where}) cannot be "
         "read: {error}", codes=("unreadable credential",)),
    _row("sign-in", AuthError, "sign-in to tenant {tenant_id!r} as app {client_id!r} failed: {error}"),
    _row("consent", AuthError, "app {client_id!r} lacks admin consent for the Microsoft Graph application "
         "permission{plural} {missing}: in the Entra admin centre open App registrations > the app > API "
         "permissions, add them as Application permissions and click 'Grant admin consent'"),
    # Reads (snapshot, recycle bin, roles, the access review).
    _row("roles", AuthError, "Graph refused to list directory role assignments, so admin accounts cannot be told "
         f"apart and none is touched: {_ROLES_PERMISSION}", statuses=(403,)),
    _row("review", AuthError, f"Graph refused to list directory roles: {_ROLES_PERMISSION}", statuses=(403,)),
    _row("read", AuthError, "Graph refused to read the directory ({error}); the app needs the application "
         "permissions User.ReadWrite.All and GroupMember.ReadWrite.All with admin consent",
         statuses=(403,), from_graph=True),
    _row("read", ConnectorError, "Graph is throttling reads: {error}", retryable=True, statuses=(429,)),
    _row("as-is", ConnectorError, "{error}", retryable=True, transient=True),
    _row("as-is", ConnectorError, "{error}"),
    # Writes: each becomes its change's FAILED Result (`failed_result`).
    _row("write", ConnectorError, "HTTP 403 without Graph's error body: a proxy or gateway on the way refused it, "
         "not Graph; tried again on the next run", retryable=True, statuses=(403,), from_graph=False),
    _row("write", AuthError, "Graph refused: {said}; the app needs the application permission {need} with admin "
         "consent{password_role}", statuses=(401, 403)),
    _row("write", ConnectorError, "{detail}", retryable=True, statuses=RETRYABLE_STATUSES),
    _row("write", ConnectorError, "{detail}"),
)
"""What each refusal means, first matching row wins: Graph's own error-handling guidance says some answers
come from proxies and gateways without Graph's body and must be judged on the status alone
(https://learn.microsoft.com/en-us/previous-versions/azure/ad/graph/howto/azure-ad-graph-api-error-codes-and-error-handling)."""


def refused(places: Sequence[str], *, status: int = 0, codes: Iterable[object] = (), from_graph: bool = True,
            transient: bool = False, **facts: Any) -> ConnectorError:
    """The error REFUSALS makes of an answer, trying each place's rows in turn."""
    said = {str(c) for c in codes}
    for place in places:
        for row in REFUSALS:
            if (row.where == place and (not row.statuses or status in row.statuses)
                    and (not row.codes or row.codes & said)
                    and (row.from_graph is None or row.from_graph == from_graph)
                    and (row.transient is None or row.transient == transient)):
                return row.error(row.message.format(**facts), retryable=row.retryable)
    raise AssertionError(f"REFUSALS has no row for {places}")


def response_refused(places: Sequence[str], error: ResponseError, **facts: Any) -> ConnectorError:
    """`refused` for Graph's answer to a read (the ResponseError's own message is `{error}`)."""
    response = error.response
    return refused(places, status=response.status, codes=(response.error_code,), from_graph=response.from_graph,
                   transient=response.transient, error=error, **facts)


def write_refused(response: GraphResponse, need: str, password_role: str = "") -> ConnectorError:
    """What Graph's refusal of one change's write means, with the permission that change needs."""
    detail = f"{response.error_code or response.status}: {response.error_message}".rstrip(": ")
    return refused(("write",), status=response.status, codes=(response.error_code,), from_graph=response.from_graph,
                   transient=response.transient, said=response.error_message or response.status, need=need,
                   password_role=password_role, detail=detail)


class Pacer:
    """A token bucket at the app's write limit; a 429's Retry-After pauses every sender."""

    def __init__(self, per_second: float, burst: int = BATCH_LIMIT) -> None:
        self.rate = per_second
        self.capacity = float(burst)
        self.tokens = 0.0
        self.stamp = time.monotonic()
        self.paused_until = 0.0
        self.lock = asyncio.Lock()

    async def acquire(self, n: int) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                if now < self.paused_until:
                    await asyncio.sleep(self.paused_until - now)
                    continue
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= n:
                    self.tokens -= n
                    return
                await asyncio.sleep((n - self.tokens) / self.rate)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)


class _MsalTokens(AccessTokenProvider):
    def __init__(self, session: GraphSession) -> None:
        self.session = session
        self.validator = AllowedHostsValidator([session.graph_host])

    async def get_authorization_token(self, uri: str, additional_authentication_context: dict[str, Any]
                                      | None = None) -> str:
        return await asyncio.to_thread(self.session.token)

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self.validator


class GraphSession:
    """One signed-in connection to Graph, with its own event loop thread."""

    def __init__(self, credentials: Credentials, graph_url: str, *, ca_file: str | None = None,
                 timeout: float = 60.0, max_in_flight: int = 4, write_limit_per_second: float = 20.0,
                 needs: Sequence[str] = (), connect_timeout: float = CONNECT_TIMEOUT,
                 request_timeout: float | None = None) -> None:
        self.credentials = credentials
        self.graph_url = graph_url.rstrip("/")
        self.graph_host = urlsplit(self.graph_url).hostname or ""
        self.ca_file = ca_file
        self.timeout = timeout
        """Seconds between bytes of a reply (httpx's read timeout)."""
        self.connect_timeout = min(connect_timeout, timeout)
        self.request_timeout = request_timeout if request_timeout is not None else 2 * timeout
        """Seconds for one whole request, reply included: a reply trickling in never outlasts it."""
        self._silent_since: float | None = None
        """When the first request sent since Graph last answered anything went out (None: it just answered)."""
        self.max_in_flight = max_in_flight
        self.write_limit_per_second = write_limit_per_second
        self.needs = tuple(needs)
        self.replication_retries = 0
        self._created: dict[str, float] = {}
        self._app: msal.ConfidentialClientApplication | None = None
        self._token_lock = threading.Lock()
        self._checked_token: str | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="entra-graph", daemon=True)
        self._thread.start()
        self._adapter: GraphRequestAdapter = self.run(self._make_adapter())
        self.pacer: Pacer = self.run(self._make_pacer())

    # plumbing -------------------------------------------------------------------------------------
    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start a coroutine on the session's loop without waiting for it (cancel the future to stop it)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def silent_for(self) -> float:
        """Seconds Graph has been asked and has answered nothing at all (0 while it answers)."""
        since = self._silent_since
        return 0.0 if since is None else time.monotonic() - since

    async def _make_adapter(self) -> GraphRequestAdapter:
        verify: ssl.SSLContext | bool = True
        if self.ca_file:
            verify = ssl.create_default_context(cafile=self.ca_file)
        # Connect, read (between bytes), write and pool waits are each bounded; the whole request is
        # bounded in `send`, since httpx has no overall timeout.
        client = httpx.AsyncClient(verify=verify, timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                                   limits=httpx.Limits(max_connections=self.max_in_flight + 2))
        client = GraphClientFactory.create_with_default_middleware(client=client)
        adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(_MsalTokens(self)), client=client)
        adapter.base_url = self.graph_url
        return adapter

    async def _make_pacer(self) -> Pacer:
        return Pacer(self.write_limit_per_second)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        client = getattr(self._adapter, "_http_client", None)
        if isinstance(client, httpx.AsyncClient):
            self.run(client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    # sign-in --------------------------------------------------------------------------------------
    def token(self) -> str:
        """An access token from msal's cache or the token endpoint; AuthError with the fix when refused."""
        with self._token_lock:
            app = self._app or self._make_app()
            self._app = app
            try:
                result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
            except requests.RequestException as error:
                raise self._sign_in_refused("unreachable", error=type(error).__name__) from None
            if "access_token" not in result:
                raise self._token_error(result)
            token = str(result["access_token"])
            if token != self._checked_token:
                self._check_consent(token)
                self._checked_token = token
            return token

    def _make_app(self) -> msal.ConfidentialClientApplication:
        c = self.credentials
        credential: str | dict[str, str]
        if c.private_key is not None:
            credential = {"private_key": c.private_key, "public_certificate": c.certificate or ""}
        else:
            credential = c.client_secret or ""
        http = requests.Session()
        if self.ca_file:
            # REQUESTS_CA_BUNDLE in the environment would otherwise override `verify` (FACTS.md section 2).
            http.trust_env = False
            http.verify = self.ca_file
        try:
            return msal.ConfidentialClientApplication(
                c.client_id, client_credential=credential, authority=f"https://{c.authority_host}/{c.tenant_id}",
                http_client=http, instance_discovery=c.authority_host == "login.microsoftonline.com",
                timeout=self.timeout,
            )
        except ValueError as error:
            problem = "unknown authority" if "authority" in str(error).lower() else "unreadable credential"
            raise self._sign_in_refused(problem, error=str(error)) from None
        except requests.RequestException as error:
            raise self._sign_in_refused("unreachable", error=type(error).__name__) from None

    def _token_error(self, result: Mapping[str, Any]) -> ConnectorError:
        """The token endpoint's refusal, by its error codes (REFUSALS), with the fix."""
        error = str(result.get("error", ""))
        description = str(result.get("error_description", "")).splitlines()[0] if result.get(
            "error_description") else error
        return self._sign_in_refused(*(result.get("error_codes") or []), error, error=description)

    def _sign_in_refused(self, *codes: object, error: str) -> ConnectorError:
        c = self.credentials
        return refused(("sign-in",), codes=codes, error=error, tenant_id=c.tenant_id, client_id=c.client_id,
                       config_file=c.config_file, where=c.where, authority_host=c.authority_host)

    def _check_consent(self, token: str) -> None:
        """The token lists the consented application permissions: name any missing one now, not on a 403."""
        try:
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return
        roles = set(claims.get("roles") or [])
        wanted = {**REQUIRED_PERMISSIONS, **{k: v for k, v in OPTIONAL_PERMISSIONS.items() if k in self.needs}}
        missing = [name for name, covering in wanted.items() if not roles & set(covering)]
        if missing:
            raise refused(("consent",), client_id=self.credentials.client_id, missing=", ".join(missing),
                          plural="s" if len(missing) > 1 else "")

    # requests -------------------------------------------------------------------------------------
    async def send(self, method: str, url: str, body: Any = None, *, retry: bool = True,
                   headers: Mapping[str, str] | None = None) -> GraphResponse:
        """One request through the SDK's pipeline. `url` is absolute or relative to the version root.

        `retry=False` turns off the SDK's RetryHandler, which would resend a POST (FACTS.md section 2).
        """
        info = RequestInformation()
        info.http_method = Method[method]
        info.url = url if url.startswith(("http://", "https://")) else self.graph_url + url
        info.headers.try_add("Accept", "application/json")
        for name, value in (headers or {}).items():
            info.headers.try_add(name, value)
        if body is not None:
            info.headers.try_add("Content-Type", "application/json")
            info.content = json.dumps(body).encode()
        if not retry:
            info.add_request_options([RetryHandlerOption(delay=0, max_retries=0, should_retry=False)])
        span = self._adapter.start_tracing_span(info, "idlifecycle.entra")
        if self._silent_since is None:
            self._silent_since = time.monotonic()
        try:
            response = await asyncio.wait_for(self._adapter.get_http_response_message(info, span),
                                              self.request_timeout)
        except (httpx.TimeoutException, TimeoutError):
            raise TransportFailure(f"no reply from Graph within {self.timeout:g} s ({method} {urlsplit(url).path})") \
                from None
        except httpx.TransportError as error:
            raise TransportFailure(f"connection to Graph failed ({type(error).__name__})") from None
        finally:
            span.end()
        self._silent_since = None
        content = response.content
        parsed = json.loads(content) if content and "json" in response.headers.get("content-type", "") else None
        return GraphResponse(response.status_code, dict(response.headers), parsed)

    def note_created(self, body: Any) -> None:
        """Remember an object this session made (by id and UPN), for `replicating`."""
        if isinstance(body, dict):
            now = time.monotonic()
            for name in ("id", "userPrincipalName"):
                if body.get(name):
                    self._created[str(body[name]).lower()] = now

    def replicating(self, request: BatchRequest, response: GraphResponse) -> bool:
        """Whether a 404 is about an object this session made within REPLICATION_PATIENCE seconds.

        Graph's 404 names the missing object ("Resource '<id>' does not exist…"); when it does,
        only that object counts, so a member add that meets an old, deleted account beside a new
        group is not held up.
        """
        now = time.monotonic()
        named = re.search(r"Resource '([^']+)'", response.error_message)
        if named is not None:
            at = self._created.get(named.group(1).lower())
            return at is not None and now - at < REPLICATION_PATIENCE
        recent = [k for k, at in self._created.items() if now - at < REPLICATION_PATIENCE]
        if not recent:
            return False
        text = unquote(request.url).lower() + (json.dumps(request.body).lower() if request.body is not None else "")
        return any(key in text for key in recent)

    async def get_replicated(self, url: str, tries: int = 6) -> GraphResponse:
        """A GET of an object Graph has just said exists (e.g. a duplicate UPN): a 404 is lag, asked again."""
        response = await self.lookup(url)
        for attempt in range(1, tries):
            if response.status != 404:
                break
            await asyncio.sleep(backoff(attempt))
            response = await self.lookup(url)
        return response

    async def lookup(self, url: str, tries: int = LOOKUP_TRIES) -> GraphResponse:
        """A GET that decides an uncertain write: asked again after a lost reply or a 5xx, and never raising.

        A lookup is what settles one change after a reset connection or a lost reply; when it
        fails too, only that change stays undecided (status 0, "cannot tell"), never the batch.
        """
        response = GraphResponse(0, {}, None)
        for attempt in range(1, tries + 1):
            try:
                response = await self.send("GET", url)
            except TransportFailure as failure:
                response = GraphResponse(0, {}, {"error": {"code": "transport", "message": str(failure)}})
            if response.status != 0 and not response.transient:
                return response
            if attempt < tries:
                await asyncio.sleep(backoff(attempt, response.retry_after() or 0.5))
        return GraphResponse(0, {}, response.body)

    async def read_all(self, url: str, headers: Mapping[str, str] | None = None) -> tuple[list[Any], str | None]:
        """Follow @odata.nextLink to the end; returns the items and the @odata.deltaLink if any."""
        items: list[Any] = []
        next_url: str | None = url
        while next_url:
            response = await self._get_again_if_lost(next_url, headers)
            if not response.ok:
                raise ResponseError(response, f"GET {urlsplit(next_url).path}")
            items.extend(response.body.get("value", []))
            delta = response.body.get("@odata.deltaLink")
            next_url = response.body.get("@odata.nextLink")
            if delta:
                return items, str(delta)
        return items, None

    async def _get_again_if_lost(self, url: str, headers: Mapping[str, str] | None, tries: int = 3) -> GraphResponse:
        """A GET whose reply was lost is simply asked again (the SDK retries only answered 429/503/504)."""
        for attempt in range(1, tries + 1):
            try:
                response = await self.send("GET", url, headers=headers)
            except TransportFailure:
                if attempt == tries:
                    raise
                await asyncio.sleep(attempt)
                continue
            if response.ok or response.from_graph or not response.transient or attempt == tries:
                return response
            await asyncio.sleep(attempt)  # a proxy's 403/5xx page: not Graph's answer, ask again
        raise AssertionError("unreachable")


def backoff(attempt: int, first: float = 0.5) -> float:
    """Exponential backoff with jitter: `first` seconds at the first attempt, doubling, at most 30."""
    return min(30.0, first * 2.0 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311 - jitter, not security

