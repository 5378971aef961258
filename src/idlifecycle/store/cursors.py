"""Connectors' incremental-read state (delta links, sync tokens), kept per directory."""

from __future__ import annotations

import threading

from idlifecycle.store.base import StoreBase


class Cursors(StoreBase):
    """Cursors, read and written on the connection's own thread whichever thread asks."""

    def get_cursor(self, directory: str, name: str) -> str | None:
        if self.handover is not None and threading.get_ident() != self._thread:
            return self.on_own_thread(self.get_cursor, directory, name)
        row = self.db.execute(
            "SELECT value FROM cursors WHERE directory=? AND name=?", (directory, name)
        ).fetchone()
        return None if row is None else str(row[0])

    def set_cursor(self, directory: str, name: str, value: str | None) -> None:
        if self.handover is not None and threading.get_ident() != self._thread:
            self.on_own_thread(self.set_cursor, directory, name, value)
            return
        if value is None:
            self.db.execute("DELETE FROM cursors WHERE directory=? AND name=?", (directory, name))
        else:
            self.db.execute(
                "INSERT INTO cursors VALUES (?,?,?) ON CONFLICT DO UPDATE SET value=excluded.value",
                (directory, name, value),
            )
