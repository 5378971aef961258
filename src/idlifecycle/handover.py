"""One thread writes the store; the directories' worker threads hand it their store work.

The executor applies each directory on a thread of its own (see `executor`), but a SQLite
connection belongs to the thread that opened it, and one writer keeps the journal and the audit
chain in one order. So a worker never touches the store: it hands each piece of store work to the
`Writer`, which runs it on the calling thread (`serve`). Work a send must wait for (the
write-ahead `started` rows, a password issued) is `call`ed: the worker blocks until it is
committed. An outcome is `post`ed: the worker goes on reading answers while it is recorded, and
the queue keeps each worker's pieces in the order it handed them over.

Posted outcomes share a transaction: the writer keeps it open while they come, and commits when a
`call` has run, after GROUP pieces, once WINDOW (a tenth of a second) has passed, or when the
workers have finished. One commit (one fsync, about 4 ms on this project's machines) then covers
many outcomes instead of one each, whether they arrive in a burst or one by one. A `call` returns
only once its transaction has committed, so a write-ahead row is on disk before its send; an
outcome recorded up to WINDOW later than it was heard is, if the run dies in between, a `started`
row the next run settles, as after any kill.

A round with one directory goes through a `Writer` too (one worker thread), for the same commits.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from queue import Empty, SimpleQueue
from typing import Any, ParamSpec, Protocol, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the GIL while another wants it, while directories are applied side by side
(Python's default is 0.005). The store's thread gives the GIL up in every SQLite call, several per change,
and must win it back from a worker parsing a directory's answer each time: at the default each of those
waits can take 5 ms, and the store's thread, the one every worker waits on, spends most of a night
waiting for its turn (the convoy effect). Shorter turns cost the workers a little switching."""
_FINISHED = None
"""Put on the queue by a worker as it ends, so `serve` knows when to return without polling."""
GROUP = 500
"""Pieces of work committed together at most: a bound on what one failed commit takes with it."""
WINDOW = 0.1
"""Seconds a transaction of posted outcomes stays open for more: at most about ten commits a second
while outcomes trickle in, and at most this long an outcome heard is not yet on disk."""


class Stopped(Exception):
    """The writer stopped (the run is being abandoned): the worker must send nothing more."""


class Handover(Protocol):
    def call(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...

    def post(self, work: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None: ...

    def waited(self) -> float:
        """Seconds the calling thread has spent waiting in `call` (for timings: the rest is its own work)."""
        ...


class Writer:
    """The store's own thread, serving the work other threads hand over, one piece at a time."""

    def __init__(self, transaction: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext) -> None:
        self._queue: SimpleQueue[tuple[Callable[[], Any], Future[Any] | None] | None] = SimpleQueue()
        self._transaction = transaction
        """The store's transaction, wrapped around each group (the work's own ones join it)."""
        self.busy = self.busy_cpu = 0.0
        """Seconds spent running groups, commits included: the cost of recording, for the timings; and the
        store thread's CPU seconds in them (on a shared machine the wall time is mostly waiting for a core)."""
        self.stopped = threading.Event()
        self._waits = threading.local()

    def waited(self) -> float:
        return float(getattr(self._waits, "seconds", 0.0))

    def call(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Runs `work` on the writer's thread and waits until it has run (and committed)."""
        if self.stopped.is_set():
            raise Stopped
        future: Future[T] = Future()
        self._queue.put((lambda: work(*args, **kwargs), future))
        began = time.perf_counter()
        try:
            while True:
                try:
                    return future.result(timeout=0.2)
                except TimeoutError:
                    # Abandoned while waiting: nothing will serve the queue again.
                    if self.stopped.is_set() and future.cancel():
                        raise Stopped from None
        finally:
            self._waits.seconds = self.waited() + time.perf_counter() - began

    def post(self, work: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
        """Hands `work` over without waiting for it."""
        if self.stopped.is_set():
            raise Stopped
        self._queue.put((lambda: work(*args, **kwargs), None))

    def finished(self) -> None:
        """Said by each worker as it ends, whatever happened to it."""
        self._queue.put(_FINISHED)

    def serve(self, workers: int) -> None:
        """Runs what is handed over, in order, transaction by transaction, until `workers` have finished.

        Work that raises (the store failing) stops the writer and the exception goes up: nothing
        more can be recorded, so nothing more may be sent.
        """
        try:
            while workers:
                workers -= self._serve_transaction(workers)
        except BaseException:
            self.stopped.set()
            raise

    def _serve_transaction(self, workers: int) -> int:
        """Serves pieces in one transaction until it must commit; returns how many workers finished meanwhile.

        It commits as soon as a `call` has run (its worker is waiting, and a write-ahead row must be on
        disk before its send), after GROUP pieces, once WINDOW has passed since the first piece, or when
        every worker has finished. Until then posted outcomes join the open transaction as they come:
        one commit (an fsync) for many outcomes, even when they trickle in one by one.
        """
        item = self._queue.get()
        if item is _FINISHED:
            return 1
        finished, pieces, waiting = 0, 0, 0.0
        answers: list[tuple[Future[Any], Any]] = []
        running: list[Future[Any]] = []
        began, began_cpu = time.perf_counter(), time.thread_time()
        try:
            with self._transaction():
                while True:
                    if item is _FINISHED:
                        finished += 1
                        if finished == workers:
                            break
                    else:
                        work, future = item
                        pieces += 1
                        if future is None:
                            work()
                        elif future.set_running_or_notify_cancel():
                            running.append(future)
                            answers.append((future, work()))
                    if pieces >= GROUP:
                        break
                    try:
                        item = self._queue.get_nowait()
                        continue
                    except Empty:
                        pass
                    remaining = WINDOW - (time.perf_counter() - began)
                    if answers or remaining <= 0:
                        break
                    asked = time.perf_counter()
                    try:
                        item = self._queue.get(timeout=remaining)
                    except Empty:
                        break
                    finally:
                        waiting += time.perf_counter() - asked
        except BaseException as error:  # rolled back: nothing served in this transaction happened
            for future in running:
                future.set_exception(error)
            raise
        finally:
            # The cost of recording: the pieces and the commit, not the waiting for more pieces.
            self.busy += time.perf_counter() - began - waiting
            self.busy_cpu += time.thread_time() - began_cpu
        for future, answer in answers:
            future.set_result(answer)
        return finished


class HandsOver(Protocol):
    """What `beside_the_store` needs of the store: where its work from other threads is handed."""

    handover: Handover | None


def beside_the_store(store: HandsOver, writer: Writer, work: dict[str, Callable[[], None]], name: str) -> None:
    """Run each piece of `work` on a thread of its own (`{name}-{key}`) while this thread serves their store
    work through `writer`; return once every thread has ended. If serving fails (the store did), the
    threads are stopped at their next store work and still waited for, and the failure is raised.
    Each piece catches what it must report itself: the thread only tells the writer it has finished."""
    def run(piece: Callable[[], None]) -> None:
        try:
            piece()
        finally:
            writer.finished()

    threads = [threading.Thread(target=run, args=(piece,), name=f"{name}-{key}", daemon=True)
               for key, piece in work.items()]
    store.handover = writer  # a connector's cursor read or write from one of these threads
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    try:
        for thread in threads:
            thread.start()
        writer.serve(len(threads))
    except BaseException:
        writer.stopped.set()
        raise
    finally:
        for thread in threads:
            thread.join()
        store.handover = None
        sys.setswitchinterval(interval)
