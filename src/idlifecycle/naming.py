"""Usernames: templates, transliteration to ASCII, length limits and collision suffixes (pure)."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from anyascii import anyascii

from idlifecycle.model import Kind, Person

_NOT_NAME = re.compile(r"[^a-z0-9]")
TEMPLATE_FIELDS = frozenset(
    {"first_name", "first_initial", "legal_first_name", "surname", "surname_initial", "intake_year",
     "person_id", "start_year"}
)


@lru_cache(maxsize=2**16)
def ascii_name(value: str) -> str:
    """Lower-case ASCII letters and digits only: "Nguyễn" -> "nguyen", "O'Brien" -> "obrien"."""
    return _NOT_NAME.sub("", anyascii(value).lower())


def ascii_display(value: str) -> str:
    """ASCII with spaces and punctuation kept, for directories that refuse Unicode in some fields."""
    return anyascii(value)


def year_index(year_group: str) -> int:
    """Years since Reception: N1 -> -2, N2 -> -1, R -> 0, "7" -> 7."""
    if year_group == "R":
        return 0
    if year_group.startswith("N") and year_group[1:].isdigit():
        return int(year_group[1:]) - 3
    return int(year_group)


def academic_year_start(today: date) -> int:
    return today.year if today.month >= 9 else today.year - 1


def intake_year(year_group: str | None, today: date) -> str:
    """Two-digit calendar year in which the cohort started Reception: stable across roll-overs."""
    if not year_group:
        return f"{academic_year_start(today) % 100:02d}"
    return f"{(academic_year_start(today) - year_index(year_group)) % 100:02d}"


def year_label(year_group: str | None) -> str:
    if not year_group:
        return ""
    if year_group == "R":
        return "Reception"
    if year_group.startswith("N"):
        return f"Nursery {year_group[1:]}"
    return f"Year {year_group}"


def template_values(person: Person, today: date) -> dict[str, str]:
    first = ascii_name(person.first_name) or "x"
    surname = ascii_name(person.last_name) or "x"
    return {
        "first_name": first,
        "first_initial": first[0],
        "legal_first_name": ascii_name(person.legal_first_name) or first,
        "surname": surname,
        "surname_initial": surname[0],
        "intake_year": intake_year(person.year_group if person.kind is Kind.PUPIL else None, today),
        "start_year": f"{(person.start_date or today).year % 100:02d}",
        "person_id": ascii_name(person.person_id),
    }


def check_template(template: str) -> str | None:
    """An error message when the template names an unknown field, else None."""
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None and name not in TEMPLATE_FIELDS:
            return f"unknown field {{{name}}}; use one of {', '.join(sorted(TEMPLATE_FIELDS))}"
    return None


@dataclass(frozen=True)
class NamingRules:
    templates: Mapping[Kind, str]
    max_length: int = 20
    reserved: frozenset[str] = frozenset()


def base_username(person: Person, rules: NamingRules, today: date) -> str:
    name = rules.templates[person.kind].format(**template_values(person, today))
    return name[: rules.max_length]


def assign_usernames(
    people: Iterable[Person], rules: NamingRules, taken: Iterable[str], today: date
) -> dict[str, str]:
    """A new, never-before-issued username for each person, in person_id order so runs are repeatable.

    `taken` holds every name that may not be issued: every name ever issued by the tool, names in
    every directory (inside and outside the managed scope). Collisions get 2, 3, … with the base
    shortened so the whole name still fits the length limit.
    """
    used = {name.lower() for name in taken} | {name.lower() for name in rules.reserved}
    assigned: dict[str, str] = {}
    for person in sorted(people, key=lambda p: p.person_id):
        base = base_username(person, rules, today)
        candidate = base
        suffix = 1
        while candidate in used:
            suffix += 1
            tail = str(suffix)
            candidate = base[: rules.max_length - len(tail)] + tail
        used.add(candidate)
        assigned[person.person_id] = candidate
    return assigned
