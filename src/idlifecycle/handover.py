"""One thread writes the store; the directories' worker threads hand it their store work.

The executor applies each directory on a thread of its own (see `executor`), but a SQLite
connection belongs to the thread that opened it, and one writer keeps the journal and the audit
chain in one order. So a worker never touches the store: it hands each piece of store work to the
`Writer`, which runs it on the calling thread (`serve`). Work a send must wait for (the
write-ahead `started` rows, a password issued) is `call`ed: the worker blocks until it is
committed. An outcome is `post`ed: the worker goes on reading answers while it is recorded, and
the queue keeps each worker's pieces in the order it handed them over.

What has queued up while the writer was busy is run as one group, in one transaction: one commit
(one fsync, about 4 ms on this project's machines) for many outcomes instead of one each. A
`call` returns only once its group has committed, so a write-ahead row is on disk before its send;
an outcome recorded a moment later than it was heard is, if the run dies in between, a `started`
row the next run settles, as after any kill.

`Inline` is the same interface run on the caller's own thread, for work that has one directory.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from queue import Empty, SimpleQueue
from typing import Any, ParamSpec, Protocol, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

_FINISHED = None
"""Put on the queue by a worker as it ends, so `serve` knows when to return without polling."""
GROUP = 500
"""Pieces of work committed together at most: a bound on what one failed commit takes with it."""


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
        """Runs what is handed over, in order, group by group, until `workers` have finished.

        Work that raises (the store failing) stops the writer and the exception goes up: nothing
        more can be recorded, so nothing more may be sent.
        """
        try:
            while workers:
                group = [self._queue.get()]
                while len(group) < GROUP:
                    try:
                        group.append(self._queue.get_nowait())
                    except Empty:
                        break
                workers -= sum(1 for item in group if item is _FINISHED)
                self._run_group([item for item in group if item is not _FINISHED])
        except BaseException:
            self.stopped.set()
            raise

    def _run_group(self, group: list[tuple[Callable[[], Any], Future[Any] | None]]) -> None:
        """One transaction for the group; what waits on a piece hears only after the commit."""
        if not group:
            return
        began, began_cpu = time.perf_counter(), time.thread_time()
        answers: list[tuple[Future[Any], Any]] = []
        try:
            with self._transaction():
                for work, future in group:
                    if future is None:
                        work()
                    elif future.set_running_or_notify_cancel():
                        answers.append((future, work()))
        except BaseException as error:  # rolled back: nothing in the group happened
            for _, future in group:
                if future is not None and future.running():
                    future.set_exception(error)
            raise
        finally:
            self.busy += time.perf_counter() - began
            self.busy_cpu += time.thread_time() - began_cpu
        for future, answer in answers:
            future.set_result(answer)


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
