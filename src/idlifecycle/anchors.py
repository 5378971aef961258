"""The anchor a directory holds for a person, when the MIS id is longer than the directory allows.

Entra's `employeeId` and AD's `employeeID` hold at most 16 characters (Graph user resource type;
MS-ADA1 "Employee-ID", rangeUpper 16), but OneRoster and SDS `sourcedId`s are often GUIDs of 36.
An id that fits is written as it is, so every tenant anchored before keeps its anchors. A longer
one is written as its *short anchor*: `#` and the first 15 characters of the base32 SHA-256 of the
id, lower case. It is

- stable: the same id gives the same anchor on every night, on every machine, with no state, so
  a rebuilt state database (or another server) finds the same accounts;
- unmistakable: MIS ids never start with `#`, and base32 has no `0`, so `planner.normalise_id`
  leaves it alone;
- collision-free in practice: 75 bits, so two ids of a 100,000-person trust share one with a
  probability below 10^-12.

The core never sees a short anchor: `Job.snapshots` gives every account back the full id, from the
ids the store has linked to accounts and the ids in the night's feed (`resolve_anchors`), and the
Entra connector also writes the full id into an extension attribute it reads back (README, "Person
ids longer than 16 characters"). An account whose short anchor matches no known id keeps it, so it
reads as somebody not in the feed, as any account of a person who left would.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import replace

from idlifecycle.model import Snapshot

SHORT_ANCHOR_PREFIX = "#"


def directory_anchor(person_id: str, limit: int | None) -> str:
    """What a directory whose anchor holds at most `limit` characters stores for `person_id`."""
    if limit is None or len(person_id) <= limit:
        return person_id
    digest = base64.b32encode(hashlib.sha256(person_id.encode("utf-8")).digest()).decode("ascii").lower()
    return SHORT_ANCHOR_PREFIX + digest[:limit - len(SHORT_ANCHOR_PREFIX)]


def is_short_anchor(anchor: str | None) -> bool:
    return bool(anchor) and str(anchor).startswith(SHORT_ANCHOR_PREFIX)


def resolve_anchors(snapshot: Snapshot, person_ids: Iterable[str], limit: int | None) -> Snapshot:
    """The snapshot with each short anchor replaced by the full id it was made from, where known."""
    if limit is None or not any(is_short_anchor(a.anchor) for a in snapshot.accounts):
        return snapshot
    full = {directory_anchor(pid, limit): pid for pid in person_ids if len(pid) > limit}
    accounts = tuple(
        replace(a, anchor=full.get(a.anchor, a.anchor)) if a.anchor is not None and is_short_anchor(a.anchor) else a
        for a in snapshot.accounts)
    return replace(snapshot, accounts=accounts)
