"""The Google Directory API emulator held to the service's documented behaviour.

Each test names, in its docstring, the page (or the well-evidenced report) that says how Google
answers; the expected statuses, reasons and bodies are written here from those sources, not read
back from the emulator. The calls go through the real google-api-python-client, as the connector's
do, so what is asserted is what a client sees on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httplib2
import pytest
from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from idlifecycle.connectors.google import SCOPES
from idlifecycle.sandbox.google import CONCURRENT_CALLS_PER_OPERATION, GoogleEmulator
from tests.integration.google_fixtures import ADMIN, Tenant, tenant_fixture  # noqa: F401

PUPILS = "pupils.school.example"


class Clock:
    """The emulator's clock, moved by hand so that "moments after a create" is exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="clock")
def clock_fixture(tenant: Tenant) -> Clock:
    clock = Clock()
    tenant.emulator.directory.clock = clock
    tenant.emulator.directory.replication_window = 5.0
    return clock


def _service(tenant: Tenant) -> Any:
    credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        tenant.key, scopes=list(SCOPES)).with_subject(ADMIN)
    return build("admin", "directory_v1", http=AuthorizedHttp(credentials, http=httplib2.Http(timeout=10)),
                 static_discovery=True, client_options={"api_endpoint": tenant.emulator.url})


def _refused(request: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HttpError) as raised:
        request.execute()
    return raised.value.resp.status, json.loads(raised.value.content)["error"]


def _new_user(service: Any, local: str, **name: str) -> dict[str, Any]:
    body = {"primaryEmail": f"{local}@{PUPILS}", "password": "Correct-Horse-9",
            "name": {"givenName": "Ada", "familyName": "Lovelace", **name}}
    user: dict[str, Any] = service.users().insert(body=body).execute()
    return user


def _one_error(error: dict[str, Any], status: int, *, reason: str, message: str, domain: str = "global") -> None:
    """Google's JSON error body: code, message, and errors[] with message, domain and reason."""
    assert error["code"] == status and error["message"] == message
    assert error["errors"][0] == {"message": message, "domain": domain, "reason": reason}


@pytest.mark.parametrize("mutate", [
    lambda users, key: users.patch(userKey=key, body={"suspended": True}),
    lambda users, key: users.update(userKey=key, body={"changePasswordAtNextLogin": True}),
    lambda users, key: users.signOut(userKey=key),
    lambda users, key: users.delete(userKey=key),
], ids=["patch", "update", "signOut", "delete"])
def test_mutate_calls_moments_after_a_users_create_answer_412_user_creation_is_not_complete(
        tenant: Tenant, clock: Clock, mutate: Callable[[Any, str], Any]) -> None:
    """users.insert: "Mutate calls immediately following user creation might sometimes fail as the
    user isn't fully created due to propagation delay in our backends. Check the error details for
    the 'User creation is not complete' message ... Retrying the calls after some time can help."
    https://developers.google.com/admin-sdk/directory/reference/rest/v1/users/insert (also the
    users.insert description in google-api-python-client's bundled discovery document). The status
    is 412, as clients meet it on delete and update straight after a create; 412's reason in the
    global domain is conditionNotMet: https://cloud.google.com/resource-manager/docs/core_errors"""
    service = _service(tenant)
    user = _new_user(service, "ada.lovelace")
    clock.now += 1
    status, error = _refused(mutate(service.users(), user["id"]))
    assert status == 412
    _one_error(error, 412, reason="conditionNotMet", message="User creation is not complete.")
    # Retrying after some time helps.
    clock.now += 5
    mutate(service.users(), user["id"]).execute()


def test_reading_a_user_moments_after_its_create_can_answer_404_user_key(tenant: Tenant, clock: Clock) -> None:
    """Reads trail the create too: a users.get sent straight after users.insert "returns a 404"
    and works a moment later (https://github.com/hashicorp/terraform-provider-googleworkspace/issues/286,
    also #304 there and https://github.com/lithnet/googleapps-managementagent/issues/80)."""
    service = _service(tenant)
    user = _new_user(service, "ada.lovelace")
    status, error = _refused(service.users().get(userKey=f"ada.lovelace@{PUPILS}"))
    assert status == 404
    _one_error(error, 404, reason="notFound", message="Resource Not Found: userKey")
    clock.now += 5
    assert service.users().get(userKey=f"ada.lovelace@{PUPILS}").execute()["id"] == user["id"]


def test_an_account_that_settled_long_ago_is_not_held_back(tenant: Tenant, clock: Clock) -> None:
    """The propagation delay is about calls "immediately following user creation" only:
    https://developers.google.com/admin-sdk/directory/reference/rest/v1/users/insert"""
    tenant.emulator.directory.add_user(f"old.hand@{PUPILS}", "Old", "Hand", "Settled-Long-Ago-1")
    service = _service(tenant)
    assert service.users().patch(userKey=f"old.hand@{PUPILS}", body={"suspended": True}).execute()["suspended"]


def test_adding_members_to_a_group_made_moments_ago_answers_404_group_key(tenant: Tenant, clock: Clock) -> None:
    """Member adds straight after a group's create answer 404 "Resource Not Found: groupKey" and work
    a moment later: https://github.com/lithnet/googleapps-managementagent/issues/7 and
    https://github.com/hashicorp/terraform-provider-googleworkspace/issues/162 (Google's notFound body:
    https://cloud.google.com/resource-manager/docs/core_errors#NOT_FOUND)."""
    tenant.emulator.directory.add_user(f"old.hand@{PUPILS}", "Old", "Hand", "Settled-Long-Ago-1")
    service = _service(tenant)
    group = service.groups().insert(body={"email": "year7@school.example", "name": "Year 7"}).execute()
    add = service.members().insert(groupKey=group["id"], body={"email": f"old.hand@{PUPILS}", "role": "MEMBER"})
    status, error = _refused(add)
    assert status == 404
    _one_error(error, 404, reason="notFound", message="Resource Not Found: groupKey")
    clock.now += 5
    assert add.execute()["email"] == f"old.hand@{PUPILS}"


def test_adding_a_user_made_moments_ago_to_a_group_answers_404_member_key(tenant: Tenant, clock: Clock) -> None:
    """A member add is a mutate call that references the new user ("Mutate calls immediately
    following user creation might sometimes fail":
    https://developers.google.com/admin-sdk/directory/reference/rest/v1/users/insert); Google answers
    it 404 memberKey for a valid, new address (DeviaVir/terraform-provider-gsuite#90,
    https://github.com/DeviaVir/terraform-provider-gsuite/issues/90)."""
    service = _service(tenant)
    group = service.groups().insert(body={"email": "year7@school.example", "name": "Year 7"}).execute()
    clock.now += 5
    _new_user(service, "ada.lovelace")
    add = service.members().insert(groupKey=group["id"], body={"email": f"ada.lovelace@{PUPILS}"})
    status, error = _refused(add)
    assert status == 404
    _one_error(error, 404, reason="notFound", message="Resource Not Found: memberKey")
    clock.now += 5
    add.execute()


def _batch(tenant: Tenant, requests: list[Any]) -> list[tuple[int, dict[str, Any] | None]]:
    answers: dict[str, tuple[int, dict[str, Any] | None]] = {}

    def settle(request_id: str, body: Any, error: HttpError | None) -> None:
        answers[request_id] = (error.resp.status, json.loads(error.content)["error"]) if error else (200, None)

    batch = BatchHttpRequest(callback=settle, batch_uri=tenant.emulator.batch_uri)
    for number, request in enumerate(requests):
        batch.add(request, request_id=str(number))
    batch.execute()
    return [answers[str(n)] for n in range(len(requests))]


def test_too_many_calls_of_one_operation_at_once_answer_403_quota_exceeded(tenant: Tenant, clock: Clock) -> None:
    """Directory API, Limits and quotas: "403 quotaExceeded: Indicates that the limit of concurrent
    requests for a certain operation has been reached. Retry using exponential back-off."
    https://developers.google.com/admin-sdk/directory/v1/limits. The parts of one batch are
    concurrent requests: GAM met "403: quotaExceeded - Request rate higher than configured." on
    batched member adds (https://github.com/GAM-team/GAM/issues/597)."""
    tenant.emulator.concurrent_limit = 10
    service = _service(tenant)
    users = service.users()
    answers = _batch(tenant, [users.insert(body={"primaryEmail": f"p{n:02d}@{PUPILS}", "password": "Correct-Horse-9",
                                                 "name": {"givenName": "P", "familyName": f"N{n}"}})
                              for n in range(14)])
    assert [status for status, _ in answers] == [200] * 10 + [403] * 4
    error = answers[-1][1]
    assert error is not None
    _one_error(error, 403, reason="quotaExceeded", message="Request rate higher than configured.",
               domain="usageLimits")
    # Other operations are not held to the users.insert count.
    clock.now += 5
    assert [s for s, _ in _batch(tenant, [users.get(userKey=f"p{n:02d}@{PUPILS}") for n in range(3)])] == [200] * 3


@pytest.mark.parametrize(("status", "reason", "message"), [
    (403, "userRateLimitExceeded", "User Rate Limit Exceeded"),
    (429, "rateLimitExceeded", "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' "
                               "of service 'admin.googleapis.com'."),
])
def test_calls_over_the_per_minute_quota_answer_the_documented_rate_limit(
        tenant: Tenant, status: int, reason: str, message: str) -> None:
    """Limits and quotas: "403 userRateLimitExceeded: ... The default value set in the Google Cloud
    console is 2,400 queries per minute per user per Google Cloud project" and "429 rateLimitExceeded
    ... This limit is per Google Workspace account": https://developers.google.com/admin-sdk/directory/v1/limits"""
    emulator = tenant.emulator
    emulator.quota_per_minute, emulator.rate_limit_status = 3, status
    users = _service(tenant).users()
    for _ in range(3):
        users.get(userKey=ADMIN).execute()
    got, error = _refused(users.get(userKey=ADMIN))
    assert got == status
    assert error["code"] == status and error["message"] == message and error["errors"][0]["reason"] == reason


@pytest.mark.parametrize(("name", "refused"), [
    ({"givenName": "A" * 60, "familyName": "B" * 60}, None),
    ({"givenName": "A" * 61}, "Invalid Given/Family Name: GivenName"),
    ({"familyName": "B" * 61}, "Invalid Given/Family Name: FamilyName"),
    ({"displayName": "C" * 256}, None),
    ({"displayName": "C" * 257}, "Invalid Input: displayName"),
], ids=["60-accepted", "given-61", "family-61", "display-256-accepted", "display-257"])
def test_name_parts_are_held_to_their_documented_lengths(tenant: Tenant, name: dict[str, str],
                                                         refused: str | None) -> None:
    """User resource, `name`: "The maximum number of characters in the givenName and in the
    familyName values is 60"; UserName.displayName: "Limit: 256 characters"
    (https://developers.google.com/admin-sdk/directory/reference/rest/v1/users, and the bundled
    discovery document). Both on create and on a later change of the name."""
    service = _service(tenant)
    create = service.users().insert(body={"primaryEmail": f"long.name@{PUPILS}", "password": "Correct-Horse-9",
                                          "name": {"givenName": "Ada", "familyName": "Lovelace", **name}})
    tenant.emulator.directory.add_user(f"settled@{PUPILS}", "Set", "Tled", "Settled-Long-Ago-1")
    rename = service.users().patch(userKey=f"settled@{PUPILS}", body={"name": name})
    if refused is None:
        create.execute()
        rename.execute()
        return
    for request in (create, rename):
        status, error = _refused(request)
        assert status == 400
        _one_error(error, 400, reason="invalid", message=refused)
    assert tenant.emulator.directory.find_user(f"long.name@{PUPILS}") is None


def test_the_rules_are_on_by_default() -> None:
    """The emulator is only as useful as it is strict: a tenant made with no options keeps the
    propagation delay (https://developers.google.com/admin-sdk/directory/reference/rest/v1/users/insert)
    and the concurrency limit (https://developers.google.com/admin-sdk/directory/v1/limits)."""
    with GoogleEmulator() as emulator:
        assert emulator.directory.replication_window > 0
        assert emulator.concurrent_limit == CONCURRENT_CALLS_PER_OPERATION


def test_show_deleted_lists_only_the_deleted_users_paged_with_their_deletion_time(tenant: Tenant) -> None:
    """`users.list(showDeleted="true")` "retrieves the list of deleted users"; a deleted user carries
    `deletionTime`; the list pages through nextPageToken, at most 500 a page.

    Sources: https://developers.google.com/admin-sdk/directory/reference/rest/v1/users/list (showDeleted,
    maxResults, nextPageToken) and https://developers.google.com/admin-sdk/directory/reference/rest/v1/users
    (deletionTime: "The time when the user was deleted").
    """
    directory = tenant.emulator.directory
    for i in range(3):
        directory.add_user(f"gone{i}@{PUPILS}", "Gone", f"Number{i}", "correct-horse-battery")
    directory.add_user(f"stays@{PUPILS}", "Stays", "Here", "correct-horse-battery")
    service = _service(tenant)
    for i in range(3):
        service.users().delete(userKey=f"gone{i}@{PUPILS}").execute()
    found: list[dict[str, Any]] = []
    token = None
    while True:
        page = service.users().list(customer="my_customer", showDeleted="true", maxResults=2,
                                    **({"pageToken": token} if token else {})).execute()
        found.extend(page.get("users", []))
        token = page.get("nextPageToken")
        if not token:
            break
    assert sorted(u["primaryEmail"] for u in found) == [f"gone{i}@{PUPILS}" for i in range(3)]
    assert all(u.get("deletionTime") for u in found)
    live = service.users().list(customer="my_customer", maxResults=500).execute()["users"]
    assert f"stays@{PUPILS}" in {u["primaryEmail"] for u in live}
    assert not {u["primaryEmail"] for u in live} & {u["primaryEmail"] for u in found}


# -- the Data Transfer API (leavers' data) --

DATA_TRANSFER_INSERT = "https://developers.google.com/workspace/admin/data-transfer/reference/rest/v1/transfers/insert"
DATATRANSFER_SCOPE = "https://www.googleapis.com/auth/admin.datatransfer"


def _transfers(tenant: Tenant, scopes: list[str]) -> Any:
    credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        tenant.key, scopes=scopes).with_subject(ADMIN)
    return build("admin", "datatransfer_v1", http=AuthorizedHttp(credentials, http=httplib2.Http(timeout=10)),
                 static_discovery=True, client_options={"api_endpoint": tenant.emulator.url})


@pytest.fixture(name="owners")
def owners_fixture(tenant: Tenant) -> tuple[str, str]:
    tenant.emulator.add_service_account(tenant.key, [*SCOPES, DATATRANSFER_SCOPE])
    directory = tenant.emulator.directory
    old = directory.add_user("leaver@school.example", "Lee", "Ver", "Leaver-pass-1")
    new = directory.add_user("archive@school.example", "School", "Archive", "Archive-pass-1")
    return str(old["id"]), str(new["id"])


def test_a_transfer_is_the_documented_data_transfer_resource_and_is_listed_by_old_owner(
        tenant: Tenant, owners: tuple[str, str]) -> None:
    """transfers.insert answers "a newly created instance of DataTransfer" with id, oldOwnerUserId,
    newOwnerUserId, applicationDataTransfers[{applicationId, applicationTransferParams,
    applicationTransferStatus}], overallTransferStatusCode, kind, etag and requestTime (the REST
    resource: https://developers.google.com/workspace/admin/data-transfer/reference/rest/v1/transfers,
    insert: DATA_TRANSFER_INSERT); applications.list gives Drive and Docs 55656082996 and Calendar
    435070579839 (https://developers.google.com/workspace/admin/data-transfer/v1/parameters); transfers.list
    filters by oldOwnerUserId (.../rest/v1/transfers/list)."""
    old, new = owners
    service = _transfers(tenant, [DATATRANSFER_SCOPE])
    applications = service.applications().list().execute()["applications"]
    assert {(a["id"], a["name"]) for a in applications} >= {("55656082996", "Drive and Docs"),
                                                            ("435070579839", "Calendar")}
    body = {"oldOwnerUserId": old, "newOwnerUserId": new, "applicationDataTransfers": [
        {"applicationId": "55656082996", "applicationTransferParams": [{"key": "PRIVACY_LEVEL",
                                                                        "value": ["SHARED", "PRIVATE"]}]}]}
    transfer = service.transfers().insert(body=body).execute()
    assert {"kind", "id", "oldOwnerUserId", "newOwnerUserId", "applicationDataTransfers",
            "overallTransferStatusCode", "requestTime"} <= set(transfer)
    assert transfer["kind"] == "admin#datatransfer#DataTransfer"
    assert (transfer["oldOwnerUserId"], transfer["newOwnerUserId"]) == (old, new)
    [drive] = transfer["applicationDataTransfers"]
    assert drive["applicationId"] == "55656082996" and "applicationTransferStatus" in drive
    assert service.transfers().get(dataTransferId=transfer["id"]).execute()["id"] == transfer["id"]
    listed = service.transfers().list(oldOwnerUserId=old).execute()["dataTransfers"]
    assert [t["id"] for t in listed] == [transfer["id"]]
    assert service.transfers().list(oldOwnerUserId=new).execute().get("dataTransfers", []) == []


@pytest.mark.parametrize("role", ["oldOwnerUserId", "newOwnerUserId"])
def test_a_transfer_naming_an_owner_google_does_not_know_is_refused_400(
        tenant: Tenant, owners: tuple[str, str], role: str) -> None:
    """Owners are user ids ("ID of the user whose data is being transferred", "ID of the user to whom
    the data is being transferred": DATA_TRANSFER_INSERT's DataTransfer resource), and "the user
    receiving the data must belong to your domain" (https://developers.google.com/workspace/admin/data-transfer);
    a request naming another is a bad request, 400 (Google's pages name no reason; the global domain's
    is "invalid": https://cloud.google.com/resource-manager/docs/core_errors)."""
    old, new = owners
    body = {"oldOwnerUserId": old, "newOwnerUserId": new, role: "leaver@school.example",
            "applicationDataTransfers": [{"applicationId": "435070579839"}]}
    status, error = _refused(_transfers(tenant, [DATATRANSFER_SCOPE]).transfers().insert(body=body))
    assert status == 400 and error["errors"][0]["reason"] == "invalid"
    assert tenant.emulator.data_transfers.transfers == {}


def test_the_data_transfer_api_without_its_scope_is_refused_403(tenant: Tenant, owners: tuple[str, str]) -> None:
    """Every transfers and applications method needs admin.datatransfer (or, for reads, its
    .readonly): DATA_TRANSFER_INSERT, "Authorization scopes"; a token without it is 403
    "Request had insufficient authentication scopes." (insufficientPermissions,
    https://cloud.google.com/resource-manager/docs/core_errors#FORBIDDEN)."""
    service = _transfers(tenant, list(SCOPES))
    status, error = _refused(service.transfers().list(oldOwnerUserId=owners[0]))
    assert status == 403 and error["errors"][0]["reason"] == "insufficientPermissions"
