"""Teachers reset their own pupils' passwords (issue 18): who may reset whom, and the reset itself.

The rules are pure (`may_reset`, `refusal`): a teacher may reset a pupil of a group they teach (the
pupil's registration group or one of their classes, against the classes the feed says the teacher
teaches and the job's `[teaching]` table), a `password_admins` member any managed pupil; nobody resets
a member of staff, a privileged account or a pupil with no account in the managed scope.

`reset_pupils` is the one way a class reset happens, for the web page and for the IT desk's
`passwords reset-class` alike: every refusal is audited (`class-reset-refused`) and raised as one
`UserError`, nothing set for anyone when any pupil of the request is refused; the rate limit counts
per teacher in the store (`class_resets`), so a restart does not reset it; the passwords come from the
same `PasswordIssuer` as the night's (history, effective policy, one password across directories) and
are handed back once, never stored in clear or logged.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from html import escape
from typing import Any, Protocol

from idlifecycle.connectors.base import Connector
from idlifecycle.errors import ConfigError, UserError
from idlifecycle.model import Account, Action, Change, Kind, Outcome, Person, Snapshot
from idlifecycle.passwords._job import ResetJob
from idlifecycle.passwords.issuer import PasswordIssuer
from idlifecycle.passwords.owed import privileged_accounts
from idlifecycle.passwords.reset import accounts_to_reset
from idlifecycle.store import ClassReset, utcnow

DEFAULT_PER_HOUR = 60
"""Pupils one teacher may have reset in an hour: two classes at once, not a year group."""


class Actor(Protocol):
    """Who asks: the signed-in member of staff (`idlifecycle.web.signin.SignedIn` has these), or the teacher
    the IT desk acts for."""

    @property
    def username(self) -> str: ...

    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class ClassResetSettings:
    """The job's `[class_resets]` (password_admins, password_admin_groups, per_hour) and `[teaching]` tables."""

    password_admins: frozenset[str] = frozenset()
    """Staff usernames or ids, lower case, who may reset any managed pupil (the office, IT technicians)."""
    password_admin_groups: frozenset[str] = frozenset()
    """Directory groups (names, lower case) whose members are password admins, e.g. "IT Technicians"."""
    per_hour: int = DEFAULT_PER_HOUR
    teaching: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Registration group or class -> the staff ids or usernames (lower case) who teach it."""


def load_settings(job: ResetJob) -> ClassResetSettings:
    """The two tables checked: a wrong type is one ConfigError naming the job file and key."""
    source = str(job.config.path)
    table = dict(job.section("class_resets"))
    known = ("password_admins", "password_admin_groups", "per_hour")
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(source, f"class_resets.{unknown[0]}", f"is not a setting; known: {', '.join(known)}")
    admins = _names(source, "class_resets.password_admins", table.get("password_admins", []))
    admin_groups = _names(source, "class_resets.password_admin_groups", table.get("password_admin_groups", []))
    per_hour = table.get("per_hour", DEFAULT_PER_HOUR)
    if not isinstance(per_hour, int) or isinstance(per_hour, bool) or per_hour < 1:
        raise ConfigError(source, "class_resets.per_hour", "must be a whole number of pupils an hour, at least 1")
    teaching = {str(group): _names(source, f"teaching.{group}", refs)
                for group, refs in job.section("teaching").items()}
    return ClassResetSettings(admins, admin_groups, per_hour, teaching)


def _names(source: str, key: str, value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise ConfigError(source, key, 'must be a list of staff usernames or staff ids, e.g. ["JDO", "jdoe"]')
    return frozenset(item.strip().lower() for item in value)


@dataclass(frozen=True)
class Teacher:
    """A member of staff as a class reset sees them: the names they sign in by, the groups they teach."""

    person: Person
    names: frozenset[str]
    """Their staff id, the feed's username and email, and their accounts' usernames and logins, lower case."""
    groups: frozenset[str]
    admin: bool = False


def sign_in_names(people: Iterable[Person], snapshots: Mapping[str, Snapshot]) -> dict[str, frozenset[str]]:
    """person_id -> the names they may sign in by, lower case: their id, the feed's username and email, and
    their accounts' usernames and logins. One pass over the accounts, whatever the number of people."""
    found: dict[str, set[str]] = {p.person_id: {p.person_id, p.username or "", p.email or ""} for p in people}
    for snap in snapshots.values():
        for account in snap.accounts:
            if account.anchor in found:
                found[account.anchor] |= {account.username, account.login}
    return {pid: frozenset(n.lower() for n in names if n) for pid, names in found.items()}


def teacher_of(person: Person, names: frozenset[str], settings: ClassResetSettings,
               in_admin_group: bool = False) -> Teacher:
    """The groups a member of staff teaches: the feed's (`Person.teaches`) and the `[teaching]` table's."""
    groups = set(person.teaches) | {group for group, refs in settings.teaching.items() if refs & names}
    return Teacher(person, names, frozenset(groups),
                   admin=in_admin_group or bool(names & settings.password_admins))


def in_admin_group(person_id: str, snapshots: Mapping[str, Snapshot], settings: ClassResetSettings,
                   source: str) -> bool:
    """Whether one of the person's accounts is a member of a `password_admin_groups` group, in the directory
    that holds the group. A configured group that no directory holds is a ConfigError (a typo would
    otherwise quietly make nobody an admin, and the office's resets would be refused for no clear reason)."""
    if not settings.password_admin_groups:
        return False
    groups = [g for snap in snapshots.values() for g in snap.groups if g.name.lower() in settings.password_admin_groups]
    missing = sorted(settings.password_admin_groups - {g.name.lower() for g in groups})
    if missing:
        raise ConfigError(source, "class_resets.password_admin_groups", f"no directory holds a group named "
                                  f"{missing[0]!r} (only the groups in the managed scope are read)")
    keys = {(a.directory, a.key) for snap in snapshots.values() for a in snap.accounts if a.anchor == person_id}
    return any((g.directory, key) in keys for g in groups for key in g.members)


def pupil_groups(pupil: Person) -> frozenset[str]:
    return frozenset({*pupil.classes, *((pupil.registration_group,) if pupil.registration_group else ())})


def refusal(teacher: Teacher, pupil: Person, accounts: Sequence[Account] = (),
            privileged: Sequence[Account] = ()) -> str | None:
    """Why `teacher` may not reset `pupil`'s password (None: they may), given the pupil's enabled managed
    `accounts` and those of them (or synced to from them) that are `privileged`. Outside the teacher's groups
    is told before an admin role, so a teacher learns nothing of accounts that are not theirs to reset."""
    who = f"{pupil.display_name} ({pupil.person_id})"
    if pupil.kind is not Kind.PUPIL:
        return f"{who} is a member of staff: teachers reset pupils' passwords only"
    if not teacher.admin and not pupil_groups(pupil) & teacher.groups:
        return f"{who} is not in a group {teacher.person.display_name} teaches"
    if privileged:
        which = ", ".join(f"{a.directory} {a.username} ({a.privileged})" for a in privileged)
        return f"{who}: {which} is a privileged account; its password is set by hand in the directory"
    if not accounts:
        return f"{who} has no enabled account this tool manages"
    return None


def may_reset(teacher: Teacher, pupil: Person, accounts: Sequence[Account] = (),
              privileged: Sequence[Account] = ()) -> bool:
    return refusal(teacher, pupil, accounts, privileged) is None


@dataclass(frozen=True)
class Slip:
    """One pupil's new password, to show once and print; never stored, never logged (not in its repr)."""

    pupil: Person
    username: str
    password: str = field(repr=False)
    set_in: tuple[str, ...]
    change_at_sign_in: bool


@dataclass(frozen=True)
class ClassResetOutcome:
    teacher: Person
    slips: tuple[Slip, ...]
    failed: tuple[str, ...]
    """`username: directory: detail` for each directory that refused a password (no password in it)."""


@dataclass(frozen=True)
class _Request:
    job: ResetJob
    actor: Actor
    from_address: str
    operator: str

    def audit_refusal(self, teacher: str, reason: str, pupil_id: str | None = None) -> UserError:
        self.job.store.audit("class-reset-refused", {
            "teacher": teacher, "pupil_id": pupil_id, "reason": reason, "from": self.from_address,
            "operator": self.operator}, actor=self.actor.username)
        return UserError(f"class reset refused: {reason}")


def reset_pupils(job: ResetJob, connectors: Mapping[str, Connector], actor: Actor, *, pupils: Iterable[str] = (),
                 group: str | None = None, from_address: str, operator: str = "") -> ClassResetOutcome:
    """New passwords for the `pupils` (ids) or the whole `group`, asked by `actor` from `from_address`
    (the client's address; the IT desk's host), `operator` naming who typed it for the teacher."""
    request = _Request(job, actor, from_address, operator)
    settings = load_settings(job)
    people = {p.person_id: p for p in job.read_people().people}
    snapshots = job.snapshots(connectors)
    teacher = _signed_in_teacher(request, people, snapshots, settings)
    targets = _targets(request, teacher, people, list(pupils), group)
    # Only the targets' accounts from here on: each pupil's checks then look through a handful, not a trust's.
    wanted = {pupil.person_id for pupil in targets}
    snapshots = {name: replace(snap, accounts=tuple(a for a in snap.accounts if a.anchor in wanted))
                 for name, snap in snapshots.items()}
    refused = [(pupil, reason) for pupil in targets if (reason := refusal(
        teacher, pupil, accounts_to_reset(pupil.person_id, snapshots),
        privileged_accounts(pupil.person_id, snapshots))) is not None]
    if refused:
        for pupil, reason in refused:
            request.audit_refusal(teacher.person.person_id, reason, pupil.person_id)
        raise UserError(f"class reset refused, nothing was set: {'; '.join(reason for _, reason in refused)}")
    _check_rate(request, teacher, len(targets), settings.per_hour)
    return _reset(request, teacher, people, targets, snapshots, connectors)


def _signed_in_teacher(request: _Request, people: Mapping[str, Person], snapshots: Mapping[str, Snapshot],
                       settings: ClassResetSettings) -> Teacher:
    """The member of staff the actor's username names; nobody, a pupil or two people are refusals (a pupil's
    username equal to a staff id must not make the pupil that teacher)."""
    wanted = request.actor.username.strip().lower()
    matches = [(people[pid], names) for pid, names in sign_in_names(people.values(), snapshots).items()
               if wanted in names]
    if len(matches) > 1:
        who = ", ".join(sorted(person.person_id for person, _ in matches))
        raise request.audit_refusal(request.actor.username,
                                    f"{request.actor.username} names more than one person ({who})")
    if not matches:
        raise request.audit_refusal(request.actor.username,
                                    f"{request.actor.username} is not a member of staff in the feed")
    [(person, names)] = matches
    if person.kind is not Kind.STAFF:
        raise request.audit_refusal(person.person_id, f"{request.actor.username} is not a member of staff")
    return teacher_of(person, names, settings, in_admin_group(person.person_id, snapshots, settings,
                                                              str(request.job.config.path)))


def class_lists(job: ResetJob, connectors: Mapping[str, Connector], actor: Actor, *,
                from_address: str) -> tuple[Teacher, dict[str, list[Person]]]:
    """What the reset page shows `actor`: each group they teach and its pupils on roll, in name order (a
    password admin also sees every other registration group). Refused, and audited, as a reset is for
    someone who is not a member of staff."""
    request = _Request(job, actor, from_address, "")
    people = {p.person_id: p for p in job.read_people().people}
    teacher = _signed_in_teacher(request, people, job.snapshots(connectors), load_settings(job))
    groups: dict[str, list[Person]] = {}
    for pupil in sorted((p for p in people.values() if p.kind is Kind.PUPIL),
                        key=lambda p: (p.last_name, p.first_name, p.person_id)):
        for group in pupil_groups(pupil):
            if group in teacher.groups or (teacher.admin and group == pupil.registration_group):
                groups.setdefault(group, []).append(pupil)
    return teacher, dict(sorted(groups.items()))


def _targets(request: _Request, teacher: Teacher, people: Mapping[str, Person], pupil_ids: list[str],
             group: str | None) -> list[Person]:
    """The pupils asked for, each once, in name order; an unknown id or an empty group is a refusal."""
    teacher_id = teacher.person.person_id
    if group is not None:
        members = [p for p in people.values() if p.kind is Kind.PUPIL and group in pupil_groups(p)]
        if not teacher.admin and group not in teacher.groups:
            taught = ", ".join(sorted(teacher.groups)) or "none"
            raise request.audit_refusal(teacher_id, f"{teacher.person.display_name} does not teach {group!r} "
                                                    f"(groups taught: {taught})")
        if not members:
            raise request.audit_refusal(teacher_id, f"no pupil on roll is in {group!r}")
        return sorted(members, key=lambda p: (p.last_name, p.first_name, p.person_id))
    if not pupil_ids:
        raise UserError("class reset: name a group or at least one pupil")
    unknown = [pid for pid in dict.fromkeys(pupil_ids) if pid not in people]
    if unknown:
        raise request.audit_refusal(teacher_id, f"{', '.join(unknown)}: not on roll (not in the feed)", unknown[0])
    return [people[pid] for pid in dict.fromkeys(pupil_ids)]


def _check_rate(request: _Request, teacher: Teacher, wanted: int, per_hour: int) -> None:
    done = request.job.store.count_class_resets(teacher.person.person_id, utcnow() - timedelta(hours=1))
    if done + wanted > per_hour:
        raise request.audit_refusal(
            teacher.person.person_id,
            f"{teacher.person.display_name} has had {done} pupils' passwords reset in the last hour and asked for "
            f"{wanted} more; the limit is {per_hour} an hour (class_resets.per_hour): try again later")


def _reset(request: _Request, teacher: Teacher, people: Mapping[str, Person], targets: Sequence[Person],
           snapshots: Mapping[str, Snapshot], connectors: Mapping[str, Connector]) -> ClassResetOutcome:
    job = request.job
    issuer = PasswordIssuer.for_job(job, connectors)
    change_at = {p.person_id: issuer.settings.for_person(p).change_at_sign_in for p in targets}
    by = f"{request.actor.username} for {request.operator}" if request.operator else request.actor.username
    changes = [Change(a.directory, Action.SET_PASSWORD, p.person_id, a.username,
                      f"class reset by {teacher.person.display_name}" + (f" (entered by {request.operator})"
                                                                          if request.operator else ""),
                      target=a.key, after={"must_change_password": change_at[p.person_id]})
               for p in targets for a in accounts_to_reset(p.person_id, snapshots)]
    results = job.apply_changes(changes, connectors, actor=by, password_for=issuer.password_for(people, changes))
    by_id = {c.change_id: c for c in changes}
    set_in: dict[str, list[str]] = {}
    failed: list[str] = []
    for result in results:
        change = by_id[result.change_id]
        if result.outcome is Outcome.FAILED:
            failed.append(f"{change.username}: {change.directory}: {result.detail}")
        elif change.person_id is not None:
            set_in.setdefault(change.person_id, []).append(change.directory)
    handed = issuer.hand_over(set_in, f"{request.actor.username} ({request.from_address})", set_in)
    _record(request, teacher, targets, changes, set_in)
    slips = tuple(Slip(item.person, item.username, item.password, tuple(set_in[item.person.person_id]),
                       change_at[item.person.person_id]) for item in handed)
    return ClassResetOutcome(teacher.person, slips, tuple(failed))


def _record(request: _Request, teacher: Teacher, targets: Sequence[Person], changes: Sequence[Change],
            set_in: Mapping[str, Collection[str]]) -> None:
    """One rate-limit row and one audit entry per pupil asked for, set or not, in one transaction."""
    store, at = request.job.store, utcnow()
    usernames = {c.person_id: c.username for c in changes}
    with store.transaction():
        for pupil in targets:
            directories = tuple(set_in.get(pupil.person_id, ()))
            username = usernames.get(pupil.person_id, "")
            store.record_class_reset(ClassReset(teacher.person.person_id, pupil.person_id, username, at,
                                                request.from_address, request.operator, directories))
            store.audit("class-reset", {
                "teacher": teacher.person.person_id, "teacher_name": teacher.person.display_name,
                "pupil_id": pupil.person_id, "username": username, "directories": list(directories),
                "from": request.from_address, "operator": request.operator}, actor=request.actor.username)


def slips_text(outcome: ClassResetOutcome, school_name: str) -> str:
    """The printable slips as plain text, one a block, to cut apart and hand out."""
    blocks = []
    for slip in outcome.slips:
        then = ("You will be asked to choose your own password when you sign in." if slip.change_at_sign_in
                else "Keep this password safe.")
        blocks.append("\n".join((school_name, f"{slip.pupil.display_name} ({slip.pupil.registration_group or ''})",
                                 f"Username: {slip.username}", f"Password: {slip.password}", then)))
    return ("\n" + "-" * 40 + "\n").join(blocks)


def slips_html(outcome: ClassResetOutcome, school_name: str) -> str:
    """The same slips as one HTML page to print (inline style only: nothing loaded from elsewhere)."""
    cells = "".join(
        f'<section class="slip"><h2>{escape(school_name)}</h2><p>{escape(s.pupil.display_name)}</p>'
        f"<p>Username: <b>{escape(s.username)}</b></p><p>Password: <b>{escape(s.password)}</b></p>"
        f"<p>{'Choose your own password when you sign in.' if s.change_at_sign_in else 'Keep it safe.'}</p>"
        "</section>" for s in outcome.slips)
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Password slips</title><style>'
            ".slip{border:1px dashed #000;padding:1em;margin:1em 0;page-break-inside:avoid;font:14pt sans-serif}"
            f"</style></head><body>{cells}</body></html>")
