"""Seeded faults, a write log and kill points that both emulators, the tests and the bench share.

`FaultSpec` says how often and which faults a running emulator injects into the requests it is
sent (`--faults rate=0.2,seed=7,kinds=throttle+reset_after` on either emulator's command line,
or `faults=FaultSpec(...)` from Python). Each API request draws once (a batch's parts draw again,
each for itself, but only the kinds a service answers part by part):

- `throttle`: 429 with `Retry-After` (`retry_after` seconds), nothing applied;
- `unavailable`: 503, nothing applied;
- `reset_before`: the connection is closed before anything is applied;
- `reset_after`: the request is applied, then the connection is closed without a reply (the
  caller cannot know it landed);
- `hang`: the request is applied, then the connection is held `hang` seconds without a reply and
  closed (the caller's timeout must fire first).

The draws come from one generator seeded with `seed`, so a run sends the same faults to the same
sequence of requests (requests in flight at once may take each other's draws). Token requests
and the `/_emulator/...` control paths never fault.

`WriteLog` is the emulator's own record of every write it applied (each batch part counted, as the
services count them; passwords never kept), read back over `GET /_emulator/writes`. A kill point
armed on it (`POST /_emulator/kill {"pid": P, "after": N}`) sends SIGKILL to process P the moment
the log holds N writes: after the Nth write is applied and before its reply leaves, which is the
worst moment for the caller. With `"settle": S` the emulator freezes there instead (answers nothing
more) and kills P S seconds later, or when told (`{"pid": P, "now": true}`): whatever the caller
had heard by the freeze it has had time to record, so a test can ask whether it did.
`kill_points` picks such points at random (seeded), spread over a run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("throttle", "unavailable", "reset_before", "reset_after", "hang")
PART_KINDS = ("throttle", "unavailable")
"""Faults a batch part can meet on its own: the services answer those part by part; a reset or a
hang is the whole connection's."""


@dataclass(frozen=True)
class FaultSpec:
    """How often (`rate`, 0-1 per request) and which faults (`kinds`) an emulator injects."""

    rate: float = 0.0
    seed: int = 0
    kinds: tuple[str, ...] = FAULT_KINDS
    retry_after: int = 1
    """Seconds a 429 asks the caller to wait."""
    hang: float = 30.0
    """Seconds a hung request holds its connection before closing it unanswered."""
    writes_only: bool = False
    """Only requests that write (and batches) fault; reads are answered."""
    limit: int = 0
    """At most this many faults in all (0: no limit): `rate=1,kinds=reset_after,limit=1` loses the
    answer to the first request only, so a test can ask what one lost answer leads to."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, not {self.rate}")
        unknown = [k for k in self.kinds if k not in FAULT_KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"unknown fault kind {unknown[0] if unknown else '(none)'!r}; "
                             f"kinds are {'+'.join(FAULT_KINDS)}")
        if self.retry_after < 0 or self.hang < 0:
            raise ValueError("retry_after and hang are seconds, 0 or more")
        if self.limit < 0:
            raise ValueError("limit is a number of faults, 0 (no limit) or more")

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """`rate=0.2,seed=7,kinds=throttle+hang,retry_after=1,hang=30,writes_only=1,limit=0` (any subset)."""
        values: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, equals, raw = item.partition("=")
            name = name.strip()
            if not equals:
                raise ValueError(f"{item!r} is not name=value (e.g. rate=0.2)")
            try:
                if name == "rate":
                    values[name] = float(raw)
                elif name in ("seed", "retry_after", "limit"):
                    values[name] = int(raw)
                elif name == "hang":
                    values[name] = float(raw)
                elif name == "kinds":
                    values[name] = tuple(k.strip() for k in raw.split("+") if k.strip())
                elif name == "writes_only":
                    values[name] = raw.strip().lower() in ("1", "true", "yes")
                else:
                    raise ValueError(f"unknown setting {name!r}; settings are rate, seed, kinds, retry_after, "
                                     "hang, writes_only, limit")
            except ValueError as error:
                if "setting" in str(error):
                    raise
                raise ValueError(f"{name}={raw!r} is not a number") from None
        return cls(**values)

    def to_arg(self) -> str:
        """The `--faults` argument that makes this spec in an emulator process."""
        return (f"rate={self.rate},seed={self.seed},kinds={'+'.join(self.kinds)},retry_after={self.retry_after},"
                f"hang={self.hang},writes_only={int(self.writes_only)},limit={self.limit}")


def faults_argument(text: str) -> FaultSpec:
    """argparse `type=` for `--faults`: a mistake is one line naming it."""
    try:
        return FaultSpec.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


@dataclass
class FaultInjector:
    """Draws the faults of a `FaultSpec` and counts those it injected (`fired`)."""

    spec: FaultSpec = field(default_factory=FaultSpec)
    fired: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.random = random.Random(self.spec.seed)  # noqa: S311 - reproducible faults, not security

    def draw(self, *, writes: bool, part: bool = False) -> str | None:
        """The fault for one request (or, `part`, one batch part), or None. `writes`: it changes something."""
        spec = self.spec
        if spec.rate <= 0 or (spec.writes_only and not writes):
            return None
        kinds = [k for k in spec.kinds if k in PART_KINDS] if part else list(spec.kinds)
        with self.lock:
            # Two draws every time, so the stream stays in step whichever kinds are allowed.
            roll, pick = self.random.random(), self.random.random()
            if not kinds or roll >= spec.rate or (spec.limit and sum(self.fired.values()) >= spec.limit):
                return None
            kind = kinds[int(pick * len(kinds))]
            self.fired[kind] += 1
            return kind


class WriteLog:
    """Every write an emulator applied, in order; when its reply left; and the kill point armed on it.

    Each entry holds `at` (when it was applied) and, once the reply that carried it was sent,
    `answered` (both `time.monotonic()` of the emulator's process); `killed_at` is when the armed
    kill fired. A write answered well before the kill is one the tool had heard of: a test can ask
    whether the tool had recorded it by then (results recorded as they arrive, not per phase).
    """

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.killed_at: float | None = None
        self.frozen_at: float | None = None
        """When an armed kill point with `settle` was reached: from then on nothing is answered."""
        self._kill: tuple[int, int, float] | None = None
        self._thawed = threading.Event()
        self._thawed.set()
        self._killed: set[int] = set()
        self._unanswered: dict[int, list[int]] = {}
        """Per handler thread (one connection each): entries applied by the request it is answering."""

    def __len__(self) -> int:
        with self.lock:
            return len(self.entries)

    def record(self, entry: dict[str, Any]) -> None:
        """One applied write (never a password: see `without_secrets`)."""
        with self.lock:
            self.entries.append({"n": len(self.entries) + 1, "at": time.monotonic(), **entry})
            self._unanswered.setdefault(threading.get_ident(), []).append(len(self.entries) - 1)
            kill = self._kill
            if kill is not None and len(self.entries) >= kill[1]:
                self._kill = None
                if kill[2] > 0:
                    # The directory stops answering, then the caller dies: it has `settle` seconds to
                    # record what it had heard, and hears nothing more.
                    self.frozen_at = time.monotonic()
                    self._thawed.clear()
                    threading.Timer(kill[2], self.kill_now, (kill[0],)).start()
                else:
                    self._kill_locked(kill[0])

    def _kill_locked(self, pid: int) -> None:
        self._killed.add(pid)
        self.killed_at = time.monotonic()
        # Before the reply leaves: the caller dies not knowing this write landed.
        with contextlib.suppress(ProcessLookupError):  # it ended already
            os.kill(pid, signal.SIGKILL)

    def kill_now(self, pid: int) -> None:
        """SIGKILL `pid` now (the end of a freeze: a test may end it sooner, once the caller is idle)."""
        with self.lock:
            if pid not in self._killed:  # once: a freeze's timer may fire after the test killed it
                self._kill_locked(pid)

    def hold(self) -> bool:
        """Called before a request is served and before a reply is sent: waits out a freeze.

        True when the request came during a freeze: the caller is dead by now, so the request is not
        served and the reply not sent (its writes stay unheard of)."""
        if self._thawed.is_set():
            return False
        self._thawed.wait()
        return True

    def answered(self) -> None:
        """The reply to this thread's request was sent: its writes are known to the caller."""
        with self.lock:
            now = time.monotonic()
            for index in self._unanswered.pop(threading.get_ident(), []):
                self.entries[index]["answered"] = now

    def lost(self) -> None:
        """This thread's reply was never sent (a dropped connection): its writes stay unheard of."""
        with self.lock:
            self._unanswered.pop(threading.get_ident(), None)

    def since(self, start: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(entry) for entry in self.entries[start:]]

    def arm_kill(self, pid: int, after: int, settle: float = 0.0) -> None:
        """SIGKILL `pid` once the log holds `after` writes (at once if it already does, on the next write).

        `settle` > 0: freeze instead (nothing more is answered) and kill `settle` seconds later, or
        sooner through `kill_now`.
        """
        with self.lock:
            self._kill = (pid, max(after, len(self.entries) + 1), settle)
            self.killed_at = self.frozen_at = None

    def disarm(self) -> None:
        """No kill point; a freeze ends (what was held is dropped)."""
        with self.lock:
            self._kill = None
        self._thawed.set()

    def __iter__(self) -> Iterator[tuple[float, str, str, int]]:
        """(applied at, method, path, status) of each write."""
        return iter([(e["at"], e["method"], e["path"], e["status"]) for e in self.since()])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def kill_order(log: WriteLog, order: dict[str, Any]) -> dict[str, Any]:
    """`POST /_emulator/kill`: {"pid", "after", "settle"} arms, {"pid", "now": true} kills, {"pid": null}
    disarms, {"peek": true} only tells."""
    if order.get("peek"):
        pass
    elif order.get("pid") is None:
        log.disarm()
    elif order.get("now"):
        log.kill_now(int(order["pid"]))
    else:
        log.arm_kill(int(order["pid"]), int(order["after"]), float(order.get("settle", 0.0)))
    return {"applied_writes": len(log), "frozen_at": log.frozen_at, "killed_at": log.killed_at}


def without_secrets(body: Any) -> Any:
    """A write's body for the log: passwords replaced by "(set)"."""
    if isinstance(body, dict):
        return {k: "(set)" if k in ("password", "passwordProfile") else without_secrets(v) for k, v in body.items()}
    if isinstance(body, list):
        return [without_secrets(v) for v in body]
    return body


def kill_points(seed: int, writes: int, count: int) -> list[int]:
    """`count` write numbers in 1..writes-1, one drawn in each of `count` equal stretches of the run.

    Spread so that the kills fall early, in the middle and late (creates, memberships, leavers), and
    seeded so that a failing test names the same points again.
    """
    if writes < count + 1:
        raise ValueError(f"{writes} writes are too few for {count} kill points")
    rng = random.Random(seed)  # noqa: S311 - reproducible kill points, not security
    width = (writes - 1) / count
    points = [1 + int(i * width) + rng.randrange(max(1, int(width))) for i in range(count)]
    return sorted(set(min(p, writes - 1) for p in points))


__all__ = ["FAULT_KINDS", "PART_KINDS", "FaultInjector", "FaultSpec", "WriteLog", "faults_argument", "kill_points",
           "without_secrets"]
