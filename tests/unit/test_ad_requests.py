"""The AD connector's pure parts, without a DC: what each change sends, its TOML table, its error table."""

from __future__ import annotations

import uuid
from typing import Any

import ldap3
import pytest
from ldap3.core import exceptions as ldap_errors

from idlifecycle.connectors.ad import requests
from idlifecycle.connectors.ad.connector import HANDLERS, MEMBERSHIPS, ADConnector
from idlifecycle.connectors.ad.dn import member_guid, members_of, parent_dn, within
from idlifecycle.connectors.ad.session import ADSession, refusal, transient, why_unreachable
from idlifecycle.connectors.ad.settings import ADSettings
from idlifecycle.connectors.base import AuthError, Conflict, ConnectorContext, ConnectorError, check_option_keys
from idlifecycle.errors import ConfigError, UserError
from idlifecycle.model import Action, Change

BASE = "OU=School,DC=test,DC=example,DC=com"
OPTIONS: dict[str, Any] = {"servers": ["ldaps://dc1.test.example.com"], "bind_dn": "CN=svc,CN=Users,DC=test",
                           "base_dn": BASE, "upn_suffix": "test.example.com"}


def settings(**overrides: Any) -> ADSettings:
    return ADSettings.model_validate({**OPTIONS, **overrides})


def context(options: dict[str, Any], secrets: dict[str, str] | None = None) -> ConnectorContext:
    return ConnectorContext(name="ad", type="ad", options=options, source="ad.toml", cursors=None,  # type: ignore[arg-type]
                            state_dir=None,  # type: ignore[arg-type]
                            secrets={"ad_bind_password": "pw"} if secrets is None else secrets)


def change(action: Action, after: dict[str, Any] | None = None, password: str | None = None,
           target: str | None = None) -> Change:
    c = Change("ad", action, "P1", "amy", "test", target=target, after=after or {})
    object.__setattr__(c, "password", password)
    return c


def raw(**values: str) -> dict[str, list[bytes]]:
    return {name: [value.encode()] for name, value in values.items()}


# what a create sends

def test_a_create_with_a_password_is_an_enabled_account_in_its_ou_with_the_password_quoted_in_utf16() -> None:
    after = {"username": "amy.p", "given_name": "Amy", "surname": "Pond", "display_name": "Amy Pond",
             "anchor": "1001", "container": "Pupils/Year 7", "attributes": {"jobTitle": "Pupil", "department": ""},
             "must_change_password": True}
    request = requests.account_add(change(Action.CREATE, after, password="Secret-1"), settings(), f"OU=Y7,{BASE}")
    assert request.dn == f"CN=amy.p,OU=Y7,{BASE}"
    assert request.object_class == ("top", "person", "organizationalPerson", "user")
    assert request.attributes == {
        "sAMAccountName": "amy.p", "userPrincipalName": "amy.p@test.example.com", "givenName": "Amy", "sn": "Pond",
        "displayName": "Amy Pond", "employeeID": "1001", "userAccountControl": 0x200, "title": "Pupil",
        "unicodePwd": '"Secret-1"'.encode("utf-16-le"), "pwdLastSet": 0,
    }  # the empty department is left out, not written as ""


def test_a_create_without_a_password_is_disabled_and_says_so() -> None:
    c = change(Action.CREATE, {"username": "amy.p", "login": "amy@school.org"})
    request = requests.account_add(c, settings(), BASE)
    assert request.attributes["userAccountControl"] == 0x200 | 0x2
    assert "unicodePwd" not in request.attributes and request.attributes["userPrincipalName"] == "amy@school.org"
    assert requests.created_enabled(c) is False


def test_a_create_writes_mail_and_home_folder_only_when_configured() -> None:
    c = change(Action.CREATE, {"username": "amy.p"}, password="x")
    plain = requests.account_add(c, settings(), BASE).attributes
    assert not {"mail", "homeDirectory", "homeDrive"} & set(plain)
    full = requests.account_add(c, settings(mail_from_login=True, home_directory="\\\\fs\\home\\{username}",
                                            home_drive="H:"), BASE).attributes
    assert (full["mail"], full["homeDirectory"], full["homeDrive"]) == (
        "amy.p@test.example.com", "\\\\fs\\home\\amy.p", "H:")


def test_a_long_person_id_is_written_as_its_short_anchor_and_a_missing_login_needs_upn_suffix() -> None:
    long_id = "a" * 36
    anchor = requests.anchor_value(long_id)
    assert anchor is not None and len(anchor) <= requests.EMPLOYEE_ID_LIMIT and anchor != long_id[:16]
    assert requests.anchor_value("1001") == "1001" and requests.anchor_value(None) is None
    with pytest.raises(ConnectorError, match="upn_suffix is not configured"):
        requests.login_for(settings(upn_suffix=None), "amy", None)


def test_a_dn_value_is_escaped_and_a_container_path_becomes_ous_from_the_base_down() -> None:
    request = requests.account_add(change(Action.CREATE, {"username": "o,brien"}, password="x"), settings(), BASE)
    assert request.dn == f"CN=o\\,brien,{BASE}"
    assert requests.container_path(BASE, " Pupils / Year 7 ") == [
        (f"OU=Pupils,{BASE}", "Pupils"), (f"OU=Year 7,OU=Pupils,{BASE}", "Year 7")]
    assert requests.container_dn(BASE, "") == BASE
    assert within(requests.container_dn(BASE, "a,OU=x/b"), BASE)


def test_a_group_is_a_global_security_group_whose_sam_name_has_no_character_ad_refuses() -> None:
    request = requests.group_add("Share: SEN/Restricted", f"OU=Groups,{BASE}")
    assert request.dn == f"CN=Share: SEN/Restricted,OU=Groups,{BASE}"
    assert request.attributes["sAMAccountName"] == "Share_ SEN_Restricted"
    assert request.attributes["groupType"] == -2147483646
    assert len(requests.group_add("x" * 100, BASE).attributes["sAMAccountName"]) == 64


# what a change to an existing object sends

def test_an_update_replaces_only_what_differs_and_clears_an_emptied_value() -> None:
    current = raw(givenName="Amy", sn="Pond", title="Pupil", department="Maths", userAccountControl=str(0x10200))
    c = change(Action.UPDATE, {"given_name": "Amy", "surname": "Williams",
                               "attributes": {"jobTitle": "Pupil", "department": ""},
                               "password_never_expires": False})
    assert requests.update_reads(c) == ["title", "department"]
    values = requests.update_values(c, current)
    assert values == {"sn": "Williams", "department": None, "userAccountControl": str(0x200)}
    assert requests.replacing(values) == {"sn": [(ldap3.MODIFY_REPLACE, ["Williams"])],
                                          "department": [(ldap3.MODIFY_REPLACE, [])],
                                          "userAccountControl": [(ldap3.MODIFY_REPLACE, ["512"])]}
    assert requests.update_values(change(Action.UPDATE, {"given_name": "Amy"}), current) == {}


def test_a_rename_replaces_the_sign_in_names_that_differ_and_mail_with_the_login_when_configured() -> None:
    current = raw(sAMAccountName="amy.p", userPrincipalName="amy.p@test.example.com")
    assert requests.rename_values(settings(), current, "amy.w", "amy.p@test.example.com") == {"sAMAccountName": "amy.w"}
    assert requests.rename_values(settings(mail_from_login=True), current, "amy.p", "amy.w@test.example.com") == {
        "userPrincipalName": "amy.w@test.example.com", "mail": "amy.w@test.example.com"}
    assert requests.rename_values(settings(), current, "amy.p", "amy.p@test.example.com") == {}


def test_enabling_and_disabling_touch_only_the_disabled_bit() -> None:
    assert requests.with_enabled(0x10202, True) == 0x10200
    assert requests.with_enabled(0x10200, False) == 0x10202
    assert requests.with_enabled(0x202, False) == 0x202


def test_memberships_already_so_are_not_sent_and_the_rest_go_in_one_sorted_modify() -> None:
    in_group, outside = str(uuid.uuid4()), str(uuid.uuid4())
    add_in = change(Action.ADD_MEMBER, target=in_group.upper())
    add_out = change(Action.ADD_MEMBER, target=outside)
    assert requests.still_to_do([add_in, add_out], {in_group}, adding=True) == ([add_in], [add_out])
    assert requests.still_to_do([add_in, add_out], {in_group}, adding=False) == ([add_out], [add_in])
    assert requests.membership(True, ["CN=b", "CN=a", "CN=b"]) == {"member": [(ldap3.MODIFY_ADD, ["CN=a", "CN=b"])]}
    assert requests.membership(False, ["CN=a"]) == {"member": [(ldap3.MODIFY_DELETE, ["CN=a"])]}
    assert requests.names_filter(["a*", "b"]) == "(|(sAMAccountName=a\\2a)(sAMAccountName=b))"


def test_a_member_read_with_the_extended_dn_control_is_its_guid_and_cn_wherever_it_lives() -> None:
    key = uuid.uuid4()
    value = f"<GUID={key.bytes_le.hex()}>;<SID=01>;CN=Doe\\, Jane,CN=Users,DC=test"
    assert member_guid(value) == str(key)
    assert members_of({"member": [value.encode(), b"CN=no guid,DC=test"]}) == {str(key): "Doe, Jane"}
    assert parent_dn("CN=Doe\\, Jane,OU=Staff,DC=test") == "OU=Staff,DC=test"


# routing

def test_every_action_has_exactly_one_way_in() -> None:
    assert set(HANDLERS) | MEMBERSHIPS == set(Action)
    assert not set(HANDLERS) & MEMBERSHIPS


# the TOML table

def test_the_strict_check_and_the_model_are_the_same_keys() -> None:
    assert ADConnector.option_keys == frozenset(ADSettings.model_fields)
    with pytest.raises(ConfigError, match=r"ad\.toml: tls_verfy: unknown option; did you mean 'tls_verify'\?"):
        check_option_keys(context({**OPTIONS, "tls_verfy": False}), ADConnector.option_keys)


@pytest.mark.parametrize(("overrides", "key", "message"), [
    ({"servers": []}, "servers", 'give a list such as ["ldaps://dc1.school.local"]'),
    ({"servers": ["http://dc1"]}, "servers", "'http://dc1' is not ldaps://host[:port] or ldap://host[:port]"),
    ({"servers": ["ldap://dc1"]}, "servers", "'ldap://dc1' sends passwords in clear: use ldaps:// or set start_tls"),
    ({"base_dn": "School"}, "base_dn", "'School' is not a DN such as OU=School,DC=school,DC=local"),
    ({"base_dn": "OU=School"}, "base_dn", "is not a DN such as"),
    ({"connections": 0}, "connections", "must be at least 1"),
    ({"timeout": "soon"}, "timeout", "valid integer"),
    ({"bind_dn": None}, "bind_dn", "valid string"),
])
def test_a_bad_value_is_one_config_error_naming_the_file_and_key(overrides: dict[str, Any], key: str,
                                                                 message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        ADSettings.from_context(context({**OPTIONS, **overrides}))
    assert raised.value.file == "ad.toml" and raised.value.key == key
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_missing_key_is_required_and_one_server_may_be_a_string() -> None:
    without = {k: v for k, v in OPTIONS.items() if k != "base_dn"}
    with pytest.raises(ConfigError, match=r"^ad\.toml: base_dn: is required$"):
        ADSettings.from_context(context(without))
    one = ADSettings.from_context(context({**OPTIONS, "servers": "ldap://dc1:3389", "start_tls": True}))
    [address] = one.addresses()
    assert (address.host, address.port, address.use_ssl, address.start_tls) == ("dc1", 3389, False, True)
    assert settings().addresses()[0].port == 636


def test_the_bind_password_is_a_secret_named_after_the_connector_and_never_in_the_settings() -> None:
    with pytest.raises(UserError, match=r"ad\.toml: missing the bind password \(secret 'ad_bind_password'\)"):
        ADConnector.from_config(context(OPTIONS, secrets={}))
    connector = ADConnector.from_config(context(OPTIONS))
    assert "pw" not in repr(connector.settings) and "bind_password" not in ADSettings.model_fields


def test_a_different_tree_or_attribute_list_is_a_different_cached_snapshot() -> None:
    assert settings().fingerprint() == settings(timeout=5).fingerprint()
    assert settings().fingerprint() != settings(attributes=["department"]).fingerprint()
    assert settings().fingerprint() != settings(base_dn=f"OU=Other,{BASE}").fingerprint()


# the error table

def answer(code: int, message: str = "", description: str = "x") -> ldap_errors.LDAPOperationResult:
    return ldap_errors.LDAPOperationResult(result=code, description=description, message=message)


@pytest.mark.parametrize(("code", "message", "when", "kind", "text", "retryable"), [
    (49, "80090308: LdapErr: DSID-0C09042A, data 533, v3839", "bind", AuthError, "svc,CN=Users,DC=test is disabled",
     False),
    (49, "data 775", "bind", AuthError, "is locked out", False),
    (49, "data 773", "bind", AuthError, "must change its password first", False),
    (49, "data 52e", "bind", AuthError, "check bind_dn and the secret ad_bind_password", False),
    (8, "", "bind", AuthError, "refuses a bind without TLS", False),
    (19, "0000052D: Constraint violation", "create", ConnectorError, "password policy refused", False),
    (53, "0000052D: unwilling", "enable", ConnectorError, "enable amy: the account has no password yet", False),
    (68, "exists", "create", Conflict, "create amy: the name is already taken in the domain (exists)", False),
    (50, "", "update", ConnectorError, f"not allowed to do this in {BASE}", False),
    (32, "gone", "move", ConnectorError, "the object or its OU does not exist (gone)", False),
    (51, "busy", "update", ConnectorError, "the DC answered x: busy", True),
    (80, "other", "update", ConnectorError, "the DC answered x: other", True),
    (53, "no", "delete", ConnectorError, "the DC answered x: no", False),
])
def test_each_ldap_answer_becomes_one_error_by_the_table(code: int, message: str, when: str,
                                                         kind: type[ConnectorError], text: str,
                                                         retryable: bool) -> None:
    session = ADSession("ad", settings(), "the-bind-password")
    row = refusal(answer(code, message), when)
    assert row is not None
    error = session.error(row, answer(code, message), who=f"{when} amy", url="ldaps://dc1")
    assert type(error) is kind and text in str(error) and error.retryable is retryable
    assert "the-bind-password" not in str(error)
    assert transient(answer(code, message)) is (retryable and when != "bind")


def test_a_bind_refused_otherwise_is_a_dc_that_did_not_answer_and_tls_reasons_are_named() -> None:
    assert refusal(answer(52, "unavailable"), "bind") is None  # the next DC is tried
    assert transient(ldap_errors.LDAPSocketOpenError("reset")) is True
    assert "set ca_file" in why_unreachable(OSError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"))
    assert "ldaps:// needs port 636" in why_unreachable(OSError("[SSL: WRONG_VERSION_NUMBER] wrong version number"))
    assert why_unreachable(OSError()) == "OSError"
