"""Talking to Microsoft Graph for the Entra connector: msal sign-in, raw requests, paced JSON $batch.

Requests go through msgraph-sdk's authenticated adapter and middleware, but bodies are plain
JSON: building an SDK model costs about 5 ms per object (FACTS.md section 2), and msgraph-core's
own batch support sends absolute item URLs that Graph refuses. The SDK is asynchronous and the
connector contract is not, so an event loop runs on a private thread (`GraphSession.run`).
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
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
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

T = TypeVar("T")
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
BATCH_LIMIT = 20
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
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
class Credentials:
    """How the app proves who it is; `where` names the secret's source for messages, never its value."""

    tenant_id: str
    client_id: str
    authority_host: str
    client_secret: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    certificate: str | None = None
    where: str = ""
    config_file: str = ""


@dataclass(frozen=True)
class GraphResponse:
    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def from_graph(self) -> bool:
        """Whether an error answer carries Graph's JSON error body (a proxy's or gateway's page does not)."""
        return isinstance(self.body, dict) and isinstance(self.body.get("error"), dict)

    @property
    def transient(self) -> bool:
        """Worth sending again: throttling and 5xx, and a 403/5xx not from Graph itself (a proxy in the way).

        Graph's own error-handling guidance says some answers come from proxies and gateways
        without Graph's body and must be handled on the status alone
        (https://learn.microsoft.com/en-us/previous-versions/azure/ad/graph/howto/azure-ad-graph-api-error-codes-and-error-handling).
        """
        return self.status in RETRYABLE_STATUSES or ((self.status == 403 or self.status >= 500) and not self.from_graph)

    @property
    def error_code(self) -> str:
        error = (self.body or {}).get("error") if isinstance(self.body, dict) else None
        return str(error.get("code", "")) if isinstance(error, dict) else ""

    @property
    def error_message(self) -> str:
        error = (self.body or {}).get("error") if isinstance(self.body, dict) else None
        return str(error.get("message", "")) if isinstance(error, dict) else ""

    def retry_after(self) -> float | None:
        for name, value in self.headers.items():
            if name.lower() == "retry-after":
                try:
                    return max(0.0, float(value))
                except ValueError:
                    return None
        return None


class TransportFailure(ConnectorError):
    """No reply arrived (timeout, dropped connection): a write may or may not have happened."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


@dataclass
class BatchRequest:
    """One batch item; within its RequestGroup it is sent only after the one before it succeeded."""

    method: str
    url: str
    """Relative to the Graph version root, e.g. "/users/{id}"."""
    body: Any = None


@dataclass
class RequestGroup:
    """Items that must run in order (a chain); `uncertain` decides after a lost reply.

    A chain is sent one item per round trip, each in a fully parallel batch beside other groups'
    items: Graph refuses a whole batch that mixes `dependsOn` chains with independent items
    (https://learn.microsoft.com/en-us/graph/json-batching; microsoft-graph-docs#16280), and a
    chain's next item going out in the next batch costs no more writes than `dependsOn` would,
    while it keeps every batch full. It also gives a just-created object a little time to
    replicate before the next item refers to it.

    `uncertain(index)` is awaited when item `index` may or may not have been applied (timeout,
    dropped connection, 5xx); it returns a stand-in response when the write turns out to have
    happened (e.g. a create found by its anchor), or None to send the rest again.
    """

    requests: list[BatchRequest]
    uncertain: Callable[[int], Awaitable[GraphResponse | None]] | None = None
    responses: list[GraphResponse] = field(default_factory=list)
    attempts: int = 0
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once every item is answered: the connector reads this group's results at once, not at the phase's end."""
    sending: Callable[[int], None] | None = None
    """Called with item `index` as a write item goes on the wire: from then on it may land unanswered."""


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
        self.writes_sent = 0
        self.throttled = 0
        self.replication_retries = 0
        self._created: dict[str, float] = {}
        self._app: msal.ConfidentialClientApplication | None = None
        self._token_lock = threading.Lock()
        self._checked_token: str | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="entra-graph", daemon=True)
        self._thread.start()
        self._adapter: GraphRequestAdapter = self.run(self._make_adapter())
        self._pacer: Pacer = self.run(self._make_pacer())

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
                raise ConnectorError(f"cannot reach the sign-in service {self.credentials.authority_host}: "
                                     f"{type(error).__name__}", retryable=True) from None
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
            if "authority" in str(error).lower():
                raise AuthError(f"{c.config_file}: tenant_id: tenant {c.tenant_id!r} was not found at "
                                f"{c.authority_host}; copy the Directory (tenant) ID from the app registration's "
                                "Overview page in the Entra admin centre") from None
            raise AuthError(f"{c.config_file}: certificate: the certificate or its private key ({c.where}) cannot "
                            f"be read: {error}") from None
        except requests.RequestException as error:
            raise ConnectorError(f"cannot reach the sign-in service {c.authority_host}: {type(error).__name__}",
                                 retryable=True) from None

    def _token_error(self, result: Mapping[str, Any]) -> AuthError:
        c = self.credentials
        codes = set(result.get("error_codes") or [])
        error = str(result.get("error", ""))
        if 90002 in codes or error == "invalid_tenant":
            return AuthError(f"{c.config_file}: tenant_id: tenant {c.tenant_id!r} was not found; copy the Directory "
                             "(tenant) ID from the app registration's Overview page")
        if 700016 in codes:
            return AuthError(f"{c.config_file}: client_id: no application {c.client_id!r} in tenant {c.tenant_id!r}; "
                             "copy the Application (client) ID from the app registration's Overview page")
        if codes & {7000215, 7000222}:
            return AuthError(f"the client secret ({c.where}) was refused for app {c.client_id!r}: it is wrong or has "
                             "expired; create a new one under Certificates & secrets and store its Value (not its "
                             "Secret ID)")
        if codes & {700027, 700023, 700024}:
            return AuthError(f"the certificate ({c.where}) was refused for app {c.client_id!r}: upload the public "
                             "certificate under Certificates & secrets of the app registration, or check the key "
                             "matches it")
        if 65001 in codes or error == "consent_required":
            return AuthError(f"app {c.client_id!r} has no admin consent in tenant {c.tenant_id!r}: an administrator "
                             "must click 'Grant admin consent' under API permissions")
        description = str(result.get("error_description", "")).splitlines()[0] if result.get(
            "error_description") else error
        return AuthError(f"sign-in to tenant {c.tenant_id!r} as app {c.client_id!r} failed: {description}")

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
            raise AuthError(
                f"app {self.credentials.client_id!r} lacks admin consent for the Microsoft Graph application "
                f"permission{'s' if len(missing) > 1 else ''} {', '.join(missing)}: in the Entra admin centre open "
                "App registrations > the app > API permissions, add them as Application permissions and click "
                "'Grant admin consent'")

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
            await asyncio.sleep(_backoff(attempt))
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
                await asyncio.sleep(_backoff(attempt, response.retry_after() or 0.5))
        return GraphResponse(0, {}, response.body)

    def get(self, url: str, headers: Mapping[str, str] | None = None) -> GraphResponse:
        return self.run(self.send("GET", url, headers=headers))

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

    # batches --------------------------------------------------------------------------------------
    async def run_groups(self, groups: Sequence[RequestGroup], *, max_attempts: int = 8) -> None:
        """Send every group's requests in fully parallel JSON $batches of up to 20 items, several in flight, paced.

        Each batch carries the next item of up to 20 groups; a group whose item succeeded goes back
        in the queue for its next one. Items answered 429/5xx are sent again after
        Retry-After, or an exponential backoff when there is none; a lost reply asks the group's
        `uncertain` hook first. A group that never succeeds keeps its last failing response.
        """
        queue: asyncio.Queue[RequestGroup] = asyncio.Queue()
        for group in groups:
            queue.put_nowait(group)
        outstanding = len(groups)
        done = asyncio.Event()
        if outstanding == 0:
            return
        in_flight = asyncio.Semaphore(self.max_in_flight)

        def finish(n: int) -> None:
            nonlocal outstanding
            outstanding -= n
            if outstanding == 0:
                done.set()

        def requeue_later(group: RequestGroup, delay: float) -> None:
            asyncio.get_running_loop().call_later(delay, queue.put_nowait, group)

        failures: list[BaseException] = []

        async def send_batch(batch: list[RequestGroup]) -> None:
            try:
                finish(await self._send_batch(batch, requeue_later, max_attempts))
            except Exception as error:  # surfaced after the pump stops; a hung run would hide it
                failures.append(error)
                done.set()
            finally:
                in_flight.release()

        tasks: set[asyncio.Task[None]] = set()

        async def pump() -> None:
            while not done.is_set():
                getter = asyncio.ensure_future(queue.get())
                waiter = asyncio.ensure_future(done.wait())
                try:
                    await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
                except asyncio.CancelledError:
                    getter.cancel()
                    waiter.cancel()
                    raise
                if not getter.done():
                    getter.cancel()
                    waiter.cancel()
                    break
                waiter.cancel()
                batch = [getter.result()]
                while not queue.empty() and len(batch) < BATCH_LIMIT:
                    batch.append(queue.get_nowait())
                size = len(batch)
                await in_flight.acquire()
                await self._pacer.acquire(size)
                task = asyncio.ensure_future(send_batch(batch))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)

        try:
            await pump()
        finally:
            # Cancelled (the connector gave up on a silent Graph): no batch goes on being sent.
            for task in list(tasks):
                task.cancel()
        if failures:
            raise failures[0]

    async def _send_batch(self, batch: list[RequestGroup],
                          requeue_later: Callable[[RequestGroup, float], None],
                          max_attempts: int) -> int:
        """One $batch round trip of each group's next item; returns how many groups are finished.

        No item carries `dependsOn`, so the batch is fully parallel as Graph requires.
        """
        items: list[dict[str, Any]] = []
        item_of: dict[tuple[int, int], str] = {}
        for group in batch:
            group.attempts += 1
            index = len(group.responses)
            request = group.requests[index]
            item_id = str(len(items) + 1)
            item: dict[str, Any] = {"id": item_id, "method": request.method, "url": request.url}
            if request.body is not None:
                item["body"] = request.body
                item["headers"] = {"Content-Type": "application/json"}
            items.append(item)
            item_of[(id(group), index)] = item_id
        self.writes_sent += sum(1 for i in items if i["method"] != "GET")
        for group in batch:
            if group.sending is not None and group.requests[len(group.responses)].method != "GET":
                group.sending(len(group.responses))
        try:
            reply = await self.send("POST", "/$batch", {"requests": items}, retry=False)
            if not reply.ok:
                raise ResponseError(reply, "POST /$batch")
            by_id = {str(r.get("id")): r for r in reply.body.get("responses", [])}
        except (TransportFailure, ResponseError) as failure:
            status = failure.response.status if isinstance(failure, ResponseError) else 0
            if isinstance(failure, ResponseError) and not failure.response.transient:
                # Graph refused the batch itself (e.g. 400, 401): the changes in it fail with its
                # answer; the other batches go on.
                for group in batch:
                    group.responses.extend(failure.response for _ in range(len(group.responses),
                                                                             len(group.requests)))
                    group.finished.set()
                return len(batch)
            if status not in RETRYABLE_STATUSES:
                status = 503 if status else 504  # a proxy's page or no reply: not known to have reached Graph
            lost = GraphResponse(status, {}, {"error": {"code": "transport", "message": str(failure)}})
            by_id = {item["id"]: {"status": lost.status, "headers": {}, "body": lost.body} for item in items}
            if isinstance(failure, ResponseError):
                by_id = {k: {**v, "headers": dict(failure.response.headers)} for k, v in by_id.items()}
        answers: list[GraphResponse] = []
        for group in batch:
            raw = by_id.get(item_of[(id(group), len(group.responses))], {"status": 504, "headers": {}, "body": None})
            answers.append(GraphResponse(int(raw.get("status", 504)), dict(raw.get("headers") or {}),
                                         raw.get("body")))
        # The lookups after lost replies run side by side: each may wait out replication for seconds.
        doubtful = [(g, a) for g, a in zip(batch, answers, strict=True)
                    if a.status in RETRYABLE_STATUSES and a.status != 429 and g.uncertain is not None]
        decided = await asyncio.gather(*(_decide(g) for g, _ in doubtful))
        stand_ins = {id(g): d for (g, _), d in zip(doubtful, decided, strict=True)}
        finished = 0
        for group, response in zip(batch, answers, strict=True):
            index = len(group.responses)
            if response.status in RETRYABLE_STATUSES:
                if response.status == 429:
                    self.throttled += 1
                stand_in = stand_ins.get(id(group))
                if stand_in is not None:
                    response = stand_in
                elif group.attempts >= max_attempts:
                    group.responses.extend(response for _ in range(index, len(group.requests)))
                    group.finished.set()
                    finished += 1
                    continue
                else:
                    wait = response.retry_after()
                    if wait is None:
                        wait = _backoff(group.attempts, 1.0)
                    if response.status == 429:
                        self._pacer.pause(wait)
                    requeue_later(group, wait)
                    continue
            request = group.requests[index]
            if response.status == 404 and group.attempts < max_attempts and self.replicating(request, response):
                # Made by this run a moment ago: not yet on the replica that answered (see REPLICATION_PATIENCE).
                self.replication_retries += 1
                requeue_later(group, _backoff(group.attempts))
                continue
            if response.ok and request.method == "POST" and (
                    request.url in ("/users", "/groups") or request.url.endswith("/restore")):
                self.note_created(response.body)
            group.responses.append(response)
            if response.ok and len(group.responses) < len(group.requests):
                group.attempts = 0  # the next item has its own tries
                requeue_later(group, 0.0)
                continue
            # Done, or stopped by a failure: the items after a failed one are answered with it.
            group.responses.extend(response for _ in range(len(group.responses), len(group.requests)))
            group.finished.set()
            finished += 1
        return finished


async def _decide(group: RequestGroup) -> GraphResponse | None:
    """A group's `uncertain` hook, contained: a hook that cannot reach Graph leaves the item to be sent again."""
    assert group.uncertain is not None
    try:
        return await group.uncertain(len(group.responses))
    except ConnectorError:
        return None


def _backoff(attempt: int, first: float = 0.5) -> float:
    """Exponential backoff with jitter: `first` seconds at the first attempt, doubling, at most 30."""
    return min(30.0, first * 2.0 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311 - jitter, not security


class ResponseError(ConnectorError):
    """Graph answered with an error status; the message has Graph's code and message, never a body."""

    def __init__(self, response: GraphResponse, what: str) -> None:
        self.response = response
        detail = (f"{response.error_code}: {response.error_message}" if response.error_code
                  else f"HTTP {response.status}")
        if not response.from_graph and not response.ok and response.transient:
            detail += " (not Graph's answer: a proxy or gateway on the way)"
        super().__init__(f"{what}: {detail}", retryable=response.transient)
