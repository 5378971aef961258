"""Generated passwords pass every directory's rules and the school's, for any name (property tests)."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from idlifecycle.passwords.generator import LOOKALIKES, generate, words
from idlifecycle.passwords.policy import (
    CommonPasswords,
    Identity,
    Rules,
    ad_rules,
    check,
    effective_policy,
    entra_rules,
    google_rules,
)

COMMON = CommonPasswords.shipped()
STAFF = Rules("the school", min_length=12, classes=3, symbols=frozenset("!#$%*+-=?@"), name_tokens=True)
YOUNG_PUPILS = Rules("the school", min_length=8, classes=3, symbols=frozenset("!#$%*+-=?@"), name_tokens=True)
DIRECTORIES = [entra_rules(), google_rules(), ad_rules({"min_length": 7, "complexity": True}),
               ad_rules({"min_length": 14, "complexity": True})]

# Names drawn partly from the word list itself, so memorable candidates often hold a name token.
name_part = st.one_of(st.sampled_from(words()), st.text(string.ascii_letters + "'", min_size=1, max_size=12))
identities = st.builds(
    lambda first, last, joiner: Identity(f"{first[:1]}{joiner}{last}".lower()[:20], f"{first} {last}", (first, last)),
    name_part, name_part, st.sampled_from(["", ".", "-", "_"]),
)
directory_sets = st.lists(st.sampled_from(DIRECTORIES), min_size=1, max_size=3)


@settings(max_examples=300, deadline=None)
@given(identity=identities, directories=directory_sets)
def test_staff_random_password_passes_every_directory_it_is_set_in(identity: Identity,
                                                                     directories: list[Rules]) -> None:
    policy = effective_policy([STAFF, *directories])
    password = generate(policy, identity, style="random", length=14, common=COMMON)
    assert check(password, policy, identity, COMMON) == []
    for rules in [STAFF, *directories]:
        assert check(password, effective_policy([rules]), identity) == [], rules.source
    assert not set(password) & LOOKALIKES


@settings(max_examples=300, deadline=None)
@given(identity=identities, directories=directory_sets)
def test_young_pupils_memorable_password_passes_every_directory(identity: Identity,
                                                                directories: list[Rules]) -> None:
    policy = effective_policy([YOUNG_PUPILS, *directories], banned_words=["oakfield"])
    password = generate(policy, identity, style="memorable", common=COMMON)
    assert check(password, policy, identity, COMMON) == []
    for rules in [YOUNG_PUPILS, *directories]:
        assert check(password, effective_policy([rules]), identity) == [], rules.source
    lowered = password.lower()
    assert not any(token in lowered for token in identity.tokens())


def test_memorable_password_is_two_words_two_digits_and_a_symbol() -> None:
    policy = effective_policy([YOUNG_PUPILS, entra_rules()])
    password = generate(policy, Identity("zz", "Zz Zz"), style="memorable", vocabulary=["kite", "moon"])
    assert password[:-3] in {"KiteKite", "KiteMoon", "MoonKite", "MoonMoon"}
    assert password[-3:-1].isdigit() and password[-1] in "!?#*+=@$%"


def test_memorable_words_containing_the_childs_name_are_never_used() -> None:
    policy = effective_policy([YOUNG_PUPILS])
    identity = Identity("kit1", "Kit Moon", ("Kit", "Moon"))
    for _ in range(50):
        password = generate(policy, identity, style="memorable", vocabulary=["kite", "moon", "star", "tree"])
        assert "kit" not in password.lower() and "moon" not in password.lower()


def test_word_list_is_plain_short_lower_case_words() -> None:
    listed = words()
    assert len(listed) >= 300 and len(set(listed)) == len(listed)
    assert all(w.isascii() and w.isalpha() and w.islower() and 3 <= len(w) <= 8 for w in listed)
    assert not set(listed) & COMMON.words
