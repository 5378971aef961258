"""Email transports against real servers on 127.0.0.1: SMTP (aiosmtpd with STARTTLS and AUTH) and a
Graph-shaped sendMail endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from idlifecycle.notify import GraphTransport, Mailer, MailError, SmtpTransport
from tests.integration.access_support import SMTP_PASSWORD, SMTP_USER, Mailbox, mailbox

__all__ = ["mailbox"]


def smtp_settings(box: Mailbox, **overrides: Any) -> dict[str, Any]:
    return {"from_address": SMTP_USER, "from_name": "Oakfield School IT", "smtp_host": "127.0.0.1",
            "smtp_port": box.port, "smtp_username": SMTP_USER, "ca_file": str(box.ca_file), **overrides}


def test_mail_goes_through_starttls_with_a_login_and_carries_text_and_html(mailbox: Mailbox) -> None:
    mailer = Mailer.from_config(smtp_settings(mailbox), {"smtp_password": SMTP_PASSWORD})
    assert isinstance(mailer.transport, SmtpTransport)
    mailer.send(["head@school.example.org"], "Zoë's access request – SEN", "plain words", "<p>html words</p>",
                to_names={"head@school.example.org": "Zoë O'Brien"})
    received = mailbox.wait_for("head@school.example.org", "access request")
    assert str(received.message["Subject"]) == "Zoë's access request – SEN"
    assert received.message["To"].addresses[0].display_name == "Zoë O'Brien"
    assert received.text.strip() == "plain words" and received.html.strip() == "<p>html words</p>"
    assert received.message["Auto-Submitted"] == "auto-generated"


def test_a_wrong_smtp_password_ends_in_one_line_naming_the_setting_not_the_password(mailbox: Mailbox) -> None:
    mailer = Mailer.from_config(smtp_settings(mailbox), {"smtp_password": "wrong-password-1234"})
    with pytest.raises(MailError) as refused:
        mailer.send(["head@school.example.org"], "s", "t")
    assert "refused the login" in str(refused.value) and "smtp_password" in str(refused.value)
    assert "wrong-password-1234" not in str(refused.value)


def test_an_untrusted_certificate_is_refused(mailbox: Mailbox) -> None:
    mailer = Mailer.from_config(smtp_settings(mailbox, ca_file=""), {"smtp_password": SMTP_PASSWORD})
    with pytest.raises(MailError, match="TLS with mail server"):
        mailer.send(["head@school.example.org"], "s", "t")


class GraphMail(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    received: ClassVar[list[tuple[str, str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, self.headers["Authorization"], body))
        status = 202 if self.headers["Authorization"] == "Bearer good-token" else 403
        reply = b"" if status == 202 else json.dumps(
            {"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def graph() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), GraphMail)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    GraphMail.received.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1.0"
    finally:
        server.shutdown()


def graph_mailer(base: str, token: str) -> Mailer:
    mailer = Mailer.from_config({"from_address": "it@school.example.org", "smtp_host": "unused"}, {})
    return Mailer(mailer.sender, GraphTransport(base, "it@school.example.org", lambda: token, 5))


def test_graph_sendmail_posts_the_html_body_to_the_sending_mailbox(graph: str) -> None:
    graph_mailer(graph, "good-token").send(["siro@school.example.org"], "Access request #4", "text", "<p>html</p>",
                                           to_names={"siro@school.example.org": "Dr Ada\r\nBcc: x@evil.example"})
    path, auth, body = GraphMail.received[0]
    assert path == "/v1.0/users/it@school.example.org/sendMail" and auth == "Bearer good-token"
    message = body["message"]
    assert message["subject"] == "Access request #4"
    assert message["body"] == {"contentType": "HTML", "content": "<p>html</p>\n"}
    assert message["toRecipients"] == [{"emailAddress": {"address": "siro@school.example.org",
                                                         "name": "Dr Ada Bcc: x@evil.example"}}]
    assert body["saveToSentItems"] is False


def test_graph_refusing_to_send_names_the_permission_to_check(graph: str) -> None:
    with pytest.raises(MailError, match=r"refused to send mail \(403 Access is denied.\).*Mail.Send"):
        graph_mailer(graph, "bad-token").send(["siro@school.example.org"], "s", "t")
