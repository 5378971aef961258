"""The termly password change: on the first night of a term, "change at next sign-in" for the
kinds configured, and "password never expires" cleared on managed accounts.

A night can be missed (server off, run failed), so the change is due from the term's first day
until it has been done, for up to `catch_up_days` days; after that a term is left alone, so
installing the tool mid-term does not force everyone to change at once. What was done is kept
in the store: `password_term_flags` (each account flagged for a term) and `password_terms_done`
(a term finished: every flag applied). `termly_changes` leaves out accounts already flagged, so a
second run in the same term never asks someone who has since chosen a password to change again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from idlifecycle.model import Action, Change, Outcome, Person, Result, Snapshot
from idlifecycle.passwords._job import PasswordsJob
from idlifecycle.passwords.issuer import settings_for_job
from idlifecycle.passwords.settings import PasswordSettings, Term
from idlifecycle.store import Store, utcnow

if TYPE_CHECKING:
    from datetime import date


log = logging.getLogger(__name__)

REASON_PREFIX = "termly password change"

DDL = """
CREATE TABLE IF NOT EXISTS password_term_flags (
    term_starts TEXT NOT NULL, directory TEXT NOT NULL, key TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (term_starts, directory, key)
);
CREATE TABLE IF NOT EXISTS password_terms_done (
    term_starts TEXT PRIMARY KEY, name TEXT NOT NULL, done_at TEXT NOT NULL
);
"""


def due_term(settings: PasswordSettings, store: Store, today: date) -> Term | None:
    """The term whose change is due today, if any."""
    store.ensure_schema(DDL)
    term = settings.current_term(today)
    if term is None or (today - term.starts).days > settings.catch_up_days:
        return None
    done = store.db.execute("SELECT 1 FROM password_terms_done WHERE term_starts=?", (term.starts.isoformat(),))
    return None if done.fetchone() else term


def plan_termly(settings: PasswordSettings, term: Term, snapshots: Mapping[str, Snapshot],
                people: Mapping[str, Person], already: frozenset[tuple[str, str]]) -> list[Change]:
    """The changes for one term (pure): flags for the kinds configured, never-expires cleared for all."""
    when = f"{term.name} term starts {term.starts:%d/%m/%Y}"
    changes: list[Change] = []
    for directory, snapshot in sorted(snapshots.items()):
        for account in sorted(snapshot.accounts, key=lambda a: a.username):
            # Hybrid accounts are AD's: the flag set there reaches Entra through Entra Connect.
            if account.synced_from_on_premises or account.anchor is None:
                continue
            person = people.get(account.anchor)
            if (
                person is not None and account.enabled and not account.must_change_password
                and (directory, account.key) not in already and settings.for_person(person).termly_change
            ):
                changes.append(Change(directory, Action.REQUIRE_PASSWORD_CHANGE, account.anchor, account.username,
                                      f"{REASON_PREFIX} ({when})", target=account.key))
            if account.password_never_expires:
                changes.append(Change(directory, Action.UPDATE, account.anchor, account.username,
                                      f"{REASON_PREFIX}: 'password never expires' is not allowed ({when})",
                                      target=account.key, before={"password_never_expires": True},
                                      after={"password_never_expires": False}))
    return changes


def _flagged(store: Store, term: Term) -> frozenset[tuple[str, str]]:
    rows = store.db.execute("SELECT directory, key FROM password_term_flags WHERE term_starts=?",
                            (term.starts.isoformat(),))
    return frozenset((str(r[0]), str(r[1])) for r in rows)


def _mark_done(store: Store, term: Term) -> None:
    store.db.execute("INSERT INTO password_terms_done VALUES (?,?,?) ON CONFLICT DO NOTHING",
                     (term.starts.isoformat(), term.name, utcnow().isoformat()))
    store.audit("termly-password-change-done", {"term": term.name, "starts": term.starts.isoformat()})


def termly_changes(job: PasswordsJob, snapshots: Mapping[str, Snapshot], people: Mapping[str, Person]) -> list[Change]:
    """The termly changes due on `job.today` (none on most days). Call after planning, add them to the
    plan, and after applying call `record_termly_results` with the results."""
    settings = settings_for_job(job)
    term = due_term(settings, job.store, job.today)
    if term is None:
        return []
    changes = plan_termly(settings, term, snapshots, people, _flagged(job.store, term))
    if not changes:
        _mark_done(job.store, term)
    log.info("%s: %d accounts to flag", REASON_PREFIX, sum(c.action is Action.REQUIRE_PASSWORD_CHANGE
                                                          for c in changes))
    return changes


def record_termly_results(job: PasswordsJob, changes: Sequence[Change], results: Sequence[Result]) -> None:
    """Remember which termly changes were applied; the term is done when all of them were."""
    settings = settings_for_job(job)
    term = due_term(settings, job.store, job.today)
    termly = [c for c in changes if c.reason.startswith(REASON_PREFIX)]
    if term is None or not termly:
        return
    outcomes = {r.change_id: r.outcome for r in results}
    succeeded = [c for c in termly if outcomes.get(c.change_id) in (Outcome.APPLIED, Outcome.ALREADY)]
    at = utcnow().isoformat()
    with job.store.transaction() as db:
        for change in succeeded:
            if change.action is Action.REQUIRE_PASSWORD_CHANGE and change.target is not None:
                db.execute("INSERT INTO password_term_flags VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
                           (term.starts.isoformat(), change.directory, change.target, at))
    if len(succeeded) == len(termly):
        _mark_done(job.store, term)
    else:
        log.warning("%s: %d of %d changes not applied; the next run tries them again",
                    REASON_PREFIX, len(termly) - len(succeeded), len(termly))
