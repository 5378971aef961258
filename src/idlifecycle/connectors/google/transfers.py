"""Leavers' data before a delete: the Data Transfer API, through the connector's signed-in session.

When `transfer_to` is set, the DELETE of a leaver first makes sure one transfer of their Drive and
Calendar data to that account exists (listed by the leaver's id; started only when there is none, so
never a second), and is sent only once Google says the transfer has completed. Which answer means
what is in `requests.after_transfer`; this module only asks Google.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from googleapiclient.discovery import build as build_service

from idlifecycle.connectors.base import ConnectorError
from idlifecycle.connectors.google import requests as build
from idlifecycle.connectors.google.session import Session


class DataTransfers:
    """The Data Transfer API for one run: application ids and the new owner's id are read once."""

    def __init__(self, session: Session, new_owner_email: str) -> None:
        self.session, self.new_owner_email = session, new_owner_email
        # Built as the Directory service is: the bundled discovery document, the configured endpoint.
        service = build_service("admin", "datatransfer_v1", http=session.http, static_discovery=True,
                                client_options={"api_endpoint": session.options.api_endpoint})
        self.applications, self.transfers = service.applications(), service.transfers()
        self._application_ids: dict[str, str] | None = None
        self._new_owner: str | None = None

    def application_ids(self) -> dict[str, str]:
        if self._application_ids is None:
            listed = list(self.session.pages(self.applications.list, "applications"))
            self._application_ids = build.application_ids(listed)
        return self._application_ids

    def new_owner(self) -> str:
        """transfer_to's Google id (the API names owners by id, not address)."""
        if self._new_owner is None:
            user = self.session.get_user(self.new_owner_email, "id")
            if user is None:
                raise ConnectorError(f"transfer_to = {self.new_owner_email!r} is not a user of this Google "
                                     "Workspace, so leavers' data has nowhere to go; the delete was not sent")
            self._new_owner = str(user["id"])
        return self._new_owner

    def find(self, old_owner: str) -> Mapping[str, Any] | None:
        listed = list(self.session.pages(self.transfers.list, "dataTransfers", oldOwnerUserId=old_owner,
                                         newOwnerUserId=self.new_owner()))
        return build.existing_transfer(listed, old_owner, self.new_owner())

    def ensure(self, old_owner: str) -> Mapping[str, Any]:
        """The transfer of old_owner's data to transfer_to: the one Google has, else one started now."""
        found = self.find(old_owner)
        if found is not None:
            return found
        body = build.transfer_body(old_owner, self.new_owner(), self.application_ids())
        try:
            # Sent once: an unanswered insert may have landed, so the look below comes before any other.
            started: Mapping[str, Any] = self.session.execute(lambda: self.transfers.insert(body=body), attempts=1)
        except ConnectorError:
            found = self.find(old_owner)
            if found is None:
                raise
            return found
        return started

    def before_delete(self, key: str) -> list[build.Request]:
        """The delete when the leaver's transfer has completed; ConnectorError while it runs or when it failed."""
        return build.after_transfer(self.ensure(key), key, self.new_owner_email)
