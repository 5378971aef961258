"""A trust's schools in one job (`[[schools]]`), and people identified per school.

Most English academies are in a multi-academy trust: one tenant for several schools, each with its own
MIS export, whose admission numbers and staff codes are only unique within that school. Read as one
feed, two schools' rows with the same staff code were one duplicate id: both refused, and the person the
directories already had under it looked like a leaver. So in a trust's job each school's feeds are read
and checked on their own (duplicates and the bad-row threshold are the school's), and every person id is
scoped by the school's DfE URN (or establishment number): `URN:id`. That scoped id is what the store
keeps and the directories' anchors hold, so the same code at two schools is two people.

A school that was the job's only school before (`ids = "bare"`) keeps its people's ids as they were: its
accounts, store records and anchors are unchanged and turning the job into a trust's plans no change.
At most one school may keep bare ids, and since a scoped id always holds a colon and MIS ids never do
(checked), a bare id never meets a scoped one.

Without `[[schools]]` a job is one implied school, read exactly as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from idlifecycle.errors import FeedError
from idlifecycle.feeds import FeedResult, FeedSpec, check_bad_rows, merge_results, read_feeds
from idlifecycle.model import RowError


class FeedModel(BaseModel):
    """One feed of the job file: a `[[job.feeds]]` entry, or one of a school's `[[schools.feeds]]` (format options
    beyond `format` and `path` are the readers' to check)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    format: str
    path: str


class SchoolModel(BaseModel):
    """One `[[schools]]` entry of the job file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,15}$")
    """A short code (`hillside`), used in messages, the summary and `--allow-destructive`."""
    name: str = Field(min_length=1, max_length=100)
    urn: str = Field(pattern=r"^[0-9]{6,7}$")
    """The DfE URN (6 digits) or establishment number (7): the scope of the school's people's ids."""
    feeds: list[FeedModel] = Field(min_length=1)
    ids: Literal["scoped", "bare"] = "scoped"
    """"bare" for the school the job had before it listed schools: its ids (and accounts) stay as they are."""


@dataclass(frozen=True)
class School:
    code: str
    name: str
    urn: str
    feeds: tuple[FeedModel, ...]
    bare_ids: bool

    def scoped_id(self, mis_id: str) -> str:
        return mis_id if self.bare_ids else f"{self.urn}:{mis_id}"


def schools_of(models: Sequence[SchoolModel]) -> tuple[School, ...]:
    """The checked schools; ValueError naming the first problem (the caller names the job file)."""
    for key in ("code", "urn"):
        values = [getattr(model, key) for model in models]
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ValueError(f"two schools have the {key} {twice[0]!r}")
    bare = [model.code for model in models if model.ids == "bare"]
    if len(bare) > 1:
        raise ValueError(f"only one school may keep bare ids (the job's school before it listed schools); "
                         f"{', '.join(bare)} all do")
    return tuple(School(m.code, m.name, m.urn, tuple(m.feeds), m.ids == "bare") for m in models)


def _scoped(result: FeedResult, school: School) -> FeedResult:
    """The school's people with their ids scoped (and their school set); a row whose id holds a colon is
    refused, since it could pass for another school's scoped id."""
    colon = {p.person_id for p in result.people if ":" in p.person_id}
    errors = [_row_error(p.source, f"the id {p.person_id!r} holds a colon, which a trust's job keeps for the "
                         "school's scope", p.person_id) for p in result.people if p.person_id in colon]
    people = tuple(replace(p, person_id=school.scoped_id(p.person_id), school=school.code,
                           mis_id=None if school.bare_ids else p.person_id)
                   for p in result.people if p.person_id not in colon)
    return replace(result, people=people, errors=tuple(
        replace(e, person_id=school.scoped_id(e.person_id)) if e.person_id else e
        for e in (*result.errors, *errors)),
        skipped_ids=frozenset(school.scoped_id(i) for i in result.skipped_ids))


def _row_error(source: str, message: str, person_id: str) -> RowError:
    file, _, line = source.rpartition(":")
    return RowError(file, int(line) if line.isdigit() else 0, "person_id", message, person_id)


def read_schools(schools: Sequence[School], specs: Sequence[Sequence[FeedSpec]],
                 max_bad_percent: float) -> FeedResult:
    """Every school's feeds, each school read and checked on its own, as one result of scoped ids.

    A school with too many bad rows stops the run, naming the school (its people would otherwise be
    planned from a broken picture)."""
    results = []
    for school, school_specs in zip(schools, specs, strict=True):
        try:
            result = _scoped(read_feeds(school_specs), school)
            check_bad_rows(result, max_bad_percent)
        except FeedError as error:
            raise FeedError(f"school {school.code} ({school.name}): {error}") from None
        results.append(result)
    return merge_results(results)
