"""The Google Workspace connector: the Admin SDK Directory API through google-api-python-client.

A thin class over its parts: the session (sign-in, pacing, retries, what errors mean), the scope
reader (snapshot), the pure request builders, the batch writer, and (with `transfer_to`) the Data
Transfer API asked before a delete (transfers). What each action sends is one
row of HANDLERS; a handler reads what its request needs (a group's key, a user's address or current
externalIds) and hands it to a builder in `requests`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import ClassVar

from idlifecycle.connectors.base import (
    Capabilities,
    Connector,
    ConnectorContext,
    ConnectorError,
    check_option_keys,
)
from idlifecycle.connectors.google import requests as build
from idlifecycle.connectors.google.batches import BatchWriter
from idlifecycle.connectors.google.requests import Request
from idlifecycle.connectors.google.roles import RoleNames
from idlifecycle.connectors.google.session import Pacer, Session, read_key
from idlifecycle.connectors.google.settings import OPTION_KEYS, GoogleOptions
from idlifecycle.connectors.google.snapshot import ScopeReader
from idlifecycle.connectors.google.transfers import DataTransfers
from idlifecycle.model import Action, Change, DeletedAccount, Result, RoleHolder, Snapshot


class GoogleConnector(Connector):
    """A Google Workspace domain, managed under one org unit root."""

    capabilities = Capabilities(containers=True, password_rules="google", revoke_sessions=True,  # noqa: S106
                                max_username_length=64, recycle_bin=True)
    option_keys: ClassVar[frozenset[str]] = OPTION_KEYS

    def __init__(self, context: ConnectorContext, options: GoogleOptions, key_info: Mapping[str, str], *,
                 token_uri: str | None = None, on_close: Callable[[], None] | None = None) -> None:
        super().__init__(context.name)
        self.context, self.options, self.source = context, options, context.source
        self._on_close = on_close
        self.session = Session(context.name, options, key_info, source=context.source, token_uri=token_uri)
        self.reader = ScopeReader(context.name, self.session, context.source)
        self.writer = BatchWriter(self.session, self.reader, self._requests_for)
        self.role_names = RoleNames(self.session, key_info, token_uri) if options.read_admin_roles else None
        """With read_admin_roles: delegated admins' roles, through a sign-in of their own (roles)."""
        self.transfers = DataTransfers(self.session, options.transfer_to) if options.transfer_to else None
        """Leavers' Drive and Calendar go to transfer_to before their delete (None: deleted as they are)."""

    @classmethod
    def from_config(cls, context: ConnectorContext) -> GoogleConnector:
        check_option_keys(context, cls.option_keys)  # the did-you-mean hint, when not built by build_connector
        options = GoogleOptions.read(context)
        return cls(context, options, read_key(context, options.secret))

    def close(self) -> None:
        self.session.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    # -- figures for the bench and the tests --

    @property
    def pacer(self) -> Pacer:
        return self.session.pacer

    @property
    def calls_sent(self) -> int:
        return self.session.calls_sent

    @property
    def rate_limited(self) -> int:
        return self.session.rate_limited

    @property
    def settling_retries(self) -> int:
        """Calls sent again because Google was still propagating an object this run created."""
        return self.session.settling_retries

    # -- reading --

    def snapshot(self) -> Snapshot:
        return self.reader.snapshot()

    def recycle_bin(self) -> list[DeletedAccount]:
        return self.reader.recycle_bin()

    def privileged_reason(self, key: str) -> str:
        return self.reader.privileged_reason(key)

    def privileged_roles(self) -> Sequence[RoleHolder]:
        return self.reader.admins(self.role_names.by_user() if self.role_names is not None else None)

    def data_kept_at_delete(self) -> str:
        if not self.options.transfer_to:
            return ""
        # The Data Transfer API moves Drive and Calendar only: the mailbox goes with the account.
        return f"Drive and Calendar transferred to {self.options.transfer_to} before the delete (Gmail is not)"

    # -- writing --

    def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
        return self.writer.apply(changes)

    def _requests_for(self, change: Change) -> list[Request]:
        if change.action not in (Action.CREATE, Action.CREATE_GROUP) and not change.target:
            raise ConnectorError(f"{change.action} needs the account's Google id (target)")
        handler = self.HANDLERS.get(change.action)
        if handler is None:
            raise ConnectorError(f"the Google connector does not know how to {change.action}")
        return handler(self, change)

    def _org_unit(self, container: str) -> str:
        """The org unit of a container under the managed root, created (with its parents) if missing."""
        path = build.org_unit_path(self.options.org_unit_root, container)
        self.reader.ensure_org_unit(path)
        return path

    def _create(self, change: Change) -> list[Request]:
        path = build.org_unit_path(self.options.org_unit_root, str(change.after.get("container", "")))
        password = change.password or self.context.throwaway_password()
        request = build.create_user(change, self.options.domains, path, password)
        self.reader.ensure_org_unit(path)  # once the request is known to be sendable
        return [request]

    def _adopt(self, change: Change) -> list[Request]:
        key = str(change.target)
        return [build.adopt(key, str(change.after["anchor"]), lambda: self.reader.current(key))]

    def _update(self, change: Change) -> list[Request]:
        key = str(change.target)
        return build.update(key, change.after, lambda: self.reader.current(key))

    def _rename(self, change: Change) -> list[Request]:
        login = str(change.after.get("login") or "")
        request = build.rename(str(change.target), login)
        self.reader.emails[str(change.target)] = login
        return [request]

    def _move(self, change: Change) -> list[Request]:
        path = self._org_unit(str(change.after.get("container", "")))
        return [build.patch(str(change.target), {"orgUnitPath": path})]

    def _enable(self, change: Change) -> list[Request]:
        return [build.patch(str(change.target), {"suspended": False})]

    def _disable(self, change: Change) -> list[Request]:
        leavers = self._org_unit(self.options.leavers) if self.options.leavers else None
        return build.disable(str(change.target), leavers)

    def _delete(self, change: Change) -> list[Request]:
        if self.transfers is not None:
            return self.transfers.before_delete(str(change.target))
        return [build.delete_user(str(change.target))]

    def _revoke_sessions(self, change: Change) -> list[Request]:
        return [build.sign_out(str(change.target))]

    def _require_password_change(self, change: Change) -> list[Request]:
        return [build.patch(str(change.target), {"changePasswordAtNextLogin": True})]

    def _set_password(self, change: Change) -> list[Request]:
        return [build.set_password(str(change.target), change)]

    def _create_group(self, change: Change) -> list[Request]:
        return [build.create_group(str(change.group), self.options.group_domain, self.options.managed_group_marker)]

    def _add_member(self, change: Change) -> list[Request]:
        group_key = self.reader.group_key(str(change.group))
        key = str(change.target)
        return [build.add_member(group_key, key, self.reader.email(key))]

    def _remove_member(self, change: Change) -> list[Request]:
        return [build.remove_member(self.reader.group_key(str(change.group)), str(change.target))]

    HANDLERS: ClassVar[Mapping[Action, Callable[[GoogleConnector, Change], list[Request]]]] = {
        Action.CREATE: _create, Action.ADOPT: _adopt, Action.UPDATE: _update, Action.RENAME: _rename,
        Action.MOVE: _move, Action.ENABLE: _enable, Action.DISABLE: _disable, Action.DELETE: _delete,
        Action.REVOKE_SESSIONS: _revoke_sessions, Action.REQUIRE_PASSWORD_CHANGE: _require_password_change,
        Action.SET_PASSWORD: _set_password, Action.CREATE_GROUP: _create_group, Action.ADD_MEMBER: _add_member,
        Action.REMOVE_MEMBER: _remove_member,
    }
    """What each action sends: every Action has its row (a test checks), none is found by name."""
