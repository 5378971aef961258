"""Creates, exactly once: a new account (or a leaver's restored from the recycle bin), and a new group.

Never duplicated: the SDK's retry is off for batches; after a lost reply or a 5xx the account is
looked up by its anchor (a group by its name) before anything is sent again; a duplicate-UPN
conflict adopts the existing account when it carries the same anchor and is a conflict otherwise.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from idlifecycle.anchors import directory_anchor
from idlifecycle.connectors.entra import requests
from idlifecycle.connectors.entra.graph import BatchRequest, GraphResponse
from idlifecycle.connectors.entra.snapshot import EMPLOYEE_ID_LIMIT
from idlifecycle.connectors.entra.steps import Step, Writes, done, planned
from idlifecycle.model import Change, Outcome, Result


@dataclass(frozen=True)
class Anchors:
    """Who carries which anchor, as the snapshot and the recycle bin read them (for this apply's creates)."""

    users: Mapping[str, str]
    """employeeId -> the account's key."""
    deleted: Mapping[str, str]
    """employeeId -> the deleted account's key."""


def create_account(writes: Writes, change: Change, anchors: Anchors) -> Step:
    """A CREATE: already made (by anchor), owed only its licence, restored from the recycle bin, or sent anew.

    Never resolved to an account outside the scope or holding a role (a break-glass admin carrying a
    starter's employeeId): the starter's groups would be given to it.
    """
    cache, roles = writes.cache, writes.reader.roles
    person_id = requests.person_of(change)
    anchor = directory_anchor(person_id, EMPLOYEE_ID_LIMIT) if person_id else ""
    owed = writes.reader.licence_debt
    assert owed is not None, "apply() loads the licence debt first"
    existing = anchors.users.get(anchor) if anchor else None
    conflict = roles.claimable(cache.users.get(existing)) if existing is not None else ""
    if conflict:
        return done(change, Outcome.FAILED, f"conflict: {conflict} and carries the anchor {anchor}; it is not taken "
                    "as this person's account: remove the employeeId from it, or make this account by hand")
    if existing is not None and existing in owed:
        return _licence_left_over(change, existing, requests.licences_for(str(change.after["login"]), writes.settings),
                                  owed)
    if existing is not None:
        return done(change, Outcome.ALREADY, "an account with this anchor exists", key=existing)
    deleted = anchors.deleted.get(anchor)
    refused = roles.claimable({"id": deleted, **cache.deleted.get(deleted, {})}) if deleted is not None else ""
    if refused:
        return done(change, Outcome.FAILED, f"conflict: the deleted account {refused} carries the anchor {anchor}; "
                    "it is not restored for this person")
    if deleted is not None:
        return planned(writes, change, requests.Send(tuple(requests.restore_requests(change, deleted)),
                                                     "restored from the recycle bin", key=deleted))
    return _NewAccount(writes, change, anchor).step()


class _NewAccount:
    """One POST /users whose reply may be lost: found again by its anchor, or told by Graph's duplicate-UPN answer."""

    def __init__(self, writes: Writes, change: Change, anchor: str) -> None:
        self.writes = writes
        self.change = change
        self.anchor = anchor
        self.login = str(change.after["login"])
        self.requests = requests.create_requests(change, writes.settings, change.password or writes.password())
        self.reply_lost = False
        self.refused_by = ""
        """An account the lookup found with this anchor that may not be taken for it."""

    def step(self) -> Step:
        return Step(self.change, self.requests, self.interpret, uncertain=self.uncertain)

    async def find_by_anchor(self) -> dict[str, Any] | None:
        found = await self.writes.session.lookup(requests.anchor_lookup(self.anchor))
        values = found.body.get("value", []) if found.ok else []
        # Only one of ours is our create landing: an account elsewhere with the anchor is not it.
        reasons = [await self.writes.reader.roles.claimable_now(self.writes.cache, v) for v in values]
        ours = [v for v, why in zip(values, reasons, strict=True) if not why]
        self.refused_by = next((why for why in reasons if why), "")
        return ours[0] if ours else None

    async def uncertain(self, index: int) -> GraphResponse | None:
        if index != 0:
            return None
        self.reply_lost = True
        # A create that did happen may not be listed yet (replication delay): look a few times
        # over a couple of seconds. Should it still be unseen, the create is sent again and
        # Graph's duplicate-UPN answer tells (see `interpret`).
        for attempt in range(3):
            found = await self.find_by_anchor()
            if found is not None:
                return GraphResponse(201, {}, found)
            await asyncio.sleep(0.5 * 2 ** attempt)
        if self.refused_by:
            # Only an account outside the scope or holding a role carries the anchor (given it
            # since the snapshot): never taken, and the create is not sent again, as the plan-time
            # check would have refused it. Had ours landed unseen, the next snapshot finds it.
            return GraphResponse(409, {}, {"error": {"code": "conflict", "message": self.refused_by}})
        return None

    async def interpret(self, replies: list[GraphResponse]) -> Result:
        change, created = self.change, replies[0]
        if self.refused_by and not created.ok:
            return Result(change.change_id, Outcome.FAILED, f"conflict: {self.refused_by} and carries the anchor "
                          f"{self.anchor}; it is not taken as this person's account (the create's reply was lost: "
                          "the next run looks for it again)")
        if created.ok:
            return self._created(str(created.body["id"]), replies[1:])
        if created.status == 400 and "same value for property userPrincipalName" in created.error_message:
            return await self._name_taken()
        return requests.write_failure(change, created)

    def _created(self, key: str, licence_replies: list[GraphResponse]) -> Result:
        self.writes.cache.users[key] = {**self.requests[0].body, "id": key, "passwordProfile": None}
        failed = next((r for r in licence_replies if not r.ok), None)
        if failed is None:
            return Result(self.change.change_id, Outcome.APPLIED, key=key)
        # Not "applied": the account is left out of later snapshots until the licence is on, so
        # the next run plans this create again and assigns it.
        assert self.writes.reader.licence_debt is not None
        self.writes.reader.licence_debt[key] = time.time()
        return Result(self.change.change_id, Outcome.FAILED, "created, but the licence could not be assigned "
                      f"({failed.error_code or failed.status}: {failed.error_message}); the next run assigns it",
                      retryable=True, key=key)

    async def _name_taken(self) -> Result:
        """Graph said the UPN is taken: ours (a lost reply's create landing, or made before), or a conflict."""
        change_id, login = self.change.change_id, self.login
        # Graph just said the UPN is taken: a 404 on reading it is replication lag.
        holder = await self.writes.session.get_replicated(
            f"/users/{quote(login)}?$select=id,employeeId,userPrincipalName")
        refused = await self.writes.reader.roles.claimable_now(self.writes.cache, holder.body) if holder.ok else ""
        if refused:
            return Result(change_id, Outcome.FAILED, f"conflict: {login} is already used: {refused}")
        if holder.ok and holder.body.get("employeeId") == self.anchor:
            if self.reply_lost:  # our own first send made it; its reply was lost
                self.writes.session.note_created(holder.body)
                return Result(change_id, Outcome.APPLIED, key=str(holder.body["id"]))
            return Result(change_id, Outcome.ALREADY, "the account already existed with this anchor",
                          key=str(holder.body["id"]))
        whose = (f"an account with anchor {holder.body.get('employeeId')!r}" if holder.ok and
                 holder.body.get("employeeId") else "an account without an anchor (plan an adopt)"
                 if holder.ok else "a deleted account still in the recycle bin")
        return Result(change_id, Outcome.FAILED, f"conflict: {login} is already used by {whose}")


def _licence_left_over(change: Change, key: str, skus: list[str], owed: dict[str, float]) -> Step:
    """The create an earlier run could not finish: only its licence is still to be assigned."""
    if not skus:
        owed.pop(key, None)
        return done(change, Outcome.ALREADY, "an account with this anchor exists", key=key)

    async def interpret(replies: list[GraphResponse]) -> Result:
        reply = replies[0]
        if reply.ok:
            owed.pop(key, None)
            return Result(change.change_id, Outcome.APPLIED, "licence assigned to the account an earlier run "
                          "created", key=key)
        return Result(change.change_id, Outcome.FAILED, f"the licence could not be assigned "
                      f"({reply.error_code or reply.status}: {reply.error_message})", retryable=True, key=key)

    return Step(change, [BatchRequest("POST", f"/users/{key}/assignLicense", requests.licence_body(skus))], interpret)


def group_key(writes: Writes, name: str) -> tuple[str | None, bool]:
    """(key, managed) of the group with this display name; managed ones win over unmanaged twins."""
    found: tuple[str | None, bool] = (None, False)
    for key, group in writes.cache.groups.items():
        if str(group.get("displayName") or "").lower() == name.lower():
            if writes.reader.managed_group(group):
                return key, True
            found = (key, False)
    return found


def create_group(writes: Writes, change: Change) -> Step:
    """A new security group carrying the marker; after a lost reply it is looked for, never sent twice."""
    name = str(change.group or change.after.get("name"))
    marker = writes.settings.group_marker
    key, managed = group_key(writes, name)
    if key is not None and managed:
        return done(change, Outcome.ALREADY, key=key)
    if key is not None:
        return done(change, Outcome.FAILED, f"conflict: a group named {name!r} exists but is not managed by "
                    f"idlifecycle; add {marker!r} to its description to hand it over")

    async def uncertain(index: int) -> GraphResponse | None:
        # The reply was lost (or a 5xx came back): the group may exist. Display names are not
        # unique and a new group is listed only after replication, so sending the create again
        # on a "not found" could make a twin. Look for a few seconds; if it is still unseen,
        # the create stays undecided until the next run's snapshot shows whether it happened.
        for wait in (0.0, 0.5, 1.0, 2.0):
            await asyncio.sleep(wait)
            found = await writes.session.lookup(requests.group_lookup(name))
            for group in found.body.get("value", []) if found.ok else []:
                if marker.lower() in str(group.get("description") or "").lower():
                    return GraphResponse(201, {}, group)
        return GraphResponse(0, {}, None)  # undecided: see interpret

    async def interpret(replies: list[GraphResponse]) -> Result:
        if replies[0].status == 0:
            return Result(change.change_id, Outcome.FAILED, f"Graph's answer to creating group {name!r} was lost "
                          "and the group is not listed yet; it is not sent again now, so that no twin is made: "
                          "the next run sees whether it was created", retryable=True)
        if replies[0].ok:
            key = str(replies[0].body["id"])
            writes.cache.groups[key] = {"displayName": name, "description": marker, "members": []}
            return Result(change.change_id, Outcome.APPLIED, key=key)
        return requests.write_failure(change, replies[0])

    return Step(change, [BatchRequest("POST", "/groups", requests.group_body(name, marker))], interpret,
                uncertain=uncertain)
