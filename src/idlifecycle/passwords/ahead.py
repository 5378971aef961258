"""Passwords drawn ahead: the slow part of issuing them done on threads of their own, before they are asked for.

Issuing a new password is mostly drawing it: generating one, checking it against the person's last
passwords and hashing it for the history, each check and the hash a scrypt (about 40 ms here). Done
when a directory's worker asks for it, that is on the night's critical path, once per new account.
`Ahead` draws the plan's passwords in the plan's order on two threads (hashlib.scrypt releases the
GIL, so they use other cores while the workers wait on the network) and `take` hands one over.

Nothing is recorded here, and nothing here touches the store: a drawn password is in memory only
until it is taken; the issuer records it (history, then delivery) once, on the taking thread, and the
executor writes it ahead as owed before sending it. A password drawn and never taken (the run stopped
first) was seen by nothing and is dropped with the process. At most `window` passwords are drawn and
not yet taken, so a run that stops early wastes little; one asked for before its turn is drawn by the
thread asking for it.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import NamedTuple


class Drawn(NamedTuple):
    password: str
    hashed: str
    """Its history entry (salted scrypt), made with it, so recording it later costs no hashing."""

    def __repr__(self) -> str:  # never shown, even in a traceback's locals
        return "Drawn(password=<hidden>)"


Draw = Callable[[str], Drawn]
"""Draws a password for one person_id; pure work (no store), safe on any thread."""


class Ahead:
    """Draws passwords for `person_ids`, in that order, on `threads` threads of its own."""

    def __init__(self, draw: Draw, person_ids: Iterable[str], *, threads: int | None = None,
                 window: int = 512) -> None:
        self._draw = draw
        self._waiting: deque[str] = deque(dict.fromkeys(person_ids))
        self._unclaimed = set(self._waiting)
        """Not yet being drawn by anyone: a thread claims one before drawing it."""
        self._claimed: set[str] = set()
        """Being drawn by one of the threads: `take` waits for it."""
        self._drawn: dict[str, Drawn | Exception] = {}
        self._drawing = 0
        self._window = window
        self._closed = False
        self._changed = threading.Condition()
        count = threads if threads is not None else min(2, os.cpu_count() or 1)
        # Daemon threads: a process ending (or killed) never waits for passwords nobody will take.
        self._threads = [threading.Thread(target=self._work, name=f"passwords-{n}", daemon=True)
                         for n in range(count if self._waiting else 0)]
        for thread in self._threads:
            thread.start()

    def take(self, person_id: str) -> Drawn:
        """The person's password, drawn ahead (waiting for it if it is being drawn), or drawn now."""
        with self._changed:
            while person_id in self._claimed and not self._closed:
                self._changed.wait()
            drawn = self._drawn.pop(person_id, None)
            self._unclaimed.discard(person_id)  # not drawn yet: this thread draws it
            self._changed.notify_all()  # room in the window
        if drawn is None:
            return self._draw(person_id)
        if isinstance(drawn, Exception):
            raise drawn
        return drawn

    def close(self) -> None:
        """Stops drawing (what is being drawn is finished and dropped); `take` still works, drawing itself."""
        with self._changed:
            self._closed = True
            self._unclaimed.clear()
            self._drawn.clear()
            self._changed.notify_all()

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._closed and self._waiting and len(self._drawn) + self._drawing >= self._window:
                    self._changed.wait()
                person_id = self._next()
                if person_id is None:
                    return
                self._drawing += 1
                self._claimed.add(person_id)
            try:
                drawn: Drawn | Exception = self._draw(person_id)
            except Exception as error:  # handed to the taker, raised on its thread
                drawn = error
            with self._changed:
                self._drawing -= 1
                self._claimed.discard(person_id)
                if not self._closed:
                    self._drawn[person_id] = drawn
                self._changed.notify_all()

    def _next(self) -> str | None:
        """The next person nobody has claimed, in order (None: none left, or closed)."""
        while self._waiting and not self._closed:
            person_id = self._waiting.popleft()
            if person_id in self._unclaimed:
                self._unclaimed.discard(person_id)
                return person_id
        return None
