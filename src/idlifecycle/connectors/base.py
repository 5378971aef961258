"""The connector contract: snapshot a directory's managed scope and apply Changes to it.

Every connector subclasses `Connector` and implements `snapshot` and the batched `apply` with its
API's own batching (`apply_one` is one change sent through `apply`). Library exceptions never leave a
connector: they become `ConnectorError` (or a subclass) or a FAILED `Result` (`failed_result`).

What every connector needs from outside is handed to it in the `ConnectorContext`: its options, its
secrets (`secret()`, one message for a missing one), and the passwords package's generator for a
throw-away initial password (`throwaway_password()`), so no connector imports another area.
"""

from __future__ import annotations

import difflib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

from idlifecycle.errors import ConfigError, UserError
from idlifecycle.model import Capabilities as Capabilities  # moved to the model; re-exported for connectors
from idlifecycle.model import Change, DeletedAccount, Outcome, Result, RoleHolder, Snapshot


class ConnectorError(Exception):
    """A directory refused or failed an operation. `retryable` says whether trying later may work."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)


class Waiting(ConnectorError):
    """The change cannot be made yet: the directory is still doing what it must wait for (a Google leaver's
    Data Transfer before the delete). Its Result is WAITING, not FAILED; nothing was sent for it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class Conflict(ConnectorError):
    """The object already exists and is not ours (e.g. a duplicate name with another anchor)."""


class AuthError(ConnectorError, UserError):
    """Could not sign in to the directory; the message names the fix (tenant, secret, consent)."""


class CursorStore(Protocol):
    """Where a connector keeps incremental-read state (Graph delta links, AD uSN marks)."""

    def get_cursor(self, directory: str, name: str) -> str | None: ...

    def set_cursor(self, directory: str, name: str, value: str | None) -> None: ...


@dataclass(frozen=True)
class ConnectorContext:
    """Everything a connector is built from."""

    name: str
    """The directory's name in plans and the store (the TOML file's `name`, e.g. "entra")."""
    type: str
    options: Mapping[str, Any]
    """The connector's TOML table, minus name and type."""
    source: str
    """The TOML file the options came from, for error messages."""
    cursors: CursorStore
    state_dir: Path
    """Where sandbox emulators keep their data between runs of the demo."""
    secrets: Mapping[str, str] = field(default_factory=dict)
    """Secrets resolved from the environment or secret files (never from the TOML)."""
    cache_dir: Path | None = None
    """Where a connector keeps what it read last (the Entra delta cache); the state directory's own
    `cache/` folder in a job, never the sandbox's; `state_dir` when not given."""
    password_generator: Callable[[], str] | None = None
    """The passwords package's generator of a throw-away password meeting every directory's rules, for a
    create planned without one (the job wires it in; a connector never writes its own)."""

    def secret(self, name: str, what: str = "") -> str:
        """The secret `name`, or one UserError naming the connector's file, the secret and where to put it.

        The job's secrets mapping raises UserError itself for a missing secret; a plain mapping (a test, a
        school's own wiring) raises KeyError: both end in the same message."""
        label = f"{what} (secret {name!r})" if what else f"secret {name!r}"
        try:
            return str(self.secrets[name])
        except KeyError:
            pass
        except UserError as error:
            raise UserError(f"{self.source}: {what + ': ' if what else ''}{error}") from None
        raise UserError(f"{self.source}: missing {label}: set IDLIFECYCLE_{name.upper()} or put it in a file "
                        f"named {name} in $IDLIFECYCLE_SECRETS_DIR")

    def throwaway_password(self) -> str:
        """A password nobody is told, for a create planned without one (the person's is set later)."""
        if self.password_generator is None:
            raise ConnectorError(f"{self.name}: no password generator was wired into the connector; "
                                 "a create without a password cannot be sent")
        return self.password_generator()

    def option(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        if key not in self.options:
            if required:
                raise ConfigError(self.source, key, "is required")
            return default
        return self.options[key]


def failed_result(change: Change, error: ConnectorError | str, *, retryable: bool | None = None) -> Result:
    """The FAILED Result for a change the directory refused or could not be reached for (WAITING for a
    `Waiting`: a change that must wait for the directory is not a failure)."""
    if isinstance(error, Waiting):
        return Result(change.change_id, Outcome.WAITING, str(error), retryable=True)
    if isinstance(error, ConnectorError):
        return Result(change.change_id, Outcome.FAILED, str(error),
                      retryable=error.retryable if retryable is None else retryable)
    return Result(change.change_id, Outcome.FAILED, error, retryable=bool(retryable))


class Connector(ABC):
    """One directory. Subclasses set `capabilities` and implement `from_config`, `snapshot` and `apply`."""

    capabilities: ClassVar[Capabilities] = Capabilities()
    option_keys: ClassVar[frozenset[str]] = frozenset()
    """Every key the connector's TOML table may hold (besides name and type): any other is refused when the
    job loads, naming the file and key, so `tls_verfy = false` cannot silently leave TLS checking on or off.
    Empty: not checked (a school's own connector that does not declare its keys)."""

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    @abstractmethod
    def from_config(cls, context: ConnectorContext) -> Connector:
        """Build from configuration; raise ConfigError naming the file and key on bad input."""

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """Every managed account and group, with the attributes the planner compares."""

    @abstractmethod
    def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
        """Apply changes in order with the API's own batching, yielding one Result per change, in order;
        ALREADY when the directory is already in the wanted state. A change that fails is a FAILED Result
        (`failed_result`), never an exception.

        Called on a thread of this directory's own (the executor applies directories side by side),
        not the one that built the connector or read its snapshot; one call at a time per connector.
        """

    def apply_one(self, change: Change) -> Result:
        """One change, sent through `apply` (a reset, an approval, a test)."""
        for result in self.apply([change]):
            return result
        raise ConnectorError(f"{self.name}: apply gave no result for change {change.change_id}")

    def privileged_reason(self, key: str) -> str:
        """Why the object with this key holds a privileged role or group ("" when it holds none).

        The executor asks before every change with a target, so that no path (a run, a reset, an
        approval, a saved plan) changes an admin account even when a snapshot missed it.
        """
        return ""

    def recycle_bin(self) -> Sequence[DeletedAccount]:
        """The deleted but still restorable accounts of the managed scope (Entra deleted items, Google
        deleted users, AD Deleted Objects), for `state rebuild` to reserve their names.

        Only for a connector whose `capabilities.recycle_bin` is true; raises ConnectorError when the
        directory cannot be read.
        """
        raise NotImplementedError(f"{type(self).__name__} does not read its recycle bin")

    def privileged_roles(self) -> Sequence[RoleHolder]:
        """Holders of administrative roles, for the access review; empty where not supported."""
        return ()

    def data_kept_at_delete(self) -> str:
        """What of a leaver's data the directory hands on before their delete, in words for the SIRO's review
        ("Drive and Calendar transferred to …"); "" when the delete takes everything."""
        return ""

    def password_constraints(self) -> Mapping[str, Any]:
        """The directory's own password rules as it reports them (AD reads them from the domain):
        keys `min_length`, `max_length`, `complexity` (bool), `history`; empty where fixed by the service."""
        return {}

    def after_changes(self) -> None:
        """Called once a run's changes have been applied (on the calling thread, store work allowed): bring
        what the connector keeps between runs (a delta link, a cached state) up to date with the run's own
        writes, so that the next run reads what changed after this one, not this run's writes again.
        Never raises: a failure only leaves that reading to the next run."""

    def close(self) -> None:
        """Release connections (and stop an embedded sandbox)."""

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


CONNECTOR_TYPES: dict[str, str] = {
    "entra": "idlifecycle.connectors.entra:EntraConnector",
    "google": "idlifecycle.connectors.google:GoogleConnector",
    "ad": "idlifecycle.connectors.ad:ADConnector",
    # The demo's embedded tenants: each starts its emulator and hands the real connector above its
    # endpoint and credentials. Named here, imported only when a job names one (nothing imports sandbox/).
    "entra-sandbox": "idlifecycle.sandbox.launch:EntraSandbox",
    "google-sandbox": "idlifecycle.sandbox.launch:GoogleSandbox",
}
"""type name in connectors/*.toml -> "module:Class"."""


SANDBOX_TYPES = frozenset({"entra-sandbox", "google-sandbox"})
"""The types whose directories are embedded emulators: a job of these alone is the demo (config.sandbox_only)."""


def type_named(type_name: str, options: Mapping[str, Any]) -> str:
    """The type a connector table names. `sandbox = true` beside `type = "entra"` or `"google"` is the older
    spelling of `type = "entra-sandbox"` / `"google-sandbox"`."""
    older = f"{type_name}-sandbox"
    return older if older in SANDBOX_TYPES and options.get("sandbox") is True else type_name


def named_type(context: ConnectorContext) -> ConnectorContext:
    """The context with the type its table names, without the older spelling's `sandbox` key
    (`sandbox = false` beside a real type says what the type says already)."""
    if "sandbox" not in context.options or f"{context.type}-sandbox" not in SANDBOX_TYPES:
        return context
    options = {key: value for key, value in context.options.items() if key != "sandbox"}
    return replace(context, type=type_named(context.type, context.options), options=options)


def build_connector(context: ConnectorContext) -> Connector:
    context = named_type(context)
    # A type written as "package.module:Class" names a school's own connector.
    target = CONNECTOR_TYPES.get(context.type) or (context.type if ":" in context.type else None)
    if target is None:
        raise ConfigError(
            context.source, "type",
            f"unknown connector type {context.type!r}; expected one of {', '.join(sorted(CONNECTOR_TYPES))} "
            "or package.module:Class",
        )
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            raise UserError(f"{context.source}: type: connector {context.type!r} is not installed") from None
        raise
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ConfigError(context.source, "type", f"{target} is not a Connector class")
    check_option_keys(context, cls.option_keys)
    return cls.from_config(context)


def check_option_keys(context: ConnectorContext, known: frozenset[str]) -> None:
    """ConfigError for the first key of the connector's table that the connector does not read."""
    if not known:
        return
    for key in sorted(set(context.options) - known):
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = (f"did you mean {close[0]!r}?" if close
                else f"the {context.type} connector reads {', '.join(sorted(known))}")
        raise ConfigError(context.source, key, f"unknown option; {hint}")
