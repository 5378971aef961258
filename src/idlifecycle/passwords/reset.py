"""`passwords reset`: one new password for one person, set in every directory they have an account in."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from idlifecycle.connectors.base import Connector
from idlifecycle.errors import UserError
from idlifecycle.model import Account, Action, Change, Outcome, Person, Snapshot
from idlifecycle.passwords._job import ResetJob
from idlifecycle.passwords.delivery import Mailer
from idlifecycle.passwords.issuer import DeliveryReport, PasswordIssuer
from idlifecycle.passwords.owed import privileged_accounts


@dataclass(frozen=True)
class ResetOutcome:
    person: Person
    username: str
    set_in: tuple[str, ...]
    failed: tuple[str, ...]
    """`directory: detail` for each directory that refused (no password in the detail)."""
    delivery: DeliveryReport


def accounts_to_reset(person_id: str, snapshots: Mapping[str, Snapshot]) -> list[Account]:
    """The person's enabled accounts; hybrid Entra accounts are left to AD, whose password syncs."""
    return [a for _, snap in sorted(snapshots.items()) for a in snap.accounts
            if a.anchor == person_id and a.enabled and not a.synced_from_on_premises]


def reset_password(job: ResetJob, connectors: Mapping[str, Connector], person_id: str, *, actor: str,
                   mailer: Mailer | None) -> ResetOutcome:
    people = {p.person_id: p for p in job.read_people().people}
    person = people.get(person_id)
    if person is None:
        raise UserError(f"{person_id} is not in the feed; passwords are reset only for current staff and pupils")
    snapshots = job.snapshots(connectors)
    accounts = accounts_to_reset(person_id, snapshots)
    privileged = privileged_accounts(person_id, snapshots)
    if privileged:
        # A new password for an admin account would be printed on a slip or mailed: never.
        which = ", ".join(f"{a.directory} {a.username} ({a.privileged})" for a in privileged)
        job.store.audit("password-reset-refused", {"person_id": person_id, "reason": "privileged account",
                                                   "accounts": which}, actor=actor)
        raise UserError(f"{person.display_name} ({person_id}): refused: {which} is a privileged account, and "
                        "idlifecycle never sets passwords of privileged accounts; reset it by hand in the directory")
    if not accounts:
        raise UserError(f"{person.display_name} ({person_id}) has no enabled account this tool manages")
    username = Counter(a.username for a in accounts).most_common(1)[0][0]
    changes = [Change(a.directory, Action.SET_PASSWORD, person_id, a.username,
                      f"password reset requested by {actor}", target=a.key, after={"must_change_password": True})
               for a in accounts]
    issuer = PasswordIssuer.for_job(job, connectors)
    password_for = issuer.password_for(people, changes)
    results = job.apply_changes(changes, connectors, actor=actor, password_for=password_for)
    by_id = {c.change_id: c for c in changes}
    done = tuple(by_id[r.change_id].directory for r in results if r.outcome is not Outcome.FAILED)
    failed = tuple(f"{by_id[r.change_id].directory}: {r.detail}" for r in results if r.outcome is Outcome.FAILED)
    delivery = issuer.deliver(mailer, applied={person_id} if done else set())
    return ResetOutcome(person, username, done, failed, delivery)
