"""The SIRO's approval by email link, against a real Samba DC, a real SMTP server and the app under uvicorn."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta

import httpx
import pytest

from idlifecycle.access.records import utcnow
from idlifecycle.access.service import Access
from idlifecycle.notify import Mailer
from tests.integration.access_support import REQUESTER, SIRO, Mailbox, School, link_in, mailbox, members_of, school
from tests.integration.samba import samba_dc, samba_template

pytestmark = pytest.mark.samba
__all__ = ["mailbox", "samba_dc", "samba_template", "school"]

SEN_GROUP = "Share-SEN-Restricted"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def open_page(client: httpx.Client, link: str) -> tuple[httpx.Response, str]:
    page = client.get(link)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found
    return page, found.group(1)


def token_of(link: str) -> str:
    return link.split("?t=", 1)[1]


def test_opening_the_link_changes_nothing_and_approve_grants_the_share_at_once(school: School) -> None:
    request_id = school.request()
    link = school.link_for(request_id)
    with httpx.Client() as browser:
        page, csrf = open_page(browser, link)
        for _ in range(3):  # a mail scanner opening the link repeatedly
            browser.get(link)
        assert school.status(request_id) == "pending"
        job = school.job()
        try:
            assert "TBR" not in members_of(job, SEN_GROUP)
        finally:
            job.close()
        assert "Covering Year 9 SEN reviews" in page.text
        done = browser.post(f"{school.app.base_url}/approve",
                            data={"t": token_of(link), "csrf": csrf, "decision": "approve"})
    assert done.status_code == 200, done.text
    assert "Approved" in done.text
    assert school.status(request_id) == "approved"
    job = school.job()
    try:
        assert "TBR" in members_of(job, SEN_GROUP)
        grants = [g for g in Access(job).records.open_grants() if g.request_id == request_id]
        assert len(grants) == 1 and grants[0].approver == SIRO
        assert timedelta(days=13, hours=23) < grants[0].expires_at - grants[0].granted_at <= timedelta(days=14)
    finally:
        job.close()
    told = school.mailbox.wait_for(REQUESTER, f"Access request #{request_id} approved")
    assert "Tom Brown" in told.text
    assert any(d["request_id"] == request_id for d in school.audit("access-approved"))


def test_the_approval_page_shows_the_siro_whether_the_person_is_a_pupil_or_staff_from_the_mis(
        school: School) -> None:
    """The kind comes from the MIS feed, never from the requester: a request for a pupil dressed up as
    a colleague's stands out on the page the SIRO decides on, as in the email."""
    request_id = school.request()
    with httpx.Client() as browser:
        page, _ = open_page(browser, school.link_for(request_id))
    assert "<tr><th>Person</th><td>Tom Brown (TBR)</td></tr><tr><th>Pupil or staff (from the MIS)</th>" \
           "<td>Staff</td></tr>" in page.text, page.text
    assert school.status(request_id) == "pending"


def test_approval_pages_send_strict_security_headers(school: School) -> None:
    link = school.link_for(school.request())
    for response in (httpx.get(link), httpx.get(f"{school.app.base_url}/approve?t=nonsense")):
        headers = response.headers
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["content-security-policy"].startswith("default-src 'none'; style-src 'self'")
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "form-action 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert "http://" not in response.text.replace(school.app.base_url, "")  # no third-party assets
    cookie = httpx.get(link).headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert httpx.get(f"{school.app.base_url}/healthz").json() == {"status": "ok"}


def refused(school: School, response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert "This link cannot be used" in response.text
    assert "Nothing has been changed" in response.text
    assert reason in [d["reason"] for d in school.audit("approval-link-refused")]


def test_a_forged_link_is_refused_and_recorded(school: School) -> None:
    forged = "v1.eyJhIjoic2lyb0BzY2hvb2wuZXhhbXBsZS5vcmciLCJlIjo0MTAyNDQ0ODAwLCJuIjoiMDAiLCJyIjoxfQ.AAAA"
    refused(school, httpx.get(f"{school.app.base_url}/approve?t={forged}"), 403, "forged-or-altered")


def test_an_altered_link_naming_another_request_is_refused(school: School) -> None:
    link = school.link_for(school.request())
    _, payload, _ = token_of(link).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["r"] = body["r"] + 1000
    altered = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    refused(school, httpx.get(link.replace(payload, altered)), 403, "forged-or-altered")


def test_an_expired_link_is_refused(school: School) -> None:
    request_id = school.request()
    job = school.job()
    try:
        access = Access(job)
        pending = access.records.request(request_id)
        assert pending is not None
        access.send_link(pending, now=utcnow() - timedelta(hours=73))
    finally:
        job.close()
    expired = [m for m in school.mailbox.messages if f"#{request_id}:" in str(m.message["Subject"])][-1]
    refused(school, httpx.get(link_in(expired)), 410, "expired")
    assert school.status(request_id) == "pending"


def test_a_used_link_cannot_be_replayed(school: School) -> None:
    request_id = school.request(person="HCA", days=3)
    link = school.link_for(request_id)
    with httpx.Client() as browser:
        _, csrf = open_page(browser, link)
        first = browser.post(f"{school.app.base_url}/approve",
                             data={"t": token_of(link), "csrf": csrf, "decision": "deny"})
        assert first.status_code == 200 and "denied" in first.text
        again = browser.post(f"{school.app.base_url}/approve",
                             data={"t": token_of(link), "csrf": csrf, "decision": "approve"})
    refused(school, again, 409, "replayed")
    assert school.status(request_id) == "denied"
    school.mailbox.wait_for(REQUESTER, f"Access request #{request_id} denied")


def test_a_link_minted_for_another_approver_fails_for_the_siro_request(school: School) -> None:
    request_id = school.request()
    job = school.job()
    try:
        access = Access(job)
        pending = access.records.request(request_id)
        assert pending is not None
        access.send_link(pending, approver="deputy.head@school.example.org")
    finally:
        job.close()
    forwarded = link_in(school.mailbox.wait_for("deputy.head@school.example.org", f"#{request_id}:"))
    refused(school, httpx.get(forwarded), 403, "wrong-approver")
    with httpx.Client() as browser:
        response = browser.post(f"{school.app.base_url}/approve",
                                data={"t": token_of(forwarded), "csrf": "x", "decision": "approve"})
    refused(school, response, 403, "wrong-approver")
    assert school.status(request_id) == "pending"


def test_a_decision_without_the_pages_csrf_token_is_refused(school: School) -> None:
    request_id = school.request()
    link = school.link_for(request_id)
    token = token_of(link)
    with httpx.Client() as attacker:  # a cross-site form: the link's token but no cookie, no CSRF field
        refused(school, attacker.post(f"{school.app.base_url}/approve", data={"t": token, "decision": "approve"}),
                403, "csrf")
    with httpx.Client() as browser:
        _, csrf = open_page(browser, link)
        wrong = browser.post(f"{school.app.base_url}/approve",
                             data={"t": token, "csrf": csrf[:-2] + "AA", "decision": "approve"})
    refused(school, wrong, 403, "csrf")
    assert school.status(request_id) == "pending"


def test_a_reason_with_html_is_shown_escaped_on_the_page_and_in_the_email(school: School) -> None:
    reason = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'
    request_id = school.request(reason=reason)
    received = school.mailbox.wait_for(SIRO, f"Access request #{request_id}:")
    assert "<script>" not in received.html and "&lt;script&gt;" in received.html
    page = httpx.get(link_in(received))
    assert "<script>" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page.text


def test_a_name_with_a_line_break_cannot_add_a_bcc_header(school: School, mailbox: Mailbox) -> None:
    job = school.job()
    try:
        mailer = Mailer.from_job(job)
        assert mailer is not None
        mailer.send(["office@school.example.org"], "Hello\r\nBcc: thief@evil.example", "body",
                    to_names={"office@school.example.org": "Office\r\nBcc: thief@evil.example"})
    finally:
        job.close()
    received = mailbox.wait_for("office@school.example.org", "Hello")
    assert received.recipients == ["office@school.example.org"]
    assert received.message["Bcc"] is None
    headers = received.raw.split(b"\r\n\r\n", 1)[0].decode()
    assert not re.search(r"^Bcc:", headers, re.MULTILINE | re.IGNORECASE)
    assert str(received.message["Subject"]) == "Hello Bcc: thief@evil.example"


def test_revoking_a_grant_removes_the_membership_at_once_and_tells_the_requester(school: School) -> None:
    request_id = school.request(person="HCA", reason="Safeguarding review", days=2)
    link = school.link_for(request_id)
    with httpx.Client() as browser:
        _, csrf = open_page(browser, link)
        assert browser.post(f"{school.app.base_url}/approve",
                            data={"t": token_of(link), "csrf": csrf, "decision": "approve"}).status_code == 200
    job = school.job()
    try:
        assert "HCA" in members_of(job, SEN_GROUP)
        grant = next(g for g in Access(job).records.open_grants() if g.request_id == request_id)
        ended, notes = Access(job).revoke(grant.grant_id, "it.manager@school.example.org")
        assert ended.end_reason == "revoked"
        assert any("removed from" in n for n in notes), notes
        assert "HCA" not in members_of(job, SEN_GROUP)
    finally:
        job.close()
    school.mailbox.wait_for(REQUESTER, "Access to SEN records for Helen Carter has ended")


def test_staff_request_form_sends_the_request_to_the_siro(school: School) -> None:
    with httpx.Client() as browser:
        form = browser.get(f"{school.app.base_url}/request")
        csrf = CSRF.search(form.text)
        assert csrf
        sent = browser.post(f"{school.app.base_url}/request", data={
            "csrf": csrf.group(1), "requester": "teacher@school.example.org", "share": "sen-records",
            "person": "TBR", "reason": "Annual review prep", "days": "5"})
        assert sent.status_code == 200, sent.text
        outsider = browser.post(f"{school.app.base_url}/request", data={
            "csrf": csrf.group(1), "requester": "someone@gmail.com", "share": "sen-records",
            "person": "TBR", "reason": "x", "days": "5"})
        assert outsider.status_code == 400 and "school email" in outsider.text
    received = school.mailbox.wait_for(SIRO, "Tom Brown to SEN records", text_contains="Annual review prep")
    request_id = int(re.search(r"Access request #(\d+)", str(received.message["Subject"])).group(1))  # type: ignore[union-attr]
    school.mailbox.wait_for("teacher@school.example.org", f"Access request #{request_id} sent")
