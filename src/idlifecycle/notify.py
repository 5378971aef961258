"""Email to people (the SIRO, requesters, account holders): SMTP with STARTTLS, or Microsoft Graph sendMail.

The job's `[mail]` table chooses the transport; passwords and client secrets come from the job's
secrets, never from the TOML. Every header is built through `email.message.EmailMessage` with the
SMTP policy, and names are stripped of control characters first, so a name such as
"Eve\\r\\nBcc: x@evil" can neither add a header nor make the send fail.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from idlifecycle.errors import ConfigError, UserError

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
_EMAIL = re.compile(r"^[^@\s<>\"',;:()\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


class MailJob(Protocol):
    """What the mailer reads from `idlifecycle.job.Job`."""

    @property
    def config(self) -> Any: ...

    @property
    def secrets(self) -> Mapping[str, str]: ...

    def section(self, name: str) -> Mapping[str, Any]: ...


class MailError(UserError):
    """An email could not be sent; the message names the server and what to check (never a secret)."""


def clean_header_text(value: str) -> str:
    """One line of text for a header: control characters (CR, LF, NUL …) become single spaces."""
    return " ".join(_CONTROL.sub(" ", value).split())


def valid_email(value: str) -> bool:
    """A plain `local@domain` address with no display name, comments or control characters."""
    return bool(_EMAIL.match(value)) and len(value) <= 254


class MailSettings(BaseModel):
    """The `[mail]` table of a job file."""

    model_config = ConfigDict(extra="forbid")

    transport: Literal["smtp", "graph"] = "smtp"
    from_address: str
    from_name: str = "idlifecycle"
    smtp_host: str = ""
    smtp_port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls"] = "starttls"
    """starttls: plain connect then STARTTLS (port 587); tls: TLS from the start (port 465)."""
    smtp_username: str = ""
    """Empty for a relay that trusts the server's address; otherwise the secret `smtp_password` is used."""
    ca_file: str = ""
    """An extra CA bundle (PEM) for a relay with a private CA; empty uses the system's trust store."""
    timeout_seconds: float = Field(30, gt=0)
    graph_tenant_id: str = ""
    graph_client_id: str = ""
    graph_sender: str = ""
    """The mailbox that sends (UPN or object id); the app needs Mail.Send limited to it."""
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    graph_authority_host: str = "https://login.microsoftonline.com"


@dataclass(frozen=True)
class Mailer:
    """Sends one message at a time through the configured transport."""

    sender: Address
    transport: Callable[[EmailMessage], None]

    @classmethod
    def from_config(cls, mail: Mapping[str, Any], secrets: Mapping[str, str], *, source: str = "job file") -> Mailer:
        """Build from a `[mail]` table; raise ConfigError naming `source` and `mail.<key>` on bad input."""
        try:
            settings = MailSettings.model_validate(dict(mail))
        except ValidationError as error:
            first = error.errors()[0]
            key = "mail." + ".".join(str(part) for part in first["loc"]) if first["loc"] else "mail"
            raise ConfigError(source, key, first["msg"]) from None
        if not valid_email(settings.from_address):
            raise ConfigError(source, "mail.from_address", f"{settings.from_address!r} is not an email address")
        sender = Address(display_name=clean_header_text(settings.from_name), addr_spec=settings.from_address)
        if settings.transport == "smtp":
            if not settings.smtp_host:
                raise ConfigError(source, "mail.smtp_host", "is required when transport is smtp")
            password = secrets["smtp_password"] if settings.smtp_username else ""
            return cls(sender, SmtpTransport(settings, password))
        for key in ("graph_tenant_id", "graph_client_id", "graph_sender"):
            if not getattr(settings, key):
                raise ConfigError(source, f"mail.{key}", "is required when transport is graph")
        token = msal_token_source(settings, secrets["graph_mail_client_secret"])
        return cls(sender, GraphTransport(settings.graph_base_url, settings.graph_sender, token,
                                          settings.timeout_seconds))

    @classmethod
    def from_job(cls, job: MailJob) -> Mailer | None:
        """The job's mailer, or None when the job file has no `[mail]` table."""
        mail = job.section("mail")
        if not mail:
            return None
        return cls.from_config(mail, job.secrets, source=str(job.config.path))

    def build(self, to: Sequence[str], subject: str, text: str, html: str | None = None,
              to_names: Mapping[str, str] | None = None) -> EmailMessage:
        """The message as it will be sent: one line per header, names encoded (RFC 2047) where needed."""
        if not to:
            raise ValueError("an email needs at least one recipient")
        message = EmailMessage(policy=policy.SMTP)
        message["From"] = self.sender
        recipients = []
        for address in to:
            if not valid_email(address):
                raise MailError(f"cannot send to {address!r}: not an email address")
            name = clean_header_text((to_names or {}).get(address, ""))
            recipients.append(Address(display_name=name, addr_spec=address))
        message["To"] = recipients
        message["Subject"] = clean_header_text(subject)
        message["Message-ID"] = make_msgid(domain=self.sender.domain)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
        return message

    def send(self, to: list[str], subject: str, text: str, html: str | None = None,
             to_names: Mapping[str, str] | None = None) -> None:
        """Send one message to `to` (plain addresses); `to_names` optionally gives display names."""
        self.transport(self.build(to, subject, text, html, to_names))


class SmtpTransport:
    """SMTP submission with STARTTLS (or implicit TLS) and, when a username is set, AUTH."""

    def __init__(self, settings: MailSettings, password: str) -> None:
        self.settings = settings
        self._password = password

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.ca_file or None)

    def __call__(self, message: EmailMessage) -> None:
        s = self.settings
        where = f"{s.smtp_host}:{s.smtp_port}"
        try:
            smtp: smtplib.SMTP
            if s.security == "tls":
                smtp = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=s.timeout_seconds, context=self._tls())
            else:
                smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout_seconds)
            with smtp:
                if s.security == "starttls":
                    smtp.starttls(context=self._tls())
                if s.smtp_username:
                    smtp.login(s.smtp_username, self._password)
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError:
            raise MailError(f"mail server {where} refused the login for {s.smtp_username!r}: "
                            "check mail.smtp_username and the secret smtp_password") from None
        except smtplib.SMTPNotSupportedError:
            raise MailError(f"mail server {where} does not offer STARTTLS or AUTH: check mail.security") from None
        except ssl.SSLError as error:
            raise MailError(f"TLS with mail server {where} failed ({error.reason}): "
                            "check mail.security and mail.ca_file") from None
        except smtplib.SMTPRecipientsRefused as error:
            raise MailError(f"mail server {where} refused the recipients {sorted(error.recipients)}") from None
        except (smtplib.SMTPException, OSError) as error:
            raise MailError(f"could not send mail through {where}: {type(error).__name__}: {error}") from None


def msal_token_source(settings: MailSettings, client_secret: str) -> Callable[[], str]:
    """App-only token for Graph (client credentials), cached by msal between sends."""
    import msal

    app = msal.ConfidentialClientApplication(
        settings.graph_client_id,
        authority=f"{settings.graph_authority_host.rstrip('/')}/{settings.graph_tenant_id}",
        client_credential=client_secret,
    )

    def token() -> str:
        result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
        if "access_token" not in result:
            raise MailError(f"could not sign in to Microsoft Graph to send mail: {result.get('error')}: "
                            "check mail.graph_tenant_id, mail.graph_client_id and the secret graph_mail_client_secret")
        return str(result["access_token"])

    return token


class GraphTransport:
    """`POST /users/{sender}/sendMail`: Graph takes one body, so HTML is sent when there is one."""

    def __init__(self, base_url: str, sender: str, token: Callable[[], str], timeout: float) -> None:
        self.url = f"{base_url.rstrip('/')}/users/{sender}/sendMail"
        self.token = token
        self.timeout = timeout

    def __call__(self, message: EmailMessage) -> None:
        html = message.get_body(preferencelist=("html",))
        text = message.get_body(preferencelist=("plain",))
        part = html or text
        assert part is not None
        recipients = message["To"].addresses
        payload = {
            "message": {
                "subject": str(message["Subject"]),
                "body": {"contentType": "HTML" if html is not None else "Text", "content": part.get_content()},
                "toRecipients": [
                    {"emailAddress": {"address": a.addr_spec, "name": a.display_name or a.addr_spec}}
                    for a in recipients
                ],
            },
            "saveToSentItems": False,
        }
        try:
            response = httpx.post(self.url, json=payload, timeout=self.timeout,
                                  headers={"Authorization": f"Bearer {self.token()}"})
        except httpx.HTTPError as error:
            raise MailError(f"could not reach Microsoft Graph to send mail: {type(error).__name__}") from None
        if response.status_code != 202:
            try:
                detail = response.json().get("error", {}).get("message", "")
            except ValueError:
                detail = ""
            raise MailError(f"Microsoft Graph refused to send mail ({response.status_code} {detail}): "
                            "check the app has Mail.Send for mail.graph_sender")
