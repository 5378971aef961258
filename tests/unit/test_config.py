"""Configuration: secrets from the environment or secret files, and clear messages for bad files."""

import pytest

from idlifecycle.config import Secrets, load_job_config, load_mapping
from idlifecycle.errors import ConfigError, UserError
from idlifecycle.model import Kind
from tests.jobfiles import write_connector, write_job


def test_a_secret_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("IDLIFECYCLE_SMTP_PASSWORD", "from-env")
    assert Secrets(tmp_path)["smtp_password"] == "from-env"


def test_a_secret_comes_from_a_file_named_plainly_in_the_secrets_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("IDLIFECYCLE_AD_BIND_PASSWORD", raising=False)
    (tmp_path / "ad_bind_password").write_text("from-file\n")
    assert Secrets(tmp_path)["ad_bind_password"] == "from-file"


def test_a_plain_environment_variable_without_the_prefix_is_not_read(monkeypatch, tmp_path):
    monkeypatch.setenv("ENTRA_CLIENT_SECRET", "someone-elses")
    assert Secrets(tmp_path).get("entra_client_secret") is None


def test_a_missing_secret_names_both_places_and_never_a_value(monkeypatch, tmp_path):
    monkeypatch.delenv("IDLIFECYCLE_ENTRA_CLIENT_SECRET", raising=False)
    with pytest.raises(UserError) as raised:
        Secrets(tmp_path)["entra_client_secret"]
    assert str(raised.value) == (f"secret 'entra_client_secret' is missing: set IDLIFECYCLE_ENTRA_CLIENT_SECRET or put "
                                 f"it in {tmp_path}/entra_client_secret")


def test_a_secret_never_shows_in_the_repr(monkeypatch, tmp_path):
    monkeypatch.setenv("IDLIFECYCLE_SMTP_PASSWORD", "hunter2hunter2")
    secrets = Secrets(tmp_path)
    assert secrets["smtp_password"]
    assert "hunter2" not in repr(secrets)


def test_an_unknown_template_field_in_the_mapping_names_the_file_and_key(tmp_path):
    mapping = tmp_path / "school.toml"
    mapping.write_text('[pupil]\nusername = "{firstname}{surname}"\ndomain = "pupils.example.sch.uk"\n')
    with pytest.raises(ConfigError) as raised:
        load_mapping([mapping])
    assert str(raised.value).startswith(f"{mapping}: pupil.username: unknown field {{firstname}}; use one of ")


def test_a_mapping_typo_is_one_message_naming_the_key(tmp_path):
    mapping = tmp_path / "school.toml"
    mapping.write_text('[staff]\nusername = "{first_initial}{surname}"\ndomain = "s.example"\nretention_dayz = 3\n')
    with pytest.raises(ConfigError) as raised:
        load_mapping([mapping])
    assert str(raised.value) == f"{mapping}: staff.retention_dayz: Extra inputs are not permitted"


def test_licence_kept_days_is_read_per_kind_and_a_negative_one_is_refused(tmp_path):
    mapping = tmp_path / "school.toml"
    head = '[staff]\nusername = "{first_initial}{surname}"\ndomain = "s.example"\n'
    mapping.write_text(head + "licence_kept_days = 365\n")
    assert load_mapping([mapping]).kinds[Kind.STAFF].licence_kept_days == 365
    mapping.write_text(head + "licence_kept_days = -1\n")
    with pytest.raises(ConfigError) as raised:
        load_mapping([mapping])
    assert str(raised.value).startswith(f"{mapping}: staff.licence_kept_days: ")


def test_licence_kept_days_can_differ_per_directory_and_a_misspelt_key_there_is_refused(tmp_path):
    mapping = tmp_path / "school.toml"
    head = ('[staff]\nusername = "{first_initial}{surname}"\ndomain = "s.example"\nlicence_kept_days = 365\n'
            "[staff.directories.trust]\n")
    mapping.write_text(head + "licence_kept_days = 0\n")
    staff_rules = load_mapping([mapping]).kinds[Kind.STAFF]
    assert (staff_rules.licence_days("entra"), staff_rules.licence_days("trust")) == (365, 0)
    mapping.write_text(head + "licence_kept_dayz = 0\n")
    with pytest.raises(ConfigError) as raised:
        load_mapping([mapping])
    assert str(raised.value) == f"{mapping}: staff.directories.trust.licence_kept_dayz: Extra inputs are not permitted"


def test_a_directory_the_job_has_no_connector_for_is_refused_naming_the_mapping_and_key(tmp_path):
    mapping = tmp_path / "school.toml"
    mapping.write_text('[staff]\nusername = "{first_initial}{surname}"\ndomain = "s.example"\n'
                       "[staff.directories.entra2]\nlicence_kept_days = 0\n")
    write_connector(tmp_path / "entra.toml", "entra", "entra", {})
    job = write_job(tmp_path / "job.toml", connectors=["entra.toml"], mappings=["school.toml"])
    with pytest.raises(ConfigError) as raised:
        load_job_config(job)
    assert str(raised.value) == (f"{mapping}: staff.directories.entra2: the job has no connector named 'entra2' "
                                 "(its connectors: entra)")
