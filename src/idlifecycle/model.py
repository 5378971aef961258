"""Immutable values shared by feeds, planner, executor and connectors."""

from __future__ import annotations

import hashlib
import json
import json.encoder
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from idlifecycle.values import json_encoder, slot_setting_init

_ACCOUNT_JSON = json_encoder()
"""json.dumps(..., default=str), for Snapshot.fingerprint."""


class Kind(StrEnum):
    STAFF = "staff"
    PUPIL = "pupil"


@slot_setting_init
@dataclass(frozen=True, slots=True)
class Person:
    """One human from the feed, as the school's MIS knows them."""

    person_id: str
    """Stable MIS identifier (admission number, staff code, sourcedId): always text."""
    kind: Kind
    legal_first_name: str
    last_name: str
    preferred_first_name: str | None = None
    year_group: str | None = None
    """Normalised year group: "N1", "N2", "R", "1" … "14"; None for staff."""
    registration_group: str | None = None
    roles: tuple[str, ...] = ()
    start_date: date | None = None
    leave_date: date | None = None
    upn: str | None = None
    """Unique Pupil Number, when the feed has one."""
    email: str | None = None
    username: str | None = None
    """A username the feed asks for (SDS exports carry one); the mapping may honour it. Only the
    local part: an SDS `jcraig@contoso.org` is `jcraig` here and `contoso.org` in username_domain."""
    username_domain: str | None = None
    """The domain of a feed username written as a UPN, for messages and matching; never a login."""
    source: str = ""
    """Where the person was read from, as `file:line`, for messages."""
    extra_kind: str | None = None
    """For someone the MIS does not know (extra_people.py): the configured kind ("supply", "governor"),
    whose [extra.<kind>] rules the mapping uses; None for feed people."""
    sponsor: str | None = None
    """The person_id of the member of staff who vouches for an extra person; None for feed people."""
    classes: tuple[str, ...] = ()
    """A pupil's classes as the feed's enrolments name them (SDS v2.1 / OneRoster classes.csv titles); the
    registration group stays in `registration_group`. Read so a teacher may reset their own pupils' passwords."""
    teaches: tuple[str, ...] = ()
    """The classes a member of staff is enrolled in as a teacher (or aide), by the same names as `classes`."""
    school: str = ""
    """The code of the person's school in a trust's job (`[[schools]]`); "" in a single school's job."""
    mis_id: str | None = None
    """The MIS's own id when `person_id` is scoped by school (`URN:id`, schools.py); None when it is the id."""

    @property
    def first_name(self) -> str:
        return self.preferred_first_name or self.legal_first_name

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass(frozen=True)
class RowError:
    """One problem in a feed, reported as `file:line: field: message`."""

    file: str
    line: int
    field: str
    message: str
    person_id: str | None = None
    """The id (admission number, staff code, sourcedId) the refused row carries, as written (stripped),
    or None when the row has none readable: the planner leaves that person's accounts alone."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


@dataclass(frozen=True)
class StoppedSchool:
    """A trust's school left out of tonight's run: its feed could not be trusted (schools.py), so nothing is
    created, changed, disabled or removed for its people while the other schools' nights go on."""

    code: str
    name: str
    scope: str | None
    """What its people's ids begin with (`URN:`); None for the school that keeps bare ids (no colon)."""
    reason: str
    people: int = 0
    """Its people on the last good run: still counted as the trust's, so the feed-drop guard is not tripped
    by a school that was held rather than emptied."""

    def holds(self, person_id: str) -> bool:
        return ":" not in person_id if self.scope is None else person_id.startswith(self.scope)

    def __str__(self) -> str:
        return f"school {self.code} ({self.name}): {self.reason}"


@dataclass(frozen=True)
class Account:
    """One directory object for one person, as a connector's snapshot sees it."""

    directory: str
    """The connector's configured name (e.g. "entra", "ad", "google")."""
    key: str
    """The directory's own immutable id (AD objectGUID, Entra object id, Google user id)."""
    username: str
    """The short login name (AD sAMAccountName, local part of the UPN / primary email)."""
    login: str
    """The full sign-in name (userPrincipalName / primaryEmail)."""
    given_name: str
    surname: str
    display_name: str
    anchor: str | None
    """The person_id written on the object (employeeID / employeeId / externalIds)."""
    enabled: bool
    container: str = ""
    """Directory-neutral OU path such as "Pupils/Year 7"; "" where the directory has none."""
    attributes: Mapping[str, str] = field(default_factory=dict)
    """Further attributes the planner compares (department, jobTitle, employeeType …)."""
    password_never_expires: bool = False
    must_change_password: bool = False
    synced_from_on_premises: bool = False
    """Entra only: owned by AD through Entra Connect, so synced attributes are read-only."""
    created: datetime | None = None
    last_sign_in: datetime | None = None
    password_last_set: datetime | None = None
    privileged: str = ""
    """Why the account is privileged ("member of Domain Admins", "Global Administrator"), "" when it is
    not: such an account is never adopted, renamed, moved, disabled, deleted, given a password or a
    group by this tool, whatever its domain or OU (README "Safety")."""


@dataclass(frozen=True)
class DeletedAccount:
    """An account in a directory's recycle bin (deleted, still restorable): its name is still held.

    Read only by `state rebuild` (`Connector.recycle_bin`), which reserves the name in the never-reissue record.
    """

    directory: str
    key: str
    """The directory's own id of the deleted object."""
    username: str
    """The short login name it held (sAMAccountName, local part of the UPN / primary email)."""
    anchor: str | None = None
    """The person id it carried, where the bin keeps it."""
    deleted_at: datetime | None = None
    """When it was deleted, where the service says (Graph deletedDateTime, Google deletionTime; AD: whenChanged)."""


@dataclass(frozen=True)
class Group:
    """A group in a directory with its members (account key -> display name)."""

    directory: str
    key: str
    name: str
    members: Mapping[str, str] = field(default_factory=dict)
    managed: bool = True
    """False for groups the tool only reads (e.g. privileged role groups)."""


@dataclass(frozen=True)
class RoleHolder:
    """Someone holding an administrative role, for the access review."""

    directory: str
    role: str
    username: str
    display_name: str
    anchor: str | None = None
    second_factor: str = ""
    """SECOND_FACTOR_ENFORCED / _REGISTERED / _NONE as the directory reports it, "unknown — <why>" when it
    cannot, "" when it was not asked (the review says "unknown" then)."""


SECOND_FACTOR_ENFORCED = "enforced"
"""The directory makes the account use a second factor (Google: enrolled and enforced in 2-Step Verification)."""
SECOND_FACTOR_REGISTERED = "registered"
"""A second factor is registered, but the directory does not say it is required."""
SECOND_FACTOR_NONE = "none"
"""The directory says the account has no second factor: a finding on the access review."""


def second_factor_unknown(why: str) -> str:
    return f"unknown — {why}"


@dataclass(frozen=True)
class Snapshot:
    """What a directory holds in the managed scope, plus the names it holds outside it."""

    directory: str
    accounts: tuple[Account, ...]
    groups: tuple[Group, ...]
    names_outside_scope: frozenset[str] = frozenset()
    """Usernames held by accounts outside the managed scope: never issued to anyone."""
    notes: tuple[str, ...] = ()
    """What the school should know about how the directory was read (a refused delta link meant a
    full read; sign-in dates unavailable): carried into the plan's notes and the run summary."""
    sign_ins_unknown: str = ""
    """Why the accounts' last sign-in dates could not be read ("" when they were): `dormant` then
    disables nobody here, since an unread date looks the same as "never signed in"."""

    def fingerprint(self) -> str:
        """A digest of everything the planner reads, so a stale plan can be refused.

        Made once a snapshot (its values are frozen): the job makes it in the directory's reading thread
        (job/snapshots.py), where a trust's 100,000 accounts cost their 0.4 s while the other directories are
        still being read, and the planner and the saved-plan check reuse it. One JSON text of the whole
        snapshot was tried and was slower than one encode per account.
        """
        made: str | None = self.__dict__.get("_fingerprint")
        if made is None:
            made = self._digest()
            object.__setattr__(self, "_fingerprint", made)  # a cache beside the frozen fields, not one of them
        return made

    def _digest(self) -> str:
        digest = hashlib.sha256()
        encode = _ACCOUNT_JSON
        for account in sorted(self.accounts, key=lambda a: a.key):
            digest.update(
                encode(
                    [
                        account.key, account.username, account.login, account.given_name,
                        account.surname, account.display_name, account.anchor, account.enabled,
                        account.container, sorted(account.attributes.items()),
                        account.password_never_expires, account.synced_from_on_premises,
                        account.privileged,
                    ],
                ).encode()
            )
        for group in sorted(self.groups, key=lambda g: g.key):
            digest.update(json.dumps([group.key, group.name, sorted(group.members)]).encode())
        digest.update(json.dumps(sorted(self.names_outside_scope)).encode())
        return digest.hexdigest()[:32]


@slot_setting_init
@dataclass(frozen=True, slots=True)
class DesiredAccount:
    """What one person's account in one directory should look like (mapping output)."""

    directory: str
    person_id: str
    kind: Kind
    username: str
    login: str
    given_name: str
    surname: str
    display_name: str
    container: str
    groups: frozenset[str]
    attributes: Mapping[str, str] = field(default_factory=dict)
    enabled: bool = True


class Action(StrEnum):
    CREATE = "create"
    ADOPT = "adopt"
    UPDATE = "update"
    RENAME = "rename"
    MOVE = "move"
    ENABLE = "enable"
    DISABLE = "disable"
    DELETE = "delete"
    CREATE_GROUP = "create-group"
    ADD_MEMBER = "add-member"
    REMOVE_MEMBER = "remove-member"
    SET_PASSWORD = "set-password"  # noqa: S105 - an action name, not a secret
    REQUIRE_PASSWORD_CHANGE = "require-password-change"  # noqa: S105 - an action name
    REVOKE_SESSIONS = "revoke-sessions"


_CHANGE_ID_JSON = json_encoder(sort_keys=True)
"""json.dumps(..., default=str, sort_keys=True), for Change.change_id."""

DESTRUCTIVE_ACTIONS = frozenset({Action.DISABLE, Action.DELETE})
"""Always counted by the guard; REMOVE_MEMBER counts when the group is restricted."""


@dataclass(frozen=True, slots=True)
class Change:
    """One planned operation on one directory object, with the reason a person would give.

    `before` / `after` hold only the attributes that change. For CREATE, `after` holds the
    whole new account (username, login, given_name, surname, display_name, container,
    attributes, enabled). For RENAME, `after` has username and login. For MOVE, container.
    For ADD_MEMBER / REMOVE_MEMBER and CREATE_GROUP, `group` names the group.
    """

    directory: str
    action: Action
    person_id: str | None
    username: str
    reason: str
    target: str | None = None
    """The account key the change applies to; None for CREATE and CREATE_GROUP."""
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    group: str | None = None
    restricted: bool = False
    """True for a REMOVE_MEMBER from a restricted share's group (counted as destructive)."""
    password: str | None = field(default=None, repr=False, compare=False)
    """Set by the executor just before apply for CREATE / SET_PASSWORD; never serialised."""
    change_id: str = field(init=False, repr=False, compare=False)
    """Deterministic id: the same change planned twice has the same id (journal key)."""

    def __post_init__(self) -> None:
        # Worked out once: the planner, guards, executor and journal read it hundreds of thousands of times
        # on a trust's first night, and a JSON encoding and a SHA-256 each time cost seconds.
        payload = _CHANGE_ID_JSON(
            [self.directory, self.action, self.person_id, self.target, self.group, sorted(self.after.items())]
        )
        object.__setattr__(self, "change_id", hashlib.sha256(payload.encode()).hexdigest()[:24])

    @property
    def destructive(self) -> bool:
        return self.action in DESTRUCTIVE_ACTIONS or (
            self.action is Action.REMOVE_MEMBER and self.restricted
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "change_id": self.change_id,
            "directory": self.directory,
            "action": str(self.action),
            "person_id": self.person_id,
            "username": self.username,
            "target": self.target,
            "group": self.group,
            "restricted": self.restricted,
            "before": dict(self.before),
            "after": dict(self.after),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        return cls(
            directory=str(data["directory"]),
            action=Action(data["action"]),
            person_id=data.get("person_id"),
            username=str(data["username"]),
            reason=str(data["reason"]),
            target=data.get("target"),
            before=dict(data.get("before") or {}),
            after=dict(data.get("after") or {}),
            group=data.get("group"),
            restricted=bool(data.get("restricted", False)),
        )


@dataclass(frozen=True)
class Plan:
    """The ordered Changes plus the fingerprints of the snapshots they were computed from."""

    changes: tuple[Change, ...]
    fingerprints: Mapping[str, str]
    """directory -> Snapshot.fingerprint() at planning time."""
    managed_counts: Mapping[str, int] = field(default_factory=dict)
    """directory -> number of managed accounts, for the percentage guard."""
    people_count: int = 0
    created_at: str = ""
    notes: tuple[str, ...] = ()
    """Things a person should know that are not changes (unmanaged accounts, hybrid users)."""
    held: tuple[str, ...] = ()
    """People and accounts left untouched this run because a feed row about them was rejected, each with why."""
    rejected_rows: tuple[str, ...] = ()
    """Every feed row that was refused, as `file:line: field: message`."""
    plan_id: str = ""
    """A saved plan file's own random id (written by `plan --out`): its journal's key, so applying the
    same file again resumes that file and nothing else. "" for a plan that was never saved."""
    origin: str = "feed"
    """What the plan was computed from: "feed" (the nightly plan) or "access-review" (the SIRO's
    decisions), which decides how `apply` checks that it is still called for."""
    decisions: Mapping[str, Any] = field(default_factory=dict)
    """An access-review plan's decisions (`reports.decisions.decisions_to_json`), recorded when it is applied."""

    def for_directory(self, directory: str) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.directory == directory)


class Outcome(StrEnum):
    APPLIED = "applied"
    ALREADY = "already-so"
    FAILED = "failed"
    WAITING = "waiting"
    """Not made, and not a failure: the directory is still busy with something the change must wait for (a
    Google leaver's Data Transfer before the delete). Nothing was written; the next run plans it again."""


@dataclass(frozen=True)
class Result:
    """What happened to one Change."""

    change_id: str
    outcome: Outcome
    detail: str = ""
    retryable: bool = False
    key: str | None = None
    """The directory key of an object the change created or adopted."""
    unconfirmed: bool = False
    """FAILED as far as this run knows, but sent and never answered (the directory was given up
    on): it may have landed. The executor leaves it `started`, for the next run's fresh look to settle."""


PLAN_SCHEMA = "idlifecycle-plan/1"


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The saved-plan document (README "Plan file"); it never holds a password."""
    return {
        "schema": PLAN_SCHEMA,
        "plan_id": plan.plan_id,
        "origin": plan.origin,
        "created_at": plan.created_at,
        "people_count": plan.people_count,
        "fingerprints": dict(plan.fingerprints),
        "managed_counts": dict(plan.managed_counts),
        "notes": list(plan.notes),
        "held": list(plan.held),
        "rejected_rows": list(plan.rejected_rows),
        "changes": [c.to_json() for c in plan.changes],
        "decisions": dict(plan.decisions),
    }


def plan_from_json(data: Mapping[str, Any]) -> Plan:
    if data.get("schema") != PLAN_SCHEMA:
        raise ValueError(f"not an idlifecycle plan (schema {data.get('schema')!r}, expected {PLAN_SCHEMA!r})")
    return Plan(
        changes=tuple(Change.from_json(c) for c in data["changes"]),
        fingerprints=dict(data["fingerprints"]),
        managed_counts={k: int(v) for k, v in data.get("managed_counts", {}).items()},
        people_count=int(data.get("people_count", 0)),
        created_at=str(data.get("created_at", "")),
        notes=tuple(data.get("notes", ())),
        held=tuple(data.get("held", ())),
        rejected_rows=tuple(data.get("rejected_rows", ())),
        plan_id=str(data.get("plan_id") or ""),
        origin=str(data.get("origin") or "feed"),
        decisions=dict(data.get("decisions") or {}),
    )


@dataclass(frozen=True)
class Capabilities:
    """What a directory can do, declared rather than discovered by trial and error.

    Declared by each connector class; read by the planner and mapping, so it lives in the model (the
    core knows no connector module). `connectors.base` re-exports it for connectors.
    """

    containers: bool = True
    """Has OUs / org units; Entra has none, so MOVE is never planned there."""
    max_username_length: int | None = None
    revoke_sessions: bool = True
    licence_groups: bool = False
    """Licences are assigned by membership of licence groups (Entra group-based licensing)."""
    hybrid: bool = False
    """Some accounts may be owned by on-prem AD (Entra Connect): their synced attributes are read-only."""
    password_rules: str = ""
    """Which directory's password rules apply: "ad", "entra" or "google"."""
    max_anchor_length: int | None = None
    """How many characters the person-id attribute holds; a longer id is written as its short anchor
    (`idlifecycle.anchors`), and the snapshot's anchors are given back the full ids by the job."""
    recycle_bin: bool = False
    """Can list the deleted, still restorable accounts of its scope (`Connector.recycle_bin`), whose names
    `state rebuild` reserves."""
