"""The Entra connector's options: one strict model of its TOML table, and the credentials it signs in with.

Every key the table may hold is a field of `EntraSettings`, so the job's check of unknown keys
(`EntraConnector.option_keys`) and this model can never disagree. A bad value is one `ConfigError`
naming the file and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic_core import ErrorDetails

from idlifecycle.connectors.base import ConnectorContext, check_option_keys
from idlifecycle.errors import ConfigError

EXTENSION_ATTRIBUTES = tuple(f"extensionAttribute{n}" for n in range(1, 16))
DELTA_UNSUPPORTED = frozenset({
    "aboutMe", "birthday", "hireDate", "interests", "mySite", "pastProjects", "preferredName", "responsibilities",
    "schools", "skills", "signInActivity",
})
"""User properties Graph's users/delta refuses in $select (microsoft-graph-docs#14141, #4746;
microsoft-graph-explorer-v4#3189): a snapshot asking for one fails whole."""
GRAPH_URL = "https://graph.microsoft.com/v1.0"
PUBLIC_AUTHORITY = "login.microsoftonline.com"


class EntraSettings(BaseModel):
    """A `type = "entra"` table (see the package's docstring for what each key does)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domains: dict[str, str]
    hybrid: str = "detect"
    attributes: tuple[str, ...] = ("department", "jobTitle", "employeeType")
    assign_licences: dict[str, list[str]] = {}
    write_limit_per_second: float = 20
    max_batches_in_flight: float = 4
    timeout_seconds: float = 60
    connect_timeout_seconds: float = 10
    request_timeout_seconds: float | None = None
    """One whole request, reply included; None: twice timeout_seconds."""
    give_up_after_seconds: float = 120
    """How long Graph may answer nothing before the run's remaining changes fail."""
    full_id_attribute: str = "extensionAttribute15"
    """Where a person id too long for employeeId is written in full (onPremisesExtensionAttributes), "" for nowhere."""
    group_marker: str = "Managed by idlifecycle"
    usage_location: str = "GB"
    sign_in_activity: bool = False
    tenant_id: str | None = None
    client_id: str | None = None
    authority_host: str = PUBLIC_AUTHORITY
    certificate: str | None = None
    graph_url: str = GRAPH_URL
    ca_file: str | None = None

    @field_validator("domains", mode="before")
    @classmethod
    def _domain_table(cls, value: Any) -> Any:
        if not isinstance(value, Mapping) or not value or not all(
                isinstance(v, str) and "." in v for v in value.values()):
            raise ValueError("must be a table of kind = \"domain\", e.g. "
                             "{ staff = \"staff.example.sch.uk\", pupil = \"pupils.example.sch.uk\" }")
        return {str(k): v for k, v in value.items()}

    @field_validator("hybrid", mode="before")
    @classmethod
    def _hybrid_mode(cls, value: Any) -> str:
        if str(value) not in ("detect", "off"):
            raise ValueError(f"must be \"detect\" or \"off\", not {str(value)!r}")
        return str(value)

    @field_validator("attributes", mode="before")
    @classmethod
    def _readable_attributes(cls, value: Any) -> Any:
        if not isinstance(value, list) or not all(isinstance(a, str) and a.isidentifier() for a in value):
            raise ValueError("must be a list of Graph user property names, e.g. [\"department\"]")
        refused = [a for a in value if a in DELTA_UNSUPPORTED]
        if refused:
            # Snapshots read users/delta, which answers 400 to these in $select: every night would fail.
            raise ValueError(f"{', '.join(map(repr, refused))} cannot be read through Graph's users/delta query, "
                             "which refuses it in $select; remove it from the list")
        return tuple(value)

    @field_validator("assign_licences", mode="before")
    @classmethod
    def _licence_table(cls, value: Any) -> Any:
        if not isinstance(value, Mapping) or not all(isinstance(v, list) for v in value.values()):
            raise ValueError("must be a table of kind = [\"skuId\", …]")
        return {str(k): [str(s) for s in v] for k, v in value.items()}

    @field_validator("write_limit_per_second", "max_batches_in_flight", "timeout_seconds", "connect_timeout_seconds",
                     "request_timeout_seconds", "give_up_after_seconds", mode="before")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"must be a positive number, not {value!r}")
        return value

    @field_validator("full_id_attribute", mode="before")
    @classmethod
    def _extension_attribute(cls, value: Any) -> Any:
        if value not in ("", *EXTENSION_ATTRIBUTES):
            raise ValueError("must be one of extensionAttribute1 … extensionAttribute15, or \"\" to write person ids "
                             f"too long for employeeId nowhere, not {value!r}")
        return value

    def permissions(self) -> list[str]:
        """The optional Graph application permissions these settings need (checked against the token)."""
        needs = ["Group.Create", "RoleManagement.Read.Directory"]
        if self.sign_in_activity:
            needs.append("AuditLog.Read.All")
        if self.assign_licences:
            needs.append("LicenseAssignment.ReadWrite.All")
        return needs


OPTION_KEYS = frozenset(EntraSettings.model_fields)


def read_settings(context: ConnectorContext) -> EntraSettings:
    """The table checked: an unknown key (with a did-you-mean hint) or a bad value is one ConfigError."""
    check_option_keys(context, OPTION_KEYS)
    try:
        return EntraSettings.model_validate(dict(context.options))
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"][:1]) or "?"
        raise ConfigError(context.source, key, _said(first)) from None


def _said(error: ErrorDetails) -> str:
    """A validation error as this project says it: our validators' own words, pydantic's otherwise."""
    if error["type"] == "missing":
        return "is required"
    if error["type"] == "value_error":
        return str((error.get("ctx") or {}).get("error", error["msg"]))
    message = error["msg"]
    return f"{message[:1].lower()}{message[1:]}, not {error['input']!r}"


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


def read_credentials(context: ConnectorContext, settings: EntraSettings) -> Credentials:
    """The app's id and its certificate's key (preferred) or client secret, from the context's secrets."""
    if not settings.tenant_id:
        raise ConfigError(context.source, "tenant_id", "is required")
    if not settings.client_id:
        raise ConfigError(context.source, "client_id", "is required")
    tenant_id, client_id, host = settings.tenant_id, settings.client_id, settings.authority_host
    if settings.certificate:
        path = Path(settings.certificate)
        if not path.is_absolute():
            path = Path(context.source).parent / path
        try:
            certificate_pem = path.read_text(encoding="ascii")
        except OSError as error:
            raise ConfigError(context.source, "certificate", f"cannot read {path}: {error.strerror}") from None
        key_name = f"{context.name}_certificate_key"
        return Credentials(tenant_id, client_id, host, private_key=context.secret(key_name),
                           certificate=certificate_pem, where=f"secret {key_name} with {path}",
                           config_file=context.source)
    secret_name = f"{context.name}_client_secret"
    return Credentials(tenant_id, client_id, host, client_secret=context.secret(secret_name),
                       where=f"secret {secret_name}", config_file=context.source)
