"""Person ids longer than employeeId holds (GUID sourcedIds) against the Graph emulator.

Graph's employeeId holds at most 16 characters (https://learn.microsoft.com/en-us/graph/api/resources/user;
the emulator refuses longer values, tests/conformance/test_graph.py). A 36-character OneRoster or SDS
sourcedId is written as its short anchor and read back as the full id (idlifecycle.anchors).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.anchors import directory_anchor
from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_SECRET, PUPILS
from tests.integration.test_entra_job import AMY, CLARA, RORY, by_anchor, night, seed, write_school

AMY_ID = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
RORY_ID = "3b241101-e2bb-4255-8caf-4136c566a962"
CLARA_ID = "9c5b94b1-35ad-49bb-b118-8e8fc24abf80"


def pupils() -> list[list[str]]:
    return [[AMY_ID, *AMY[1:]], [RORY_ID, *RORY[1:]], [CLARA_ID, *CLARA[1:]]]


def test_guid_person_ids_are_anchored_by_their_short_anchor_and_read_back_whole(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = make_emulator(seed())
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    clara_key = emulator.directory.user(f"coswald@{PUPILS}")["id"]
    job_file = write_school(tmp_path, emulator, pupils())

    report, snap = night(job_file, date(2026, 9, 3))
    assert report.status == "ok", report.failures
    people = by_anchor(snap)
    assert set(people) == {AMY_ID, RORY_ID, CLARA_ID, "JDO"}
    assert people[CLARA_ID].key == clara_key  # adopted by its address, anchored by the short form
    for person_id in (AMY_ID, RORY_ID, CLARA_ID):
        stored = emulator.directory.user(people[person_id].key)
        assert stored["employeeId"] == directory_anchor(person_id, 16)
        assert len(stored["employeeId"]) == 16 and stored["employeeId"].startswith("#")
        assert stored["onPremisesExtensionAttributes"]["extensionAttribute15"] == person_id
    assert emulator.directory.user(people["JDO"].key)["employeeId"] == "JDO"  # an id that fits is kept as it is

    report, _ = night(job_file, date(2026, 9, 4))
    assert report.status == "nothing-to-do", [f"{c.action} {c.username}" for c in report.plan.changes]

    rory_left = [RORY_ID, *RORY[1:9], "05/09/2026", ""]
    write_school(tmp_path, emulator, [[AMY_ID, *AMY[1:]], rory_left, [CLARA_ID, *CLARA[1:]]])
    report, snap = night(job_file, date(2026, 9, 10))
    assert report.status == "ok", report.failures
    assert [(c.action.value, c.person_id) for c in report.plan.changes if c.action.value == "disable"] == [
        ("disable", RORY_ID)]
    assert not by_anchor(snap)[RORY_ID].enabled and by_anchor(snap)[AMY_ID].enabled


def test_without_the_extension_attribute_the_job_resolves_short_anchors_from_the_ids_it_knows(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = make_emulator(seed())
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    job_file = write_school(tmp_path, emulator, pupils(), full_id_attribute="")

    report, snap = night(job_file, date(2026, 9, 3))
    assert report.status == "ok", report.failures
    short = {a.anchor for a in snap.accounts if a.anchor and a.anchor.startswith("#")}
    assert short == {directory_anchor(p, 16) for p in (AMY_ID, RORY_ID, CLARA_ID)}
    assert all("onPremisesExtensionAttributes" not in emulator.directory.user(a.key)
               for a in snap.accounts if a.anchor in short)
    # Night 2: were the short anchors not resolved, the three would read as unknown accounts and be
    # planned as new starters (and their accounts as leavers).
    report, _ = night(job_file, date(2026, 9, 4))
    assert report.status == "nothing-to-do", [f"{c.action} {c.username}" for c in report.plan.changes]


def test_an_edited_extension_attribute_does_not_move_an_account_to_another_person(
        make_emulator: Callable[..., GraphEmulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = make_emulator(seed())
    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    job_file = write_school(tmp_path, emulator, pupils())
    report, snap = night(job_file, date(2026, 9, 3))
    assert report.status == "ok", report.failures
    amy = by_anchor(snap)[AMY_ID]
    emulator.directory.update_user(amy.key, {"onPremisesExtensionAttributes": {"extensionAttribute15": RORY_ID}})
    _, snap = night(job_file, date(2026, 9, 4))
    anchors = by_anchor(snap)
    assert anchors[RORY_ID].key != amy.key  # the attribute no longer hashes to employeeId: not believed
    assert anchors[directory_anchor(AMY_ID, 16)].key == amy.key  # the connector leaves it short; the job resolves it
