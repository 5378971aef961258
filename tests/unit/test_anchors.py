"""Short anchors for person ids longer than a directory's anchor attribute holds (idlifecycle.anchors)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from idlifecycle.anchors import directory_anchor, resolve_anchors
from idlifecycle.model import Account, Snapshot
from idlifecycle.planner import normalise_id

GUID = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"


def account(anchor: str | None) -> Account:
    return Account("entra", f"k-{anchor}", "u", "u@x", "A", "B", "A B", anchor, True)


@given(st.text(min_size=1, max_size=200))
def test_every_anchor_fits_16_characters_and_is_the_same_each_time(person_id: str) -> None:
    anchor = directory_anchor(person_id, 16)
    assert len(anchor) <= 16
    assert anchor == directory_anchor(person_id, 16)
    if len(person_id) <= 16:
        assert anchor == person_id  # a tenant anchored before keeps its anchors
    else:
        assert anchor.startswith("#") and normalise_id(anchor) == anchor  # leading-zero checks leave it alone


def test_a_guid_gets_a_short_anchor_and_two_guids_get_two() -> None:
    other = "f81d4fae-7dec-11d0-a765-00a0c91e6bf7"
    assert directory_anchor(GUID, 16) != directory_anchor(other, 16)
    assert directory_anchor(GUID, None) == GUID


def test_resolving_gives_short_anchors_their_full_ids_and_leaves_unknown_ones_short() -> None:
    unknown = "9c5b94b1-35ad-49bb-b118-8e8fc24abf80"
    snapshot = Snapshot("entra", (account(directory_anchor(GUID, 16)), account(directory_anchor(unknown, 16)),
                                  account("P001"), account(None)), ())
    resolved = resolve_anchors(snapshot, {GUID, "P001"}, 16)
    assert [a.anchor for a in resolved.accounts] == [GUID, directory_anchor(unknown, 16), "P001", None]
