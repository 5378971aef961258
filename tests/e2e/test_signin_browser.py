"""Issue 18: the SIRO's approval bound to the SIRO, in a real browser. Debian's headless Chromium (Playwright)
opens the emailed link (a real SMTP server), signs in on the Graph emulator acting as the school's Entra
tenant (msal's code flow with PKCE), and the grant lands in a real Samba DC. A forwarded link opened by
another signed-in member of staff is refused and audited; a deputy's approval is recorded as the deputy's,
on the grant and on the access review.

Screenshots of the sign-in, approval and refusal pages are written to the test's tmp_path (printed).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from idlifecycle.access.service import Access
from idlifecycle.cli import main
from idlifecycle.job import load_job
from idlifecycle.reports.access_review import RESTRICTED
from tests.e2e.test_approval_browser import CHROMIUM, CHROMIUM_FLAGS
from tests.integration.access_support import (
    REQUESTER,
    Mailbox,
    create_staff_accounts,
    link_in,
    mailbox,
    members_of,
    review_rows,
)
from tests.integration.samba import DomainController, samba_dc, samba_template
from tests.integration.signin_support import (
    DEPUTY,
    PASSWORDS,
    SIRO,
    TEACHER,
    IdentityProvider,
    SignInSchool,
    audit,
    idp,
    running_sign_in_school,
)

pytestmark = [pytest.mark.samba, pytest.mark.browser]
__all__ = ["idp", "mailbox", "samba_dc", "samba_template"]
SEN_GROUP = "Share-SEN-Restricted"


@pytest.fixture(scope="module")
def school(samba_dc: DomainController, idp: IdentityProvider, mailbox: Mailbox,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignInSchool]:
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    # The school's secrets stay in the environment while the fixture's generator is suspended.
    for running in running_sign_in_school(idp, mailbox, tmp_path_factory.mktemp("signin-school"),
                                          samba_dc.connector_options(), samba_dc.admin_password):
        job = load_job(running.job_path)
        try:
            create_staff_accounts(job, [("HCA", "Helen", "Carter"), ("SEV", "Sian", "Evans"),
                                        ("TBR", "Tom", "Brown")])
        finally:
            job.close()
        yield running


def ask(school: SignInSchool, person: str, reason: str) -> tuple[int, str]:
    job = load_job(school.job_path)
    try:
        request_id = Access(job).request("sen-records", person, reason, 10, REQUESTER).request_id
    finally:
        job.close()
    # The mailbox serves both providers' schools, whose request numbers both start at 1.
    return request_id, link_in(school.mailbox.wait_for(SIRO, f"Access request #{request_id}:",
                                                       text_contains=school.base_url))


def status(school: SignInSchool, request_id: int) -> str:
    job = load_job(school.job_path)
    try:
        found = Access(job).records.request(request_id)
        assert found is not None
        return found.status
    finally:
        job.close()


def grant_approver(school: SignInSchool, request_id: int) -> str:
    job = load_job(school.job_path)
    try:
        return next(g.approver for g in Access(job).records.open_grants() if g.request_id == request_id)
    finally:
        job.close()


def told_siro(school: SignInSchool, request_id: int) -> int:
    """Decision emails to the SIRO about this request number (both providers' schools share the mailbox)."""
    time.sleep(0.5)
    return sum(1 for m in school.mailbox.messages if SIRO in m.recipients
               and f"Access request #{request_id} approved" in str(m.message["Subject"])
               and f"{DEPUTY} (deputy for the SIRO)" in m.text)


def signs_in(page: Any, login: str, shot: Path | None = None) -> None:
    """On the identity provider's page the app sent the browser to: sign in as `login`."""
    page.wait_for_selector("input[name=password]")
    assert page.locator("h1").inner_text() == "Sign in"
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", PASSWORDS[login])
    if shot is not None:
        page.screenshot(path=str(shot), full_page=True)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser: Any) -> Any:
    # The emulator's certificate is self-signed; the app itself is plain http on 127.0.0.1.
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 390, "height": 844})
    return context.new_page()


def test_the_siro_signs_in_from_the_emailed_link_and_approves(school: SignInSchool, browser: Any,
                                                               tmp_path: Path) -> None:
    request_id, link = ask(school, "TBR", "Covering SEN annual reviews this term")
    page = new_page(browser)
    page.goto(link)
    assert page.url.startswith(school.idp.url)  # sent to sign in first
    signs_in(page, SIRO, tmp_path / "sign-in-page.png")
    assert page.url.startswith(f"{school.base_url}/approve?t=")
    assert page.locator("h1").inner_text() == "Access request"
    assert "Signed in as Helen Carter" in page.content()
    page.screenshot(path=str(tmp_path / "approval-page.png"), full_page=True)
    assert status(school, request_id) == "pending"  # signing in and opening the page changed nothing

    page.get_by_role("button", name="Approve").click()
    page.wait_for_load_state()
    assert f"Request #{request_id} approved" in page.locator("h1").inner_text()
    print(f"screenshots: {tmp_path / 'sign-in-page.png'} {tmp_path / 'approval-page.png'}")

    assert grant_approver(school, request_id) == SIRO
    job = load_job(school.job_path)
    try:
        assert "TBR" in members_of(job, SEN_GROUP)
    finally:
        job.close()
    approved = [a for a in audit(school, "access-approved") if a["request_id"] == request_id]
    assert approved and approved[0]["signed_in_as"] == SIRO and approved[0]["as_deputy"] is False
    assert (tmp_path / "sign-in-page.png").stat().st_size > 5_000


def test_a_forwarded_link_is_refused_to_other_staff_and_a_deputy_approves_as_deputy(
        school: SignInSchool, browser: Any, tmp_path: Path) -> None:
    request_id, link = ask(school, "HCA", "Head teacher covering the SENCo's absence")

    forwarded = new_page(browser)  # the SIRO forwarded the email to Tom
    forwarded.goto(link)
    signs_in(forwarded, TEACHER)
    assert forwarded.locator("h1").inner_text() == "This link cannot be used"
    assert "Only the SIRO or a deputy" in forwarded.content()
    assert forwarded.get_by_role("button", name="Approve").count() == 0
    forwarded.screenshot(path=str(tmp_path / "forwarded-refused.png"), full_page=True)
    refusals = [a for a in audit(school, "approval-refused-signed-in") if a["request_id"] == request_id]
    assert refusals and refusals[0]["signed_in_as"] == TEACHER

    deputy = new_page(browser)
    deputy.goto(link)  # the link's own checks still pass: the refusal spent nothing
    signs_in(deputy, DEPUTY)
    assert "as deputy for Helen Carter (SIRO)" in deputy.content()
    deputy.screenshot(path=str(tmp_path / "deputy-approval-page.png"), full_page=True)
    told_before = told_siro(school, request_id)
    deputy.get_by_role("button", name="Approve").click()
    deputy.wait_for_load_state()
    assert f"Request #{request_id} approved" in deputy.locator("h1").inner_text()
    print(f"screenshots: {tmp_path / 'forwarded-refused.png'} {tmp_path / 'deputy-approval-page.png'}")

    assert grant_approver(school, request_id) == f"{DEPUTY} (deputy for the SIRO)"
    approved = [a for a in audit(school, "access-approved") if a["request_id"] == request_id]
    assert approved[0]["signed_in_as"] == DEPUTY and approved[0]["as_deputy"] is True
    assert told_siro(school, request_id) == told_before + 1  # the SIRO hears of a deputy's decision

    assert status(school, request_id) == "approved"
    review = tmp_path / "review.xlsx"
    assert main(["--config", str(school.job_path), "report", "access-review", "--out", str(review)]) == 0
    row = next(r for r in review_rows(review, RESTRICTED) if r["Share"] == "sen-records" and r["Person ID"] == "HCA")
    assert row["Approver"] == f"{DEPUTY} (deputy for the SIRO)"


def test_a_teacher_asks_for_a_colleague_found_by_name_and_the_siro_is_asked(school: SignInSchool, browser: Any,
                                                                            tmp_path: Path) -> None:
    """The request form with sign-in: the requester is who signed in, the person is chosen from a search of the
    roll (no MIS id typed or shown), and the SIRO's email names them."""
    reason = f"Covering Siân's reviews from the browser, ref {school.app.server.config.port}"
    page = new_page(browser)
    page.goto(f"{school.base_url}/request")
    signs_in(page, TEACHER)
    assert page.url == f"{school.base_url}/request" and "Requested by Tom Brown" in page.content()
    page.get_by_label("Who is the access for? Search by name").fill("sian")
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state()
    choice = page.get_by_label("Siân Evans (staff)")
    assert choice.is_checked()  # the only match is chosen already
    assert "SEV" not in page.content()
    page.select_option("select[name=share]", "sen-records")
    page.get_by_label("Why is access needed?").fill(reason)
    page.screenshot(path=str(tmp_path / "request-search-page.png"), full_page=True)
    page.get_by_role("button", name="Send to the SIRO").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Request received"
    print(f"screenshot: {tmp_path / 'request-search-page.png'}")
    mail = school.mailbox.wait_for(SIRO, "Access request #", text_contains=reason)
    assert "Siân Evans" in mail.text or "Sian Evans" in mail.text
    assert any(r["person_id"] == "SEV" and r["requester"] == TEACHER for r in audit(school, "access-requested"))
