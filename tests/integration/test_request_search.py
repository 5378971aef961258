"""The request form with staff sign-in: the person is chosen from a search of the roll, by an opaque reference
only this session was shown, through the running app and the emulators as the school's identity provider."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.access_support import CSRF_FIELD, Mailbox, mailbox
from tests.integration.signin_support import (
    DEPUTY,
    SIRO,
    TEACHER,
    IdentityProvider,
    SignInSchool,
    audit,
    idp,
    running_sign_in_school,
    sign_in,
)

__all__ = ["idp", "mailbox"]
CHOICE = re.compile(r'name="person" value="([^"]+)"[^>]*> ([^<]+)</label>')


@pytest.fixture(scope="module")
def school(idp: IdentityProvider, mailbox: Mailbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignInSchool]:
    yield from running_sign_in_school(idp, mailbox, tmp_path_factory.mktemp("search"))


def search(browser: httpx.Client, school: SignInSchool, query: str) -> tuple[httpx.Response, dict[str, str]]:
    """The page for `query`, and its choices: what each says -> its reference."""
    answer = browser.get(f"{school.base_url}/request", params={"q": query})
    return answer, {label: ref for ref, label in CHOICE.findall(answer.text)}


def form_csrf(page: str) -> str:
    found = CSRF_FIELD.search(page.split('method="post" action="/request"', 1)[1])  # not the sign-out form's
    assert found is not None
    return found.group(1)


def send(browser: httpx.Client, school: SignInSchool, csrf: str, person: str, reason: str) -> httpx.Response:
    return browser.post(f"{school.base_url}/request", data={
        "csrf": csrf, "share": "sen-records", "person": person, "reason": reason, "days": "3"})


def test_the_person_is_found_by_name_without_accents_and_the_request_names_them(school: SignInSchool) -> None:
    reason = f"Covering the SEN reviews, ref {school.app.server.config.port}-found"
    with school.browser() as browser:
        sign_in(browser, school.base_url, TEACHER, "/request")
        page, choices = search(browser, school, "sian EVANS")
        assert page.status_code == 200 and list(choices) == ["Siân Evans (staff)"]
        assert 'name="person" value="SEV"' not in page.text and "SEV" not in page.text  # the MIS id is not shown
        assert send(browser, school, form_csrf(page.text), choices["Siân Evans (staff)"], reason).status_code == 200
    mail = school.mailbox.wait_for(SIRO, "Access request #", text_contains=reason)
    assert "Siân Evans" in mail.text and TEACHER in mail.text
    assert any(r["person_id"] == "SEV" and r["requester"] == TEACHER for r in audit(school, "access-requested"))


def test_a_leaver_is_not_offered_and_a_short_search_is_refused(school: SignInSchool) -> None:
    with school.browser() as browser:
        sign_in(browser, school.base_url, TEACHER, "/request")
        page, choices = search(browser, school, "Lee Left")  # staff whose end date has passed
        assert page.status_code == 200 and not choices and "Nobody on roll matches" in page.text
        short = browser.get(f"{school.base_url}/request", params={"q": "e"})
        assert short.status_code == 400 and "at least 2 letters" in short.text


@pytest.mark.parametrize("person", ["SEV", "", "forged-reference-0123456789"], ids=["typed-mis-id", "none", "forged"])
def test_a_person_not_chosen_from_this_sessions_search_is_refused_and_nothing_is_sent(
        school: SignInSchool, person: str) -> None:
    reason = f"Not chosen {person!r} {school.app.server.config.port}"
    with school.browser() as browser:
        sign_in(browser, school.base_url, TEACHER, "/request")
        page, _ = search(browser, school, "Evans")
        answer = send(browser, school, form_csrf(page.text), person, reason)
        assert answer.status_code == 403 and "Choose the person from the search" in answer.text
    assert not any(r["reason"] == reason for r in audit(school, "access-requested"))
    assert any(r["reason"] == "request-person-reference" for r in audit(school, "approval-link-refused"))


def test_another_sessions_reference_names_nobody(school: SignInSchool) -> None:
    """A reference copied from a colleague's page (or an earlier sign-in) is refused: it is this session's only."""
    reason = f"Copied reference {school.app.server.config.port}"
    with school.browser() as colleague:
        sign_in(colleague, school.base_url, DEPUTY, "/request")
        _, theirs = search(colleague, school, "Tom Brown")
        copied = theirs["Tom Brown (staff)"]
    with school.browser() as browser:
        sign_in(browser, school.base_url, TEACHER, "/request")
        page, _ = search(browser, school, "Tom Brown")
        assert send(browser, school, form_csrf(page.text), copied, reason).status_code == 403
    assert not any(r["reason"] == reason for r in audit(school, "access-requested"))


def test_searches_are_limited_per_signed_in_account(school: SignInSchool) -> None:
    """A burst of 30 searches, then a wait: the roll cannot be listed by a script with a colleague's session.
    The limit is the account's: another member of staff still searches."""
    with school.browser() as browser:
        sign_in(browser, school.base_url, SIRO, "/request")
        answers = [search(browser, school, 'Tom Brown' if n % 2 else 'Brown')[0].status_code for n in range(31)]
        assert answers[:30] == [200] * 30 and answers[30] == 429
        assert int(browser.get(f"{school.base_url}/request", params={"q": "Brown"}).headers["retry-after"]) > 0
        assert browser.get(f"{school.base_url}/request").status_code == 200  # the form without a search still opens
    with school.browser() as other:
        sign_in(other, school.base_url, TEACHER, "/request")
        assert search(other, school, "Brown")[0].status_code == 200
