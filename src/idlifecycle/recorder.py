"""What the executor writes to the store for each change: the write-ahead before it is sent, the outcome after.

Runs on the store's own thread (see `handover`): the executor's workers hand these over. A batch's
`start` commits, in one transaction and before anything is sent, the `started` journal rows and what
the directory cannot tell a later run if this one dies once the request has landed: the username
issued (the never-reissue record), a leaver's disable date (pending until the disable is seen), a
password owed until it is delivered, and the audit entry's intent (`change-started`). Each outcome is
`record`ed as it arrives, its journal row, what the store keeps about the account and its audit entry
committing together; a change sent to a directory given up on before it answered stays `started`,
audited `change-unconfirmed`, for the next run's `reconcile_started`. Never a password.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from idlifecycle.dormant import is_dormant_disable
from idlifecycle.model import Action, Change, Outcome, Result
from idlifecycle.store import Store

changes_log = logging.getLogger("idlifecycle.changes")
"""One structured line per applied change, for cron logs (the CLI quiets it under a progress bar)."""


def sent_json(planned: Change, sent: Change) -> dict[str, Any]:
    """The change as sent (an earlier create's key filled in), under its planned id; never a password."""
    return {**sent.to_json(), "change_id": planned.change_id, "sent_as": sent.change_id}


def audit_data(journal_id: str, planned: Change, sent: Change, target: str | None, detail: str) -> dict[str, Any]:
    """An audit entry's body for one change: what, to whom, in which journal, and the id the directory saw."""
    return {**planned.to_json(), "target": target, "detail": detail, "journal": journal_id,
            "sent_as": sent.change_id}


class Recorder:
    """The store's side of applying changes, for one executor; `seconds` and `cpu` time it (wall and CPU)."""

    def __init__(self, store: Store, *, today: date, actor: str,
                 on_result: Callable[[Change, Result], None] | None = None) -> None:
        self.store = store
        self.today = today
        self.actor = actor
        self.on_result = on_result
        self.seconds = self.cpu = 0.0

    def start(self, run_plan_id: str, ready: list[tuple[Change, Change]],
               earlier: set[str]) -> tuple[list[Change], set[tuple[str, str]]]:
        """A batch's write-ahead, on the store's thread; returns what to send and what is owed."""
        sending = [resolved for _, resolved in ready]
        # Write-ahead, in one transaction, before anything is sent: what the directory cannot tell the
        # next run if this one dies after the request lands (the username issued, the leaver's disable
        # date, a password owed) and the audit entry's intent. The outcome follows per change.
        owed_here: set[tuple[str, str]] = set()
        with self._store_clock(), self.store.transaction():
            for (planned, _), item in zip(ready, sending, strict=True):
                self.store.journal(run_plan_id, planned.change_id, planned.directory, planned.action,
                                   planned.person_id, planned.username, "started", sent=sent_json(planned, item))
                if self._write_ahead(planned, item):
                    owed_here.add((planned.directory, planned.change_id))
                if planned.change_id not in earlier:  # a resumed send carries on the intent already audited
                    self.store.audit("change-started", audit_data(run_plan_id, planned, item, item.target, ""),
                                     actor=self.actor)
        return sending, owed_here

    def _write_ahead(self, planned: Change, item: Change) -> bool:
        """Records before sending what only this tool can know afterwards; True if a password is newly owed."""
        pid = planned.person_id
        if pid is None:
            return False
        if planned.action in (Action.CREATE, Action.ADOPT):
            self.store.record_username(planned.username, pid)
        elif planned.action is Action.RENAME:
            self.store.record_username(str(planned.after["username"]), pid)
        elif planned.action is Action.DISABLE and item.target is not None:
            self.store.mark_disable_pending(planned.directory, pid, item.target, planned.username, self.today)
            if is_dormant_disable(planned):
                self.store.mark_dormant_pending(planned.directory, pid, item.target, planned.username,
                                                planned.reason, self.today)
        if planned.action in (Action.CREATE, Action.SET_PASSWORD) and item.password is not None:
            # Owed until delivered: if this run dies after the directory took the password, nobody has it.
            why = "new account" if planned.action is Action.CREATE else planned.reason
            return self.store.owe_password(pid, planned.directory, planned.username, why)
        return False

    def record(self, run_plan_id: str, change: Change, sent: Change, result: Result, target: str | None, *,
                earlier: bool = False, owed: bool = False) -> None:
        """The outcome of one change, as it arrives: journal, store, and audit commit together."""
        if result.unconfirmed and result.outcome is Outcome.FAILED:
            self._record_unconfirmed(run_plan_id, change, sent, result, target)
            return
        event, detail = "change-" + str(result.outcome), result.detail
        if earlier and result.outcome is Outcome.ALREADY:
            # Our own write from the attempt that was killed: it is audited as applied, once, here.
            event = "change-applied"
            detail = "applied by an earlier attempt of this plan that was interrupted before recording it"
        with self._store_clock():
            with self.store.transaction():
                self.store.journal(run_plan_id, change.change_id, change.directory, change.action,
                                   change.person_id, change.username, result.outcome, result.detail, result.key)
                if result.outcome in (Outcome.APPLIED, Outcome.ALREADY):
                    self._remember(change, result, target)
                elif owed and change.person_id is not None:
                    # Nothing was set, so nothing is owed (an obligation from before stays). A failed
                    # disable's pending date is kept: the next run sees whether it landed after all.
                    self.store.settle_password(change.person_id, [change.directory])
                self.store.audit(event, audit_data(run_plan_id, change, sent, target, detail), actor=self.actor)
            self._told(change, result, str(result.outcome), result.detail)

    def _record_unconfirmed(self, run_plan_id: str, change: Change, sent: Change, result: Result,
                            target: str | None) -> None:
        """Sent, and the directory was given up on before it answered: the change may have landed.

        Not recorded failed: its journal row stays `started` (with what was written ahead: username,
        disable date, password owed), so the next run's `reconcile_started` settles it against a
        fresh snapshot and audits it applied exactly once if it landed. The run still reports it failed.
        """
        detail = f"{result.detail}; sent but not confirmed: the next run looks and settles it"
        with self.store.transaction():
            self.store.audit("change-unconfirmed", audit_data(run_plan_id, change, sent, target, detail),
                             actor=self.actor)
        self._told(change, result, "unconfirmed", detail)

    def _told(self, change: Change, result: Result, outcome: str, detail: str) -> None:
        """A recorded outcome's log line (for cron logs) and the caller's progress hook."""
        if changes_log.isEnabledFor(logging.INFO):  # the line is built only for someone to read it
            changes_log.info(json.dumps({
                "event": "change", "directory": change.directory, "action": str(change.action),
                "username": change.username, "group": change.group, "outcome": outcome,
                "reason": change.reason, "detail": detail,
            }))
        if self.on_result is not None:
            self.on_result(change, result)

    def _remember(self, change: Change, result: Result, target: str | None) -> None:
        """What the store keeps about a change that is done; a username issued was written ahead (`start`)."""
        pid = change.person_id
        if pid is None:
            return
        if change.action in (Action.CREATE, Action.ADOPT) and result.key:
            self.store.record_account(change.directory, pid, result.key, change.username)
        elif change.action is Action.DISABLE:
            if target is not None:
                self.store.record_account(change.directory, pid, target, change.username)
            # The date written ahead of the send (this run's), or today's for a change done already.
            if self.store.settle_disable(change.directory, pid, landed=True) is None:
                self.store.mark_disabled(change.directory, pid, self.today)
            if is_dormant_disable(change):
                # Remembered so a hand re-enable gets its grace rather than tomorrow's disable, and someone is told.
                self.store.settle_dormant(change.directory, pid, landed=True)
        elif change.action is Action.ENABLE:
            self.store.mark_disabled(change.directory, pid, None)
        elif change.action is Action.DELETE:
            self.store.forget_account(change.directory, pid)

    @contextmanager
    def _store_clock(self) -> Iterator[None]:
        """Times store work on this (the store's) thread, wall and CPU (a shared machine's wall time is
        mostly waiting for a core); the side-by-side rounds take the writer's own figures instead."""
        began, began_cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - began
            self.cpu += time.thread_time() - began_cpu
