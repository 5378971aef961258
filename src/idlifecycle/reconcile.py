"""Settling what an interrupted piece of work started and never recorded, against fresh snapshots.

The executor writes each change `started` before sending it (see `executor`); a run killed before
the outcome was recorded leaves that row. The next run, holding the job lock, reads the directories
afresh and settles each such row here before planning: `shown_done` says from a snapshot whether the
change landed, and `reconcile_started` records it, exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping

from idlifecycle.dormant import is_dormant_disable
from idlifecycle.model import Action, Change, Outcome, Snapshot
from idlifecycle.store import Store


def shown_done(change: Change, snapshot: Snapshot) -> tuple[bool | None, str | None]:
    """Whether a directory's snapshot shows the change made (and the new object's key); None: it cannot say.

    A password set or a session revoked leaves nothing a snapshot shows; an account outside the
    managed scope cannot be looked at.
    """
    after = change.after
    if change.action is Action.CREATE:
        anchor = after.get("anchor") or change.person_id
        # A privileged account given the anchor since (a colleague's edit) is never taken for ours.
        found = next((a for a in snapshot.accounts if a.anchor == anchor and not a.privileged), None)
        return found is not None, None if found is None else found.key
    if change.action in (Action.CREATE_GROUP, Action.ADD_MEMBER, Action.REMOVE_MEMBER):
        name = str(change.group or "").lower()
        group = next((g for g in snapshot.groups if g.name.lower() == name), None)
        if change.action is Action.CREATE_GROUP:
            return group is not None, None if group is None else group.key
        if group is None:
            return change.action is Action.REMOVE_MEMBER, None
        return (change.target in group.members) == (change.action is Action.ADD_MEMBER), None
    accounts = {a.key: a for a in snapshot.accounts}
    if change.action is Action.DELETE:
        return change.target not in accounts, None
    account = accounts.get(str(change.target))
    if account is None or change.action in (Action.SET_PASSWORD, Action.REVOKE_SESSIONS):
        return None, None
    if change.action is Action.ADOPT:
        return account.anchor == after.get("anchor"), account.key
    if change.action in (Action.ENABLE, Action.DISABLE):
        return account.enabled == (change.action is Action.ENABLE), None
    if change.action is Action.RENAME:
        return account.username.lower() == str(after.get("username", "")).lower(), None
    if change.action is Action.MOVE:
        return account.container == after.get("container"), None
    if change.action is Action.REQUIRE_PASSWORD_CHANGE:
        return account.must_change_password, None
    if change.action is Action.UPDATE:
        fields = account.__dict__
        for name, value in after.items():
            if name == "attributes" and isinstance(value, Mapping):
                if any(account.attributes.get(k) != v for k, v in value.items()):
                    return False, None
            elif name not in fields:
                return None, None
            elif fields[name] != value:
                return False, None
        return True, None
    return None, None


def _complete(store: Store, sent: Change, pid: str, key: str | None, done: bool | None) -> None:
    """What the store keeps about a change an interrupted run sent, now that the directory shows its outcome."""
    if sent.action is Action.DISABLE and done is not None:
        store.settle_disable(sent.directory, pid, landed=done)
        if is_dormant_disable(sent):
            store.settle_dormant(sent.directory, pid, landed=done)
    if not done:
        return
    if sent.action in (Action.CREATE, Action.ADOPT) and key is not None:
        store.record_account(sent.directory, pid, key, sent.username)
        store.record_username(sent.username, pid)
    elif sent.action is Action.RENAME:
        store.record_username(str(sent.after["username"]), pid)
    elif sent.action is Action.ENABLE:
        store.mark_disabled(sent.directory, pid, None)
    elif sent.action is Action.DELETE:
        store.forget_account(sent.directory, pid)


def reconcile_started(store: Store, snapshots: Mapping[str, Snapshot], *, found_by: str, actor: str) -> int:
    """Settles every change an interrupted run (or apply, reset, approval) started and never recorded.

    Called holding the job lock with fresh snapshots, before planning. Each such change was sent, or
    about to be; the directory now says whether it landed. One that did is audited `change-applied`
    once, attributed to the work that sent it (its journal), and what the store keeps about it is
    completed (the account's key, the disable date written ahead as pending; so is any pending disable
    date of a disable that failed, by whether the account is disabled now). One that did not is
    audited `change-not-applied`, and the plan made next does it afresh. A password set cannot be
    seen: `change-outcome-unknown`, and its delivery stays owed, so a fresh one is set and delivered.
    Returns how many were settled.
    """
    settled = 0
    for started in store.started_changes():
        sent = Change.from_json(started.change)
        snapshot = snapshots.get(sent.directory)
        if snapshot is None:
            continue  # a directory not configured any more: left as it is
        planned_id = started.change_id
        done, key = shown_done(sent, snapshot)
        pid = sent.person_id
        if done:
            state, event = str(Outcome.APPLIED), "change-applied"
            detail = f"applied before {started.journal_id} was interrupted; found done by {found_by}"
        elif done is None:
            state, event = "unknown", "change-outcome-unknown"
            detail = f"{started.journal_id} was interrupted; the directory cannot show whether this landed"
        else:
            state, event = "not-applied", "change-not-applied"
            detail = f"{started.journal_id} was interrupted before this was applied; {found_by} plans afresh"
        with store.transaction():
            store.journal(started.journal_id, planned_id, sent.directory, sent.action, pid, sent.username,
                          state, detail, key)
            if pid is not None:
                _complete(store, sent, pid, key, done)
            if pid is not None and sent.action is Action.CREATE and done is False:
                store.settle_password(pid, [sent.directory])  # no account: its password reached nobody's account
            body = {**started.change, "target": sent.target or key, "detail": detail, "journal": started.journal_id}
            store.audit(event, body, actor=actor)
        settled += 1
    # A disable that failed (or whose answer was lost) may still have landed: its date was kept pending.
    for directory, pid, key in store.pending_disables():
        snapshot = snapshots.get(directory)
        account = None if snapshot is None else next((a for a in snapshot.accounts if a.key == key), None)
        if account is not None:
            with store.transaction():
                store.settle_disable(directory, pid, landed=not account.enabled)
                store.settle_dormant(directory, pid, landed=not account.enabled)
    return settled
