"""The Google connector's transport sends each request exactly once, against a real socket on 127.0.0.1.

httplib2's own Http sends a request again by itself when the connection closes before the answer
(measured here too, so the test shows what the subclass is for)."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Iterator

import httplib2
import pytest

from idlifecycle.connectors.google.transport import OneSendHttp

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@contextlib.contextmanager
def server(reply: bytes) -> Iterator[tuple[str, list[bytes]]]:
    """Reads each request on each connection, answers `reply` (b"": nothing) and closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    received: list[bytes] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                received.append(connection.recv(65536))
                if reply:
                    connection.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/batch", received
    finally:
        done.set()
        thread.join(timeout=5)
        listener.close()


def test_an_answer_is_read_as_httplib2_reads_it() -> None:
    with server(OK) as (url, received):
        response, content = OneSendHttp(timeout=5).request(url, "POST", body="{}")
    assert (response.status, response["content-type"], content) == (200, "application/json", b"{}")
    assert len(received) == 1


def test_a_connection_closed_before_the_answer_is_not_sent_again() -> None:
    with server(b"") as (url, received):
        with pytest.raises(http.client.RemoteDisconnected):
            OneSendHttp(timeout=5).request(url, "POST", body="{}")
        assert len(received) == 1
        received.clear()
        # Plain httplib2 sends it again by itself: a write that had landed would meet "already exists".
        with pytest.raises(http.client.RemoteDisconnected):
            httplib2.Http(timeout=5).request(url, "POST", body="{}")
        assert len(received) == 2


def test_a_torn_status_line_is_handed_up_once() -> None:
    with server(b"garbage\r\n\r\n") as (url, received), pytest.raises(http.client.BadStatusLine):
        OneSendHttp(timeout=5).request(url, "POST", body="{}")
    assert len(received) == 1
