"""The AD connector's TOML table as one strict model: every key it may hold, checked once at load.

`ADConnector.option_keys` is this model's field names, so the job's unknown-key check and what the
connector reads can never disagree. A bad value is one ConfigError naming the file and the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from idlifecycle.connectors.ad.dn import dn_parts
from idlifecycle.connectors.base import ConnectorContext
from idlifecycle.errors import ConfigError

log = logging.getLogger("idlifecycle.connectors.ad")

STATE_VERSION = 2
"""The cached snapshot's shape (2: group members with their names, wherever they live)."""


@dataclass(frozen=True)
class ServerAddress:
    url: str
    host: str
    port: int
    use_ssl: bool
    start_tls: bool


class ADSettings(BaseModel):
    """The connector's TOML table (minus name and type), checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_tls: bool = False
    """Before `servers`: their check reads it."""
    servers: tuple[str, ...]
    tls_verify: bool = True
    ca_file: str | None = None
    bind_dn: str
    base_dn: str
    groups_container: str = "Groups"
    upn_suffix: str | None = None
    mail_from_login: bool = False
    home_directory: str | None = None
    home_drive: str | None = None
    attributes: tuple[str, ...] = ("department", "jobTitle", "employeeType")
    connections: int = 1
    timeout: int = Field(30, ge=1)
    page_size: int = Field(500, ge=1)

    @field_validator("servers", mode="before")
    @classmethod
    def _a_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not value:
            raise ValueError('give a list such as ["ldaps://dc1.school.local"]')
        return value

    @field_validator("servers")
    @classmethod
    def _servers_speak_tls(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for url in value:  # a bad URL is refused at load, not at the first connect
            _server_address(url, bool(info.data.get("start_tls")))
        return value

    @field_validator("base_dn")
    @classmethod
    def _a_domain_dn(cls, value: str) -> str:
        try:
            parsed = dn_parts(value)
        except ValueError:
            parsed = []
        if not parsed or not any(name == "dc" for rdn in parsed for name, _ in rdn):
            raise ValueError(f"{value!r} is not a DN such as OU=School,DC=school,DC=local")
        return value

    @field_validator("connections")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    def addresses(self) -> tuple[ServerAddress, ...]:
        """The DCs to try, in order (failover)."""
        return tuple(_server_address(url, self.start_tls) for url in self.servers)

    def fingerprint(self) -> str:
        """What a cached snapshot depends on: another tree or attribute list needs a full read."""
        return hashlib.sha256(json.dumps([self.base_dn.lower(), self.groups_container, list(self.attributes),
                                          STATE_VERSION]).encode()).hexdigest()[:16]

    @classmethod
    def from_context(cls, context: ConnectorContext) -> ADSettings:
        try:
            settings = cls.model_validate(dict(context.options))
        except ValidationError as error:
            first = error.errors()[0]
            key = str(first["loc"][0]) if first["loc"] else "servers"
            message = "is required" if first["type"] == "missing" else str(first["msg"]).removeprefix("Value error, ")
            raise ConfigError(context.source, key, message) from None
        if not settings.tls_verify:
            log.warning("%s: tls_verify = false: the DC's certificate is not checked (tests only)", context.source)
        return settings


def _server_address(url: str, start_tls: bool) -> ServerAddress:
    parts = urlsplit(url)
    if parts.scheme not in ("ldaps", "ldap") or not parts.hostname:
        raise ValueError(f"{url!r} is not ldaps://host[:port] or ldap://host[:port]")
    if parts.scheme == "ldap" and not start_tls:
        raise ValueError(f"{url!r} sends passwords in clear: use ldaps:// or set start_tls = true")
    use_ssl = parts.scheme == "ldaps"
    return ServerAddress(url, parts.hostname, parts.port or (636 if use_ssl else 389), use_ssl,
                         start_tls and not use_ssl)


OPTION_KEYS = frozenset(ADSettings.model_fields)
