"""The Entra connector class: built from its settings, it reads through `snapshot.Reader` and writes each change
through the handler its action names (`HANDLERS`, pure builders in `requests`), phase by phase."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import replace
from typing import ClassVar

from idlifecycle.connectors.base import (
    Capabilities,
    Connector,
    ConnectorContext,
    ConnectorError,
    failed_result,
)
from idlifecycle.connectors.entra import requests
from idlifecycle.connectors.entra.creates import Anchors, create_account, create_group
from idlifecycle.connectors.entra.members import apply_membership
from idlifecycle.connectors.entra.roles import MAX_PAGE
from idlifecycle.connectors.entra.session import GraphSession
from idlifecycle.connectors.entra.settings import (
    OPTION_KEYS,
    Credentials,
    EntraSettings,
    read_credentials,
    read_settings,
)
from idlifecycle.connectors.entra.snapshot import EMPLOYEE_ID_LIMIT, Reader
from idlifecycle.connectors.entra.steps import Emit, Step, Writes, done, planned, run_steps
from idlifecycle.model import Action, Change, DeletedAccount, Outcome, Result, RoleHolder, Snapshot

log = logging.getLogger(__name__)
MEMBERSHIP = (Action.ADD_MEMBER, Action.REMOVE_MEMBER)
HANDLERS: dict[Action, requests.Handler] = {
    Action.ADOPT: requests.adopt,
    Action.UPDATE: requests.update,
    Action.RENAME: requests.rename,
    Action.ENABLE: requests.enable,
    Action.DISABLE: requests.disable,
    Action.DELETE: requests.delete,
    Action.SET_PASSWORD: requests.set_password,
    Action.REQUIRE_PASSWORD_CHANGE: requests.require_password_change,
    Action.REVOKE_SESSIONS: requests.revoke_sessions,
}
"""A change to an existing account -> what it sends. CREATE (`creates.create_account`), MOVE (Entra has no
containers), CREATE_GROUP and the membership changes have phases of their own (see `_apply`)."""


class EntraConnector(Connector):
    capabilities: ClassVar[Capabilities] = Capabilities(
        containers=False, max_username_length=64, revoke_sessions=True, licence_groups=True, hybrid=True,
        password_rules="entra",  # noqa: S106 - names a rule set, not a password
        max_anchor_length=EMPLOYEE_ID_LIMIT, recycle_bin=True,
    )
    option_keys: ClassVar[frozenset[str]] = OPTION_KEYS

    def __init__(self, name: str, session: GraphSession, settings: EntraSettings, reader: Reader,
                 password: Callable[[], str], stop: Callable[[], None] | None = None) -> None:
        super().__init__(name)
        self.session = session
        self.settings = settings
        self.reader = reader
        self._password = password
        self._stop = stop
        self._unreachable: str | None = None
        """Set when Graph stopped answering during this run: why every later change fails at once."""

    # configuration ------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, context: ConnectorContext) -> EntraConnector:
        settings = read_settings(context)
        return cls.on_endpoint(context, settings, read_credentials(context, settings), settings.graph_url,
                               settings.ca_file or None)

    @classmethod
    def read_settings(cls, context: ConnectorContext) -> EntraSettings:
        """The table's settings, checked (ConfigError naming the file and key), for a launcher to read first."""
        return read_settings(context)

    @classmethod
    def on_endpoint(cls, context: ConnectorContext, settings: EntraSettings, credentials: Credentials,
                    graph_url: str, ca_file: str | None, *, stop: Callable[[], None] | None = None) -> EntraConnector:
        """The connector signed in with `credentials` to the Graph root `graph_url`, trusting `ca_file` when
        given; `stop` runs when it closes (the sandbox launcher's emulator), and also if it cannot be built."""
        try:
            session = GraphSession(
                credentials, graph_url, ca_file=ca_file, timeout=settings.timeout_seconds,
                connect_timeout=settings.connect_timeout_seconds, request_timeout=settings.request_timeout_seconds,
                max_in_flight=int(settings.max_batches_in_flight),
                write_limit_per_second=settings.write_limit_per_second, needs=settings.permissions(),
            )
        except BaseException:
            if stop is not None:
                stop()
            raise
        connector_type: type[EntraConnector] = _CloudOnlyEntraConnector if settings.hybrid == "off" else cls
        cache = (context.cache_dir or context.state_dir) / f"entra-{context.name}" / "directory-cache.json"
        reader = Reader(context.name, session, settings, context.cursors, cache)
        return connector_type(context.name, session, settings, reader, context.throwaway_password, stop)

    def close(self) -> None:
        self.session.close()
        if self._stop is not None:
            self._stop()
            self._stop = None

    # reading ------------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        snapshot = self.reader.snapshot()
        self._unreachable = None  # Graph answered a whole read: later changes are sent again
        return snapshot

    def after_changes(self) -> None:
        """One more delta round, so that the stored links start after this run's own writes: the next night's
        delta then brings what changed since, not the run's creates again (20,000 of them on a first night)."""
        if self.reader.cache is None:
            return  # nothing was read, so there are no links to move on
        try:
            self.reader.refresh()
        except ConnectorError as error:  # TransportFailure too
            log.warning("%s: the deltas could not be read again after the run's changes (%s); the next run "
                        "reads them instead", self.name, error)

    def privileged_reason(self, key: str) -> str:
        roles = self.reader.roles
        privileged = roles.privileged
        if privileged is None:
            privileged = roles.read_privileged(self.reader.cache or self.reader.refresh())
        return privileged.get(key, "")

    def recycle_bin(self) -> list[DeletedAccount]:
        return self.reader.recycle_bin()

    def privileged_roles(self) -> Sequence[RoleHolder]:
        return self.reader.roles.review()

    # writing ------------------------------------------------------------------------------------
    def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
        """Yields each change's Result as soon as Graph's answers decide it, while the rest are still sent.

        The requests run on the session's event loop; each Result crosses to this thread through a
        queue the moment its request group is answered, so the executor records it (journal, audit,
        username, disable date) before the next batches are even sent: a run killed mid-phase loses
        no outcome it had heard. Phases keep their order inside one call (groups, then accounts,
        then memberships). Should Graph answer nothing at all for `give_up_after_seconds`, the
        changes not yet answered fail (retryable) and so does every later change this run.
        """
        changes = list(changes)
        if self._unreachable is not None:
            yield from (failed_result(c, self._unreachable, retryable=True) for c in changes)
            return
        try:
            # The snapshot the plan came from is fresh enough: a change behind our back is met by
            # Graph's own answers (duplicate name, not found), read as ALREADY / Conflict.
            cache = self.reader.cache or self.reader.refresh()
            before = self.reader.owed_licences(cache)
        except ConnectorError as error:
            yield from (failed_result(c, error) for c in changes)
            return
        yield from self._deliver(Writes(self.session, self.settings, self.reader, cache, self._password), changes,
                                 before)

    def _deliver(self, writes: Writes, changes: list[Change], before: dict[str, float]) -> Iterator[Result]:
        """Runs the changes on the session's loop and hands each Result over as it arrives (see `apply`)."""
        arrived: queue.SimpleQueue[Result] = queue.SimpleQueue()
        stopped = threading.Event()

        async def guarded() -> None:
            try:
                await self._apply(writes, changes, arrived.put)
            finally:
                stopped.set()

        wanted = {c.change_id for c in changes}
        given: set[str] = set()
        failure: str | None = None
        retryable = True
        future = self.session.submit(guarded())
        try:
            while not stopped.is_set() or not arrived.empty():
                try:
                    result = arrived.get(timeout=0.2)
                except queue.Empty:
                    if failure is not None:
                        break  # given up on, and the cancelled requests did not unwind in time
                    if not stopped.is_set() and self.session.silent_for() > self.settings.give_up_after_seconds:
                        failure = self._give_up(future, stopped)
                    continue  # what was decided before a cancel is still handed over
                if result.change_id in wanted and result.change_id not in given:
                    given.add(result.change_id)
                    before = self._keep_licence_debt(before)
                    yield result
            if failure is None and future.done() and not future.cancelled():
                raised = future.exception()
                if isinstance(raised, ConnectorError):
                    failure, retryable = str(raised), raised.retryable
                elif raised is not None:
                    raise raised
        finally:
            if not future.done():
                future.cancel()  # the caller stopped reading (generator closed): stop sending
                stopped.wait(10)
        if self.reader.licence_debt != before:
            self.reader.save_licence_debt()  # here, not in the event loop's thread: the store is not shared
        for change in changes:
            if change.change_id not in given:
                # Sent and never answered (Graph given up on, or the phase stopped): it may have landed,
                # so the executor leaves it for the next run's look to settle.
                yield replace(failed_result(change, failure or "Graph gave no answer for this change",
                                            retryable=retryable), unconfirmed=change.change_id in writes.sent)

    def _keep_licence_debt(self, before: dict[str, float]) -> dict[str, float]:
        """An account created without its licence is kept as it arrives, like the outcome: a run killed
        later still plans its licence the next night."""
        owed = (self.reader.licence_debt or {}).copy()  # one C call: safe beside the loop's writes
        if owed != before:
            self.reader.save_licence_debt(owed)
        return owed

    def _give_up(self, future: Future[None], stopped: threading.Event) -> str:
        """Graph answered nothing for give_up_after_seconds: this run's remaining changes fail at once."""
        silent = self.session.silent_for()
        limit = self.settings.give_up_after_seconds
        self._unreachable = (
            f"Graph answered nothing for {silent:.0f} s (give_up_after_seconds = {limit:g}), so {self.name} was "
            "given up on for this run: this change was not made, or not confirmed; the next run looks again")
        log.warning("%s: Graph answered nothing for %.0f s: the remaining changes fail", self.name, silent)
        future.cancel()
        stopped.wait(10)  # the cancelled requests unwind; nothing is sent after this
        return self._unreachable

    async def _apply(self, writes: Writes, changes: list[Change], emit: Emit) -> None:
        """The phases, in order: new groups, then accounts, then memberships (which may name both)."""
        group_changes = [c for c in changes if c.action is Action.CREATE_GROUP]
        member_changes = [c for c in changes if c.action in MEMBERSHIP]
        user_changes = [c for c in changes if c.action is not Action.CREATE_GROUP and c.action not in MEMBERSHIP]
        if group_changes:
            await run_steps(writes, [[create_group(writes, c)] for c in group_changes], emit)
        passwords = [c for c in user_changes if c.action in requests.PASSWORD_ACTIONS]
        if passwords and (refusal := await self.reader.roles.may_not_set_passwords()):
            for refused in passwords:
                emit(failed_result(refused, refusal))
            user_changes = [c for c in user_changes if c.action not in requests.PASSWORD_ACTIONS]
        if user_changes:
            await run_steps(writes, await self._user_chains(writes, user_changes), emit)
        if member_changes:
            await apply_membership(writes, member_changes, emit)

    async def _user_chains(self, writes: Writes, changes: list[Change]) -> list[list[Step]]:
        """One chain of steps per account (its changes in order); a create is an account of its own."""
        cache = writes.cache
        deleted_by_anchor: dict[str, str] = {}
        if any(c.action is Action.CREATE for c in changes):
            items, _ = await self.session.read_all(
                "/directory/deletedItems/microsoft.graph.user?$select=id,employeeId,userPrincipalName,proxyAddresses"
                f"&$top={MAX_PAGE}")
            for item in items:
                if item.get("employeeId"):
                    deleted_by_anchor[str(item["employeeId"])] = str(item["id"])
                cache.deleted.setdefault(str(item["id"]), item)
        anchors = Anchors({str(u["employeeId"]): k for k, u in cache.users.items() if u.get("employeeId")},
                          deleted_by_anchor)
        chains: dict[str, list[Step]] = {}
        for change in changes:
            key = change.target or f"create:{change.change_id}"
            chains.setdefault(key, []).append(self._user_step(writes, change, anchors))
        return list(chains.values())

    def _user_step(self, writes: Writes, change: Change, anchors: Anchors) -> Step:
        if change.action is Action.CREATE:
            return create_account(writes, change, anchors)
        if change.action is Action.MOVE:
            return done(change, Outcome.ALREADY, "Entra ID has no containers")
        target = str(change.target or "")
        user = writes.cache.users.get(target)
        handler = HANDLERS.get(change.action)
        plan: requests.Plan
        if user is None:
            plan = requests.missing_account(change, target in writes.cache.deleted)
        elif user.get("onPremisesSyncEnabled") and change.action not in requests.HYBRID_WRITABLE:
            plan = requests.hybrid_refusal(change, user)
        elif handler is None:
            plan = requests.Decided(Outcome.FAILED, f"{change.action} is not a change for an account")
        else:
            plan = handler(change, user, self.settings)
        return planned(writes, change, plan)


class _CloudOnlyEntraConnector(EntraConnector):
    """`hybrid = "off"`: accounts synchronised from AD are outside the scope altogether."""

    capabilities: ClassVar[Capabilities] = replace(EntraConnector.capabilities, hybrid=False)
