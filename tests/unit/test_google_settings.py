"""The Google connector's options: one strict model, each mistake one ConfigError naming the file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from idlifecycle.connectors.base import AuthError, ConnectorContext, ConnectorError
from idlifecycle.connectors.google import GoogleConnector, GoogleOptions
from idlifecycle.connectors.google.session import (
    API_DISABLED,
    DATATRANSFER_SCOPE,
    QUOTA_USED_UP,
    SCOPES,
    TOKEN_REFUSED,
    refusal_for,
    scopes_for,
)
from idlifecycle.errors import ConfigError
from idlifecycle.sandbox.launch import GoogleSandbox

TABLE = {"admin": "it.admin@school.example", "domains": {"staff": "school.example", "pupil": "pupils.school.example"},
         "org_unit_root": "/Managed/"}


class NoCursors:
    def get_cursor(self, directory: str, name: str) -> str | None:
        return None

    def set_cursor(self, directory: str, name: str, value: str | None) -> None:
        pass


def read(**options: Any) -> GoogleOptions:
    table = {key: value for key, value in {**TABLE, **options}.items() if value is not None}
    context = ConnectorContext(name="google", type="google", options=table, source="connectors/google.toml",
                               cursors=NoCursors(), state_dir=Path("/nonexistent"))
    return GoogleOptions.read(context)


def test_the_defaults_and_the_normalised_values() -> None:
    options = read()
    assert options.domains == ("school.example", "pupils.school.example")
    assert options.org_unit_root == "/Managed" and options.group_domain == "school.example"
    assert options.secret == "google_service_account" and options.api_endpoint == "https://admin.googleapis.com/"
    assert (options.quota_per_minute, options.batch_size, options.timeout) == (2400, 100, 30.0)
    assert read(domains=["Pupils.School.example", "school.example"]).group_domain == "pupils.school.example"
    assert read(api_endpoint="http://127.0.0.1:8080").api_endpoint == "http://127.0.0.1:8080/"
    assert read(leavers="/Leavers/").leavers == "Leavers" and read(org_unit_root="/").org_unit_root == "/"
    assert read(quota_per_minute=600.0).quota_per_minute == 600
    assert options.transfer_to is None and read(transfer_to=" Archive@School.example ").transfer_to == \
        "archive@school.example"


def test_the_data_transfer_scope_is_asked_for_only_when_leavers_data_is_transferred() -> None:
    assert scopes_for(read()) == SCOPES and DATATRANSFER_SCOPE not in SCOPES
    assert scopes_for(read(transfer_to="archive@school.example")) == (*SCOPES, DATATRANSFER_SCOPE)


@pytest.mark.parametrize(("options", "error"), [
    ({"admin": None}, "admin: is required"),
    ({"admin": "it.admin"}, "admin: 'it.admin' is not an email address: name the super admin to act as"),
    ({"domains": []}, 'domains: must list the managed domains, e.g. { staff = "school.example", '
                      'pupil = "pupils.school.example" }'),
    ({"domains": ["localhost"]}, "domains: must list the managed domains"),
    ({"org_unit_root": "Managed"}, "org_unit_root: 'Managed' must be a full org unit path starting with '/'"),
    ({"org_unit_root": "  "}, "org_unit_root: must be a non-empty string"),
    ({"leavers": "/"}, 'leavers: must be a container path under org_unit_root, e.g. "Leavers"'),
    ({"customer": 7}, "customer: must be a non-empty string"),
    ({"quota_per_minute": 0}, "quota_per_minute: must be a number from 1 to 1000000"),
    ({"batch_size": True}, "batch_size: must be a number from 1 to 1000"),
    ({"timeout": "30"}, "timeout: must be a number from 1 to 600"),
    ({"replication_wait": 601}, "replication_wait: must be a number from 0 to 600"),
    ({"token_uri": "http://127.0.0.1/token"}, "token_uri: is only for the sandbox; remove it"),
    ({"transfer_to": "archive"}, "transfer_to: 'archive' is not an email address: name the account that receives "
                                 "leavers' Drive and Calendar data"),
    ({"transfer_to": ""}, "transfer_to: must be a non-empty string"),
])
def test_each_mistake_is_one_error_naming_the_file_and_key(options: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as raised:
        read(**options)
    assert str(raised.value).startswith(f"connectors/google.toml: {error}")


def test_the_option_keys_are_the_models_fields_and_the_model_is_strict_and_frozen() -> None:
    assert GoogleConnector.option_keys == frozenset(GoogleOptions.model_fields)
    assert GoogleSandbox.option_keys == GoogleConnector.option_keys - {"api_endpoint", "secret", "token_uri"}
    with pytest.raises(ValidationError):
        GoogleOptions.model_validate({**TABLE, "quota_per_minit": 10})
    options = read()
    with pytest.raises(ValidationError):
        options.admin = "someone@school.example"  # type: ignore[misc]


def test_a_mistyped_key_gets_the_did_you_mean_hint_from_the_connector_too() -> None:
    context = ConnectorContext(name="google", type="google", options={**TABLE, "quota_per_minit": 10},
                               source="connectors/google.toml", cursors=NoCursors(), state_dir=Path("/nonexistent"))
    with pytest.raises(ConfigError) as raised:
        GoogleConnector.from_config(context)
    assert str(raised.value) == ("connectors/google.toml: quota_per_minit: unknown option; "
                                 "did you mean 'quota_per_minute'?")


@pytest.mark.parametrize(("where", "status", "reason", "message", "error", "retryable"), [
    ("api", 403, "dailyLimitExceeded", "", ConnectorError, True),
    ("api", 403, "accessNotConfigured", "", AuthError, False),
    ("api", 401, "", "", AuthError, False),
    ("api", 401, "insufficientPermissions", "", AuthError, False),
    ("api", 403, "insufficientPermissions", "", AuthError, False),
    ("api", 403, "forbidden", "", AuthError, False),
    ("api", 400, "forbidden", "", ConnectorError, None),
    ("api", 503, "backendError", "", ConnectorError, None),
    ("sign-in", 0, "invalid_grant", "Invalid email or User ID", AuthError, False),
    ("sign-in", 0, "something_new", "", AuthError, False),
])
def test_every_refusal_has_one_row_and_the_first_that_matches_wins(
        where: str, status: int, reason: str, message: str, error: type[ConnectorError],
        retryable: bool | None) -> None:
    refusal = refusal_for(where, status, reason, message)
    assert refusal.error is error and refusal.retryable is retryable


def test_the_rows_are_read_in_order_and_the_sign_in_rows_by_the_words_of_googles_answer() -> None:
    assert refusal_for("api", 401, "insufficientPermissions", "") is TOKEN_REFUSED  # a 401 is the token first
    assert refusal_for("api", 403, "domainCannotUseApis", "") is API_DISABLED
    assert refusal_for("api", 403, "dailyLimitExceeded", "") is QUOTA_USED_UP
    assert "admin" in refusal_for("sign-in", 0, "invalid_grant", "invalid email").message
    assert "its key was refused" in refusal_for("sign-in", 0, "invalid_grant", "Invalid JWT Signature.").message
