"""The school's password policy file: bands, line managers, terms, and mistakes named by key."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pytest

from idlifecycle.errors import ConfigError
from idlifecycle.model import Kind, Person
from idlifecycle.passwords.settings import load_settings, parse_settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "mappings" / "passwords.toml"


def example() -> dict[str, object]:
    return tomllib.loads(EXAMPLE.read_text("utf-8"))


def pupil(year: str | None, group: str = "3B") -> Person:
    return Person("P1", Kind.PUPIL, "Amelia", "Smith", year_group=year, registration_group=group)


def test_example_policy_loads_from_the_job_files_passwords_section(tmp_path: Path) -> None:
    job_file = REPO / "jobs" / "nightly.toml"
    settings = load_settings({"file": "../mappings/passwords.toml"}, job_file=job_file)
    assert settings.slip_folder == (REPO / "state" / "slips").resolve()
    assert [t.name for t in settings.terms] == ["Autumn", "Spring", "Summer"]
    assert settings.current_term(date(2027, 1, 4)).name == "Autumn"  # type: ignore[union-attr]
    assert settings.current_term(date(2027, 1, 5)).name == "Spring"  # type: ignore[union-attr]
    assert settings.current_term(date(2026, 8, 1)) is None


def test_reception_to_year_2_get_the_band_policy_and_older_pupils_the_pupil_policy() -> None:
    settings = parse_settings(example(), source="passwords.toml", base_dir=EXAMPLE.parent)
    assert settings.for_person(pupil("R")).min_length == 8
    assert settings.for_person(pupil("2")).style == "memorable"
    assert settings.for_person(pupil("4")).min_length == 10
    assert settings.for_person(pupil("9")).style == "random"
    assert settings.for_person(pupil(None)).min_length == 10


def test_staff_line_manager_by_person_then_role_then_fallback() -> None:
    data = example()
    data["line_managers"] = {"fallback": "office@x", "roles": {"Teacher": "head@x"}, "people": {"S9": "bm@x"}}
    settings = parse_settings(data, source="passwords.toml", base_dir=EXAMPLE.parent)
    teacher = Person("S1", Kind.STAFF, "Ann", "Lee", roles=("Cleaner", "Teacher"))
    assert settings.line_manager(teacher) == "head@x"
    assert settings.line_manager(Person("S9", Kind.STAFF, "Bo", "Ng", roles=("Teacher",))) == "bm@x"
    assert settings.line_manager(Person("S2", Kind.STAFF, "Cy", "Ho")) == "office@x"


@pytest.mark.parametrize(("change", "key", "message"), [
    ({"staff": {"min_length": 6}}, "staff.min_length", "greater than or equal to 8"),
    ({"staff": {"symbols": "!£"}}, "staff.symbols", "£ cannot be used"),
    ({"pupil": {"bands": {"R-2": {"style": "easy"}}}}, "pupil.bands.R-2.style", "'random' or 'memorable'"),
    ({"pupil": {"bands": {"Y1-Y3": {}}}}, "pupil.bands.Y1-Y3", "year groups are N1, N2, R, 1"),
    ({"staff": {"colour": "blue"}}, "staff.colour", "Extra inputs are not permitted"),
    ({"terms": [{"name": "Spring", "starts": date(2027, 1, 5)}, {"name": "Autumn", "starts": date(2026, 9, 3)}]},
     "terms", "date order"),
    ({"line_managers": {}}, "line_managers.fallback", "give at least a fallback address"),
])
def test_policy_mistakes_name_the_file_and_key(change: dict[str, object], key: str, message: str) -> None:
    data = {**example(), **change}
    with pytest.raises(ConfigError) as raised:
        parse_settings(data, source="passwords.toml", base_dir=EXAMPLE.parent)
    assert raised.value.key == key
    assert raised.value.file == "passwords.toml"
    assert message in str(raised.value)


def test_inline_policy_errors_name_the_job_file_and_passwords_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"staff": {"classes": 5}}, job_file=tmp_path / "nightly.toml")
    assert str(raised.value).startswith(f"{tmp_path / 'nightly.toml'}: passwords.staff.classes: ")


def test_a_missing_policy_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"passwords.file: .*nope.toml does not exist"):
        load_settings({"file": "nope.toml"}, job_file=tmp_path / "nightly.toml")


def test_a_schools_own_word_list_is_read_and_checked(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("# ours\nKite\nmoon\n")
    settings = parse_settings({"words_file": "words.txt"}, source="p.toml", base_dir=tmp_path)
    assert settings.words == ("kite", "moon")
    (tmp_path / "words.txt").write_text("kite\ncafé\n")
    with pytest.raises(ConfigError, match="'café' is not"):
        parse_settings({"words_file": "words.txt"}, source="p.toml", base_dir=tmp_path)


def test_slips_go_to_the_state_folder_unless_the_policy_names_one(tmp_path: Path) -> None:
    job_file = tmp_path / "jobs" / "nightly.toml"
    settings = load_settings({}, job_file=job_file, state_dir=tmp_path / "state")
    assert settings.slip_folder == (tmp_path / "state" / "slips").resolve()
    named = load_settings({"slips": {"folder": "../handouts"}}, job_file=job_file, state_dir=tmp_path / "state")
    assert named.slip_folder == (tmp_path / "handouts").resolve()
