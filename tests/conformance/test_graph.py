"""The Graph emulator held to Microsoft Graph's documented behaviour: one test per rule, each naming its source.

The expected shapes (status, error code, message) are written from the documentation and from
maintainers' answers in bug reports, not from the emulator: this file is the contract the
emulator is held to. Requests go over HTTPS with a token from the emulator's token endpoint, as
any Graph client would send them.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_ID, CLIENT_SECRET, PUPILS

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def _client(emulator: GraphEmulator) -> httpx.Client:
    assert emulator.certificate is not None
    trust = ssl.create_default_context(cafile=str(emulator.certificate.cert))
    token = httpx.post(f"{emulator.authority}/oauth2/v2.0/token", verify=trust, data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "scope": GRAPH_SCOPE}).json()["access_token"]
    return httpx.Client(base_url=emulator.graph_url, verify=trust, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def graph(emulator: GraphEmulator) -> Iterator[httpx.Client]:
    with _client(emulator) as client:
        yield client


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"])
    return dict(body["error"])


def _new_user(name: str, **extra: Any) -> dict[str, Any]:
    return {"accountEnabled": True, "displayName": name.title(), "mailNickname": name,
            "userPrincipalName": f"{name}@{PUPILS}", "passwordProfile": {"password": "Correct-Horse-42"}, **extra}


def test_batch_mixing_a_depends_on_chain_with_independent_requests_is_refused_whole(
        emulator: GraphEmulator, graph: httpx.Client) -> None:
    """A $batch must be "either fully sequential or fully parallel"; a mixed one is a 400 for the whole batch.

    Sources: https://learn.microsoft.com/en-us/graph/json-batching (Sequencing requests with the
    dependsOn property) and https://github.com/microsoftgraph/microsoft-graph-docs/issues/16280
    ("400 Bad Request: Batch should be either fully sequential or fully parallel", confirmed and
    the documentation's example fixed).
    """
    amy = emulator.directory.user(f"23abrown@{PUPILS}")["id"]
    mixed = {"requests": [
        {"id": "1", "method": "PATCH", "url": f"/users/{amy}", "body": {"accountEnabled": False},
         "headers": {"Content-Type": "application/json"}},
        {"id": "2", "method": "POST", "url": f"/users/{amy}/revokeSignInSessions", "dependsOn": ["1"]},
        {"id": "3", "method": "GET", "url": "/users?$top=1"},
    ]}

    reply = graph.post("/$batch", json=mixed)

    assert reply.status_code == 400
    error = _error(reply)
    assert error["code"] == "BadRequest"
    assert error["message"] == "Batch should be either fully sequential or fully parallel."
    assert emulator.directory.user(amy)["accountEnabled"] is True  # nothing in it ran

    sequential = {"requests": mixed["requests"][:2]}
    parallel = {"requests": [mixed["requests"][0], mixed["requests"][2]]}
    assert [r["status"] for r in graph.post("/$batch", json=sequential).json()["responses"]] == [204, 200]
    assert sorted(r["status"] for r in graph.post("/$batch", json=parallel).json()["responses"]) == [200, 204]
