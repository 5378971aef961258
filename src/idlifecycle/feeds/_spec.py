"""The values every feed reader takes and returns, and the checking of a feed's job options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from idlifecycle.errors import ConfigError, FeedError
from idlifecycle.feeds._fields import GRADE_SCHEMES, YearRange, parse_years
from idlifecycle.model import Person, RowError, StoppedSchool

PERSON_FIELDS = (
    "person_id", "kind", "upn", "legal_first_name", "preferred_first_name", "last_name", "year_group",
    "registration_group", "roles", "start_date", "leave_date", "email", "username",
)
"""The fields a feed can fill, as the `columns` and `absent` options name them."""


@dataclass(frozen=True)
class FeedSpec:
    """One feed as the job file describes it."""

    format: str
    """"mis-csv", "sds-v2", "sds-v1" or "oneroster"."""
    path: Path
    """A CSV file (mis-csv) or the folder holding the files of a multi-file format."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Format options from the job file (kind, columns, encoding, date_order, grades, school, years, absent)."""
    source: str = ""
    """The job file, named in ConfigError messages about the options."""


@dataclass(frozen=True)
class FeedColumns:
    """How one file that describes people was read: which header each field came from."""

    file: str
    """The path as messages show it."""
    format: str
    kind: str | None
    """"pupil" or "staff" when the whole file lists one kind; None when its rows say."""
    mapping: Mapping[str, str]
    """Field name -> the header it was read from (only fields the file has)."""
    ignored: tuple[str, ...] = ()
    """Headers the file has that no field uses."""
    absent: tuple[str, ...] = ()
    """Fields the job file says this export does not have (the `absent` option)."""
    feed: str = ""
    """The feed this file is part of (its folder for SDS and OneRoster): a field one of a feed's files
    has (SDS v2.1 keeps the leaving date and role in roles.csv, not users.csv) is the feed's."""


@dataclass(frozen=True)
class FeedResult:
    """The people a feed yields, the rows it refused, and how many data rows it read."""

    people: tuple[Person, ...]
    errors: tuple[RowError, ...]
    rows: int
    """Data rows of the files that describe people we provision (not orgs.csv or roles.csv, and not
    the guardians and other users counted in `skipped`)."""
    columns: tuple[FeedColumns, ...] = ()
    skipped: Mapping[str, int] = field(default_factory=dict)
    """Readable users this tool does not provision, counted by why ("guardian", "no role")."""
    skipped_ids: frozenset[str] = frozenset()
    """Their ids: an account anchored to one of them is someone the export still lists."""
    notes: tuple[str, ...] = ()
    """Warnings that refuse no row: an enrolment naming an unknown class or user (feeds/teaching.py). They
    only narrow whom a teacher may reset, so they never hold anyone's account."""
    stopped: tuple[StoppedSchool, ...] = ()
    """A trust's schools whose feeds were not read tonight, and why (schools.py): their people are held."""


class Options:
    """A feed's options, checked against what its format accepts, so a typo is a clear error."""

    COMMON = frozenset({"encoding", "date_order", "absent", "years"})

    def __init__(self, spec: FeedSpec, accepted: frozenset[str]) -> None:
        self.spec = spec
        allowed = accepted | self.COMMON
        for name in spec.options:
            if name not in allowed:
                raise ConfigError(
                    spec.source or str(spec.path), name,
                    f"is not an option of the {spec.format} feed; known: {', '.join(sorted(allowed))}",
                )
        self.encoding = self.text("encoding")
        configured = self.text("date_order")
        self.date_order = self.choice("date_order", ("dmy", "mdy"), "dmy")
        self.date_order_set = configured is not None
        """Whether the job file says the order: only then may a file of ambiguous dates be read."""
        self.absent = self.names("absent", tuple(name for name in PERSON_FIELDS if name != "person_id"))
        self.years = self.year_range()

    def fail(self, name: str, message: str) -> ConfigError:
        return ConfigError(self.spec.source or str(self.spec.path), name, message)

    def text(self, name: str) -> str | None:
        value = self.spec.options.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, f"must be a non-empty string, not {value!r}")
        return value.strip()

    def choice(self, name: str, choices: tuple[str, ...], default: str | None) -> str:
        value = self.text(name)
        if value is None:
            if default is None:
                raise self.fail(name, f"is required; one of {', '.join(choices)}")
            return default
        if value.lower() not in choices:
            raise self.fail(name, f"is {value!r}; expected one of {', '.join(choices)}")
        return value.lower()

    def names(self, name: str, known: tuple[str, ...]) -> tuple[str, ...]:
        value = self.spec.options.get(name, [])
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise self.fail(name, f'must be a list of field names, e.g. {name} = ["leave_date"]')
        unknown = [item for item in value if item not in known]
        if unknown:
            raise self.fail(
                name, f"{', '.join(repr(item) for item in unknown)} is not a field; known: {', '.join(known)}",
            )
        return tuple(dict.fromkeys(value))

    def year_range(self) -> YearRange | None:
        value = self.text("years")
        if value is None:
            return None
        try:
            return parse_years(value)
        except ValueError as error:
            raise self.fail("years", str(error)) from None

    def columns(self, file: str, kind: str | None, mapping: Mapping[str, str | None],
                header: tuple[str, ...], used: tuple[str, ...] = ()) -> FeedColumns:
        """What `feed check` shows for one file; `used` are headers read for something other than a field."""
        found = {name: column for name, column in mapping.items() if column}
        taken = set(found.values()) | set(used)
        ignored = tuple(column for column in header if column and column not in taken)
        return FeedColumns(file, self.spec.format, kind, found, ignored, self.absent, str(self.spec.path))

    def grades(self) -> str:
        return self.choice("grades", GRADE_SCHEMES, "uk")

    def table(self, name: str) -> dict[str, str]:
        value = self.spec.options.get(name, {})
        if not isinstance(value, Mapping) or not all(
            isinstance(key, str) and isinstance(item, str) for key, item in value.items()
        ):
            raise self.fail(name, 'must be a table of strings, e.g. { person_id = "Adno" }')
        return dict(value)


def folder_files(spec: FeedSpec, names: tuple[str, ...]) -> dict[str, Path]:
    """The files of a multi-file format; a missing one is a FeedError, never "nobody is there".

    SDS reads a missing file as "every record in it is inactive", which has disabled whole
    schools; here the run stops instead. Names match case-insensitively (Windows exports).
    """
    folder = spec.path
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise FeedError(f"{folder}: {what}; a {spec.format} feed is the folder holding {', '.join(names)}")
    present = {child.name.lower(): child for child in folder.iterdir() if child.is_file()}
    missing = [name for name in names if name.lower() not in present]
    if missing:
        found = ", ".join(sorted(child.name for child in present.values())) or "no files"
        raise FeedError(
            f"{folder}: missing {', '.join(missing)} (found {found}); refusing to read a partial "
            f"{spec.format} export as if those records had gone"
        )
    return {name: present[name.lower()] for name in names}
