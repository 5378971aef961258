"""Pacing under the Directory API's per-minute quota, reading its error answers, and the back-off waits.

The pacer is driven by a hand-wound clock whose sleep moves time on: no real waiting, and every
wait the pacer asks for is seen exactly.
"""

from __future__ import annotations

import json

import pytest

from idlifecycle.connectors.google.session import (
    REASONS,
    WINDOW_SECONDS,
    Pacer,
    Verdict,
    backoff,
    read_error,
    settle_delay,
)


class Clock:
    """Time that passes only when the pacer sleeps (or the test says so)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the pacer never asks for a zero or negative sleep"
        self.sleeps.append(seconds)
        self.now += seconds


def pacer(quota: int, clock: Clock) -> Pacer:
    return Pacer(quota, clock=clock, sleep=clock.sleep)


# --- pacing: calls spread at the quota's rate ------------------------------------------------------

def test_the_first_call_goes_at_once_and_the_next_waits_its_share_of_the_minute() -> None:
    clock = Clock()
    pacing = pacer(60, clock)  # one call a second
    pacing.acquire(1)
    assert clock.sleeps == []
    pacing.acquire(1)
    assert clock.sleeps == [pytest.approx(1.0)]
    pacing.acquire(1)
    assert clock.sleeps == [pytest.approx(1.0), pytest.approx(1.0)]
    assert pacing.waited == pytest.approx(2.0)


def test_a_batch_takes_as_much_of_the_minute_as_the_calls_in_it() -> None:
    clock = Clock()
    pacing = pacer(2400, clock)
    pacing.acquire(100)  # 100 of 2,400 a minute: the next call may go 2.5 s later
    pacing.acquire(1)
    assert clock.sleeps == [pytest.approx(2.5)]


def test_time_already_passed_counts_towards_the_spacing() -> None:
    clock = Clock()
    pacing = pacer(60, clock)
    pacing.acquire(10)  # next call due 10 s later
    clock.now += 4  # the batch's answer took 4 s
    pacing.acquire(1)
    assert clock.sleeps == [pytest.approx(6.0)]


def test_idle_time_is_not_saved_up_for_a_burst() -> None:
    clock = Clock()
    pacing = pacer(60, clock)
    pacing.acquire(1)
    clock.now += 300  # five quiet minutes
    pacing.acquire(1)
    assert clock.sleeps == [], "due long ago: goes at once"
    pacing.acquire(1)
    assert clock.sleeps == [pytest.approx(1.0)], "the quiet minutes earned no burst"


def test_a_batch_larger_than_the_quota_is_counted_as_one_whole_minute() -> None:
    clock = Clock()
    pacing = pacer(100, clock)
    pacing.acquire(250)  # cannot be split here; waiting 2.5 minutes for it would not help
    assert clock.sleeps == []
    pacing.acquire(1)
    assert clock.sleeps == [pytest.approx(WINDOW_SECONDS)]


def test_a_burst_goes_at_once_then_calls_are_spread_and_idle_time_earns_no_more_than_the_burst() -> None:
    clock = Clock()
    pacing = Pacer(60, burst=10, clock=clock, sleep=clock.sleep)  # one a second, ten ahead of the spread
    for _ in range(11):
        pacing.acquire(1)
        pacing.record(1)
    assert clock.sleeps == [], "the burst and the first call's own turn"
    pacing.acquire(1)
    assert clock.sleeps == [pytest.approx(1.0)]
    clock.now += 600  # ten quiet minutes
    for _ in range(11):
        pacing.acquire(1)
    assert len(clock.sleeps) == 1, "a burst again, no bigger"
    pacing.acquire(1)
    assert clock.sleeps[1:] == [pytest.approx(1.0)]


def test_a_burst_never_lets_a_window_hold_more_than_the_quota() -> None:
    clock = Clock()
    pacing = Pacer(10, burst=10, clock=clock, sleep=clock.sleep)
    sent: list[float] = []
    for _ in range(40):
        pacing.acquire(1)
        sent.append(clock.now)
        pacing.record(1)
    assert max(sum(1 for t in sent if start <= t < start + WINDOW_SECONDS) for start in sent) <= 10


# --- the sliding 60-second record ------------------------------------------------------------------

def test_a_full_minute_of_recorded_calls_holds_the_next_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    pacing = pacer(10, clock)
    pacing.record(6)  # e.g. retries, sent again without a fresh acquire
    clock.now += 30
    pacing.record(4)
    pacing.acquire(1)
    assert clock.sleeps == [pytest.approx(30.0)], "until the 6 recorded 60 s ago drop out"
    assert clock.now == pytest.approx(1060.0)


def test_the_window_waits_as_long_as_it_takes_for_enough_calls_to_leave() -> None:
    clock = Clock()
    pacing = pacer(10, clock)
    pacing.record(2)
    clock.now += 10
    pacing.record(8)  # 10 in the window; asking for 3 needs the 8 gone, not only the 2
    pacing.acquire(3)
    assert clock.now == pytest.approx(1000.0 + 10 + WINDOW_SECONDS)
    assert clock.sleeps == [pytest.approx(50.0), pytest.approx(10.0)]
    assert pacing.waited == pytest.approx(60.0)


def test_calls_recorded_a_full_minute_ago_no_longer_count() -> None:
    clock = Clock()
    pacing = pacer(10, clock)
    pacing.record(10)
    clock.now += WINDOW_SECONDS  # exactly 60 s: out of the window
    pacing.acquire(10)
    assert clock.sleeps == []


def test_room_left_in_the_window_lets_a_call_go_without_waiting() -> None:
    clock = Clock()
    pacing = pacer(10, clock)
    pacing.record(9)
    pacing.acquire(1)
    assert clock.sleeps == []


def test_a_call_is_recorded_at_the_time_its_answer_arrives() -> None:
    clock = Clock()
    pacing = pacer(10, clock)
    pacing.acquire(10)
    clock.now += 20  # the answer came back 20 s after sending
    pacing.record(10)
    clock.now += 45  # 65 s after sending, 45 s after the answer: still counted
    pacing.acquire(1)
    assert clock.now == pytest.approx(1000.0 + 20 + WINDOW_SECONDS)


# --- reading error answers -------------------------------------------------------------------------

def google_error(status: int, reason: str, message: str = "") -> bytes:
    """The body the Directory API sends (Google's JSON error format)."""
    return json.dumps({"error": {"code": status, "message": message or reason,
                                 "errors": [{"domain": "global", "reason": reason, "message": message}]}}).encode()


@pytest.mark.parametrize(("status", "reason", "verdict"), [
    (403, "userRateLimitExceeded", Verdict.RETRY),
    (403, "rateLimitExceeded", Verdict.RETRY),
    (403, "quotaExceeded", Verdict.RETRY),
    (403, "dailyLimitExceeded", Verdict.STOP),
    (403, "forbidden", Verdict.STOP),
    (403, "insufficientPermissions", Verdict.STOP),
    (401, "authError", Verdict.STOP),
    (409, "duplicate", Verdict.CONFLICT),
    (404, "notFound", Verdict.NOT_FOUND),
    (400, "invalid", Verdict.REFUSED),
    (412, "conditionNotMet", Verdict.REFUSED),
])
def test_a_known_reason_decides_whatever_the_status(status: int, reason: str, verdict: Verdict) -> None:
    answer = read_error(status, google_error(status, reason, "Some message"))
    assert (answer.status, answer.reason, answer.message, answer.verdict) == (status, reason, "Some message",
                                                                               verdict)


def test_a_rate_limit_is_read_by_its_reason_not_by_its_403() -> None:
    # Google sends rate limits as 403; by status alone a 403 would fail the change.
    assert read_error(403, google_error(403, "somethingNew")).verdict is Verdict.REFUSED
    assert read_error(403, google_error(403, "userRateLimitExceeded")).verdict is Verdict.RETRY


def test_every_documented_reason_names_its_source_page() -> None:
    assert all(rule.source.startswith("https://") for rule in REASONS.values())


def test_user_creation_not_complete_is_waited_for_not_failed() -> None:
    body = google_error(412, "conditionNotMet", "User creation is not complete.")
    assert read_error(412, body).verdict is Verdict.NOT_YET
    shouted = google_error(400, "invalid", "USER CREATION IS NOT COMPLETE")
    assert read_error(400, shouted).verdict is Verdict.NOT_YET


def test_an_error_written_as_text_is_said_not_lost() -> None:
    assert read_error(400, b'{"error": "invalid_grant", "error_description": "Invalid JWT"}').message == \
        "invalid_grant: Invalid JWT"
    assert read_error(403, b'{"error": "access denied by the proxy"}').message == "access denied by the proxy"
    assert read_error(403, b'{"error": "access denied by the proxy"}').verdict is Verdict.REFUSED


def test_a_server_error_is_retried_whatever_its_reason_says() -> None:
    assert read_error(503, google_error(503, "badRequest")).verdict is Verdict.RETRY
    assert read_error(500, google_error(500, "dailyLimitExceeded")).verdict is Verdict.RETRY
    assert read_error(503, google_error(503, "backendError")).verdict is Verdict.RETRY


@pytest.mark.parametrize(("status", "verdict"), [
    (429, Verdict.RETRY), (500, Verdict.RETRY), (502, Verdict.RETRY), (503, Verdict.RETRY),
    (401, Verdict.STOP), (409, Verdict.CONFLICT), (404, Verdict.NOT_FOUND),
    (400, Verdict.REFUSED), (403, Verdict.REFUSED), (412, Verdict.REFUSED),
])
def test_an_unknown_reason_falls_back_on_the_status(status: int, verdict: Verdict) -> None:
    assert read_error(status, google_error(status, "notInTheTable")).verdict is verdict


def test_a_success_status_is_ok() -> None:
    assert read_error(200, b"{}").verdict is Verdict.OK
    assert read_error(204, b"").verdict is Verdict.OK


def test_a_body_that_is_not_json_is_kept_short_as_the_message() -> None:
    html = b"<html><body>" + b"Bad Gateway " * 50 + b"</body></html>"
    answer = read_error(502, html)
    assert answer.verdict is Verdict.RETRY and answer.reason == ""
    assert answer.message == html.decode()[:200]
    assert read_error(403, "<html>Forbidden by proxy</html>").message == "<html>Forbidden by proxy</html>"
    assert read_error(400, b"\xff\xfe not utf-8").message.endswith("not utf-8")


def test_an_empty_body_falls_back_on_the_status() -> None:
    answer = read_error(404, b"")
    assert (answer.reason, answer.message, answer.verdict) == ("", "", Verdict.NOT_FOUND)


def test_a_json_body_in_another_shape_is_read_by_status() -> None:
    for body in (b"[]", b"null", b'"text"', b'{"error": {"errors": []}}', b'{"error": "text"}',
                 b'{"error": {"message": "m", "errors": ["text"]}}'):
        assert read_error(409, body).verdict is Verdict.CONFLICT, body
    assert read_error(400, b'{"error": {"message": "Bad thing"}}').message == "Bad thing"


def test_errors_given_as_an_object_or_a_number_are_read_by_status_not_raised() -> None:
    # Found by these tests: `errors` not a list raised KeyError / TypeError out of read_error, and so
    # out of the connector's error handling, as a traceback.
    for body in (b'{"error": {"errors": {"reason": "duplicate"}}}', b'{"error": {"errors": 3}}'):
        answer = read_error(409, body)
        assert (answer.reason, answer.verdict) == ("", Verdict.CONFLICT), body
        assert answer.message == body.decode()


# --- back-off and settle waits ---------------------------------------------------------------------

@pytest.mark.parametrize(("attempt", "cap"), [(0, 0.5), (1, 1.0), (3, 4.0), (6, 32.0), (30, 32.0)])
def test_backoff_is_full_jitter_up_to_an_exponential_cap(attempt: int, cap: float) -> None:
    waits = [backoff(attempt) for _ in range(400)]
    assert all(0 <= w <= cap for w in waits)
    # Full jitter: the draws span the range, so retries from many items do not line up.
    assert max(waits) > 0.8 * cap and min(waits) < 0.2 * cap
    assert len(set(waits)) > 300


def test_backoff_takes_its_base_and_ceiling() -> None:
    assert all(0 <= backoff(4, base=1.0, ceiling=5.0) <= 5.0 for _ in range(200))
    assert max(backoff(2, base=2.0, ceiling=100.0) for _ in range(400)) > 6.0


@pytest.mark.parametrize(("attempt", "step"), [(0, 0.25), (2, 1.0), (5, 8.0), (12, 8.0)])
def test_settle_delay_is_at_least_half_its_step(attempt: int, step: float) -> None:
    waits = [settle_delay(attempt) for _ in range(400)]
    assert all(step / 2 <= w <= step for w in waits)
    assert max(waits) > 0.9 * step and min(waits) < 0.6 * step
