"""The directories' snapshots read side by side, a thread per directory (issue 16).

A snapshot read waits on the network (Graph, the Google APIs, LDAP), where the GIL is released, so
reading every directory at once makes the stage as long as the slowest directory's read instead of
the sum of them. The connectors are already used from threads of their own by the executor
(`Connector.apply`). As there, only the calling thread touches the store: a connector's cursor read
or write from its reading thread is handed to it (`handover.Writer`). One directory is read on the
calling thread.

A directory that cannot be read stops the run, as it did when they were read one after another;
because the others were read meanwhile, their failures are said in the same message.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping

from idlifecycle.connectors.base import Connector, ConnectorError
from idlifecycle.errors import UserError
from idlifecycle.handover import Writer, beside_the_store
from idlifecycle.model import Snapshot
from idlifecycle.store import Store

log = logging.getLogger("idlifecycle")
timing_log = logging.getLogger("idlifecycle.changes.timing")
"""How long each directory's snapshot took to read (bench/night.py reads it; quiet under a progress bar)."""

Read = Snapshot | BaseException
"""A directory's snapshot, or what its read raised (raised, or said, once every read has ended)."""


def read_snapshots(connectors: Mapping[str, Connector], store: Store) -> dict[str, Snapshot]:
    """Each directory's snapshot as its connector reads it, in the connectors' order.

    If any read failed, the first failure in that order is raised: a ConnectorError as one UserError
    naming its directory (`{name}: could not read the directory: ...`) that also names the others
    that failed; anything else as it was raised, the others' failures logged.
    """
    if len(connectors) > 1:
        read = _side_by_side(connectors, store)
    else:
        read = {name: _read(name, connector) for name, connector in connectors.items()}
    return _snapshots_or_first_failure({name: read[name] for name in connectors})


def _read(name: str, connector: Connector) -> Read:
    """One directory's read, timed; what it raised is returned, to be raised in directory order."""
    began = time.perf_counter()
    try:
        snapshot = connector.snapshot()
    except BaseException as error:  # raised by the caller, once the other reads have ended
        return error
    read = time.perf_counter()
    # Made here, while the other directories are still being read, not by the planner after them all.
    snapshot.fingerprint()
    timing_log.debug(json.dumps({"event": "snapshot-timing", "directory": name,
                                 "seconds": round(read - began, 3),
                                 "fingerprint_seconds": round(time.perf_counter() - read, 3)}))
    return snapshot


def _side_by_side(connectors: Mapping[str, Connector], store: Store) -> dict[str, Read]:
    """A thread per directory reads its snapshot; this thread serves their store work meanwhile."""
    writer = Writer(store.transaction)
    read: dict[str, Read] = {}

    def reader(name: str, connector: Connector) -> Callable[[], None]:
        def work() -> None:
            read[name] = _read(name, connector)
        return work

    beside_the_store(store, writer, {name: reader(name, c) for name, c in connectors.items()}, "snapshot")
    return read


def read_back_after_changes(connectors: Mapping[str, Connector], store: Store) -> None:
    """Each directory reads the run's own writes back (`Connector.after_changes`, which never raises), side by
    side like the snapshots, so the next night reads only what changed after this run."""
    def back(name: str, connector: Connector) -> Callable[[], None]:
        def work() -> None:
            began = time.perf_counter()
            try:
                connector.after_changes()
            except Exception as error:  # the night's changes are made: this read is only ahead of time
                log.warning(f"{name}: reading the run's own writes back failed ({_said(error)}); the next run reads "
                            "them instead")
            timing_log.debug(json.dumps({"event": "after-changes-timing", "directory": name,
                                         "seconds": round(time.perf_counter() - began, 3)}))
        return work

    work = {name: back(name, c) for name, c in connectors.items()}
    if len(work) > 1:
        beside_the_store(store, Writer(store.transaction), work, "read back")
    else:
        for one in work.values():
            one()


def _snapshots_or_first_failure(read: Mapping[str, Read]) -> dict[str, Snapshot]:
    snapshots = {name: r for name, r in read.items() if isinstance(r, Snapshot)}
    failed = [(name, r) for name, r in read.items() if not isinstance(r, Snapshot)]
    if not failed:
        return snapshots
    (first_name, first), others = failed[0], failed[1:]
    if not isinstance(first, ConnectorError):
        for name, error in others:
            log.warning(f"{name}: could not read the directory either: {_said(error)}")
        raise first
    message = f"{first_name}: could not read the directory: {first}"
    if others:
        message += "; also " + "; ".join(f"{name}: could not read the directory: {_said(error)}"
                                         for name, error in others)
    raise UserError(message) from None


def _said(error: BaseException) -> str:
    """A ConnectorError's own words; of anything else only its type (its text may hold what a log must not)."""
    return str(error) if isinstance(error, ConnectorError) else f"unexpected {type(error).__name__}"
