"""Applies a Plan through the connectors, journalling each change so a killed run resumes exactly once.

Every change is written to the journal as `started` before it is sent and as applied / already-so /
failed afterwards, each outcome as the connector yields it (`recorder`, on the store's thread). With
the `started` row, in the same transaction, goes what the directory cannot tell a later run: the
username issued (the never-reissue record), a leaver's disable date (pending until the disable is
seen), a password owed until it is delivered, and the audit entry's intent (`change-started`); the
outcome's audit entry commits with the outcome. A run killed in between leaves `started` rows, which
the next run settles against a fresh snapshot (`reconcile_started`): each change that landed is
audited as applied exactly once. So does a change the connector reports `unconfirmed` (sent to a
directory given up on before it answered): audited `change-unconfirmed` and left `started`, while
the run reports it failed. Applying the same saved plan again re-sends what was only started;
connectors answer ALREADY for those that had in fact landed (they look before they write), audited
as the earlier attempt's.

A journal belongs to one piece of work, named by the caller: a nightly run (`run_journal_id`), one
reset or decision (`fresh_journal_id`), or one saved plan file (`saved_plan_journal_id`). Only
applying the same saved file again reads an earlier journal; a new night never does.

Directories are applied side by side, a thread each, so a night takes as long as its slowest
directory rather than the sum of them; inside a directory the phases keep the plan's order. Threads,
not asyncio: the connectors are synchronous generators (ldap3's synchronous strategy, httplib2 under
google-api-python-client, and Entra's own event loop on its own thread behind a synchronous
`apply`), so a thread per directory runs them as they are, and the waiting is on the network, where
the GIL is released. Only this (the calling) thread touches the store (`handover.Writer`): a worker
hands over each piece of store work in order, and waits for the one a send depends on (its
batch's write-ahead rows, committed) before sending; outcomes are recorded as the worker goes on
reading answers. So every guarantee above holds per change as before, and the journal and the
audit chain have one writer. The workers take passwords one at a time, under a lock: once per
person for every directory of the plan (`PasswordFor`), whichever directory asks first (the issuer
draws them ahead on threads of its own, and a phase that needs them is sent in chunks, so a
worker rarely waits for one: `sending_chunks`, `passwords.ahead`); no other
change of a plan depends on another directory's. A directory whose connector fails stops only
itself (see `Executor.run`). One directory has its worker thread too, so its outcomes share commits.
What the plan adds after its directories' own changes (fresh passwords owed) waits for all of them
(`rounds`, even for a directory with nothing else to do): it is set just before the run delivers it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date
from itertools import groupby

from idlifecycle.connectors.base import Connector, ConnectorError, failed_result
from idlifecycle.handover import Handover, Stopped, Writer, beside_the_store
from idlifecycle.model import Action, Change, Outcome, Plan, Result
from idlifecycle.planner import phase
from idlifecycle.reconcile import reconcile_started as reconcile_started  # where callers have always found it
from idlifecycle.reconcile import shown_done as shown_done
from idlifecycle.recorder import Recorder
from idlifecycle.store import JournalEntry, Store

timing_log = logging.getLogger("idlifecycle.changes.timing")  # connector and store times, for bench/night.py

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


def _privileged_refusal(connector: Connector, change: Change) -> str:
    """Why a change must not be sent because its target is a privileged account ("" when it may be).

    The last line of defence behind the planner, reset and approvals: only taking such an account
    out of a restricted share's group is let through, which takes access away and changes the group.
    """
    if change.target is None or (change.action is Action.REMOVE_MEMBER and change.restricted):
        return ""
    try:
        why = connector.privileged_reason(change.target)
    except ConnectorError as error:
        return f"not sent: whether {change.username} is a privileged account could not be read ({error})"
    if not why:
        return ""
    return (f"refused: {change.username} is a privileged account ({why}); idlifecycle never changes privileged "
            f"accounts ({change.action} not sent)")


def rounds(changes: Sequence[Change], order: Sequence[str]) -> list[dict[str, list[Change]]]:
    """The plan cut where it goes back in the directories' `order`: each round's are applied side by side.

    A plan is each directory's changes in turn, in the order the directories are configured, then
    what is added after planning: the termly password flags and the fresh passwords still owed
    after a kill (`passwords.owed`). Those come in a round of their own, after the directories' own
    changes, as they did when directories were applied one after another, so that a password is set
    just before the run delivers it, not while a slower directory is still being applied: a run
    killed in between leaves it owed again, and the next run sets yet another one.
    """
    rank = {directory: n for n, directory in enumerate(order)}
    cut: list[dict[str, list[Change]]] = []
    previous = len(rank)
    for directory, run in groupby(changes, key=lambda c: c.directory):
        if rank.get(directory, len(rank)) <= previous or directory in cut[-1]:
            cut.append({})
        previous = rank.get(directory, len(rank))
        cut[-1][directory] = list(run)
    return cut


FIRST_CHUNK, LARGEST_CHUNK = 25, 200
"""A phase that issues passwords is sent in chunks, the first small and each twice the last: the first
goes out as soon as its passwords are drawn, and the rest are drawn while earlier ones are sent (the
issuer draws up to 512 ahead, `passwords.ahead`: more than a chunk, so it never stops for want of room)."""


def sending_chunks(ready: list[tuple[Change, Change]],
                   needs_password: Callable[[Change], bool]) -> list[list[tuple[Change, Change]]]:
    """A phase's changes cut into the connector calls that send them: one call unless passwords are issued.

    A call's changes are written ahead together, so their passwords are issued before it; one call
    for a phase of 2,000 new accounts would wait for all 2,000 before sending the first.
    """
    if not any(needs_password(resolved) for _, resolved in ready):
        return [ready] if ready else []
    chunks: list[list[tuple[Change, Change]]] = []
    start, size = 0, FIRST_CHUNK
    while start < len(ready):
        chunks.append(ready[start:start + size])
        start, size = start + size, min(2 * size, LARGEST_CHUNK)
    return chunks


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
        self.recorder = Recorder(store, today=today, actor=actor, on_result=on_result)  # the store's side
        # Timings: the workers taking passwords (waiting for the issuer to draw one, a scrypt hash for the
        # history, if it is not ready), under the lock; the recorder times the store's side.
        self._password_seconds = 0.0
        self._issuing, self._issued_here = threading.Lock(), threading.local()

    def run(self, run_plan_id: str, changes: Sequence[Change]) -> list[Result]:
        """Applies the changes, each directory's in plan order, the directories side by side, round by round.

        Returns the results round by round, by directory in the plan's order of directories. A directory
        whose worker raised stops there (what it sent unanswered stays `started`, for the next run to
        settle) and takes no part in later rounds; the others run to their end, then the first such
        exception is raised here.
        """
        began, self.recorder.seconds, self.recorder.cpu, self._password_seconds = time.perf_counter(), 0.0, 0.0, 0.0
        journal = self.store.journal_states(run_plan_id)
        # Keys of accounts created earlier in this journal, for later phases' (and rounds') changes.
        keys: dict[str, dict[tuple[str, str], str]] = {c.directory: {} for c in changes}
        for change in changes:
            entry = journal.get(change.change_id)
            if entry and entry.key and change.person_id and change.action in (Action.CREATE, Action.ADOPT):
                keys[change.directory][(change.directory, change.person_id)] = entry.key
        results: list[Result] = []
        raised: dict[str, BaseException] = {}
        for by_directory in rounds(changes, list(self.connectors)):
            going = {d: in_directory for d, in_directory in by_directory.items() if d not in raised}
            # One directory gets a worker thread too: its outcomes then share commits (`handover.Writer`).
            if going:
                results += self._side_by_side(run_plan_id, going, journal, keys, raised)
        if changes:
            timing_log.debug(json.dumps({
                "event": "apply-timing", "changes": len(changes), "seconds": round(time.perf_counter() - began, 3),
                "store_ms_per_change": round(1000 * self.recorder.seconds / len(changes), 4),
                "store_cpu_ms_per_change": round(1000 * self.recorder.cpu / len(changes), 4),
                "password_seconds": round(self._password_seconds, 3)}))
        for directory in keys:  # the first in the plan's order of directories
            if directory in raised:
                raise raised[directory]
        return results

    def _side_by_side(self, run_plan_id: str, by_directory: Mapping[str, list[Change]],
                      journal: Mapping[str, JournalEntry], keys: Mapping[str, dict[tuple[str, str], str]],
                      raised: dict[str, BaseException]) -> list[Result]:
        """A thread per directory sends and reads answers; this thread does all store work (`handover`).

        What a directory's worker raised goes into `raised` (that directory stops; the caller raises it)."""
        writer = Writer(self.store.transaction)  # outcomes queued up meanwhile commit together
        done: dict[str, list[Result]] = {}
        store_seconds, store_cpu = self.recorder.seconds, self.recorder.cpu  # the earlier rounds'

        def sender(directory: str, in_directory: list[Change]) -> Callable[[], None]:
            def work() -> None:
                try:
                    done[directory] = self._run_directory(run_plan_id, directory, in_directory, journal,
                                                          keys[directory], writer)
                except Stopped:
                    pass  # the store failed: the workers send nothing more; what they sent stays `started`
                except BaseException as error:  # this directory stops; the others go on
                    raised[directory] = error
            return work

        try:
            beside_the_store(self.store, writer, {d: sender(d, c) for d, c in by_directory.items()}, "apply")
        finally:
            self.recorder.seconds = store_seconds + writer.busy  # the groups' commits included
            self.recorder.cpu = store_cpu + writer.busy_cpu
        return [r for directory in by_directory for r in done.get(directory, [])]

    def _run_directory(self, run_plan_id: str, directory: str, changes: list[Change],
                       journal: Mapping[str, JournalEntry], keys: dict[tuple[str, str], str],
                       writer: Handover) -> list[Result]:
        """One directory's changes of a round, phase after phase (a worker thread's work, or this thread's)."""
        connector = self.connectors[directory]
        results: list[Result] = []
        began, waited, issued = time.perf_counter(), writer.waited(), self._issued_here_seconds()
        for _, batch in groupby(changes, key=phase):
            results.extend(self._run_batch(run_plan_id, connector, list(batch), journal, keys, writer))
        took, issued = time.perf_counter() - began, self._issued_here_seconds() - issued
        timing_log.debug(json.dumps({"event": "directory-timing", "directory": directory, "changes": len(changes),
                                    "seconds": round(took, 3), "password_seconds": round(issued, 3),
                                    "connector_seconds": round(took - (writer.waited() - waited) - issued, 3)}))
        return results

    def _issued_here_seconds(self) -> float:
        return float(getattr(self._issued_here, "seconds", 0.0))

    def _run_batch(self, run_plan_id: str, connector: Connector, batch: list[Change],
                   journal: Mapping[str, JournalEntry], keys: dict[tuple[str, str], str],
                   writer: Handover) -> list[Result]:
        """One phase of one directory. Runs on the directory's thread: every store write goes to `writer`."""
        results: list[Result] = []
        ready: list[tuple[Change, Change]] = []  # (as planned, as it will be sent)
        for change in batch:
            screened = self._screen(run_plan_id, connector, change, journal, keys, writer)
            if isinstance(screened, Result):
                results.append(screened)
            else:
                ready.append((change, screened))
        for chunk in sending_chunks(ready, self._needs_password):
            # The chunk's passwords only now: the issuer draws them ahead meanwhile (`passwords.ahead`).
            chunk = [(planned, self._with_password(resolved)) for planned, resolved in chunk]
            results += self._send(run_plan_id, connector, chunk, journal, keys, writer)
        return results

    def _screen(self, run_plan_id: str, connector: Connector, change: Change, journal: Mapping[str, JournalEntry],
                keys: Mapping[tuple[str, str], str], writer: Handover) -> Change | Result:
        """The change as it will be sent, or its Result if it is not to be sent (done, no account, privileged)."""
        entry = journal.get(change.change_id)
        if entry is not None and entry.state in _DONE:
            return Result(change.change_id, Outcome(entry.state), "done in an earlier attempt", key=entry.key)
        resolved = self._resolve(change, keys)
        if resolved is None:
            result = Result(change.change_id, Outcome.FAILED,
                            f"the account for {change.username} was not created, so this was not attempted")
            writer.post(self.recorder.record, run_plan_id, change, change, result, None)
            return result
        refusal = _privileged_refusal(connector, resolved)
        if refusal:
            result = Result(change.change_id, Outcome.FAILED, refusal)
            writer.post(self.recorder.record, run_plan_id, change, resolved, result, resolved.target)
            return result
        return resolved

    def _needs_password(self, change: Change) -> bool:
        return change.action in (Action.CREATE, Action.SET_PASSWORD) and change.password is None \
            and self.password_for is not None

    def _with_password(self, change: Change) -> Change:
        """The change with its new password, issued once per person, whichever directory asks first."""
        if not self._needs_password(change):
            return change
        assert self.password_for is not None
        asked = time.perf_counter()
        with self._issuing:
            issuing, change = time.perf_counter(), replace(change, password=self.password_for(change))
            self._password_seconds += time.perf_counter() - issuing
        self._issued_here.seconds = self._issued_here_seconds() + time.perf_counter() - asked
        return change

    def _send(self, run_plan_id: str, connector: Connector, ready: list[tuple[Change, Change]],
              journal: Mapping[str, JournalEntry], keys: dict[tuple[str, str], str],
              writer: Handover) -> list[Result]:
        """Writes ahead, sends, and hands over each outcome as the connector yields it."""
        results: list[Result] = []
        # Started in an earlier attempt of this same journal (a saved plan applied again after a kill):
        # the directory answering "already so" for one of these is our own earlier write landing.
        earlier = {c.change_id for c, _ in ready
                   if journal.get(c.change_id) is not None and journal[c.change_id].state == "started"}
        # Committed before anything is sent; the worker waits for it.
        sending, owed_here = writer.call(self.recorder.start, run_plan_id, ready, earlier)
        originals = {item.change_id: planned for (planned, _), item in zip(ready, sending, strict=True)}
        sent = {item.change_id: item for item in sending}
        try:
            for result in connector.apply(sending):
                if result.change_id not in originals:
                    continue
                planned = originals.pop(result.change_id)
                mapped = replace(result, change_id=planned.change_id)
                if planned.person_id and mapped.key and planned.action in (Action.CREATE, Action.ADOPT):
                    keys[(planned.directory, planned.person_id)] = mapped.key
                writer.post(self.recorder.record, run_plan_id, planned, sent[result.change_id], mapped,
                            self._target(planned, keys), earlier=planned.change_id in earlier,
                            owed=(planned.directory, planned.change_id) in owed_here)
                results.append(mapped)
        except ConnectorError as error:
            # The batch could not go on (e.g. the directory went away): what was not answered failed,
            # and the next run plans it afresh from a new snapshot.
            for item_id, planned in originals.items():
                result = failed_result(planned, error)
                writer.post(self.recorder.record, run_plan_id, planned, sent[item_id], result,
                            self._target(planned, keys), owed=(planned.directory, planned.change_id) in owed_here)
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
