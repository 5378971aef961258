"""The anonymous staff request form against hostile use (issue 14, items 7 and 8): throttled, no oracle for
who is on roll, no stranger's link beside the Approve button, error pages as strict as the others.

Real parts: the app under uvicorn on 127.0.0.1 (X-Forwarded-For from there is trusted as a proxy's, so a
test can speak from other addresses), aiosmtpd for mail, the school's job on a Samba DC.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from idlifecycle.job import load_job
from idlifecycle.web.app import create_app
from tests.integration.access_support import SIRO, School, ServedApp, free_port, mailbox, school, serve, stop
from tests.integration.samba import samba_dc, samba_template

pytestmark = pytest.mark.samba
__all__ = ["mailbox", "samba_dc", "samba_template", "school"]

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SECURITY = ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy",
            "cache-control")


def strict(response: httpx.Response) -> None:
    for name in SECURITY:
        assert name in response.headers, (response.status_code, name)
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.fixture
def fresh_app(school: School) -> Iterator[ServedApp]:
    """A second server on the same job, with its own (default) throttle and refusal tally."""
    served = serve(school.job_path, free_port())
    try:
        yield served
    finally:
        stop(served)


class Form:
    """A browser that opened the request form once: its cookie and CSRF token serve every send."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.client = httpx.Client()
        page = self.client.get(f"{base_url}/request")
        found = CSRF.search(page.text)
        assert found, page.text
        self.csrf = found.group(1)

    def send(self, person: str = "TBR", *, reason: str = "Annual review prep", address: str = "10.9.9.9",
             requester: str = "teacher@school.example.org", **extra: str) -> httpx.Response:
        data = {"csrf": self.csrf, "requester": requester, "share": "sen-records", "person": person,
                "reason": reason, "days": "5", **extra}
        return self.client.post(f"{self.base_url}/request", data=data, headers={"x-forwarded-for": address})

    def close(self) -> None:
        self.client.close()


def test_one_address_sending_the_form_in_a_loop_gets_429_with_retry_after_after_five(fresh_app: ServedApp) -> None:
    form = Form(fresh_app.base_url)
    statuses: list[int] = []
    for _ in range(12):  # bounded: the default allows 5 in a row from one address
        response = form.send("NOBODY1", address="10.1.1.1")
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses == [200] * 5 + [429], statuses
    assert int(response.headers["retry-after"]) > 0
    assert "Try again in" in response.text
    strict(response)
    assert form.send("NOBODY1", address="10.1.1.2").status_code == 200  # another address is not held up
    form.close()


def test_many_addresses_together_are_held_to_the_forms_total_of_thirty(fresh_app: ServedApp) -> None:
    form = Form(fresh_app.base_url)
    accepted = 0
    for n in range(1, 60):  # bounded
        response = form.send("NOBODY2", address=f"10.2.0.{n}")
        if response.status_code == 429:
            break
        assert response.status_code == 200, response.text
        accepted += 1
    assert accepted == 30 and response.status_code == 429
    assert int(response.headers["retry-after"]) > 0
    strict(response)
    form.close()


def test_known_and_unknown_ids_get_byte_identical_answers_and_only_the_known_one_mails(school: School) -> None:
    form = Form(school.app.base_url)
    before = len(school.mailbox.messages)
    known = form.send("TBR", reason="Known person check", address="10.3.0.1")
    unknown = form.send("NO-SUCH-ID", reason="Unknown person check", address="10.3.0.2")
    assert (known.status_code, known.content) == (unknown.status_code, unknown.content) == (200, known.content)
    assert {k: v for k, v in known.headers.items() if k != "date"} == \
        {k: v for k, v in unknown.headers.items() if k != "date"}
    assert "If this person is known" in known.text and "Request #" not in known.text
    school.mailbox.wait_for(SIRO, "Tom Brown to SEN records", text_contains="Known person check")
    time.sleep(1)  # the unknown id's background work has had its turn
    assert not any("Unknown person check" in m.text for m in school.mailbox.messages[before:])
    assert [d["person_id"] for d in school.audit("access-request-unknown-person")].count("NO-SUCH-ID") == 1
    form.close()


def test_the_siro_email_says_from_the_mis_whether_the_person_is_a_pupil_or_staff(school: School) -> None:
    form = Form(school.app.base_url)
    assert form.send("SEV", reason="Kind shown check", address="10.4.0.1").status_code == 200
    received = school.mailbox.wait_for(SIRO, "Siân Evans to SEN records", text_contains="Kind shown check")
    assert "Pupil or staff (from the MIS): Staff" in received.text
    assert "Pupil or staff (from the MIS)</th><td>Staff</td>" in received.html
    form.close()


def test_a_web_address_in_the_reason_is_never_a_link_in_either_part_of_the_siro_email(school: School) -> None:
    form = Form(school.app.base_url)
    reason = "Urgent: the real form is at https://evil.example/approve?t=x or www.evil.example (HCA check)"
    assert form.send("HCA", reason=reason, address="10.5.0.1").status_code == 200
    received = school.mailbox.wait_for(SIRO, "Helen Carter to SEN records", text_contains="HCA check")
    for part in (received.text, received.html):
        assert "evil.example" not in part and "https://evil" not in part
        assert "hxxps[:]//evil[.]example/approve?t=x or www[.]evil[.]example" in part
    hrefs = re.findall(r'href="([^"]+)"', received.html)
    assert len(hrefs) == 1 and hrefs[0].startswith(f"{school.app.base_url}/approve?t=")
    form.close()


def test_a_nul_too_many_fields_or_too_large_a_form_is_a_clear_400_with_the_security_headers(
        school: School) -> None:
    form = Form(school.app.base_url)
    nul = form.send("TBR", requester="teacher\x00@school.example.org", address="10.6.0.1")
    assert nul.status_code == 400 and "control character" in nul.text and "requester" in nul.text
    strict(nul)
    many = form.send("TBR", address="10.6.0.2", **{f"extra{n}": "x" for n in range(25)})
    assert many.status_code == 400 and "more than 20 fields" in many.text
    strict(many)
    large = form.send("TBR", reason="x" * 20_000, address="10.6.0.3")
    assert large.status_code == 400 and "larger than" in large.text
    strict(large)
    for response in (httpx.get(f"{school.app.base_url}/no-such-page"),
                     httpx.put(f"{school.app.base_url}/request")):
        assert response.status_code in (404, 405)
        strict(response)
    form.close()


def test_an_internal_error_is_a_500_page_with_the_security_headers_and_no_details(school: School) -> None:
    def broken_job() -> object:
        raise RuntimeError("secret detail of a broken job")

    served = serve(school.job_path, free_port(), app=create_app(broken_job, secure_cookies=False))  # type: ignore[arg-type]
    try:
        for path in ("/request", "/healthz"):  # a page of ours, and one outside the pages' error handling
            response = httpx.get(f"{served.base_url}{path}")
            assert response.status_code == 500
            strict(response)
            assert "secret detail" not in response.text and "Traceback" not in response.text
    finally:
        stop(served)


def test_a_flood_of_forged_links_writes_one_audit_row_and_one_count_not_a_row_each(
        school: School, fresh_app: ServedApp) -> None:
    def forged_rows() -> int:
        job = load_job(school.job_path)
        try:
            return sum(1 for e in job.store.audit_entries()
                       if e.event == "approval-link-refused" and e.data.get("reason") == "forged")
        finally:
            job.close()

    before = forged_rows()
    for n in range(100):
        assert httpx.get(f"{fresh_app.base_url}/approve?t=forged{n}").status_code == 400
    assert forged_rows() - before <= 1
    stop(fresh_app)  # its worker writes what it counted when it closes
    grouped = [d for d in school.audit("links-refused") if d["reason"] == "forged"]
    assert grouped and grouped[-1]["count"] == 100 - (forged_rows() - before)
    assert grouped[-1]["clients"] == ["127.0.0.1"]
