"""Active Directory connector: reads and writes one managed tree of a domain over LDAPS or StartTLS (ldap3).

Scope: everything lives under `base_dn`; every write first checks that its target DN ends with it
(`_check_in_scope`). Accounts are matched by the anchor in `employeeID`; Account.key is the
objectGUID. Neutral containers "Pupils/Year 7" map to `OU=Year 7,OU=Pupils,<base_dn>`.

Snapshot: a full read is a paged search of the managed tree (only the compared attributes; group
members with the extended-DN control so they are GUIDs, which survive renames) plus a cheap paged
listing of every sAMAccountName in the domain (names outside the scope). The result is kept,
compressed, in the cursor store with the DC's invocationId and highestCommittedUSN. The next read
on the same DC only fetches objects with a higher uSNChanged, plus tombstones (show-deleted
control) for deletions; an object whose new DN is outside the tree has moved out. A renamed or
moved OU changes the DNs of objects whose uSNChanged does not move, so any changed OU or container
forces a full read, as do a new invocationId (a restored DC), a different DC or changed settings.

Writes: every change first reads the object's current state, so re-running a change after a lost
connection (retried with tenacity on a fresh connection, failing over to the next server) reports
ALREADY instead of doing it twice; a create that hit an existing name is ALREADY when that object
carries our anchor, a Conflict otherwise. Memberships of one group go in one modify. A group's
members are reported whole, wherever they live (CN=Users, other OUs, foreign security principals,
contacts, nested groups), so that a restricted share's group can be held to its approved members.

Privileged accounts: every snapshot reads afresh (membership changes do not move a user's uSNChanged)
which accounts under base_dn have `adminCount=1` or are members, nested or by primary group, of a
protected group found by its well-known SID (`PROTECTED_GROUPS`: names are localised). Their
Account.privileged says why; the planner leaves them alone, and `privileged_reason` refuses any
change to them but a removal from a restricted group (the last line of defence).

The bind password is the secret `<name>_bind_password` (env `IDLIFECYCLE_AD_BIND_PASSWORD` for a
connector named "ad").
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import re
import ssl
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.protocol.formatters.formatters import format_sid
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from idlifecycle.anchors import directory_anchor
from idlifecycle.connectors.base import (
    AuthError,
    Capabilities,
    Conflict,
    Connector,
    ConnectorContext,
    ConnectorError,
    CursorStore,
)
from idlifecycle.errors import ConfigError
from idlifecycle.model import (
    Account,
    Action,
    Change,
    DeletedAccount,
    Group,
    Outcome,
    Result,
    RoleHolder,
    Snapshot,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

UAC_DISABLED = 0x2
EMPLOYEE_ID_LIMIT = 16
"""employeeID's rangeUpper (MS-ADA1 "Employee-ID"): a longer person id is written as its short anchor
(idlifecycle.anchors), resolved back to the full id by the job from the ids it knows."""
UAC_NORMAL_ACCOUNT = 0x200
UAC_DONT_EXPIRE_PASSWORD = 0x10000
GLOBAL_SECURITY_GROUP = -2147483646
EXTENDED_DN_CONTROL = ("1.2.840.113556.1.4.529", False, None)
SHOW_DELETED_CONTROL = ("1.2.840.113556.1.4.417", False, None)
PASSWORD_POLICY_MARKER = "0000052D"  # noqa: S105 - the DC's error marker, not a secret
NEVER = {0, 0x7FFFFFFFFFFFFFFF}
FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)

ATTRIBUTE_NAMES = {
    "department": "department",
    "jobTitle": "title",
    "employeeType": "employeeType",
    "company": "company",
    "office": "physicalDeliveryOfficeName",
    "description": "description",
    "employeeNumber": "employeeNumber",
}
"""Neutral attribute names the mapping uses -> AD attribute; other names are used as they are."""

ACCOUNT_ATTRIBUTES = [
    "objectGUID", "sAMAccountName", "userPrincipalName", "givenName", "sn", "displayName", "employeeID",
    "userAccountControl", "pwdLastSet", "whenCreated", "lastLogonTimestamp", "objectClass",
]
GROUP_ATTRIBUTES = ["objectGUID", "cn", "sAMAccountName", "member", "objectClass"]

PROTECTED_GROUPS = (
    ("Domain Admins", "domain", 512), ("Enterprise Admins", "root", 519), ("Schema Admins", "root", 518),
    ("Administrators", "builtin", 544), ("Account Operators", "builtin", 548),
    ("Server Operators", "builtin", 549), ("Print Operators", "builtin", 550), ("Backup Operators", "builtin", 551),
    ("Replicator", "builtin", 552), ("Domain Controllers", "domain", 516),
    ("Read-only Domain Controllers", "domain", 521), ("Cert Publishers", "domain", 517),
    ("Group Policy Creator Owners", "domain", 520), ("Key Admins", "domain", 526),
    ("Enterprise Key Admins", "root", 527),
)
"""Role name, whose SID it is relative to (this domain, the forest root domain, or BUILTIN S-1-5-32)
and its well-known RID ("Well-known SIDs", learn.microsoft.com/windows-server/identity/ad-ds/manage/
understand-security-identifiers): found by SID because the names differ by language."""
IN_CHAIN = "1.2.840.113556.1.4.1941"
"""LDAP_MATCHING_RULE_IN_CHAIN: membership through any depth of nested groups (the access review's
role holders; too slow on Samba for every snapshot, see `_privileged_in_scope`)."""
STATE_VERSION = 2
"""The cached snapshot's shape (2: group members with their names, wherever they live)."""

UNREACHABLE_FOR = 30.0
"""Seconds after every DC failed during which no new connection is attempted."""
CREATE_CHUNK = 50
"""Creates applied before their keys are read back in one search (and their Results yielded)."""
SCOPE_FILTER = "(|(&(objectCategory=person)(objectClass=user))(objectClass=group))"
_GROUP_NAME_FORBIDDEN = re.compile(r'["/\\\[\]:;|=,+*?<>@]')


def _ldap_name(neutral: str) -> str:
    return ATTRIBUTE_NAMES.get(neutral, neutral)


def _transient(error: BaseException) -> bool:
    """A lost or timed-out connection, or a DC saying it is busy: worth a reconnect and another go."""
    if isinstance(error, ldap_errors.LDAPCommunicationError | ldap_errors.LDAPResponseTimeoutError):
        return True
    return isinstance(error, ldap_errors.LDAPOperationResult) and error.result in (51, 52, 80)


@dataclass(frozen=True)
class ServerAddress:
    url: str
    host: str
    port: int
    use_ssl: bool
    start_tls: bool


@dataclass(frozen=True)
class ADSettings:
    """The connector's TOML table, checked."""

    servers: tuple[ServerAddress, ...]
    tls_verify: bool
    ca_file: str | None
    bind_dn: str
    bind_password: str = field(repr=False)
    base_dn: str
    groups_container: str
    upn_suffix: str | None
    mail_from_login: bool
    home_directory: str | None
    home_drive: str | None
    attributes: tuple[str, ...]
    connections: int
    timeout: int
    page_size: int

    @classmethod
    def from_context(cls, context: ConnectorContext) -> ADSettings:
        source = context.source
        raw_servers = context.option("servers", required=True)
        if isinstance(raw_servers, str):
            raw_servers = [raw_servers]
        if not isinstance(raw_servers, list) or not raw_servers:
            raise ConfigError(source, "servers", 'give a list such as ["ldaps://dc1.school.local"]')
        start_tls = bool(context.option("start_tls", False))
        servers = tuple(_server_address(source, str(url), start_tls) for url in raw_servers)
        tls_verify = bool(context.option("tls_verify", True))
        if not tls_verify:
            log.warning("%s: tls_verify = false: the DC's certificate is not checked (tests only)", source)
        ca_file = context.option("ca_file")
        base_dn = str(context.option("base_dn", required=True))
        try:
            parsed = _dn_parts(base_dn)
        except ValueError:
            parsed = []
        if not parsed or not any(name == "dc" for rdn in parsed for name, _ in rdn):
            raise ConfigError(source, "base_dn", f"{base_dn!r} is not a DN such as OU=School,DC=school,DC=local")
        secret_name = f"{context.name}_bind_password"
        try:
            password = context.secrets[secret_name]
        except KeyError:
            raise ConfigError(source, "bind_dn",
                              f"the bind password is missing: set the secret {secret_name}") from None
        attributes = context.option("attributes", ["department", "jobTitle", "employeeType"])
        connections = int(context.option("connections", 1))
        if connections < 1:
            raise ConfigError(source, "connections", "must be at least 1")
        return cls(
            servers=servers,
            tls_verify=tls_verify,
            ca_file=str(ca_file) if ca_file else None,
            bind_dn=str(context.option("bind_dn", required=True)),
            bind_password=password,
            base_dn=base_dn,
            groups_container=str(context.option("groups_container", "Groups")),
            upn_suffix=context.option("upn_suffix"),
            mail_from_login=bool(context.option("mail_from_login", False)),
            home_directory=context.option("home_directory"),
            home_drive=context.option("home_drive"),
            attributes=tuple(str(a) for a in attributes),
            connections=connections,
            timeout=int(context.option("timeout", 30)),
            page_size=int(context.option("page_size", 500)),
        )

    def fingerprint(self) -> str:
        """What a cached snapshot depends on: another tree or attribute list needs a full read."""
        return hashlib.sha256(json.dumps([self.base_dn.lower(), self.groups_container, self.attributes,
                                          STATE_VERSION]).encode()).hexdigest()[:16]


def _server_address(source: str, url: str, start_tls: bool) -> ServerAddress:
    parts = urlsplit(url)
    if parts.scheme not in ("ldaps", "ldap") or not parts.hostname:
        raise ConfigError(source, "servers", f"{url!r} is not ldaps://host[:port] or ldap://host[:port]")
    if parts.scheme == "ldap" and not start_tls:
        raise ConfigError(source, "servers", f"{url!r} sends passwords in clear: use ldaps:// or set start_tls = true")
    use_ssl = parts.scheme == "ldaps"
    return ServerAddress(url, parts.hostname, parts.port or (636 if use_ssl else 389), use_ssl,
                         start_tls and not use_ssl)


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    """An RFC 4514 value with its escapes undone (hex pairs are UTF-8 bytes)."""
    out, i = bytearray(), 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            pair = value[i + 1:i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                out.append(int(pair, 16))
                i += 3
                continue
            out.extend(value[i + 1].encode())
            i += 2
            continue
        out.extend(value[i].encode())
        i += 1
    return out.decode("utf-8", errors="replace")


def _dn_parts(dn: str) -> list[tuple[tuple[str, str], ...]]:
    """A DN as comparable RDNs: attribute names and unescaped values, case-folded, in DN order."""
    if dn.startswith("<"):  # extended form from the extended-DN control: <GUID=..>;<SID=..>;CN=..
        dn = dn.rsplit(">;", 1)[-1]
    rdns = []
    for rdn in _split_unescaped(dn, ","):
        avas = []
        for ava in _split_unescaped(rdn, "+"):
            name, sep, value = ava.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"not a DN: {dn!r}")
            avas.append((name.strip().casefold(), _unescape(value.strip()).casefold()))
        rdns.append(tuple(sorted(avas)))
    return rdns


def _within(dn: str, base: str) -> bool:
    """True when `dn` is `base` or below it (compared by RDNs, never by string suffix)."""
    try:
        parts, base_parts = _dn_parts(dn), _dn_parts(base)
    except ValueError:
        return False
    return len(parts) >= len(base_parts) and parts[len(parts) - len(base_parts):] == base_parts


def _plain_dn(dn: str) -> str:
    return dn.rsplit(">;", 1)[-1] if dn.startswith("<") else dn


def _parent_dn(dn: str) -> str:
    r"""The DN one level up, split at the first unescaped comma (`CN=Doe\, Jane,OU=Staff` -> `OU=Staff`)."""
    return ",".join(_split_unescaped(_plain_dn(dn), ",")[1:])


def _same_dn(left: str, right: str) -> bool:
    try:
        return _dn_parts(left) == _dn_parts(right)
    except ValueError:
        return False


def _rdn_values(dn: str) -> list[str]:
    """The (first) value of each RDN, unescaped, in DN order."""
    return [_unescape(_split_unescaped(rdn, "+")[0].partition("=")[2].strip())
            for rdn in _split_unescaped(_plain_dn(dn), ",")]


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw))


def _key(key: str) -> str:
    try:
        return str(uuid.UUID(key))
    except ValueError:
        raise ConnectorError(f"{key!r} is not an Active Directory objectGUID") from None


def _guid_filter(key: str) -> str:
    raw = uuid.UUID(_key(key)).bytes_le
    return "(objectGUID=" + "".join(f"\\{b:02x}" for b in raw) + ")"


def _filetime(value: str | None) -> datetime | None:
    if not value:
        return None
    ticks = int(value)
    if ticks in NEVER or ticks < 0:
        return None
    return FILETIME_EPOCH + timedelta(microseconds=ticks // 10)


def _generalized(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _password_value(password: str) -> bytes:
    return f'"{password}"'.encode("utf-16-le")


def _text(entry: Mapping[str, Any], name: str) -> str | None:
    values = entry.get(name) or []
    if not values:
        return None
    value = values[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _member_name(value: str) -> str:
    """The display name of a member from its extended DN: its CN (the first RDN's value)."""
    values = _rdn_values(value)
    return values[0] if values else value


def _member_guid(value: str) -> str | None:
    match = re.match(r"<GUID=([0-9a-fA-F-]+)>", value)
    if match is None:
        return None
    text = match[1]
    return str(uuid.UUID(text)) if "-" in text else str(uuid.UUID(bytes_le=bytes.fromhex(text)))


class ADConnector(Connector):
    """One Active Directory domain's managed tree."""

    capabilities = Capabilities(containers=True, max_username_length=20, revoke_sessions=False,
                                password_rules="ad",  # noqa: S106 - which rules apply, not a secret
                                max_anchor_length=EMPLOYEE_ID_LIMIT, recycle_bin=True)

    option_keys: ClassVar[frozenset[str]] = frozenset({
        "attributes", "base_dn", "bind_dn", "ca_file", "connections", "groups_container", "home_directory",
        "home_drive", "mail_from_login", "page_size", "servers", "start_tls", "timeout", "tls_verify", "upn_suffix",
    })

    def __init__(self, name: str, settings: ADSettings, cursors: CursorStore) -> None:
        super().__init__(name)
        self.settings = settings
        self.cursors = cursors
        self._local = threading.local()
        self._all_connections: list[ldap3.Connection] = []
        self._lock = threading.Lock()
        self._known_containers: set[str] = set()
        self.server_used: ServerAddress | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._unreachable: tuple[float, str] | None = None
        self.last_read = ""
        """"full" or "incremental": how the last snapshot was read (for logs and tests)."""
        self._privileged: dict[str, str] | None = None
        """objectGUID -> why it is privileged, as the last snapshot read it."""

    @classmethod
    def from_config(cls, context: ConnectorContext) -> ADConnector:
        return cls(context.name, ADSettings.from_context(context), context.cursors)

    # connections

    @property
    def _conn(self) -> ldap3.Connection:
        conn: ldap3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(ldap_errors.LDAPException):  # already gone: why we drop it
                conn.unbind()

    def _connect(self) -> ldap3.Connection:
        """Bind to the first server that answers, in the configured order (failover)."""
        if self._unreachable is not None and time.monotonic() < self._unreachable[0]:
            # Every DC failed moments ago: the rest of this batch fails at once instead of each
            # change waiting out the connect timeouts again.
            raise ConnectorError(self._unreachable[1], retryable=True)
        s = self.settings
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED if s.tls_verify else ssl.CERT_NONE, ca_certs_file=s.ca_file)
        failures: list[str] = []
        for address in s.servers:
            server = ldap3.Server(address.host, port=address.port, use_ssl=address.use_ssl, tls=tls,
                                  get_info=ldap3.NONE, connect_timeout=min(s.timeout, 10))
            conn = ldap3.Connection(server, user=s.bind_dn, password=s.bind_password, raise_exceptions=True,
                                    receive_timeout=s.timeout, auto_referrals=False, auto_range=True,
                                    read_only=False, return_empty_attributes=False)
            try:
                conn.open()
                if address.start_tls:
                    conn.start_tls()
                conn.bind()
            except ldap_errors.LDAPInvalidCredentialsResult as error:
                raise AuthError(self._bind_refused(address, str(error.message))) from None
            except ldap_errors.LDAPStrongerAuthRequiredResult:
                raise AuthError(f"{address.url}: the DC refuses a bind without TLS: use ldaps:// or "
                                "start_tls = true") from None
            except (ldap_errors.LDAPException, OSError) as error:
                failures.append(f"{address.url}: {self._why_unreachable(error)}")
                continue
            with self._lock:
                self._all_connections.append(conn)
                self.server_used = address
            return conn
        message = "no domain controller answered: " + "; ".join(failures)
        self._unreachable = (time.monotonic() + UNREACHABLE_FOR, message)
        raise ConnectorError(message, retryable=True)

    def _bind_refused(self, address: ServerAddress, message: str) -> str:
        secret = f"{self.name}_bind_password"
        if "data 533" in message:
            return f"{address.url}: the service account {self.settings.bind_dn} is disabled"
        if "data 775" in message:
            return f"{address.url}: the service account {self.settings.bind_dn} is locked out"
        if "data 773" in message or "data 532" in message:
            return f"{address.url}: the service account {self.settings.bind_dn} must change its password first"
        return (f"{address.url}: the DC refused {self.settings.bind_dn} with this password: check bind_dn and "
                f"the secret {secret}")

    @staticmethod
    def _why_unreachable(error: BaseException) -> str:
        text = str(error)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return "its TLS certificate is not trusted: set ca_file to the CA that issued it"
        if "doesn't match any name" in text:
            return ("its TLS certificate does not carry this host name: list the DC by the name on its "
                    "certificate")
        if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
            return "it does not speak TLS on this port (ldaps:// needs port 636; use start_tls on 389)"
        return text or type(error).__name__

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        with self._lock:
            connections, self._all_connections = self._all_connections, []
        for conn in connections:
            with contextlib.suppress(ldap_errors.LDAPException):  # closing an already-dead connection
                conn.unbind()

    def _retrying(self, operation: Callable[[], T]) -> T:
        """Run `operation` again on a fresh connection after a lost connection; it must be idempotent."""
        retrying = Retrying(retry=retry_if_exception(_transient), stop=stop_after_attempt(4),
                            wait=wait_exponential(multiplier=0.2, max=3), reraise=True,
                            before_sleep=lambda _state: self._drop_connection())
        return retrying(operation)

    # reading

    def _search(self, base: str, search_filter: str, attributes: Sequence[str], *, scope: str = ldap3.SUBTREE,
                controls: list[tuple[str, bool, Any]] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Paged search yielding (dn, raw attributes); no such base -> nothing."""
        conn = self._conn
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
            cookie = (conn.result.get("controls") or {}).get("1.2.840.113556.1.4.319", {}).get("value", {}).get(
                "cookie")
            if not cookie:
                return

    def _read_one(self, base: str, attributes: Sequence[str], controls: list[tuple[str, bool, Any]] | None = None
                  ) -> tuple[str, dict[str, Any]] | None:
        for found in self._search(base, "(objectClass=*)", attributes, scope=ldap3.BASE, controls=controls):
            return found
        return None

    def _root_dse(self) -> dict[str, Any]:
        found = self._read_one("", ["highestCommittedUSN", "dsServiceName", "defaultNamingContext"])
        if found is None:
            raise ConnectorError("the DC did not answer the rootDSE read")
        return found[1]

    def _domain_dn(self) -> str:
        value = _text(self._root_dse(), "defaultNamingContext")
        if not value:
            raise ConnectorError("the DC did not say which domain it serves (defaultNamingContext)")
        return value

    def _account_record(self, dn: str, raw: Mapping[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {"dn": dn}
        for name in ("sAMAccountName", "userPrincipalName", "givenName", "sn", "displayName", "employeeID",
                     "userAccountControl", "pwdLastSet", "whenCreated", "lastLogonTimestamp"):
            record[name] = _text(raw, name)
        record["attributes"] = {
            neutral: value for neutral in self.settings.attributes
            if (value := _text(raw, _ldap_name(neutral))) is not None
        }
        return record

    def _classify(self, dn: str, raw: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        dn = _plain_dn(dn)
        classes = {(c.decode() if isinstance(c, bytes) else c).lower() for c in raw.get("objectClass", [])}
        if "group" in classes:
            # Every member, with its CN for messages: one outside the tree is as much a member.
            values = [v.decode() if isinstance(v, bytes) else v for v in raw.get("member", [])]
            members = {g: _member_name(v) for v in values if (g := _member_guid(v)) is not None}
            return "group", {"dn": dn, "cn": _text(raw, "cn"), "members": members}
        return "account", self._account_record(dn, raw)

    def _scope_attributes(self) -> list[str]:
        extra = [_ldap_name(a) for a in self.settings.attributes]
        return sorted(set(ACCOUNT_ATTRIBUTES + GROUP_ATTRIBUTES + extra + ["uSNChanged"]))

    def _cursor_name(self) -> str:
        assert self.server_used is not None
        return f"snapshot@{self.server_used.url}"

    def snapshot(self) -> Snapshot:
        try:
            return self._retrying(self._snapshot)
        except ldap_errors.LDAPException as error:
            raise ConnectorError(f"reading {self.settings.base_dn} failed: {error}", retryable=True) from None

    def _snapshot(self) -> Snapshot:
        dse = self._root_dse()
        high = int(_text(dse, "highestCommittedUSN") or 0)
        ntds = _text(dse, "dsServiceName") or ""
        found = self._read_one(ntds, ["invocationId"])
        invocation = _guid(found[1]["invocationId"][0]) if found and found[1].get("invocationId") else ""
        if self._read_one(self.settings.base_dn, ["objectGUID"]) is None:
            raise ConnectorError(f"base_dn {self.settings.base_dn} does not exist on {self._conn.server.host}: "
                                 "create it or correct base_dn")
        state = self._load_state(invocation)
        self.last_read = "incremental"
        if state is None or not self._incremental_read(state):
            self.last_read = "full"
            state = self._full_read()
        state.update(invocation=invocation, usn=high, settings=self.settings.fingerprint())
        self._save_state(state)
        self._privileged = self._privileged_in_scope()
        return self._snapshot_from(state, self._privileged)

    def _protected_groups(self) -> list[tuple[str, str, str, str]]:
        """(role name, DN, SID, what it is relative to) of each protected group this forest has
        (Key Admins needs the 2016 functional level)."""
        dse = self._read_one("", ["defaultNamingContext", "rootDomainNamingContext"])
        raw = dse[1] if dse else {}
        domain = _text(raw, "defaultNamingContext") or self._domain_dn()
        root = _text(raw, "rootDomainNamingContext") or domain
        sids = {"builtin": "S-1-5-32"}
        for kind, dn in (("domain", domain), ("root", root)):
            found = self._read_one(dn, ["objectSid"])
            sids[kind] = format_sid(found[1]["objectSid"][0]) if found and found[1].get("objectSid") else ""
        groups: list[tuple[str, str, str, str]] = []
        for role, relative_to, rid in PROTECTED_GROUPS:
            if not sids[relative_to]:
                continue
            sid = f"{sids[relative_to]}-{rid}"
            group = self._read_one(f"<SID={sid}>", ["objectGUID"])
            if group is not None:
                groups.append((role, _plain_dn(group[0]), sid, relative_to))
        return groups

    def _privileged_in_scope(self) -> dict[str, str]:
        """objectGUID -> why, for the accounts under base_dn holding a protected group, nested or not.

        The nesting is walked one level per search over `memberOf` (indexed), not with the in-chain
        matching rule, which Samba evaluates object by object (15 such searches: about 1 s for 300
        accounts, measured, against 30 ms this way).
        """
        domain = self._domain_dn()
        role_of: dict[tuple[tuple[tuple[str, str], ...], ...], str] = {}
        # RID -> role, for every group of this domain that is or leads to a protected group: a primary
        # group is not listed in `member`, so a user whose primaryGroupID is 512 is a Domain Admin, and
        # one whose primary group is itself nested in Domain Admins or Administrators is one too.
        primary: dict[str, str] = {}
        frontier: list[str] = []
        domain_sid = ""
        for role, dn, sid, relative_to in self._protected_groups():
            role_of.setdefault(tuple(_dn_parts(dn)), role)
            frontier.append(dn)
            if relative_to == "domain":
                domain_sid, rid = sid.rsplit("-", 1)
                primary[rid] = role
        groups = list(frontier)
        while frontier:
            nested: list[str] = []
            for start in range(0, len(frontier), 100):
                clauses = "".join(f"(memberOf={escape_filter_chars(dn)})" for dn in frontier[start:start + 100])
                for dn, raw in self._search(domain, f"(&(objectClass=group)(|{clauses}))", ["memberOf", "objectSid"]):
                    parts = tuple(_dn_parts(dn))
                    if parts not in role_of:
                        role_of[parts] = self._first_role(raw, role_of) or "a protected group"
                        nested.append(_plain_dn(dn))
                        sid = format_sid(raw["objectSid"][0]) if raw.get("objectSid") else ""
                        if domain_sid and sid.startswith(domain_sid + "-"):
                            primary.setdefault(sid.rsplit("-", 1)[1], role_of[parts])
            groups += nested
            frontier = nested
        privileged: dict[str, str] = {}
        for start in range(0, len(groups), 100):
            clauses = "".join(f"(memberOf={escape_filter_chars(dn)})" for dn in groups[start:start + 100])
            if start == 0:
                clauses += "".join(f"(primaryGroupID={rid})" for rid in primary)
            for _, raw in self._search(self.settings.base_dn, f"(&(objectCategory=person)(|{clauses}))",
                                       ["objectGUID", "memberOf", "primaryGroupID"]):
                role = self._first_role(raw, role_of) or primary.get(_text(raw, "primaryGroupID") or "", "")
                if role:
                    privileged.setdefault(_guid(raw["objectGUID"][0]), f"member of {role}")
        for _, raw in self._search(self.settings.base_dn, "(&(objectCategory=person)(adminCount=1))", ["objectGUID"]):
            privileged.setdefault(_guid(raw["objectGUID"][0]), "adminCount=1: protected by AdminSDHolder")
        return privileged

    @staticmethod
    def _first_role(raw: Mapping[str, Any], role_of: Mapping[tuple[tuple[tuple[str, str], ...], ...], str]) -> str:
        """The protected role an object holds through the first of its groups that leads to one."""
        for value in raw.get("memberOf", []):
            dn = value.decode() if isinstance(value, bytes) else str(value)
            with contextlib.suppress(ValueError):
                role = role_of.get(tuple(_dn_parts(dn)))
                if role:
                    return role
        return ""

    def privileged_reason(self, key: str) -> str:
        """Why the account with this objectGUID is privileged ("" if it is not), read afresh when no
        snapshot was taken by this connector yet."""
        if self._privileged is None:
            try:
                self._privileged = self._retrying(self._privileged_in_scope)
            except ldap_errors.LDAPException as error:
                raise ConnectorError(f"reading the privileged accounts failed: {error}", retryable=True) from None
        return self._privileged.get(key.lower(), "")

    def _full_read(self) -> dict[str, Any]:
        objects: dict[str, dict[str, Any]] = {}
        for dn, raw in self._search(self.settings.base_dn, SCOPE_FILTER, self._scope_attributes(),
                                    controls=[EXTENDED_DN_CONTROL]):
            kind, record = self._classify(dn, raw)
            record["type"] = kind
            objects[_guid(raw["objectGUID"][0])] = record
        outside: dict[str, str] = {}
        for dn, raw in self._search(self._domain_dn(), "(sAMAccountName=*)", ["objectGUID", "sAMAccountName"]):
            if not _within(dn, self.settings.base_dn):
                outside[_guid(raw["objectGUID"][0])] = _text(raw, "sAMAccountName") or ""
        return {"objects": objects, "outside": outside}

    def _incremental_read(self, state: dict[str, Any]) -> bool:
        """Bring a cached snapshot up to date; False when only a full read can be trusted."""
        since = f"(uSNChanged>={int(state['usn']) + 1})"
        domain = self._domain_dn()
        for _ in self._search(domain, f"(&(|(objectClass=organizationalUnit)(objectClass=container)){since})",
                              ["objectGUID"]):
            return False
        objects: dict[str, dict[str, Any]] = state["objects"]
        outside: dict[str, str] = state["outside"]
        for dn, raw in self._search(domain, f"(&(sAMAccountName=*){since})", ["objectGUID", "sAMAccountName"]):
            key = _guid(raw["objectGUID"][0])
            if _within(dn, self.settings.base_dn):
                outside.pop(key, None)
            else:
                objects.pop(key, None)
                outside[key] = _text(raw, "sAMAccountName") or ""
        for dn, raw in self._search(self.settings.base_dn, f"(&{SCOPE_FILTER}{since})", self._scope_attributes(),
                                    controls=[EXTENDED_DN_CONTROL]):
            kind, record = self._classify(dn, raw)
            record["type"] = kind
            objects[_guid(raw["objectGUID"][0])] = record
        for _, raw in self._search(domain, f"(&(isDeleted=TRUE){since})", ["objectGUID"],
                                   controls=[SHOW_DELETED_CONTROL]):
            key = _guid(raw["objectGUID"][0])
            objects.pop(key, None)
            outside.pop(key, None)
        return True

    def _load_state(self, invocation: str) -> dict[str, Any] | None:
        stored = self.cursors.get_cursor(self.name, self._cursor_name())
        if not stored:
            return None
        try:
            state: dict[str, Any] = json.loads(zlib.decompress(base64.b64decode(stored)))
        except (ValueError, zlib.error):
            return None
        if state.get("invocation") != invocation or state.get("settings") != self.settings.fingerprint():
            return None
        return state

    def _save_state(self, state: Mapping[str, Any]) -> None:
        packed = base64.b64encode(zlib.compress(json.dumps(state, separators=(",", ":")).encode(), 6)).decode()
        self.cursors.set_cursor(self.name, self._cursor_name(), packed)

    def _container_of(self, dn: str) -> str:
        values = _rdn_values(dn)
        between = values[1:len(values) - len(_split_unescaped(self.settings.base_dn, ","))]
        return "/".join(reversed(between))

    def _account_from(self, key: str, record: Mapping[str, Any]) -> Account:
        uac = int(record.get("userAccountControl") or 0)
        pwd_last_set = record.get("pwdLastSet")
        return Account(
            directory=self.name, key=key, username=record.get("sAMAccountName") or "",
            login=record.get("userPrincipalName") or "", given_name=record.get("givenName") or "",
            surname=record.get("sn") or "", display_name=record.get("displayName") or "",
            anchor=record.get("employeeID") or None, enabled=not uac & UAC_DISABLED,
            container=self._container_of(record["dn"]), attributes=dict(record.get("attributes") or {}),
            password_never_expires=bool(uac & UAC_DONT_EXPIRE_PASSWORD),
            must_change_password=pwd_last_set == "0",  # noqa: S105 - pwdLastSet 0 means "change at next sign-in"
            created=_generalized(record.get("whenCreated")),
            last_sign_in=_filetime(record.get("lastLogonTimestamp")), password_last_set=_filetime(pwd_last_set),
        )

    def _snapshot_from(self, state: Mapping[str, Any], privileged: Mapping[str, str]) -> Snapshot:
        objects: Mapping[str, Mapping[str, Any]] = state["objects"]
        accounts = {key: replace(self._account_from(key, r), privileged=privileged.get(key, ""))
                    for key, r in objects.items() if r["type"] == "account"}
        groups = tuple(
            Group(self.name, key, r.get("cn") or "",
                  {m: accounts[m].display_name if m in accounts else name for m, name in r["members"].items()})
            for key, r in objects.items() if r["type"] == "group"
        )
        return Snapshot(self.name, tuple(accounts.values()), groups,
                        frozenset(name for name in state["outside"].values() if name))

    def password_constraints(self) -> Mapping[str, Any]:
        def read() -> Mapping[str, Any]:
            found = self._read_one(self._domain_dn(), ["minPwdLength", "pwdProperties", "pwdHistoryLength"])
            raw = found[1] if found else {}
            return {
                "min_length": int(_text(raw, "minPwdLength") or 0),
                "max_length": 256,
                "complexity": bool(int(_text(raw, "pwdProperties") or 0) & 1),
                "history": int(_text(raw, "pwdHistoryLength") or 0),
            }
        try:
            return self._retrying(read)
        except ldap_errors.LDAPException as error:
            raise ConnectorError(f"reading the domain's password policy failed: {error}", retryable=True) from None

    def recycle_bin(self) -> list[DeletedAccount]:
        """The deleted user objects (CN=Deleted Objects, read with the show-deleted control) that were last
        under `base_dn`. A deleted object keeps sAMAccountName and lastKnownParent; employeeID only with the
        AD Recycle Bin feature (Samba without it drops it: tests/integration/test_rebuild_recycle_bin_ad.py),
        so the anchor is often None. whenChanged is the deletion time: deleting is the object's last change.
        An object without lastKnownParent is kept: a name reserved too many is never wrong."""
        def read() -> list[DeletedAccount]:
            found = []
            for _, raw in self._search(
                    self._domain_dn(), "(&(isDeleted=TRUE)(objectClass=user)(!(objectClass=computer)))",
                    ["objectGUID", "sAMAccountName", "employeeID", "lastKnownParent", "whenChanged"],
                    controls=[SHOW_DELETED_CONTROL]):
                username, parent = _text(raw, "sAMAccountName"), _text(raw, "lastKnownParent")
                if not username or (parent and not _within(parent, self.settings.base_dn)):
                    continue
                found.append(DeletedAccount(self.name, _guid(raw["objectGUID"][0]), username,
                                            _text(raw, "employeeID"), _generalized(_text(raw, "whenChanged"))))
            return found
        try:
            return self._retrying(read)
        except ldap_errors.LDAPException as error:
            raise ConnectorError(f"reading the deleted objects failed: {error}", retryable=True) from None

    def privileged_roles(self) -> Sequence[RoleHolder]:
        def read() -> list[RoleHolder]:
            domain = self._domain_dn()
            holders: list[RoleHolder] = []
            protected = self._protected_groups()
            domain_sid = next((s.rsplit("-", 1)[0] for _, _, s, of in protected if of == "domain"), "")
            for role, dn, sid, _ in protected:
                chain = f"(memberOf:{IN_CHAIN}:={escape_filter_chars(dn)})"
                # A primary group is in no `member` list: look for primaryGroupID naming the group, or
                # any group of this domain nested in it.
                sids = [sid] + [format_sid(raw["objectSid"][0]) for _, raw in
                                self._search(domain, f"(&(objectClass=group){chain})", ["objectSid"])
                                if raw.get("objectSid")]
                rids = "".join(f"(primaryGroupID={s.rsplit('-', 1)[1]})" for s in sids
                               if domain_sid and s.startswith(domain_sid + "-"))
                found = f"(&(objectCategory=person)(|{chain}{rids}))"
                for _, raw in self._search(domain, found, ["sAMAccountName", "displayName", "employeeID"]):
                    holders.append(RoleHolder(self.name, role, _text(raw, "sAMAccountName") or "",
                                              _text(raw, "displayName") or "", _text(raw, "employeeID")))
            return holders
        try:
            return self._retrying(read)
        except ldap_errors.LDAPException as error:
            raise ConnectorError(f"reading the privileged groups failed: {error}", retryable=True) from None

    # writing

    def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
        """Object changes in order, creates in chunks (new keys read back in one search per chunk, or on
        several connections when configured), then memberships grouped per group into one modify each."""
        memberships: dict[tuple[str, Action], list[Change]] = {}
        creates: list[Change] = []
        for change in changes:
            if change.action in (Action.ADD_MEMBER, Action.REMOVE_MEMBER):
                memberships.setdefault((change.group or "", change.action), []).append(change)
                continue
            if change.action is Action.CREATE:
                creates.append(change)
                if len(creates) < CREATE_CHUNK:
                    continue
            yield from self._creates(creates)
            creates = []
            if change.action is not Action.CREATE:
                yield self._guarded(change, self.apply_one)
        yield from self._creates(creates)
        for (group, action), batch in memberships.items():
            yield from self._membership_batch(group, action, batch)

    def _creates(self, creates: Sequence[Change]) -> list[Result]:
        if not creates:
            return []
        create = self._run_create_without_key
        if self.settings.connections > 1:
            if self._pool is None:
                # Kept for the connector's life: each worker thread keeps its own bound connection.
                self._pool = ThreadPoolExecutor(self.settings.connections, thread_name_prefix=f"{self.name}-ldap")
            results = list(self._pool.map(lambda c: self._guarded(c, create), creates))
        else:
            results = [self._guarded(change, create) for change in creates]
        return self._with_keys(creates, results)

    def _run_create_without_key(self, change: Change) -> Result:
        return self._run(change, lambda c: self._create(c, read_key=False))

    def _with_keys(self, creates: Sequence[Change], results: list[Result]) -> list[Result]:
        """Fill in the objectGUIDs of new accounts with one search per chunk instead of one read each."""
        missing = {str(c.after["username"]).lower(): i for i, (c, r) in enumerate(zip(creates, results, strict=True))
                   if r.outcome is Outcome.APPLIED and r.key is None}
        if not missing:
            return results
        names = "".join(f"(sAMAccountName={escape_filter_chars(name)})" for name in missing)
        try:
            found = self._retrying(lambda: {
                (_text(raw, "sAMAccountName") or "").lower(): _guid(raw["objectGUID"][0])
                for _, raw in self._search(self.settings.base_dn, f"(|{names})", ["objectGUID", "sAMAccountName"])
            })
        except ldap_errors.LDAPException:
            found = {}
        for name, index in missing.items():
            key = found.get(name)
            results[index] = replace(results[index], key=key) if key else Result(
                results[index].change_id, Outcome.FAILED, f"create {name}: created, but its objectGUID could not "
                "be read back; the next run finds it by its anchor", retryable=True)
        return results

    def _guarded(self, change: Change, operation: Callable[[Change], Result]) -> Result:
        try:
            return operation(change)
        except ConnectorError as error:
            return Result(change.change_id, Outcome.FAILED, str(error), retryable=error.retryable)

    def apply_one(self, change: Change) -> Result:
        if change.action in (Action.ADD_MEMBER, Action.REMOVE_MEMBER):
            return next(iter(self._membership_batch(change.group or "", change.action, [change])))
        return self._run(change, getattr(self, "_" + change.action.value.replace("-", "_")))

    def _run(self, change: Change, handler: Callable[[Change], Result]) -> Result:
        """One change, retried on a fresh connection after a lost one, its errors mapped to ours."""
        try:
            result: Result = self._retrying(lambda: handler(change))
        except ldap_errors.LDAPOperationResult as error:
            raise self._mapped(error, change) from None
        except ldap_errors.LDAPException as error:
            raise ConnectorError(f"{change.action} {change.username}: {error}", retryable=_transient(error)) from None
        return result

    def _mapped(self, error: ldap_errors.LDAPOperationResult, change: Change) -> ConnectorError:
        message = str(error.message or error.description)
        who = f"{change.action} {change.username}"
        if PASSWORD_POLICY_MARKER in message:
            return ConnectorError(f"{who}: the domain's password policy refused the password (too short, not "
                                  "complex enough, or recently used); choose a stronger one")
        if error.result == 68:
            return Conflict(f"{who}: the name is already taken in the domain ({message})")
        if error.result == 50:
            return ConnectorError(f"{who}: the service account {self.settings.bind_dn} is not allowed to do this "
                                  f"in {self.settings.base_dn}: delegate control of that OU to it")
        if error.result == 32:
            return ConnectorError(f"{who}: the object or its OU does not exist ({message})")
        return ConnectorError(f"{who}: the DC answered {error.description}: {message}", retryable=_transient(error))

    def _check_in_scope(self, dn: str) -> None:
        """The one rule no code path may skip: nothing outside base_dn is ever written."""
        if not _within(dn, self.settings.base_dn):
            raise ConnectorError(f"refusing to write {dn}: it is outside the managed tree {self.settings.base_dn}")

    def _container_dn(self, container: str) -> str:
        dn = self.settings.base_dn
        for name in (part for part in container.split("/") if part.strip()):
            dn = f"OU={escape_rdn(name.strip())},{dn}"
        return dn

    def _ensure_container(self, container: str) -> str:
        """The OU for a neutral path, creating missing OUs below base_dn (never above it)."""
        dn = self.settings.base_dn
        for name in (part for part in container.split("/") if part.strip()):
            dn = f"OU={escape_rdn(name.strip())},{dn}"
            if dn.lower() in self._known_containers:
                continue
            self._check_in_scope(dn)
            if self._read_one(dn, ["objectGUID"]) is None:
                try:
                    self._conn.add(dn, ["top", "organizationalUnit"], {"ou": name.strip()})
                except ldap_errors.LDAPEntryAlreadyExistsResult:
                    pass  # another connection created it a moment ago
                except ldap_errors.LDAPNoSuchObjectResult:
                    raise ConnectorError(f"base_dn {self.settings.base_dn} does not exist: create it first") from None
            self._known_containers.add(dn.lower())
        return dn

    def _current(self, key: str | None, extra: Sequence[str] = ()) -> tuple[str, dict[str, Any]] | None:
        """The managed object with this objectGUID (None when it is not in the managed tree)."""
        if not key:
            raise ConnectorError("the change names no account")
        for found in self._search(self.settings.base_dn, _guid_filter(key),
                                  [*ACCOUNT_ATTRIBUTES, *extra, "cn", "member"]):
            return found
        return None

    def _require(self, change: Change, extra: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
        found = self._current(change.target, extra)
        if found is None:
            raise ConnectorError(f"{change.action} {change.username}: no account {change.target} in "
                                 f"{self.settings.base_dn} (deleted, or moved out of the managed tree)")
        return found

    def _done(self, change: Change, outcome: Outcome = Outcome.APPLIED, detail: str = "",
              key: str | None = None) -> Result:
        return Result(change.change_id, outcome, detail, key=key or change.target)

    def _modify(self, dn: str, replace: Mapping[str, Any]) -> None:
        self._check_in_scope(dn)
        self._conn.modify(dn, {name: [(ldap3.MODIFY_REPLACE, [] if value in (None, "") else [value])]
                               for name, value in replace.items()})

    def _login_for(self, username: str, login: str | None) -> str:
        if login:
            return login
        if not self.settings.upn_suffix:
            raise ConnectorError(f"{username}: the change has no login and upn_suffix is not configured")
        return f"{username}@{self.settings.upn_suffix}"

    def _create(self, change: Change, *, read_key: bool = True) -> Result:
        after = change.after
        username = str(after["username"])
        login = self._login_for(username, after.get("login"))
        parent = self._ensure_container(str(after.get("container") or ""))
        dn = f"CN={escape_rdn(username)},{parent}"
        self._check_in_scope(dn)
        enabled = bool(after.get("enabled", True)) and change.password is not None
        values: dict[str, Any] = {
            "sAMAccountName": username, "userPrincipalName": login, "givenName": after.get("given_name"),
            "sn": after.get("surname"), "displayName": after.get("display_name"),
            "employeeID": _anchor_value(after.get("anchor")),
            "userAccountControl": UAC_NORMAL_ACCOUNT | (0 if enabled else UAC_DISABLED),
        }
        if self.settings.mail_from_login:
            values["mail"] = login
        if self.settings.home_directory:
            values["homeDirectory"] = self.settings.home_directory.format(username=username)
            if self.settings.home_drive:
                values["homeDrive"] = self.settings.home_drive
        for neutral, value in dict(after.get("attributes") or {}).items():
            values[_ldap_name(neutral)] = value
        if change.password is not None:
            values["unicodePwd"] = _password_value(change.password)
            if after.get("must_change_password"):
                values["pwdLastSet"] = 0
        try:
            self._conn.add(dn, ["top", "person", "organizationalPerson", "user"],
                           {k: v for k, v in values.items() if v not in (None, "")})
        except ldap_errors.LDAPEntryAlreadyExistsResult:
            return self._existing_create(change, username)
        except ldap_errors.LDAPNoSuchObjectResult:
            self._known_containers.clear()
            raise ConnectorError(f"create {username}: the OU {parent} disappeared while creating the account; "
                                 "run again to recreate it", retryable=True) from None
        found = self._read_one(dn, ["objectGUID"]) if read_key else None
        key = _guid(found[1]["objectGUID"][0]) if found else None
        detail = "" if enabled or not after.get("enabled", True) else "created disabled: no password was given"
        return self._done(change, detail=detail, key=key)

    def _existing_create(self, change: Change, username: str) -> Result:
        """The add hit an existing name: ours from an interrupted earlier attempt (ALREADY), or a clash."""
        for dn, raw in self._search(self._domain_dn(), f"(sAMAccountName={escape_filter_chars(username)})",
                                    ["objectGUID", "employeeID"]):
            anchor = _text(raw, "employeeID")
            key = _guid(raw["objectGUID"][0])
            why = self.privileged_reason(key) if _within(dn, self.settings.base_dn) else ""
            if why:
                raise Conflict(f"create {username}: the name is already used by {dn}, a privileged account ({why}); "
                               "it is never taken as this person's account")
            if anchor == _anchor_value(change.after.get("anchor")) and _within(dn, self.settings.base_dn):
                return self._done(change, Outcome.ALREADY, key=key)
            where = "inside" if _within(dn, self.settings.base_dn) else "outside"
            raise Conflict(f"create {username}: the name is already used by {dn} ({where} the managed tree"
                           f"{', anchor ' + anchor if anchor else ', no anchor'})")
        raise Conflict(f"create {username}: another object already has that name in "
                       f"{self._container_dn(str(change.after.get('container') or ''))}")

    def _adopt(self, change: Change) -> Result:
        dn, raw = self._require(change)
        anchor = directory_anchor(str(change.after["anchor"]), EMPLOYEE_ID_LIMIT)
        current = _text(raw, "employeeID")
        if current == anchor:
            return self._done(change, Outcome.ALREADY)
        if current:
            raise Conflict(f"adopt {change.username}: {dn} already carries the anchor {current}")
        self._modify(dn, {"employeeID": anchor})
        return self._done(change)

    def _update(self, change: Change) -> Result:
        extra = [_ldap_name(a) for a in dict(change.after.get("attributes") or {})]
        dn, raw = self._require(change, extra)
        wanted: dict[str, Any] = {}
        for field_name, attribute in (("given_name", "givenName"), ("surname", "sn"),
                                      ("display_name", "displayName")):
            if field_name in change.after:
                wanted[attribute] = change.after[field_name] or None
        for neutral, value in dict(change.after.get("attributes") or {}).items():
            wanted[_ldap_name(neutral)] = value or None
        replace = {name: value for name, value in wanted.items() if _text(raw, name) != value}
        if change.after.get("password_never_expires") is False:
            uac = int(_text(raw, "userAccountControl") or UAC_NORMAL_ACCOUNT)
            if uac & UAC_DONT_EXPIRE_PASSWORD:
                replace["userAccountControl"] = str(uac & ~UAC_DONT_EXPIRE_PASSWORD)
        if not replace:
            return self._done(change, Outcome.ALREADY)
        self._modify(dn, replace)
        return self._done(change)

    def _rename(self, change: Change) -> Result:
        dn, raw = self._require(change)
        username = str(change.after["username"])
        login = self._login_for(username, change.after.get("login"))
        applied = False
        if _text(raw, "cn") != username:
            self._check_in_scope(dn)
            self._conn.modify_dn(dn, f"CN={escape_rdn(username)}")
            parent = _parent_dn(dn)
            dn, raw = self._require(change)
            if _text(raw, "cn") != username or not _same_dn(_parent_dn(dn), parent):
                raise ConnectorError(f"{change.action} {change.username}: the DC answered success but the "
                                     f"account is now {dn}; check it by hand")
            applied = True
        replace: dict[str, Any] = {}
        if _text(raw, "sAMAccountName") != username:
            replace["sAMAccountName"] = username
        if _text(raw, "userPrincipalName") != login:
            replace["userPrincipalName"] = login
            if self.settings.mail_from_login:
                replace["mail"] = login
        if replace:
            self._modify(dn, replace)
        return self._done(change, Outcome.APPLIED if applied or replace else Outcome.ALREADY)

    def _move(self, change: Change) -> Result:
        dn, _ = self._require(change)
        target = self._container_dn(str(change.after.get("container") or ""))
        if _same_dn(_parent_dn(dn), target):
            return self._done(change, Outcome.ALREADY)
        target = self._ensure_container(str(change.after.get("container") or ""))
        self._check_in_scope(dn)
        self._check_in_scope(target)
        # The RDN exactly as the DC wrote it (`CN=Doe\, Jane`): split on unescaped commas only.
        rdn = _split_unescaped(_plain_dn(dn), ",")[0]
        self._conn.modify_dn(dn, rdn, new_superior=target)
        moved, _ = self._require(change)
        if not (_same_dn(_parent_dn(moved), target) and _rdn_values(moved)[0] == _rdn_values(dn)[0]):
            raise ConnectorError(f"{change.action} {change.username}: the DC answered success but the account "
                                 f"is now {_plain_dn(moved)}, not under {target}; check it by hand")
        return self._done(change)

    def _set_enabled(self, change: Change, enabled: bool) -> Result:
        dn, raw = self._require(change)
        uac = int(_text(raw, "userAccountControl") or UAC_NORMAL_ACCOUNT)
        wanted = uac & ~UAC_DISABLED if enabled else uac | UAC_DISABLED
        if wanted == uac:
            return self._done(change, Outcome.ALREADY)
        try:
            self._modify(dn, {"userAccountControl": str(wanted)})
        except ldap_errors.LDAPOperationResult as error:
            if enabled and PASSWORD_POLICY_MARKER in str(error.message):
                raise ConnectorError(f"enable {change.username}: the account has no password yet; set one "
                                     "before enabling it") from None
            raise
        return self._done(change)

    def _enable(self, change: Change) -> Result:
        return self._set_enabled(change, True)

    def _disable(self, change: Change) -> Result:
        return self._set_enabled(change, False)

    def _delete(self, change: Change) -> Result:
        found = self._current(change.target)
        if found is None:
            elsewhere = self._read_one(f"<GUID={_key(change.target or '')}>", ["objectGUID"])
            if elsewhere is not None:
                raise ConnectorError(f"delete {change.username}: {elsewhere[0]} is outside the managed tree "
                                     f"{self.settings.base_dn}; not deleted")
            return self._done(change, Outcome.ALREADY, "no longer in the directory")
        self._check_in_scope(found[0])
        self._conn.delete(found[0])
        return self._done(change)

    def _set_password(self, change: Change) -> Result:
        if change.password is None:
            raise ConnectorError(f"set-password {change.username}: no password was supplied")
        dn, _ = self._require(change)
        replace: dict[str, Any] = {"unicodePwd": _password_value(change.password)}
        # An admin reset sets pwdLastSet to now; 0 on top makes the pupil choose their own at next sign-in.
        self._modify(dn, replace)
        if change.after.get("must_change_password"):
            self._modify(dn, {"pwdLastSet": "0"})
        return self._done(change)

    def _require_password_change(self, change: Change) -> Result:
        dn, raw = self._require(change)
        if _text(raw, "pwdLastSet") == "0":
            return self._done(change, Outcome.ALREADY)
        self._modify(dn, {"pwdLastSet": "0"})
        return self._done(change)

    def _revoke_sessions(self, change: Change) -> Result:
        return self._done(change, Outcome.ALREADY, "Active Directory has no sign-in sessions to revoke; "
                          "disabling the account stops new sign-ins")

    def _create_group(self, change: Change) -> Result:
        name = str(change.group or change.after.get("name") or "")
        if not name:
            raise ConnectorError("create-group: the change names no group")
        existing = self._find_group(name)
        if existing is not None:
            return self._done(change, Outcome.ALREADY, key=existing[1])
        parent = self._ensure_container(self.settings.groups_container)
        dn = f"CN={escape_rdn(name)},{parent}"
        self._check_in_scope(dn)
        sam = _GROUP_NAME_FORBIDDEN.sub("_", name)[:64]
        try:
            self._conn.add(dn, ["top", "group"], {"sAMAccountName": sam, "groupType": GLOBAL_SECURITY_GROUP,
                                                   "description": "managed by idlifecycle"})
        except ldap_errors.LDAPEntryAlreadyExistsResult:
            raise Conflict(f"create-group {name}: the name {sam} is already used in the domain") from None
        found = self._read_one(dn, ["objectGUID"])
        key = _guid(found[1]["objectGUID"][0]) if found else None
        return Result(change.change_id, Outcome.APPLIED, key=key)

    def _find_group(self, name: str) -> tuple[str, str] | None:
        """(dn, key) of the managed group with this name; only groups inside base_dn count."""
        value = escape_filter_chars(name)
        for dn, raw in self._search(self.settings.base_dn, f"(&(objectClass=group)(cn={value}))", ["objectGUID"]):
            return dn, _guid(raw["objectGUID"][0])
        return None

    def _membership_batch(self, group: str, action: Action, batch: Sequence[Change]) -> Iterator[Result]:
        """One group's adds (or removes) in one modify; falls back to one by one if the DC refuses the lot."""
        try:
            yield from self._retrying(lambda: list(self._members(group, action, batch)))
        except ConnectorError as error:
            yield from (Result(c.change_id, Outcome.FAILED, str(error), retryable=error.retryable) for c in batch)
        except ldap_errors.LDAPException as error:
            detail = f"{action} {group}: {error}"
            yield from (Result(c.change_id, Outcome.FAILED, detail, retryable=_transient(error)) for c in batch)

    def _members(self, group: str, action: Action, batch: Sequence[Change]) -> Iterator[Result]:
        found = self._find_group(group)
        if found is None:
            raise ConnectorError(f"{action} {group}: there is no group of that name in {self.settings.base_dn}")
        group_dn = found[0]
        self._check_in_scope(group_dn)
        current = self._read_one(group_dn, ["member"], controls=[EXTENDED_DN_CONTROL])
        members = {g for v in (current[1].get("member", []) if current else [])
                   if (g := _member_guid(v.decode() if isinstance(v, bytes) else v))}
        adding = action is Action.ADD_MEMBER
        results: list[Result] = []
        wanted: list[Change] = []
        for change in batch:
            if change.target and (_key(change.target) in members) == adding:
                results.append(self._done(change, Outcome.ALREADY))
            else:
                wanted.append(change)
        dns = self._dns_of({_key(c.target) for c in wanted if c.target})
        pending: list[tuple[Change, str]] = []
        for change in wanted:
            dn = dns.get(_key(change.target)) if change.target else None
            if dn is None:
                results.append(Result(change.change_id, Outcome.FAILED,
                                      f"{action} {group}: account {change.target} ({change.username}) not found"))
            else:
                pending.append((change, dn))
        operation = ldap3.MODIFY_ADD if adding else ldap3.MODIFY_DELETE
        if pending:
            try:
                self._conn.modify(group_dn, {"member": [(operation, sorted({dn for _, dn in pending}))]})
                results.extend(self._done(change) for change, _ in pending)
            except ldap_errors.LDAPOperationResult as error:
                if _transient(error):
                    raise
                results.extend(self._one_member(group_dn, operation, change, dn) for change, dn in pending)
        return iter(results)

    def _dns_of(self, keys: set[str]) -> dict[str, str]:
        """objectGUID -> DN for many accounts in a few searches (members may live outside base_dn)."""
        found: dict[str, str] = {}
        ordered = sorted(keys)
        domain = self._domain_dn() if ordered else ""
        for start in range(0, len(ordered), 200):
            chunk = "".join(_guid_filter(key) for key in ordered[start:start + 200])
            for dn, raw in self._search(domain, f"(|{chunk})", ["objectGUID"]):
                found[_guid(raw["objectGUID"][0])] = dn
        return found

    def _one_member(self, group_dn: str, operation: str, change: Change, dn: str) -> Result:
        try:
            self._conn.modify(group_dn, {"member": [(operation, [dn])]})
        except (ldap_errors.LDAPEntryAlreadyExistsResult, ldap_errors.LDAPAttributeOrValueExistsResult):
            return self._done(change, Outcome.ALREADY)
        except ldap_errors.LDAPUnwillingToPerformResult:
            return self._done(change, Outcome.ALREADY)  # removing a member that is not there
        except ldap_errors.LDAPOperationResult as error:
            if _transient(error):
                raise
            mapped = self._mapped(error, change)
            return Result(change.change_id, Outcome.FAILED, str(mapped), retryable=mapped.retryable)
        return self._done(change)


def _anchor_value(person_id: Any) -> str | None:
    """employeeID for a person id: the id itself, or its short anchor when longer than employeeID holds."""
    return directory_anchor(str(person_id), EMPLOYEE_ID_LIMIT) if person_id else None
