"""The school's password policy as configured: the job's `[passwords]` section or the file it names.

Shape (see mappings/passwords.toml): top-level school-wide keys, `[[terms]]`, `[slips]`,
`[line_managers]`, then `[staff]` and `[pupil]`, each with optional `[pupil.bands."R-2"]`
tables overriding any key for a range of year groups.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from idlifecycle.errors import ConfigError
from idlifecycle.model import Kind, Person
from idlifecycle.passwords.policy import ASCII_SYMBOLS, Rules

YEAR_ORDER = ("N1", "N2", "R", *(str(n) for n in range(1, 15)))
"""Normalised year groups in school order, so a band "R-2" means R, 1 and 2."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KindPolicy(_Strict):
    """The configured rules for one kind of person (or one year band of pupils)."""

    min_length: int = Field(12, ge=8, le=100)
    length: int | None = Field(None, ge=8, le=100)
    """Length of generated random passwords; defaults to min_length."""
    classes: int = Field(3, ge=1, le=4)
    symbols: str = "!#$%*+-=?@"
    style: Literal["random", "memorable"] = "random"
    history: int = Field(5, ge=0, le=50)
    max_age_days: int | None = Field(None, ge=1)
    termly_change: bool = False
    delivery: Literal["slips", "email"] = "slips"
    change_at_sign_in: bool = True
    """Whether a password a teacher resets must be changed at the next sign-in: off for the youngest pupils,
    who cannot choose one yet (`[pupil.bands."R-2"] change_at_sign_in = false`)."""

    @field_validator("symbols")
    @classmethod
    def _ascii_symbols(cls, value: str) -> str:
        wrong = sorted({c for c in value if c not in ASCII_SYMBOLS})
        if wrong:
            raise ValueError(f"{' '.join(wrong)} cannot be used: only ASCII punctuation counts as a symbol "
                             f"in Active Directory and Entra (£ and € never do)")
        return value

    def rules(self) -> Rules:
        return Rules("the school", min_length=self.min_length, classes=self.classes,
                     symbols=frozenset(self.symbols), name_tokens=True)


class Term(_Strict):
    name: str
    starts: date


class Slips(_Strict):
    folder: str | None = None
    """Default: `slips` in the job's state folder."""
    days: int = Field(14, ge=1)
    """Slip sheets older than this are deleted by the next run."""


class LineManagers(_Strict):
    """Where a staff member's new password is emailed: the MIS feed carries no line manager."""

    roles: dict[str, str] = {}
    """A staff role (Person.roles) -> the address of whoever manages people in that role."""
    people: dict[str, str] = {}
    """A person_id -> their line manager's address; wins over `roles`."""
    fallback: str | None = None
    """Used when neither matches (e.g. the school business manager or the IT office)."""


class _Raw(_Strict):
    school_name: str = ""
    banned: list[str] = []
    catch_up_days: int = Field(7, ge=0, le=60)
    words_file: str | None = None
    terms: list[Term] = []
    slips: Slips = Slips(folder=None, days=14)
    line_managers: LineManagers = LineManagers()
    staff: dict[str, Any] = {}
    pupil: dict[str, Any] = {}

    @field_validator("terms")
    @classmethod
    def _terms_in_order(cls, terms: list[Term]) -> list[Term]:
        starts = [t.starts for t in terms]
        if starts != sorted(starts) or len(set(starts)) != len(starts):
            raise ValueError("terms must be listed in date order, each with its own start date")
        return terms


@dataclass(frozen=True)
class Band:
    first: int
    last: int
    name: str
    policy: KindPolicy

    def covers(self, year_group: str | None) -> bool:
        return year_group in YEAR_ORDER and self.first <= YEAR_ORDER.index(year_group) <= self.last


@dataclass(frozen=True)
class PasswordSettings:
    """Everything the passwords area reads from configuration, with paths already resolved."""

    school_name: str
    banned: tuple[str, ...]
    catch_up_days: int
    terms: tuple[Term, ...]
    slip_folder: Path
    slip_days: int
    line_managers: LineManagers
    words: tuple[str, ...]
    """The school's own words for memorable passwords; () for the shipped list."""
    kinds: Mapping[Kind, KindPolicy]
    bands: tuple[Band, ...]
    source: str

    def for_person(self, person: Person) -> KindPolicy:
        if person.kind is Kind.PUPIL:
            for band in self.bands:
                if band.covers(person.year_group):
                    return band.policy
        return self.kinds[person.kind]

    def line_manager(self, person: Person) -> str | None:
        if person.person_id in self.line_managers.people:
            return self.line_managers.people[person.person_id]
        for role in person.roles:
            if role in self.line_managers.roles:
                return self.line_managers.roles[role]
        return self.line_managers.fallback

    def current_term(self, today: date) -> Term | None:
        """The term that started most recently on or before today."""
        started = [t for t in self.terms if t.starts <= today]
        return started[-1] if started else None


def _band_range(name: str) -> tuple[int, int]:
    first, _, last = name.partition("-")
    last = last or first
    if first.strip() not in YEAR_ORDER or last.strip() not in YEAR_ORDER:
        raise ValueError(f"band {name!r}: year groups are {', '.join(YEAR_ORDER)} (e.g. \"R-2\", \"7-13\")")
    return YEAR_ORDER.index(first.strip()), YEAR_ORDER.index(last.strip())


Fail = Callable[[tuple[Any, ...], str], ConfigError]
"""Builds the ConfigError for a key (as a location) and a message."""


def _kind_policies(raw: _Raw, fail: Fail) -> tuple[dict[Kind, KindPolicy], list[Band]]:
    """Each kind's policy, and the pupils' year bands, each band its kind's table with its own keys over it."""
    kinds: dict[Kind, KindPolicy] = {}
    bands: list[Band] = []
    for kind in Kind:
        table = dict(getattr(raw, kind.value))
        band_tables = table.pop("bands", {})
        try:
            kinds[kind] = KindPolicy.model_validate(table)
        except ValidationError as error:
            first = error.errors()[0]
            raise fail((kind.value, *first["loc"]), first["msg"]) from None
        if band_tables and kind is not Kind.PUPIL:
            raise fail((kind.value, "bands"), "year bands apply to pupils only")
        for name, band_table in band_tables.items():
            try:
                low, high = _band_range(name)
                policy = KindPolicy.model_validate({**table, **band_table})
            except ValidationError as error:
                first = error.errors()[0]
                raise fail((kind.value, "bands", name, *first["loc"]), first["msg"]) from None
            except ValueError as error:
                raise fail((kind.value, "bands", name), str(error)) from None
            bands.append(Band(low, high, name, policy))
    return kinds, bands


def _words(words_file: str | None, base_dir: Path, fail: Fail) -> tuple[str, ...]:
    """The school's words for memorable passwords (`words_file`), or () for the shipped list."""
    if words_file is None:
        return ()
    words_path = base_dir / words_file
    try:
        lines = words_path.read_text("utf-8").splitlines()
    except OSError as error:
        raise fail(("words_file",), f"cannot read {words_path}: {error.strerror}") from None
    words = tuple(w.strip().lower() for w in lines if w.strip() and not w.startswith("#"))
    odd = [w for w in words if not w.isascii() or not w.isalpha()]
    if odd or not words:
        raise fail(("words_file",), f"{words_path}: one plain a–z word a line, e.g. {odd[0]!r} is not"
                   if odd else f"{words_path} has no words")
    return words


def parse_settings(data: Mapping[str, Any], *, source: str, base_dir: Path, key_prefix: str = "",
                   default_slip_folder: Path | None = None) -> PasswordSettings:
    """Validate the policy table; a mistake raises ConfigError naming `source` and the key."""

    def fail(loc: tuple[Any, ...], message: str) -> ConfigError:
        return ConfigError(source, key_prefix + ".".join(str(p) for p in loc), message.removeprefix("Value error, "))

    try:
        raw = _Raw.model_validate(dict(data))
    except ValidationError as error:
        first = error.errors()[0]
        raise fail(first["loc"], first["msg"]) from None

    kinds, bands = _kind_policies(raw, fail)
    for policy in (*kinds.values(), *(b.policy for b in bands)):
        if policy.classes == 4 and not policy.symbols:
            raise fail(("symbols",), "4 kinds of character are required, so at least one symbol must be allowed")
    if any(k.delivery == "email" for k in kinds.values()) and not (
        raw.line_managers.fallback or raw.line_managers.roles or raw.line_managers.people
    ):
        raise fail(("line_managers", "fallback"), "staff passwords are emailed to line managers: "
                                                  "give at least a fallback address")
    words = _words(raw.words_file, base_dir, fail)
    return PasswordSettings(
        school_name=raw.school_name,
        words=words,
        banned=tuple(raw.banned),
        catch_up_days=raw.catch_up_days,
        terms=tuple(raw.terms),
        slip_folder=(base_dir / raw.slips.folder if raw.slips.folder else
                     default_slip_folder or base_dir / "slips").resolve(),
        slip_days=raw.slips.days,
        line_managers=raw.line_managers,
        kinds=kinds,
        bands=tuple(bands),
        source=source,
    )


def load_settings(section: Mapping[str, Any], *, job_file: Path, state_dir: Path | None = None) -> PasswordSettings:
    """From the job's `[passwords]` section: either `file = "…"` (relative to the job file) or inline.
    Slips go to `<state_dir>/slips` unless `slips.folder` says otherwise."""
    default_folder = state_dir / "slips" if state_dir is not None else None
    if "file" in section:
        path = (job_file.parent / str(section["file"])).resolve()
        extra = sorted(set(section) - {"file"})
        if extra:
            raise ConfigError(str(job_file), f"passwords.{extra[0]}", "put the policy either in the file "
                                                                     "named by passwords.file or inline, not both")
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise ConfigError(str(job_file), "passwords.file", f"{path} does not exist") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(str(path), "", f"not valid TOML: {error}") from None
        return parse_settings(data, source=str(path), base_dir=path.parent, default_slip_folder=default_folder)
    return parse_settings(section, source=str(job_file), base_dir=job_file.parent, key_prefix="passwords.",
                          default_slip_folder=default_folder)

