"""One thread writes the store; the directories' worker threads hand it their store work.

The executor applies each directory on a thread of its own (see `executor`), but a SQLite
connection belongs to the thread that opened it, and one writer keeps the journal and the audit
chain in one order. So a worker never touches the store: it hands each piece of store work to the
`Writer`, which runs it on the calling thread (`serve`). Work a send must wait for (the
write-ahead `started` rows, a password issued) is `call`ed: the worker blocks until it is
committed. An outcome is `post`ed: the worker goes on reading answers while it is recorded, and
the queue keeps each worker's pieces in the order it handed them over.

`Inline` is the same interface run on the caller's own thread, for work that has one directory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from queue import SimpleQueue
from typing import Any, ParamSpec, Protocol, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

_FINISHED = None
"""Put on the queue by a worker as it ends, so `serve` knows when to return without polling."""


class Stopped(Exception):
    """The writer stopped (the run is being abandoned): the worker must send nothing more."""


class Handover(Protocol):
    def call(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...

    def post(self, work: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None: ...

    def waited(self) -> float:
        """Seconds the calling thread has spent waiting in `call` (for timings: the rest is its own work)."""
        ...


class Inline:
    """Store work run at once on this thread: one directory, applied by the thread that owns the store."""

    def call(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return work(*args, **kwargs)

    def post(self, work: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None:
        work(*args, **kwargs)

    def waited(self) -> float:
        return 0.0


class Writer:
    """The store's own thread, serving the work other threads hand over, one piece at a time."""

    def __init__(self) -> None:
        self._queue: SimpleQueue[tuple[Callable[[], Any], Future[Any] | None] | None] = SimpleQueue()
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
        """Runs what is handed over, in order, until `workers` have finished.

        Work that raises (the store failing) stops the writer and the exception goes up: nothing
        more can be recorded, so nothing more may be sent.
        """
        try:
            while workers:
                item = self._queue.get()
                if item is _FINISHED:
                    workers -= 1
                    continue
                work, future = item
                if future is None:
                    work()
                elif future.set_running_or_notify_cancel():
                    try:
                        future.set_result(work())
                    except BaseException as error:
                        future.set_exception(error)
                        raise
        except BaseException:
            self.stopped.set()
            raise
