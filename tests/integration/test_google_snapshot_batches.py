"""The Google snapshot reads its lists together: the next page of every list still open travels in one
batch, so its round trips are the longest list's pages, and every part still counts against the quota.
A part Google asks to retry, and a batch whose answer is lost, are read again; nothing is lost or doubled."""

from __future__ import annotations

from typing import Any

import pytest

from idlifecycle.connectors.base import ConnectorError
from idlifecycle.sandbox.google import Fault
from tests.integration.google_fixtures import ROOT, Tenant, tenant_fixture  # noqa: F401

MARKER = "[managed by idlifecycle]"
SIZES = {"all-pupils": 450, "year-7": 250, "7a": 10}
"""Members per managed group: three, two and one pages of 200."""


def _seed(tenant: Tenant) -> dict[str, set[str]]:
    """450 pupils in the managed org unit, three managed groups and one the tool does not manage."""
    directory = tenant.emulator.directory
    directory.add_orgunit_path(f"{ROOT}/Pupils")
    users = [directory.add_user(f"p{n:03d}@pupils.school.example", "Pupil", f"N{n:03d}", "Pupil-pass-1",
                                org_unit=f"{ROOT}/Pupils") for n in range(450)]
    expected: dict[str, set[str]] = {}
    for name, size in SIZES.items():
        status, group = directory.insert_group({"email": f"{name}@school.example", "name": name,
                                                "description": MARKER})
        assert status == 200 and group is not None
        directory.born.pop(group["id"], None)
        for user in users[:size]:
            assert directory.insert_member(group["id"], {"email": user["primaryEmail"]})[0] in (200, 201)
        expected[name] = {str(u["id"]) for u in users[:size]}
    status, other = directory.insert_group({"email": "clubs@school.example", "description": "the PE staff's"})
    assert status == 200 and other is not None
    return expected


def _members(snapshot: Any) -> dict[str, set[str]]:
    return {group.name: set(group.members) for group in snapshot.groups}


def test_the_pages_of_all_lists_travel_together_and_every_part_is_counted(tenant: Tenant) -> None:
    expected = _seed(tenant)
    stats = tenant.emulator.stats
    with tenant.connector() as google:
        requests, calls, batches, tokens = stats.http_requests, stats.calls, stats.batches, stats.tokens_issued
        snapshot = google.snapshot()
        sent = google.calls_sent
    assert _members(snapshot) == expected
    assert len(snapshot.accounts) == 450
    # Calls: org units 2, users 1, groups 1, members 3 + 2 + 1. Round trips: the org units' 2, then
    # users with groups, the three member lists' first pages, the two second pages (batches), and
    # the biggest list's third page alone (a plain call).
    assert stats.calls - calls == 10 and sent == 10
    assert stats.batches - batches == 3
    assert stats.http_requests - requests - (stats.tokens_issued - tokens) == 6


def test_a_part_google_asks_to_retry_is_read_again_and_nothing_is_doubled(tenant: Tenant) -> None:
    expected = _seed(tenant)
    tenant.emulator.inject(Fault(status=503, reason="backendError", path="/members", times=2))
    tenant.emulator.inject(Fault(status=403, reason="quotaExceeded", message="Request rate higher than configured.",
                                 path="/members", times=1))
    with tenant.connector() as google:
        snapshot = google.snapshot()
    assert _members(snapshot) == expected
    assert tenant.emulator.stats.faults_fired >= 3
    assert all(len(group.members) == SIZES[group.name] for group in snapshot.groups)


def test_a_batch_whose_answer_is_lost_is_read_again_whole(tenant: Tenant) -> None:
    expected = _seed(tenant)
    tenant.emulator.inject(Fault(action="lose_response", path="/members", times=1))
    with tenant.connector() as google:
        snapshot = google.snapshot()
    assert _members(snapshot) == expected
    assert tenant.emulator.stats.faults_fired == 1


def test_a_part_refused_for_good_ends_the_read_with_googles_reason(tenant: Tenant) -> None:
    _seed(tenant)
    tenant.emulator.inject(Fault(status=403, reason="forbidden", message="Not Authorized to access this resource/api",
                                 path="/members", times=1))
    with tenant.connector() as google, pytest.raises(ConnectorError, match=r"forbidden|Not Authorized"):
        google.snapshot()


def test_a_snapshot_within_the_burst_is_not_held_back_and_google_refuses_none_of_it(tenant: Tenant) -> None:
    """Ten seconds of a 600-a-minute quota (100 calls) go at once; spread evenly, these ten calls would wait 0.9 s."""
    expected = _seed(tenant)
    tenant.emulator.quota_per_minute = 600
    with tenant.connector(quota_per_minute=600, burst_seconds=10) as google:
        snapshot = google.snapshot()
        waited = google.pacer.waited
    with tenant.connector(quota_per_minute=600, burst_seconds=0) as spread:
        spread.snapshot()
        spread_waited = spread.pacer.waited
    assert _members(snapshot) == expected
    assert waited == 0 and spread_waited >= 0.8
    assert tenant.emulator.stats.rate_limited == 0
