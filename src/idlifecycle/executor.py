"""Applies a Plan through the connectors, journalling each change so a killed run resumes exactly once.

Every change is written to the journal as `started` before it is sent and as applied / already-so /
failed afterwards. A restarted run skips what the journal says is done and re-sends what was only
started; connectors answer ALREADY for those that had in fact landed (they look before they write).

A journal belongs to one piece of work, named by the caller: a nightly run (`run_journal_id`), one
reset or decision (`fresh_journal_id`), or one saved plan file (`saved_plan_journal_id`). Only
applying the same saved file again reads an earlier journal; a new night never does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date
from itertools import groupby

from idlifecycle.connectors.base import Connector, ConnectorError
from idlifecycle.model import Action, Change, Outcome, Plan, Result
from idlifecycle.planner import phase
from idlifecycle.store import JournalEntry, Store

changes_log = logging.getLogger("idlifecycle.changes")
"""One structured line per applied change, for cron logs (the CLI quiets it under a progress bar)."""

PasswordFor = Callable[[Change], str]
"""Gives the initial or new password for a CREATE / SET_PASSWORD change (one per person per run)."""

_DONE = {Outcome.APPLIED.value, Outcome.ALREADY.value}


def plan_id(plan: Plan) -> str:
    """A digest of what a plan would do and what it was computed from.

    Not a journal key any more: two runs whose plans have the same content (a leaver who left, came
    back and left again; a second password reset) are different runs. It names the journal only of a
    plan file saved before plan files carried their own `plan_id` (see `saved_plan_journal_id`).
    """
    payload = json.dumps([sorted(plan.fingerprints.items()), [c.change_id for c in plan.changes]])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def run_journal_id(run_id: int) -> str:
    """The nightly run's journal: its own, so nothing a finished run did is taken as done for a later one."""
    return f"run-{run_id}"


def fresh_journal_id(kind: str) -> str:
    """A journal key nothing used before, for changes applied outside a run (a reset, an approval)."""
    return f"{kind}-{secrets.token_hex(12)}"


def new_plan_id() -> str:
    """A saved plan file's own id: applying the same file again resumes its journal, and only it."""
    return f"plan-{secrets.token_hex(12)}"


def saved_plan_journal_id(plan: Plan) -> str:
    """The journal of a saved plan file: its own id, or (a file saved before files had one) its digest."""
    return plan.plan_id or f"file-{plan_id(plan)}"


class Executor:
    def __init__(
        self,
        store: Store,
        connectors: Mapping[str, Connector],
        *,
        today: date,
        actor: str = "idlifecycle",
        password_for: PasswordFor | None = None,
        on_result: Callable[[Change, Result], None] | None = None,
    ) -> None:
        self.store = store
        self.connectors = connectors
        self.today = today
        self.actor = actor
        self.password_for = password_for
        self.on_result = on_result

    def run(self, run_plan_id: str, changes: Sequence[Change]) -> list[Result]:
        journal = self.store.journal_states(run_plan_id)
        keys: dict[tuple[str, str], str] = {}
        for change in changes:
            entry = journal.get(change.change_id)
            if entry and entry.key and change.person_id and change.action in (Action.CREATE, Action.ADOPT):
                keys[(change.directory, change.person_id)] = entry.key
        results: list[Result] = []
        for directory, in_directory in groupby(changes, key=lambda c: c.directory):
            connector = self.connectors[directory]
            for _, batch in groupby(in_directory, key=phase):
                results.extend(self._run_batch(run_plan_id, connector, list(batch), journal, keys))
        return results

    def _run_batch(self, run_plan_id: str, connector: Connector, batch: list[Change],
                   journal: Mapping[str, JournalEntry], keys: dict[tuple[str, str], str]) -> list[Result]:
        results: list[Result] = []
        # resolved change_id -> the change as planned: journal and audit use the planned id.
        originals: dict[str, Change] = {}
        sending: list[Change] = []
        for change in batch:
            entry = journal.get(change.change_id)
            if entry is not None and entry.state in _DONE:
                results.append(Result(change.change_id, Outcome(entry.state), "done in an earlier attempt",
                                      key=entry.key))
                continue
            resolved = self._resolve(change, keys)
            if resolved is None:
                result = Result(change.change_id, Outcome.FAILED,
                                f"the account for {change.username} was not created, so this was not attempted")
                self._record(run_plan_id, change, result, None)
                results.append(result)
                continue
            if resolved.action in (Action.CREATE, Action.SET_PASSWORD) and resolved.password is None \
                    and self.password_for is not None:
                resolved = replace(resolved, password=self.password_for(resolved))
            originals[resolved.change_id] = change
            sending.append(resolved)
        if not sending:
            return results
        with self.store.transaction():
            for item in sending:
                planned = originals[item.change_id]
                self.store.journal(run_plan_id, planned.change_id, planned.directory, planned.action,
                                   planned.person_id, planned.username, "started")
        try:
            for result in connector.apply(sending):
                if result.change_id not in originals:
                    continue
                planned = originals.pop(result.change_id)
                mapped = replace(result, change_id=planned.change_id)
                if planned.person_id and mapped.key and planned.action in (Action.CREATE, Action.ADOPT):
                    keys[(planned.directory, planned.person_id)] = mapped.key
                self._record(run_plan_id, planned, mapped, self._target(planned, keys))
                results.append(mapped)
        except ConnectorError as error:
            # The batch could not go on (e.g. the directory went away): what was not answered failed,
            # and the next run plans it afresh from a new snapshot.
            for planned in originals.values():
                result = Result(planned.change_id, Outcome.FAILED, str(error), retryable=error.retryable)
                self._record(run_plan_id, planned, result, self._target(planned, keys))
                results.append(result)
        return results

    @staticmethod
    def _target(change: Change, keys: Mapping[tuple[str, str], str]) -> str | None:
        if change.target is not None or change.person_id is None:
            return change.target
        return keys.get((change.directory, change.person_id))

    def _resolve(self, change: Change, keys: Mapping[tuple[str, str], str]) -> Change | None:
        """Fills in the key of an account created earlier in the same run (new starters' groups)."""
        if change.target is not None or change.action in (Action.CREATE, Action.CREATE_GROUP):
            return change
        target = self._target(change, keys)
        return None if target is None else replace(change, target=target)

    def _record(self, run_plan_id: str, change: Change, result: Result, target: str | None) -> None:
        self.store.journal(run_plan_id, change.change_id, change.directory, change.action, change.person_id,
                           change.username, result.outcome, result.detail, result.key)
        if result.outcome is not Outcome.FAILED:
            self._remember(change, result, target)
        self.store.audit(
            "change-" + str(result.outcome),
            {**change.to_json(), "target": target, "detail": result.detail},
            actor=self.actor,
        )
        changes_log.info(json.dumps({
            "event": "change", "directory": change.directory, "action": str(change.action),
            "username": change.username, "group": change.group, "outcome": str(result.outcome),
            "reason": change.reason, "detail": result.detail,
        }))
        if self.on_result is not None:
            self.on_result(change, result)

    def _remember(self, change: Change, result: Result, target: str | None) -> None:
        pid = change.person_id
        if pid is None:
            return
        if change.action in (Action.CREATE, Action.ADOPT) and result.key:
            self.store.record_account(change.directory, pid, result.key, change.username)
            self.store.record_username(change.username, pid)
        elif change.action is Action.RENAME:
            self.store.record_username(str(change.after["username"]), pid)
        elif change.action is Action.DISABLE:
            if target is not None:
                self.store.record_account(change.directory, pid, target, change.username)
            self.store.mark_disabled(change.directory, pid, self.today)
        elif change.action is Action.ENABLE:
            self.store.mark_disabled(change.directory, pid, None)
        elif change.action is Action.DELETE:
            self.store.forget_account(change.directory, pid)
