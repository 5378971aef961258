"""The request form's token buckets, on a clock the test moves: refill, the total, and bounded memory."""

from __future__ import annotations

from idlifecycle.web.app import FormLimits, FormThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_that_used_its_five_may_send_again_once_a_token_has_refilled() -> None:
    clock = Clock()
    throttle = FormThrottle(FormLimits(), clock)
    assert [throttle.wait("10.0.0.1") for _ in range(5)] == [0.0] * 5
    wait = throttle.wait("10.0.0.1")
    assert 179 < wait <= 180  # 20 an hour: one every three minutes
    clock.now += wait
    assert throttle.wait("10.0.0.1") == 0.0
    assert throttle.wait("10.0.0.1") > 0


def test_an_address_refused_by_the_total_keeps_its_own_token() -> None:
    clock = Clock()
    throttle = FormThrottle(FormLimits(burst_total=2, total_per_hour=60), clock)
    assert throttle.wait("a") == 0.0 and throttle.wait("b") == 0.0
    assert throttle.wait("c") > 0
    assert throttle.addresses["c"].tokens == 5


def test_spoofed_addresses_cannot_grow_the_throttles_memory_without_bound() -> None:
    throttle = FormThrottle(FormLimits(max_addresses=100, burst_total=10**6, total_per_hour=10**6), Clock())
    for n in range(5000):
        throttle.wait(f"10.{n // 256}.{n % 256}.1")
    assert len(throttle.addresses) <= 100


def test_addresses_in_one_ipv6_64_share_a_bucket() -> None:
    throttle = FormThrottle(FormLimits(), Clock())
    assert [throttle.wait(f"2001:db8:1:2::{n:x}") for n in range(5)] == [0.0] * 5
    assert throttle.wait("2001:db8:1:2:ffff::1") > 0
    assert throttle.wait("2001:db8:1:3::1") == 0.0
