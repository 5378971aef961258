"""The Admin SDK Data Transfer API, as the Google emulator serves it beside the Directory API.

applications.list, and transfers.insert / get / list with the documented DataTransfer resource
(developers.google.com/workspace/admin/data-transfer/reference/rest/v1/transfers): id, oldOwnerUserId,
newOwnerUserId, applicationDataTransfers[{applicationId, applicationTransferParams,
applicationTransferStatus}], overallTransferStatusCode, requestTime. A transfer is "new" when
inserted, "inProgress" once it has been looked at, and "completed" after `polls_to_complete` looks
(0: completed at once); one whose leaver is in `fail_for` ends "failed" instead. They are kept in
the tenant's state file with the directory. Owners are user ids of
the tenant: an id Google does not know is refused (400), as is an application it does not offer.
The scope check (admin.datatransfer, 403 without it) is the emulator's, from the discovery document.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from googleapiclient.discovery_cache import get_static_doc

from idlifecycle.sandbox.google_directory import Answer, Directory, google_error

API_PREFIX = "/admin/datatransfer/v1/"

APPLICATIONS = (
    {"id": "55656082996", "name": "Drive and Docs",
     "transferParams": [{"key": "PRIVACY_LEVEL", "value": ["PRIVATE", "SHARED"]}]},
    {"id": "435070579839", "name": "Calendar", "transferParams": [{"key": "RELEASE_RESOURCES", "value": ["TRUE"]}]},
)
"""What applications.list offers a school: Google's own ids for Drive and Calendar (the same for
every customer; the Transfer parameters page names their parameters)."""

Handler = Callable[[Mapping[str, str], Mapping[str, Any]], Answer]


def method_scopes() -> dict[str, frozenset[str]]:
    """"datatransfer.resource.method" -> the scopes the API accepts for it, from the bundled discovery document."""
    document = json.loads(get_static_doc("admin", "datatransfer_v1") or "{}")
    return {f"datatransfer.{resource}.{method}": frozenset(spec.get("scopes", ()))
            for resource, body in document["resources"].items() for method, spec in body.get("methods", {}).items()}


def _bad_request(message: str) -> Answer:
    return 400, google_error(400, message, "invalid")


@dataclass
class DataTransfers:
    """The tenant's transfers, and how a test steers them."""

    directory: Directory
    polls_to_complete: int = 0
    """Looks (get or list) a transfer takes to complete after it is inserted; 0: completed when inserted."""
    fail_for: set[str] = field(default_factory=set)
    """Old owners' user ids whose transfers end "failed" rather than "completed"."""
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    polls: dict[str, int] = field(default_factory=dict)
    inserted: int = 0
    """transfers.insert calls that made a transfer, for tests: a leaver's data is transferred once."""

    def route(self, method: str, path: str) -> tuple[str, Handler] | None:
        parts = path[len(API_PREFIX):].split("/")
        if parts == ["applications"] and method == "GET":
            return "datatransfer.applications.list", lambda p, b: (200, self.list_applications())
        if parts == ["transfers"]:
            return {"GET": ("datatransfer.transfers.list", lambda p, b: self.list_transfers(p)),
                    "POST": ("datatransfer.transfers.insert", lambda p, b: self.insert(b))}.get(method)
        if len(parts) == 2 and parts[0] == "transfers" and method == "GET":
            return "datatransfer.transfers.get", lambda p, b: self.get(parts[1])
        return None

    def list_applications(self) -> dict[str, Any]:
        return {"kind": "admin#datatransfer#applicationsList",
                "applications": [{"kind": "admin#datatransfer#ApplicationResource", **a} for a in APPLICATIONS]}

    def insert(self, body: Mapping[str, Any]) -> Answer:
        for role in ("oldOwnerUserId", "newOwnerUserId"):
            user_id = str(body.get(role, ""))
            if user_id not in self.directory.users:
                # Owners are named by id; an address, or an id Google does not know, is refused.
                return _bad_request(f"Invalid value for {role}: {user_id!r} is not a user id of this customer")
        if body["oldOwnerUserId"] == body["newOwnerUserId"]:
            return _bad_request("The old and new owners of a transfer must be different users")
        offered = {a["id"] for a in APPLICATIONS}
        asked = list(body.get("applicationDataTransfers") or [])
        if not asked or any(str(a.get("applicationId")) not in offered for a in asked):
            return _bad_request("applicationDataTransfers must name applications from applications.list")
        transfer_id = "AKrEtIY" + secrets.token_urlsafe(24)
        self.transfers[transfer_id] = {
            "kind": "admin#datatransfer#DataTransfer", "id": transfer_id,
            "oldOwnerUserId": body["oldOwnerUserId"], "newOwnerUserId": body["newOwnerUserId"],
            "applicationDataTransfers": [
                {"applicationId": str(a["applicationId"]),
                 "applicationTransferParams": list(a.get("applicationTransferParams") or []),
                 "applicationTransferStatus": "pending"} for a in asked],
            "overallTransferStatusCode": "new",
            "requestTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}
        self.polls[transfer_id] = 0
        self.inserted += 1
        if self.polls_to_complete == 0:
            self._finish(transfer_id)
        return 200, dict(self.transfers[transfer_id])

    def get(self, transfer_id: str) -> Answer:
        if transfer_id not in self.transfers:
            return 404, google_error(404, "Resource Not Found: transferId", "notFound")
        return 200, self._looked_at(transfer_id)

    def list_transfers(self, params: Mapping[str, str]) -> Answer:
        wanted = {k: params[k] for k in ("oldOwnerUserId", "newOwnerUserId") if params.get(k)}
        found = [self._looked_at(t) for t, transfer in list(self.transfers.items())
                 if all(transfer[k] == v for k, v in wanted.items())]
        if params.get("status"):
            found = [t for t in found if t["overallTransferStatusCode"] == params["status"]]
        return 200, {"kind": "admin#datatransfer#dataTransfersList", "dataTransfers": found}

    def to_json(self) -> dict[str, Any]:
        return {"polls_to_complete": self.polls_to_complete, "fail_for": sorted(self.fail_for),
                "transfers": self.transfers, "polls": self.polls, "inserted": self.inserted}

    @classmethod
    def from_json(cls, directory: Directory, data: Mapping[str, Any]) -> DataTransfers:
        """Kept in the tenant's state file: a leaver's transfer outlives the night that started it, as at Google."""
        return cls(directory, int(data.get("polls_to_complete", 0)), set(data.get("fail_for", ())),
                   dict(data.get("transfers", {})), dict(data.get("polls", {})), int(data.get("inserted", 0)))

    def fail(self, old_owner: str) -> None:
        """Make old_owner's transfers end failed (one already running fails at its next look)."""
        self.fail_for.add(old_owner)

    def _looked_at(self, transfer_id: str) -> dict[str, Any]:
        transfer = self.transfers[transfer_id]
        if transfer["overallTransferStatusCode"] in ("new", "inProgress"):
            self.polls[transfer_id] += 1
            if self.polls[transfer_id] >= self.polls_to_complete or transfer["oldOwnerUserId"] in self.fail_for:
                self._finish(transfer_id)
            else:
                self._set(transfer, "inProgress")
        return dict(transfer)

    def _finish(self, transfer_id: str) -> None:
        transfer = self.transfers[transfer_id]
        self._set(transfer, "failed" if transfer["oldOwnerUserId"] in self.fail_for else "completed")

    @staticmethod
    def _set(transfer: dict[str, Any], status: str) -> None:
        transfer["overallTransferStatusCode"] = status
        for application in transfer["applicationDataTransfers"]:
            application["applicationTransferStatus"] = status
