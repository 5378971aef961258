"""Usernames: templates, transliteration to ASCII, length limits, reserved names and collision suffixes (pure)."""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache, lru_cache

from anyascii import anyascii

from idlifecycle.errors import UserError
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


@lru_cache(maxsize=256)
def intake_year(year_group: str | None, today: date) -> str:
    """Two-digit calendar year in which the cohort started Reception: stable across roll-overs.

    Cached: every pupil's base username asks it, and a night has a few dozen year groups and one day.
    """
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
        "person_id": ascii_name(person.mis_id or person.person_id),  # the MIS's id, not the school scope
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
    extra_templates: Mapping[str, str] = field(default_factory=dict)
    """Username templates of the kinds of people outside the MIS ([extra.<kind>].username)."""


@cache
def _prototypes() -> dict[str, str]:
    """Each character of Unicode's confusables.txt (UTS #39) to the prototype it is confused with.

    confusable-homoglyphs ships the file as pairs listed both ways: a source lists only its
    prototype, a prototype lists all its sources. A pair that lists only each other is ambiguous;
    either member serves as the pair's key, so the smaller is taken for both.
    """
    # Imported here: loading the table takes 0.17 s, which commands that issue no names need not pay.
    from confusable_homoglyphs.confusables import confusables_data

    def plain(text: str) -> str:
        return text.replace("\u200e", "")  # the file's left-to-right marks around right-to-left letters

    listed = {plain(char): [plain(entry["c"]) for entry in entries] for char, entries in confusables_data.items()}
    prototypes: dict[str, str] = {}
    for char, others in listed.items():
        if len(char) != 1 or len(others) != 1:
            continue  # a prototype (or a sequence): it stands for itself
        other = others[0]
        if len(listed.get(other, [])) == 1 and len(other) == 1:
            prototypes[char] = min(char, other)
        else:
            prototypes[char] = other
    return prototypes


@cache
def _skeleton_of(char: str) -> str:
    prototypes = _prototypes()
    text = "".join(prototypes.get(c, c) for c in unicodedata.normalize("NFD", char))
    # TR39's prototype of capital I is l and of 0 is O; compared without case, i, I, l and 1 are one
    # shape, as are o, O and 0 (adm1n, admIn and admin look the same in a sign-in box).
    return unicodedata.normalize("NFD", text).casefold().replace("i", "l")


def skeleton(name: str) -> str:
    """The name as it looks: UTS #39's skeleton of its NFKC case-folded form, compared without case.

    `adm1n`, `аdmin` (Cyrillic a) and `admin` have one skeleton.
    """
    return "".join(_skeleton_of(c) for c in unicodedata.normalize("NFKC", name).casefold())


SEPARATORS = "._-"
MAX_SUFFIX = 10_000


@cache
def _reserved_skeletons(reserved: frozenset[str]) -> dict[str, str]:
    return {skeleton(word): word for word in reserved if word.strip()}


def reserved_clash(name: str, reserved: frozenset[str]) -> str | None:
    """The reserved word `name` passes for, or None.

    A name is reserved when it looks like a reserved word (same skeleton) on its own, or followed
    by digits (`admin2`, `administrator3`, `it2`), by a separator and anything (`admin.jones`), or
    by another reserved name (`itadmin`, `admin-support1`). Any other continuation is an ordinary
    name, however short the reserved word: `italo`, `adminah` and `hrithik` are not blocked.
    """
    words = _reserved_skeletons(reserved)
    if not words:
        return None
    chars = unicodedata.normalize("NFKC", name).casefold()
    return _clash(chars, [_skeleton_of(c) for c in chars], words, 0)


def _clash(chars: str, shapes: list[str], words: Mapping[str, str], start: int) -> str | None:
    head = ""
    for end in range(start, len(chars)):
        head += shapes[end]
        word = words.get(head)
        if word is None:
            continue
        rest = chars[end + 1:]
        if (not rest or rest[0] in SEPARATORS or rest.isdigit()
                or _clash(chars, shapes, words, end + 1) is not None):
            return word
    return None


_FIELD_VALUES: dict[str, Callable[[Person, date], str]] = {
    "first_name": lambda person, today: ascii_name(person.first_name) or "x",
    "first_initial": lambda person, today: (ascii_name(person.first_name) or "x")[0],
    "legal_first_name": lambda person, today: ascii_name(person.legal_first_name) or ascii_name(person.first_name)
    or "x",
    "surname": lambda person, today: ascii_name(person.last_name) or "x",
    "surname_initial": lambda person, today: (ascii_name(person.last_name) or "x")[0],
    "intake_year": lambda person, today: intake_year(person.year_group if person.kind is Kind.PUPIL else None, today),
    "start_year": lambda person, today: f"{(person.start_date or today).year % 100:02d}",
    "person_id": lambda person, today: ascii_name(person.mis_id or person.person_id),
}
"""Each template field as template_values works it out, one at a time."""


@lru_cache(maxsize=64)
def _template_fields(template: str) -> tuple[str, tuple[Callable[[Person, date], str], ...]] | None:
    """The template with its fields numbered ("{0}{1}{2}") and the function of each field, or None when it
    names anything else or formats a field (then it is formatted with every value, and fails as it always did).
    """
    parts = list(string.Formatter().parse(template))
    names = list(dict.fromkeys(name for _, name, _, _ in parts if name is not None))
    if not all(name in _FIELD_VALUES for name in names) \
            or any(spec or conversion for _, name, spec, conversion in parts if name is not None):
        return None
    numbered = "".join(literal.replace("{", "{{").replace("}", "}}")
                       + ("" if name is None else f"{{{names.index(name)}}}") for literal, name, _, _ in parts)
    return numbered, tuple(_FIELD_VALUES[name] for name in names)


def base_username(person: Person, rules: NamingRules, today: date) -> str:
    # Only the fields the template names are worked out, passed by position: this runs for every person on
    # every night, and a field the template does not use (a person id in "{intake_year}{first_initial}
    # {surname}") or a dict of them costs as much as the name itself.
    template = (rules.templates[person.kind] if person.extra_kind is None
                else rules.extra_templates[person.extra_kind])
    fields = _template_fields(template)
    if fields is None:
        return template.format(**template_values(person, today))[: rules.max_length]
    numbered, values = fields
    return numbered.format(*[value(person, today) for value in values])[: rules.max_length]


def assign_usernames(
    people: Iterable[Person], rules: NamingRules, taken: Iterable[str], today: date
) -> dict[str, str]:
    """A new, never-before-issued username for each person, in person_id order so runs are repeatable.

    `taken` holds every name that may not be issued: every name ever issued by the tool, names in
    every directory (inside and outside the managed scope). Collisions get 2, 3, … with the base
    shortened so the whole name still fits the length limit. A name that `reserved_clash` matches is
    never issued.
    """
    used = {name.lower() for name in taken}
    assigned: dict[str, str] = {}
    for person in sorted(people, key=lambda p: p.person_id):
        base = base_username(person, rules, today)
        if reserved_clash(base + "2", rules.reserved):
            # No number makes this name ordinary (Ad Min -> admin, admin2, …): the person's MIS id
            # stands in for it, which no reserved word can match by prefix.
            base = ("user" + template_values(person, today)["person_id"])[: rules.max_length]
        candidate = base
        suffix = 1
        while candidate in used or reserved_clash(candidate, rules.reserved):
            suffix += 1
            if suffix > MAX_SUFFIX:
                raise UserError(f"no username can be made for {person.person_id} ({base}): every name up to "
                                f"{candidate} is taken or reserved; check [naming] reserved in the mapping")
            tail = str(suffix)
            candidate = base[: rules.max_length - len(tail)] + tail
        used.add(candidate)
        assigned[person.person_id] = candidate
    return assigned
