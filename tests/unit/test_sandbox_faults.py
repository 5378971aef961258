"""The fault harness's settings: `--faults` text, kill points spread over a run, and what the log keeps."""

from __future__ import annotations

import subprocess
import sys

import pytest

from idlifecycle.sandbox.faults import FAULT_KINDS, FaultInjector, FaultSpec, WriteLog, kill_points, without_secrets


def test_a_faults_argument_names_rate_seed_and_kinds_and_round_trips() -> None:
    spec = FaultSpec.parse("rate=0.2,seed=7,kinds=throttle+reset_after,hang=3")
    assert spec == FaultSpec(rate=0.2, seed=7, kinds=("throttle", "reset_after"), hang=3.0)
    assert FaultSpec.parse(spec.to_arg()) == spec
    assert FaultSpec.parse("rate=0.1").kinds == FAULT_KINDS


@pytest.mark.parametrize(("text", "message"), [
    ("rate=2", "rate must be between 0 and 1, not 2.0"),
    ("rate=lots", "rate='lots' is not a number"),
    ("kinds=throttle+explode", "unknown fault kind 'explode'; kinds are throttle+unavailable+reset_before+"
                               "reset_after+hang"),
    ("often=1", "unknown setting 'often'"),
    ("rate", "'rate' is not name=value (e.g. rate=0.2)"),
])
def test_a_wrong_faults_argument_is_one_line_naming_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        FaultSpec.parse(text)


def test_an_emulator_given_a_wrong_faults_argument_stops_with_one_line() -> None:
    run = subprocess.run([sys.executable, "-m", "idlifecycle.sandbox.graph", "--faults", "rate=2"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].endswith(
        "error: argument --faults: rate must be between 0 and 1, not 2.0")
    assert "Traceback" not in run.stderr


def test_the_same_seed_draws_the_same_faults_at_about_the_rate() -> None:
    spec = FaultSpec(rate=0.2, seed=7)
    first = [FaultInjector(spec).draw(writes=True) for _ in range(1)]
    draws = FaultInjector(spec)
    again = FaultInjector(spec)
    a = [draws.draw(writes=True) for _ in range(2000)]
    assert a == [again.draw(writes=True) for _ in range(2000)]
    assert first[0] == a[0]
    assert 300 < sum(d is not None for d in a) < 500
    assert {d for d in a if d} == set(FAULT_KINDS)
    parts = FaultInjector(spec)
    assert {parts.draw(writes=True, part=True) for _ in range(500)} - {None} == {"throttle", "unavailable"}
    assert FaultInjector(FaultSpec(rate=1, writes_only=True)).draw(writes=False) is None


def test_kill_points_fall_one_in_each_stretch_of_the_run() -> None:
    points = kill_points(12, 792, 20)
    assert points == kill_points(12, 792, 20) and len(points) == 20
    assert points == sorted(points) and points[0] >= 1 and points[-1] < 792
    width = 791 / 20
    assert all(int(i * width) < p <= int((i + 1) * width) + 1 for i, p in enumerate(points))
    with pytest.raises(ValueError, match="too few"):
        kill_points(1, 10, 20)


def test_the_write_log_never_keeps_a_password() -> None:
    log = WriteLog()
    log.record({"method": "POST", "path": "/v1.0/users", "status": 201, "id": "u1",
                "body": without_secrets({"passwordProfile": {"password": "Secret-123"}, "displayName": "A"})})
    log.record({"method": "PATCH", "path": "/admin/directory/v1/users/x", "status": 200, "id": None,
                "body": without_secrets({"password": "Secret-456", "suspended": False})})
    assert "Secret" not in repr(log.since())
    assert [(m, p, s) for _, m, p, s in log] == [("POST", "/v1.0/users", 201),
                                                  ("PATCH", "/admin/directory/v1/users/x", 200)]


def test_a_limit_stops_the_faults_after_that_many() -> None:
    spec = FaultSpec.parse("rate=1,kinds=reset_after,limit=1")
    assert FaultSpec.parse(spec.to_arg()) == spec
    draws = FaultInjector(spec)
    assert [draws.draw(writes=True) for _ in range(3)] == ["reset_after", None, None]
    with pytest.raises(ValueError, match=r"^limit is a number of faults"):
        FaultSpec(limit=-1)
