"""Passwords drawn ahead (`passwords.ahead`): each person's drawn once, in order, handed over once, ready
when asked for; one asked for out of turn is drawn by the asker; a failure reaches the asker; the
window bounds what is drawn and not taken; and a password never shows in a repr."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from idlifecycle.passwords.ahead import Ahead, Drawn


class Drawer:
    """Counts draws by person; `gate` (when given) holds every draw until it is set."""

    def __init__(self, gate: threading.Event | None = None, pause: float = 0.0) -> None:
        self.count: Counter[str] = Counter()
        self.threads: set[str] = set()
        self.gate = gate
        self.pause = pause
        self._lock = threading.Lock()

    def __call__(self, person_id: str) -> Drawn:
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.pause)
        with self._lock:
            self.count[person_id] += 1
            self.threads.add(threading.current_thread().name)
            serial = self.count[person_id]
        if person_id == "bad":
            raise RuntimeError("every password generated for bad was one used before")
        return Drawn(f"Pass-{person_id}-{serial}", f"hash-{person_id}")


def _wait_for(condition: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.005)


def test_each_person_is_drawn_once_ahead_on_other_threads_and_handed_over_once() -> None:
    draw = Drawer()
    people = [f"P{n:03d}" for n in range(40)]
    ahead = Ahead(draw, people)
    _wait_for(lambda: sum(draw.count.values()) == 40)
    taken = [ahead.take(pid) for pid in people]
    assert [t.password for t in taken] == [f"Pass-{pid}-1" for pid in people]
    assert set(draw.count.values()) == {1}
    assert threading.current_thread().name not in draw.threads, "drawn on the asking thread, not ahead"
    # Asked for again, a person is drawn afresh: the first one was handed over and is not kept.
    assert ahead.take("P000").password == "Pass-P000-2"


def test_one_asked_for_before_its_turn_is_drawn_by_the_asker_and_not_again() -> None:
    gate = threading.Event()
    draw = Drawer(gate)
    ahead = Ahead(draw, ["P1", "P2", "P3", "P4", "P5"], threads=1)
    # The one thread is held on P1: P5 is not being drawn, so this thread draws it (at once, not waiting).
    threading.Timer(0.3, gate.set).start()
    began = time.monotonic()
    assert ahead.take("P5").password == "Pass-P5-1"
    assert time.monotonic() - began >= 0.2, "the asker's own draw waits for the gate like any"
    assert ahead.take("P1").password == "Pass-P1-1"  # was being drawn: waited for, not drawn twice
    for pid in ("P2", "P3", "P4"):
        ahead.take(pid)
    assert draw.count == Counter({"P1": 1, "P2": 1, "P3": 1, "P4": 1, "P5": 1})


def test_a_failed_draw_is_raised_to_the_asker() -> None:
    ahead = Ahead(Drawer(), ["ok", "bad"])
    assert ahead.take("ok").password == "Pass-ok-1"
    with pytest.raises(RuntimeError, match="one used before"):
        ahead.take("bad")


def test_no_more_than_the_window_is_drawn_and_not_taken() -> None:
    draw = Drawer()
    people = [f"P{n:03d}" for n in range(30)]
    ahead = Ahead(draw, people, window=5)
    _wait_for(lambda: sum(draw.count.values()) >= 5)
    time.sleep(0.2)
    assert sum(draw.count.values()) == 5
    ahead.take("P000")
    _wait_for(lambda: sum(draw.count.values()) >= 6)
    time.sleep(0.2)
    assert sum(draw.count.values()) == 6
    # Taken out of order past the window: drawn by the asker, nothing waits for the full window.
    assert ahead.take("P029").password == "Pass-P029-1"


def test_closed_it_draws_nothing_more_and_still_answers() -> None:
    draw = Drawer(pause=0.02)
    people = [f"P{n:03d}" for n in range(50)]
    ahead = Ahead(draw, people, threads=1)
    ahead.close()
    time.sleep(0.2)
    assert sum(draw.count.values()) <= 1  # at most the one being drawn as it closed
    assert ahead.take("P040").password == "Pass-P040-1"


def test_a_drawn_password_never_shows_in_its_repr() -> None:
    drawn = Drawn("Correct-Horse-42", "scrypt$...")
    assert "Correct-Horse-42" not in repr(drawn) and "Correct-Horse-42" not in str(drawn)
