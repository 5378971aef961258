"""PasswordIssuer: the one place the executor gets a new password from, and delivery afterwards.

One password per person per run, whatever the number of directories; it lives only in memory
(and as a hash in the history) until `deliver` hands it to the class teacher or line manager. The
executor records it as owed before it is sent; delivery settles that (see `passwords.owed`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from idlifecycle.connectors.base import Connector, ConnectorError
from idlifecycle.errors import UserError
from idlifecycle.model import Action, Change, Person
from idlifecycle.passwords._job import PasswordsJob
from idlifecycle.passwords.ahead import Ahead, Drawn
from idlifecycle.passwords.delivery import (
    NO_GROUP,
    Issued,
    Mailer,
    email_line_manager,
    remove_old_slips,
    write_slips,
)
from idlifecycle.passwords.generator import generate
from idlifecycle.passwords.history import PasswordHistory
from idlifecycle.passwords.policy import (
    CommonPasswords,
    Identity,
    Policy,
    Rules,
    banned_words_for,
    check,
    directory_rules,
    effective_policy,
)
from idlifecycle.passwords.settings import PasswordSettings, load_settings
from idlifecycle.store import Store

log = logging.getLogger(__name__)

STAFF_WITHOUT_EMAIL = "Staff - to hand out"


def settings_for_job(job: PasswordsJob) -> PasswordSettings:
    return load_settings(job.section("passwords"), job_file=Path(job.config.path),
                         state_dir=Path(job.config.state_dir))


def rules_of(connectors: Mapping[str, Connector]) -> dict[str, Rules]:
    """Each directory's own password rules, as its connector declares and reports them."""
    found: dict[str, Rules] = {}
    for name, connector in connectors.items():
        try:
            constraints = connector.password_constraints()
        except ConnectorError as error:
            raise UserError(f"{name}: could not read the directory's password rules: {error}") from None
        rules = directory_rules(connector.capabilities.password_rules, constraints)
        if rules is not None:
            found[name] = rules
    return found


@dataclass
class DeliveryReport:
    """What `deliver` did, in words safe for a log or a report (no passwords)."""

    slips: list[Path] = field(default_factory=list)
    emailed: list[str] = field(default_factory=list)
    """Usernames whose password went to their line manager."""
    not_set: list[str] = field(default_factory=list)
    """Usernames issued a password that no directory accepted: nothing delivered."""
    removed: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    """Usernames whose email could not be sent: their password stays owed (a fresh one next run)."""


class PasswordIssuer:
    def __init__(self, settings: PasswordSettings, store: Store, rules: Mapping[str, Rules], today: date,
                 *, common: CommonPasswords | None = None, history: PasswordHistory | None = None) -> None:
        self.settings = settings
        self.store = store
        self.rules = dict(rules)
        self.today = today
        self.common = common if common is not None else CommonPasswords.shipped()
        self.history = history or PasswordHistory(store)
        self._issued: dict[str, Issued] = {}
        self._ahead: Ahead | None = None
        self._banned = banned_words_for(settings.school_name, settings.banned)

    @classmethod
    def for_job(cls, job: PasswordsJob, connectors: Mapping[str, Connector]) -> PasswordIssuer:
        return cls(settings_for_job(job), job.store, rules_of(connectors), job.today)

    def policy_for(self, person: Person, directories: Sequence[str]) -> Policy:
        configured = self.settings.for_person(person).rules()
        return effective_policy([configured, *(self.rules[d] for d in directories if d in self.rules)],
                                self._banned)

    @staticmethod
    def identity_of(person: Person, username: str) -> Identity:
        names = (person.legal_first_name, person.preferred_first_name or "", person.last_name)
        return Identity(username, person.display_name, tuple(n for n in names if n))

    def issue(self, person: Person, username: str, directories: Sequence[str]) -> str:
        """The person's new password for this run: generated once, reused for every directory."""
        return self._issue(person, username, directories, lambda: self._draw(person, username, directories))

    def _issue(self, person: Person, username: str, directories: Sequence[str], draw: Callable[[], Drawn]) -> str:
        """Records the password `draw` gives (history) the first time the person is asked for; the same after."""
        known = self._issued.get(person.person_id)
        if known is not None:
            if check(known.password, self.policy_for(person, directories), self.identity_of(person, username),
                     self.common):
                raise RuntimeError(f"password for {username} was issued for {', '.join(known.directories)} and "
                                   f"then asked for {', '.join(directories)}: pass all directories the first time")
            self._issued[person.person_id] = Issued(
                person, username, known.password, tuple(dict.fromkeys((*known.directories, *directories))))
            return known.password
        drawn = draw()
        self.history.record(person.person_id, drawn.password, keep=self.settings.for_person(person).history,
                            hashed=drawn.hashed)
        self._issued[person.person_id] = Issued(person, username, drawn.password, tuple(directories))
        return drawn.password

    def _draw(self, person: Person, username: str, directories: Sequence[str]) -> Drawn:
        """A password the person has not had lately, with its history entry. Touches no store: it runs on
        `Ahead`'s threads too (the history was `load`ed)."""
        identity = self.identity_of(person, username)
        policy = self.policy_for(person, directories)
        configured = self.settings.for_person(person)
        for _ in range(100):
            password = generate(policy, identity, style=configured.style, length=configured.length,
                                common=self.common, vocabulary=self.settings.words)
            if not self.history.used_recently(person.person_id, password, configured.history):
                return Drawn(password, self.history.hashed(password))
        # Needs 100 collisions with a handful of stored hashes.
        raise RuntimeError(f"every password generated for {username} was one used before")  # pragma: no cover

    def password_for(self, people: Mapping[str, Person], changes: Sequence[Change]) -> Callable[[Change], str]:
        """The executor's `password_for` hook for a plan: each person gets one password, valid in
        every directory where the plan creates them or sets their password.

        The plan's passwords are drawn ahead, in its order, on threads of their own (`passwords.ahead`),
        so a directory's worker asking for one takes it ready; each is still recorded when asked for."""
        directories: dict[str, list[str]] = {}
        usernames: dict[str, str] = {}
        for change in changes:
            if change.action in (Action.CREATE, Action.SET_PASSWORD) and change.person_id is not None:
                directories.setdefault(change.person_id, []).append(change.directory)
                usernames.setdefault(change.person_id, change.username)
        self.history.load(directories)
        if self._ahead is not None:
            self._ahead.close()
        wanted = [pid for pid in directories if pid in people]
        ahead = self._ahead = Ahead(lambda pid: self._draw(people[pid], usernames[pid], directories[pid]), wanted)

        def drawn(person: Person, username: str, person_directories: Sequence[str]) -> Drawn:
            taken = ahead.take(person.person_id)
            if username != usernames.get(person.person_id) and check(
                    taken.password, self.policy_for(person, person_directories), self.identity_of(person, username),
                    self.common):
                return self._draw(person, username, person_directories)  # it names this directory's username
            return taken

        def give(change: Change) -> str:
            if change.person_id is None or change.person_id not in people:
                raise RuntimeError(f"{change.action} {change.username}: no person in the feed to issue a password for")
            person = people[change.person_id]
            person_directories = directories.get(change.person_id, [change.directory])
            return self._issue(person, change.username, person_directories,
                               lambda: drawn(person, change.username, person_directories))

        return give

    def deliver(self, mailer: Mailer | None, *, applied: Collection[str] | None = None,
                set_in: Mapping[str, Collection[str]] | None = None) -> DeliveryReport:
        """Hand out what was issued: slips per registration group, email to line managers.

        `applied` lists the person_ids whose password at least one directory accepted; the others
        are not delivered (a slip with a password that works nowhere helps nobody). Each delivery
        ends the person's password obligation (store `passwords_owed`) in the directories `set_in`
        names for them (all they were issued for when not given), in the same transaction as its
        audit entry; a mail that fails leaves it owed, so the next run sets a fresh one and delivers
        that. Old slip sheets are removed on every call, so call it on every run.
        """
        report = DeliveryReport()
        slips: list[Issued] = []
        unmailed: list[Issued] = []
        for person_id, item in sorted(self._issued.items()):
            if applied is not None and person_id not in applied:
                report.not_set.append(item.username)
                log.warning("password for %s was not set in any directory: not delivered", item.username)
                continue
            method = self.settings.for_person(item.person).delivery
            to = self.settings.line_manager(item.person) if method == "email" else None
            if method == "slips":
                slips.append(item)
            elif mailer is None or to is None:
                log.warning("no %s for %s's line manager: their password goes on a slip sheet instead",
                            "mail settings" if mailer is None else "address", item.username)
                unmailed.append(item)
            else:
                try:
                    email_line_manager(mailer, to, item, self.settings.school_name)
                except (UserError, OSError) as error:
                    # Kept owed: nobody has this password, so the next run sets a fresh one and mails that.
                    log.warning("password for %s could not be emailed to %s: %s; it stays owed", item.username,
                                to, error)
                    self.store.note_password_owed(person_id, f"email to {to} failed: {error}")
                    report.failed.append(item.username)
                    continue
                self._delivered(item, "email", to, set_in)
                report.emailed.append(item.username)
        folder = self.settings.slip_folder
        for group_of, items in ((None, slips), (STAFF_WITHOUT_EMAIL, unmailed)):
            for group, members in _by_group(items, group_of):
                # One sheet at a time, each settled as soon as it is on disk: a kill loses at most one sheet.
                report.slips += write_slips(folder, members, self.today, self.settings.school_name, group_of=group)
                for item in members:
                    self._delivered(item, "slip", str(folder), set_in)
        report.removed = remove_old_slips(folder, self.today, self.settings.slip_days)
        self._issued.clear()
        if self._ahead is not None:  # the run is over: nothing more is drawn for it
            self._ahead.close()
            self._ahead = None
        return report

    def hand_over(self, applied: Collection[str], to: str,
                  set_in: Mapping[str, Collection[str]]) -> list[Issued]:
        """The passwords issued to the `applied` people, handed to the caller to show once (a teacher's class
        reset: on screen and as a slip the teacher prints), instead of a slip sheet on disk or an email.

        Handing over is their delivery: each ends the person's password obligation in the directories
        `set_in` names, audited (`password-delivered`, method "shown", to whom) with no password in it."""
        handed = [item for person_id, item in sorted(self._issued.items()) if person_id in applied]
        for item in handed:
            self._delivered(item, "shown", to, set_in)
        self._issued.clear()
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None
        return handed

    def _delivered(self, item: Issued, method: str, to: str, set_in: Mapping[str, Collection[str]] | None) -> None:
        person_id = item.person.person_id
        directories = list(item.directories if set_in is None else set_in.get(person_id, ()))
        with self.store.transaction():
            self.store.settle_password(person_id, directories)
            self.store.audit("password-delivered", {
                "person_id": person_id, "username": item.username, "method": method, "to": to,
                "directories": list(item.directories),
            })


def _by_group(items: Sequence[Issued], group_of: str | None) -> list[tuple[str, list[Issued]]]:
    """Slips by the sheet they go on: the registration group, or all under `group_of`."""
    groups: dict[str, list[Issued]] = {}
    for item in items:
        groups.setdefault(group_of or item.person.registration_group or NO_GROUP, []).append(item)
    return sorted(groups.items())
