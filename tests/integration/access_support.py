"""Real parts for the access tests: an SMTP server (aiosmtpd, STARTTLS + AUTH), a school job on a Samba
DC, and the approval app served by uvicorn on 127.0.0.1.

Import into a test module: `from tests.integration.access_support import mailbox` (a fixture) and the helpers.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from idlifecycle.access.service import Access
from idlifecycle.job import Job, load_job
from idlifecycle.model import Action, Change, Kind
from idlifecycle.reports.access_review import RESTRICTED
from idlifecycle.web.app import create_app
from tests.integration.samba import DomainController

SMTP_USER = "idlifecycle@school.example.org"
SMTP_PASSWORD = "smtp-test-password"  # a throw-away test server's password
SIGNING_KEY = "test-signing-key-0123456789-abcdefghijklmnopqrstuvwxyz"
SIRO = "siro@school.example.org"
REQUESTER = "office@school.example.org"


def smtp_mail_table(mailbox: Mailbox) -> str:
    """A job file's [mail] table sending through the test's SMTP server (STARTTLS, its CA, SMTP_USER)."""
    return f"""
[mail]
transport = "smtp"
from_address = "{SMTP_USER}"
smtp_host = "127.0.0.1"
smtp_port = {mailbox.port}
security = "starttls"
smtp_username = "{SMTP_USER}"
ca_file = "{mailbox.ca_file}"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    raw: bytes

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        assert part is not None
        return str(part.get_content())


@dataclass
class Mailbox:
    """What the SMTP server received, in order; `wait_for` polls because delivery is asynchronous."""

    port: int
    ca_file: Path
    messages: list[Received] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message, raw))
        return "250 OK"

    def wait_for(self, to: str, subject_contains: str, timeout: float = 10, text_contains: str = "") -> Received:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for received in self.messages:
                if to in received.recipients and subject_contains in str(received.message["Subject"]) \
                        and text_contains in received.text:
                    return received
            time.sleep(0.05)
        raise AssertionError(f"no email to {to} about {subject_contains!r}; got "
                             f"{[(m.recipients, str(m.message['Subject'])) for m in self.messages]}")


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login.decode() == SMTP_USER and \
        data.password.decode() == SMTP_PASSWORD
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def mailbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mailbox]:
    folder = tmp_path_factory.mktemp("smtp")
    cert, key = self_signed(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox(free_port(), cert)
    controller = Controller(box, hostname="127.0.0.1", port=box.port, tls_context=context, require_starttls=True,
                            authenticator=_authenticate, auth_require_tls=True)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


LINK = re.compile(r"(https?://\S+/approve\?t=[A-Za-z0-9._-]+)")


def link_in(received: Received) -> str:
    match = LINK.search(received.text)
    assert match, received.text
    return match.group(1)


CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def approve_by_link(link: str) -> httpx.Response:
    """What the SIRO's browser does: open the emailed link, then press Approve on that page."""
    with httpx.Client() as browser:
        page = browser.get(link)
        assert page.status_code == 200, page.text
        csrf = CSRF_FIELD.search(page.text)
        assert csrf, page.text
        base, token = link.split("/approve?t=", 1)
        done = browser.post(f"{base}/approve", data={"t": token, "csrf": csrf.group(1), "decision": "approve"})
    assert done.status_code == 200, done.text
    return done


STAFF_CSV = """Staff Code,Forename,Surname,Role,Start Date,End Date
HCA,Helen,Carter,Head Teacher,01/09/2015,
SEV,Siân,Evans,SENCo,01/09/2018,
TBR,Tom,Brown,Teacher,01/09/2020,
"""

SHARES_TOML = """
[shares.sen-records]
title = "SEN records"
classification = "restricted"
owner = "Siân Evans, SENCo"
groups = { ad = "Share-SEN-Restricted" }
baseline = "nobody"
baseline_roles = ["SENCo"]
max_grant_days = 30

[shares.staff-shared]
title = "Staff shared area"
classification = "protected"
owner = "Helen Carter, Head Teacher"
groups = { ad = "Share-Staff" }
baseline = "all-staff"
"""


def write_school(root: Path, dc_options: dict[str, Any], mailbox: Mailbox, base_url: str,
                 staff_csv: str = STAFF_CSV) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    options = "\n".join(f"{k} = {_toml(v)}" for k, v in dc_options.items())
    (root / "ad.toml").write_text(f'name = "ad"\ntype = "ad"\n{options}\n')
    (root / "mapping.toml").write_text(
        '[staff]\nusername = "{first_initial}{surname}"\ndomain = "test.example.com"\ncontainer = "Staff"\n'
        'groups = []\nlicences = []\n')
    (root / "staff.csv").write_text(staff_csv, encoding="utf-8")
    (root / "shares.toml").write_text(SHARES_TOML)
    job_path = root / "job.toml"
    job_path.write_text(f"""
[job]
name = "access-test"
state_dir = "state"
connectors = ["ad.toml"]
mappings = ["mapping.toml"]

[[job.feeds]]
format = "mis-csv"
path = "staff.csv"
kind = "staff"
date_order = "dmy"

[guards]
max_destructive = 5

[access]
shares = "shares.toml"
siro_email = "{SIRO}"
siro_name = "Dr Ada Okafor"
link_hours = 72
requester_domains = ["school.example.org"]

[mail]
transport = "smtp"
from_address = "{SMTP_USER}"
from_name = "School identity service"
smtp_host = "127.0.0.1"
smtp_port = {mailbox.port}
security = "starttls"
smtp_username = "{SMTP_USER}"
ca_file = "{mailbox.ca_file}"

[web]
public_base_url = "{base_url}"
""")
    return job_path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def school_secrets(bind_password: str) -> dict[str, str]:
    """The job's secrets as the environment variables `idlifecycle.config.Secrets` reads."""
    return {"IDLIFECYCLE_SMTP_PASSWORD": SMTP_PASSWORD, "IDLIFECYCLE_APPROVAL_SIGNING_KEY": SIGNING_KEY,
            "IDLIFECYCLE_AD_BIND_PASSWORD": bind_password}


def create_staff_accounts(job: Job, people: list[tuple[str, str, str]]) -> dict[str, str]:
    """Accounts for (person_id, given, surname) in AD through the connector; returns person_id -> key."""
    with job.open_connectors() as connectors:
        ad = connectors["ad"]
        changes = [
            Change("ad", Action.CREATE, pid, f"{given[0]}{surname}".lower(), "test setup", after={
                "username": f"{given[0]}{surname}".lower(), "login": f"{given[0]}{surname}@test.example.com".lower(),
                "given_name": given, "surname": surname, "display_name": f"{given} {surname}", "container": "Staff",
                "attributes": {"employeeType": str(Kind.STAFF)}, "enabled": True, "anchor": pid,
                "must_change_password": False}, password="Corr3ct-Horse-Battery!")
            for pid, given, surname in people
        ]
        results = list(ad.apply(changes))
        assert all(r.key for r in results), results
        return {c.person_id or "": r.key or "" for c, r in zip(changes, results, strict=True)}


def members_of(job: Job, group: str) -> set[str]:
    """Anchors (person ids, or usernames for unanchored accounts) of the members of an AD group."""
    with job.open_connectors() as connectors:
        snapshot = connectors["ad"].snapshot()
    by_key = {a.key: a.anchor or a.username for a in snapshot.accounts}
    found = next((g for g in snapshot.groups if g.name == group), None)
    return set() if found is None else {by_key.get(k, k) for k in found.members}


@dataclass
class ServedApp:
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread


def serve(job_path: Path, port: int, app: Any = None) -> ServedApp:
    """The approval app (or `app`) under uvicorn on 127.0.0.1, trusting X-Forwarded-For from there as a
    reverse proxy's, so a test can speak from other addresses."""
    app = app or create_app(lambda: load_job(job_path), secure_cookies=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           proxy_headers=True, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    return ServedApp(f"http://127.0.0.1:{port}", server, thread)


def stop(app: ServedApp) -> None:
    app.server.should_exit = True
    app.thread.join(10)


@dataclass
class School:
    job_path: Path
    app: ServedApp
    mailbox: Mailbox

    def job(self) -> Job:
        return load_job(self.job_path)

    def request(self, person: str = "TBR", reason: str = "Covering Year 9 SEN reviews", days: int = 14) -> int:
        job = self.job()
        try:
            return Access(job).request("sen-records", person, reason, days, REQUESTER).request_id
        finally:
            job.close()

    def link_for(self, request_id: int) -> str:
        return link_in(self.mailbox.wait_for(SIRO, f"Access request #{request_id}:"))

    def audit(self, event: str) -> list[dict[str, Any]]:
        job = self.job()
        try:
            return [e.data for e in job.store.audit_entries() if e.event == event]
        finally:
            job.close()

    def status(self, request_id: int) -> str:
        job = self.job()
        try:
            found = Access(job).records.request(request_id)
            assert found is not None
            return found.status
        finally:
            job.close()


def running_school(samba_dc: DomainController, mailbox: Mailbox, root: Path, **write_options: Any) -> Iterator[School]:
    """A school job on the DC with Helen, Sian and Tom's staff accounts, its approval server running."""
    port = free_port()
    job_path = write_school(root, samba_dc.connector_options(), mailbox, f"http://127.0.0.1:{port}", **write_options)
    with pytest.MonkeyPatch.context() as env:
        for name, value in school_secrets(samba_dc.admin_password).items():
            env.setenv(name, value)
        job = load_job(job_path)
        try:
            create_staff_accounts(job, [("HCA", "Helen", "Carter"), ("SEV", "Sian", "Evans"),
                                        ("TBR", "Tom", "Brown")])
        finally:
            job.close()
        app = serve(job_path, port)
        try:
            yield School(job_path, app, mailbox)
        finally:
            stop(app)


@pytest.fixture(scope="module")
def school(samba_dc: DomainController, mailbox: Mailbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[School]:
    yield from running_school(samba_dc, mailbox, tmp_path_factory.mktemp("school"))


def review_rows(path: Path, sheet: str) -> list[dict[str, Any]]:
    """A sheet of the access-review workbook as the SIRO reads it: one dict per row, by header."""
    values = list(openpyxl.load_workbook(path)[sheet].iter_rows(values_only=True))
    return [dict(zip(values[0], row, strict=True)) for row in values[1:]]


def decide_in_workbook(path: Path, choices: dict[tuple[str, str, str], tuple[str, str]],
                       expires: dict[tuple[str, str, str], dt.date] | None = None) -> None:
    """What the SIRO does in Excel: (share, directory, person ID) -> (Decision, Note) on Restricted access,
    and a new Expires date where the decision is Change expiry."""
    book = openpyxl.load_workbook(path)
    sheet = book[RESTRICTED]
    header = {str(cell.value): cell.column for cell in sheet[1]}
    marked = set()
    for number in range(2, sheet.max_row + 1):
        def value(name: str, number: int = number) -> Any:
            return sheet.cell(number, header[name]).value

        key = (value("Share"), value("Directory"), value("Person ID"))
        if key in choices:
            choice, note = choices[key]
            sheet.cell(number, header["Decision"], choice)
            if note:
                sheet.cell(number, header["Note"], note)
            if key in (expires or {}):
                sheet.cell(number, header["Expires"], (expires or {})[key])
            marked.add(key)
    assert marked == set(choices), f"rows not on the sheet: {set(choices) - marked}"
    book.save(path)
