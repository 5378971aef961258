"""Last sign-in dates from Entra, read whole once and then only for the users who signed in since.

`signInActivity` is not carried by `/users/delta` (Graph refuses it there), so without this every
night would list the whole tenant again: 21 pages of 999 for 20,000 pupils. Graph filters users on
`signInActivity/lastSignInDateTime` with `ge` (the user resource: "Supports $filter (eq, ne, not,
ge, le) but not with any other filterable properties"), so after one whole read a night asks only
for the users whose last sign-in is on or after the previous read, less OVERLAP: Graph updates the
property some time after the sign-in, and a sign-in counted twice is harmless where one missed is not.
A user who has not signed in since keeps the date read before; deleted users drop out with the
cache. A whole read is made again every FULL_EVERY, and whenever the users' delta was read whole.

The record lives in the state store's cursors (compressed):
`{"read_at": ISO time, "whole_at": ISO time, "last": id -> ISO time}`.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from idlifecycle.connectors.base import CursorStore

OVERLAP = timedelta(days=2)
FULL_EVERY = timedelta(days=7)
CURSOR = "sign_ins"


def read_url(since: datetime | None, page: int) -> str:
    """The list of users with their sign-in activity: all of them, or those who signed in on or after `since`."""
    url = f"/users?$select=id,signInActivity&$top={page}"
    if since is None:
        return url
    moment = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return url + "&$filter=" + quote(f"signInActivity/lastSignInDateTime ge {moment}", safe="/:")


class SignInRecord:
    """What the last reads learnt: each user's last sign-in, and when the reading began."""

    def __init__(self, directory: str, cursors: CursorStore, clock: Callable[[], datetime] | None = None) -> None:
        self.directory, self.cursors = directory, cursors
        self.clock = clock or (lambda: datetime.now(UTC))
        self.read_at: datetime | None = None
        """When the last read (whole or not) began: the next one starts there, less OVERLAP."""
        self.whole_at: datetime | None = None
        """When the last whole read began."""
        self.last: dict[str, str] = {}
        stored = cursors.get_cursor(directory, CURSOR)
        if stored:
            try:
                data = json.loads(zlib.decompress(base64.b64decode(stored)))
                self.read_at = datetime.fromisoformat(str(data["read_at"]))
                self.whole_at = datetime.fromisoformat(str(data["whole_at"]))
                self.last = {str(k): str(v) for k, v in dict(data["last"]).items()}
            except (ValueError, KeyError, TypeError, zlib.error):
                self.read_at = self.whole_at = None  # unreadable: read whole, as on the first night
                self.last = {}

    def since(self, *, read_whole: bool) -> datetime | None:
        """Where tonight's read starts (None: read everyone)."""
        now = self.clock()
        if read_whole or self.read_at is None or self.whole_at is None or now - self.whole_at >= FULL_EVERY \
                or self.read_at > now or self.whole_at > now:
            return None  # asked to, never read whole, a week since, or a clock that went back
        return self.read_at - OVERLAP

    def merge(self, items: list[Mapping[str, Any]], *, whole: bool, began: datetime) -> None:
        """Take a read's answer (every user, or those who signed in since) and keep it."""
        last = {} if whole else self.last
        for item in items:
            value = (item.get("signInActivity") or {}).get("lastSignInDateTime")
            if value:
                last[str(item["id"])] = str(value)
        self.last, self.read_at = last, began
        if whole:
            self.whole_at = began
        assert self.whole_at is not None, "an incremental read follows a whole one"
        packed = json.dumps({"read_at": began.isoformat(), "whole_at": self.whole_at.isoformat(), "last": last},
                            separators=(",", ":"))
        self.cursors.set_cursor(self.directory, CURSOR, base64.b64encode(zlib.compress(packed.encode(), 6)).decode())
