"""Sending changes to Google in multipart batches, and settling each call's answer.

Changes go in waves: the parts of a Google batch run in any order, so a change that writes what
another in the wave writes or relies on waits for the next wave (`locks`). A wave's calls are sent
in batches of at most `batch_size` (fewer once Google has said quotaExceeded, its limit on concurrent
calls: batches shrink to what it took), paced under the per-minute quota; rate limits, 429 and 5xx
are sent again after a back-off, and a 404 or "User creation is not complete" about an object this
run created moments ago is waited out (`replication_wait`). Each change's Result is yielded as soon
as its calls are settled, batch by batch, not when the wave ends.

An answer lost on the way (a dropped connection, a timeout) may hide a write that landed: inserts
are looked up before being sent again, and "already so" to a later send is that send landing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from googleapiclient.errors import HttpError

from idlifecycle.connectors.base import ConnectorError, failed_result
from idlifecycle.connectors.google.listing import WholeBatchRetry, send_parts
from idlifecycle.connectors.google.requests import ANCHOR_TYPE, INSERTS, Request, already_so
from idlifecycle.connectors.google.session import (
    MAX_ATTEMPTS,
    TRANSPORT_ERRORS,
    Answer,
    Session,
    Verdict,
    backoff,
    read_error,
    settle_delay,
)
from idlifecycle.connectors.google.snapshot import USER_FIELDS, ScopeReader, admin_role
from idlifecycle.model import Action, Change, Outcome, Result


@dataclass
class Call:
    """One Directory API call made for one change, and what has become of it."""

    request: Request
    attempts: int = 0
    done: bool = False
    outcome: Outcome | None = None
    detail: str = ""
    retryable: bool = False
    key: str | None = None
    settling: bool = False
    """Sent again because of the propagation delay: does not use up an attempt."""
    settling_since: float | None = None
    lost: bool = False
    """An earlier send's answer was lost: "already so" to a later send is that send landing (APPLIED)."""
    unconfirmed: bool = False
    """Given up on after a send whose answer was lost: it may have landed (see Result.unconfirmed)."""

    def settle(self, outcome: Outcome, detail: str = "", *, retryable: bool = False) -> None:
        self.done, self.outcome, self.detail, self.retryable = True, outcome, detail, retryable


@dataclass
class Pending:
    change: Change
    calls: list[Call] = field(default_factory=list)
    result: Result | None = None


def locks(change: Change) -> tuple[set[str], set[str]]:
    """What a change writes and what it only relies on. The parts of a Google batch run in any
    order, so a change that writes what another in the same batch writes or relies on (a user
    renamed while added to a group, a group created while filled) waits for the next batch."""
    group = "group:" + str(change.group).lower()
    if change.action is Action.CREATE_GROUP:
        return {group}, set()
    if change.action in (Action.ADD_MEMBER, Action.REMOVE_MEMBER):
        return set(), {group, "user:" + str(change.target)}
    if change.action is Action.CREATE:
        return {"login:" + str(change.after.get("login", "")).lower()}, set()
    return {"user:" + str(change.target)}, set()


class BatchWriter:
    """Applies changes through a Session, reading what it must through the ScopeReader."""

    def __init__(self, session: Session, reader: ScopeReader, requests_for: Callable[[Change], list[Request]]) -> None:
        self.session, self.reader, self.requests_for = session, reader, requests_for
        self.options = session.options
        self.batch_cap = session.options.batch_size
        """Largest batch Google has taken without quotaExceeded (its concurrency limit) this run."""

    def apply(self, changes: Sequence[Change]) -> Iterator[Result]:
        wave: list[Pending] = []
        exclusive: set[str] = set()
        shared: set[str] = set()
        for change in changes:
            mine, reads = locks(change)
            if wave and (mine & (exclusive | shared) or reads & exclusive):
                yield from self._apply_wave(wave)
                wave, exclusive, shared = [], set(), set()
            wave.append(Pending(change))
            exclusive |= mine
            shared |= reads
        if wave:
            yield from self._apply_wave(wave)

    def _apply_wave(self, wave: list[Pending]) -> Iterator[Result]:
        for item in wave:
            if self.session.stopped:
                item.result = failed_result(item.change, self.session.stopped, retryable=True)
                continue
            try:
                item.calls = [Call(request) for request in self.requests_for(item.change)]
            except ConnectorError as error:
                item.result = failed_result(item.change, error)
                continue
            if not item.calls:
                item.result = Result(item.change.change_id, Outcome.ALREADY, "nothing to change in Google")
        for item in wave:
            if item.result is not None:
                yield item.result
        waiting = [item for item in wave if item.result is None]
        for _ in self._run([call for item in waiting for call in item.calls]):
            # After each batch: the changes whose calls are all settled go to the caller now.
            settled = [item for item in waiting if all(c.done for c in item.calls)]
            waiting = [item for item in waiting if not all(c.done for c in item.calls)]
            for item in settled:
                yield self._result(item)
        for item in waiting:
            yield self._result(item)

    def _result(self, item: Pending) -> Result:
        change_id = item.change.change_id
        stopped = self.session.stopped
        failed = next((c for c in item.calls if c.outcome is Outcome.FAILED or c.outcome is None), None)
        if failed is not None:
            detail = failed.detail or stopped or "not sent"
            # Given up on with a send unanswered, failed after an earlier send's answer was lost (the tries
            # ran out, or Google refused the resend), or after some of its calls landed: it may have
            # landed, so the next run's look settles it (and audits it, once, if it did).
            unconfirmed = any(c.unconfirmed for c in item.calls) or failed.lost or (
                stopped is not None and detail == stopped and any(c.outcome is Outcome.APPLIED for c in item.calls))
            return Result(change_id, Outcome.FAILED, detail, retryable=failed.retryable or failed.outcome is None,
                          unconfirmed=unconfirmed)
        key = next((c.key for c in item.calls if c.key), None)
        if item.change.action is Action.CREATE_GROUP and key and self.reader.groups is not None:
            self.reader.groups[str(item.change.group).lower()] = key
        if all(c.outcome is Outcome.ALREADY for c in item.calls):
            return Result(change_id, Outcome.ALREADY, item.calls[0].detail, key=key)
        return Result(change_id, Outcome.APPLIED, key=key)

    def _run(self, calls: list[Call]) -> Iterator[None]:
        """Send calls in batches until each is settled, retrying what Google says is transient.

        Yields after each batch, so that what it settled is recorded before the next is sent.
        """
        attempt = 0
        todo = calls
        while todo and not self.session.given_up():
            retry: list[Call] = []
            start = 0
            while start < len(todo) and not self.session.given_up():
                # The cap can shrink during the pass, when Google says quotaExceeded.
                chunk = todo[start:start + self.batch_cap]
                start += len(chunk)
                retry.extend(self.send_batch(chunk))
                yield
            todo = [c for c in retry if not c.done]
            for call in todo:
                if call.settling:
                    continue
                call.attempts += 1
                if call.attempts >= MAX_ATTEMPTS:
                    call.settle(Outcome.FAILED, call.detail or "Google kept asking to slow down; try again later",
                                retryable=True)
            todo = [c for c in todo if not c.done]
            if todo and not self.session.stopped:
                # Only objects still propagating: short, growing waits; otherwise Google asked to back off.
                waiting = all(c.settling for c in todo)
                time.sleep(settle_delay(attempt) if waiting else backoff(attempt))
                attempt += 1
        for call in calls:
            if not call.done and self.session.stopped:
                call.settle(Outcome.FAILED, self.session.stopped, retryable=True)
                call.unconfirmed = call.lost

    def send_batch(self, chunk: list[Call]) -> list[Call]:
        """One batch; returns the calls to send again."""
        try:
            answers = send_parts(self.session, [self.session.prepare(call.request) for call in chunk])
        except WholeBatchRetry:
            return chunk
        except TRANSPORT_ERRORS as error:
            if isinstance(error, ConnectionRefusedError):
                return chunk  # refused at connect: nothing was sent, so nothing can have landed
            return self._after_lost_answer(chunk)
        return self._read_answers(chunk, answers)

    def _after_lost_answer(self, chunk: list[Call]) -> list[Call]:
        """The answer was lost: the writes may or may not have happened. Inserts are looked up
        before being sent again; every other call is safe to repeat (patches set values, 409 on a
        member and 404 on a delete then mean this send landed). A lookup that cannot be made leaves
        only its own insert to be sent again (a duplicate answer tells)."""
        again: list[Call] = []
        for call in chunk:
            call.lost = True
            try:
                settled = self._settle_lost_insert(call)
            except ConnectorError:
                settled = False
            if not settled:
                again.append(call)
        return again

    def _read_answers(self, chunk: list[Call], answers: Mapping[str, tuple[Any, HttpError | None]]) -> list[Call]:
        retry: list[Call] = []
        concurrency_refused = 0
        for number, call in enumerate(chunk):
            body, failure = answers.get(str(number), (None, None))
            call.settling = False
            if failure is None:
                self._settle_ok(call, body)
                continue
            answer = read_error(failure.resp.status, failure.content)
            verdict = answer.verdict
            if verdict is Verdict.NOT_FOUND and self.session.propagating(call.request.refs):
                verdict = Verdict.NOT_YET
            if verdict is Verdict.RETRY:
                self.session.rate_limited += answer.status in (403, 429)
                concurrency_refused += answer.reason == "quotaExceeded"
                call.detail = f"Google answered {answer.status} {answer.reason}"
                retry.append(call)
            elif verdict is Verdict.NOT_YET:
                self._wait_for_propagation(call, answer, retry)
            elif verdict is Verdict.STOP and answer.reason == "dailyLimitExceeded":
                self.session.stopped = str(self.session.refused(answer))
                retry.append(call)
            elif verdict is Verdict.STOP:
                raise self.session.refused(answer)
            else:
                self._settle_refused(call, verdict, f"Google answered {answer.status} {answer.reason}: "
                                                    f"{answer.message}")
        if concurrency_refused:
            # quotaExceeded is Google's limit on concurrent calls for one operation (the limits
            # page): the parts it took are what it will take at once, so later batches hold no more.
            taken = len(chunk) - concurrency_refused
            self.batch_cap = max(1, min(self.batch_cap, taken if taken > 0 else len(chunk) // 2))
        return retry

    def _wait_for_propagation(self, call: Call, answer: Answer, retry: list[Call]) -> None:
        """Send the call again shortly, unless Google has been propagating for longer than replication_wait."""
        now = time.monotonic()
        born = self.session.born
        since = min([born[r] for r in call.request.refs if r in born] or [call.settling_since or now])
        call.settling_since = call.settling_since or now
        if now - since < self.options.replication_wait:
            call.settling = True
            call.detail = f"Google answered {answer.status} {answer.reason}: {answer.message}"
            self.session.settling_retries += 1
            retry.append(call)
            return
        call.settle(Outcome.FAILED, f"Google was still finishing the account or group created moments before "
                                    f"({answer.status} {answer.message}) after {self.options.replication_wait:g} s; "
                                    "the next run tries again", retryable=True)

    def _settle_ok(self, call: Call, body: Any) -> None:
        call.settle(Outcome.APPLIED)
        # Google acted on the objects this call names: they have propagated, so from now on a 404
        # about them means what it says (e.g. a user this run created and then deleted).
        for ref in call.request.refs:
            self.session.born.pop(ref, None)
        if call.request.kind in INSERTS and isinstance(body, Mapping):
            call.key = str(body.get("id"))
            self.session.note_created(call.key, call.request.lookup)
            if call.request.kind == "insert-user":
                self.reader.emails[call.key] = call.request.lookup

    def _settle_refused(self, call: Call, verdict: Verdict, detail: str) -> None:
        call.settle(Outcome.FAILED, detail)
        if already := already_so(call.request.kind, verdict.value):
            call.outcome, call.detail = Outcome.ALREADY, already
        elif verdict is Verdict.CONFLICT and call.request.kind in INSERTS:
            try:
                self._adopt_existing(call)
            except ConnectorError as error:  # the read that tells whose it is failed: this change only
                call.settle(Outcome.FAILED, str(error), retryable=error.retryable)
        if call.lost and call.outcome is Outcome.ALREADY:
            # Not so when planned; sent, its answer lost, sent again: this run's own write landed.
            call.outcome, call.detail = Outcome.APPLIED, ""

    def _settle_lost_insert(self, call: Call) -> bool:
        """True when a lost insert turns out to have happened (settled); False to send it again."""
        if call.request.kind not in INSERTS or call.done:
            return call.done
        lookup, users, groups = call.request.lookup, self.session.users, self.session.groups
        found = self.session.execute(lambda: (users.get(userKey=lookup, fields=USER_FIELDS)
                                              if call.request.kind == "insert-user" else
                                              groups.get(groupKey=lookup)), missing_ok=True)
        if found is None:
            return False
        call.done = True
        self._adopt_existing(call)
        if call.outcome is Outcome.ALREADY:
            call.outcome, call.detail = Outcome.APPLIED, ""
        return True

    def _adopt_existing(self, call: Call) -> None:
        """After a duplicate: the object is ours (an earlier, unanswered attempt) only if it carries our mark."""
        if call.request.kind == "insert-user":
            self._adopt_existing_user(call)
            return
        lookup = call.request.lookup
        group = self.session.execute(lambda: self.session.groups.get(groupKey=lookup), missing_ok=True)
        marker = self.options.managed_group_marker
        if group is not None and marker in str(group.get("description", "")):
            call.outcome, call.key, call.detail = Outcome.ALREADY, str(group["id"]), "already created"
            self.session.note_created(call.key, lookup)
            return
        call.outcome = Outcome.FAILED
        call.detail = (f"the group address {lookup} is already in use by a group or user this tool does "
                       f"not manage (no {marker!r} in its description)")

    def _adopt_existing_user(self, call: Call) -> None:
        # Google says the address is taken; a read may still miss the holder if it was made
        # moments ago (by an earlier attempt of ours whose answer was lost): wait it out.
        session, lookup = self.session, call.request.lookup
        user = session.execute(lambda: session.users.get(userKey=lookup, fields=USER_FIELDS), missing_ok=True)
        if user is None and session.execute(lambda: session.groups.get(groupKey=lookup, fields="id"),
                                            missing_ok=True) is None:
            session.note_created(lookup)
            user = session.get_user(lookup, USER_FIELDS)
        ids = [str(e.get("value")) for e in (user or {}).get("externalIds", []) or [] if e.get("type") == ANCHOR_TYPE]
        if user is not None and (self.reader.container(str(user.get("orgUnitPath", "/"))) is None or admin_role(user)):
            # Ours only if it is in the managed org units and holds no admin role, whatever it carries.
            where = admin_role(user) or f"in {user.get('orgUnitPath')}, outside {self.options.org_unit_root}"
            call.outcome = Outcome.FAILED
            call.detail = f"conflict: {lookup} is already taken by an account that is {where}; not taken over"
            return
        if user is not None and str(user["primaryEmail"]).lower() == lookup.lower() and call.request.anchor in ids:
            call.outcome, call.key, call.detail = Outcome.ALREADY, str(user["id"]), "already created"
            self.reader.emails[call.key] = lookup
            # Made by an earlier attempt of this run whose answer was lost: just as new.
            session.note_created(call.key, lookup)
            return
        holder = "an alias of another account" if user and str(user["primaryEmail"]).lower() != lookup.lower() \
            else f"an account with anchor {', '.join(ids) or 'none'}"
        call.outcome = Outcome.FAILED
        call.detail = (f"{lookup} is already taken by {holder}; not taken over. Choose another name "
                       "or adopt that account explicitly")
