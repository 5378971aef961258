"""Leavers' data in Google: with `transfer_to`, a leaver's Drive and Calendar go to that account through
the Data Transfer API before the delete, and the delete is sent only once the transfer has completed.
The real google-api-python-client and google-auth, over HTTP to the emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from idlifecycle.connectors.base import ConnectorContext
from idlifecycle.connectors.google import SCOPES
from idlifecycle.connectors.google.session import DATATRANSFER_SCOPE
from idlifecycle.model import Action, Outcome
from idlifecycle.passwords.generator import throwaway
from idlifecycle.sandbox.google import Fault, GoogleEmulator
from idlifecycle.sandbox.launch import GoogleSandbox
from tests.integration.google_fixtures import ROOT, MemoryCursors, Tenant, change, tenant_fixture  # noqa: F401

ARCHIVE = "archive@school.example"
DRIVE, CALENDAR = "55656082996", "435070579839"


@pytest.fixture(name="leaver")
def leaver_fixture(tenant: Tenant) -> str:
    """A leaver's suspended account in the leavers' org unit, the archive account, and the scope authorised."""
    directory = tenant.emulator.directory
    tenant.emulator.add_service_account(tenant.key, [*SCOPES, DATATRANSFER_SCOPE])
    directory.add_orgunit_path(f"{ROOT}/Leavers")
    directory.add_user(ARCHIVE, "School", "Archive", "Archive-pass-1")
    user = directory.add_user("j.doe@school.example", "Jo", "Doe", "Leaver-pass-1", org_unit=f"{ROOT}/Leavers")
    user["suspended"] = True
    return str(user["id"])


def _delete(tenant: Tenant, key: str) -> Any:
    """One night's delete of the leaver, through a connector built afresh (as each run builds it)."""
    with tenant.connector(transfer_to=ARCHIVE) as google:
        [result] = google.apply([change(Action.DELETE, key, "j.doe")])
    return result


def test_the_delete_follows_a_completed_transfer_of_drive_and_calendar(tenant: Tenant, leaver: str) -> None:
    result = _delete(tenant, leaver)
    assert result.outcome is Outcome.APPLIED, result.detail
    [transfer] = tenant.emulator.data_transfers.transfers.values()
    assert transfer["oldOwnerUserId"] == leaver and transfer["newOwnerUserId"] == tenant.user(ARCHIVE)["id"]
    assert transfer["overallTransferStatusCode"] == "completed"
    assert [(a["applicationId"], a["applicationTransferParams"]) for a in transfer["applicationDataTransfers"]] == [
        (DRIVE, [{"key": "PRIVACY_LEVEL", "value": ["SHARED", "PRIVATE"]}]), (CALENDAR, [])]
    assert tenant.emulator.directory.find_user(leaver) is None and leaver in tenant.emulator.directory.deleted


def test_the_connector_tells_the_review_what_a_delete_hands_on_only_with_transfer_to(tenant: Tenant) -> None:
    with tenant.connector(transfer_to=ARCHIVE) as google:
        assert google.data_kept_at_delete() == (f"Drive and Calendar transferred to {ARCHIVE} before the delete "
                                                "(Gmail is not)")
    with tenant.connector() as google:
        assert google.data_kept_at_delete() == ""


def test_the_delete_waits_while_the_transfer_runs_and_the_next_night_deletes_once_it_completed(
        tenant: Tenant, leaver: str) -> None:
    transfers = tenant.emulator.data_transfers
    transfers.polls_to_complete = 2
    for night in ("started", "inProgress"):
        result = _delete(tenant, leaver)
        assert result.outcome is Outcome.WAITING and result.retryable, night
        assert "the delete waits for Data Transfer" in result.detail and ARCHIVE in result.detail
        assert tenant.user(leaver)["suspended"] is True
    [transfer] = transfers.transfers.values()
    assert transfer["overallTransferStatusCode"] == "inProgress"

    result = _delete(tenant, leaver)
    assert result.outcome is Outcome.APPLIED, result.detail
    assert tenant.emulator.directory.find_user(leaver) is None
    assert transfers.inserted == 1  # three nights, one transfer: never a second


def test_a_failed_transfer_fails_the_delete_and_keeps_the_account(tenant: Tenant, leaver: str) -> None:
    tenant.emulator.data_transfers.fail(leaver)
    result = _delete(tenant, leaver)
    assert result.outcome is Outcome.FAILED and not result.retryable
    [transfer_id] = tenant.emulator.data_transfers.transfers
    assert f"Data Transfer {transfer_id} of {leaver}'s Drive and Calendar to {ARCHIVE} failed" in result.detail
    assert "the account was not deleted (it stays suspended)" in result.detail
    assert tenant.user(leaver)["suspended"] is True
    # The next night looks again and finds the same failed transfer: it neither deletes nor starts another.
    assert _delete(tenant, leaver).outcome is Outcome.FAILED
    assert tenant.emulator.data_transfers.inserted == 1 and tenant.emulator.directory.find_user(leaver) is not None


def test_a_transfer_whose_answer_was_lost_is_found_not_started_again(tenant: Tenant, leaver: str) -> None:
    tenant.emulator.inject(Fault(action="lose_response", method="POST", path="/admin/datatransfer/v1/transfers"))
    result = _delete(tenant, leaver)
    assert result.outcome is Outcome.APPLIED, result.detail
    assert tenant.emulator.data_transfers.inserted == 1
    assert tenant.emulator.directory.find_user(leaver) is None


def test_without_transfer_to_the_delete_sends_no_transfer_and_asks_for_no_datatransfer_scope(
        tenant: Tenant, leaver: str) -> None:
    # Only the Directory scopes authorised: a token request naming the datatransfer scope would be refused.
    tenant.emulator.add_service_account(tenant.key, list(SCOPES))
    with tenant.connector() as google:
        [result] = google.apply([change(Action.DELETE, leaver, "j.doe")])
    assert result.outcome is Outcome.APPLIED, result.detail
    assert tenant.emulator.data_transfers.transfers == {}


def test_transfer_to_naming_no_user_fails_the_delete_with_one_clear_line(tenant: Tenant, leaver: str) -> None:
    with tenant.connector(transfer_to="nobody@school.example") as google:
        [result] = google.apply([change(Action.DELETE, leaver, "j.doe")])
    assert result.outcome is Outcome.FAILED
    assert result.detail == ("transfer_to = 'nobody@school.example' is not a user of this Google Workspace, so "
                             "leavers' data has nowhere to go; the delete was not sent")
    assert tenant.emulator.directory.find_user(leaver) is not None


def test_the_sandbox_tenant_keeps_a_leavers_transfer_from_one_night_to_the_next(tmp_path: Path) -> None:
    """The demo's tenant lives in a state file and a new emulator each night: the transfer must outlive it,
    or the second night would start another one."""
    folder = tmp_path / "state" / "google-sandbox"
    folder.mkdir(parents=True)
    with GoogleEmulator(domains=["staff.example.sch.uk"], state_file=folder / "directory.json",
                        replication_window=0) as seeded:
        seeded.directory.add_orgunit_path("/School/Leavers")
        leaver = str(seeded.directory.add_user("j.doe@staff.example.sch.uk", "Jo", "Doe", "Leaver-pass-1",
                                               org_unit="/School/Leavers")["id"])
        seeded.directory.users[leaver]["suspended"] = True
        seeded.data_transfers.polls_to_complete = 1
        seeded.mark_dirty()
    context = ConnectorContext(
        name="google", type="google-sandbox", source="connectors/google-sandbox.toml", cursors=MemoryCursors(),
        state_dir=tmp_path / "state", password_generator=throwaway,
        options={"admin": "it.admin@staff.example.sch.uk", "domains": {"staff": "staff.example.sch.uk"},
                 "org_unit_root": "/School", "transfer_to": "archive@staff.example.sch.uk"})

    def night() -> Any:
        with GoogleSandbox.from_config(context) as google:
            [result] = google.apply([change(Action.DELETE, leaver, "j.doe")])
        return result, json.loads((folder / "directory.json").read_text())

    first, saved = night()
    assert first.outcome is Outcome.WAITING and "the delete waits for Data Transfer" in first.detail, first.detail
    assert leaver in saved["directory"]["users"]
    [started] = saved["data_transfers"]["transfers"]
    second, saved = night()
    assert second.outcome is Outcome.APPLIED, second.detail
    assert list(saved["data_transfers"]["transfers"]) == [started]  # the same transfer, not a second
    assert saved["data_transfers"]["inserted"] == 1 and leaver not in saved["directory"]["users"]
