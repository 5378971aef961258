"""Typed settings: the job TOML, connector and mapping TOML files, and secrets from env or secret files.

Secrets never live in these files: `Secrets` reads `IDLIFECYCLE_<NAME>` from the environment or a
file named `<name>` in `$IDLIFECYCLE_SECRETS_DIR` (systemd's LoadCredential directory, or
/run/secrets), through pydantic-settings.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, create_model
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from idlifecycle.connectors.base import SANDBOX_TYPES, type_named
from idlifecycle.dormant import MIN_DORMANT_DAYS
from idlifecycle.errors import ConfigError, UserError
from idlifecycle.guards import GuardLimits
from idlifecycle.mapping import KindRules, MappingRules
from idlifecycle.model import Kind
from idlifecycle.naming import NamingRules, check_template
from idlifecycle.schools import FeedModel, School, SchoolModel, schools_of

DEFAULT_RESERVED = (
    "admin", "administrator", "root", "head", "headteacher", "office", "admin1", "support", "it", "helpdesk",
    "info", "enquiries", "finance", "hr", "sbm", "reception", "postmaster", "webmaster", "noreply", "test",
    "guest", "governors", "safeguarding", "dsl", "siro", "dpo", "exams", "staff", "pupils", "students",
)


class Secrets(Mapping[str, str]):
    """Secrets by name, resolved lazily so only the ones a job needs must exist."""

    def __init__(self, secrets_dir: Path | None = None) -> None:
        configured = secrets_dir or os.environ.get("IDLIFECYCLE_SECRETS_DIR")
        self.secrets_dir = Path(configured) if configured else None
        self._cache: dict[str, str] = {}

    def _read(self, name: str) -> str | None:
        key = name.lower()
        secrets_dir = self.secrets_dir if self.secrets_dir and self.secrets_dir.is_dir() else None
        # Two lookups, each through one pydantic-settings source: the environment with the
        # IDLIFECYCLE_ prefix, then a file named plainly <name> (pydantic-settings would otherwise
        # put the prefix on file names too, and systemd credentials are named without it).
        # A file may also be named idlifecycle_<name>: systemd names each file of a directory loaded with
        # `LoadCredential=idlifecycle:/etc/idlifecycle/credentials` so (jobs/idlifecycle-nightly.service).
        for source, prefix, field_name in (("env", "IDLIFECYCLE_", key), ("file", "", key),
                                           ("file", "", f"idlifecycle_{key}")):
            if source == "file" and secrets_dir is None:
                continue
            value = getattr(_lookup_model(field_name, source)(_secrets_dir=secrets_dir, _env_prefix=prefix),
                            field_name)
            if value is not None:
                return str(value.get_secret_value()).strip()
        return None

    def __getitem__(self, name: str) -> str:
        if name not in self._cache:
            value = self._read(name)
            if not value:
                where = (f"{self.secrets_dir}/{name}" if self.secrets_dir
                         else f"a file {name} in $IDLIFECYCLE_SECRETS_DIR")
                raise UserError(f"secret {name!r} is missing: set IDLIFECYCLE_{name.upper()} or put it in {where}")
            self._cache[name] = value
        return self._cache[name]

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except UserError:
            return default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._cache)

    def __len__(self) -> int:
        return len(self._cache)

    def __repr__(self) -> str:
        return f"Secrets(dir={self.secrets_dir}, loaded={sorted(self._cache)})"


def _lookup_model(key: str, source: str) -> type[BaseSettings]:
    """A one-field settings class that reads `key` from one source only."""

    class Lookup(BaseSettings):
        model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (env_settings,) if source == "env" else (file_secret_settings,)

    model: type[BaseSettings] = create_model(  # type: ignore[call-overload]
        "SecretLookup", __base__=Lookup, **{key: (SecretStr | None, None)},
    )
    return model


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML: {error}") from None


def _validation_error(source: Path, error: ValidationError, prefix: str = "") -> ConfigError:
    first = error.errors()[0]
    key = ".".join(str(p) for p in (prefix, *first["loc"]) if p != "")
    return ConfigError(str(source), key or "(top level)", first["msg"])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GuardModel(_Strict):
    max_destructive: int = Field(50, ge=0)
    max_destructive_percent: float = Field(10.0, ge=0, le=100)
    percent_floor: int = Field(5, ge=0)
    max_feed_drop_percent: float = Field(10.0, ge=0, le=100)
    max_bad_rows_percent: float = Field(2.0, ge=0, le=100)
    group_floor: int = Field(3, ge=1)
    max_group_drop_percent: float = Field(50.0, ge=0, le=100)
    max_group_removal_percent: float = Field(25.0, ge=0, le=100)
    max_attribute_change_percent: float = Field(25.0, ge=0, le=100)
    rollover_day: str = Field("09-01", pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
    rollover_window_days: int = Field(14, ge=0, le=180)
    max_days_between_runs: int = Field(60, ge=1)


class JobModel(_Strict):
    name: str = "nightly"
    state_dir: str = "state"
    feeds: list[FeedModel] = []
    """A single school's feeds; a trust's job lists `[[schools]]`, each with its own, instead."""
    connectors: list[str] = Field(min_length=1)
    mappings: list[str] = Field(min_length=1)
    lock: str | None = None
    checkpoint: str | None = None
    """Where each run's state checkpoint is kept; default `<state_dir>.checkpoint.json`, beside the folder."""
    syslog: str = "/dev/log"
    """The system log socket each checkpoint is also sent to ("" for none); skipped quietly when absent."""
    extra_people: str | None = None
    """The file of people outside the MIS (mappings/extra-people.toml), kept by `idlifecycle people add`."""


class DirectoryKindModel(_Strict):
    """[<kind>.directories.<connector name>]: what one directory does differently for this kind."""

    licence_kept_days: int | None = Field(None, ge=0)
    """None: the kind's own."""


class KindModel(_Strict):
    username: str
    domain: str
    container: str = ""
    groups: list[str] = []
    licences: list[str] = []
    attributes: dict[str, str] = {}
    create_days_before_start: int = Field(14, ge=0)
    grace_days: int = Field(0, ge=0)
    retention_days: int = Field(270, ge=0)
    licence_kept_days: int = Field(0, ge=0)
    leavers_container: str = "Leavers"
    rename_on_name_change: bool = False
    match: list[str] = ["email"]
    dormant_days: int | None = None
    dormant_exempt_groups: list[str] = []
    directories: dict[str, DirectoryKindModel] = {}


class ExtraKindModel(KindModel):
    """[extra.<kind>]: one kind of person outside the MIS, provisioned as `base` (staff or pupil)."""

    base: Kind = Kind.STAFF
    max_days: int = Field(ge=1)
    create_days_before_start: int = Field(0, ge=0)
    warn_days_before_end: int = Field(7, ge=0)
    """The sponsor is emailed this many days before the end date (0: never), with a link to extend it."""


class NamingModel(_Strict):
    max_length: int = Field(default=20, ge=3, le=64)
    reserved: list[str] = list(DEFAULT_RESERVED)
    use_feed_usernames: bool = False


class MappingModel(_Strict):
    naming: NamingModel = Field(default_factory=lambda: NamingModel())
    staff: KindModel | None = None
    pupil: KindModel | None = None
    role_groups: dict[str, list[str]] = {}
    extra: dict[str, ExtraKindModel] = {}


@dataclass(frozen=True)
class ConnectorSpec:
    name: str
    type: str
    options: Mapping[str, Any]
    source: str


@dataclass(frozen=True)
class JobConfig:
    name: str
    path: Path
    state_dir: Path
    feeds: tuple[FeedModel, ...]
    connectors: tuple[ConnectorSpec, ...]
    mapping: MappingRules
    guards: GuardLimits
    sections: Mapping[str, Mapping[str, Any]]
    """Every top-level table of the job file, for the area modules (passwords, access, mail, web, report)."""
    checkpoint_path: Path = Path()
    """The state checkpoint file, outside the state database (checkpoint.py)."""
    syslog_address: str = ""
    extra_people_path: Path | None = None
    """[job] extra_people: the file of people outside the MIS; None when the job has none."""
    schools: tuple[School, ...] = ()
    """A trust's `[[schools]]`, each with its feeds (`feeds` is then empty); none for a single school's job."""

    @property
    def sandbox_only(self) -> bool:
        """Every connector is an embedded sandbox emulator (the demo): nothing real can be changed."""
        return sandbox_only(self.connectors)

    @property
    def state_db(self) -> Path:
        return self.state_dir / "idlifecycle.db"

    def resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).resolve()


def load_mapping(paths: list[Path]) -> MappingRules:
    merged: dict[str, Any] = {}
    for path in paths:
        merged.update(read_toml(path))
    source = paths[-1] if len(paths) == 1 else Path(", ".join(str(p) for p in paths))
    try:
        model = MappingModel.model_validate(merged)
    except ValidationError as error:
        raise _validation_error(source, error) from None
    kinds: dict[Kind, KindRules] = {}
    templates: dict[Kind, str] = {}
    for kind in Kind:
        kind_model: KindModel | None = getattr(model, str(kind))
        if kind_model is not None:
            templates[kind] = kind_model.username
            kinds[kind] = _kind_rules(kind_model, str(kind), source)
    extra = {name: _kind_rules(extra_model, f"extra.{name}", source) for name, extra_model in model.extra.items()}
    for name, extra_model in model.extra.items():
        if extra_model.base not in kinds:
            raise ConfigError(str(source), f"extra.{name}.base", f"there is no [{extra_model.base}] table to build on")
    if not kinds:
        raise ConfigError(str(source), "staff / pupil", "no [staff] or [pupil] table: nobody could be given an account")
    return MappingRules(
        kinds=kinds,
        naming=NamingRules(templates=templates, max_length=model.naming.max_length,
                           reserved=frozenset(r.lower() for r in model.naming.reserved),
                           extra_templates={name: m.username for name, m in model.extra.items()}),
        role_groups={k: tuple(v) for k, v in model.role_groups.items()},
        use_feed_usernames=model.naming.use_feed_usernames,
        extra=extra,
        extra_base={name: m.base for name, m in model.extra.items()},
    )


def _kind_rules(kind_model: KindModel, where: str, source: Path) -> KindRules:
    problem = check_template(kind_model.username)
    if problem:
        raise ConfigError(str(source), f"{where}.username", problem)
    for rule in kind_model.match:
        if rule not in ("login", "email", "username", "employee_number"):
            raise ConfigError(str(source), f"{where}.match",
                              f"unknown rule {rule!r}; use login, email, username or employee_number")
    if kind_model.dormant_days is not None and kind_model.dormant_days < MIN_DORMANT_DAYS:
        raise ConfigError(str(source), f"{where}.dormant_days",
                          f"must be at least {MIN_DORMANT_DAYS}: AD updates lastLogonTimestamp only every "
                          "9-14 days, so a shorter period would disable people who signed in recently")
    return KindRules(
        domain=kind_model.domain, container=kind_model.container, groups=tuple(kind_model.groups),
        licences=tuple(kind_model.licences), attributes=dict(kind_model.attributes),
        create_days_before_start=kind_model.create_days_before_start, grace_days=kind_model.grace_days,
        retention_days=kind_model.retention_days, licence_kept_days=kind_model.licence_kept_days,
        licence_kept_days_in={name: d.licence_kept_days for name, d in kind_model.directories.items()
                              if d.licence_kept_days is not None},
        leavers_container=kind_model.leavers_container,
        rename_on_name_change=kind_model.rename_on_name_change, match=tuple(kind_model.match),
        max_days=getattr(kind_model, "max_days", None),
        dormant_days=kind_model.dormant_days, dormant_exempt_groups=tuple(kind_model.dormant_exempt_groups),
        warn_days_before_end=getattr(kind_model, "warn_days_before_end", 0),
    )


def load_connector(path: Path) -> ConnectorSpec:
    data = read_toml(path)
    for key in ("name", "type"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ConfigError(str(path), key, "is required (a short name such as \"entra\", and the connector type)")
    return ConnectorSpec(
        name=data["name"], type=data["type"],
        options={k: v for k, v in data.items() if k not in ("name", "type")}, source=str(path),
    )


def load_job_config(path: Path | str) -> JobConfig:
    job_path = Path(path).resolve()
    data = read_toml(job_path)
    if "job" not in data:
        raise ConfigError(str(job_path), "job", "missing [job] table (name, feeds, connectors, mappings)")
    try:
        job = JobModel.model_validate(data["job"])
        guards = GuardModel.model_validate(data.get("guards", {}))
    except ValidationError as error:
        prefix = "guards" if "job" in data and _job_ok(data["job"]) else "job"
        raise _validation_error(job_path, error, prefix) from None

    def resolve(value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (job_path.parent / p).resolve()

    schools = _schools(job_path, data, job)
    connectors = tuple(load_connector(resolve(c)) for c in job.connectors)
    names = [c.name for c in connectors]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(str(job_path), "job.connectors", f"two connectors are named {duplicates[0]!r}")
    mapping_paths = [resolve(m) for m in job.mappings]
    mapping = load_mapping(mapping_paths)
    _check_directories(mapping, names, mapping_paths)
    return JobConfig(
        name=job.name,
        path=job_path,
        state_dir=resolve(job.state_dir),
        feeds=tuple(job.feeds),
        connectors=connectors,
        mapping=mapping,
        guards=GuardLimits(**guards.model_dump()),
        sections={k: v for k, v in data.items() if isinstance(v, dict)},
        checkpoint_path=resolve(job.checkpoint) if job.checkpoint else default_checkpoint(resolve(job.state_dir),
                                                                                       connectors),
        syslog_address=job.syslog,
        extra_people_path=resolve(job.extra_people) if job.extra_people else None,
        schools=schools,
    )


def _schools(job_path: Path, data: Mapping[str, Any], job: JobModel) -> tuple[School, ...]:
    """The job's `[[schools]]`, checked: a job has them or `[[job.feeds]]`, never both or neither."""
    listed = data.get("schools")
    if listed is None:
        if not job.feeds:
            raise ConfigError(str(job_path), "job.feeds", "no feed is configured: add [[job.feeds]] entries (one "
                              "school) or [[schools]] with their feeds (a trust)")
        return ()
    if job.feeds:
        raise ConfigError(str(job_path), "job.feeds", "a job with [[schools]] gives each school's feeds in its "
                          "[[schools.feeds]]; move these there")
    if not isinstance(listed, list) or not listed:
        raise ConfigError(str(job_path), "schools", "must be one or more [[schools]] tables")
    models = []
    for index, entry in enumerate(listed):
        try:
            models.append(SchoolModel.model_validate(entry))
        except ValidationError as error:
            raise _validation_error(job_path, error, f"schools.{index}") from None
    try:
        return schools_of(models)
    except ValueError as error:
        raise ConfigError(str(job_path), "schools", str(error)) from None


def _check_directories(mapping: MappingRules, names: list[str], paths: list[Path]) -> None:
    """Every `[<kind>.directories.<name>]` names one of the job's connectors: a misspelt name would otherwise
    leave that directory on the kind's own licence_kept_days without a word."""
    source = paths[-1] if len(paths) == 1 else Path(", ".join(str(p) for p in paths))
    kinds = [(str(kind), rules) for kind, rules in mapping.kinds.items()]
    kinds += [(f"extra.{name}", rules) for name, rules in mapping.extra.items()]
    for where, rules in kinds:
        for directory in sorted(set(rules.licence_kept_days_in) - set(names)):
            raise ConfigError(str(source), f"{where}.directories.{directory}",
                              f"the job has no connector named {directory!r} (its connectors: {', '.join(names)})")


def sandbox_only(connectors: tuple[ConnectorSpec, ...]) -> bool:
    return all(type_named(spec.type, spec.options) in SANDBOX_TYPES for spec in connectors)


def default_checkpoint(state_dir: Path, connectors: tuple[ConnectorSpec, ...]) -> Path:
    """Beside the state folder, so losing the folder (database and all) is noticed; inside it for a demo
    job, whose directories live in that folder too: deleting it starts the whole demo afresh."""
    if sandbox_only(connectors):
        return state_dir / "checkpoint.json"
    return state_dir.with_name(state_dir.name + ".checkpoint.json")


def _job_ok(raw: Any) -> bool:
    try:
        JobModel.model_validate(raw)
    except ValidationError:
        return False
    return True
