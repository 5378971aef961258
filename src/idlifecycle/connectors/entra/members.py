"""Group membership: adds 20 members per PATCH (`members@odata.bind`), removals one `$ref` DELETE each.

A PATCH Graph refuses (someone added one of them meanwhile, or one vanished) is redone member by
member, and only those answers count for its changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from idlifecycle.connectors.entra import requests
from idlifecycle.connectors.entra.creates import group_key
from idlifecycle.connectors.entra.graph import GraphResponse
from idlifecycle.connectors.entra.steps import Emit, Step, Writes, run_steps
from idlifecycle.model import Action, Change, Outcome, Result

MEMBERS_PER_PATCH = 20


async def apply_membership(writes: Writes, changes: Sequence[Change], emit: Emit) -> None:
    """Every ADD_MEMBER and REMOVE_MEMBER of one apply, each Result emitted as it is decided."""
    phase = _Membership(writes)
    for change in changes:
        phase.sort(change)
    chains = [[step] for step in phase.add_steps()]
    for result in phase.results.values():
        emit(result)

    def emit_unless_redone(result: Result) -> None:
        if result.change_id not in phase.redone:
            emit(result)

    await run_steps(writes, chains + [[step] for step in phase.removals], emit_unless_redone)
    if phase.one_by_one:
        # A rejected PATCH (someone added one of them meanwhile, or one vanished) is redone member by member.
        await run_steps(writes, [[phase.add_one(k, c, lost)] for k, c, lost in phase.one_by_one], emit)


class _Membership:
    def __init__(self, writes: Writes) -> None:
        self.writes = writes
        self.cache = writes.cache
        self.results: dict[str, Result] = {}
        """Changes decided by the directory as read."""
        self.adds: dict[str, list[Change]] = {}
        """Group key -> the adds to send."""
        self.removals: list[Step] = []
        self.members_of: dict[str, set[str]] = {}
        self.one_by_one: list[tuple[str, Change, bool]] = []
        self.redone: set[str] = set()
        """Adds whose PATCH was refused and that are sent again one by one: their first answer is not theirs."""

    def decide(self, change: Change, outcome: Outcome, detail: str = "") -> None:
        self.results[change.change_id] = Result(change.change_id, outcome, detail)

    def sort(self, change: Change) -> None:
        """Decide a change from the directory as read, or queue it to be sent."""
        name = str(change.group)
        key, managed = group_key(self.writes, name)
        member = str(change.target or "")
        if key is None:
            return self.decide(change, Outcome.FAILED, f"group {name!r} does not exist")
        if not managed:
            return self.decide(change, Outcome.FAILED, f"group {name!r} is not managed by idlifecycle (its "
                               f"description lacks {self.writes.settings.group_marker!r})")
        present = member in self.members_of.setdefault(key, set(self.cache.groups[key]["members"]))
        if change.action is Action.ADD_MEMBER:
            if present:
                self.decide(change, Outcome.ALREADY)
            elif member not in self.cache.users and member not in self.cache.groups:
                self.decide(change, Outcome.FAILED, f"account {member} does not exist in Entra ID")
            else:
                self.adds.setdefault(key, []).append(change)
        elif not present:
            self.decide(change, Outcome.ALREADY)
        else:
            self.removals.append(self.remove(key, change))
        return None

    def add_steps(self) -> list[Step]:
        """The PATCHes of 20 adds each; a second add of the same member to a group is ALREADY."""
        steps: list[Step] = []
        for key, group_changes in self.adds.items():
            unique = list({str(c.target): c for c in group_changes}.values())
            kept = {c.change_id for c in unique}
            for duplicate in group_changes:
                if duplicate.change_id not in kept:
                    self.decide(duplicate, Outcome.ALREADY)
            for start in range(0, len(unique), MEMBERS_PER_PATCH):
                steps.append(self.add_many(key, unique[start:start + MEMBERS_PER_PATCH]))
        return steps

    def add_many(self, key: str, changes: list[Change]) -> Step:
        async def interpret(replies: list[GraphResponse]) -> Result:
            reply = replies[0]
            if reply.status in (400, 404):
                # After a lost reply, "already exist" may be this PATCH's own first send landing.
                self.one_by_one.extend((key, c, bool(step.lost)) for c in changes)
                self.redone.update(c.change_id for c in changes)
                results = [Result(c.change_id, Outcome.FAILED, "retried one by one", retryable=True) for c in changes]
            elif reply.ok:
                # Appended, not re-sorted: only accounts not yet in the group were sent, and sorting
                # 10,000 members after each of a September intake's PATCHes held up the sends.
                self.cache.groups[key]["members"].extend(str(c.target) for c in changes)
                results = [Result(c.change_id, Outcome.APPLIED) for c in changes]
            else:
                results = [requests.write_failure(c, reply) for c in changes]
            step.extra.update({r.change_id: r for r in results[1:]})
            return results[0]

        request = requests.add_members(self.writes.session.graph_url, key, [str(c.target) for c in changes])
        step = Step(changes[0], [request], interpret, carries=tuple(c.change_id for c in changes[1:]))
        return step

    def add_one(self, key: str, change: Change, after_lost: bool = False) -> Step:
        async def interpret(replies: list[GraphResponse]) -> Result:
            reply = replies[0]
            if reply.ok:
                self._now_member(key, str(change.target))
                return Result(change.change_id, Outcome.APPLIED)
            if reply.status == 400 and "already exist" in reply.error_message:
                if after_lost or step.lost:  # not a member when planned; our own unanswered add landed
                    self._now_member(key, str(change.target))
                    return Result(change.change_id, Outcome.APPLIED, "applied; the reply to it was lost")
                return Result(change.change_id, Outcome.ALREADY)
            if reply.status == 404:
                return Result(change.change_id, Outcome.FAILED, f"account {change.target} no longer exists")
            # After the PATCH carrying it went unanswered, that PATCH may have added it: the next run looks.
            return replace(requests.write_failure(change, reply), unconfirmed=after_lost)

        step = Step(change, [requests.add_member(self.writes.session.graph_url, key, str(change.target))], interpret)
        return step

    def _now_member(self, key: str, member: str) -> None:
        self.cache.groups[key]["members"] = sorted({*self.cache.groups[key]["members"], member})

    def remove(self, key: str, change: Change) -> Step:
        async def interpret(replies: list[GraphResponse]) -> Result:
            reply = replies[0]
            if reply.ok or reply.status == 404:
                self.cache.groups[key]["members"] = [m for m in self.cache.groups[key]["members"]
                                                     if m != change.target]
                # A member when planned: gone after our own unanswered removal is that removal landing.
                applied = reply.ok or bool(step.lost)
                return Result(change.change_id, Outcome.APPLIED if applied else Outcome.ALREADY)
            return requests.write_failure(change, reply)

        step = Step(change, [requests.remove_member(key, str(change.target))], interpret)
        return step
