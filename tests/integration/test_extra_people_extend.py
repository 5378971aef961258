"""A supply teacher's whole life past her first end date: added, provisioned by the nightly job in the Graph
emulator, her sponsor warned a week before by a real SMTP server (aiosmtpd), the emailed link opened and the form
sent in Debian's headless Chromium, the next night not disabling her on the old end date, disabled on the new one.
And the links that must not work: forged, expired, reused, an approval link, a date past max_days.

The web app checks links against the real clock, so the dates here are counted from today.
"""

from __future__ import annotations

import csv
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from idlifecycle.access.tokens import Signer
from idlifecycle.cli import main
from idlifecycle.job import load_job
from idlifecycle.sandbox.graph import GraphEmulator
from tests.integration.access_support import (
    SIGNING_KEY,
    SMTP_PASSWORD,
    Mailbox,
    Received,
    ServedApp,
    free_port,
    mailbox,
    serve,
    smtp_mail_table,
    stop,
)
from tests.integration.graph_fixtures import *  # noqa: F403
from tests.integration.graph_fixtures import CLIENT_SECRET, STAFF
from tests.integration.test_entra_job import STAFF_HEADER, by_anchor, night
from tests.integration.test_extra_people_job import supply_school

__all__ = ["mailbox"]
CHROMIUM = "/usr/bin/chromium"
SPONSOR_EMAIL = f"jane.doe@{STAFF}"
SUMMARY_TO = "it@school.example.org"
EXTEND_LINK = re.compile(r"(https?://\S+/extend\?t=[A-Za-z0-9._-]+)")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
TODAY = datetime.now(UTC).date()


def day(n: int) -> date:
    return TODAY + timedelta(days=n)


def write_sponsors(tmp: Path) -> None:
    """The school's staff: Jane Doe (JDO) with an email in the MIS, Karl Smith (KSM) without one."""
    with (tmp / "staff.csv").open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle).writerows([
            [*STAFF_HEADER, "Staff Email"],
            ["JDO", "Mrs", "Jane", "Doe", "Teacher", "01/09/2019", "", SPONSOR_EMAIL],
            ["KSM", "Mr", "Karl", "Smith", "Teacher", "01/09/2019", "", ""],  # no email in the MIS
        ])


def school(tmp: Path, emulator: GraphEmulator, mailbox: Mailbox, base_url: str) -> Path:
    job = supply_school(tmp, emulator)
    write_sponsors(tmp)
    with job.open("a", encoding="utf-8") as out:
        out.write(smtp_mail_table(mailbox) + f"""
[web]
public_base_url = "{base_url}"

[report]
summary_to = ["{SUMMARY_TO}"]
""")
    return job


@pytest.fixture
def served(make_emulator: Callable[..., GraphEmulator], tmp_path: Path, mailbox: Mailbox,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, ServedApp]]:
    from tests.integration.test_entra_job import seed

    monkeypatch.setenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("IDLIFECYCLE_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv("IDLIFECYCLE_APPROVAL_SIGNING_KEY", SIGNING_KEY)
    port = free_port()
    job = school(tmp_path, make_emulator(seed()), mailbox, f"http://127.0.0.1:{port}")
    app = serve(job, port)
    try:
        yield job, app
    finally:
        stop(app)


def add(job: Path, first: str, sponsor: str, end: date) -> str:
    assert main(["--today", TODAY.isoformat(), "people", "add", "--job", str(job), "--kind", "supply", "--first",
                 first, "--last", "Tyler", "--sponsor", sponsor, "--start", TODAY.isoformat(),
                 "--end", end.isoformat()]) == 0
    text = (job.parent / "extra-people.toml").read_text(encoding="utf-8")
    return re.findall(r'id = "(X-[0-9A-F]{8})"', text)[-1]


def warnings_to(mailbox: Mailbox, to: str, first: str) -> list[Received]:
    return [m for m in mailbox.messages if to in m.recipients and f"{first} Tyler's access ends" in
            str(m.message["Subject"])]


def link_in(received: Received) -> str:
    match = EXTEND_LINK.search(received.text)
    assert match, received.text
    return match.group(1)


def audit(job_file: Path, event: str) -> list[dict[str, object]]:
    job = load_job(job_file)
    try:
        return [dict(e.data, actor=e.actor) for e in job.store.audit_entries() if e.event == event]
    finally:
        job.close()


@pytest.mark.browser
def test_a_supply_teacher_is_warned_extended_in_a_browser_and_disabled_on_her_new_end_date(
        served: tuple[Path, ServedApp], mailbox: Mailbox) -> None:
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    job, _ = served
    rose = add(job, "Rose", "JDO", day(20))
    sam = add(job, "Sam", "KSM", day(20))  # sponsored by a teacher the MIS has no email for

    report, snap = night(job, TODAY)
    assert report.status == "ok", report.failures
    assert by_anchor(snap)[rose].enabled and by_anchor(snap)[sam].enabled
    report, _ = night(job, day(12))  # eight days before: not yet
    assert not warnings_to(mailbox, SPONSOR_EMAIL, "Rose")

    report, _ = night(job, day(13))  # a week before: the sponsor is told, Sam's to the summary address
    warned = warnings_to(mailbox, SPONSOR_EMAIL, "Rose")
    assert len(warned) == 1 and "Dear Jane Doe" in warned[0].text
    assert len(warnings_to(mailbox, SUMMARY_TO, "Sam")) == 1
    assert report.sponsor_notes == (f"the sponsor KSM of Sam Tyler ({sam}) has no email on the feed: the warning "
                                    f"that their access ends on {day(20)} went to {SUMMARY_TO}",)
    night(job, day(14))  # the next night: no second warning about the same end date
    assert len(warnings_to(mailbox, SPONSOR_EMAIL, "Rose")) == 1

    link = link_in(warned[0])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            response = page.goto(link)
            assert response is not None and response.status == 200
            assert page.locator("h1").inner_text() == "Extend access"
            assert f"{day(20):%d %b %Y}" in page.content() and "supply" in page.content()
            page.fill("input[name=end]", day(40).isoformat())
            page.get_by_role("button", name="Extend").click()
            page.wait_for_load_state()
            assert page.locator("h1").inner_text() == "Access extended"
            assert f"now ends on {day(40):%d %b %Y}" in page.content()
            page.goto(link)  # the same link again: spent
            assert page.locator("h1").inner_text() == "This link cannot be used"
        finally:
            browser.close()

    extra_file = job.parent / "extra-people.toml"
    text = extra_file.read_text(encoding="utf-8")
    assert text.startswith("# People outside the MIS") and f"end = {day(40).isoformat()}" in text
    assert stat.S_IMODE(extra_file.stat().st_mode) == 0o600
    [extended] = audit(job, "extra-person-extended")
    assert extended["person_id"] == rose and extended["actor"] == "JDO"
    assert (extended["from"], extended["to"]) == (str(day(20)), str(day(40)))

    _, snap = night(job, day(20))  # the old end date: Rose stays, Sam (not extended) goes
    assert by_anchor(snap)[rose].enabled and not by_anchor(snap)[sam].enabled
    night(job, day(33))  # a week before the new end date: a warning of its own
    assert len(warnings_to(mailbox, SPONSOR_EMAIL, "Rose")) == 2
    _, snap = night(job, day(40))
    assert not by_anchor(snap)[rose].enabled


def issued_link(job_file: Path, person_id: str, end: date, expires: datetime) -> str:
    """A genuine extend link, recorded as the nightly warning records one, that expired a minute ago."""
    token, claims = Signer(SIGNING_KEY).mint_extend(person_id, "JDO", end, expires)
    job = load_job(job_file)
    try:
        job.store.db.execute("INSERT INTO extend_links VALUES (?,?,?,?,?,?,NULL)",
                             (claims.nonce, person_id, "JDO", end.isoformat(), expires.isoformat(),
                              expires.isoformat()))
    finally:
        job.close()
    return token


def refused(response: httpx.Response) -> str:
    assert "Traceback" not in response.text
    return response.text


def test_forged_reused_approval_and_too_long_extend_requests_are_refused_and_change_nothing(
        served: tuple[Path, ServedApp], mailbox: Mailbox) -> None:
    job, app = served
    rose = add(job, "Rosa", "JDO", day(10))
    night(job, day(3))
    link = link_in(warnings_to(mailbox, SPONSOR_EMAIL, "Rosa")[0])
    extra_file = job.parent / "extra-people.toml"
    before = extra_file.read_text(encoding="utf-8")
    token = link.split("t=", 1)[1]

    with httpx.Client() as browser:
        forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
        response = browser.get(f"{app.base_url}/extend", params={"t": forged})
        assert response.status_code == 403 and "was not issued by this service" in refused(response)
        approval, _ = Signer(SIGNING_KEY).mint(1, "siro@school.example.org", datetime.now(UTC) + timedelta(days=1))
        response = browser.get(f"{app.base_url}/extend", params={"t": approval})
        assert response.status_code == 400 and "not an extend link" in refused(response)
        expired = issued_link(job, rose, day(10), datetime.now(UTC) - timedelta(minutes=1))
        response = browser.get(f"{app.base_url}/extend", params={"t": expired})
        assert response.status_code == 410 and "has expired" in refused(response)

        page = browser.get(link)
        assert page.status_code == 200, page.text
        csrf = CSRF.search(page.text)
        assert csrf is not None
        form = {"t": token, "csrf": csrf.group(1)}
        too_long = browser.post(f"{app.base_url}/extend", data={**form, "end": day(96).isoformat()})
        assert too_long.status_code == 400 and "at most 95 days" in refused(too_long)
        no_csrf = browser.post(f"{app.base_url}/extend", data={"t": token, "csrf": "x", "end": day(30).isoformat()})
        assert no_csrf.status_code == 403
        assert extra_file.read_text(encoding="utf-8") == before  # nothing changed, and the link still works

        done = browser.post(f"{app.base_url}/extend", data={**form, "end": day(30).isoformat()})
        assert done.status_code == 200 and "Access extended" in done.text
        again = browser.post(f"{app.base_url}/extend", data={**form, "end": day(60).isoformat()})
        assert again.status_code == 409 and "already been used" in refused(again)
    assert f"end = {day(30).isoformat()}" in extra_file.read_text(encoding="utf-8")
    assert len(audit(job, "extra-person-extended")) == 1
    assert rose


def test_people_extend_from_the_command_line_holds_the_maximum_and_is_audited(
        served: tuple[Path, ServedApp], capsys: pytest.CaptureFixture[str]) -> None:
    job, _ = served
    rose = add(job, "Rhea", "JDO", day(10))
    capsys.readouterr()
    extend = ["--today", TODAY.isoformat(), "people", "extend", rose, "--job", str(job), "--end"]
    assert main([*extend, day(96).isoformat()]) == 1
    assert "at most 95 days" in capsys.readouterr().err
    assert main([*extend, day(5).isoformat()]) == 1
    assert "is not after the current one" in capsys.readouterr().err
    assert main([*extend, day(40).isoformat()]) == 0
    assert f"from {day(10)} to {day(40)}" in capsys.readouterr().out
    [extended] = audit(job, "extra-person-extended")
    assert extended["via"] == "people extend" and extended["to"] == str(day(40))
