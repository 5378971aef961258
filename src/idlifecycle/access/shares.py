"""The shares registry (`mappings/shares.toml`) and the job's `[access]` and `[web]` settings.

A share is a protected resource with a classification, an Information Asset Owner, one access
group per directory and a baseline rule for who is in that group without a grant.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from idlifecycle.access._job import AccessJob
from idlifecycle.errors import ConfigError
from idlifecycle.model import Kind, Person
from idlifecycle.notify import valid_email

Classification = Literal["restricted", "protected", "public"]
Baseline = Literal["nobody", "all-staff", "all-pupils", "everyone"]
M = TypeVar("M", bound=BaseModel)


class Share(BaseModel):
    """One entry of the registry, `[shares.<name>]`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    """Filled from the table's key."""
    title: str
    """What a person calls it ("SEN records"), shown in emails and the approval page."""
    classification: Classification
    owner: str
    """The Information Asset Owner (name or role), shown to the SIRO with each request."""
    groups: dict[str, str]
    """Directory (the connector's configured name) -> the access group's name there."""
    baseline: Baseline = "nobody"
    baseline_roles: tuple[str, ...] = ()
    """People holding any of these MIS roles are members without a grant."""
    max_grant_days: int = Field(30, ge=1, le=366)

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("name at least one directory's access group, e.g. {entra = \"SG-SEN-Restricted\"}")
        for directory, group in value.items():
            if not group.strip():
                raise ValueError(f"the group name for {directory!r} is empty")
        return value

    @property
    def restricted(self) -> bool:
        return self.classification == "restricted"

    def in_baseline(self, person: Person) -> bool:
        if self.baseline == "everyone":
            return True
        if (self.baseline == "all-staff" and person.kind is Kind.STAFF) or (
            self.baseline == "all-pupils" and person.kind is Kind.PUPIL
        ):
            return True
        return any(role in self.baseline_roles for role in person.roles)


@dataclass(frozen=True)
class Registry:
    path: Path
    shares: Mapping[str, Share]

    def get(self, name: str) -> Share | None:
        return self.shares.get(name)

    def share_of_group(self, directory: str, group: str) -> Share | None:
        for share in self.shares.values():
            if share.groups.get(directory, "").lower() == group.lower():
                return share
        return None


def load_registry(path: Path) -> Registry:
    """Read and check the registry; any problem is a ConfigError naming the file and the key."""
    source = str(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(source, "access.shares", "the shares registry file does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(source, "(syntax)", str(error)) from None
    tables = data.get("shares")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(source, "shares", "define at least one share as a [shares.<name>] table")
    shares: dict[str, Share] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(source, f"shares.{name}", "must be a table")
        try:
            share = Share.model_validate({**table, "name": name})
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(part) for part in (f"shares.{name}", *first["loc"]))
            raise ConfigError(source, key, first["msg"]) from None
        if share.restricted and share.baseline != "nobody":
            raise ConfigError(source, f"shares.{name}.baseline",
                              "a restricted share's baseline must be \"nobody\" (name roles in baseline_roles, "
                              "or let the SIRO approve individuals)")
        shares[name] = share
    seen: dict[tuple[str, str], str] = {}
    for share in shares.values():
        for directory, group in share.groups.items():
            other = seen.setdefault((directory, group.lower()), share.name)
            if other != share.name:
                raise ConfigError(source, f"shares.{share.name}.groups.{directory}",
                                  f"group {group!r} is already the access group of share {other!r}")
    return Registry(path, shares)


class AccessSettings(BaseModel):
    """The job's `[access]` table."""

    model_config = ConfigDict(extra="forbid")

    shares: str
    """The registry file, relative to the job file."""
    siro_email: str
    siro_name: str
    link_hours: int = Field(72, ge=1, le=24 * 14)
    """How long an approval link works."""
    requester_domains: tuple[str, ...] = ()
    """Email domains whose staff may use the web request form; empty turns the form off."""
    siro_deputies: tuple[str, ...] = ()
    """Who may decide in the SIRO's place when staff sign in (`[web] sign_in`): their sign-in addresses.
    The decision and the access review say that a deputy made it."""


class WebLimits(BaseModel):
    """The job's `[web.limits]` table: how much the anonymous parts of the web app may be used.

    The request form is a token bucket per client address and one for the whole form (a bucket holds
    its `burst` sends and refills at its `per_hour`); refused approval links are audited the first of a
    kind in a window in full, the rest of that window as one row with their count and some clients.
    """

    model_config = ConfigDict(extra="forbid")

    form_burst_per_address: int = Field(default=5, ge=1, le=1000)
    form_per_address_per_hour: int = Field(default=20, ge=1, le=100_000)
    form_burst_total: int = Field(default=30, ge=1, le=100_000)
    form_total_per_hour: int = Field(default=120, ge=1, le=1_000_000)
    search_burst_per_account: int = Field(default=30, ge=1, le=10_000)
    """The request form's person search, per signed-in account: a burst of this many searches ..."""
    search_per_account_per_hour: int = Field(default=300, ge=1, le=100_000)
    """... refilling at this rate, so a person can search freely and a script cannot list the roll."""
    refused_audit_window_seconds: int = Field(default=60, ge=1, le=24 * 3600)
    refused_audit_clients: int = Field(default=20, ge=0, le=1000)
    """Client addresses named in one grouped row of refusals, at most."""

    @field_validator("form_burst_total")
    @classmethod
    def _total_holds_one_address(cls, value: int, info: ValidationInfo) -> int:
        per_address = info.data.get("form_burst_per_address")
        if per_address is not None and value < per_address:
            raise ValueError(f"must be at least form_burst_per_address ({per_address}): the whole form's burst "
                             "cannot be smaller than one address's")
        return value


class EntraSignInSettings(BaseModel):
    """The job's `[web.entra]` table: the app registration staff sign in through (its secret is the secret
    `sign_in_client_secret`)."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1)
    tenant: str = Field(min_length=1)
    """The school's tenant id or its domain; never "common" or "organizations": only the school's own staff."""
    redirect_uri: str
    """The address registered on the app as a Web redirect URI: `<public_base_url>/signin/callback`."""
    authority_host: str = "login.microsoftonline.com"
    ca_file: str = ""
    """A CA file to trust for the authority (the sandbox's self-signed certificate); empty: the system's."""

    @field_validator("tenant")
    @classmethod
    def _one_tenant(cls, value: str) -> str:
        if value.lower() in ("common", "organizations", "consumers"):
            raise ValueError("name the school's own tenant (its id or domain): any other organisation's users "
                             "could sign in through a multi-tenant authority")
        return value


class GoogleSignInSettings(BaseModel):
    """The job's `[web.google]` table: the OAuth client (type "Web application") staff sign in through; its
    secret is the secret `sign_in_client_secret`."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1)
    hosted_domain: str = Field(min_length=3)
    """The school's Google Workspace domain: an ID token's `hd` must be it (a personal Gmail has none)."""
    redirect_uri: str
    issuer: str = "https://accounts.google.com"
    """Google's; the sandbox's own address for the demo and the tests."""

    @field_validator("issuer")
    @classmethod
    def _https(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname and _loopback(parts.hostname)):
            raise ValueError("must be an https address (plain http only for the sandbox on 127.0.0.1)")
        return value.rstrip("/")


class WebSettings(BaseModel):
    """The job's `[web]` table."""

    model_config = ConfigDict(extra="forbid")

    public_base_url: str
    """The address people's browsers use (the reverse proxy's), e.g. https://idl.school.example.org."""
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    forwarded_allow_ips: str = "127.0.0.1"
    """The reverse proxy's address, trusted for X-Forwarded-For / -Proto."""
    limits: WebLimits = Field(default_factory=WebLimits)
    sign_in: Literal["link-only", "entra", "google"] = "link-only"
    """"entra" / "google": staff sign in with the school's Microsoft 365 / Google account and only the SIRO
    (or a deputy) signed in may decide; "link-only": whoever holds an approval link may (see the README)."""
    entra: EntraSignInSettings | None = None
    google: GoogleSignInSettings | None = None
    session_minutes: int = Field(default=60, ge=5, le=12 * 60)
    """A signed-in session ends this long after sign-in, however busy."""
    idle_minutes: int = Field(default=15, ge=1, le=120)
    """…and sooner when nothing is asked of it for this long."""

    @model_validator(mode="after")
    def _entra_when_signing_in(self) -> WebSettings:
        if self.sign_in == "entra" and self.entra is None:
            raise ValueError('sign_in = "entra" needs a [web.entra] table: client_id, tenant, redirect_uri')
        if self.sign_in == "google" and self.google is None:
            raise ValueError('sign_in = "google" needs a [web.google] table: client_id, hosted_domain, redirect_uri')
        return self

    @field_validator("public_base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("must be an address such as https://idl.school.example.org")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValueError("must use https (approval links carry a secret); plain http only for 127.0.0.1")
        return value.rstrip("/")

    @property
    def secure(self) -> bool:
        return self.public_base_url.startswith("https://")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _section(job: AccessJob, name: str, model: type[M]) -> M:
    data = job.section(name)
    if not data:
        raise job.config_error(name, f"add a [{name}] table to the job file")
    try:
        return model.model_validate(dict(data))
    except ValidationError as error:
        first = error.errors()[0]
        raise job.config_error(".".join(str(p) for p in (name, *first["loc"])), first["msg"]) from None


def access_settings(job: AccessJob) -> AccessSettings:
    settings = _section(job, "access", AccessSettings)
    if not valid_email(settings.siro_email):
        raise job.config_error("access.siro_email", f"{settings.siro_email!r} is not an email address")
    return settings


def web_settings(job: AccessJob) -> WebSettings:
    return _section(job, "web", WebSettings)


def web_limits(job: AccessJob) -> WebLimits:
    """`[web.limits]`, checked; the defaults when the job has no `[web]` (the CLI alone serves no form)."""
    return web_settings(job).limits if job.section("web") else WebLimits()


def registry_for(job: AccessJob, settings: AccessSettings | None = None) -> Registry:
    path = job.resolve_path((settings or access_settings(job)).shares)
    if not path.is_file():
        raise job.config_error("access.shares", f"{path} does not exist")
    return load_registry(path)
