"""The Google connector's HTTP transport: httplib2, sending each request exactly once.

httplib2 resends a request by itself when its connection drops: `Http._conn_request` loops up to
the module-level `httplib2.RETRIES` (2) times, and on a first `BadStatusLine` (which a connection
closed before the answer raises, as `RemoteDisconnected`) it tries again whatever RETRIES says. When
the first send had landed, the resend meets "already exists" (409) and a create of this run's reads
as "already so". The connector settles a lost answer itself (it looks the object up before sending
again: `batches.BatchWriter.send_batch`), so the transport must not guess: one attempt, and a dropped
connection is the caller's to settle.

A subclass rather than `httplib2.RETRIES = 1`: the global is process-wide (other users of httplib2
in the process keep their resends) and does not stop the BadStatusLine resend anyway.

google-auth-httplib2's AuthorizedHttp, wrapped around this, sends again only after a 401 (up to
`max_refresh_attempts`, refreshing the token first): Google refused that request, so nothing
landed and sending it again is safe. googleapiclient's `execute(num_retries=0)` and
`BatchHttpRequest.execute` call `http.request` once.
"""

from __future__ import annotations

import http.client
import socket
from typing import Any

import httplib2


class OneSendHttp(httplib2.Http):  # type: ignore[misc] # httplib2 ships no type information
    """`httplib2.Http` that makes exactly one attempt per request (see the module's docstring)."""

    def _conn_request(self, conn: Any, request_uri: str, method: str, body: Any, headers: Any) -> tuple[Any, bytes]:
        try:
            if conn.sock is None:
                conn.connect()
            try:
                conn.request(method, request_uri, body, headers)
            except http.client.HTTPException:
                # As httplib2 does on its last try: a server that closed the connection while we
                # sent may still have answered; without a socket there is nothing to read.
                if conn.sock is None:
                    raise
            response = conn.getresponse()
            content = b"" if method == "HEAD" else response.read()
        except socket.gaierror:
            conn.close()
            raise httplib2.ServerNotFoundError(f"Unable to find the server at {conn.host}") from None
        except (OSError, http.client.HTTPException):
            # Timeouts too: the connection is left mid-answer, so it is not used again.
            conn.close()
            raise
        if method == "HEAD":
            conn.close()
        wrapped = httplib2.Response(response)
        if method != "HEAD":
            content = httplib2._decompressContent(wrapped, content, self.limit_kwargs)
        return wrapped, content


__all__ = ["OneSendHttp"]
