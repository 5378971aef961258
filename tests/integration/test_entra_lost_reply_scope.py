"""A create whose reply is lost is looked up by its anchor: an admin given that anchor since the snapshot
(a break-glass account in an unmanaged domain, or a Global Admin in the managed one) is never taken for
the starter's account, through the nightly job against the Graph emulator (real msgraph-sdk)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from idlifecycle.config import Secrets
from idlifecycle.connectors.entra import EntraConnector
from idlifecycle.job import load_job, run_sync
from idlifecycle.model import Action, Outcome
from idlifecycle.sandbox.graph import Fault, GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_SECRET, STAFF, starter
from tests.integration.test_entra_privileged import groups_of, seed, user, write_school


@dataclass
class AnchorGivenMidRun(Fault):
    """Graph loses the reply to the users' creates; just before, someone gives `admin` Jo New's employeeId.

    The plan-time check has already passed (the snapshot showed no account with the anchor), so
    only the lookup after the lost reply can meet the admin.
    """

    admin: dict[str, Any] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        hit = super().matches(method, path)
        if hit:  # a plain dict write: the emulator's lock is not taken under the fault lock
            self.admin["employeeId"] = "JNE"
        return hit


@pytest.mark.parametrize(("admin_upn", "why"), [
    ("breakglass@example.sch.uk", "breakglass@example.sch.uk is outside the managed domains"),
    (f"gadmin@{STAFF}", f"gadmin@{STAFF} is a privileged account (Global Administrator)"),
])
@pytest.mark.parametrize("landed", [False, True], ids=["unapplied-503", "reset-after-write"])
def test_the_lookup_after_a_lost_create_reply_never_takes_an_admin_carrying_the_anchor(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        admin_upn: str, why: str, landed: bool) -> None:
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    school = seed()
    for row in school["users"]:
        row.pop("employeeId", None)  # nobody carries Jo New's anchor when the night starts
    emulator = make_emulator(school)
    job_file = write_school(tmp_path, emulator)
    before = user(emulator, admin_upn)
    with emulator.directory.lock:
        live = emulator.directory.state["users"][before["id"]]
    # Landed: the create is applied and the connection reset before the reply. Not landed: Graph
    # answers 503 without applying it (a reply that says nothing about whether it happened).
    emulator.faults.append(AnchorGivenMidRun("POST", r"^/v1\.0/users$", mode="drop_after" if landed else "status",
                                             status=503, retry_after=0, admin=live,
                                             times=4))  # the night's 4 creates, sent side by side in one batch

    job = load_job(job_file, today=date(2026, 9, 3), secrets=Secrets())
    try:
        report = run_sync(job)
        audit = [(e.event, e.data) for e in job.store.audit_entries()]
    finally:
        job.close()

    [jo_create] = [c for c in report.plan.changes if c.action is Action.CREATE and c.person_id == "JNE"]
    jo = {r.change_id: r for r in report.results}[jo_create.change_id]
    assert jo.key != before["id"]
    assert user(emulator, admin_upn) == {**before, "employeeId": "JNE"}, "nothing but the colleague's edit"
    assert groups_of(emulator, before["id"]) == []
    with emulator.directory.lock:
        jos = [u for u in emulator.directory.state["users"].values()
               if u.get("employeeId") == "JNE" and u["id"] != before["id"]]
    if landed:
        # Our own create did land: it, not the admin listed before it, is Jo's account, made once.
        assert jo.outcome is Outcome.APPLIED and [u["id"] for u in jos] == [jo.key]
        assert "All Staff" in groups_of(emulator, str(jo.key))
    else:
        # Only the admin carries the anchor: not taken, and not sent again. A 503 says nothing about
        # whether the create landed (it may be listed late), so it is unconfirmed: audited so, left
        # started, and the next night's fresh look settles it.
        assert jo.outcome is Outcome.FAILED and jo.unconfirmed and jo.key is None and jos == []
        assert why in jo.detail and "conflict" in jo.detail and "JNE" in jo.detail, jo.detail
        assert any(event == "change-unconfirmed" and data["person_id"] == "JNE" and why in data["detail"]
                   for event, data in audit), audit
        _next_night_settles_it_without_the_admin(job_file, emulator, admin_upn, before)


def _next_night_settles_it_without_the_admin(job_file: Path, emulator: GraphEmulator, admin_upn: str,
                                             before: dict[str, Any]) -> None:
    """The next night: the create is found not to have landed (the admin carrying the anchor is not it),
    audited so once, and the admin is still untouched and never recorded as Jo's account."""
    job = load_job(job_file, today=date(2026, 9, 4), secrets=Secrets())
    try:
        run_sync(job)
        audit = [(e.event, e.data) for e in job.store.audit_entries()]
        started = job.store.started_changes()
        keys = {row[0] for row in job.store.db.execute("SELECT key FROM accounts WHERE person_id = 'JNE'")}
    finally:
        job.close()
    assert started == []
    settled = [event for event, data in audit if data.get("person_id") == "JNE" and data.get("action") == "create"
               and event in ("change-applied", "change-not-applied")]
    assert settled[:1] == ["change-not-applied"], audit
    assert before["id"] not in keys
    assert user(emulator, admin_upn) == {**before, "employeeId": "JNE"}, "nothing but the colleague's edit"
    assert groups_of(emulator, before["id"]) == []

@pytest.mark.parametrize("through_group", [False, True], ids=["role", "role-assignable-group"])
def test_a_global_admin_made_since_the_snapshot_with_the_starters_login_and_anchor_is_not_taken(
        make_emulator: Callable[..., GraphEmulator], make_connector: Callable[..., EntraConnector],
        through_group: bool) -> None:
    """The create-conflict path: Graph says the UPN is taken, and the holder carries the starter's anchor,
    so it would be "the account already existed". It was made (and given the role) after the snapshot,
    so the snapshot's role map cannot know it: its roles are read again before it is taken."""
    school = seed()
    school["groups"].append({"displayName": "IT Admins", "isAssignableToRole": True, "members": []})
    school["directoryRoles"][0]["members"].append("IT Admins")
    emulator = make_emulator(school)
    entra = make_connector(emulator)
    entra.snapshot()
    with emulator.directory.lock:
        admin = emulator.directory.add_user(userPrincipalName=f"jnew@{STAFF}", displayName="Jo New (admin)",
                                            employeeId="JNW")
        state = emulator.directory.state
        if through_group:
            group = next(g for g in state["groups"].values() if g["displayName"] == "IT Admins")
            group["members"][admin] = True
        else:
            next(r for r in state["roles"].values() if r["displayName"] == "Global Administrator")[
                "members"].append(admin)
    before = user(emulator, f"jnew@{STAFF}")

    [result] = list(entra.apply([starter("JNW", "jnew", "Jo", "New", domain=STAFF)]))

    assert result.outcome is Outcome.FAILED and result.key is None, result
    assert f"jnew@{STAFF} is a privileged account (Global Administrator)" in result.detail, result.detail
    assert user(emulator, f"jnew@{STAFF}") == before
