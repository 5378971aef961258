"""Active Directory connector: reads and writes one managed tree of a domain over LDAPS or StartTLS (ldap3).

Scope: everything lives under `base_dn`; every write first checks that its target DN ends with it
(`Writer.check_in_scope`). Accounts are matched by the anchor in `employeeID`; Account.key is the
objectGUID. Neutral containers "Pupils/Year 7" map to `OU=Year 7,OU=Pupils,<base_dn>`.

The parts: `settings` (the TOML table), `session` (connections, retries, LDAP answers -> our errors),
`snapshot` (full and incremental reads), `privileged` (holders of protected groups), `requests` (pure
builders of what is sent), `writes` (one handler per action). This class routes changes to them:
`HANDLERS` says which handler applies which action; memberships are sent per group, not per change.

Writes are retried with tenacity on a fresh connection, failing over to the next server; a group's
members are reported whole, wherever they live (CN=Users, other OUs, foreign security principals,
contacts, nested groups), so that a restricted share's group can be held to its approved members.

Privileged accounts: every snapshot reads afresh which accounts under base_dn have `adminCount=1` or are
members, nested or by primary group, of a protected group found by its well-known SID. Their
Account.privileged says why; the planner leaves them alone, and `privileged_reason` refuses any change
to them but a removal from a restricted group (the last line of defence).

The bind password is the secret `<name>_bind_password` (env `IDLIFECYCLE_AD_BIND_PASSWORD` for a
connector named "ad").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, ClassVar

from ldap3.core import exceptions as ldap_errors

from idlifecycle.connectors.ad import privileged, requests
from idlifecycle.connectors.ad.dn import key_of, text
from idlifecycle.connectors.ad.session import ADSession, transient
from idlifecycle.connectors.ad.settings import OPTION_KEYS, ADSettings, ServerAddress
from idlifecycle.connectors.ad.snapshot import ScopeReader
from idlifecycle.connectors.ad.writes import Writer
from idlifecycle.connectors.base import (
    Capabilities,
    Connector,
    ConnectorContext,
    ConnectorError,
    CursorStore,
    failed_result,
)
from idlifecycle.model import Action, Change, DeletedAccount, Outcome, Result, RoleHolder, Snapshot

log = logging.getLogger(__name__)
CREATE_CHUNK = 50
"""Creates applied before their keys are read back in one search (and their Results yielded)."""
MEMBERSHIPS = frozenset({Action.ADD_MEMBER, Action.REMOVE_MEMBER})
"""Sent per group (`Writer.members`), one modify for all of a batch's changes to that group."""

Handler = Callable[[Writer, Change], Result]
HANDLERS: Mapping[Action, Handler] = {
    Action.CREATE: Writer.create,
    Action.ADOPT: Writer.adopt,
    Action.UPDATE: Writer.update,
    Action.RENAME: Writer.rename,
    Action.MOVE: Writer.move,
    Action.ENABLE: Writer.enable,
    Action.DISABLE: Writer.disable,
    Action.DELETE: Writer.delete,
    Action.SET_PASSWORD: Writer.set_password,
    Action.REQUIRE_PASSWORD_CHANGE: Writer.require_password_change,
    Action.REVOKE_SESSIONS: Writer.revoke_sessions,
    Action.CREATE_GROUP: Writer.create_group,
}
"""Action -> the handler that applies one change of it (every action but MEMBERSHIPS)."""


class ADConnector(Connector):
    """One Active Directory domain's managed tree."""

    capabilities = Capabilities(containers=True, max_username_length=20, revoke_sessions=False,
                                password_rules="ad",  # noqa: S106 - which rules apply, not a secret
                                max_anchor_length=requests.EMPLOYEE_ID_LIMIT, recycle_bin=True)

    option_keys: ClassVar[frozenset[str]] = OPTION_KEYS

    def __init__(self, name: str, settings: ADSettings, cursors: CursorStore, bind_password: str) -> None:
        super().__init__(name)
        self.settings = settings
        self.session = ADSession(name, settings, bind_password)
        self.reader = ScopeReader(name, self.session, cursors)
        self.writer = Writer(self.session, self.privileged_reason)
        self._pool: ThreadPoolExecutor | None = None
        self._privileged: dict[str, str] | None = None
        """objectGUID -> why it is privileged, as the last snapshot read it."""

    @classmethod
    def from_config(cls, context: ConnectorContext) -> ADConnector:
        settings = ADSettings.from_context(context)
        password = context.secret(f"{context.name}_bind_password", "the bind password")
        return cls(context.name, settings, context.cursors, password)

    @property
    def server_used(self) -> ServerAddress | None:
        """The DC the last connection was bound to (failover picks the first that answers)."""
        return self.session.server_used

    @property
    def last_read(self) -> str:
        """"full" or "incremental": how the last snapshot was read (for logs and tests)."""
        return self.reader.last_read

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self.session.close()

    # reading

    def snapshot(self) -> Snapshot:
        def read() -> Snapshot:
            state = self.reader.read()
            self._privileged = privileged.privileged_in_scope(self.session)
            return self.reader.snapshot_from(state, self._privileged)
        return self.session.read(self.settings.base_dn, read)

    def after_changes(self) -> None:
        """Read what this run wrote into the cached state (an incremental read: what changed since the
        snapshot), so that the next night reads only what changed after this run."""
        try:
            self.session.read(self.settings.base_dn, self.reader.read)
        except ConnectorError as error:
            log.warning("%s: the tree could not be read again after the run's changes (%s); the next run reads "
                        "them instead", self.name, error)

    def privileged_reason(self, key: str) -> str:
        """Why the account with this objectGUID is privileged ("" if it is not), read afresh when no
        snapshot was taken by this connector yet."""
        if self._privileged is None:
            self._privileged = self.session.read("the privileged accounts",
                                                 lambda: privileged.privileged_in_scope(self.session))
        return self._privileged.get(key.lower(), "")

    def password_constraints(self) -> Mapping[str, Any]:
        return self.session.read("the domain's password policy", self.reader.password_constraints)

    def recycle_bin(self) -> list[DeletedAccount]:
        return self.session.read("the deleted objects", self.reader.recycle_bin)

    def privileged_roles(self) -> Sequence[RoleHolder]:
        return self.session.read("the privileged groups", lambda: privileged.role_holders(self.session, self.name))

    # writing

    def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
        """Object changes in order, creates in chunks (new keys read back in one search per chunk, or on
        several connections when configured), then memberships grouped per group into one modify each."""
        memberships: dict[tuple[str, Action], list[Change]] = {}
        creates: list[Change] = []
        for change in changes:
            if change.action in MEMBERSHIPS:
                memberships.setdefault((change.group or "", change.action), []).append(change)
                continue
            if change.action is Action.CREATE:
                creates.append(change)
                if len(creates) < CREATE_CHUNK:
                    continue
            yield from self._creates(creates)
            creates = []
            if change.action is not Action.CREATE:
                yield self._guarded(change)
        yield from self._creates(creates)
        for (group, action), batch in memberships.items():
            yield from self._membership_batch(group, action, batch)

    def _creates(self, creates: Sequence[Change]) -> list[Result]:
        if not creates:
            return []
        if self.settings.connections > 1:
            if self._pool is None:
                # Kept for the connector's life: each worker thread keeps its own bound connection.
                self._pool = ThreadPoolExecutor(self.settings.connections, thread_name_prefix=f"{self.name}-ldap")
            results = list(self._pool.map(self._guarded, creates))
        else:
            results = [self._guarded(change) for change in creates]
        return self._with_keys(creates, results)

    def _with_keys(self, creates: Sequence[Change], results: list[Result]) -> list[Result]:
        """Fill in the objectGUIDs of new accounts with one search per chunk instead of one read each."""
        missing = {str(c.after["username"]).lower(): i for i, (c, r) in enumerate(zip(creates, results, strict=True))
                   if r.outcome is Outcome.APPLIED and r.key is None}
        if not missing:
            return results
        names = requests.names_filter(list(missing))
        try:
            found = self.session.retrying(lambda: {
                (text(raw, "sAMAccountName") or "").lower(): key_of(raw)
                for _, raw in self.session.search(self.settings.base_dn, names, ["objectGUID", "sAMAccountName"])
            })
        except ldap_errors.LDAPException:
            found = {}
        for name, index in missing.items():
            key = found.get(name)
            results[index] = replace(results[index], key=key) if key else Result(
                results[index].change_id, Outcome.FAILED, f"create {name}: created, but its objectGUID could not "
                "be read back; the next run finds it by its anchor", retryable=True)
        return results

    def _guarded(self, change: Change) -> Result:
        """One change through its handler, retried on a fresh connection after a lost one; never raises."""
        handler = HANDLERS[change.action]  # apply sends MEMBERSHIPS per group, never here
        try:
            result: Result = self.session.retrying(lambda: handler(self.writer, change))
        except ConnectorError as error:
            return failed_result(change, error)
        except ldap_errors.LDAPOperationResult as error:
            return failed_result(change, self.session.refused(error, change.action.value,
                                                              f"{change.action} {change.username}"))
        except ldap_errors.LDAPException as error:
            return failed_result(change, f"{change.action} {change.username}: {error}", retryable=transient(error))
        return result

    def _membership_batch(self, group: str, action: Action, batch: Sequence[Change]) -> list[Result]:
        """One group's adds (or removes), retried as a whole on a fresh connection after a lost one."""
        try:
            return self.session.retrying(lambda: self.writer.members(group, action, batch))
        except ConnectorError as error:
            return [failed_result(c, error) for c in batch]
        except ldap_errors.LDAPException as error:
            detail = f"{action} {group}: {error}"
            return [failed_result(c, detail, retryable=transient(error)) for c in batch]
