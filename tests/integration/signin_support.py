"""Staff sign-in for the web tests: the Graph emulator as the school's Entra tenant (its identity provider),
a school job whose `[web] sign_in = "entra"`, and a scripted browser (httpx) that signs in through it.

Import into a test module: `from tests.integration.signin_support import idp` (a fixture) and the helpers.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from idlifecycle.job import load_job
from idlifecycle.sandbox.google import GoogleEmulator
from idlifecycle.sandbox.graph import GraphEmulator
from idlifecycle.sandbox.graph_directory import Directory
from tests.integration.access_support import (
    SIGNING_KEY,
    SMTP_PASSWORD,
    Mailbox,
    ServedApp,
    free_port,
    serve,
    stop,
    write_school,
)

CLIENT_ID = "5c1e0000-0000-4000-8000-00000000a11d"
CLIENT_SECRET = "web-sign-in-test-secret"  # a throw-away emulator's app secret
TENANT = "b0b0b0b0-0000-4000-8000-000000000018"
DOMAIN = "test.example.com"
SIRO = f"hcarter@{DOMAIN}"
DEPUTY = f"sevans@{DOMAIN}"
TEACHER = f"tbrown@{DOMAIN}"
PUPIL = f"22jjones@{DOMAIN}"
LEAVER = f"lleft@{DOMAIN}"
PASSWORDS = {SIRO: "Siro-Pass-2026!", DEPUTY: "Deputy-Pass-2026!", TEACHER: "Teacher-Pass-2026!",
             PUPIL: "Pupil-Pass-2026!", LEAVER: "Leaver-Pass-2026!"}
STAFF_CSV = f"""Staff Code,Forename,Surname,Role,Start Date,End Date,School Email
HCA,Helen,Carter,Head Teacher,01/09/2015,,{SIRO}
SEV,Siân,Evans,SENCo,01/09/2018,,{DEPUTY}
TBR,Tom,Brown,Teacher,01/09/2020,,{TEACHER}
LLE,Lee,Left,Teacher,01/09/2010,31/08/2025,{LEAVER}
"""
"""The staff feed, with the school email each signs in with (Lee left in 2025; the account is still enabled);
the pupil is in the tenant, not on it."""


def tenant_seed() -> dict[str, Any]:
    names = {SIRO: ("Helen", "Carter"), DEPUTY: ("Siân", "Evans"), TEACHER: ("Tom", "Brown"), PUPIL: ("Jo", "Jones"),
             LEAVER: ("Lee", "Left")}
    return {"tenant_id": TENANT, "domains": [DOMAIN], "users": [
        {"userPrincipalName": upn, "givenName": given, "surname": surname, "displayName": f"{given} {surname}",
         "passwordProfile": {"password": PASSWORDS[upn]}} for upn, (given, surname) in names.items()]}


IdentityProvider = GraphEmulator | GoogleEmulator
"""The school's identity provider in these tests: either emulator (each has `.url` and `.sign_in`, whose
`tamper` makes it send a bad ID token)."""


def google_tenant() -> GoogleEmulator:
    emulator = GoogleEmulator(domains=[DOMAIN])
    for user in tenant_seed()["users"]:
        emulator.directory.add_user(user["userPrincipalName"], user["givenName"], user["surname"],
                                    user["passwordProfile"]["password"])
    return emulator


@pytest.fixture(scope="module", params=["entra", "google"])
def idp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityProvider]:
    """Every sign-in test runs against both providers: `[web] sign_in = "entra"` and `"google"`."""
    emulator: IdentityProvider = (
        GraphEmulator(Directory.from_seed(tenant_seed()), tls_dir=tmp_path_factory.mktemp("idp-tls"))
        if request.param == "entra" else google_tenant())
    with pytest.MonkeyPatch.context() as env:
        # Only the Google sandbox's issuer is plain http on 127.0.0.1; Authlib refuses that unless told.
        if request.param == "google":
            env.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
        with emulator:
            yield emulator


def sign_in_table(idp: IdentityProvider, base_url: str) -> str:
    """The job's `sign_in` and its provider's table, for `idp` (registering the app there)."""
    callback = f"{base_url}/signin/callback"
    if isinstance(idp, GoogleEmulator):
        idp.sign_in.register_client(CLIENT_ID, CLIENT_SECRET, (callback,))
        return f"""sign_in = "google"

[web.google]
client_id = "{CLIENT_ID}"
hosted_domain = "{DOMAIN}"
redirect_uri = "{callback}"
issuer = "{idp.url.rstrip("/")}"
"""
    assert idp.certificate is not None
    idp.register_application(CLIENT_ID, secret=CLIENT_SECRET, redirect_uris=(callback,))
    return f"""sign_in = "entra"

[web.entra]
client_id = "{CLIENT_ID}"
tenant = "{TENANT}"
redirect_uri = "{callback}"
authority_host = "{idp.url.removeprefix("https://")}"
ca_file = "{idp.certificate.cert}"
"""


def sign_in_job(root: Path, idp: IdentityProvider, mailbox: Mailbox, base_url: str,
                dc_options: dict[str, Any] | None = None) -> Path:
    """The access test school with staff sign-in through `idp`, Helen the SIRO and Siân her deputy."""
    # Without a DC (the sign-in tests change no directory): a server nobody listens on.
    options = dc_options or {"servers": ["ldaps://127.0.0.1:1"], "bind_dn": "CN=x,DC=test,DC=example,DC=com",
                             "base_dn": "OU=Managed,DC=test,DC=example,DC=com", "groups_container": "Groups",
                             "upn_suffix": DOMAIN}
    job_path = write_school(root, options, mailbox, base_url, staff_csv=STAFF_CSV)
    text = job_path.read_text().replace('siro_email = "siro@school.example.org"',
                                        f'siro_email = "{SIRO}"\nsiro_deputies = ["{DEPUTY}"]').replace(
        'siro_name = "Dr Ada Okafor"', 'siro_name = "Helen Carter"')
    job_path.write_text(text + sign_in_table(idp, base_url))
    (root / "mapping.toml").write_text(
        f'[staff]\nusername = "{{first_initial}}{{surname}}"\ndomain = "{DOMAIN}"\ncontainer = "Staff"\n'
        'groups = []\nlicences = []\n')
    return job_path


def sign_in_secrets(bind_password: str = "unused-bind-password") -> dict[str, str]:
    return {"IDLIFECYCLE_SMTP_PASSWORD": SMTP_PASSWORD, "IDLIFECYCLE_APPROVAL_SIGNING_KEY": SIGNING_KEY,
            "IDLIFECYCLE_AD_BIND_PASSWORD": bind_password, "IDLIFECYCLE_SIGN_IN_CLIENT_SECRET": CLIENT_SECRET}


@dataclass
class SignInSchool:
    job_path: Path
    app: ServedApp
    mailbox: Mailbox
    idp: IdentityProvider

    @property
    def base_url(self) -> str:
        return self.app.base_url

    def browser(self) -> httpx.Client:
        """A browser of its own (cookies), trusting the identity provider's certificate; redirects by hand."""
        certificate = getattr(self.idp, "certificate", None)
        trust = ssl.create_default_context(cafile=str(certificate.cert)) if certificate else True
        return httpx.Client(verify=trust, timeout=30)


def running_sign_in_school(idp: IdentityProvider, mailbox: Mailbox, root: Path,
                           dc_options: dict[str, Any] | None = None,
                           bind_password: str = "unused-bind-password") -> Iterator[SignInSchool]:
    port = free_port()
    job_path = sign_in_job(root, idp, mailbox, f"http://127.0.0.1:{port}", dc_options)
    with pytest.MonkeyPatch.context() as env:
        for name, value in sign_in_secrets(bind_password).items():
            env.setenv(name, value)
        app = serve(job_path, port)
        try:
            yield SignInSchool(job_path, app, mailbox, idp)
        finally:
            stop(app)


FORM_ACTION = re.compile(r'<form method="post"')


def to_identity_provider(browser: httpx.Client, base_url: str, next_path: str = "/request") -> str:
    """Start a sign-in; the identity provider's authorize address the app sent the browser to."""
    start = browser.get(f"{base_url}/signin", params={"next": next_path})
    assert start.status_code == 303, start.text
    return start.headers["location"]


def at_identity_provider(browser: httpx.Client, authorize: str, login: str) -> str:
    """Sign in on the identity provider's form; the app's callback address it answers with (code, state)."""
    form = browser.get(authorize)
    assert form.status_code == 200 and FORM_ACTION.search(form.text), form.text
    answer = browser.post(authorize, data={"login": login, "password": PASSWORDS[login]})
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def sign_in(browser: httpx.Client, base_url: str, login: str, next_path: str = "/request") -> httpx.Response:
    """The whole sign-in as a browser does it; the app's answer to the callback."""
    callback = at_identity_provider(browser, to_identity_provider(browser, base_url, next_path), login)
    return browser.get(callback)


def audit(school: SignInSchool, event: str) -> list[dict[str, Any]]:
    """The data of every audit entry of `event` in the school's store, oldest first."""
    job = load_job(school.job_path)
    try:
        return [e.data for e in job.store.audit_entries() if e.event == event]
    finally:
        job.close()
