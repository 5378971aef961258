"""The Google connector's TOML table as one strict pydantic model.

Every key the table may hold is a field of `GoogleOptions` (the connector's `option_keys` are its
field names), and every check says in one line what is wrong with which key: a validation error
becomes one ConfigError naming the file and the key (`GoogleOptions.read`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from idlifecycle.connectors.base import ConnectorContext
from idlifecycle.errors import ConfigError

DOMAINS_HINT = 'must list the managed domains, e.g. { staff = "school.example", pupil = "pupils.school.example" }'


def _refuse(message: str) -> PydanticCustomError:
    # A custom error keeps the message as written (a ValueError would read "Value error, ...").
    return PydanticCustomError("option", message)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _refuse("must be a non-empty string")
    return value.strip()


def _number(low: float, high: float, kind: Callable[[float], Any] = float) -> BeforeValidator:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            # Whole bounds in full: `:g` alone printed the quota's as "1e+06".
            raise _refuse(f"must be a number from {low:.0f} to {high:.0f}")
        return kind(value)
    return BeforeValidator(check)


def _admin(value: Any) -> str:
    admin = _text(value)
    if "@" not in admin:
        raise _refuse(f"{admin!r} is not an email address: name the super admin to act as")
    return admin


def _domains(value: Any) -> tuple[str, ...]:
    # A table ({ staff = ..., pupil = ... }) names each domain's kind; a list is the older spelling.
    domains = tuple(value.values()) if isinstance(value, Mapping) else value
    if not isinstance(domains, list | tuple) or not domains or not all(
            isinstance(d, str) and "." in d for d in domains):
        raise _refuse(DOMAINS_HINT)
    return tuple(d.lower() for d in domains)


def _org_unit_root(value: Any) -> str:
    root = _text(value)
    if not root.startswith("/"):
        raise _refuse(f"{root!r} must be a full org unit path starting with '/'")
    return root.rstrip("/") or "/"


def _leavers(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip("/"):
        raise _refuse('must be a container path under org_unit_root, e.g. "Leavers"')
    return value.strip("/")


def _transfer_to(value: Any) -> str | None:
    if value is None:
        return None
    account = _text(value).lower()
    if "@" not in account:
        raise _refuse(f"{account!r} is not an email address: name the account that receives leavers' Drive "
                      "and Calendar data, e.g. \"archive@school.example\"")
    return account


def _endpoint(value: Any) -> str:
    endpoint = _text(value)
    return endpoint if endpoint.endswith("/") else endpoint + "/"


def _sandbox_only(value: Any) -> None:
    if value is not None:
        raise _refuse("is only for the sandbox; remove it")


Text = Annotated[str, BeforeValidator(_text)]


class GoogleOptions(BaseModel):
    """The connector's TOML table, checked (field order is the order the keys are checked in)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    admin: Annotated[str, BeforeValidator(_admin)]
    domains: Annotated[tuple[str, ...], BeforeValidator(_domains)]
    org_unit_root: Annotated[str, BeforeValidator(_org_unit_root)]
    leavers: Annotated[str | None, BeforeValidator(_leavers)] = None
    transfer_to: Annotated[str | None, BeforeValidator(_transfer_to)] = None
    """The account a leaver's Drive and Calendar data is transferred to (Data Transfer API) before the
    delete; None: deleted without a transfer, as before. Setting it adds the admin.datatransfer scope."""
    read_admin_roles: bool = False
    """The access review names each delegated admin's roles (roles, roleAssignments), through a sign-in of
    its own with admin.directory.rolemanagement.readonly; refused, the sheet says so and the review goes on."""
    api_endpoint: Annotated[str, BeforeValidator(_endpoint)] = "https://admin.googleapis.com/"
    customer: Text = "my_customer"
    group_domain: Annotated[str, BeforeValidator(lambda v: _text(v).lower())] = ""
    """Where created groups' addresses go; the staff domain (else the first) when not given."""
    managed_group_marker: Text = "[managed by idlifecycle]"
    quota_per_minute: Annotated[int, _number(1, 1_000_000, int)] = 2400
    batch_size: Annotated[int, _number(1, 1000, int)] = 100
    burst_seconds: Annotated[float, _number(0, 60, float)] = 10.0
    """Seconds' worth of the quota that may be sent at once before calls are spread (0: always spread)."""
    timeout: Annotated[float, _number(1, 600)] = 30.0
    """Seconds for each socket operation (connecting, and each read of an answer)."""
    give_up_after: Annotated[float, _number(1, 3600)] = 120.0
    """Seconds Google may answer nothing at all before the run's remaining changes to it fail."""
    replication_wait: Annotated[float, _number(0, 600)] = 60.0
    """Seconds after one of its own creates during which a 404 or "User creation is not complete"
    about that object is waited out and retried rather than failed."""
    secret: Text = "google_service_account"  # noqa: S105 - the secret's name, not its value
    """The secret holding the service-account key; `<name>_service_account` when not given."""
    token_uri: Annotated[None, BeforeValidator(_sandbox_only)] = None
    """Declared so that a table naming it is told why it is refused: the sandbox launcher sets it."""

    @model_validator(mode="before")
    @classmethod
    def _group_domain_from_domains(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "group_domain" in data:
            return data
        domains = data.get("domains")
        listed = list(domains.values()) if isinstance(domains, Mapping) else domains
        staff = domains.get("staff") if isinstance(domains, Mapping) else None
        chosen = staff or (listed[0] if isinstance(listed, list | tuple) and listed else None)
        return {**data, "group_domain": chosen} if isinstance(chosen, str) else data

    @classmethod
    def read(cls, context: ConnectorContext) -> GoogleOptions:
        """The options of the connector's table; ConfigError naming the file and key on bad input."""
        data = {"secret": f"{context.name}_service_account", **context.options}
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(part) for part in first["loc"])
            message = {"missing": "is required", "extra_forbidden": "unknown option"}.get(first["type"], first["msg"])
            raise ConfigError(context.source, key, message) from None


OPTION_KEYS = frozenset(GoogleOptions.model_fields)
"""Every key a `type = "google"` table may hold: the model's fields, so the two cannot disagree."""
