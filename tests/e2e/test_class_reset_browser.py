"""Issue 18: a teacher resets their own pupils' passwords, in a real browser. Debian's headless Chromium
(Playwright) signs in on the emulator acting as the school's identity provider (Entra, then Google), opens
`/passwords`, resets one pupil of the group the teacher teaches, and the new password is the pupil's in a real
Samba DC (an LDAP bind). The same teacher sees no other group's pupil and cannot reset one with a crafted
form, nor a member of staff, nor a pupil whose account is an admin; a pupil who signs in is refused; a form
without the page's CSRF token is refused and audited.

Screenshots of the class list and the slip page are written to the test's tmp_path (printed).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from idlifecycle.job import load_job
from idlifecycle.model import Action, Change, Kind
from tests.e2e.school import write_pupils
from tests.e2e.test_signin_browser import audit, browser, new_page, signs_in
from tests.integration.access_support import Mailbox, free_port, mailbox, serve, stop
from tests.integration.samba import DomainController, samba_dc, samba_template
from tests.integration.signin_support import (
    PUPIL,
    TEACHER,
    IdentityProvider,
    SignInSchool,
    idp,
    sign_in_job,
    sign_in_secrets,
)

pytestmark = [pytest.mark.samba, pytest.mark.browser]
__all__ = ["browser", "idp", "mailbox", "samba_dc", "samba_template"]
OLD_PASSWORD = "Old-Pupil-Pass-26!"
PUPILS = {"000001": "20pnumber1", "000002": "20pnumber2", "000004": "20pnumber4"}
"""Pupil Number1 is in 8A and Number4 in 11A (both taught by Tom Brown), Number2 in 9A (not his)."""
EXTRA = """
[[job.feeds]]
format = "mis-csv"
path = "pupils.csv"
kind = "pupil"
date_order = "dmy"

[teaching]
"8A" = ["TBR"]
"11A" = ["TBR"]

[passwords]
school_name = "Oakfield Academy"

[passwords.pupil]
min_length = 10
style = "memorable"
"""
PUPIL_MAPPING = ('\n[pupil]\nusername = "{intake_year}{first_initial}{surname}"\ndomain = "test.example.com"\n'
                 'container = "Pupils/{year}"\ngroups = []\nlicences = []\n')


def pupil_accounts(job: Any, dc: DomainController) -> None:
    """The pupils' accounts in Samba (once for both providers' schools); Number4's is a Domain Admin."""
    with job.open_connectors() as connectors:
        ad = connectors["ad"]
        have = {a.anchor for a in ad.snapshot().accounts}
        changes = [Change("ad", Action.CREATE, pid, username, "test setup", after={
            "username": username, "login": f"{username}@test.example.com", "given_name": "Pupil",
            "surname": f"Number{int(pid)}", "display_name": f"Pupil Number{int(pid)}", "container": "Pupils/Year 7",
            "attributes": {"employeeType": str(Kind.PUPIL)}, "enabled": True, "anchor": pid,
            "must_change_password": False}, password=OLD_PASSWORD)
            for pid, username in PUPILS.items() if pid not in have]
        assert all(r.key for r in ad.apply(changes))
    conn = dc.connection()
    conn.search(dc.managed_dn, "(sAMAccountName=20pnumber4)", attributes=["distinguishedName"])
    admin_dn = conn.entries[0].entry_dn
    conn.modify(f"CN=Domain Admins,CN=Users,{dc.domain_dn}", {"member": [("MODIFY_ADD", [admin_dn])]})
    conn.unbind()


@pytest.fixture(scope="module")
def school(samba_dc: DomainController, idp: IdentityProvider, mailbox: Mailbox,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignInSchool]:
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    root = tmp_path_factory.mktemp("class-reset-school")
    port = free_port()
    job_path = sign_in_job(root, idp, mailbox, f"http://127.0.0.1:{port}", samba_dc.connector_options())
    job_path.write_text(job_path.read_text() + EXTRA)
    (root / "mapping.toml").write_text((root / "mapping.toml").read_text() + PUPIL_MAPPING)
    write_pupils(root / "pupils.csv", 4)
    with pytest.MonkeyPatch.context() as env:
        for name, value in sign_in_secrets(samba_dc.admin_password).items():
            env.setenv(name, value)
        job = load_job(job_path)
        try:
            pupil_accounts(job, samba_dc)
        finally:
            job.close()
        app = serve(job_path, port)
        try:
            yield SignInSchool(job_path, app, mailbox, idp)
        finally:
            stop(app)


def signs_in_with(dc: DomainController, username: str, password: str) -> bool:
    """Whether the DC takes the password: a bind, or AD's "must change password" (data 773, said only to
    the right password)."""
    result = dc.bind_result(f"{username}@test.example.com", password)
    return result["result"] == 0 or "data 773" in str(result.get("message", ""))


def csrf_of(page: Any) -> str:
    """The reset forms' CSRF token (the sign-out form above them has its own)."""
    return str(page.locator('form[action="/passwords"] input[name=csrf]').first.get_attribute("value"))


def post(page: Any, base_url: str, form: dict[str, str]) -> Any:
    """A crafted form sent from the signed-in browser (its cookies), as a teacher with developer tools could."""
    return page.request.post(f"{base_url}/passwords", form=form, max_redirects=0)


def test_a_teacher_resets_a_pupil_of_their_group_and_the_new_password_signs_in_to_ad(
        school: SignInSchool, samba_dc: DomainController, browser: Any, tmp_path: Path) -> None:
    page = new_page(browser)
    page.goto(f"{school.base_url}/passwords")
    assert page.url.startswith(school.idp.url)  # sent to sign in first
    signs_in(page, TEACHER)
    assert page.url == f"{school.base_url}/passwords"
    assert page.locator("h1").inner_text() == "Reset a pupil's password"
    assert [h.inner_text() for h in page.locator("h2").all()] == ["11A", "8A"]
    assert "Pupil Number2" not in page.content()  # 9A is not his
    page.screenshot(path=str(tmp_path / "class-reset-page.png"), full_page=True)

    page.get_by_role("button", name="Reset the password of Pupil Number1").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "New passwords"
    assert page.locator(".username").all_inner_texts() == ["20pnumber1"]
    [password] = page.locator(".password").all_inner_texts()
    page.screenshot(path=str(tmp_path / "class-reset-slip.png"), full_page=True)
    print(f"screenshots: {tmp_path / 'class-reset-page.png'} {tmp_path / 'class-reset-slip.png'}")

    assert signs_in_with(samba_dc, "20pnumber1", password)
    assert not signs_in_with(samba_dc, "20pnumber1", OLD_PASSWORD)
    resets = [a for a in audit(school, "class-reset") if a["pupil_id"] == "000001"]
    assert resets and resets[-1]["teacher"] == "TBR" and resets[-1]["directories"] == ["ad"]
    assert resets[-1]["from"] == "127.0.0.1"
    assert not any(password in str(entry) for entry in audit(school, "class-reset"))
    assert (tmp_path / "class-reset-slip.png").stat().st_size > 5_000


def test_the_teacher_cannot_reset_another_group_a_member_of_staff_or_an_admin_and_forms_need_the_page(
        school: SignInSchool, samba_dc: DomainController, browser: Any) -> None:
    page = new_page(browser)
    page.goto(f"{school.base_url}/passwords")
    signs_in(page, TEACHER)
    csrf = csrf_of(page)
    refused = {
        "another group": post(page, school.base_url, {"csrf": csrf, "pupil": "000002"}),
        "staff": post(page, school.base_url, {"csrf": csrf, "pupil": "HCA"}),
        "admin": post(page, school.base_url, {"csrf": csrf, "pupil": "000004"}),
        "group": post(page, school.base_url, {"csrf": csrf, "group": "9A"}),
    }
    assert {why: answer.status for why, answer in refused.items()} == dict.fromkeys(refused, 400)
    assert "Pupil Number2 (000002) is not in a group Tom Brown teaches" in refused["another group"].text()
    assert "is a member of staff" in refused["staff"].text()
    assert "is a privileged account" in refused["admin"].text()
    assert "does not teach &#x27;9A&#x27;" in refused["group"].text()
    assert signs_in_with(samba_dc, "20pnumber2", OLD_PASSWORD)
    assert signs_in_with(samba_dc, "20pnumber4", OLD_PASSWORD)
    reasons = [a["reason"] for a in audit(school, "class-reset-refused")]
    assert any("000002" in r for r in reasons) and any("privileged" in r for r in reasons)

    forged = post(page, school.base_url, {"csrf": "not-the-page's", "pupil": "000001"})
    assert forged.status == 403
    assert any(r == "the form did not come from the class reset page"
               for r in (a["reason"] for a in audit(school, "class-reset-refused")))


def test_a_pupil_who_signs_in_is_refused_the_page(school: SignInSchool, browser: Any) -> None:
    page = new_page(browser)
    page.goto(f"{school.base_url}/passwords")
    signs_in(page, PUPIL)
    # Sign-in itself takes staff of the managed scope only (web/signin.py): the pupil never reaches the page.
    assert page.locator("h1").inner_text() == "Sign-in did not work"
    assert page.get_by_role("button", name=re.compile("Reset")).count() == 0
