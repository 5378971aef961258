"""What both emulators' HTTP handlers share: HTTP/1.1 keep-alive, Nagle off, quiet, every verb to one method."""

from __future__ import annotations

from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any


class EmulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without this every answer waits ~40 ms for the client's delayed ACK (FACTS.md section 2).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests and the bench read counters, not access logs."""

    def serve(self, method: str) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self.serve("GET")

    def do_POST(self) -> None:
        self.serve("POST")

    def do_PATCH(self) -> None:
        self.serve("PATCH")

    def do_PUT(self) -> None:
        self.serve("PUT")

    def do_DELETE(self) -> None:
        self.serve("DELETE")

    def send_payload(self, status: int, payload: bytes, headers: Mapping[str, str]) -> None:
        """One whole answer with its Content-Length (the clients keep the connection open)."""
        self.send_response(status)
        for name, value in headers.items():
            if value:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
