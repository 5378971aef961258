"""The checker: each rule of Entra, Active Directory, Google and the school, rejected in plain words."""

from __future__ import annotations

import pytest

from idlifecycle.passwords.policy import (
    CommonPasswords,
    Identity,
    Rules,
    ad_rules,
    banned_words_for,
    check,
    effective_policy,
    entra_rules,
    google_rules,
)

AMELIA = Identity("asmith", "Amelia Smith", ("Amelia", "Smith"))
NOBODY = Identity("x", "X")
SCHOOL = Rules("the school", min_length=12, classes=3, symbols=frozenset("!#$%*+-=?@"), name_tokens=True)


def messages(password: str, *rules: Rules, identity: Identity = NOBODY, banned: tuple[str, ...] = (),
             common: CommonPasswords | None = None) -> list[str]:
    return [str(v) for v in check(password, effective_policy(rules, banned), identity, common)]


def test_entra_refuses_a_seven_character_password() -> None:
    assert messages("Ab1!xyz", entra_rules()) == ["is too short: it needs at least 8 characters (it has 7)"]


def test_entra_refuses_more_than_256_characters() -> None:
    assert messages("Ab1!" * 65, entra_rules()) == ["is too long: at most 256 characters are allowed (it has 260)"]


def test_entra_needs_three_of_four_kinds_of_character() -> None:
    assert messages("abcdefgh12", entra_rules()) == [
        "needs at least 3 of these 4 kinds of character: lower-case letters, capital letters, digits, symbols "
        "(it has 2)"]


def test_entra_refuses_unicode_letters() -> None:
    assert messages("Abcdéfgh12", entra_rules()) == [
        "contains characters that are not allowed: é (use letters, digits and !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ "
        "or a space)"]


def test_entra_accepts_its_documented_symbols_and_the_space() -> None:
    assert messages("Abc def 12 <>;()~`", entra_rules()) == []


def test_entra_refuses_the_users_name() -> None:
    assert messages("Smith-Abc-123", entra_rules(), identity=AMELIA) == [
        "contains 'smith', which is part of the person's name or username"]


def test_active_directory_minimum_length_comes_from_the_domain() -> None:
    assert messages("Abcdef1!x", ad_rules({"min_length": 10, "complexity": True})) == [
        "is too short: it needs at least 10 characters (it has 9)"]


def test_pound_and_euro_signs_never_count_as_symbols_in_active_directory() -> None:
    domain = ad_rules({"min_length": 7, "complexity": True})
    assert "(it has 2)" in messages("abcdefg£€1", domain)[0]


def test_active_directory_complexity_refuses_a_display_name_token() -> None:
    identity = Identity("jo.nguyen", "Jo Nguyen-Baker", ("Jo", "Nguyen-Baker"))
    assert messages("Xbaker#2024", ad_rules({"min_length": 7}), identity=identity) == [
        "contains 'baker', which is part of the person's name or username"]


def test_active_directory_name_rule_ignores_tokens_shorter_than_three() -> None:
    identity = Identity("jo.li", "Jo Li", ("Jo", "Li"))
    assert messages("Jo-Li-Tree-12", ad_rules({"min_length": 7}), identity=identity) == []


def test_active_directory_refuses_the_whole_account_name_even_when_its_parts_are_short() -> None:
    identity = Identity("jo.li", "Jo Li", ("Jo", "Li"))
    assert messages("Xjo.li-Tree-12", ad_rules({"min_length": 7}), identity=identity) == [
        "contains 'jo.li', which is part of the person's name or username"]


def test_active_directory_without_complexity_accepts_plain_words() -> None:
    assert messages("asmithasmith", ad_rules({"min_length": 7, "complexity": False}), identity=AMELIA) == []


def test_google_refuses_more_than_100_characters() -> None:
    assert messages("Ab1!" * 26, google_rules()) == ["is too long: at most 100 characters are allowed (it has 104)"]


def test_google_refuses_non_ascii_characters() -> None:
    assert messages("Password£", google_rules())[0].startswith("contains characters that are not allowed: £")


def test_school_minimum_length_wins_over_the_directories() -> None:
    assert messages("Abcdefgh12!", SCHOOL, entra_rules(), google_rules()) == [
        "is too short: it needs at least 12 characters (it has 11)"]


def test_school_allows_only_its_own_symbols() -> None:
    assert messages("Abcdefgh12~~", SCHOOL) == [
        "contains characters that are not allowed: ~ (use letters, digits and !#$%*+-=?@)"]


def test_school_name_is_banned() -> None:
    banned = tuple(banned_words_for("Oakfield Church of England Primary School", ["oakies"]))
    assert messages("MyOakfield12!", SCHOOL, banned=banned) == ["contains 'oakfield', which the school's policy bans"]
    assert messages("PrimarySchool1!", SCHOOL, banned=banned) == []


def test_a_common_password_with_digits_added_is_refused() -> None:
    assert messages("Password2024!", SCHOOL, common=CommonPasswords.shipped()) == [
        "is too easy to guess: 'password' is a well-known password"]


def test_a_season_and_year_is_refused() -> None:
    assert messages("Summer2026!!", SCHOOL, common=CommonPasswords.shipped()) == [
        "is too easy to guess: 'summer' is a well-known password"]


def test_the_pupils_own_first_name_is_refused() -> None:
    identity = Identity("ab12", "Amelia Smith", ("Amelia", "Smith", "Millie"))
    assert messages("Millie-Rocket7", SCHOOL, identity=identity) == [
        "contains 'millie', which is part of the person's name or username"]


@pytest.mark.parametrize("password", ["Tr33-House!x", "Kite+Maple-47", "Q7#mP2vX9kLr"])
def test_good_passwords_pass_every_directory_and_the_school(password: str) -> None:
    assert messages(password, SCHOOL, entra_rules(), google_rules(), ad_rules({"min_length": 7}), identity=AMELIA,
                    common=CommonPasswords.shipped()) == []
