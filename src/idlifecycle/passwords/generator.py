"""Password generation with `secrets`: random typeable passwords, or memorable words for young pupils.

Every candidate is run through the same checker the tool applies everywhere, and thrown away
if it breaks any rule (a word that happens to contain the child's name, say).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Literal

from idlifecycle.errors import UserError
from idlifecycle.passwords.policy import (
    DIGITS,
    LOWER,
    UPPER,
    CommonPasswords,
    Identity,
    Policy,
    Rules,
    ad_rules,
    check,
    effective_policy,
    entra_rules,
    google_rules,
)

LOOKALIKES = frozenset("0Oo1lI|")
"""Characters confused with each other on a printed slip or a projector."""
HARD_TO_TYPE = frozenset(" '\"`\\~^")
"""Quotes, backslash, dead keys on UK/international keyboard layouts, and the invisible space."""
FRIENDLY_SYMBOLS = "!?#*+=@$%"
"""Symbols a young child finds on the keyboard without help."""

_random = secrets.SystemRandom()


@cache
def words() -> tuple[str, ...]:
    text = resources.files("idlifecycle").joinpath("data", "words.txt").read_text("utf-8")
    return tuple(w.strip().lower() for w in text.splitlines() if w.strip() and not w.startswith("#"))


def _pool(chars: frozenset[str]) -> str:
    return "".join(sorted(chars - LOOKALIKES))


def _random_candidate(policy: Policy, length: int, vocabulary: Sequence[str]) -> str:
    symbols = _pool(policy.symbols - HARD_TO_TYPE)
    pools = [p for p in (_pool(LOWER), _pool(UPPER), _pool(DIGITS), symbols) if p]
    # One of every kind first, so the mix rule holds whatever the length; the rest from all of them.
    chars = [secrets.choice(pool) for pool in pools]
    alphabet = "".join(pools)
    chars += [secrets.choice(alphabet) for _ in range(length - len(chars))]
    _random.shuffle(chars)
    return "".join(chars)


def _memorable_candidate(policy: Policy, length: int, vocabulary: Sequence[str]) -> str:
    symbols = "".join(c for c in FRIENDLY_SYMBOLS if c in policy.symbols) or _pool(policy.symbols - HARD_TO_TYPE)
    parts = [secrets.choice(vocabulary).capitalize(), secrets.choice(vocabulary).capitalize()]
    tail = f"{secrets.randbelow(90) + 10}{secrets.choice(symbols) if symbols else ''}"
    while len("".join(parts)) + len(tail) < length:
        parts.append(secrets.choice(vocabulary).capitalize())
    return "".join(parts) + tail


def generate(policy: Policy, identity: Identity, *, style: Literal["random", "memorable"] = "random",
             length: int | None = None, common: CommonPasswords | None = None, vocabulary: Sequence[str] = (),
             attempts: int = 500) -> str:
    """A new password satisfying `policy` for this person (checked, never merely assumed).

    `vocabulary` replaces the shipped word list for memorable passwords (a school's own list)."""
    wanted = min(max(length or 0, policy.min_length), policy.max_length)
    make = _memorable_candidate if style == "memorable" else _random_candidate
    for _ in range(attempts):
        candidate = make(policy, wanted, vocabulary or words())
        if not check(candidate, policy, identity, common):
            return candidate
    raise UserError(f"could not generate a password for {identity.username} that meets the policy "
                    f"({policy.describe()}) in {attempts} tries: the rules contradict each other")


THROWAWAY_LENGTH = 32


@cache
def _throwaway_policy() -> Policy:
    # Every directory's rules at once, all four kinds of character: whichever directory receives it.
    return effective_policy([entra_rules(), google_rules(), ad_rules({}),
                             Rules("a throw-away password", min_length=THROWAWAY_LENGTH, classes=4)])


def throwaway() -> str:
    """A password nobody is told, for an account created before (or without) the person's own: the
    connectors receive this generator in their context rather than writing their own."""
    return generate(_throwaway_policy(), Identity("", ""), length=THROWAWAY_LENGTH)
