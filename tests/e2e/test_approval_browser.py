"""The SIRO approves a request in a real browser: email from a real SMTP server, the link opened in
Debian's headless Chromium (Playwright), the membership granted in a real Samba DC."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from idlifecycle.access.service import Access
from tests.integration.access_support import REQUESTER, SIRO, School, link_in, mailbox, members_of, school
from tests.integration.samba import samba_dc, samba_template

pytestmark = [pytest.mark.samba, pytest.mark.browser]
__all__ = ["mailbox", "samba_dc", "samba_template", "school"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"


def test_siro_opens_the_emailed_link_in_a_browser_and_approves(school: School) -> None:
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    job = school.job()
    try:
        request_id = Access(job).request("sen-records", "TBR", "Covering SEN annual reviews <b>this term</b>",
                                         10, REQUESTER).request_id
    finally:
        job.close()
    link = link_in(school.mailbox.wait_for(SIRO, f"Access request #{request_id}:"))

    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 900})
            response = page.goto(link)
            assert response is not None and response.status == 200
            assert page.locator("h1").inner_text() == "Access request"
            assert "Covering SEN annual reviews <b>this term</b>" in page.locator("td.reason").inner_text()
            # Whether the person is a pupil or staff, as the MIS has them, is on the page the SIRO decides on.
            kind = page.locator("tr", has=page.locator("th", has_text="Pupil or staff (from the MIS)"))
            assert kind.locator("td").inner_text() == "Staff"
            page.screenshot(path=str(OUTPUT / "approval-page.png"), full_page=True)

            assert school.status(request_id) == "pending"  # the GET alone changed nothing
            job = school.job()
            try:
                assert "TBR" not in members_of(job, "Share-SEN-Restricted")
            finally:
                job.close()

            page.get_by_role("button", name="Approve").click()
            page.wait_for_load_state()
            assert f"Request #{request_id} approved" in page.locator("h1").inner_text()
            assert "Approved: Tom Brown has access to SEN records" in page.content()

            page.goto(link)  # the same link again: spent
            assert "This link cannot be used" in page.locator("h1").inner_text()
        finally:
            browser.close()

    job = school.job()
    try:
        assert "TBR" in members_of(job, "Share-SEN-Restricted")
    finally:
        job.close()
    told = school.mailbox.wait_for(REQUESTER, f"Access request #{request_id} approved")
    assert "Tom Brown" in told.text
    assert (OUTPUT / "approval-page.png").stat().st_size > 10_000
