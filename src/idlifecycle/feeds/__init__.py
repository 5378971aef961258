"""Feed readers: one module per MIS export format, all yielding Person values and row errors.

`read_feed(FeedSpec)` reads one feed ("mis-csv", "sds-v2", "sds-v1", "oneroster"); a feed that
cannot be trusted as a whole (missing file, empty, wrong header, broken CSV) raises FeedError,
never "nobody is on roll". Bad rows become RowErrors and are skipped; `check_bad_rows` stops
the run when too many are bad.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from idlifecycle.errors import ConfigError, FeedError
from idlifecycle.feeds import mis_csv as mis_csv
from idlifecycle.feeds import oneroster as oneroster
from idlifecycle.feeds import sds_v1 as sds_v1
from idlifecycle.feeds import sds_v2 as sds_v2
from idlifecycle.feeds._csv import decode
from idlifecycle.feeds._fields import YEAR_ORDER
from idlifecycle.feeds._spec import FeedColumns, FeedResult, FeedSpec
from idlifecycle.feeds.sds_v2 import NO_ROLE
from idlifecycle.model import Kind, Person, RowError

READERS: dict[str, Callable[[FeedSpec], FeedResult]] = {
    "mis-csv": mis_csv.read,
    "sds-v2": sds_v2.read,
    "sds-v1": sds_v1.read,
    "oneroster": oneroster.read,
}

DEFAULT_MAX_BAD_PERCENT = 2.0

_FORMAT_MARKERS = (("sds-v2", "roles.csv"), ("sds-v1", "student.csv"), ("oneroster", "users.csv"))
"""A folder's format, told by the file only that format has (checked in this order)."""

_ONEROSTER_ONLY = frozenset({"role", "enabledUser", "orgSourcedIds"})
"""users.csv columns OneRoster has and SDS v2.1 does not (SDS keeps roles in roles.csv)."""


def guess_format(path: Path) -> str | None:
    """The format of an export on disk: a CSV file is a MIS report; a folder by the files in it.

    OneRoster and SDS v2.1 both have users.csv; an SDS folder that lost its roles.csv would read
    as OneRoster and fail on a "missing column 'role'" that hides the real problem. Their users.csv
    headers differ, so the header decides, and the SDS reader then names the missing roles.csv.
    """
    if path.is_file():
        return "mis-csv"
    if not path.is_dir():
        return None
    files = {child.name.lower(): child for child in path.iterdir() if child.is_file()}
    found = next((fmt for fmt, marker in _FORMAT_MARKERS if marker in files), None)
    if found == "oneroster" and not _ONEROSTER_ONLY & set(_header(files["users.csv"])):
        return "sds-v2"
    return found


def _header(path: Path) -> list[str]:
    """A CSV file's header names, or none when the file cannot be read (the reader will say why)."""
    try:
        text, _ = decode(path, str(path))
    except FeedError:
        return []
    first = text.split("\n", 1)[0]
    return [name.strip().strip('"').strip() for name in first.split(",")]


def read_feed(spec: FeedSpec) -> FeedResult:
    """Read one feed; FeedError if it cannot be trusted, ConfigError if its options are wrong."""
    reader = READERS.get(spec.format)
    if reader is None:
        raise ConfigError(
            spec.source or str(spec.path), "format",
            f"unknown feed format {spec.format!r}; expected one of {', '.join(READERS)}",
        )
    result = reader(spec)
    people, errors = _without_shared_ids(result.people)
    return replace(
        result, people=people, errors=tuple(sorted(result.errors + errors, key=lambda e: (e.file, e.line))),
    )


def read_feeds(specs: Sequence[FeedSpec]) -> FeedResult:
    """Read several feeds (pupils.csv and staff.csv) as one; an id in two feeds is a row error."""
    if not specs:
        raise FeedError("no feed is configured; add a [[feeds]] entry to the job file")
    return merge_results([read_feed(spec) for spec in specs])


def merge_results(results: Sequence[FeedResult]) -> FeedResult:
    """Several feeds' results as one; an id two of them hold is a row error in each."""
    if len(results) == 1:
        return results[0]  # read_feed has refused the ids its feed shares within itself
    people, errors = _without_shared_ids(person for result in results for person in result.people)
    skipped: Counter[str] = Counter()
    for result in results:
        skipped.update(result.skipped)
    return FeedResult(
        people,
        tuple(error for result in results for error in result.errors) + errors,
        sum(result.rows for result in results),
        tuple(columns for result in results for columns in result.columns),
        dict(skipped),
        frozenset().union(*(result.skipped_ids for result in results)),
        tuple(note for result in results for note in result.notes),
        tuple(stopped for result in results for stopped in result.stopped),
    )


def check_bad_rows(result: FeedResult, max_bad_percent: float = DEFAULT_MAX_BAD_PERCENT) -> None:
    """Stop the run when more than `max_bad_percent` of the rows were refused.

    A few bad rows are normal (a typo in a UPN); many mean the export itself is wrong (a shifted
    column, the wrong report), and acting on the rest would be acting on a broken picture.
    """
    if not result.rows:
        raise FeedError("the feed has no rows; refusing to treat that as nobody on roll")
    bad = _bad_rows(result)
    share = 100.0 * bad / result.rows
    if share > max_bad_percent and result.errors:
        raise FeedError(
            f"{bad} of {result.rows} feed rows ({share:.1f} %) have errors, more than the "
            f"{max_bad_percent:g} % allowed (max_bad_percent); first: {result.errors[0]}; "
            "see `idlifecycle feed check` for the full list and fix the export"
        )


def format_report(result: FeedResult) -> str:
    """What `idlifecycle feed check` prints: per file the header each field was read from, the
    headers ignored and the fields declared absent; then who is on roll (per year group, per
    staff role), who is not provisioned, every row error, and one summary line."""
    lines: list[str] = []
    for columns in result.columns:
        kind = f", {columns.kind}s" if columns.kind == "pupil" else f", {columns.kind}" if columns.kind else ""
        lines.append(f"{columns.file} ({columns.format}{kind}):")
        lines += [f"  {header} -> {field_name}" for field_name, header in columns.mapping.items()]
        if columns.ignored:
            lines.append(f"  ignored: {', '.join(columns.ignored)}")
        if columns.absent:
            lines.append(f"  absent: {', '.join(columns.absent)}")
    pupils = [person for person in result.people if person.kind is Kind.PUPIL]
    staff = [person for person in result.people if person.kind is Kind.STAFF]
    if result.people:
        years = Counter(person.year_group or "" for person in pupils)
        lines.append(f"pupils: {len(pupils)}")
        lines += [f"  {_year_label(year)}: {years[year]}" for year in sorted(years, key=_year_position)]
        # A member of staff with two roles counts under both.
        roles = Counter(role for person in staff for role in (person.roles or ("(no role)",)))
        lines.append(f"staff: {len(staff)}")
        lines += [f"  {role}: {count}" for role, count in sorted(roles.items(), key=lambda item: (-item[1], item[0]))]
    if result.skipped:
        lines.append("not provisioned: " + ", ".join(
            f"{count} with no role" if why == NO_ROLE else _count(count, why)
            for why, count in sorted(result.skipped.items(), key=lambda item: (-item[1], item[0]))
        ))
    lines += [str(error) for error in result.errors]
    lines += [f"note: {note}" for note in result.notes]
    bad = _bad_rows(result)
    share = 100.0 * bad / result.rows if result.rows else 0.0
    lines.append(
        f"{_count(result.rows, 'row')} read: {_count(len(pupils), 'pupil')}, {len(staff)} staff; "
        f"{_count(len(result.errors), 'error')} in {_count(bad, 'row')} ({share:.1f} %)"
    )
    return "\n".join(lines)


def _year_position(year_group: str) -> int:
    return YEAR_ORDER.index(year_group) if year_group in YEAR_ORDER else len(YEAR_ORDER)


def _year_label(year_group: str) -> str:
    if year_group == "R":
        return "Reception"
    if year_group.startswith("N"):
        return f"Nursery {year_group[1:]}"
    return f"Year {year_group}" if year_group else "(no year)"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _bad_rows(result: FeedResult) -> int:
    return min(len({(error.file, error.line) for error in result.errors}), result.rows)


def _without_shared_ids(people: Iterable[Person]) -> tuple[tuple[Person, ...], tuple[RowError, ...]]:
    """Drop every person whose id another row also uses: the id is the account's anchor."""
    people = tuple(people)
    if len({person.person_id for person in people}) == len(people):
        return people, ()  # the usual export: every id once, told without a list per person
    by_id: dict[str, list[Person]] = {}
    for person in people:
        by_id.setdefault(person.person_id, []).append(person)
    kept: list[Person] = []
    errors: list[RowError] = []
    for person_id, holders in by_id.items():
        if len(holders) == 1:
            kept.append(holders[0])
            continue
        for holder in holders:
            file, _, line = holder.source.rpartition(":")
            others = ", ".join(other.source for other in holders if other is not holder)
            errors.append(
                RowError(file, int(line), "person_id", f"duplicate id '{person_id}', also at {others}", person_id)
            )
    return tuple(kept), tuple(errors)


__all__ = [
    "DEFAULT_MAX_BAD_PERCENT",
    "FeedColumns",
    "FeedResult",
    "FeedSpec",
    "check_bad_rows",
    "format_report",
    "merge_results",
    "read_feed",
    "read_feeds",
]
