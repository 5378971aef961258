"""What the access area needs from `idlifecycle.job.Job`, stated as a Protocol so it is checked, not assumed."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from idlifecycle.connectors.base import Connector
from idlifecycle.errors import ConfigError
from idlifecycle.model import Change, Result, Snapshot
from idlifecycle.store import Store


class AccessJob(Protocol):
    @property
    def config(self) -> Any: ...

    @property
    def store(self) -> Store: ...

    @property
    def secrets(self) -> Mapping[str, str]: ...

    @property
    def today(self) -> date: ...

    def section(self, name: str) -> Mapping[str, Any]: ...

    def resolve_path(self, value: str) -> Path: ...

    def config_error(self, key: str, message: str) -> ConfigError: ...

    def open_connectors(self) -> AbstractContextManager[dict[str, Connector]]: ...

    def lock(self) -> AbstractContextManager[None]: ...

    def snapshots(self, connectors: Mapping[str, Connector]) -> dict[str, Snapshot]: ...

    def apply_changes(self, changes: Sequence[Change], connectors: Mapping[str, Connector], *, actor: str,
                      allow_destructive: int | None = None,
                      password_for: Callable[[Change], str] | None = None) -> list[Result]: ...

    def read_people(self) -> Any: ...
