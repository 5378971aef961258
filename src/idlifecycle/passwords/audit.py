"""The password audit: passwords older than the policy allows, never-expires flags, accounts never used."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from idlifecycle.model import Person, Snapshot
from idlifecycle.passwords.settings import PasswordSettings


@dataclass(frozen=True)
class Finding:
    directory: str
    username: str
    display_name: str
    finding: str


def password_audit(settings: PasswordSettings, snapshots: Mapping[str, Snapshot], people: Mapping[str, Person],
                   today: date) -> list[Finding]:
    """One Finding per problem on an enabled managed account (pure)."""
    findings: list[Finding] = []
    for directory, snapshot in sorted(snapshots.items()):
        for account in sorted(snapshot.accounts, key=lambda a: a.username):
            if not account.enabled:
                continue
            problems: list[str] = []
            person = people.get(account.anchor or "")
            max_age = settings.for_person(person).max_age_days if person is not None else None
            if max_age is not None and account.password_last_set is not None:
                age = (today - account.password_last_set.date()).days
                if age > max_age:
                    problems.append(f"password is {age} days old (the policy allows {max_age})")
            if account.password_never_expires:
                problems.append("password never expires")
            # Hybrid accounts sign in through AD; Entra's own record of them says little.
            if account.last_sign_in is None and not account.synced_from_on_premises:
                created = f" (created {account.created:%d/%m/%Y})" if account.created else ""
                problems.append(f"never signed in{created}")
            findings += [Finding(directory, account.username, account.display_name, p) for p in problems]
    return findings


def format_table(findings: list[Finding]) -> str:
    """A plain-text table for the terminal, one finding a line."""
    header = ("DIRECTORY", "USERNAME", "NAME", "FINDING")
    rows = [header, *((f.directory, f.username, f.display_name, f.finding) for f in findings)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3]]).rstrip()
             for row in rows]
    lines.append(f"{len(findings)} finding{'s' if len(findings) != 1 else ''}.")
    return "\n".join(lines)
