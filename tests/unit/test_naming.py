"""Usernames: transliteration, collisions, limits, and names that must never be issued."""

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from idlifecycle.config import DEFAULT_RESERVED
from idlifecycle.model import Kind, Person
from idlifecycle.naming import NamingRules, ascii_name, assign_usernames, base_username, intake_year, template_values
from tests.factories import TODAY, pupil, staff

RULES = NamingRules({Kind.PUPIL: "{intake_year}{first_initial}{surname}", Kind.STAFF: "{first_initial}{surname}"},
                    max_length=20, reserved=frozenset({"admin", "head"}))


def test_names_from_many_languages_become_plain_ascii():
    assert ascii_name("Zoë") == "zoe"
    assert ascii_name("Łukasz") == "lukasz"
    assert ascii_name("Nguyễn") == "nguyen"
    assert ascii_name("O'Brien") == "obrien"
    assert ascii_name("Smith-Jones") == "smithjones"
    assert ascii_name("van der Berg") == "vanderberg"
    assert ascii_name("Siân") == "sian"
    assert ascii_name("Müller") == "muller"


def test_intake_year_stays_the_same_when_the_class_moves_up_in_september():
    assert intake_year("6", date(2026, 7, 1)) == intake_year("7", date(2026, 9, 2)) == "19"
    assert intake_year("R", date(2026, 11, 23)) == "26"


def test_two_james_smiths_in_the_same_intake_get_different_usernames():
    people = [pupil("1001", "James", "Smith"), pupil("1002", "James", "Smith")]
    names = assign_usernames(people, RULES, taken=[], today=TODAY)
    assert names == {"1001": "19jsmith", "1002": "19jsmith2"}


def test_a_leavers_username_is_never_issued_again():
    names = assign_usernames([staff("S1", "Jon", "Smith")], RULES, taken=["jsmith"], today=TODAY)
    assert names["S1"] == "jsmith2"


def test_reserved_names_are_never_issued_nor_with_a_number_after_them():
    rules = NamingRules({Kind.STAFF: "{surname}"}, reserved=frozenset({"head"}))
    names = assign_usernames([staff("S1", "Anna", "Head")], rules, taken=[], today=TODAY)
    # head2 would pass for a head teacher's second account: the MIS id stands in.
    assert names["S1"] == "users1"


DEFAULTS = frozenset(DEFAULT_RESERVED)


def issued(surname: str, reserved: frozenset[str] = DEFAULTS) -> str:
    rules = NamingRules({Kind.STAFF: "{surname}"}, reserved=reserved)
    return assign_usernames([staff("S1", "Anna", surname)], rules, taken=[], today=TODAY)["S1"]


def test_a_reserved_name_followed_by_a_number_or_another_reserved_name_is_not_issued():
    # Issue 14, item 8: admin2, administrator3 and it2 were issued; a staff row "Ian Tadmin" matched itadmin.
    for surname in ("admin2", "administrator3", "it2", "itadmin", "helpdesk01", "office-2"):
        assert issued(surname) == "users1", surname


def test_a_name_that_only_looks_like_a_reserved_one_is_not_issued():
    for surname in ("adm1n", "0ffice", "adminlstrat0r", "supp0rt", "r00t", "adrnin"):
        assert issued(surname) == "users1", surname


def test_ordinary_names_that_begin_with_a_reserved_word_are_issued():
    for surname in ("italo", "adminah", "hrithik", "testa", "headley", "officer", "dslater", "rooting"):
        assert issued(surname) == surname, surname


def test_a_feed_username_in_cyrillic_letters_that_spells_admin_is_not_used():
    from dataclasses import replace as changed

    from idlifecycle.model import Snapshot
    from idlifecycle.planner import PlanState, plan
    from tests.factories import AD_LIKE, school_rules

    rules = changed(school_rules(), use_feed_usernames=True)
    rules = changed(rules, naming=changed(rules.naming, reserved=DEFAULTS))
    hostile = staff("S9", "Ann", "Lee", username="\u0430dmin")  # Cyrillic a, then Latin dmin
    p = plan([hostile], {"ad": Snapshot("ad", (), ())}, {"ad": AD_LIKE}, rules, PlanState(), TODAY)
    [create] = [c for c in p.changes if c.person_id == "S9" and c.action.value == "create"]
    assert create.username != "\u0430dmin" and not create.username.startswith("admin")


def test_long_names_are_cut_to_twenty_characters_even_with_a_suffix():
    long_person = staff("S1", "Maximilian", "Wolfeschlegelsteinhausenberger")
    names = assign_usernames([long_person], RULES, taken=["mwolfeschlegelsteinh"], today=TODAY)
    assert names["S1"] == "mwolfeschlegelstein2"
    assert len(names["S1"]) == 20


@given(st.lists(st.tuples(st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=30)), max_size=40),
       st.sets(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20), max_size=20))
def test_no_two_people_ever_get_the_same_username_nor_a_taken_one(names, taken):
    people = [Person(f"P{i:04d}", Kind.STAFF, first, last) for i, (first, last) in enumerate(names)]
    assigned = assign_usernames(people, RULES, taken=taken, today=TODAY)
    values = [v.lower() for v in assigned.values()]
    assert len(values) == len(set(values))
    assert not set(values) & {t.lower() for t in taken}
    assert not set(values) & RULES.reserved
    assert all(0 < len(v) <= 20 and v.isascii() and v.isalnum() for v in values)


FIELDS = ("first_name", "first_initial", "legal_first_name", "surname", "surname_initial", "intake_year",
          "start_year", "person_id")


@given(st.lists(st.sampled_from([*(f"{{{name}}}" for name in FIELDS), ".", "-", "{{", "}}", "x", "{surname:.3}"]),
                min_size=1, max_size=6),
       st.sampled_from(["Zoë", "Łukasz", "Seán", "Ann"]), st.sampled_from(["O'Brien", "Nguyễn", "Lee"]))
def test_a_base_username_is_the_template_formatted_with_every_value(parts, first, last):
    # base_username formats only the fields the template names, by position: it must give what formatting
    # the template with every value gives, whatever literals, repeats and format specs it holds.
    template = "".join(parts)
    rules = NamingRules({Kind.PUPIL: template, Kind.STAFF: template}, max_length=64)
    for person in (pupil("000231", first, last, year="7"), staff("S-12", first, last)):
        assert base_username(person, rules, TODAY) == template.format(**template_values(person, TODAY))[:64]
