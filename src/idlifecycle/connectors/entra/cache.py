"""The tenant as the Entra connector last read it, and the private file that keeps it between runs.

Graph's delta links live in the state store's cursors; the users and groups they bring changes to
live in `<state>/cache/entra-<name>/directory-cache.json`. The file carries a generation that the
store records too, so a store and a file that disagree (a restored backup) mean one full read.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from idlifecycle.connectors.base import CursorStore


@dataclass
class Cache:
    """The tenant as last read: all users (scope is applied when building a Snapshot) and groups."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    users_link: str | None = None
    groups_link: str | None = None


@dataclass(frozen=True)
class CacheFile:
    """Where one directory's cache is kept, and the $select its delta links began with."""

    directory: str
    path: Path
    cursors: CursorStore
    select: tuple[str, str]
    """The users' and the groups' $select: a delta link keeps the one it began with."""

    def load(self) -> Cache:
        """The cache as last saved, or an empty one (a full read) when the store's links do not match it."""
        users_link = self.cursors.get_cursor(self.directory, "users_delta")
        groups_link = self.cursors.get_cursor(self.directory, "groups_delta")
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return Cache()
        if not users_link or not groups_link or data.get("generation") != self.cursors.get_cursor(
                self.directory, "cache_generation"):
            return Cache()  # the store and the cache file disagree (restored backup?): read everything
        if data.get("select") != list(self.select):
            # A delta link keeps the $select it began with: new properties (an attribute added to the
            # settings, a newer version reading more) arrive only through a full read.
            return Cache()
        return Cache(data["users"], data["deleted"], data["groups"], users_link, groups_link)

    def save(self, cache: Cache, *, changed: bool, links_changed: bool) -> None:
        """Keep what a read brought: the file (when the directory changed) and the links in the store."""
        generation = self._write(cache) if changed else None
        if changed or links_changed:
            # Graph hands out a new link every round; when nothing else changed, the cache file (tens
            # of megabytes in a large school) is not rewritten: its generation still matches the store.
            self.cursors.set_cursor(self.directory, "users_delta", cache.users_link)
            self.cursors.set_cursor(self.directory, "groups_delta", cache.groups_link)
        if generation is not None:
            self.cursors.set_cursor(self.directory, "cache_generation", generation)

    def _write(self, cache: Cache) -> str:
        """Write the cache file under a new generation (returned, for the store)."""
        generation = secrets.token_hex(8)
        # Every user's details are in it: private whatever the umask (0700 folder, 0600 file), and
        # written whole (temporary file, fsync, rename) so a kill never leaves half a cache.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        body = json.dumps({"generation": generation, "select": list(self.select),
                           "users": cache.users, "deleted": cache.deleted, "groups": cache.groups},
                          separators=(",", ":")).encode("utf-8")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # an older temporary file may have other bits
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.path)
        return generation
