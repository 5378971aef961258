"""Connections to the domain's DCs: sign-in with failover, retries on a fresh connection, paged searches,
and the one table (`REFUSALS`) that turns an LDAP result into our ConnectorError, Conflict or AuthError.

Each thread keeps its own bound connection (ldap3 connections are not shared between threads): the
creates of a batch may go out on several (`connections`). After every DC failed, no new connection is
tried for `UNREACHABLE_FOR` seconds, so the rest of a batch fails at once instead of each change
waiting out the connect timeouts again.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import ldap3
from ldap3.core import exceptions as ldap_errors
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from idlifecycle.connectors.ad.dn import text
from idlifecycle.connectors.ad.settings import ADSettings, ServerAddress
from idlifecycle.connectors.base import AuthError, Conflict, ConnectorError

T = TypeVar("T")

UNREACHABLE_FOR = 30.0
"""Seconds after every DC failed during which no new connection is attempted."""
PAGED_RESULTS = "1.2.840.113556.1.4.319"
PASSWORD_POLICY_MARKER = "0000052D"  # noqa: S105 - the DC's error marker, not a secret
"""ERROR_PASSWORD_RESTRICTION in the DC's diagnostic message: the password policy refused a password."""

Control = tuple[str, bool, Any]
Entry = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Refusal:
    """One row of `REFUSALS`: an LDAP answer and the error it becomes."""

    when: str
    """"bind" for the sign-in; an action's name ("enable") for that action only; "" for any change."""
    code: int | None
    """The LDAP result code (RFC 4511); None for any."""
    marker: str
    """Text the DC puts in its diagnostic message (AD's "data 533", a Win32 code); "" for any."""
    error: type[ConnectorError]
    message: str
    """Formatted with who, url, bind_dn, base_dn, secret, description and message (the DC's own)."""
    retryable: bool = False


_BUSY = "{who}: the DC answered {description}: {message}"
REFUSALS: tuple[Refusal, ...] = (
    # Bind (49 invalidCredentials): AD's "data NNN" says why (learn.microsoft.com, "LDAP error 49").
    Refusal("bind", 49, "data 533", AuthError, "{url}: the service account {bind_dn} is disabled"),
    Refusal("bind", 49, "data 775", AuthError, "{url}: the service account {bind_dn} is locked out"),
    Refusal("bind", 49, "data 773", AuthError, "{url}: the service account {bind_dn} must change its password first"),
    Refusal("bind", 49, "data 532", AuthError, "{url}: the service account {bind_dn} must change its password first"),
    Refusal("bind", 49, "", AuthError,
            "{url}: the DC refused {bind_dn} with this password: check bind_dn and the secret {secret}"),
    Refusal("bind", 8, "", AuthError, "{url}: the DC refuses a bind without TLS: use ldaps:// or start_tls = true"),
    # Changes.
    Refusal("enable", None, PASSWORD_POLICY_MARKER, ConnectorError,
            "{who}: the account has no password yet; set one before enabling it"),
    Refusal("", None, PASSWORD_POLICY_MARKER, ConnectorError,
            "{who}: the domain's password policy refused the password (too short, not complex enough, or "
            "recently used); choose a stronger one"),
    Refusal("", 68, "", Conflict, "{who}: the name is already taken in the domain ({message})"),
    Refusal("", 50, "", ConnectorError, "{who}: the service account {bind_dn} is not allowed to do this in "
            "{base_dn}: delegate control of that OU to it"),
    Refusal("", 32, "", ConnectorError, "{who}: the object or its OU does not exist ({message})"),
    # busy, unavailable, other: the DC may answer differently in a moment (worth a fresh connection).
    Refusal("", 51, "", ConnectorError, _BUSY, retryable=True),
    Refusal("", 52, "", ConnectorError, _BUSY, retryable=True),
    Refusal("", 80, "", ConnectorError, _BUSY, retryable=True),
    Refusal("", None, "", ConnectorError, _BUSY),
)
"""LDAP result -> our error, first matching row wins."""

TLS_REASONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("CERTIFICATE_VERIFY_FAILED", "certificate verify failed"),
     "its TLS certificate is not trusted: set ca_file to the CA that issued it"),
    (("doesn't match any name",),
     "its TLS certificate does not carry this host name: list the DC by the name on its certificate"),
    (("WRONG_VERSION_NUMBER", "wrong version number"),
     "it does not speak TLS on this port (ldaps:// needs port 636; use start_tls on 389)"),
)
"""What ssl's text means for a school, in the "no domain controller answered" message."""


def refusal(error: ldap_errors.LDAPOperationResult, when: str) -> Refusal | None:
    message = str(error.message or error.description)
    for row in REFUSALS:
        if ((row.when == when or (row.when == "" and when != "bind")) and row.code in (None, error.result)
                and row.marker in message):
            return row
    return None


def transient(error: BaseException) -> bool:
    """A lost or timed-out connection, or a DC saying it is busy: worth a reconnect and another go."""
    if isinstance(error, ldap_errors.LDAPCommunicationError | ldap_errors.LDAPResponseTimeoutError):
        return True
    if isinstance(error, ldap_errors.LDAPOperationResult):
        row = refusal(error, "")
        return row is not None and row.retryable
    return False


def why_unreachable(error: BaseException) -> str:
    said = str(error)
    for texts, reason in TLS_REASONS:
        if any(t in said for t in texts):
            return reason
    return said or type(error).__name__


class ADSession:
    """The connections of one connector, one per thread, and the reads every part shares."""

    def __init__(self, name: str, settings: ADSettings, bind_password: str) -> None:
        self.name = name
        self.settings = settings
        self._bind_password = bind_password
        self._local = threading.local()
        self._all_connections: list[ldap3.Connection] = []
        self._lock = threading.Lock()
        self._unreachable: tuple[float, str] | None = None
        self.server_used: ServerAddress | None = None

    @property
    def conn(self) -> ldap3.Connection:
        """This thread's bound connection, opened (or reopened) on first use."""
        conn: ldap3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(ldap_errors.LDAPException):  # already gone: why we drop it
                conn.unbind()

    def _connect(self) -> ldap3.Connection:
        """Bind to the first server that answers, in the configured order (failover)."""
        if self._unreachable is not None and time.monotonic() < self._unreachable[0]:
            raise ConnectorError(self._unreachable[1], retryable=True)
        s = self.settings
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED if s.tls_verify else ssl.CERT_NONE, ca_certs_file=s.ca_file)
        failures: list[str] = []
        for address in s.addresses():
            server = ldap3.Server(address.host, port=address.port, use_ssl=address.use_ssl, tls=tls,
                                  get_info=ldap3.NONE, connect_timeout=min(s.timeout, 10))
            conn = ldap3.Connection(server, user=s.bind_dn, password=self._bind_password, raise_exceptions=True,
                                    receive_timeout=s.timeout, auto_referrals=False, auto_range=True,
                                    read_only=False, return_empty_attributes=False)
            try:
                conn.open()
                if address.start_tls:
                    conn.start_tls()
                conn.bind()
            except ldap_errors.LDAPOperationResult as error:
                row = refusal(error, "bind")
                if row is not None:
                    raise self.error(row, error, url=address.url) from None
                failures.append(f"{address.url}: {why_unreachable(error)}")
                continue
            except (ldap_errors.LDAPException, OSError) as error:
                failures.append(f"{address.url}: {why_unreachable(error)}")
                continue
            with self._lock:
                self._all_connections.append(conn)
                self.server_used = address
            return conn
        message = "no domain controller answered: " + "; ".join(failures)
        self._unreachable = (time.monotonic() + UNREACHABLE_FOR, message)
        raise ConnectorError(message, retryable=True)

    def error(self, row: Refusal, error: ldap_errors.LDAPOperationResult, *, who: str = "",
              url: str = "") -> ConnectorError:
        """The row's error for this LDAP answer, its message filled in (never the bind password)."""
        message = row.message.format(
            who=who, url=url, bind_dn=self.settings.bind_dn, base_dn=self.settings.base_dn,
            secret=f"{self.name}_bind_password", description=error.description,
            message=str(error.message or error.description))
        return row.error(message, retryable=row.retryable)

    def refused(self, error: ldap_errors.LDAPOperationResult, action: str, who: str) -> ConnectorError:
        """What an LDAP answer to a change means, by `REFUSALS`."""
        row = refusal(error, action)
        assert row is not None  # the table's last row matches every answer to a change
        return self.error(row, error, who=who)

    def close(self) -> None:
        with self._lock:
            connections, self._all_connections = self._all_connections, []
        for conn in connections:
            with contextlib.suppress(ldap_errors.LDAPException):  # closing an already-dead connection
                conn.unbind()

    def retrying(self, operation: Callable[[], T]) -> T:
        """Run `operation` again on a fresh connection after a lost connection; it must be idempotent."""
        retrying = Retrying(retry=retry_if_exception(transient), stop=stop_after_attempt(4),
                            wait=wait_exponential(multiplier=0.2, max=3), reraise=True,
                            before_sleep=lambda _state: self.drop_connection())
        return retrying(operation)

    def read(self, what: str, operation: Callable[[], T]) -> T:
        """A read, retried; an LDAP failure that outlasts the retries is one retryable ConnectorError."""
        try:
            return self.retrying(operation)
        except ldap_errors.LDAPException as error:
            raise ConnectorError(f"reading {what} failed: {error}", retryable=True) from None

    def search(self, base: str, search_filter: str, attributes: Sequence[str], *, scope: str = ldap3.SUBTREE,
               controls: list[Control] | None = None) -> Iterator[Entry]:
        """Paged search yielding (dn, raw attributes); no such base -> nothing."""
        conn = self.conn
        cookie: Any = None
        while True:
            try:
                conn.search(base, search_filter, search_scope=scope, attributes=list(attributes),
                            paged_size=self.settings.page_size if scope != ldap3.BASE else None,
                            paged_cookie=cookie, controls=controls)
            except ldap_errors.LDAPNoSuchObjectResult:
                return
            for item in conn.response or []:
                if item.get("type") == "searchResEntry":
                    yield item["dn"], item["raw_attributes"]
            cookie = (conn.result.get("controls") or {}).get(PAGED_RESULTS, {}).get("value", {}).get("cookie")
            if not cookie:
                return

    def read_one(self, base: str, attributes: Sequence[str], controls: list[Control] | None = None
                 ) -> Entry | None:
        for found in self.search(base, "(objectClass=*)", attributes, scope=ldap3.BASE, controls=controls):
            return found
        return None

    def root_dse(self) -> dict[str, Any]:
        found = self.read_one("", ["highestCommittedUSN", "dsServiceName", "defaultNamingContext",
                                   "rootDomainNamingContext"])
        if found is None:
            raise ConnectorError("the DC did not answer the rootDSE read")
        return found[1]

    def domain_dn(self) -> str:
        value = text(self.root_dse(), "defaultNamingContext")
        if not value:
            raise ConnectorError("the DC did not say which domain it serves (defaultNamingContext)")
        return value
