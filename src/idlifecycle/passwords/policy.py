"""Password rules: each directory's, the school's, the effective intersection, and the checker.

Pure: no I/O, no clock. The checker's messages are shown to people (a technician typing a
password by hand, a test's failure), so they say what is wrong in plain words.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

LOWER = frozenset(string.ascii_lowercase)
UPPER = frozenset(string.ascii_uppercase)
DIGITS = frozenset(string.digits)
ASCII_SYMBOLS = frozenset(string.punctuation)
"""What Active Directory counts as a symbol: ASCII punctuation. `£` and `€` never count."""

ENTRA_SYMBOLS = frozenset("@#$%^&*-_!+=[]{}|\\:',.?/`~\"();<> ")
"""Microsoft's documented Entra ID set ("Password policies and account restrictions in Microsoft
Entra ID", characters allowed), including the blank space; anything else, and any Unicode, is refused."""

GOOGLE_SYMBOLS = frozenset(string.punctuation + " ")
"""Google Workspace accepts any printable ASCII character."""

CLASS_NAMES = ("lower-case letters", "capital letters", "digits", "symbols")

_TOKEN_SPLIT = re.compile(r"[,.\-_#\s]+")

GENERIC_SCHOOL_WORDS = frozenset({
    "school", "schools", "primary", "secondary", "academy", "college", "infant", "infants", "junior",
    "juniors", "church", "england", "catholic", "high", "grammar", "community", "trust", "saint",
    "the", "and", "c of e", "nursery", "federation", "first", "middle", "upper", "lower", "free",
})
"""Words of a school's name too common to ban on their own (banning "primary" helps nobody)."""


@dataclass(frozen=True)
class Rules:
    """One source of password rules: a directory's, or the school's configured policy."""

    source: str
    """Who sets these rules, for messages: "Microsoft Entra ID", "Active Directory", "the school"."""
    min_length: int = 1
    max_length: int | None = None
    classes: int = 0
    """How many of the four kinds (lower, upper, digit, symbol) a password must mix."""
    symbols: frozenset[str] | None = None
    """The symbols allowed; None when the source accepts any."""
    ascii_only: bool = False
    name_tokens: bool = False
    """The AD complexity rule: no 3+ character token of the username or display name."""


def entra_rules() -> Rules:
    return Rules("Microsoft Entra ID", min_length=8, max_length=256, classes=3, symbols=ENTRA_SYMBOLS,
                 ascii_only=True, name_tokens=True)


def google_rules() -> Rules:
    return Rules("Google Workspace", min_length=8, max_length=100, symbols=GOOGLE_SYMBOLS, ascii_only=True)


def ad_rules(constraints: Mapping[str, Any]) -> Rules:
    """Active Directory's rules from what the domain reports (`Connector.password_constraints`)."""
    complexity = bool(constraints.get("complexity", True))
    return Rules(
        "Active Directory",
        min_length=int(constraints.get("min_length", 7)),
        max_length=int(constraints.get("max_length", 256)),
        classes=3 if complexity else 0,
        name_tokens=complexity,
    )


def directory_rules(kind: str, constraints: Mapping[str, Any]) -> Rules | None:
    """The rules for a connector's `capabilities.password_rules` ("ad", "entra", "google")."""
    if kind == "ad":
        return ad_rules(constraints)
    if kind == "entra":
        return entra_rules()
    if kind == "google":
        return google_rules()
    return None


@dataclass(frozen=True)
class Policy:
    """The effective policy for one person: every source's rules at once (the strictest of each)."""

    min_length: int
    max_length: int
    classes: int
    symbols: frozenset[str]
    name_tokens: bool
    banned_words: frozenset[str] = frozenset()
    """Lower-case words that must not appear anywhere (the school's name, words it bans)."""
    sources: tuple[str, ...] = ()

    def describe(self) -> str:
        return (f"{self.min_length}–{self.max_length} characters, at least {self.classes} of "
                f"{', '.join(CLASS_NAMES)}; symbols {''.join(sorted(self.symbols))}")


def effective_policy(rules: Iterable[Rules], banned_words: Collection[str] = ()) -> Policy:
    """Combine rules so a password passing the result passes every one of them."""
    all_rules = list(rules)
    symbols = set(ASCII_SYMBOLS | {" "})
    for rule in all_rules:
        if rule.symbols is not None:
            symbols &= rule.symbols
    max_lengths = [r.max_length for r in all_rules if r.max_length is not None]
    return Policy(
        min_length=max([1, *(r.min_length for r in all_rules)]),
        max_length=min([256, *max_lengths]),
        classes=min(4, max([0, *(r.classes for r in all_rules)])),
        symbols=frozenset(symbols),
        name_tokens=any(r.name_tokens for r in all_rules),
        banned_words=frozenset(w.lower() for w in banned_words if w),
        sources=tuple(r.source for r in all_rules),
    )


@dataclass(frozen=True)
class Identity:
    """Whose password it is: the names a password must not contain."""

    username: str
    display_name: str
    names: tuple[str, ...] = ()
    """The person's own names (legal, preferred and last), also banned."""

    def tokens(self) -> frozenset[str]:
        """Lower-case name tokens of 3+ characters, split as Windows does (, . - _ # space tab)."""
        found: set[str] = set()
        for text in (self.username, self.display_name, *self.names):
            found.update(t for t in _TOKEN_SPLIT.split(text.lower()) if len(t) >= 3)
        # The whole sAMAccountName is checked as well as its parts.
        if len(self.username) >= 3:
            found.add(self.username.lower())
        return frozenset(found)


@dataclass(frozen=True)
class Violation:
    """One broken rule: `rule` is a short key for code, `message` the words for a person."""

    rule: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class CommonPasswords:
    """Well-known passwords: banned as they are or with only digits and symbols added."""

    words: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def shipped(cls) -> CommonPasswords:
        text = resources.files("idlifecycle").joinpath("data", "common-passwords.txt").read_text("utf-8")
        return cls(frozenset(line.strip().lower() for line in text.splitlines()
                             if line.strip() and not line.startswith("#")))

    def base_of(self, password: str) -> str | None:
        lowered = password.lower()
        if lowered in self.words:
            return lowered
        core = lowered.strip(string.digits + string.punctuation + " ")
        return core if core in self.words else None


def character_classes(password: str) -> int:
    return sum(1 for chars in (LOWER, UPPER, DIGITS, ASCII_SYMBOLS) if any(c in chars for c in password))


def check(password: str, policy: Policy, identity: Identity, common: CommonPasswords | None = None) -> list[Violation]:
    """Every rule the password breaks, in words a person understands; [] when it is acceptable."""
    problems: list[Violation] = []
    if len(password) < policy.min_length:
        problems.append(Violation("length", f"is too short: it needs at least {policy.min_length} characters "
                                            f"(it has {len(password)})"))
    if len(password) > policy.max_length:
        problems.append(Violation("length", f"is too long: at most {policy.max_length} characters are allowed "
                                            f"(it has {len(password)})"))
    have = character_classes(password)
    if have < policy.classes:
        problems.append(Violation("classes", f"needs at least {policy.classes} of these 4 kinds of character: "
                                             f"{', '.join(CLASS_NAMES)} (it has {have})"))
    allowed = LOWER | UPPER | DIGITS | policy.symbols
    bad = sorted({c for c in password if c not in allowed})
    if bad:
        shown = " ".join("space" if c == " " else c for c in bad)
        symbols = "".join(sorted(policy.symbols - {" "})) + (" or a space" if " " in policy.symbols else "")
        problems.append(Violation("characters", f"contains characters that are not allowed: {shown} "
                                                f"(use letters, digits and {symbols})"))
    lowered = password.lower()
    if policy.name_tokens:
        for token in sorted(identity.tokens()):
            if token in lowered:
                problems.append(Violation("name", f"contains {token!r}, which is part of the person's name "
                                                  f"or username"))
    for word in sorted(policy.banned_words):
        if word in lowered:
            problems.append(Violation("banned", f"contains {word!r}, which the school's policy bans"))
    if common is not None:
        base = common.base_of(password)
        if base is not None:
            problems.append(Violation("common", f"is too easy to guess: {base!r} is a well-known password"))
    return problems


def school_name_words(school_name: str) -> list[str]:
    """The distinctive words of the school's name (4+ letters, not "primary", "academy" …)."""
    return [w for w in re.split(r"[^a-z]+", school_name.lower()) if len(w) >= 4 and w not in GENERIC_SCHOOL_WORDS]


def banned_words_for(school_name: str, banned: Sequence[str]) -> frozenset[str]:
    return frozenset([*school_name_words(school_name), *(b.lower() for b in banned if b.strip())])
